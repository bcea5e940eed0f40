"""Benchmark of the action executor: control-loop timing, smoothness at chunk boundaries, command age.

    python benchmarks/bench_executor.py [--seconds 60] [--out artifacts/bench_executor]
    python benchmarks/bench_executor.py --seconds 600 --rates 100 --loops thread   # issue 15's 10-minute goal

Separate processes on loopback DDS: ``vla_adapter_executor`` as its console script, this process
as the policy (ActionChunks at 10 Hz, 20 steps of 50 ms, stamped 30 ms in the past like a camera
frame after inference) and as the controller (subscribing to every command).

1. Timing, for each control rate (100, 500 Hz) and loop (``timer``: an rclpy timer on the node's
   executor; ``thread``: a thread with absolute deadlines; ``thread_fifo``: the same thread with
   SCHED_FIFO priority 50 when the machine allows it): the period between control ticks as the
   node measures it (PeriodStats: |interval - period| p50/p99; missed ticks = deadlines that passed
   without their tick, from the deadlines the loop reports; the longest lateness behind a deadline),
   as the controller receives the Float64MultiArray (same, receive side: adds DDS
   and this process's scheduling), and the node's CPU use. ``--seconds`` per configuration, split
   into ``--segments`` interleaved segments (a fresh node each) so load changes hit all alike.
   Goal at 100 Hz: p99 period error <= 20 % of the period, 0 missed ticks.
2. Smoothness, 10 Hz policy at 100 Hz, cubic interpolation, per strategy: consecutive chunks
   disagree (each chunk's prediction is offset by N(0, 2 cm)-like noise, as a real policy's
   successive predictions do); max and p99 |velocity change between ticks| of the commanded joint
   velocity (JointTrajectory first point). Goal: blend <= 1/5 of hold. The same signal through the
   ROS-free core for every interpolation shows what interpolation alone does.
3. Age of the executed command (tick time - stamp of the frame its newest chunk answered),
   p50/p99, from the node's own window.

Prints one table, writes ``bench_executor.json`` and ``bench_executor.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla_adapter_ros import dds_env  # noqa: E402
from vla_adapter_ros.execution import MISS_CAUSES  # noqa: E402
from vla_adapter_ros.ros.harness import NodeProcess, node_command  # noqa: E402

NAMES = ["j1", "j2", "j3", "gripper"]
POLICY_HZ, CHUNK_K, CHUNK_DT, LATENCY_S, NOISE = 10.0, 20, 0.05, 0.03, 0.02
GOAL_P99_FRACTION, GOAL_BLEND_RATIO = 0.2, 0.2
LOOPS = {"timer": ("timer", 0), "thread": ("thread", 0), "thread_fifo": ("thread", 50)}


def contract(prefix: str) -> dict[str, Any]:
    return {"version": 1, "robot": "bench_arm", "cameras": {"front": {"topic": f"{prefix}/image"}},
            "actions": [*({"name": n, "kind": "joint_position", "unit": "rad", "low": -3.0, "high": 3.0}
                          for n in NAMES[:3]),
                        {"name": "gripper", "kind": "gripper", "unit": "m", "low": 0.0, "high": 0.08}],
            "outputs": [{"type": "Float64MultiArray", "topic": f"{prefix}/command"},
                        {"type": "JointTrajectory", "topic": f"{prefix}/joint_trajectory", "actions": NAMES[:3]}]}


class Policy:
    """Smooth joint motion; every chunk's prediction offset by its own noise (successive predictions disagree)."""

    def __init__(self, seed: int = 0, noise: float = NOISE) -> None:
        self.rng, self.noise = np.random.default_rng(seed), noise

    def __call__(self, t: float) -> np.ndarray:
        ts = t + np.arange(CHUNK_K) * CHUNK_DT
        joints = np.stack([0.5 * np.sin(1.3 * ts), 0.4 * np.cos(0.9 * ts), 0.3 * np.sin(0.5 * ts + 1)], 1)
        joints += self.rng.normal(0.0, self.noise, 3)
        return np.hstack([joints, np.full((CHUNK_K, 1), 0.04)])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_node(env: dict[str, str], tmp: Path, seconds: float, params: dict[str, Any], sink: dict[str, Any]) -> None:
    """One executor process driven for ``seconds`` after warm-up; fills ``sink`` with what was measured."""
    from vla_adapter_ros.ros.executor_driver import ChunkStream, ExecutorDriver

    name = f"bench_executor_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    prefix = f"/{name}"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(contract(prefix)))
    argv = node_command("vla_adapter_executor", name, {"contract": str(path), "chunk_topic": f"{prefix}/action",
                                                       "start_enabled": True, **params})
    outputs = {f"{prefix}/command": "Float64MultiArray", f"{prefix}/joint_trajectory": "JointTrajectory"}
    with NodeProcess(argv, env, tmp / f"{name}.log") as proc:
        driver = ExecutorDriver(name, f"{prefix}/action", outputs)
        try:
            driver.wait_until_connected(60)
            with ChunkStream(driver, NAMES, POLICY_HZ, CHUNK_DT, Policy(len(sink)), latency_s=LATENCY_S):
                driver.wait_status(lambda s: s["state"] == "executing" and s["executing_ticks"] > 50, 30, "warm")
                before, cpu0, t0 = driver.status(), cpu_seconds(proc.pid), time.monotonic()
                time.sleep(seconds)  # the measurement window (readiness above was observed, not slept)
                after, cpu1, t1 = driver.status(), cpu_seconds(proc.pid), time.monotonic()
            sink.update(before=before, after=after, cpu=(cpu1 - cpu0) / (t1 - t0), t0=t0, t1=t1,
                        commands=[t for t, _ in driver.received(f"{prefix}/command") if t0 <= t <= t1],
                        trajectory=[(t, list(m.points[0].velocities), list(m.points[0].positions))
                                    for t, m in driver.received(f"{prefix}/joint_trajectory") if t0 <= t <= t1])
        finally:
            driver.close()


