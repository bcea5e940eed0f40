"""GPU check, one short run: providers, parity of CUDA/TensorRT against CPU, the latency table.

    python benchmarks/gpu_check.py [--out artifacts/gpu_check] [--iters 100]
                                   [--checkpoint DIR --adapter DIR ...]

On a machine with an NVIDIA GPU: lists what onnxruntime offers and what really
initialises (TensorRT, CUDA), checks every adapter in shared and merged mode on each GPU
provider against the CPU provider (fp32; CUDA may use TF32, so the bound is 1e-3), and
prints the same latency table as bench_runtime.py with onnxruntime on the GPU (PyTorch
eager on CUDA when torch has CUDA). On a machine without one it says "no GPU", why, and
prints the CPU latency table instead (fewer iterations). Writes gpu_check.json to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_runtime  # noqa: E402

GPU_PARITY_BOUND = 1e-3
N_ADAPTERS = 4


def probe_providers() -> dict[str, Any]:
    """Which providers this onnxruntime lists, and which of them initialise on a tiny graph."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from vla_adapter_ros.runtime.errors import ProviderError
    from vla_adapter_ros.runtime.providers import CPU, CUDA, TENSORRT, ProviderConfig, create_session

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()
    works, why = {}, {}
    for name in (TENSORRT, CUDA, CPU):
        try:
            _, report = create_session(model, ProviderConfig(providers=(name,)).chain(), label="probe")
            works[name] = report.active == name
        except ProviderError as exc:
            works[name], why[name] = False, str(exc)
    smi = shutil.which("nvidia-smi")
    gpus = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.strip() if smi else ""
    return {"onnxruntime": ort.__version__, "available": ort.get_available_providers(), "initialises": works,
            "why_not": why, "nvidia_smi": gpus or "(nvidia-smi not found or no GPU listed)"}


def gpu_parity(model_dir: Path, provider: str) -> list[dict[str, Any]]:
    """Every adapter, shared and merged: ``provider`` vs CPU on random and realistic inputs."""
    from vla_adapter_ros import processing
    from vla_adapter_ros.core.export import scene_frames
    from vla_adapter_ros.runtime.policy import OnnxPolicy

    rows = []
    rng = np.random.default_rng(0)
    for mode in ("shared", "merged"):
        with OnnxPolicy.from_dir(model_dir, providers=["cpu"], mode=mode) as cpu, \
                OnnxPolicy.from_dir(model_dir, providers=[provider, "cpu"], mode=mode) as gpu:
            m = cpu.manifest
            h, w = m.image_size
            emb = cpu.language.encode_batch(["open the drawer", "press the button"])
            inputs = {
                "random": (rng.uniform(-1, 1, (2, 3, h, w)).astype(np.float32), emb,
                           rng.normal(size=(2, len(m.proprio_names))).astype(np.float32)),
                "real": (np.stack([processing.preprocess_image(f, (h, w)) for f in scene_frames(2)]), emb,
                         np.zeros((2, len(m.proprio_names)), np.float32)),
            }
            for name in m.adapter_names:
                for kind, x in inputs.items():
                    diff = float(np.abs(gpu.run_network(*x, adapter=name) - cpu.run_network(*x, adapter=name)).max())
                    rows.append({"provider": gpu.provider, "mode": mode, "adapter": name, "inputs": kind,
                                 "max_abs_diff": diff, "passed": diff <= GPU_PARITY_BOUND})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/gpu_check"))
    parser.add_argument("--iters", type=int, default=100, help="timed calls per latency variant on a GPU")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--adapter", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    start = time.perf_counter()

    info = probe_providers()
    print(f"onnxruntime {info['onnxruntime']}; listed providers: {info['available']}")
    print(f"nvidia-smi: {info['nvidia_smi']}")
    for name, ok in info["initialises"].items():
        print(f"  {name:<28} {'initialises' if ok else 'does NOT initialise'}")
    gpu_providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if info["initialises"].get(p)]
    report: dict[str, Any] = {"providers": info}
    if not gpu_providers:
        print("no GPU: neither TensorRT nor CUDA initialises here; CPU latency table instead")

    work = Path(tempfile.mkdtemp(prefix="vla_gpu_check_"))
    try:
        built = bench_runtime.build_model(work, args.checkpoint, args.adapter, n_adapters=N_ADAPTERS)
        rows = []
        for provider in gpu_providers:
            rows += gpu_parity(built["dir"], provider)
        if rows:
            print(f"parity vs CPU (fp32, bound {GPU_PARITY_BOUND:g}; every adapter, shared + merged)")
            for r in rows:
                print(f"  {r['provider']:<27} {r['mode']:<7} {r['adapter']:<8} {r['inputs']:<7} "
                      f"{r['max_abs_diff']:.3e}  {'ok' if r['passed'] else 'FAIL'}")
        report["parity"] = rows
        torch_device = "cpu"
        if gpu_providers:
            import torch

            torch_device = "cuda" if torch.cuda.is_available() else "cpu"
        providers = [gpu_providers[-1], "cpu"] if gpu_providers else ["cpu"]  # CUDA when it works: TRT builds engines
        iters = args.iters if gpu_providers else max(20, args.iters // 4)
        lat = bench_runtime.latency(built, args.threads, iters, providers, torch_device=torch_device)
        lines, verdicts = bench_runtime.latency_lines(lat)
        print("\n".join(lines))
        report.update({
            "note": built["note"], "gpu": bool(gpu_providers),
            "latency": {k: v for k, v in lat.items() if k != "samples"}, "goals_met": verdicts,
            "parity_passed": all(r["passed"] for r in rows), "wall_s": time.perf_counter() - start,
        })
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out / 'gpu_check.json'} ({report['wall_s']:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report.get("parity_passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
