"""GPU check: run it on the robot's computer to see that TensorRT and CUDA serve right, and how fast.

    python benchmarks/gpu_check.py [--model-dir models/default] [--out artifacts/gpu_check]
                                   [--frames 1000] [--providers tensorrt,cuda] [--budget-s 330]

Needs only the serving install (requirements/runtime-gpu.txt or a Jetson wheel): no torch, no
ROS. For TensorRT and CUDA each, against the CPU provider on the same frames:

- cold start (TensorRT: engine build into an empty cache folder) and warm start (the cache hit:
  no engine file written again);
- engine-cache collisions: two merged adapters (one graph, other weights) served from one cache
  folder must each match their own CPU output; a "re-export" (the backbone with perturbed
  weights, needs the ``onnx`` package) must not get the old engine;
- parity at batch 1 through ``infer()``: fp32, TensorRT's fp16 kernels, and the fp16 model files
  where the export has them;
- latency over ``--frames`` frames: p50 / p99 / max of ``infer()`` and of the network alone, for
  the plain path (numpy feeds, adapters through RunOptions) and the device-resident path
  (IOBinding): their difference is the per-frame host -> device copying the bound path saves;
- the first frame after an adapter switch, the time to hot-add an adapter, GPU memory;
- versions: GPU, driver, CUDA, cuDNN, TensorRT, JetPack and power mode on a Jetson.

A multi-camera model (``manifest.cameras``) gets one frame per camera (the frame shifted per camera).
On a machine without a GPU it runs the CPU rows and says, per GPU row, why it did not run.
Prints a table and writes ``gpu_check.json`` into ``--out``. Exit status 1 when a check that ran
failed. The default settings finish in about 6 minutes on a GPU machine (TensorRT builds a
handful of small engines); ``--budget-s`` stops starting new rows after that many seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from vla_adapter_ros.runtime import gpu_libs  # noqa: E402
from vla_adapter_ros.runtime.errors import PolicyRuntimeError  # noqa: E402
from vla_adapter_ros.runtime.manifest import Manifest, sha256_file  # noqa: E402
from vla_adapter_ros.runtime.policy import OnnxPolicy  # noqa: E402
from vla_adapter_ros.runtime.providers import CPU, CUDA, TENSORRT, ProviderConfig  # noqa: E402

FP32_BOUND = 1e-3  # fp32 kernels (ProviderConfig.tf32 off); actions are in robot units, clipped
FP16_BOUND = 5e-2
# "cpu" runs the same rows on the CPU provider: the script's self-test where no GPU is lent.
GPU_NAMES = {"tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
INSTRUCTION = "open the drawer"
# What each GPU provider gets; a provider that is missing or does not initialise lists each as not run.
GPU_ROWS = ("cold start", "parity fp32 infer()", "warm start", "GPU memory", "merged adapters, one cache",
            "re-export with changed weights", "parity TensorRT fp16 kernels", "parity TF32 matmuls (tf32: true)",
            "parity fp16 model file",
            "latency infer() / network, plain and iobinding", "first frame after a switch", "hot-add one adapter")


class Check:
    """The table: one row per (provider, check); rows that did not run say why."""

    def __init__(self, budget_s: float) -> None:
        self.rows: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def add(self, provider: str, check: str, result: str, ok: bool | None = None, **data: Any) -> None:
        self.rows.append({"provider": provider, "check": check, "result": result, "ok": ok, **data})

    def not_run(self, provider: str, check: str, why: str) -> None:
        self.rows.append({"provider": provider, "check": check, "result": "not run", "ok": None, "why": why})

    def not_run_all(self, provider: str, why: str) -> None:
        for row in GPU_ROWS:
            if provider == TENSORRT or "TensorRT" not in row:
                self.not_run(provider, row, why)

    def over_budget(self) -> bool:
        return time.perf_counter() - self.start > self.budget_s


# ------------------------------------------------------------------ environment
def versions() -> dict[str, Any]:
    import onnxruntime as ort

    out: dict[str, Any] = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers()}
    try:
        from onnxruntime.capi.build_and_package_info import cuda_version

        out["onnxruntime_cuda_build"] = cuda_version
    except ImportError:
        out["onnxruntime_cuda_build"] = None
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        out["gpus"] = [ln.strip() for ln in q.stdout.splitlines() if ln.strip()]
    out.update(gpu_libs.library_versions())
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():
        out["jetson_l4t"] = tegra.read_text().splitlines()[0].strip("# ")
        nvp = shutil.which("nvpmodel")
        if nvp:
            q = subprocess.run([nvp, "-q"], capture_output=True, text=True, timeout=30)
            out["jetson_power_mode"] = " ".join(q.stdout.split())
    return out


def gpu_memory_mib() -> float | None:
    """This process's GPU memory from nvidia-smi (None without it, e.g. on a Jetson)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    q = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, timeout=30)
    for line in q.stdout.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(used)
    return None


