"""How one adapter's network run should move data on a GPU provider: the serving modes side by side.

    python benchmarks/bench_serving_modes.py [--model-dir models/default] [--provider cuda] [--frames 2000]

gpu_check (H200, onnxruntime 1.31.1, CUDA) measured the device-resident path (``BoundRunner``) SLOWER
than plain ``session.run`` for the bundled model (network p50 2.51 vs 1.93 ms), although plain copies
every adapter tensor to the device at every run. This script finds out which part costs what, with
the same session, adapter and frames for every variant, interleaved in blocks so drift hits all alike:

- ``plain``: ``session.run`` with numpy feeds and the adapter's ``LoraAdapter`` on ``RunOptions``
  (``PlainRunner``);
- ``bound``: ``BoundRunner`` as served today (adapter tensors resident, inputs copied into
  preallocated device buffers with ``update_inplace``, ``synchronize_inputs``, outputs to host);
- ``bound_cpu_in``: adapter tensors resident, the per-frame inputs bound as host arrays with
  ``bind_cpu_input`` (onnxruntime copies them on its own stream inside the run), outputs to host;
- ``bound_nosync``: ``bound`` without the explicit ``synchronize_inputs`` / ``synchronize_outputs``;
- ``merged_plain``: the adapter's merged graph (no adapter inputs) through ``session.run``;
- ``GraphRunner``: what ``serving="cuda_graph"`` serves (the runtime's own runner; on the CPU
  provider the same fixed buffers without a graph);
- ``cuda_graph`` (CUDA only, this script's own minimal version): a second session with ``enable_cuda_graph``: every input and the output
  at fixed device addresses (adapters resident, inputs updated in place), so a run replays one
  captured graph instead of launching each kernel.

Every variant's actions are compared with ``plain`` (bit-equal on the CPU provider; within 1e-5 on
CUDA). Prints a table of p50 / p90 / p99 per variant and the ratio of each p50 to ``plain``, and
writes ``serving_modes.json`` into ``--out``. Runs on the CPU provider anywhere (its self-test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

import onnxruntime as ort  # noqa: E402

from vla_adapter_ros.runtime.policy import OnnxPolicy  # noqa: E402
from vla_adapter_ros.runtime.providers import ProviderConfig, device_of  # noqa: E402
from vla_adapter_ros.runtime.serving import BoundRunner, PlainRunner  # noqa: E402

Run = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


def bound_variant(runner: BoundRunner, inputs_in_buffers: bool) -> Run:
    """The runner's resident adapter tensors in a binding of its own; per run the inputs go into the
    runner's device buffers (``update_inplace``, no explicit synchronize: ``bound_nosync``) or are
    bound as host arrays that onnxruntime copies on its own stream (``bound_cpu_in``)."""
    binding = runner.session.io_binding()
    bound = {**runner._resident, **(runner._buffers if inputs_in_buffers else {})}
    for name, value in bound.items():
        binding.bind_ortvalue_input(name, value)

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        for name, array in feeds.items():
            if inputs_in_buffers:
                runner._buffers[name].update_inplace(np.ascontiguousarray(array, np.float32))
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(array, np.float32))
        binding.clear_binding_outputs()
        for name in runner.outputs:
            binding.bind_output(name, "cpu")
        runner.session.run_with_iobinding(binding, runner.run_options)
        return [v.numpy() for v in binding.get_outputs()]

    return run


def cuda_graph(runner: BoundRunner, model: bytes, output_shape: tuple[int, ...], device_id: int) -> Run:
    """A CUDA-graph session: adapters, inputs and the output bound once at fixed device addresses."""
    session = ort.InferenceSession(model, providers=[
        ("CUDAExecutionProvider", {"device_id": device_id, "use_tf32": 0, "enable_cuda_graph": "1"})])
    binding = session.io_binding()
    resident = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", device_id) for k, v in runner._host.items()}
    buffers = {k: ort.OrtValue.ortvalue_from_shape_and_type(list(b.shape()), np.float32, "cuda", device_id)
               for k, b in runner._buffers.items()}
    out = ort.OrtValue.ortvalue_from_shape_and_type(list(output_shape), np.float32, "cuda", device_id)
    for name, value in {**resident, **buffers}.items():
        binding.bind_ortvalue_input(name, value)
    binding.bind_ortvalue_output(runner.outputs[0], out)

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        for name, array in feeds.items():
            buffers[name].update_inplace(np.ascontiguousarray(array, np.float32))
        session.run_with_iobinding(binding)
        return [out.numpy()]

    run.keep = (session, resident, buffers, out)  # type: ignore[attr-defined]
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--provider", default="cpu", help="cpu, cuda or tensorrt")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--block", type=int, default=100, help="frames per variant before the next one runs")
    parser.add_argument("--out", type=Path, default=Path("artifacts/serving_modes"))
    args = parser.parse_args()

    config = ProviderConfig(providers=(args.provider,), serving="iobinding")
    with OnnxPolicy.from_dir(args.model_dir, providers=config) as policy:
        slot = policy._state  # the active adapter's prepared slot: its session and bound runner
        runner = slot.runner
        if not isinstance(runner, BoundRunner):
            raise SystemExit(f"expected a BoundRunner on {slot.provider}, got {type(runner).__name__}")
        adapter_file = policy.manifest.verify(slot.spec.file) if slot.spec is not None else None
        if adapter_file is not None:
            lora = ort.LoraAdapter()
            lora.Load(str(adapter_file))
            options = ort.RunOptions()
            options.add_active_adapter(lora)
            plain = PlainRunner(slot.session, runner.outputs, options, lora)
        else:
            plain = PlainRunner(slot.session, runner.outputs, None)
        variants: dict[str, Run] = {"plain": plain.run, "bound": runner.run,
                                    "bound_cpu_in": bound_variant(runner, inputs_in_buffers=False),
                                    "bound_nosync": bound_variant(runner, inputs_in_buffers=True)}
        rng = np.random.default_rng(0)
        feeds_list = []
        for _ in range(16):
            feeds = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in policy._zeros().items()}
            feeds_list.append(feeds)
        spec = slot.spec
        if spec is not None and spec.merged_file:
            merged = ort.InferenceSession(str(policy.manifest.verify(spec.merged_file)),
                                          providers=slot.session.get_providers(),
                                          provider_options=[slot.session.get_provider_options()[p]
                                                            for p in slot.session.get_providers()])
            variants["merged_plain"] = lambda f, s=merged, o=runner.outputs: s.run(o, dict(f))
        if slot.provider == "CUDAExecutionProvider":
            shape = plain.run(feeds_list[0])[0].shape
            backbone = policy.manifest.verify(policy.manifest.shared.file).read_bytes()
            variants["cuda_graph"] = cuda_graph(runner, backbone, shape, 0)
        # what serving="cuda_graph" serves (runtime.serving.GraphRunner; on the CPU without a graph)
        graph_config = ProviderConfig(providers=(args.provider,), serving="cuda_graph")
        graph_policy = OnnxPolicy.from_dir(args.model_dir, providers=graph_config, adapter=slot.name)
        variants["GraphRunner"] = graph_policy._state.runner.run
        reference = [plain.run(f)[0] for f in feeds_list]
        worst = {}
        for name, run in variants.items():
            for _ in range(20):  # warm-up: allocator and stream settled
                run(feeds_list[0])
            worst[name] = max(float(np.abs(run(f)[0] - r).max()) for f, r in zip(feeds_list, reference, strict=True))
        times: dict[str, list[float]] = {name: [] for name in variants}
        done = 0
        while done < args.frames:
            for name, run in variants.items():
                for i in range(args.block):
                    feeds = feeds_list[(done + i) % len(feeds_list)]
                    t0 = time.perf_counter()
                    run(feeds)
                    times[name].append((time.perf_counter() - t0) * 1e3)
            done += args.block
        provider = slot.provider
        graph_policy.close()
    rows = []
    base = float(np.median(times["plain"]))
    print(f"{provider}, {args.model_dir}, {done} frames per variant in blocks of {args.block} (network only, ms)")
    print(f"{'variant':<14} {'p50':>8} {'p90':>8} {'p99':>8} {'p50/plain':>10} {'max |diff| vs plain':>20}")
    for name, t in times.items():
        p50, p90, p99 = (float(np.percentile(t, q)) for q in (50, 90, 99))
        rows.append({"variant": name, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "ratio_p50": p50 / base,
                     "max_abs_diff": worst[name]})
        print(f"{name:<14} {p50:8.3f} {p90:8.3f} {p99:8.3f} {p50 / base:10.2f} {worst[name]:20.2e}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_modes.json").write_text(json.dumps(
        {"provider": provider, "device": device_of(provider, 0), "frames": done, "onnxruntime": ort.__version__,
         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