def timing(env: dict[str, str], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    configs = [(rate, loop) for rate in args.rates for loop in args.loops]
    results: dict[str, dict[str, Any]] = {f"{loop}@{rate:g}": {"segments": []} for rate, loop in configs}
    per_segment = args.seconds / args.segments
    for seg in range(args.segments):
        for rate, loop in configs:
            kind, priority = LOOPS[loop]
            sink: dict[str, Any] = {}
            run_node(env, tmp, per_segment, {"control_rate": rate, "control_loop": kind, "realtime_priority": priority,
                                             "timing_window": int(per_segment * rate) + 10}, sink)
            results[f"{loop}@{rate:g}"]["segments"].append(sink)
            print(f"  segment {seg + 1}/{args.segments} {loop} @ {rate:g} Hz: missed "
                  f"{sink['after']['missed_ticks'] - sink['before']['missed_ticks']:.0f}, node p99 "
                  f"{sink['after']['period_error_p99_ms']:.3f} ms", flush=True)
    out = {}
    for (rate, loop), (key, res) in zip(configs, results.items(), strict=True):
        segs = res["segments"]
        period_ms = 1e3 / rate
        rx = np.concatenate([np.abs(np.diff(s["commands"]) * 1e3 - period_ms) for s in segs])
        node_p50 = float(np.median([s["after"]["period_error_p50_ms"] for s in segs]))
        node_p99 = float(np.median([s["after"]["period_error_p99_ms"] for s in segs]))
        out[key] = {
            "rate_hz": rate, "loop": loop, "seconds": args.seconds, "period_ms": period_ms,
            "node_error_p50_ms": node_p50, "node_error_p99_ms": node_p99,
            "node_error_p99_worst_segment_ms": float(max(s["after"]["period_error_p99_ms"] for s in segs)),
            "node_error_max_ms": float(max(s["after"]["max_period_error_ms"] for s in segs)),  # start-up included
            "missed_ticks": int(sum(s["after"]["missed_ticks"] - s["before"]["missed_ticks"] for s in segs)),
            **{f"missed_{c}": int(sum(s["after"][f"missed_{c}"] - s["before"][f"missed_{c}"] for s in segs))
               for c in MISS_CAUSES},
            "max_tick_ms": float(max(s["after"]["max_tick_ms"] for s in segs)),
            "max_late_ms": float(max(s["after"]["max_late_ms"] for s in segs)),
            "gc_max_pause_ms": float(max(s["after"]["gc_max_pause_ms"] for s in segs)),
            "ticks": int(sum(s["after"]["ticks"] - s["before"]["ticks"] for s in segs)),
            "rx_error_p50_ms": float(np.percentile(rx, 50)), "rx_error_p99_ms": float(np.percentile(rx, 99)),
            "rx_error_max_ms": float(rx.max()), "rx_count": int(rx.size + len(segs)),
            "node_cpu_percent": float(np.median([s["cpu"] for s in segs]) * 100),
            "goal_met": bool(node_p99 <= GOAL_P99_FRACTION * period_ms and
                             sum(s["after"]["missed_ticks"] - s["before"]["missed_ticks"] for s in segs) == 0),
            "rx_errors_ms": np.percentile(rx, np.linspace(0, 100, 201)).tolist(),
        }
    return out


def velocity_jumps(velocities: np.ndarray) -> tuple[float, float]:
    jumps = np.abs(np.diff(velocities, axis=0)).max(axis=1)
    return float(jumps.max()), float(np.percentile(jumps, 99))


def smoothness(env: dict[str, str], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for strategy in ("hold", "temporal_ensemble", "blend"):
        sink: dict[str, Any] = {}
        run_node(env, tmp, args.smooth_seconds, {"control_rate": 100.0, "strategy": strategy,
                                                 "interpolation": "cubic", "timing_window": 100_000}, sink)
        v = np.array([vel for _, vel, _ in sink["trajectory"]])
        max_jump, p99_jump = velocity_jumps(v)
        out[strategy] = {"max_velocity_jump": max_jump, "p99_velocity_jump": p99_jump,
                         "age_p50_ms": sink["after"]["command_age_p50_ms"],
                         "age_p99_ms": sink["after"]["command_age_p99_ms"], "ticks": int(len(v)),
                         "trace_t": [t - sink["t0"] for t, _, _ in sink["trajectory"][:300]],
                         "trace_v": v[:300, 0].tolist()}
    out["blend_over_hold"] = out["blend"]["max_velocity_jump"] / out["hold"]["max_velocity_jump"]
    out["goal_met"] = bool(out["blend_over_hold"] <= GOAL_BLEND_RATIO)
    return out


def core_smoothness(seconds: float = 20.0) -> dict[str, Any]:
    """The same policy through the ROS-free core on a perfect 100 Hz clock: interpolation x strategy, with
    chunks that disagree (the policy above) and that agree (noise 0: only the interpolation matters)."""
    from vla_adapter_ros.contract import ActionDim
    from vla_adapter_ros.execution import ChunkExecutor, Dims, ExecutorSettings

    dims = Dims.from_actions([*(ActionDim(n, "joint_position", "rad") for n in NAMES[:3]),
                              ActionDim("gripper", "gripper", "m")])
    out: dict[str, Any] = {}
    for (interpolation, noise), strategy in itertools.product(
            itertools.product(("step", "linear", "cubic", "spline"), (NOISE, 0.0)),
            ("hold", "temporal_ensemble", "blend")):
            ex = ChunkExecutor(dims, ExecutorSettings(control_rate=100.0, strategy=strategy,
                                                      interpolation=interpolation))
            ex.enable(True, 0)
            policy, values, t0 = Policy(0, noise), [], 10**12
            for i in range(int(seconds * 100)):
                t = t0 + i * 10_000_000
                if i % 10 == 0:
                    stamp = t - int(LATENCY_S * 1e9)
                    ex.accept(stamp, CHUNK_DT, NAMES, policy(stamp * 1e-9), "a", t)
                values.append(ex.command(t).value[:3])
            v = np.diff(np.array(values[2:]), axis=0) * 100
            a = np.diff(v, axis=0) * 100
            out[f"{interpolation}/{noise:g}/{strategy}"] = {"max_velocity_jump": velocity_jumps(v)[0],
                                                            "max_acceleration": float(np.abs(a).max())}
    return out


def table(res: dict[str, Any]) -> str:
    lines = ["| loop @ rate | node error p50 / p99 (ms) | missed ticks (overrun / gc / late start) | latest tick / "
             "longest tick / GC pause (ms) | rx error p50 / p99 / max (ms) | node CPU | goal (p99 <= 20 % of period, 0 missed) |",
             "|---|---|---|---|---|---|---|"]
    for key, r in res["timing"].items():
        goal = ("met" if r["goal_met"] else "not met") if r["rate_hz"] == 100 else "(reference)"
        causes = " / ".join(str(r[f"missed_{c}"]) for c in MISS_CAUSES)
        lines.append(f"| {key} Hz | {r['node_error_p50_ms']:.3f} / {r['node_error_p99_ms']:.3f} | {r['missed_ticks']} "
                     f"of {r['ticks']} ({causes}) | {r['max_late_ms']:.1f} / {r['max_tick_ms']:.1f} / "
                     f"{r['gc_max_pause_ms']:.1f} | {r['rx_error_p50_ms']:.3f} / {r['rx_error_p99_ms']:.3f} / "
                     f"{r['rx_error_max_ms']:.1f} | {r['node_cpu_percent']:.0f} % | {goal} |")
    s = res["smoothness"]
    lines += ["", "| strategy (10 Hz policy, 100 Hz, cubic) | max / p99 velocity jump per tick (rad/s) | command age "
              "p50 / p99 (ms) |", "|---|---|---|"]
    for strategy in ("hold", "temporal_ensemble", "blend"):
        r = s[strategy]
        lines.append(f"| {strategy} | {r['max_velocity_jump']:.3f} / {r['p99_velocity_jump']:.3f} | "
                     f"{r['age_p50_ms']:.1f} / {r['age_p99_ms']:.1f} |")
    lines.append(f"| blend / hold | {s['blend_over_hold']:.3f} (goal <= {GOAL_BLEND_RATIO}: "
                 f"{'met' if s['goal_met'] else 'not met'}) | |")
    return "\n".join([*lines, "", core_table(res["core"])])


def core_table(core: dict[str, Any]) -> str:
    lines = ["| ROS-free core, 100 Hz: max velocity jump per tick (rad/s), max acceleration (rad/s^2) | "
             + " | ".join(("hold", "temporal_ensemble", "blend")) + " |", "|---|---|---|---|"]
    for interpolation in ("step", "linear", "cubic", "spline"):
        for noise, what in ((NOISE, "chunks disagree"), (0.0, "chunks agree")):
            cells = [core[f"{interpolation}/{noise:g}/{s}"] for s in ("hold", "temporal_ensemble", "blend")]
            lines.append(f"| {interpolation}, {what} | "
                         + " | ".join(f"{c['max_velocity_jump']:.3f}, {c['max_acceleration']:.0f}" for c in cells) + " |")
    ratio = core[f"cubic/{NOISE:g}/blend"]["max_velocity_jump"] / core[f"cubic/{NOISE:g}/hold"]["max_velocity_jump"]
    lines.append(f"(cubic, chunks disagree: blend / hold = {ratio:.3f}, goal <= {GOAL_BLEND_RATIO})")
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    q = np.linspace(0, 100, 201)
    for key, r in res["timing"].items():
        ax1.plot(np.array(r["rx_errors_ms"]) / r["period_ms"] * 100, q, label=key)
    ax1.axvline(20, color="k", ls=":", lw=1)
    ax1.set(xscale="symlog", xlim=(0, None), xlabel="|received period - period| (% of the period)",
            ylabel="percentile", title="command period error (receive side)")
    ax1.legend(fontsize=8)
    for strategy in ("hold", "temporal_ensemble", "blend"):
        r = res["smoothness"][strategy]
        ax2.plot(r["trace_t"], r["trace_v"], label=strategy, lw=1)
    ax2.set(xlabel="s (each strategy's own run)", ylabel="j1 commanded velocity (rad/s)",
            title="10 Hz policy at 100 Hz, chunks disagreeing")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per timing configuration "
                                                                "(issue 15's goal: --seconds 600)")
    ap.add_argument("--segments", type=int, default=3, help="interleaved segments per configuration")
    ap.add_argument("--rates", default="100,500", help="control rates in Hz, comma-separated")
    ap.add_argument("--loops", default="timer,thread,thread_fifo", help=f"from {list(LOOPS)}, comma-separated")
    ap.add_argument("--smooth-seconds", type=float, default=20.0, help="seconds per strategy; 0 = skip")
    ap.add_argument("--out", default="artifacts/bench_executor")
    ap.add_argument("--core-only", action="store_true", help="only the ROS-free core's smoothness table (seconds)")
    args = ap.parse_args(argv)
    if args.core_only:
        print(core_table(core_smoothness()))
        return 0
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.loops = [loop for loop in args.loops.split(",") if loop]
    unknown = set(args.loops) - set(LOOPS)
    if unknown:
        ap.error(f"unknown loops {sorted(unknown)}; choose from {list(LOOPS)}")
    lease = dds_env.lease_domain(15)  # held until this process exits
    os.environ.update(dds_env.localhost_env(lease.domain_id))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "load_before": os.getloadavg()}, "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"timing: {args.loops} at {args.rates} Hz, {args.seconds:g} s each in {args.segments} segments",
              flush=True)
        res["timing"] = timing(dict(os.environ), Path(tmp), args)
        if args.smooth_seconds > 0:
            res["smoothness"] = smoothness(dict(os.environ), Path(tmp), args)
            res["core"] = core_smoothness()
    res["machine"]["load_after"] = os.getloadavg()
    (out / "bench_executor.json").write_text(json.dumps(res, indent=1))
    if args.smooth_seconds > 0:
        print(table(res))
        plot(res, out / "bench_executor.png")
    else:
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "rx_errors_ms"}
                          for k, v in res["timing"].items()}, indent=1))
    print(f"load average before / after: {res['machine']['load_before']} / {res['machine']['load_after']} "
          f"on {res['machine']['cpus']} CPUs; wrote {out}/bench_executor.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
