"""`vla-adapter doctor`: what this machine has, what is missing, and how to fix it.

Every probe runs in its own subprocess so that a probe that crashes (a broken
GL driver, a missing shared library) is reported instead of killing the tool,
and so that importing torch or rclpy here never slows other subcommands.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

PROBE_TIMEOUT_S = 60.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required_for: str
    fix: str = ""


# Each probe prints one JSON object: {"detail": "..."}; a non-zero exit is a failure.
PROBES: dict[str, tuple[str, str, str]] = {
    "python": (
        "import json, sys; print(json.dumps({'detail': sys.version.split()[0] + ' ' + sys.executable}))",
        "everything",
        "use Python 3.11 (the ROS 2 wheels are cp311)",
    ),
    "rclpy": (
        "import json, rclpy, os; from rclpy.utilities import get_rmw_implementation_identifier as g; "
        "print(json.dumps({'detail': 'rmw=' + g()}))",
        "policy node, simulator bridge, service clients",
        "make setup (pip: requirements/ros.txt) or source your ROS 2 install",
    ),
    "vla_adapter_interfaces": (
        "import json; from vla_adapter_interfaces.srv import SwitchAdapter; "
        "from vla_adapter_interfaces.msg import ActionChunk; print(json.dumps({'detail': 'importable'}))",
        "policy node, service clients",
        'make setup, then eval "$(make -s env)" (sources build/install)',
    ),
    "onnxruntime": (
        "import json, onnxruntime as ort; "
        "print(json.dumps({'detail': ort.__version__ + ' providers=' + ','.join(ort.get_available_providers())}))",
        "policy runtime",
        "pip install -r requirements/runtime.txt",
    ),
    "opencv": (
        "import json, cv2; print(json.dumps({'detail': cv2.__version__}))",
        "policy runtime",
        "pip install -r requirements/runtime.txt",
    ),
    "tokenizers": (
        "import json, tokenizers; print(json.dumps({'detail': tokenizers.__version__}))",
        "policy runtime (instruction encoder)",
        "pip install -r requirements/runtime.txt",
    ),
    "rosbags": (
        "import json, rosbags; from importlib.metadata import version; "
        "print(json.dumps({'detail': version('rosbags')}))",
        "bag recording, datasets, replay",
        "pip install -r requirements/runtime.txt",
    ),
    "torch": (
        "import json, torch; print(json.dumps({'detail': torch.__version__ + "
        "' cuda=' + str(torch.cuda.is_available())}))",
        "training and export only (not needed on the robot)",
        "pip install -r requirements/train.txt",
    ),
    "mujoco_render": (
        "import json, os, time, mujoco; m = mujoco.MjModel.from_xml_string("
        "'<mujoco><worldbody><light pos=\"0 0 1\"/><geom type=\"sphere\" size=\".1\"/></worldbody></mujoco>'); "
        "d = mujoco.MjData(m); r = mujoco.Renderer(m, 96, 96); mujoco.mj_forward(m, d); r.update_scene(d); "
        "t = time.perf_counter(); [r.render() for _ in range(10)]; "
        "print(json.dumps({'detail': 'MUJOCO_GL=%s mujoco %s, %.1f ms/frame (96x96)' % ("
        "os.environ.get('MUJOCO_GL', '(unset)'), mujoco.__version__, (time.perf_counter() - t) * 100)}))",
        "simulator recording, evaluation, simulator bridge",
        "apt-get install libegl1 libegl-mesa0 (MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa)",
    ),
    "metaworld": (
        "import json, metaworld; from importlib.metadata import version; "
        "print(json.dumps({'detail': version('metaworld')}))",
        "simulator recording, evaluation, simulator bridge",
        "pip install -r requirements/train.txt",
    ),
}


def _probe(name: str, code: str, required_for: str, fix: str) -> Check:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Check(name, False, f"probe timed out after {PROBE_TIMEOUT_S:.0f} s", required_for, fix)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return Check(name, False, last[:200], required_for, fix)
    try:
        detail = json.loads(proc.stdout.strip().splitlines()[-1])["detail"]
    except (ValueError, KeyError, IndexError):
        detail = proc.stdout.strip()[:200]
    return Check(name, True, detail, required_for, fix)


def dds_check(env: dict[str, str] | None = None) -> Check:
    env = dict(os.environ if env is None else env)
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(unset)")
    dom = env.get("ROS_DOMAIN_ID", "(unset)")
    prof = env.get("FASTDDS_DEFAULT_PROFILES_FILE", "(unset)")
    ok = rng == "LOCALHOST" and dom != "(unset)"
    detail = f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng} ROS_DOMAIN_ID={dom} FASTDDS_DEFAULT_PROFILES_FILE={prof}"
    fix = 'for tests and demos: eval "$(make -s env)" (loopback only); on a robot, your own DDS settings'
    return Check("dds_env", ok, detail, "tests/demos must stay on loopback", fix)


def collect(only: list[str] | None = None) -> list[Check]:
    checks = [
        _probe(name, code, req, fix) for name, (code, req, fix) in PROBES.items() if not only or name in only
    ]
    if not only or "dds_env" in only:
        checks.append(dds_check())
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--only", nargs="*", choices=[*PROBES, "dds_env"], help="run only these checks")
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when any check fails (default: only print)"
    )


def run(args: argparse.Namespace) -> int:
    checks = collect(args.only)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        print(f"vla-adapter doctor (python {sys.version.split()[0]})")
        for c in checks:
            mark = "ok  " if c.ok else "MISS"
            print(f"  [{mark}] {c.name:<{width}}  {c.detail}")
            if not c.ok:
                print(f"         {'':<{width}}  needed for: {c.required_for}; fix: {c.fix}")
        missing = [c.name for c in checks if not c.ok]
        print("all checks passed" if not missing else f"missing: {', '.join(missing)}")
    return 1 if args.strict and any(not c.ok for c in checks) else 0
