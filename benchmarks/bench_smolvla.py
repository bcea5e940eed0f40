"""SmolVLA benchmark: PyTorch (LeRobot, eager) vs onnxruntime, prefix vs denoise-step cost, adapter overhead.

    python benchmarks/bench_smolvla.py [--sizes tiny real] [--repeats 5] [--threads 1] [--out DIR] [--unrolled-timeout S]

For each size it builds a randomly initialised SmolVLA offline (``tiny``: the test model, ~0.2 M
parameters; ``real``: SmolVLA's own layer sizes, SmolVLM2-500M's vision encoder and first 16 text
layers + the 0.75x action expert, 512 px, chunk 50, 10 steps; no weights are downloaded, latency does
not depend on their values), attaches one rank-16 bottleneck adapter at every site (vision, language,
expert; attn + ffn), exports both with ``vla-adapter export`` (parity with LeRobot checked on the way),
then times batch 1 on the CPU with the same thread count: LeRobot's ``predict_action_chunk`` / the
prefix / one denoise step in the LeRobot venv, and the runtime's ``SmolVLAPolicy`` graphs here.
Then the two forms of the export side by side (issue 19: "a prefix graph and a denoise-step graph, or one
unrolled graph; measure both"): the worker's ``export-unrolled`` writes the one graph (prefix + every
denoising step; parity against ``predict_action_chunk`` checked here), and the table gives each form's ONNX
size, ``torch.onnx.export`` time and onnxruntime CPU latency of a whole chunk (batch 1, the same inputs,
noise and adapter tensors, the two forms' runs interleaved so machine load hits both alike).
Prints the tables; writes ``bench_smolvla.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros.core.export.smolvla import (
    export_smolvla,
    measure_unrolled_parity,
    unrolled_session,
)
from vla_adapter_ros.families.smolvla.bridge import WorkerError, run_worker
from vla_adapter_ros.runtime.providers import ProviderConfig
from vla_adapter_ros.runtime.smolvla import SmolVLAPolicy


def median_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def ort_rows(model_dir: Path, threads: int, repeats: int) -> dict[str, dict[str, float]]:
    rows = {}
    config = ProviderConfig(providers=("cpu",), intra_op_threads=threads)
    with SmolVLAPolicy.from_dir(model_dir, providers=config, warmup=False) as policy:
        feeds = policy._zeros()  # batch 1, the graphs' shapes
        s = policy.manifest.smolvla
        noise = np.random.default_rng(0).standard_normal((1, s.chunk_size, s.max_action_dim)).astype(np.float32)
        net = policy.network
        for name in (None, *policy.manifest.adapter_names):
            slot = policy._slots[name]
            kv = net.run_prefix(feeds, slot.tensors)
            rows[name or ""] = {
                "chunk_ms": median_ms(lambda slot=slot: net.sample(feeds, noise, slot.tensors), repeats),
                "prefix_ms": median_ms(lambda slot=slot: net.run_prefix(feeds, slot.tensors), repeats),
                "denoise_step_ms": median_ms(lambda slot=slot, kv=kv: net.run_denoise_step(noise, 1.0, kv, slot.tensors),
                                             repeats),
            }
    return rows


def forms_rows(model_dir: Path, stage: Path, threads: int, repeats: int) -> dict[str, dict[str, float]]:
    """Chunk latency (ms, median) of the two-graph runtime and of the unrolled graph, interleaved, per adapter."""
    rows = {}
    config = ProviderConfig(providers=("cpu",), intra_op_threads=threads)
    unrolled = unrolled_session(stage, threads)
    declared = {i.name for i in (*unrolled.get_inputs(), *unrolled.get_overridable_initializers())}
    with SmolVLAPolicy.from_dir(model_dir, providers=config, warmup=False) as policy:
        feeds = policy._zeros()  # batch 1, the graphs' shapes
        s = policy.manifest.smolvla
        noise = np.random.default_rng(0).standard_normal((1, s.chunk_size, s.max_action_dim)).astype(np.float32)
        for name in (None, *policy.manifest.adapter_names):
            tensors = policy._slots[name].tensors
            one = {**feeds, "noise": noise, **{k: v for k, v in tensors.items() if k in declared}}
            runs = {"two_graphs": lambda t=tensors: policy.network.sample(feeds, noise, t),
                    "unrolled": lambda one=one: unrolled.run(["actions"], one)}
            agree = float(np.abs(runs["two_graphs"]() - runs["unrolled"]()[0]).max())  # also the warm-up
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(repeats):
                for form, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[form].append((time.perf_counter() - t0) * 1e3)
            rows[name or ""] = {f"{k}_ms": float(np.median(v)) for k, v in times.items()} | {"max_abs_between": agree}
    return rows


def bench(size: str, root: Path, repeats: int, threads: int, unrolled_timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    made = run_worker("make-tiny", str(root / size), *(["--real-sizes"] if size == "real" else []))
    ckpt = made["checkpoint"]
    adapter = root / size / "adapter"
    run_worker("adapter", ckpt, "--name", "all_sites", "--out", str(adapter), "--rank", "16", "--init-random")
    t1 = time.perf_counter()
    result = export_smolvla(ckpt, [adapter], root / size / "model", log=lambda _: None)
    t2 = time.perf_counter()
    torch_out = run_worker("bench", ckpt, "--adapter", str(adapter), "--repeats", str(repeats), "--threads", str(threads))
    ort_out = ort_rows(root / size / "model", threads, repeats)
    sizes = {p.relative_to(root / size / "model").as_posix(): p.stat().st_size
             for p in (root / size / "model").rglob("*") if p.is_file()}
    stage = root / size / "unrolled"
    out = {"size": size, "parameters": torch_out["parameters"], "torch": torch_out["rows"], "onnxruntime": ort_out,
           "parity_max_abs": max(r["max_abs"] for r in result["rows"]), "export_s": t2 - t1,
           "export_timing_s": result["timing_s"], "build_s": t1 - t0, "files": sizes}
    t3 = time.perf_counter()
    try:
        unrolled = run_worker("export-unrolled", ckpt, "--adapter", str(adapter), "--out", str(stage),
                              timeout=unrolled_timeout)
    except (WorkerError, subprocess.TimeoutExpired) as exc:  # a measured outcome too (too slow, or over protobuf's 2 GB)
        return out | {"unrolled": {"error": f"{type(exc).__name__}: {exc}", "export_s": time.perf_counter() - t3}}
    t4 = time.perf_counter()
    unrolled_parity = measure_unrolled_parity(stage)
    forms = forms_rows(root / size / "model", stage, threads, repeats)
    return out | {"unrolled": {"export_s": t4 - t3, "export_timing_s": unrolled["timing_s"],
                               "parity_max_abs": max(r["max_abs"] for r in unrolled_parity),
                               "file_bytes": (stage / unrolled["file"]).stat().st_size, "rows": forms}}


def forms_table(results: list[dict[str, Any]]) -> str:
    """Two graphs (prefix + denoise step, the runtime's loop) vs one unrolled graph."""
    lines = ["| size | form | ONNX MB | torch.onnx.export s | parity max abs | adapter | chunk ms (median) | unrolled / two graphs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        u = r["unrolled"]
        if "error" in u:
            lines.append(f"| {r['size']} | unrolled | | failed after {u['export_s']:.0f} s: {u['error'][:200]} | | | | |")
            continue
        two_mb = sum(v for k, v in r["files"].items() if k.startswith("graphs/")) / 1e6
        for name, row in u["rows"].items():
            label = name or "(backbone)"
            lines.append(f"| {r['size']} | two graphs | {two_mb:.1f} | {r['export_timing_s']['onnx_export']:.1f} "
                         f"| {r['parity_max_abs']:.1e} | {label} | {row['two_graphs_ms']:.1f} | |")
            lines.append(f"| {r['size']} | unrolled | {u['file_bytes'] / 1e6:.1f} | {u['export_timing_s']['onnx_export']:.1f} "
                         f"| {u['parity_max_abs']:.1e} | {label} | {row['unrolled_ms']:.1f} "
                         f"| {row['unrolled_ms'] / row['two_graphs_ms']:.2f}x |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| size | parameters | runtime | adapter | chunk ms | prefix ms | denoise step ms | adapter overhead (chunk) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for runtime in ("torch", "onnxruntime"):
            rows = r[runtime]
            for name, row in rows.items():
                over = "" if not name else f"{row['chunk_ms'] / rows['']['chunk_ms']:.2f}x"
                lines.append(f"| {r['size']} | {r['parameters']:,} | {'PyTorch (LeRobot)' if runtime == 'torch' else 'onnxruntime'} "
                             f"| {name or '(backbone)'} | {row['chunk_ms']:.1f} | {row['prefix_ms']:.1f} "
                             f"| {row['denoise_step_ms']:.2f} | {over} |")
    lines.append("")
    for r in results:
        graphs = {k: v for k, v in r["files"].items() if k.startswith("graphs/")}
        lines.append(f"{r['size']}: export {r['export_s']:.0f} s (torch.onnx.export {r['export_timing_s']['onnx_export']:.0f} s), "
                     f"parity max |diff| {r['parity_max_abs']:.1e}, files "
                     + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in graphs.items())
                     + f", adapter {r['files']['adapters/all_sites.onnx_adapter'] / 1e6:.2f} MB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "real"], choices=["tiny", "real"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--unrolled-timeout", type=float, default=3600,
                        help="seconds the unrolled export may take before it is reported as too slow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-smolvla-") as tmp:
        results = [bench(size, Path(tmp), args.repeats, args.threads, args.unrolled_timeout) for size in args.sizes]
    print(f"CPU, batch 1, {args.threads} thread(s), median of {args.repeats}")
    print(table(results))
    print()
    print(f"Two graphs vs one unrolled graph (onnxruntime CPU, batch 1, {args.threads} thread(s), median of "
          f"{args.repeats} interleaved runs)")
    print(forms_table(results))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_smolvla.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
