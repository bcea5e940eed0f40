"""Runtime benchmark: onnxruntime vs PyTorch, adapter overhead, 1 vs 2 cameras, switch latency, memory per adapter, load time.

One command, one run, medians and ratios from that run, a table on stdout, JSON + PNG in --out:

    python benchmarks/bench_runtime.py [--out artifacts/bench_runtime] [--threads 1]
                                       [--checkpoint DIR --adapter DIR ...]

Until the bundled default model exists, it builds a random-weight model of the default
ModelConfig with 16 rank-8 adapters in a temp dir and exports it (it says so); latency and
memory do not depend on the weights' values. Batch 1, CPU, the same thread count for
PyTorch and onnxruntime. Memory and load time are measured in fresh subprocesses.

The 2-view rows: the same architecture with two cameras (random weights, one rank-8 adapter,
exported the same way), timed in the same shuffled rounds as the 1-view rows, side by side.

Goals (issue 4): onnxruntime/PyTorch <= 0.5; adapter vs backbone alone <= 1.10x;
switch() p99 <= 0.1 ms with 16 adapters loaded; shared mode RSS per extra adapter <= 1.5x
the adapter file size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_ADAPTERS = 16
TWO_VIEWS = ("front", "wrist")
GOALS = {"ort_vs_torch": 0.5, "adapter_overhead": 1.10, "switch_p99_ms": 0.1, "shared_rss_per_file": 1.5}


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ----------------------------------------------------------------------------- model


def build_model(
    work: Path, checkpoint: Path | None, adapters: list[Path], log=print, n_adapters: int = N_ADAPTERS
) -> dict[str, Any]:
    """Export (checkpoint, adapters) into ``work``; random default-config model when none is given."""
    from vla_adapter_ros.core.adapters import load_adapter, set_adapter
    from vla_adapter_ros.core.checkpoint import load_checkpoint
    from vla_adapter_ros.core.config import AdapterConfig, ModelConfig
    from vla_adapter_ros.core.export import export_model, export_predictor, make_random_checkpoint

    note = None
    if checkpoint is None:
        note = (
            f"no bundled default model yet: built a RANDOM-WEIGHT model of the default ModelConfig with "
            f"{n_adapters} rank-8 adapters in a temp dir (latency and memory do not depend on weight values)"
        )
        log(f"NOTE: {note}")
        configs = {f"task{i:02d}": AdapterConfig(rank=8, task=f"task{i:02d}") for i in range(n_adapters)}
        checkpoint, adapters = make_random_checkpoint(work / "src", ModelConfig(), configs, seed=0)
    t0 = time.perf_counter()
    result = export_model(checkpoint, adapters, work / "model", log=lambda _m: None)
    export_s = time.perf_counter() - t0
    worst = max(r.max_abs_diff for r in result.rows if r.tolerance is not None)
    log(f"exported {len(result.adapters)} adapters in {export_s:.1f} s; parity max |diff| {worst:.2e} (all checks passed)")
    model = load_checkpoint(checkpoint, adapters=False).eval()
    for d in adapters:
        load_adapter(model, d)
    set_adapter(model, None)
    export_predictor(model, work / "backbone_alone.onnx")
    return {"dir": work / "model", "backbone": work / "backbone_alone.onnx", "model": model,
            "names": result.adapters, "note": note, "export_s": export_s, "parity_max_abs_diff": worst}


def build_two_views(work: Path, config: Any, log=print) -> dict[str, Any]:
    """``config`` with two cameras, random weights and one rank-8 adapter, exported into ``work``."""
    import dataclasses

    from vla_adapter_ros.core.adapters import load_adapter, set_adapter
    from vla_adapter_ros.core.checkpoint import load_checkpoint
    from vla_adapter_ros.core.config import AdapterConfig
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    checkpoint, adapters = make_random_checkpoint(
        work / "src_2views", dataclasses.replace(config, cameras=TWO_VIEWS), {"task00": AdapterConfig(rank=8)}, seed=0)
    result = export_model(checkpoint, adapters, work / "model_2views", log=lambda _m: None)
    model = load_checkpoint(checkpoint, adapters=False).eval()
    load_adapter(model, adapters[0])
    set_adapter(model, None)
    log(f"exported the 2-view model ({', '.join(TWO_VIEWS)}; {model.fusion.n_tokens} fusion tokens)")
    return {"dir": work / "model_2views", "model": model, "names": result.adapters}


# ----------------------------------------------------------------------------- latency


def latency(
    built: dict[str, Any], threads: int, iters: int, providers: list[str], torch_device: str = "cpu",
    two_views: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Median ms per call at batch 1; variants interleaved in a shuffled order each round so load hits all alike.

    ``two_views`` (from :func:`build_two_views`): its variants run in the same rounds, suffixed ``_2views``.
    """
    import onnxruntime as ort
    import torch

    from vla_adapter_ros.core.adapters import set_adapter
    from vla_adapter_ros.core.export import scene_frames
    from vla_adapter_ros.core.model import example_inputs
    from vla_adapter_ros.runtime.policy import OnnxPolicy
    from vla_adapter_ros.runtime.providers import ModelKey, ProviderConfig, create_session

    torch.set_num_threads(threads)
    model, name = built["model"].to(torch_device), built["names"][0]
    x_cpu = example_inputs(model.config, batch_size=1, seed=0)
    x_t = [t.to(torch_device) for t in x_cpu]
    x = [t.numpy() for t in x_cpu]
    sync = torch.cuda.synchronize if torch_device.startswith("cuda") else (lambda: None)
    config = ProviderConfig(providers=tuple(providers), intra_op_threads=threads)
    shared = OnnxPolicy.from_dir(built["dir"], providers=config, mode="shared", adapter=name)
    merged = OnnxPolicy.from_dir(built["dir"], providers=config, mode="merged", load_adapters=[name])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    data = built["backbone"].read_bytes()
    backbone, _ = create_session(data, config.chain(ModelKey.of(data, [(t.name, t.shape) for t in shared.manifest.inputs])), so)
    feeds = dict(zip(("image", "instruction_embedding", "proprio"), x, strict=True))
    frame = scene_frames(1)[0]
    proprio = shared.manifest.proprio_normalizer.mean.copy()
    instruction = "open the drawer"

    def torch_call(net, inputs, adapter):
        def call():
            with torch.no_grad():
                net.predict(*inputs)
            sync()
        return (net, adapter), call

    variants = {
        "torch_backbone": torch_call(model, x_t, None),
        "torch_adapter": torch_call(model, x_t, name),
        "ort_backbone": (None, lambda: backbone.run(None, feeds)),
        "ort_merged_adapter": (None, lambda: merged.run_network(*x)),
        "ort_shared_adapter": (None, lambda: shared.run_network(*x)),
        "ort_shared_identity": (None, lambda: shared.run_network(*x, adapter=None)),
        "infer_shared_e2e": (None, lambda: shared.infer(frame, instruction, proprio)),
    }
    closing = [shared, merged]
    if two_views is not None:  # the same calls on the 2-camera model, in the same rounds
        model2, name2 = two_views["model"].to(torch_device), two_views["names"][0]
        x2_cpu = example_inputs(model2.config, batch_size=1, seed=0)  # image (1, 2, 3, H, W)
        x2 = [t.numpy() for t in x2_cpu]
        shared2 = OnnxPolicy.from_dir(two_views["dir"], providers=config, mode="shared", adapter=name2)
        merged2 = OnnxPolicy.from_dir(two_views["dir"], providers=config, mode="merged", load_adapters=[name2])
        frames2 = dict(zip(TWO_VIEWS, scene_frames(2, seed=1), strict=True))
        closing += [shared2, merged2]
        variants |= {
            "torch_adapter_2views": torch_call(model2, [t.to(torch_device) for t in x2_cpu], name2),
            "ort_merged_adapter_2views": (None, lambda: merged2.run_network(*x2)),
            "ort_shared_adapter_2views": (None, lambda: shared2.run_network(*x2)),
            "infer_shared_e2e_2views": (None, lambda: shared2.infer(frames2, instruction, proprio)),
        }
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    rng = np.random.default_rng(0)
    for i in range(iters + 10):
        rng.shuffle(order)  # no variant always runs right after PyTorch has flushed the caches
        for key in order:
            torch_adapter, call = variants[key]
            if torch_adapter is not None:
                set_adapter(*torch_adapter)
            t0 = time.perf_counter()
            call()
            dt = time.perf_counter() - t0
            if i >= 10:  # warm-up rounds are not counted
                times[key].append(dt * 1e3)
    set_adapter(model, None)
    if two_views is not None:
        set_adapter(two_views["model"], None)
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {
        "median_ms": med,
        "p90_ms": {k: float(np.percentile(v, 90)) for k, v in times.items()},
        "ratios": {
            "ort_merged_vs_torch": med["ort_merged_adapter"] / med["torch_adapter"],
            "ort_shared_vs_torch": med["ort_shared_adapter"] / med["torch_adapter"],
            "adapter_overhead_ort_merged": med["ort_merged_adapter"] / med["ort_backbone"],
            "adapter_overhead_ort_shared": med["ort_shared_adapter"] / med["ort_backbone"],
            "adapter_overhead_torch": med["torch_adapter"] / med["torch_backbone"],
        },
        "provider": shared.provider,
        "torch_device": torch_device,
        "iterations": iters,
        "threads": threads,
        "samples": {k: v for k, v in times.items()},
    }
    if two_views is not None:
        out["two_views"] = {
            "cameras": list(TWO_VIEWS),
            "fusion_tokens": {"1": model.fusion.n_tokens, "2": two_views["model"].fusion.n_tokens},
            "ratios": {k: med[f"{k}_2views"] / med[k] for k in
                       ("torch_adapter", "ort_merged_adapter", "ort_shared_adapter", "infer_shared_e2e")},
        }
    for policy in closing:
        policy.close()
    return out


