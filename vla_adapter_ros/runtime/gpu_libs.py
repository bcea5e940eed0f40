"""The shared libraries behind onnxruntime's CUDA and TensorRT providers, found or missing by name.

onnxruntime-gpu ships the provider libraries but none of what they link: the CUDA runtime,
cuBLAS, cuRAND, cuDNN (opened at run time) and TensorRT's ``libnvinfer`` / ``libnvonnxparser``,
plus the driver's ``libcuda.so.1``. When one is missing onnxruntime logs a loader error and
quietly runs on the next provider. This module names what is needed and what is missing:

- :func:`needed` reads the ``DT_NEEDED`` entries of the installed provider library (a few
  dozen lines of ELF reading, no ``ldd``), or, with the CPU build installed, falls back to
  what ``requirements/runtime-gpu.txt``'s onnxruntime-gpu links (read from that wheel).
- :func:`probe` tries to load each one with ctypes, from the NVIDIA pip wheels
  (``nvidia/*/lib``, ``tensorrt_libs``) first, then the loader's own search path.
- :func:`preload` loads those found in the pip wheels into the process, so the provider
  library resolves them by soname (onnxruntime-gpu's own ``preload_dlls`` covers CUDA and
  cuDNN, not TensorRT).

Imports neither onnxruntime nor numpy at module level: ``vla-adapter doctor`` uses it.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
PROVIDER_LIBRARIES = {CUDA: "libonnxruntime_providers_cuda.so", TENSORRT: "libonnxruntime_providers_tensorrt.so"}
DRIVER = "libcuda.so.1"
# Opened with dlopen while serving, so not in DT_NEEDED (cuDNN 9 since onnxruntime 1.19).
OPENED_AT_RUN_TIME = {CUDA: ("libcudnn.so.9",), TENSORRT: ("libcudnn.so.9",)}
# What requirements/runtime-gpu.txt's onnxruntime-gpu 1.31.1 (CUDA 13) links, read with
# readelf from that wheel: the answer when only the CPU build is installed here.
REFERENCE = {
    CUDA: ("libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", DRIVER),
    TENSORRT: ("libcublas.so.13", "libnvinfer.so.10", "libnvonnxparser.so.10", "libcudart.so.13"),
}
REFERENCE_SOURCE = "onnxruntime-gpu 1.31.1 of requirements/runtime-gpu.txt (CUDA 13, cuDNN 9, TensorRT 10)"
# Libraries of the C/C++ runtime every Linux has; never reported.
_SYSTEM = ("libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "libstdc++.so", "libgcc_s.so", "ld-linux")
_DT_NEEDED, _SHT_DYNAMIC = 1, 6


def elf_needed(path: str | Path) -> list[str] | None:
    """The ``DT_NEEDED`` sonames of a 64-bit little-endian ELF file; None if it is not one."""
    with open(path, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return None  # not ELF64 little-endian (x86_64 and aarch64 both are)
        shoff, = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
        out: list[str] = []
        for _name, kind, _flags, _addr, offset, size, link, _info, _align, _entsize in sections:
            if kind != _SHT_DYNAMIC:
                continue
            f.seek(offset)
            dynamic = f.read(size)
            str_offset, str_size = sections[link][4], sections[link][5]
            f.seek(str_offset)
            strings = f.read(str_size)
            for i in range(0, len(dynamic) - 15, 16):
                tag, value = struct.unpack_from("<qQ", dynamic, i)
                if tag == _DT_NEEDED:
                    out.append(strings[value:strings.index(b"\0", value)].decode())
        return out


def onnxruntime_dir() -> Path | None:
    """onnxruntime's ``capi`` folder (where the provider libraries lie), found without importing it."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "capi"


@dataclass(frozen=True)
class Needed:
    provider: str
    libraries: tuple[str, ...]
    source: str  # the provider library they were read from, or REFERENCE_SOURCE


