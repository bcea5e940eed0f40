#!/usr/bin/env python
"""Regenerate tests/data: a small demo bag from the simulator and the golden replay output.

    OMP_NUM_THREADS=1 python scripts/make_test_bags.py [--model-dir models/default]

1. ``tests/data/demo_bag/``: one coffee-button-v3 episode (seed 100000, 40 frames, 96x96, mcap)
   recorded from Meta-World with the scripted expert by ``vla_adapter_ros.core.record`` (the
   same code as ``vla-adapter record-sim``); about 1.2 MB.
2. ``tests/data/golden/``: the answers of ``vla_adapter_node`` serving MODEL (adapter
   coffee_button, CPU, 1 thread) to that bag, recorded by ``vla-adapter replay --mode lockstep``.
   Regenerate it whenever the bundled model changes on purpose.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla_adapter_ros import dds_env  # noqa: E402
from vla_adapter_ros.ros.demo import POLICY_EXECUTABLE, POLICY_NODE, demo_parameters  # noqa: E402
from vla_adapter_ros.ros.harness import NodeProcess, node_command  # noqa: E402

DATA = ROOT / "tests" / "data"
TASK, SEED, FRAMES, ADAPTER = "coffee-button-v3", 100000, 40, "coffee_button"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--skip-bag", action="store_true", help="keep the demo bag, redo the golden output only")
    parser.add_argument("--bag-only", action="store_true", help="record the demo bag only (no model needed)")
    args = parser.parse_args()
    bag_root = DATA / "demo_bag"
    if not args.skip_bag:
        from vla_adapter_ros.core.record import record

        shutil.rmtree(bag_root, ignore_errors=True)
        tmp = DATA / "_record"
        shutil.rmtree(tmp, ignore_errors=True)
        record([TASK], 1, SEED, tmp, max_steps=FRAMES, progress=False)
        (bag,) = [p.parent for p in tmp.rglob("metadata.yaml")]
        shutil.move(str(bag), str(bag_root))
        shutil.rmtree(tmp)
    if args.bag_only:
        return 0
    golden = DATA / "golden"
    shutil.rmtree(golden, ignore_errors=True)
    lease = dds_env.lease_domain(salt=11)
    env = dds_env.localhost_env(lease.domain_id)
    env["OMP_NUM_THREADS"] = "1"
    logs = DATA / "_logs"
    logs.mkdir(exist_ok=True)
    node = NodeProcess(node_command(POLICY_EXECUTABLE, "vla_adapter", {
        **demo_parameters(POLICY_NODE), "model_dir": str(args.model_dir.resolve()), "adapter": ADAPTER}), env,
        logs / "policy.log")
    try:  # replay waits for the node itself: topics matched, then a probe frame answered
        rc = subprocess.call([sys.executable, "-m", "vla_adapter_ros.cli", "replay", str(bag_root), "--out",
                              str(golden), "--timeout", "60"], env=env)
    finally:
        node.stop()
        lease.release()
        shutil.rmtree(logs)
    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    print(f"tests/data: {size / 1e6:.2f} MB; replay exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