# ----------------------------------------------------------------------------- memory / load / switch (subprocess)


def probe(model_dir: str, mode: str, threads: int, providers: list[str]) -> dict[str, Any]:
    """In a fresh process: load with one adapter, hot-add the rest one by one, switch among all."""
    from vla_adapter_ros.runtime.manifest import Manifest
    from vla_adapter_ros.runtime.policy import OnnxPolicy
    from vla_adapter_ros.runtime.providers import ProviderConfig

    names = Manifest.load(model_dir).adapter_names
    config = ProviderConfig(providers=tuple(providers), intra_op_threads=threads)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    policy = OnnxPolicy.from_dir(model_dir, providers=config, mode=mode, load_adapters=names[:1])
    first_load_s = time.perf_counter() - t0
    gc.collect()
    rss = [rss_bytes()]
    add_s = []
    for n in names[1:]:
        t = time.perf_counter()
        policy.load_adapter(n)  # validates, loads and warms this adapter
        add_s.append(time.perf_counter() - t)
        gc.collect()
        rss.append(rss_bytes())
    switch = []
    for i in range(20000):
        n = names[i % len(names)]
        t = time.perf_counter()
        policy.switch(n)
        switch.append(time.perf_counter() - t)
    m = policy.manifest
    per_adapter_file = float(np.mean([m.files[a.file][1] for a in m.adapters]))
    per_merged_file = float(np.mean([m.files[a.merged_file][1] for a in m.adapters]))
    out = {
        "mode": mode,
        "adapters_loaded": len(names),
        "rss_before_load_mb": rss0 / 2**20,
        "rss_one_adapter_mb": rss[0] / 2**20,
        "rss_all_adapters_mb": rss[-1] / 2**20,
        "rss_per_extra_adapter_bytes": (rss[-1] - rss[0]) / max(1, len(names) - 1),
        "adapter_file_bytes": per_adapter_file,
        "merged_file_bytes": per_merged_file,
        "load_s": policy.load_seconds,
        "warmup_s": policy.warmup_seconds,
        "load_plus_warmup_s": first_load_s,
        "hot_add_median_s": float(np.median(add_s)) if add_s else 0.0,
        "switch_p50_ms": float(np.percentile(switch, 50) * 1e3),
        "switch_p99_ms": float(np.percentile(switch, 99) * 1e3),
        "provider": policy.provider,
    }
    policy.close()
    return out


