"""`vla-adapter doctor`: what this machine has, what is missing, and how to fix it.

Every probe runs in its own subprocess so that a probe that crashes (a broken
GL driver, a missing shared library) is reported instead of killing the tool,
and so that importing torch or rclpy here never slows other subcommands.

The GPU checks (driver, onnxruntime build, the CUDA / cuDNN / TensorRT libraries the
providers load, by name) are optional: a CPU-only robot passes ``--strict`` without them;
``--gpu`` makes them required.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_adapter_ros.runtime import gpu_libs

PROBE_TIMEOUT_S = 60.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required_for: str
    fix: str = ""
    optional: bool = False  # GPU checks: --strict ignores them unless --gpu
    missing: list[str] = field(default_factory=list)  # shared libraries that do not load, by name


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


GPU_FOR = "GPU serving (TensorRT, CUDA providers)"
JETSON_HINT = "on a Jetson: JetPack's libraries and NVIDIA's Jetson wheel (README, GPU and Jetson)"
# name -> (fix); the probe itself is gpu_probe(name), run in a subprocess like the others.
GPU_PROBES: dict[str, str] = {
    "nvidia_driver": "install the NVIDIA driver (>= 580 for the CUDA 13 wheels of Python >= 3.11, >= 525 for "
                     f"CUDA 12); {JETSON_HINT}",
    "onnxruntime_gpu": "pip uninstall -y onnxruntime onnxruntime-gpu && pip install -r requirements/runtime-gpu.txt "
                       f"(x86_64); {JETSON_HINT}",
    "cuda_libraries": "pip install -r requirements/runtime-gpu.txt (NVIDIA's CUDA and cuDNN wheels), or CUDA + cuDNN 9 "
                      f"on LD_LIBRARY_PATH; {JETSON_HINT}",
    "tensorrt_libraries": "pip install -r requirements/runtime-gpu.txt (tensorrt-cu13-libs), or TensorRT 10 on "
                          f"LD_LIBRARY_PATH; {JETSON_HINT}",
}


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_probe(name: str) -> dict[str, Any]:
    """One GPU check in this process: ``{"ok": bool, "detail": str, "missing": [...]}``."""
    if name == "nvidia_driver":
        smi = shutil.which("nvidia-smi")
        gpus = ""
        if smi:
            out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            gpus = "; ".join(ln.strip() for ln in out.stdout.splitlines() if ln.strip())
        tegra = Path("/etc/nv_tegra_release")
        jetson = tegra.read_text().splitlines()[0].strip("# ") if tegra.is_file() else ""
        driver = gpu_libs.probe(gpu_libs.CUDA, dirs=[]).missing.get(gpu_libs.DRIVER)
        parts = [p for p in (gpus and f"GPUs: {gpus}", jetson and f"Jetson: {jetson}") if p]
        if driver is None:
            return {"ok": True, "detail": f"{gpu_libs.DRIVER} loads; " + ("; ".join(parts) or "no nvidia-smi")}
        return {"ok": False, "missing": [gpu_libs.DRIVER],
                "detail": f"no NVIDIA driver: {gpu_libs.DRIVER} does not load ({driver})"}
    if name == "onnxruntime_gpu":
        cpu, gpu = _installed("onnxruntime"), _installed("onnxruntime-gpu")
        if cpu and gpu:
            return {"ok": False, "detail": f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed: they "
                                           "overwrite each other's files"}
        if not gpu:
            return {"ok": False, "detail": f"onnxruntime {cpu or '(none)'} is the CPU build: no CUDA or TensorRT "
                                           "provider"}
        # why here: the doctor must run (and say so) where onnxruntime itself fails to import
        import onnxruntime as ort

        try:
            from onnxruntime.capi.build_and_package_info import cuda_version
        except ImportError:
            cuda_version = "?"
        providers = ort.get_available_providers()
        ok = gpu_libs.CUDA in providers
        return {"ok": ok, "detail": f"onnxruntime-gpu {gpu} (built for CUDA {cuda_version}); providers: "
                                    f"{', '.join(providers)}"}
    provider = gpu_libs.CUDA if name == "cuda_libraries" else gpu_libs.TENSORRT
    probe = gpu_libs.probe(provider)
    source = probe.needed.source
    if probe.ok:
        return {"ok": True, "detail": f"{', '.join(probe.found)} load (needed by {source})"}
    return {"ok": False, "missing": list(probe.missing),
            "detail": f"missing {', '.join(probe.missing)} (needed by {source})"}


def _gpu_code(name: str) -> str:
    return f"import json; from vla_adapter_ros.tools import doctor; print(json.dumps(doctor.gpu_probe({name!r})))"


def _probe(name: str, code: str, required_for: str, fix: str, optional: bool = False) -> Check:
    """Run ``code`` in a fresh interpreter; it prints ``{"detail": ...}`` (and may say ``"ok": false``)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Check(name, False, f"probe timed out after {PROBE_TIMEOUT_S:.0f} s", required_for, fix, optional)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return Check(name, False, last[:200], required_for, fix, optional)
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        detail = answer["detail"]
    except (ValueError, KeyError, IndexError, TypeError):
        answer, detail = {}, proc.stdout.strip()[:200]
    return Check(name, bool(answer.get("ok", True)), detail, required_for, fix, optional, answer.get("missing", []))


