"""Soak and stress of the policy node: bounded in time, loopback DDS only, separate processes.

    python benchmarks/soak.py [--minutes 10] [--stress] [--model-dir DIR] [--out artifacts/soak]

The policy node runs as its console script in its own process; this process plays the robot
(camera, instruction, joint states, adapter switches) through rclpy, like benchmarks/bench_ros.py
(whose Robot and model resolution it reuses).

Soak (default): camera at 30 Hz (96x96 rgb8, best effort), ``switch_adapter`` every 2 s cycling
through the manifest's adapters, for ``--minutes``. Reported:
- RSS growth of the node process after warm-up (median of the last 10 samples over the median
  of the first 10 after warm-up), goal < 5 %;
- missed switches: a call that failed or timed out, or no action naming the new adapter before
  the next switch, goal 0;
- stalls: actions whose latency (camera publish -> action received) exceeds 3 x the median, goal 0.

Stress (``--stress``): camera at 120 Hz, faster than inference (without ``--model-dir`` it exports
bench_ros's heavy random model, ~50 ms per inference on one CPU thread); no queue may build up: action
age (publish -> received) p99 <= 2 x inference p50 + one camera period, and the age in the last
third of the run is not larger than in the first third (ratio of p50s <= 1.5).

Prints a table, writes ``soak.json`` (or ``stress.json``) and a PNG beside it under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ros import HEAVY_MODEL, NODE, Robot, node_parameters, pct, resolve_model, serving  # noqa: E402

from vla_adapter_ros import dds_env  # noqa: E402
from vla_adapter_ros.ros.harness import NodeProcess, node_command  # noqa: E402

GOALS = {"rss_growth_pct": 5.0, "missed_switches": 0, "stalls": 0, "age_growth_ratio": 1.5}


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (the wheels' bootstrapper may re-execute the node)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def run(robot: Robot, node_pid: int, model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from vla_adapter_interfaces.srv import ListAdapters, SwitchAdapter

    adapters = serving(robot, model_dir)
    listing = robot.session.call(ListAdapters, f"/{NODE}/list_adapters", ListAdapters.Request(), 10)
    switcher = robot.session.client(SwitchAdapter, f"/{NODE}/switch_adapter")
    # The switch client's first round trip, unmeasured (an idempotent switch to the active adapter).
    robot.call(switcher, SwitchAdapter.Request(adapter=listing.active_adapter or adapters[0]), timeout=10, resend=True)
    hz = args.camera_hz or (120.0 if args.stress else 30.0)
    duration = args.minutes * 60.0
    image = robot.image(96, 96)
    stop = threading.Event()
    t_start = time.monotonic()
    rss: list[tuple[float, int]] = []
    switches: list[dict[str, Any]] = []

    def camera() -> None:
        next_t = time.monotonic()
        while not stop.is_set():
            robot.publish(image)  # with its JointState
            next_t += 1.0 / hz
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()  # behind schedule: do not burst to catch up

    def switch_loop() -> None:
        i = 0
        while not stop.wait(args.switch_every):
            name = adapters[(adapters.index(listing.active_adapter) + 1 + i) % len(adapters)]
            t_req = time.monotonic()
            try:
                reply, rtt = robot.call(switcher, SwitchAdapter.Request(adapter=name), timeout=5.0)
                ok, message = bool(reply.success), reply.message
            except RuntimeError as exc:
                ok, message, rtt = False, str(exc), float("nan")
            switches.append({"t": t_req - t_start, "t_reply": t_req + rtt - t_start, "adapter": name, "ok": ok,
                             "rtt_ms": rtt * 1e3, "message": message})
            i += 1

    def memory() -> None:
        while not stop.wait(1.0):
            rss.append((time.monotonic() - t_start, rss_bytes(node_pid)))

    threads = [threading.Thread(target=f, daemon=True) for f in (camera, switch_loop, memory)]
    for t in threads:
        t.start()
    last_print = 0.0
    while not stop.wait(1.0) and time.monotonic() - t_start < duration:  # progress every 30 s
        elapsed = time.monotonic() - t_start
        if elapsed - last_print >= 30:
            last_print = elapsed
            with robot._lock:
                n = len(robot.received)
            print(f"  {elapsed:5.0f} s: {n} actions, {len(switches)} switches, "
                  f"RSS {rss[-1][1] / 2**20 if rss else float('nan'):.1f} MiB", flush=True)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    with robot._lock:
        last = max(robot.sent)
    robot.results_for([last])  # the newest frame is always served (latest wins): then nothing is in flight
    status = robot.node_status()
    return analyse(robot, t_start, hz, duration, rss, switches, status, args)


def analyse(robot: Robot, t_start: float, hz: float, duration: float, rss: list[tuple[float, int]],
            switches: list[dict[str, Any]], status: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    with robot._lock:
        sent = dict(robot.sent)
        received = list(robot.received)
    rows = []  # (t since start, latency s, inference s, adapter)
    for t_recv, stamp, inference, adapter in received:
        if stamp in sent and sent[stamp] >= t_start:
            rows.append((t_recv - t_start, t_recv - sent[stamp], inference, adapter))
    rows.sort()
    warm = min(args.warmup_s, duration / 3)
    steady = [r for r in rows if r[0] >= warm]
    lat = np.array([r[1] for r in steady]) * 1e3
    inf = np.array([r[2] for r in steady]) * 1e3
    median = float(np.median(lat)) if lat.size else float("nan")
    stalls = int(np.sum(lat > 3 * median)) if lat.size else 0
    # RSS after warm-up
    after = [b for t, b in rss if t >= warm]
    rss_first = float(np.median(after[:10])) if after else float("nan")
    rss_last = float(np.median(after[-10:])) if after else float("nan")
    growth = (rss_last - rss_first) / rss_first * 100 if after else float("nan")
    # switches: refused/timed out, or no action naming the new adapter before the next switch request
    missed = []
    for k, s in enumerate(switches):
        end = switches[k + 1]["t"] if k + 1 < len(switches) else duration
        seen = any(s["t_reply"] <= t <= end + 0.5 and a == s["adapter"] for t, _, _, a in rows)
        if not s["ok"] or not seen:
            missed.append({**s, "seen_in_actions": seen})
    sent_n = sum(1 for v in sent.values() if v >= t_start)
    res: dict[str, Any] = {
        "mode": "stress" if args.stress else "soak", "minutes": args.minutes, "camera_hz": hz,
        "switch_every_s": args.switch_every, "warmup_s": warm, "frames_sent": sent_n, "actions": len(rows),
        "latency_p50_ms": median, "latency_p99_ms": pct(list(lat), 99), "latency_max_ms": float(lat.max()) if lat.size
        else float("nan"), "inference_p50_ms": float(np.median(inf)) if inf.size else float("nan"),
        "stalls": stalls, "stall_threshold_ms": 3 * median, "rss_first_mib": rss_first / 2**20,
        "rss_last_mib": rss_last / 2**20, "rss_growth_pct": growth, "switches": len(switches),
        "missed_switches": len(missed), "missed": missed[:20],
        "switch_rtt_p50_ms": pct([s["rtt_ms"] for s in switches if s["ok"]], 50),
        "switch_rtt_p99_ms": pct([s["rtt_ms"] for s in switches if s["ok"]], 99),
        "node_skipped_frames": int(status.get("skipped_frames", 0)), "node_frames_in": int(status.get("frames_in", 0)),
        "node_errors_total": int(status.get("errors_total", 0)), "node_refused_total": int(status.get("refused_total", 0)),
        "series": {"t": [r[0] for r in rows], "latency_ms": [r[1] * 1e3 for r in rows], "rss": rss,
                   "switch_t": [s["t"] for s in switches]},
    }
    checks = {"rss_growth_pct": growth < GOALS["rss_growth_pct"], "missed_switches": not missed,
              "stalls": stalls == GOALS["stalls"]}
    if args.stress:
        thirds = np.array_split(lat, 3) if lat.size >= 3 else [lat] * 3
        first, last = (float(np.median(x)) for x in (thirds[0], thirds[-1]))
        bound = 2 * res["inference_p50_ms"] + 1e3 / hz
        res.update({"age_p99_ms": pct(list(lat), 99), "age_bound_ms": bound, "age_p50_first_third_ms": first,
                    "age_p50_last_third_ms": last, "age_growth_ratio": last / first if first else float("nan")})
        checks["age_p99_bounded"] = res["age_p99_ms"] <= bound
        checks["no_queue_growth"] = res["age_growth_ratio"] <= GOALS["age_growth_ratio"]
        checks["stalls"] = True  # at 120 Hz latency = age; judged by the bound and the growth instead
    res["checks"] = checks
    res["passed"] = all(checks.values())
    return res


def report(res: dict[str, Any], out: Path) -> None:
    f = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [("camera", f"{res['camera_hz']:.0f} Hz, {res['minutes']} min, warm-up {res['warmup_s']:.0f} s"),
            ("frames sent / actions", f"{res['frames_sent']} / {res['actions']} (node skipped "
                                      f"{res['node_skipped_frames']}, errors {res['node_errors_total']})"),
            ("inference p50 (ms)", f"{f(res['inference_p50_ms'])} (camera period {1e3 / res['camera_hz']:.2f} ms)"),
            ("latency p50 / p99 / max (ms)", f"{f(res['latency_p50_ms'])} / {f(res['latency_p99_ms'])} / "
                                             f"{f(res['latency_max_ms'])}"),
            ("stalls > 3x median", f"{res['stalls']} (threshold {f(res['stall_threshold_ms'])} ms)"),
            ("RSS after warm-up -> end (MiB)", f"{f(res['rss_first_mib'])} -> {f(res['rss_last_mib'])}"),
            ("RSS growth (%)", f"{f(res['rss_growth_pct'])} (goal < {GOALS['rss_growth_pct']})"),
            ("switches / missed", f"{res['switches']} / {res['missed_switches']}"),
            ("switch rtt p50 / p99 (ms)", f"{f(res['switch_rtt_p50_ms'])} / {f(res['switch_rtt_p99_ms'])}")]
    if res["mode"] == "stress":
        rows += [("action age p99 (ms)", f"{f(res['age_p99_ms'])} (bound {f(res['age_bound_ms'])})"),
                 ("age p50 first / last third (ms)", f"{f(res['age_p50_first_third_ms'])} / "
                                                     f"{f(res['age_p50_last_third_ms'])} "
                                                     f"(ratio {f(res['age_growth_ratio'])})")]
    rows += [(f"check {k}", "pass" if v else "FAIL") for k, v in res["checks"].items()]
    width = max(len(k) for k, _ in rows)
    print(f"\n{res['mode']} of the policy node")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    name = res["mode"]
    (out / f"{name}.json").write_text(json.dumps(res, indent=1))
    plot(res, out / f"{name}.png")
    print(f"\nwrote {out / (name + '.json')} and {out / (name + '.png')}")


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["series"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
    ax0.plot(s["t"], s["latency_ms"], ".", ms=2)
    ax0.axhline(res["stall_threshold_ms"], color="r", lw=1, label="3 x median")
    ax0.axvline(res["warmup_s"], color="k", lw=1, ls=":", label="end of warm-up")
    ax0.set(title=f"latency, camera {res['camera_hz']:.0f} Hz", xlabel="s", ylabel="ms", yscale="log")
    ax0.legend()
    if s["rss"]:
        t, b = zip(*s["rss"], strict=True)
        ax1.plot(t, np.array(b) / 2**20)
    ax1.axvline(res["warmup_s"], color="k", lw=1, ls=":")
    ax1.set(title=f"node RSS (growth {res['rss_growth_pct']:.2f} %)", xlabel="s", ylabel="MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="run time (default 10)")
    ap.add_argument("--stress", action="store_true", help="camera at 120 Hz: bounded action age, no queue growth")
    ap.add_argument("--camera-hz", type=float, default=0.0, help="override the camera rate (30, or 120 with --stress)")
    ap.add_argument("--switch-every", type=float, default=2.0, help="seconds between adapter switches")
    ap.add_argument("--warmup-s", type=float, default=30.0, help="excluded from the figures (at most a third)")
    ap.add_argument("--model-dir", help="exported model directory (default: bundled, else a random one)")
    ap.add_argument("--out", default=str(ROOT / "artifacts" / "soak"))
    ap.add_argument("--providers", default="cpu")
    ap.add_argument("--intra-op-threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.minutes <= 0:
        ap.error(f"--minutes must be positive, got {args.minutes}")
    lease = dds_env.lease_domain(11)  # held until this process exits
    os.environ.update(dds_env.localhost_env(lease.domain_id))
    assert dds_env.is_localhost_only()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.stress and not args.model_dir:
            # 120 Hz must outrun inference: a heavy random model (~50 ms on one CPU thread), as bench_ros uses
            print("stress: exporting bench_ros's heavy random model (inference slower than the camera) ...",
                  flush=True)
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ros.py"), "--export-random", tmp,
                            "--heavy"], check=True)
            model_dir, note = Path(tmp) / "random_heavy", f"bench_ros HEAVY_MODEL {HEAVY_MODEL}, RANDOM weights"
        else:
            model_dir, note = resolve_model(args.model_dir, Path(tmp))
        print(f"model: {model_dir} ({note})", flush=True)
        robot = Robot()
        try:
            args.frames = 300
            cmd = node_command("vla_adapter_node", NODE, {**node_parameters(args), "model_dir": str(model_dir)})
            with NodeProcess(cmd, os.environ, out / "node.log") as proc:
                res = run(robot, proc.pid, model_dir, args)
        finally:
            robot.close()
    res["model"] = {"dir": str(model_dir), "note": note}
    report(res, out)
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
