"""Benchmark of the LeRobot conversion: frames per second both ways, and dataset size against the bags.

    python benchmarks/bench_dataset.py [--episodes 10] [--max-steps 100] [--out artifacts/bench_dataset]

Two recordings of Meta-World's scripted expert (door-close), as ``vla-adapter record-sim`` writes them:
a two-camera 96x96 robot (config/robots/metaworld_sawyer.yaml: corner + wrist) and one 640x480 camera.
Each is converted with ``vla-adapter dataset to-lerobot`` (LeRobot 0.4.4's writer in its venv: AV1
videos) and back with ``from-lerobot``; the times are wall clock of the whole command, so they include
starting the LeRobot process (importing torch + lerobot), reported on its own as ``startup`` (an empty
request). Needs the LeRobot venv (scripts/lerobot_env.sh; VLA_LEROBOT_VENV to use another).
Prints one table; writes ``bench_dataset.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.core.record import record_episode
from vla_adapter_ros.core.sim.metaworld_env import MetaWorldEnv, contract_views, use_headless_gl
from vla_adapter_ros.tools import lerobot_dataset as lr

ROOT = Path(__file__).resolve().parents[1]
TASK = "door-close-v3"


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def record_case(out: Path, episodes: int, max_steps: int, image_size: tuple[int, int],
                contract: RobotContract | None) -> tuple[list[Path], int]:
    views = contract_views(contract.camera_names) if contract is not None else None
    paths, frames = [], 0
    with MetaWorldEnv(TASK, image_size=image_size, max_steps=max_steps, views=views) as env:
        for seed in range(episodes):
            s = record_episode(env, out, seed, contract=contract)
            assert s.path is not None
            paths.append(s.path)
            frames += s.frames
    return paths, frames


def startup_seconds(staging: Path) -> float:
    """The LeRobot process's start (python + torch + lerobot imports) on an empty dataset read."""
    start = time.perf_counter()
    try:
        lr.run_worker({"mode": "read", "root": str(staging / "none"), "repo_id": "local/none", "out": str(staging)},
                      staging)
    except lr.DatasetError:
        pass  # no dataset there: the import is what was timed
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench_dataset"))
    args = parser.parse_args()
    use_headless_gl()
    args.out.mkdir(parents=True, exist_ok=True)
    sawyer = RobotContract.load(ROOT / "config" / "robots" / "metaworld_sawyer.yaml")
    cases = [("2 cameras 96x96", (96, 96), sawyer), ("1 camera 640x480", (480, 640), None)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        startup = startup_seconds(work)
        for name, size, contract in cases:
            case = work / name.replace(" ", "_")
            bags, frames = record_case(case / "bags", args.episodes, args.max_steps, size, contract)
            t0 = time.perf_counter()
            lr.to_lerobot(bags, case / "lerobot", contract=contract)
            t_to = time.perf_counter() - t0
            t0 = time.perf_counter()
            lr.from_lerobot(case / "lerobot", case / "back", contract=contract)
            t_from = time.perf_counter() - t0
            rows.append({"case": name, "episodes": len(bags), "frames": frames, "to_s": t_to, "from_s": t_from,
                         "to_fps": frames / t_to, "from_fps": frames / t_from,
                         "to_fps_after_startup": frames / max(t_to - startup, 1e-9),
                         "from_fps_after_startup": frames / max(t_from - startup, 1e-9),
                         "bags_mb": size_mb(case / "bags"), "lerobot_mb": size_mb(case / "lerobot"),
                         "back_mb": size_mb(case / "back")})
            shutil.rmtree(case)
    head = (f"{'case':<18} {'frames':>6} {'to-lerobot':>11} {'fr/s':>6} {'(-start)':>8} {'from-lerobot':>12} "
            f"{'fr/s':>6} {'(-start)':>8} {'bags MB':>8} {'LeRobot MB':>10} {'ratio':>6}")
    print(f"LeRobot process start-up (python + torch + lerobot imports): {startup:.1f} s, included in the times; "
          "(-start): frames/s without it")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:<18} {r['frames']:>6} {r['to_s']:>10.1f}s {r['to_fps']:>6.0f} "
              f"{r['to_fps_after_startup']:>8.0f} {r['from_s']:>11.1f}s {r['from_fps']:>6.0f} "
              f"{r['from_fps_after_startup']:>8.0f} {r['bags_mb']:>8.2f} {r['lerobot_mb']:>10.2f} "
              f"{r['bags_mb'] / max(r['lerobot_mb'], 1e-9):>5.0f}x")
    (args.out / "bench_dataset.json").write_text(json.dumps({"startup_s": startup, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