def dds_check(env: dict[str, str] | None = None) -> Check:
    env = dict(os.environ if env is None else env)
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(unset)")
    dom = env.get("ROS_DOMAIN_ID", "(unset)")
    prof = env.get("FASTDDS_DEFAULT_PROFILES_FILE", "(unset)")
    ok = rng == "LOCALHOST" and dom != "(unset)"
    detail = f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng} ROS_DOMAIN_ID={dom} FASTDDS_DEFAULT_PROFILES_FILE={prof}"
    fix = 'for tests and demos: eval "$(make -s env)" (loopback only); on a robot, your own DDS settings'
    return Check("dds_env", ok, detail, "tests/demos must stay on loopback", fix)


def collect(only: list[str] | None = None, gpu: bool = False) -> list[Check]:
    """Every check (or ``only`` these); ``gpu``: the GPU checks are required, not optional."""
    checks = [
        _probe(name, code, req, fix) for name, (code, req, fix) in PROBES.items() if not only or name in only
    ]
    checks += [_probe(name, _gpu_code(name), GPU_FOR, fix, optional=not gpu)
               for name, fix in GPU_PROBES.items() if not only or name in only]
    if not only or "dds_env" in only:
        checks.append(dds_check())
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--only", nargs="*", choices=[*PROBES, *GPU_PROBES, "dds_env"], help="run only these checks")
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when a required check fails (default: only print)"
    )
    parser.add_argument("--gpu", action="store_true",
                        help="this machine should serve on its GPU: the GPU checks are required, not optional")


def run(args: argparse.Namespace) -> int:
    checks = collect(args.only, gpu=args.gpu)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        print(f"vla-adapter doctor (python {sys.version.split()[0]})")
        for c in checks:
            mark = "ok  " if c.ok else ("----" if c.optional else "MISS")
            print(f"  [{mark}] {c.name:<{width}}  {c.detail}")
            if not c.ok:
                print(f"         {'':<{width}}  needed for: {c.required_for}; fix: {c.fix}")
        missing = [c.name for c in checks if not c.ok and not c.optional]
        optional = [c.name for c in checks if not c.ok and c.optional]
        print("all required checks passed" if not missing else f"missing: {', '.join(missing)}")
        if optional:
            print(f"no GPU serving here (optional checks; --gpu makes them required): {', '.join(optional)}")
    return 1 if args.strict and any(not c.ok and not c.optional for c in checks) else 0
