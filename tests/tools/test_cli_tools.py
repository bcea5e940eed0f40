"""`vla-adapter --help`, `version`, `doctor` run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from vla_adapter_ros import __version__


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_subcommands():
    out = cli("--help")
    assert out.returncode == 0
    for cmd in ("version", "doctor", "switch"):
        assert cmd in out.stdout


def test_version():
    out = cli("version")
    assert out.returncode == 0 and out.stdout.strip() == f"vla_adapter_ros {__version__}"


def test_doctor_reports_every_check_and_this_env_is_complete():
    out = cli("doctor", "--json", "--strict")
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert {"python", "rclpy", "vla_adapter_interfaces", "onnxruntime", "torch", "mujoco_render", "dds_env"} <= set(
        checks
    )
    assert out.returncode == 0, [c for c in checks.values() if not c["ok"]]
    assert "CPUExecutionProvider" in checks["onnxruntime"]["detail"]


def test_doctor_names_the_fix_for_a_missing_piece():
    code = (
        "import sys; sys.modules['rosbags'] = None; "
        "from vla_adapter_ros.tools import doctor; c = doctor._probe('x', 'import no_such_module_xyz', 'a', 'fix it');"
        "print(c.ok, c.fix)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False fix it"


GPU_CHECKS = ("nvidia_driver", "onnxruntime_gpu", "cuda_libraries", "tensorrt_libraries")


def _loads(name: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        return False


def test_doctor_names_the_gpu_libraries_that_do_not_load():
    """The CUDA / cuDNN / TensorRT libraries the providers need, by name; each one reported missing
    really does not load here, and each one that loads is not reported."""
    from vla_adapter_ros.runtime import gpu_libs

    out = cli("doctor", "--json", "--only", *GPU_CHECKS)
    assert out.returncode == 0, out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert set(checks) == set(GPU_CHECKS) and all(c["optional"] for c in checks.values())
    for name, provider in (("cuda_libraries", gpu_libs.CUDA), ("tensorrt_libraries", gpu_libs.TENSORRT)):
        check, needed = checks[name], gpu_libs.needed(provider).libraries
        if gpu_libs.wheel_dirs():
            continue  # NVIDIA pip wheels here: the loader alone is not the reference
        assert check["missing"] == [lib for lib in needed if not _loads(lib)], check
        assert check["ok"] == (not check["missing"])
        for lib in check["missing"]:
            assert lib in check["detail"]
    assert "libnvinfer.so.10" in gpu_libs.needed(gpu_libs.TENSORRT).libraries
    assert {"libcudnn.so.9", "libcuda.so.1"} <= set(gpu_libs.needed(gpu_libs.CUDA).libraries)
    if not _loads("libcuda.so.1"):
        assert not checks["nvidia_driver"]["ok"] and "libcuda.so.1" in checks["nvidia_driver"]["detail"]


def test_doctor_gpu_makes_the_gpu_checks_required():
    import onnxruntime as ort

    out = cli("doctor", "--gpu", "--strict", "--only", "onnxruntime_gpu", "cuda_libraries")
    if "CUDAExecutionProvider" in ort.get_available_providers() and out.returncode == 0:
        return  # a GPU machine with everything installed
    assert out.returncode == 1 and "[MISS]" in out.stdout and "missing: " in out.stdout


def test_elf_needed_reads_a_real_library():
    import shutil
    from pathlib import Path

    import onnxruntime

    from vla_adapter_ros.runtime import gpu_libs

    lib = next(Path(onnxruntime.__file__).parent.joinpath("capi").glob("onnxruntime_pybind11_state*.so"))
    needed = gpu_libs.elf_needed(lib)
    assert needed and "libc.so.6" in needed
    readelf = shutil.which("readelf")
    if readelf:
        out = subprocess.run([readelf, "-d", str(lib)], capture_output=True, text=True, timeout=60).stdout
        assert needed == [ln.split("[")[1].split("]")[0] for ln in out.splitlines() if "(NEEDED)" in ln]
    assert gpu_libs.elf_needed(Path(__file__)) is None  # not an ELF file
