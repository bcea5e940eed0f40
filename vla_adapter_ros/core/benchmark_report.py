"""Tables and plots of a benchmark run: ``<out>/report/RESULTS.md`` + PNGs + results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .evaluate import wilson_interval
from .sim.difficulty import GROUPS, difficulty

# Published Meta-World MT50 success (%) per difficulty group (easy, medium, hard, very hard) and their average,
# as the SmolVLA paper reports them (Shukor et al. 2025, "SmolVLA: A Vision-Language-Action Model for
# Affordable and Efficient Robotics", arXiv:2506.01844, Meta-World table; the TinyVLA, pi0 and Diffusion
# Policy rows are that table's baselines). "avg" is the mean of the four group rates.
PUBLISHED_MT50: dict[str, tuple[float, float, float, float, float]] = {
    "SmolVLA (0.45B)": (82.5, 41.8, 45.0, 60.0, 57.3),
    "pi0 (3.5B)": (71.8, 48.2, 41.7, 30.0, 47.9),
    "TinyVLA": (77.6, 21.5, 11.4, 15.8, 31.6),
    "Diffusion Policy": (23.1, 10.7, 1.9, 6.1, 10.5),
}
GROUP_LABELS = {"easy": "easy", "medium": "medium", "hard": "hard", "very_hard": "very hard"}


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
    return _ratio_interval_runs([a], [b], n_boot, seed)


def _ratio_interval_runs(a_runs: list[dict[str, dict[str, Any] | None]], b_runs: list[dict[str, dict[str, Any] | None]],
                         n_boot: int = 4000, seed: int = 0) -> tuple[float, float] | None:
    """:func:`_ratio_interval` over several training runs: run i of ``a`` is paired with run i of ``b``
    (the same training seed index), the evaluation seeds of each (run, task) are resampled together, and
    the ratio is of the means over runs and tasks."""
    if not a_runs or len(a_runs) != len(b_runs):
        return None
    pairs = []
    for a, b in zip(a_runs, b_runs, strict=True):
        tasks = [t for t in a if a[t] is not None and b.get(t) is not None]
        if not tasks or len(tasks) != len(a):
            return None
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
    firsts = [s for s in bench.method_specs() if not s.seed_of]  # seed repeats go to the training-seed table
    methods = ["backbone"] + [s.name for s in firsts]
    rows: dict[str, dict[str, Any]] = {}
    language_params = 22_713_216  # all-MiniLM-L6-v2, frozen, shipped once (counted in the whole model)
    for spec_name in methods:
        spec = next((s for s in firsts if s.name == spec_name), None)
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
        cost = _load(bench.cost_file(spec)) if spec is not None else None
        if cost is not None:
            row["cost"] = {k: cost[k] for k in ("peak_rss_delta_bytes", "ms_per_step_median", "steps", "task")}
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
    base = {t: _load(bench.eval_file(t, "backbone")) for t in bench.base}
    forgetting = {}
    for t in bench.base:
        tuned = _load(bench.eval_file(t, f"full[{bench.heldout[0]}]")) if full else None
        # the same (first) seeds on both sides: the backbone may have run more for the group table
        n = tuned["episodes"] if tuned else bench.cfg.forgetting_episodes
        forgetting[t] = {"backbone": _first(base[t], n), "full": tuned}
    return {"methods": rows, "paraphrase": paraphrase, "forgetting": forgetting, "main_method": main,
            "groups": _groups(base), "seeds": _seeds(bench), "full_method": full,
            "deactivated_identity": deactivated_identity(bench),
            "heldout": bench.heldout, "base": bench.base, "config": bench.cfg.to_dict()}


def deactivated_identity(bench: Any) -> dict[str, list[int]]:
    """Per tuner method: [artifacts whose deactivation gives the backbone's outputs bit for bit, artifacts
    checked]. Every trained adapter / LoRA / prefix is loaded onto the backbone, activated (it must change
    the outputs) and deactivated (they must equal the bare backbone's exactly) on a batch of inputs."""
    # why here: the report's tables are written without torch (a results folder copied elsewhere)
    import torch

    from .adapters import delete_adapter, load_adapter, set_adapter
    from .checkpoint import load_checkpoint
    from .config import TUNER_REGIMES
    from .model import example_inputs

    if not (bench.backbone / "model.safetensors").is_file():
        return {}
    model = load_checkpoint(bench.backbone, adapters=False).eval()
    x = example_inputs(model.config, batch_size=4, seed=0)
    out: dict[str, list[int]] = {}
    with torch.no_grad():
        ref = model.predict(*x)
        for spec in bench.method_specs():
            if spec.regime not in TUNER_REGIMES:
                continue
            ok = checked = 0
            for task in bench.heldout:
                art = bench.artifact(task, spec)
                if not art.is_dir():
                    continue
                name = load_adapter(model, art, activate=True)
                changed = not torch.equal(model.predict(*x), ref)
                set_adapter(model, None)
                ok += changed and torch.equal(model.predict(*x), ref)
                checked += 1
                delete_adapter(model, name)
            if checked:
                out[spec.name] = [ok, checked]
    return out


def _first(result: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    """``result`` restricted to its first ``n`` episodes (by seed)."""
    if result is None:
        return None
    episodes = sorted(result["results"], key=lambda r: r["seed"])[:n]
    k = sum(bool(r["success"]) for r in episodes)
    return {**result, "results": episodes, "episodes": len(episodes), "successes": k,
            "success_rate": k / max(len(episodes), 1)}


def _groups(base: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The backbone's success on its training tasks per Meta-World difficulty group (sim/difficulty.py)."""
    rows: dict[str, Any] = {}
    for group in GROUPS:
        done = {t: r for t, r in base.items() if r is not None and difficulty(t) == group}
        k, n = sum(r["successes"] for r in done.values()), sum(r["episodes"] for r in done.values())
        rows[group] = {"tasks": sorted(done), "successes": k, "episodes": n,
                       "success_rate": k / n if n else None, "ci95": wilson_interval(k, n) if n else None,
                       "per_task": {t: r["success_rate"] for t, r in done.items()}}
    rates = [r["success_rate"] for r in rows.values() if r["success_rate"] is not None]
    per_task = [r["success_rate"] for r in base.values() if r is not None]
    return {"groups": rows, "average_of_groups": float(np.mean(rates)) if len(rates) == len(GROUPS) else None,
            "mean_over_tasks": float(np.mean(per_task)) if per_task else None, "tasks": len(per_task)}


def _seeds(bench: Any) -> dict[str, Any]:
    """Every method trained with several seeds (``seed_of`` repeats): per-seed means, the mean over seeds,
    and the main method's ratio to full fine-tuning over the seeds both have, paired by seed index."""
    specs = bench.method_specs()
    out: dict[str, Any] = {}
    ratio = None
    for first in [s for s in specs if not s.seed_of]:
        runs = [first] + sorted((s for s in specs if s.seed_of == first.name), key=lambda s: s.seed)
        if len(runs) == 1:
            continue
        per_seed = []
        for s in runs:
            per_task = {t: _load(bench.eval_file(t, s.name)) for t in bench.heldout}
            rates = [r["success_rate"] for r in per_task.values() if r is not None]
            per_seed.append({"method": s.name, "seed": s.seed, "per_task": per_task,
                             "mean_success": float(np.mean(rates)) if len(rates) == len(per_task) else None})
        means = [p["mean_success"] for p in per_seed if p["mean_success"] is not None]
        out[first.name] = {"runs": per_seed, "mean_over_seeds": float(np.mean(means)) if means else None,
                           "complete": len(means) == len(per_seed)}
    main, full = bench.cfg.main_method, next((s.name for s in specs if s.regime == "full" and not s.seed_of), None)
    if main in out and full in out:
        a, b = out[main]["runs"], out[full]["runs"]
        n = min(len(a), len(b))
        done = [i for i in range(n) if a[i]["mean_success"] is not None and b[i]["mean_success"] is not None]
        if done:
            ma = float(np.mean([a[i]["mean_success"] for i in done]))
            mb = float(np.mean([b[i]["mean_success"] for i in done]))
            ratio = {"method": main, "full": full, "seeds": [a[i]["seed"] for i in done],
                            "per_seed": [a[i]["mean_success"] / b[i]["mean_success"] if b[i]["mean_success"] else None
                                         for i in done],
                            "ratio": ma / mb if mb else None,
                            "ci95": _ratio_interval_runs([a[i]["per_task"] for i in done],
                                                         [b[i]["per_task"] for i in done])}
    return {"methods": out, "ratio": ratio}


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
    if data["groups"]["tasks"]:
        _plot_success_per_group(data, out / "success_per_group.png")
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
    lines += _cost_lines(data) + _seed_lines(data) + _group_lines(data)
    lines += ["", "## Forgetting on the base tasks", "",
              "| base task | backbone (= any adapter deactivated) | fully fine-tuned on " + short[0] + " |", "|---|---|---|"]
    for t, r in data["forgetting"].items():
        lines.append(f"| {t.removesuffix('-v3')} | {_fmt_rate(r['backbone'])} | {_fmt_rate(r['full'])} |")
    pooled = [sum(r[side]["successes"] for r in data["forgetting"].values() if r[side]) for side in ("backbone", "full")]
    episodes = [sum(r[side]["episodes"] for r in data["forgetting"].values() if r[side]) for side in ("backbone", "full")]
    if episodes[1]:
        lines.append(f"| **all** | **{pooled[0]}/{episodes[0]}** | **{pooled[1]}/{episodes[1]}** |")
    if data.get("deactivated_identity"):
        checks = ", ".join(f"{n} {ok}/{k}" for n, (ok, k) in data["deactivated_identity"].items())
        lines += ["", "Deactivated = backbone, bit for bit (each trained tuner loaded onto the backbone: active it "
                  f"changes the outputs, deactivated they equal the bare backbone's exactly): {checks}."]
    return "\n".join(lines) + "\n"


def _cost_lines(data: dict[str, Any]) -> list[str]:
    rows = [(n, r) for n, r in data["methods"].items() if r.get("cost")]
    if not rows:
        return []
    first = rows[0][1]["cost"]
    lines = ["", "## Training cost per method", "",
             f"One process, one torch thread, CPU: {first['steps']} training steps (batch "
             f"{data['config']['batch_size']}) on {first['task'].removesuffix('-v3')} in a fresh process per method. "
             "Peak memory: the highest resident size during the steps minus the resident size when they started "
             "(model, data and language encoder loaded), i.e. activations, gradients and optimizer state. "
             "Step time: median over the steps after the first five.", "",
             "| method | trainable params | peak training memory (MiB) | ms / step (median) |", "|---|---|---|---|"]
    for n, r in rows:
        c = r["cost"]
        mem = "—" if c["peak_rss_delta_bytes"] is None else f"{c['peak_rss_delta_bytes'] / 2**20:.0f}"
        ms = "—" if c["ms_per_step_median"] is None else f"{c['ms_per_step_median']:.0f}"
        lines.append(f"| {n} | {r['trainable_params']:,} | {mem} | {ms} |")
    return lines


def _seed_lines(data: dict[str, Any]) -> list[str]:
    seeds = data["seeds"]
    if not seeds["methods"]:
        return []
    tasks = data["heldout"]
    lines = ["", "## Training seeds", "", "| method | training seed | " + " | ".join(t.removesuffix("-v3") for t in tasks)
             + " | mean |", "|---|---|" + "---|" * len(tasks) + "---|"]
    for name, fam in seeds["methods"].items():
        for run in fam["runs"]:
            mean = "—" if run["mean_success"] is None else f"{run['mean_success']:.2f}"
            lines.append(f"| {name} | {run['seed']} | " + " | ".join(_fmt_rate(run["per_task"][t]) for t in tasks)
                         + f" | {mean} |")
        if fam["mean_over_seeds"] is not None:
            lines.append(f"| {name} | **mean over seeds** |" + " |" * len(tasks) + f" **{fam['mean_over_seeds']:.3f}** |")
    ratio = seeds["ratio"]
    if ratio and ratio["ratio"] is not None:
        per_seed = ", ".join(f"{100 * x:.1f} %" for x in ratio["per_seed"] if x is not None)
        ci = "" if not ratio["ci95"] else " [{:.0f}, {:.0f}] %".format(*(100 * x for x in ratio["ci95"]))
        lines += ["", f"{ratio['method']} / {ratio['full']} over training seeds {ratio['seeds']}: "
                  f"**{100 * ratio['ratio']:.1f} %**{ci} (per seed: {per_seed}); interval: paired bootstrap over "
                  "evaluation seeds within each (training seed, task)."]
    return lines


def _group_lines(data: dict[str, Any]) -> list[str]:
    g = data["groups"]
    if not g["tasks"]:
        return []
    rows = g["groups"]
    n_tasks = {k: len(v["tasks"]) for k, v in rows.items()}
    episodes = next((r["episodes"] // max(len(r["tasks"]), 1) for r in rows.values() if r["tasks"]), 0)
    head = " | ".join(f"{GROUP_LABELS[k]} ({n_tasks[k]})" for k in GROUPS)
    lines = ["", "## The backbone on its training tasks, per Meta-World difficulty group", "",
             f"Backbone alone (no adapter), {episodes} episodes per task on {g['tasks']} training tasks; groups of "
             "Seo et al. 2022 (core/sim/difficulty.py). avg = mean of the four group rates, as published.", "",
             f"| policy | {head} | avg |", "|---|" + "---|" * len(GROUPS) + "---|"]
    cells = []
    for k in GROUPS:
        r = rows[k]
        cells.append("—" if r["success_rate"] is None else
                     f"**{100 * r['success_rate']:.1f}** ({r['successes']}/{r['episodes']})")
    avg = "—" if g["average_of_groups"] is None else f"**{100 * g['average_of_groups']:.1f}**"
    lines.append("| this backbone | " + " | ".join(cells) + f" | {avg} |")
    for name, vals in PUBLISHED_MT50.items():
        lines.append(f"| {name} (MT50, published) | " + " | ".join(f"{v:.1f}" for v in vals[:4]) + f" | {vals[4]:.1f} |")
    return lines


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


def _plot_success_per_group(data: dict[str, Any], path: Path) -> None:
    """This backbone's success per difficulty group (with 95% intervals) beside the published MT50 rows."""
    rows = data["groups"]["groups"]
    series = {"this backbone": [100 * (rows[k]["success_rate"] or 0.0) for k in GROUPS]}
    series.update({n: list(v[:4]) for n, v in PUBLISHED_MT50.items()})
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series.items()):
        err = None
        if i == 0:
            ci = [rows[k]["ci95"] or (0.0, 0.0) for k in GROUPS]
            err = np.array([[v - 100 * c[0], 100 * c[1] - v] for v, c in zip(vals, ci, strict=True)]).T
        ax.bar(np.arange(len(GROUPS)) + i * width, vals, width, label=name, yerr=err, capsize=2,
               color="k" if i == 0 else None)
    labels = [f"{GROUP_LABELS[k]}\n({len(rows[k]['tasks'])} tasks here)" for k in GROUPS]
    ax.set_xticks(np.arange(len(GROUPS)) + 0.4 - width / 2, labels)
    ax.set_ylim(0, 100)
    ax.set_ylabel("success (%)")
    ax.set_title("Meta-World success per difficulty group (published rows: MT50, other protocols)", fontsize=9)
    ax.legend(fontsize=7)
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
    for spec in (s for s in bench.method_specs() if not s.seed_of):
        log = _log(bench.run_dir(task, spec.name))
        ax.plot([r["step"] for r in log if "loss" in r], [r["loss"] for r in log if "loss" in r], label=spec.name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (normalised L1)")
    ax.set_title(f"learning curves ({task.removesuffix('-v3')} for fine-tuning)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