def run_probe(model_dir: Path, mode: str, threads: int, providers: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", mode, "--model-dir", str(model_dir),
           "--threads", str(threads), "--providers", ",".join(providers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe ({mode}) failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def latency_lines(lat: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    med, r = lat["median_ms"], lat["ratios"]
    verdicts = {
        "ort_vs_torch": r["ort_merged_vs_torch"] <= GOALS["ort_vs_torch"],
        "adapter_overhead": r["adapter_overhead_ort_merged"] <= GOALS["adapter_overhead"],
    }
    lines = [
        f"latency, batch 1, onnxruntime on {lat['provider']}, PyTorch eager on {lat['torch_device']}, "
        f"{lat['threads']} thread(s), median of {lat['iterations']} shuffled interleaved rounds",
        *(f"  {k:<26} {v:8.3f} ms   (p90 {lat['p90_ms'][k]:.3f})" for k, v in med.items()),
        "ratios",
        f"  onnxruntime merged / PyTorch eager (same backbone+adapter)  {r['ort_merged_vs_torch']:.3f}   "
        f"goal <= {GOALS['ort_vs_torch']}: {_OK[verdicts['ort_vs_torch']]}",
        f"  onnxruntime shared / PyTorch eager                           {r['ort_shared_vs_torch']:.3f}",
        f"  adapter overhead, onnxruntime merged / backbone alone        {r['adapter_overhead_ort_merged']:.3f}x  "
        f"goal <= {GOALS['adapter_overhead']}: {_OK[verdicts['adapter_overhead']]}",
        f"  adapter overhead, onnxruntime shared / backbone alone        {r['adapter_overhead_ort_shared']:.3f}x",
        f"  adapter overhead, PyTorch eager                              {r['adapter_overhead_torch']:.3f}x",
    ]
    two = lat.get("two_views")
    if two is not None:
        tokens = two["fusion_tokens"]
        lines.append(f"1 vs 2 cameras ({', '.join(two['cameras'])}; fusion tokens {tokens['1']} vs {tokens['2']}), "
                     "same rounds, median ms")
        lines += [f"  {k:<22} {med[k]:8.3f} vs {med[f'{k}_2views']:8.3f}   ({ratio:.2f}x)"
                  for k, ratio in two["ratios"].items()]
    return lines, verdicts


_OK = {True: "met", False: "NOT met"}


def table(lat: dict[str, Any], mem: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    shared, merged = mem["shared"], mem["merged"]
    shared_ratio = shared["rss_per_extra_adapter_bytes"] / shared["adapter_file_bytes"]
    lines, verdicts = latency_lines(lat)
    verdicts["switch_p99_ms"] = shared["switch_p99_ms"] <= GOALS["switch_p99_ms"]
    verdicts["shared_rss_per_file"] = shared_ratio <= GOALS["shared_rss_per_file"]
    lines += [
        f"switch() with {shared['adapters_loaded']} adapters loaded",
        f"  shared  p50 {shared['switch_p50_ms'] * 1e3:.2f} us  p99 {shared['switch_p99_ms'] * 1e3:.2f} us   "
        f"goal p99 <= {GOALS['switch_p99_ms'] * 1e3:.0f} us: {_OK[verdicts['switch_p99_ms']]}",
        f"  merged  p50 {merged['switch_p50_ms'] * 1e3:.2f} us  p99 {merged['switch_p99_ms'] * 1e3:.2f} us",
        "resident memory per extra loaded adapter (RSS, fresh process, each adapter warmed)",
        f"  shared  {shared['rss_per_extra_adapter_bytes'] / 1024:9.1f} KiB   adapter file "
        f"{shared['adapter_file_bytes'] / 1024:.1f} KiB   ratio {shared_ratio:.2f}   "
        f"goal <= {GOALS['shared_rss_per_file']}: {_OK[verdicts['shared_rss_per_file']]}",
        f"  merged  {merged['rss_per_extra_adapter_bytes'] / 1024:9.1f} KiB   merged model file "
        f"{merged['merged_file_bytes'] / 1024:.1f} KiB   ratio "
        f"{merged['rss_per_extra_adapter_bytes'] / merged['merged_file_bytes']:.2f}",
        "load + warm-up (fresh process, 1 adapter; language encoder included)",
        *(f"  {m:<7} load {mem[m]['load_s']:.2f} s + warm-up {mem[m]['warmup_s']:.2f} s; "
          f"hot-add one more adapter {mem[m]['hot_add_median_s'] * 1e3:.1f} ms (median)" for m in ("shared", "merged")),
    ]
    return "\n".join(lines), verdicts


def plot(lat: dict[str, Any], mem: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    med = lat["median_ms"]
    ax = axes[0]
    ax.barh(list(med), list(med.values()), color=["#888" if k.startswith("torch") else "#2a7" for k in med])
    ax.set_xlabel("median latency, ms (batch 1)")
    ax.set_title(f"latency ({lat['provider']}, {lat['threads']} thread(s))")
    ax.invert_yaxis()
    ax = axes[1]
    samples = lat["samples"]
    keys = ["torch_adapter", "ort_merged_adapter", "ort_shared_adapter", "ort_backbone"]
    ax.boxplot([samples[k] for k in keys], showfliers=False)
    ax.set_xticks(range(1, len(keys) + 1), [k.replace("_", "\n") for k in keys], fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("latency distribution")
    ax = axes[2]
    modes = ["shared", "merged"]
    per = [mem[m]["rss_per_extra_adapter_bytes"] / 1024 for m in modes]
    ax.bar(modes, per, color=["#2a7", "#c63"])
    ax.bar(modes, [mem["shared"]["adapter_file_bytes"] / 1024, mem["merged"]["merged_file_bytes"] / 1024],
           fill=False, edgecolor="k", linestyle="--", label="file size")
    ax.set_yscale("log")
    ax.set_ylabel("KiB per extra adapter (RSS)")
    ax.set_title("memory per extra loaded adapter")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench_runtime"), help="output dir for JSON + PNG")
    parser.add_argument("--threads", type=int, default=1, help="threads for both PyTorch and onnxruntime")
    parser.add_argument("--iters", type=int, default=150, help="timed calls per latency variant")
    parser.add_argument("--providers", default="cpu", help="onnxruntime providers in order (default cpu)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="backbone checkpoint (default: random model)")
    parser.add_argument("--adapter", type=Path, action="append", default=[], help="adapter dir (with --checkpoint)")
    parser.add_argument("--probe", choices=["shared", "merged"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if args.probe:
        print(json.dumps(probe(args.model_dir, args.probe, args.threads, providers)))
        return 0
    if args.checkpoint is not None and not args.adapter:
        parser.error("--checkpoint needs at least one --adapter")

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="vla_bench_"))
    try:
        built = build_model(work, args.checkpoint, args.adapter)
        two_views = build_two_views(work, built["model"].config)
        lat = latency(built, args.threads, args.iters, providers, two_views=two_views)
        mem = {m: run_probe(built["dir"], m, args.threads, providers) for m in ("shared", "merged")}
        text, verdicts = table(lat, mem)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        lat_json = {k: v for k, v in lat.items() if k != "samples"}
        report = {
            "note": built["note"],
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "export_s": built["export_s"],
            "parity_max_abs_diff": built["parity_max_abs_diff"],
            "latency": lat_json,
            "memory_load_switch": mem,
            "goals": GOALS,
            "goals_met": verdicts,
            "wall_s": time.perf_counter() - start,
        }
        (args.out / "bench_runtime.json").write_text(json.dumps(report, indent=2) + "\n")
        plot(lat, mem, args.out / "bench_runtime.png")
        print(f"wrote {args.out / 'bench_runtime.json'} and {args.out / 'bench_runtime.png'} "
              f"({report['wall_s']:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