def needed(provider: str, capi: Path | None = None) -> Needed:
    """The non-system libraries ``provider`` needs: linked ones, then those opened at run time."""
    capi = onnxruntime_dir() if capi is None else capi
    lib = capi / PROVIDER_LIBRARIES[provider] if capi is not None else None
    linked = elf_needed(lib) if lib is not None and lib.is_file() else None
    source = str(lib)
    if linked is None:
        linked, source = list(REFERENCE[provider]), REFERENCE_SOURCE
    if provider == CUDA and DRIVER not in linked:
        linked.append(DRIVER)  # through the CUDA runtime, if not directly
    names = [n for n in linked if not n.startswith(_SYSTEM)]
    return Needed(provider, tuple(dict.fromkeys([*names, *OPENED_AT_RUN_TIME[provider]])), source)


def wheel_dirs(paths: Iterable[str] | None = None) -> list[Path]:
    """Folders of NVIDIA's pip wheels (``nvidia/<pkg>/lib``, ``tensorrt_libs``) on ``sys.path``."""
    out: list[Path] = []
    for entry in sys.path if paths is None else paths:
        root = Path(entry or ".")
        out += sorted(p for p in root.glob("nvidia/*/lib") if p.is_dir())
        if (root / "tensorrt_libs").is_dir():
            out.append(root / "tensorrt_libs")
    return list(dict.fromkeys(out))


@dataclass
class Probe:
    """Which of a provider's libraries load, from where, and why the others do not."""

    needed: Needed
    found: dict[str, str] = field(default_factory=dict)  # soname -> path or "(loader path)"
    missing: dict[str, str] = field(default_factory=dict)  # soname -> loader error

    @property
    def ok(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        if self.ok:
            return f"{self.needed.provider}: all {len(self.found)} libraries load"
        return f"{self.needed.provider}: missing {', '.join(self.missing)}"


def _load(name: str, dirs: Sequence[Path]) -> tuple[str | None, str]:
    for d in dirs:
        candidate = d / name
        if candidate.is_file():
            try:
                ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
                return str(candidate), ""
            except OSError as exc:
                return None, str(exc)
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        return "(loader path)", ""
    except OSError as exc:
        return None, str(exc)


def probe(provider: str, capi: Path | None = None, dirs: Sequence[Path] | None = None) -> Probe:
    """Try to load every library ``provider`` needs (in this process: call it from a subprocess to look only)."""
    result = Probe(needed(provider, capi))
    search = wheel_dirs() if dirs is None else list(dirs)
    for name in result.needed.libraries:
        path, error = _load(name, search)
        if path is None:
            result.missing[name] = error.splitlines()[0][:200] if error else "not found"
        else:
            result.found[name] = path
    return result


@functools.cache
def preload(provider: str) -> Probe:
    """Load what ``provider`` needs from the NVIDIA pip wheels before onnxruntime opens the provider
    (once per process: libraries do not appear or vanish while it runs)."""
    return probe(provider)


def library_versions() -> dict[str, str]:
    """Versions reported by the loaded (or loadable) driver, CUDA runtime, cuDNN and TensorRT libraries."""
    def call(lib: str, symbol: str, out_param: bool) -> int | None:
        try:
            handle = ctypes.CDLL(lib)
            fn = getattr(handle, symbol)
        except (OSError, AttributeError):
            return None
        if not out_param:
            fn.restype = ctypes.c_size_t if symbol == "cudnnGetVersion" else ctypes.c_int
            return int(fn())
        value = ctypes.c_int(0)
        return int(value.value) if fn(ctypes.byref(value)) == 0 else None

    dirs = wheel_dirs()
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudnn.so.9", "libnvinfer.so.10"):
        _load(name, dirs)  # from the pip wheels if that is where they are
    out: dict[str, str] = {}
    driver = call(DRIVER, "cuDriverGetVersion", True)
    if driver:
        out["cuda_driver_api"] = f"{driver // 1000}.{driver % 1000 // 10}"
    for lib in ("libcudart.so.13", "libcudart.so.12"):
        runtime = call(lib, "cudaRuntimeGetVersion", True)
        if runtime:
            out["cuda_runtime"] = f"{runtime // 1000}.{runtime % 1000 // 10}"
            break
    cudnn = call("libcudnn.so.9", "cudnnGetVersion", False)
    if cudnn:
        out["cudnn"] = f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}"
    trt = call("libnvinfer.so.10", "getInferLibVersion", False)
    if trt:
        # TensorRT 10 encodes major * 10000 + minor * 100 + patch.
        out["tensorrt"] = f"{trt // 10000}.{trt % 10000 // 100}.{trt % 100}"
    return out
