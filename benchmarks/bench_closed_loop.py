"""Closed-loop success through the executor core in virtual time, per strategy x latency (issue 15).

    python benchmarks/bench_closed_loop.py [--episodes 10] [--out artifacts/bench_closed_loop]
    python benchmarks/bench_closed_loop.py --tasks faucet-open --episodes 10 --decompose

The bundled model (models/default, ONNX runtime, CPU) drives Meta-World through the real
:class:`~vla_adapter_ros.execution.ChunkExecutor` on a virtual clock
(:mod:`vla_adapter_ros.core.closed_loop`): the simulator steps at 80 Hz on the executor's newest
command, the camera at ``--camera-rate`` (the demo's 40 Hz), the policy answers each frame
``latency`` later, the executor ticks at ``--control-rate``. No sleeps, no ROS: every number is a
function of the settings, whatever the machine's load. ``lockstep`` is the in-process evaluation
(:func:`vla_adapter_ros.core.evaluate.evaluate_task`, what the ROS demo's lockstep reproduces bit for
bit) on the same seeds (100000 on) and instructions.

``--decompose`` adds rows that change one thing at a time from the default (cubic interpolation,
0.1 s blend window, ticks in phase with the simulator), at each of ``--decompose-latencies``:
interpolation ``step``/``linear``, ticks ahead of the simulator's steps by each of ``--phases``
(fractions of a control period; on a wall clock the phase is arbitrary), one frame per chunk
(20 Hz), and at the largest of them blend windows. ``--chunk-end-grace`` sets the executor's
parameter for every row (what the default was chosen from).

Prints the tables, writes ``bench_closed_loop.json`` and ``bench_closed_loop.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla_adapter_ros.core.closed_loop import LoopTiming, evaluate_executor_task, metaworld_dims  # noqa: E402
from vla_adapter_ros.core.evaluate import OnnxPolicySource, evaluate_task  # noqa: E402
from vla_adapter_ros.core.sim.metaworld_env import canonical_task  # noqa: E402
from vla_adapter_ros.execution import STRATEGIES, ExecutorSettings  # noqa: E402

DEFAULT_TASKS = ("coffee-button", "faucet-open", "handle-press")


@dataclass(frozen=True)
class Row:
    label: str  # what differs from the default
    strategy: str
    latency: float
    interpolation: str = "cubic"
    blend_window: float = 0.1
    tick_lead: float = 0.0
    camera_rate: float = 0.0  # 0 = --camera-rate


def rows(args: argparse.Namespace) -> list[Row]:
    out = [Row("", s, lat) for lat in args.latencies for s in args.strategies]
    if args.decompose:
        kinds = args.decompose_kinds
        for lat in args.decompose_latencies:
            for s in args.strategies:
                if "interp" in kinds:
                    out += [Row(f"interp {i}", s, lat, interpolation=i) for i in ("step", "linear")]
                if "phase" in kinds:
                    out += [Row(f"ticks lead {f * 1e3 / args.control_rate:.2f} ms", s, lat,
                                tick_lead=f / args.control_rate) for f in args.phases]
                if "camera" in kinds:
                    out.append(Row("camera 20 Hz", s, lat, camera_rate=20.0))
        lat = max(args.decompose_latencies)
        if "window" in kinds:
            out += [Row(f"window {w * 1e3:.0f} ms", "blend", lat, blend_window=w) for w in (0.0125, 0.025, 0.05)]
        if "lockstep" in kinds:
            out += [Row("lockstep-like: step, 20 Hz", "hold", 0.0, interpolation="step", camera_rate=20.0)]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = OnnxPolicySource(args.model_dir, providers=["cpu"])
    by_task = {canonical_task(a.task): a.name for a in source.policy.manifest.adapters}
    chunk_dt = float(source.policy.manifest.actions.dt)
    k = int(source.policy.manifest.actions.chunk_length)
    dims = metaworld_dims()
    res: dict[str, Any] = {"episodes": args.episodes, "seed_start": args.seed_start, "camera_rate": args.camera_rate,
                           "control_rate": args.control_rate, "chunk_end_grace": args.chunk_end_grace, "tasks": {}}
    for name in args.tasks:
        task = canonical_task(name)
        source.policy.switch(by_task[task])
        t0 = time.perf_counter()
        lock = evaluate_task(task, source, episodes=args.episodes, seed_start=args.seed_start, n_action_steps=k,
                             progress=False)
        entry: dict[str, Any] = {"lockstep": {"successes": lock.successes, "steps": lock.mean_steps}, "rows": []}
        print(f"{task}: lockstep {lock.successes}/{lock.episodes} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for row in rows(args):
            t0 = time.perf_counter()
            settings = ExecutorSettings(args.control_rate, strategy=row.strategy, interpolation=row.interpolation,
                                        blend_window=row.blend_window, chunk_end_grace=args.chunk_end_grace)
            timing = LoopTiming(latency=row.latency, camera_rate=row.camera_rate or args.camera_rate,
                                tick_lead=row.tick_lead)
            r = evaluate_executor_task(task, source, settings, timing, episodes=args.episodes,
                                       seed_start=args.seed_start, chunk_dt=chunk_dt, dims=dims,
                                       adapter=by_task[task])
            ages = [e.command_age_p50_ms for e in r.results if np.isfinite(e.command_age_p50_ms)]  # type: ignore[attr-defined]
            entry["rows"].append({**row.__dict__, "successes": r.successes, "steps": r.mean_steps,
                                  "age_p50_ms": float(np.median(ages)) if ages else float("nan")})
            print(f"  {row.strategy:<18} {row.latency * 1e3:>4.0f} ms {row.label:<28} {r.successes:>3}/{r.episodes} "
                  f"steps {r.mean_steps:>5.0f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        res["tasks"][task] = entry
    source.policy.close()
    return res


def tables(res: dict[str, Any], latencies: list[float], strategies: list[str]) -> str:
    n = res["episodes"]
    head = "| task | lockstep | " + " | ".join(f"{s} @ {lat * 1e3:.0f} ms" for lat in latencies for s in strategies)
    lines = [head + " |", "|" + "---|" * (2 + len(latencies) * len(strategies))]
    for task, e in res["tasks"].items():
        base = [r for r in e["rows"] if not r["label"]]
        cells = []
        for lat in latencies:
            for s in strategies:
                r = next(r for r in base if r["strategy"] == s and r["latency"] == lat)
                cells.append(f"{r['successes']}/{n} ({(r['successes'] - e['lockstep']['successes']) * 100 / n:+.0f} pp), "
                             f"{r['steps']:.0f}")
        lines.append(f"| {task.removesuffix('-v3')} | {e['lockstep']['successes']}/{n}, {e['lockstep']['steps']:.0f} | "
                     + " | ".join(cells) + " |")
    lines.append("(success (difference to lockstep), mean simulator steps per episode: how fast the arm gets there)")
    extra = [(task, r) for task, e in res["tasks"].items() for r in e["rows"] if r["label"]]
    if extra:
        lines += ["", "| task | strategy | latency | change from the default | success | mean steps |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {task.removesuffix('-v3')} | {r['strategy']} | {r['latency'] * 1e3:.0f} ms | {r['label']} | "
                  f"{r['successes']}/{n} | {r['steps']:.0f} |" for task, r in extra]
    return "\n".join(lines)


def plot(res: dict[str, Any], latencies: list[float], strategies: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    tasks = list(res["tasks"])
    fig = Figure(figsize=(3.2 * len(tasks) + 1, 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(tasks), sharey=True))
    n = res["episodes"]
    width = 0.8 / len(strategies)
    for ax, task in zip(axes, tasks, strict=True):
        e = res["tasks"][task]
        x = np.arange(len(latencies))
        for i, s in enumerate(strategies):
            ys = [next(r["successes"] for r in e["rows"] if not r["label"] and r["strategy"] == s
                       and r["latency"] == lat) / n for lat in latencies]
            ax.bar(x + (i - (len(strategies) - 1) / 2) * width, ys, width, label=s)
        ax.axhline(e["lockstep"]["successes"] / n, color="k", ls="--", lw=1, label="lockstep")
        ax.set_xticks(x, [f"{lat * 1e3:.0f} ms" for lat in latencies])
        ax.set_title(task.removesuffix("-v3"))
        ax.set_xlabel("policy latency")
    axes[0].set_ylabel(f"success ({n} episodes)")
    axes[0].set_ylim(0, 1.05)
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated Meta-World tasks")
    ap.add_argument("--episodes", type=int, default=10, help="episodes per task and row (seeds from --seed-start)")
    ap.add_argument("--seed-start", type=int, default=100_000)
    ap.add_argument("--latencies", default="0,0.025,0.033", help="policy latencies in s, comma-separated")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--camera-rate", type=float, default=40.0, help="Hz (the demo's real-time simulator: 40)")
    ap.add_argument("--control-rate", type=float, default=80.0, help="executor Hz (the contract's 80)")
    ap.add_argument("--decompose", action="store_true", help="also one-change-at-a-time rows (see the docstring)")
    ap.add_argument("--decompose-latencies", default="", help="latencies of the --decompose rows (default: the largest "
                                                               "of --latencies)")
    ap.add_argument("--decompose-kinds", default="interp,phase,camera,window,lockstep",
                    help="--decompose: which rows, comma-separated")
    ap.add_argument("--phases", default="0.5", help="--decompose: tick leads in control periods, comma-separated")
    ap.add_argument("--chunk-end-grace", type=float, default=ExecutorSettings.chunk_end_grace,
                    help="s; the executor's chunk_end_grace for every row")
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_closed_loop"))
    args = ap.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.latencies = [float(x) for x in args.latencies.split(",")]
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.decompose_latencies = ([float(x) for x in args.decompose_latencies.split(",")] if args.decompose_latencies
                                else [max(args.latencies)])
    args.phases = [float(x) for x in args.phases.split(",")]
    args.decompose_kinds = {k.strip() for k in args.decompose_kinds.split(",")}
    t0 = time.perf_counter()
    res = run(args)
    res["seconds"] = time.perf_counter() - t0
    print()
    print(tables(res, args.latencies, args.strategies))
    print(f"\n{res['seconds']:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_closed_loop.json").write_text(json.dumps(res, indent=1))
    plot(res, args.latencies, args.strategies, args.out / "bench_closed_loop.png")
    print(f"wrote {args.out / 'bench_closed_loop.json'} and bench_closed_loop.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
