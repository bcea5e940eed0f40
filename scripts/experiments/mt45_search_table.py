"""The MT45 backbone's size search as a markdown table (docs/RESULTS.md), from runs/mt45_search/<configuration>
written by scripts/experiments/mt45_search.sh: pre-training time and loss, backbone success on its 15 training
tasks, adapter r=16 success on the held-out tasks, and a PNG of the same.

    python scripts/experiments/mt45_search_table.py [--root runs/mt45_search] [--png docs/results/mt45_search.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vla_adapter_ros.core.evaluate import wilson_interval

ORDER = ("p16", "p16_stem", "p12")
DESCRIBE = {
    "p16": "16-px patches (36 tokens / view), linear patch embedding",
    "p16_stem": "16-px patches + conv stem (32/64 channels)",
    "p12": "12-px patches (64 tokens / view), linear patch embedding",
}


def _json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def row(run: Path) -> dict | None:
    log = [json.loads(x) for x in (run / "pretrain" / "log.jsonl").read_text().splitlines()
           if x.strip()] if (run / "pretrain" / "log.jsonl").is_file() else []
    steps = [r for r in log if "loss" in r]
    if not steps:
        return None
    cfg = json.loads((run / "benchmark_config.json").read_text())
    result = _json(run / "pretrain" / "result.json") or {}
    # elapsed_s restarts when a run resumes: add up the segments
    elapsed, last = 0.0, 0.0
    for r in steps:
        if r["elapsed_s"] < last:
            elapsed += last
        last = r["elapsed_s"]
    elapsed += last
    base = [_json(run / "eval" / f"{t}-v3" / "backbone.json") for t in cfg["base_tasks"]]
    held = {t: _json(run / "eval" / f"{t}-v3" / "adapter_r16.json") for t in cfg["heldout_tasks"]}
    k = sum(r["successes"] for r in base if r)
    n = sum(r["episodes"] for r in base if r)
    return {
        "name": run.name, "model": cfg["model"], "params": result.get("trainable_params"),
        "steps": steps[-1]["step"], "minutes": elapsed / 60, "final_loss": float(np.mean([r["loss"] for r in steps[-10:]])),
        "ms_per_step": 1e3 * cfg["batch_size"] / float(np.median([r["samples_per_s"] for r in steps])),
        "base": (k, n, sum(1 for r in base if r)), "heldout": held,
    }


def markdown(rows: list[dict]) -> str:
    held = list(rows[0]["heldout"])
    lines = ["| configuration | backbone params | pre-training (steps, min, ms/step) | final L1 | backbone on its "
             "15 training tasks | " + " | ".join(f"adapter r=16 {t}" for t in held) + " | adapter mean |",
             "|---|---|---|---|---|" + "---|" * len(held) + "---|"]
    for r in rows:
        k, n, tasks = r["base"]
        base = f"{k}/{n} ({100 * k / n:.0f} %)" if n else "—"
        cells = [f"{h['successes']}/{h['episodes']}" if h else "—" for h in r["heldout"].values()]
        done = [h["success_rate"] for h in r["heldout"].values() if h]
        mean = f"{np.mean(done):.2f}" if len(done) == len(held) else "—"
        params = f"{r['params']:,}" if r["params"] else "—"
        lines.append(f"| {r['name']}: {DESCRIBE.get(r['name'], '')} | {params} | {r['steps']}, {r['minutes']:.0f}, "
                     f"{r['ms_per_step']:.0f} | {r['final_loss']:.3f} | {base} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    labels = ["backbone, 15 training tasks"] + [f"adapter r=16, {t}" for t in rows[0]["heldout"]]
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        k, n, _ = r["base"]
        counts = [(k, n)] + [(h["successes"], h["episodes"]) if h else (0, 0) for h in r["heldout"].values()]
        vals = np.array([a / b if b else np.nan for a, b in counts])
        ci = np.array([wilson_interval(a, b) if b else (np.nan, np.nan) for a, b in counts])
        err = np.nan_to_num(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
        ax.bar(np.arange(len(labels)) + i * width, vals, width, yerr=err, capsize=2,
               label=f"{r['name']} ({r['minutes']:.0f} min pre-training)")
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% CI)")
    ax.set_title("MT45 backbone search: short pre-training on 15 tasks", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/mt45_search"))
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    rows = [r for name in ORDER if (args.root / name).is_dir() and (r := row(args.root / name))]
    print(markdown(rows))
    if args.png and rows:
        plot(rows, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
