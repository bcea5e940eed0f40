"""Tables and plots of a benchmark run: ``<out>/report/RESULTS.md`` + PNGs + results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .evaluate import wilson_interval


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _log(run: Path) -> list[dict[str, Any]]:
    f = run / "log.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.is_file() else []


def _fmt_rate(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{r['successes']}/{r['episodes']}"


def _pooled(per_task: dict[str, dict[str, Any] | None]) -> tuple[int, int]:
    done = [r for r in per_task.values() if r is not None]
    return sum(r["successes"] for r in done), sum(r["episodes"] for r in done)


def _ratio_interval(a: dict[str, dict[str, Any] | None], b: dict[str, dict[str, Any] | None], n_boot: int = 4000,
                    seed: int = 0) -> tuple[float, float] | None:
    """95% paired-bootstrap interval of mean-success(a) / mean-success(b) over tasks.

    Both methods ran the same seeds on each task, so seeds are resampled together
    (per task), which keeps the pairing; None when a task is missing or b never succeeds.
    """
    tasks = [t for t in a if a[t] is not None and b.get(t) is not None]
    if not tasks or len(tasks) != len(a):
        return None
    pairs = []
    for t in tasks:
        sa = {r["seed"]: r["success"] for r in a[t]["results"]}
        sb = {r["seed"]: r["success"] for r in b[t]["results"]}
        seeds = sorted(set(sa) & set(sb))
        pairs.append((np.array([sa[x] for x in seeds], float), np.array([sb[x] for x in seeds], float)))
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(n_boot):
        ma, mb = 0.0, 0.0
        for xa, xb in pairs:
            idx = rng.integers(0, len(xa), len(xa))
            ma, mb = ma + xa[idx].mean(), mb + xb[idx].mean()
        if mb > 0:
            ratios.append(ma / mb)
    if not ratios:
        return None
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def collect(bench: Any) -> dict[str, Any]:
    """Everything the report shows, as plain data (also written to results.json)."""
    methods = ["backbone"] + [s.name for s in bench.method_specs()]
    rows: dict[str, dict[str, Any]] = {}
    language_params = 22_713_216  # all-MiniLM-L6-v2, frozen, shipped once (counted in the whole model)
    for spec_name in methods:
        spec = next((s for s in bench.method_specs() if s.name == spec_name), None)
        per_task, train_info = {}, []
        for task in bench.heldout:
            per_task[task] = _load(bench.eval_file(task, spec_name))
            if spec is not None:
                info = _load(bench.run_dir(task, spec.name) / "result.json")
                log = _log(bench.run_dir(task, spec.name))
                sps = [r["samples_per_s"] for r in log if r.get("samples_per_s")]
                if info:
                    info["ms_per_step"] = 1e3 * bench.cfg.batch_size / float(np.median(sps)) if sps else None
                    train_info.append(info)
        rates = [r["success_rate"] for r in per_task.values() if r is not None]
        row: dict[str, Any] = {"per_task": per_task, "mean_success": float(np.mean(rates)) if rates else None}
        if train_info:
            info = train_info[0]
            backbone_params = info["total_params"]
            row.update(
                regime=info["regime"], trainable_params=info["trainable_params"],
                pct_backbone=100.0 * info["trainable_params"] / backbone_params,
                pct_whole=100.0 * info["trainable_params"] / (backbone_params + language_params),
                bytes_per_task=int(np.median([t["artifact_bytes"] for t in train_info])),
                ms_per_step=float(np.median([t["ms_per_step"] for t in train_info if t.get("ms_per_step")] or [0])),
            )
        k, n = _pooled(per_task)
        row["pooled"] = (k, n)
        row["pooled_ci95"] = wilson_interval(k, n) if n else None
        rows[spec_name] = row
    full_name = next((s.name for s in bench.method_specs() if s.regime == "full"), None)
    full_row = rows.get(full_name) if full_name else None
    for row in rows.values():
        if full_row and full_row["mean_success"] and row["mean_success"] is not None:
            row["vs_full"] = row["mean_success"] / full_row["mean_success"]
            row["vs_full_ci95"] = _ratio_interval(row["per_task"], full_row["per_task"])
    main = bench.cfg.main_method
    paraphrase = {t: _load(bench.eval_file(t, main, "heldout")) for t in bench.heldout}
    full = next((s.name for s in bench.method_specs() if s.regime == "full"), None)
    forgetting = {
        t: {"backbone": _load(bench.eval_file(t, "backbone")),
            "full": _load(bench.eval_file(t, f"full[{bench.heldout[0]}]")) if full else None}
        for t in bench.base
    }
    return {"methods": rows, "paraphrase": paraphrase, "forgetting": forgetting, "main_method": main,
            "heldout": bench.heldout, "base": bench.base, "config": bench.cfg.to_dict()}


def write_report(bench: Any) -> Path:
    """``<out>/report/``: results.json, RESULTS.md and the PNG plots; returns the RESULTS.md path."""
    data = collect(bench)
    out = bench.out / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "RESULTS.md").write_text(markdown(data))
    names = [n for n, r in data["methods"].items() if any(v is not None for v in r["per_task"].values())]
    if names:
        _plot_success_per_task(data, names, out / "success_per_task.png")
        _plot_params_vs_success(data, names, out / "params_vs_success.png")
    _plot_learning_curves(bench, data["heldout"][0], out / "learning_curves.png")
    return out / "RESULTS.md"


def markdown(data: dict[str, Any]) -> str:
    """RESULTS.md: success per method and task, paraphrased instructions, forgetting."""
    tasks = data["heldout"]
    short = [t.removesuffix("-v3") for t in tasks]
    lines = ["## Held-out tasks: success per method", "",
             "| method | trainable params | % of policy backbone | % of whole model | bytes / task | ms / step | "
             + " | ".join(short) + " | mean [95% CI] | vs full [95% CI] |",
             "|---|---|---|---|---|---|" + "---|" * len(tasks) + "---|---|"]
    lines += [_method_line(name, row, tasks) for name, row in data["methods"].items()]
    lines += ["", "Cells: successes/episodes (seeds from eval_seed_start on). Mean: average of the per-task rates, "
              "with a Wilson interval on the pooled episodes. vs full: mean / full fine-tuning's mean, with a "
              "paired bootstrap interval (same seeds per task).",
              "", f"## Paraphrased instructions never seen in training ({data['main_method']})", "",
              "| task | success (held-out paraphrases) | success (training instructions) |", "|---|---|---|"]
    for t in tasks:
        lines.append(f"| {t.removesuffix('-v3')} | {_fmt_rate(data['paraphrase'][t])} | "
                     f"{_fmt_rate(data['methods'][data['main_method']]['per_task'][t])} |")
    lines += ["", "## Forgetting on the base tasks", "",
              "| base task | backbone (= any adapter deactivated) | fully fine-tuned on " + short[0] + " |", "|---|---|---|"]
    for t, r in data["forgetting"].items():
        lines.append(f"| {t.removesuffix('-v3')} | {_fmt_rate(r['backbone'])} | {_fmt_rate(r['full'])} |")
    return "\n".join(lines) + "\n"


def _method_line(name: str, row: dict[str, Any], tasks: list[str]) -> str:
    cells = [_fmt_rate(row["per_task"][t]) for t in tasks]
    mean = "—" if row["mean_success"] is None else f"{row['mean_success']:.2f}"
    if row.get("pooled_ci95"):
        mean += " [{:.2f}, {:.2f}]".format(*row["pooled_ci95"])
    ratio = "—" if row.get("vs_full") is None else f"{100 * row['vs_full']:.0f}%"
    if row.get("vs_full_ci95"):
        ratio += " [{:.0f}, {:.0f}]%".format(*(100 * x for x in row["vs_full_ci95"]))
    mean += f" | {ratio}"
    if "trainable_params" in row:
        return (f"| {name} | {row['trainable_params']:,} | {row['pct_backbone']:.2f}% | {row['pct_whole']:.2f}% | "
                f"{row['bytes_per_task']:,} | {row['ms_per_step']:.0f} | " + " | ".join(cells) + f" | {mean} |")
    return f"| {name} | 0 | 0 | 0 | 0 | — | " + " | ".join(cells) + f" | {mean} |"


def _plot_success_per_task(data: dict[str, Any], names: list[str], path: Path) -> None:
    tasks = data["heldout"]
    fig = Figure(figsize=(max(6, 1.2 * len(tasks) * len(names) / 4 + 3), 3.6))
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        res = [data["methods"][n]["per_task"][t] for t in tasks]
        vals = np.array([r["success_rate"] if r else np.nan for r in res])
        lo = np.array([r["ci95"][0] if r else np.nan for r in res])
        hi = np.array([r["ci95"][1] if r else np.nan for r in res])
        ax.bar(np.arange(len(tasks)) + i * width, vals, width, label=n,
               yerr=np.nan_to_num(np.stack([vals - lo, hi - vals])), capsize=1.5, error_kw={"lw": 0.6})
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [t.removesuffix("-v3") for t in tasks], rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_params_vs_success(data: dict[str, Any], names: list[str], path: Path) -> None:
    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    for n in names:
        r = data["methods"][n]
        if r.get("trainable_params") and r["mean_success"] is not None:
            ax.scatter(r["trainable_params"], r["mean_success"])
            ax.annotate(n, (r["trainable_params"], r["mean_success"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters per task")
    ax.set_ylabel("mean held-out success")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_learning_curves(bench: Any, task: str, path: Path) -> None:
    """Training loss of every method on ``task`` (the first held-out one) and of pre-training."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    pre = _log(bench.out / "pretrain")
    if pre:
        ax.plot([r["step"] for r in pre if "loss" in r], [r["loss"] for r in pre if "loss" in r], label="pretrain", color="k")
    for spec in bench.method_specs():
        log = _log(bench.run_dir(task, spec.name))
        ax.plot([r["step"] for r in log if "loss" in r], [r["loss"] for r in log if "loss" in r], label=spec.name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (normalised L1)")
    ax.set_title(f"learning curves ({task.removesuffix('-v3')} for fine-tuning)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