# ------------------------------------------------------------------ inputs
def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Camera-sized frames (480x640 rgb8) with structure, so resizing and the network both matter."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = np.roll(base, 7 * i, axis=1)
        img[: 120 + (i % 240)] //= 2
        out.append(img)
    return out


def proprio(manifest: Manifest) -> np.ndarray:
    return manifest.proprio_normalizer.mean.astype(np.float32)


def camera_frames(manifest: Manifest, img: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """What ``infer`` takes for one frame set: the frame itself for a single-camera model, else one
    distinct frame per camera (the frame shifted sideways per camera, so the views differ)."""
    if len(manifest.cameras) == 1:
        return img
    return {c.name: np.roll(img, 31 * i, axis=1) for i, c in enumerate(manifest.cameras)}


def actions(policy: OnnxPolicy, imgs: list[np.ndarray], adapter: str | None) -> np.ndarray:
    policy.switch(adapter)
    p = proprio(policy.manifest)
    return np.stack([policy.infer(camera_frames(policy.manifest, img), INSTRUCTION, p).actions for img in imgs])


def engines(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.engine")}


def reexport(model_dir: Path, work: Path) -> Path | None:
    """A copy of ``model_dir`` whose shared backbone has every float weight scaled by 1.01 (same graph,
    same names: what a re-export after more training looks like to TensorRT). None without ``onnx``."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    out = work / "reexport"
    shutil.copytree(model_dir, out)
    manifest = Manifest.load(out)
    path = out / manifest.shared_file
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    path.unlink()
    onnx.save(model, str(path))
    raw = json.loads((out / "manifest.json").read_text())
    raw["files"][manifest.shared_file] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    (out / "manifest.json").write_text(json.dumps(raw, indent=2))
    return out


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    t0 = time.perf_counter()
    done: list[float] = []
    yield lambda: done[0] if done else time.perf_counter() - t0
    done.append(time.perf_counter() - t0)


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(max(ms))}


# ------------------------------------------------------------------ rows
def latency_rows(check: Check, name: str, model_dir: Path, config: ProviderConfig, n: int, adapter: str) -> None:
    """p50/p99/max of infer() and of the network alone, plain vs IOBinding (vs CUDA graph on CUDA); switch; hot-add."""
    manifest = Manifest.load(model_dir)
    imgs = [camera_frames(manifest, img) for img in frames(min(n, 64), seed=1)]
    p = None
    servings = ("plain", "iobinding") + (("cuda_graph",) if name == GPU_NAMES["cuda"] else ())
    for serving in servings:
        cfg = dataclasses.replace(config, serving=serving)
        with OnnxPolicy.from_dir(model_dir, providers=cfg, adapter=adapter) as policy:
            p = proprio(policy.manifest)
            for img in imgs[:10]:
                policy.infer(img, INSTRUCTION, p)  # warm: instruction cached, allocator settled
            total, network = [], []
            for i in range(n):
                r = policy.infer(imgs[i % len(imgs)], INSTRUCTION, p)
                total.append(r.timing["total_ms"])
                network.append(r.timing["network_ms"])
            check.add(name, f"latency infer() {serving}", _fmt(percentiles(total)), None,
                      frames=n, **percentiles(total), network=percentiles(network))
            check.add(name, f"latency network {serving}", _fmt(percentiles(network)), None, **percentiles(network))
            if serving == servings[-1]:  # what "auto" serves on this provider
                others = [a for a in policy.manifest.adapter_names if a != adapter] or [adapter]
                first = []
                for i in range(40):
                    policy.switch(others[i % len(others)] if i % 2 == 0 else adapter)
                    first.append(policy.infer(imgs[i % len(imgs)], INSTRUCTION, p).timing["total_ms"])
                check.add(name, "first frame after a switch", _fmt(percentiles(first)), None, **percentiles(first))
    with OnnxPolicy.from_dir(model_dir, providers=config, load_adapters=[adapter]) as policy:
        extra = [a for a in policy.manifest.adapter_names if a != adapter]
        if extra:
            with timed() as t:
                policy.load_adapter(extra[0])
            check.add(name, "hot-add one adapter (shared)", f"{t() * 1e3:.1f} ms", None, ms=t() * 1e3)


def _fmt(p: dict[str, float]) -> str:
    return f"p50 {p['p50_ms']:.3f} / p99 {p['p99_ms']:.3f} / max {p['max_ms']:.3f} ms"


def gpu_rows(check: Check, key: str, model_dir: Path, work: Path, n: int, cpu_ref: dict[str, Any]) -> None:
    provider = GPU_NAMES[key]
    manifest = Manifest.load(model_dir)
    a0 = manifest.default_adapter or manifest.adapter_names[0]
    names = [a0] + [a for a in manifest.adapter_names if a != a0]
    cache = work / f"engines-{key}"
    config = ProviderConfig(providers=(key,), engine_cache_dir=cache)
    imgs = cpu_ref["frames"]

    # cold start: session creation + first run (TensorRT builds its engine here)
    try:
        with timed() as t, OnnxPolicy.from_dir(model_dir, providers=config, adapter=a0) as policy:
            got = actions(policy, imgs, a0)
            serving = policy.serving
    except PolicyRuntimeError as exc:
        libs = gpu_libs.probe(provider)
        why = f"{provider} does not initialise: {str(exc)[:400]}" + ("" if libs.ok else f" [{libs.summary()}]")
        check.not_run_all(provider, why)
        return
    built = engines(cache)
    check.add(provider, "cold start" + (" (engine build)" if key == "tensorrt" else ""), f"{t():.2f} s", True,
              seconds=t(), engine_files=len(built), serving=serving)
    diff = float(np.abs(got - cpu_ref[a0]).max())
    check.add(provider, f"parity fp32 infer() {a0!r}", f"max |diff| {diff:.2e} (bound {FP32_BOUND:g})",
              diff <= FP32_BOUND, max_abs_diff=diff, frames=len(imgs))

    with timed() as t, OnnxPolicy.from_dir(model_dir, providers=config, adapter=a0) as policy:
        for name in names:
            ref = cpu_ref[name]
            diff = float(np.abs(actions(policy, imgs, name) - ref).max())
            check.add(provider, f"parity fp32 infer() {name!r} (shared)", f"max |diff| {diff:.2e}",
                      diff <= FP32_BOUND, max_abs_diff=diff)
        mem = gpu_memory_mib()
    rebuilt = engines(cache) != built
    check.add(provider, "warm start", f"{t():.2f} s" + (", engines rewritten" if rebuilt else ", cache hit"),
              not rebuilt if key == "tensorrt" else True, seconds=t())
    if mem is None:
        check.not_run(provider, "GPU memory", "nvidia-smi not found or lists no memory for this process")
    else:
        check.add(provider, "GPU memory (this process)", f"{mem:.0f} MiB", None, mib=mem)

    if check.over_budget():
        check.not_run(provider, "merged adapters, one cache / re-export / fp16 / latency", "time budget spent")
        return
    pair = names[:2]
    if len(pair) == 2:
        before = {Path(p).parent for p in engines(cache)}
        with OnnxPolicy.from_dir(model_dir, providers=config, mode="merged", load_adapters=pair) as policy:
            outs = {a: actions(policy, imgs, a) for a in pair}
        diffs = {a: float(np.abs(outs[a] - cpu_ref[f"merged:{a}"]).max()) for a in pair}
        apart = float(np.abs(outs[pair[0]] - outs[pair[1]]).max())
        folders = len({Path(p).parent for p in engines(cache)} - before)  # TensorRT: one per merged model
        ok = max(diffs.values()) <= FP32_BOUND and apart > FP32_BOUND and (key != "tensorrt" or folders == 2)
        check.add(provider, "merged adapters, one cache", f"max |diff| {max(diffs.values()):.2e}; adapters apart "
                  f"{apart:.2e}" + (f"; {folders} new engine folders" if key == "tensorrt" else ""),
                  ok, max_abs_diff=diffs, adapters_apart=apart, engine_folders=folders)
    else:
        check.not_run(provider, "merged adapters, one cache", "the model has one adapter")

    if cpu_ref.get("reexport") is None:
        check.not_run(provider, "re-export with changed weights", cpu_ref["reexport_why"])
    else:
        with OnnxPolicy.from_dir(cpu_ref["reexport_dir"], providers=config, adapter=a0) as policy:
            diff = float(np.abs(actions(policy, imgs, a0) - cpu_ref["reexport"]).max())
        check.add(provider, "re-export with changed weights", f"max |diff| {diff:.2e} vs its own CPU output",
                  diff <= FP32_BOUND, max_abs_diff=diff)

    if key == "tensorrt":
        fp16 = ProviderConfig(providers=(key,), engine_cache_dir=cache, fp16=True)
        with OnnxPolicy.from_dir(model_dir, providers=fp16, adapter=a0) as policy:
            diff = float(np.abs(actions(policy, imgs, a0) - cpu_ref[a0]).max())
        check.add(provider, "parity TensorRT fp16 kernels", f"max |diff| {diff:.2e} (bound {FP16_BOUND:g})",
                  diff <= FP16_BOUND, max_abs_diff=diff)
    if key == "cuda":  # onnxruntime's default; the reason ProviderConfig.tf32 exists and is off
        tf32 = ProviderConfig(providers=(key,), engine_cache_dir=cache, tf32=True)
        with OnnxPolicy.from_dir(model_dir, providers=tf32, adapter=a0) as policy:
            diff = float(np.abs(actions(policy, imgs, a0) - cpu_ref[a0]).max())
        check.add(provider, "parity TF32 matmuls (tf32: true)", f"max |diff| {diff:.2e} (bound {FP16_BOUND:g})",
                  diff <= FP16_BOUND, max_abs_diff=diff)
    spec = manifest.adapter(a0)
    if spec is not None and spec.fp16_file:
        with OnnxPolicy.from_dir(model_dir, providers=config, mode="merged", precision="fp16",
                                 load_adapters=[a0]) as policy:
            diff = float(np.abs(actions(policy, imgs, a0) - cpu_ref[a0]).max())
        check.add(provider, "parity fp16 model file", f"max |diff| {diff:.2e}", diff <= FP16_BOUND, max_abs_diff=diff)
    else:
        check.not_run(provider, "parity fp16 model file", "this export has no fp16 files (vla-adapter export --fp16)")

    if key == "cpu":
        return  # the CPU latency rows ran first, as the baseline
    if check.over_budget():
        check.not_run(provider, "latency", "time budget spent")
        return
    latency_rows(check, provider, model_dir, config, n, a0)


def cpu_reference(model_dir: Path, work: Path, n_parity: int) -> dict[str, Any]:
    """CPU outputs every GPU row compares with (shared and merged, every adapter; the re-export)."""
    imgs = frames(n_parity)
    ref: dict[str, Any] = {"frames": imgs}
    config = ProviderConfig(providers=("cpu",))
    with OnnxPolicy.from_dir(model_dir, providers=config) as policy:
        for name in policy.manifest.adapter_names:
            ref[name] = actions(policy, imgs, name)
    with OnnxPolicy.from_dir(model_dir, providers=config, mode="merged") as policy:
        for name in policy.manifest.adapter_names:
            ref[f"merged:{name}"] = actions(policy, imgs, name)
    copy = reexport(model_dir, work)
    if copy is None:
        ref["reexport"], ref["reexport_why"] = None, "the onnx package is not installed (pip install onnx)"
    else:
        with OnnxPolicy.from_dir(copy, providers=config) as policy:
            a0 = policy.active_adapter
            ref["reexport"], ref["reexport_dir"] = actions(policy, imgs, a0), copy
            if np.abs(ref["reexport"] - ref[a0]).max() <= FP32_BOUND:
                ref["reexport"], ref["reexport_why"] = None, "the perturbed weights do not change the actions"
    return ref


def print_table(rows: list[dict[str, Any]]) -> None:
    w1 = max(len(r["provider"]) for r in rows)
    w2 = max(len(r["check"]) for r in rows)
    for r in rows:
        mark = {True: "ok  ", False: "FAIL", None: "    "}[r["ok"]]
        text = r["result"] if r["result"] != "not run" else f"not run: {r['why']}"
        print(f"  [{mark}] {r['provider']:<{w1}}  {r['check']:<{w2}}  {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--out", type=Path, default=Path("artifacts/gpu_check"))
    parser.add_argument("--frames", type=int, default=1000, help="timed frames per latency row (>= 1000 for p99)")
    parser.add_argument("--parity-frames", type=int, default=16)
    parser.add_argument("--providers", default="tensorrt,cuda",
                        help="providers to check against the CPU, in order (cpu: the rows' self-test)")
    parser.add_argument("--budget-s", type=float, default=330.0, help="start no new GPU rows after this long")
    args = parser.parse_args(argv)
    keys = [k.strip().lower() for k in args.providers.split(",") if k.strip()]
    unknown = [k for k in keys if k not in GPU_NAMES]
    if unknown:
        parser.error(f"--providers: unknown {unknown}; choose from {sorted(GPU_NAMES)}")

    check = Check(args.budget_s)
    info = versions()
    print(f"onnxruntime {info['onnxruntime']} (CUDA build: {info['onnxruntime_cuda_build']}); "
          f"providers {info['available_providers']}")
    for k in ("gpus", "cuda_driver_api", "cuda_runtime", "cudnn", "tensorrt", "jetson_l4t", "jetson_power_mode"):
        if info.get(k):
            print(f"  {k}: {info[k]}")
    work = Path(tempfile.mkdtemp(prefix="vla_gpu_check_"))
    try:
        cpu_ref = cpu_reference(args.model_dir, work, args.parity_frames)
        manifest = Manifest.load(args.model_dir)
        print(f"model {args.model_dir}: cameras {list(manifest.camera_names)}, adapters {manifest.adapter_names}")
        a0 = manifest.default_adapter or manifest.adapter_names[0]
        latency_rows(check, CPU, args.model_dir, ProviderConfig(providers=("cpu",), intra_op_threads=1), args.frames, a0)
        for key in keys:
            if GPU_NAMES[key] not in info["available_providers"]:
                why = (f"this onnxruntime ({info['onnxruntime']}) has no {GPU_NAMES[key]}: install "
                       "requirements/runtime-gpu.txt (x86_64) or NVIDIA's Jetson wheel; vla-adapter doctor --gpu")
                check.not_run_all(GPU_NAMES[key], why)
                continue
            gpu_rows(check, key, args.model_dir, work, args.frames, cpu_ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_table(check.rows)
    for provider in dict.fromkeys(r["provider"] for r in check.rows if r["result"] == "not run"):
        reasons = {r["why"] for r in check.rows if r["provider"] == provider and r["result"] == "not run"}
        print(f"{provider}: rows not run: {'; '.join(sorted(reasons))}")
    failed = [r for r in check.rows if r["ok"] is False]
    not_run = [r for r in check.rows if r["result"] == "not run"]
    wall = time.perf_counter() - check.start
    report = {"versions": info, "model_dir": str(args.model_dir), "cameras": list(Manifest.load(args.model_dir).camera_names),
              "rows": check.rows, "wall_s": wall,
              "gpu_rows_run": sum(1 for r in check.rows if r["provider"] != CPU and r["result"] != "not run"),
              "failed": len(failed), "not_run": len(not_run)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"{len(check.rows) - len(not_run)} rows run, {len(failed)} failed, {len(not_run)} not run; "
          f"wrote {args.out / 'gpu_check.json'} ({wall:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
