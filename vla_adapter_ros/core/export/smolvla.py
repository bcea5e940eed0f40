"""``vla-adapter export`` for a SmolVLA (LeRobot) checkpoint: prefix + denoise graphs, adapters, manifest, parity.

The LeRobot side (loading, adapters, ``torch.onnx.export(dynamo=True)``, LeRobot's own
``predict_action_chunk`` as the reference) runs in the LeRobot venv through
``families.smolvla.bridge``; this module (main venv) writes the model directory: the two graphs, one
onnxruntime adapter file per adapter (the tensors of both graphs), the tokenizer, and a
``SmolVLAManifest`` (``family: smolvla``). Parity is then measured through the torch-free runtime
(``runtime.smolvla.SmolVLAPolicy``) on the same inputs and the same noise, twice:

- ``graphs``: model-side inputs (batch of 2) -> the normalised chunk, against ``predict_action_chunk``;
- ``pipeline``: a raw uint8 frame + raw state + instruction through the runtime's own tokenizer,
  normalisation and de-normalisation, against LeRobot's pre-processor -> ``predict_action_chunk`` ->
  post-processor (actions in robot units); the token ids must be identical.

Every adapter and the backbone alone must be within ``tolerance`` (default 1e-4), or nothing is published.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from vla_adapter_ros import __version__
from vla_adapter_ros.families.smolvla.bridge import WorkerError, run_worker
from vla_adapter_ros.processing import Normalizer
from vla_adapter_ros.runtime import manifest as mf
from vla_adapter_ros.runtime import manifest_smolvla as ms
from vla_adapter_ros.runtime.smolvla import SmolVLAPolicy

from .artifacts import write_manifest
from .errors import ExportError
from .graph import ADAPTER_INPUT_PREFIX, write_adapter_file

DEFAULT_TOLERANCE = 1e-4
UNBOUNDED = 1e6
LEROBOT_EPS = 1e-8
UNROLLED_META = "unrolled.json"  # written by the worker's export-unrolled
ACTION_DT = 1 / 30  # a SmolVLA checkpoint does not say its dataset's rate; LeRobot's datasets are mostly 30 fps


def is_smolvla_checkpoint(checkpoint: Path) -> bool:
    try:
        return json.loads((Path(checkpoint) / "config.json").read_text()).get("type") == ms.FAMILY
    except (OSError, ValueError, AttributeError):
        return False


def export_smolvla(checkpoint: str | Path, adapters: Sequence[str | Path], out: str | Path, *, name: str | None = None,
                   tolerance: float = DEFAULT_TOLERANCE, action_low: Sequence[float] | None = None,
                   action_high: Sequence[float] | None = None, state_names: Sequence[str] | None = None,
                   action_names: Sequence[str] | None = None, force: bool = False,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Export a SmolVLA checkpoint + adapters into ``out``; returns the parity table and timings.

    ``state_names`` / ``action_names``: the robot's names of the state and action dimensions (the robot
    contract's; a LeRobot checkpoint does not carry them): default ``state_<i>`` / ``action_<i>``.
    """
    from . import (  # the package's atomic publish (its __init__ imports this module lazily)
        _make_temp_dir,
        _publish,
    )

    start = time.perf_counter()
    out = Path(out)
    if not adapters:
        raise ExportError("no adapter given; pass at least one --adapter DIR")
    if out.exists() and not force:
        raise ExportError(f"{str(out)!r} already exists; remove it or pass --force")
    tmp = _make_temp_dir(out)
    try:
        with tempfile.TemporaryDirectory(prefix="smolvla-stage-") as stage_dir:
            stage = Path(stage_dir)
            log(f"exporting {checkpoint} in the LeRobot venv ...")
            try:
                run_worker("export", str(checkpoint), "--out", str(stage), *(x for a in adapters for x in ("--adapter", str(a))))
            except WorkerError as exc:
                raise ExportError(f"SmolVLA export failed: {exc}") from exc
            meta = json.loads((stage / "smolvla.json").read_text())
            manifest = _write_directory(tmp, stage, meta, name or out.name, action_low, action_high,
                                        state_names, action_names)
            rows = measure_parity(tmp, stage, meta, tolerance)
            worst = max(r["max_abs"] for r in rows)
            log("\n".join(f"  {r['check']:<9} {r['adapter'] or '(backbone)':<16} max |diff| {r['max_abs']:.2e}" for r in rows))
            if worst > tolerance or not all(r.get("tokens_equal", True) for r in rows):
                raise ExportError(f"parity failed: max |diff| {worst:.3e} > {tolerance:g} (or the token ids differ)")
            from dataclasses import replace

            write_manifest(replace(manifest, parity={
                "tolerance": tolerance, "passed": True, "rows": rows,
                "reference": f"LeRobot {meta['versions']['lerobot']} predict_action_chunk, torch {meta['versions']['torch']}, "
                             "CPU float32, same noise"}))
        ms.SmolVLAManifest.load(tmp)  # the runtime must accept exactly what is published
        _publish(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "adapters": list(meta["adapters"]), "rows": rows, "timing_s": meta["timing_s"],
            "seconds": time.perf_counter() - start}


def _write_directory(tmp: Path, stage: Path, meta: dict[str, Any], name: str, low: Sequence[float] | None,
                     high: Sequence[float] | None, state: Sequence[str] | None,
                     action: Sequence[str] | None) -> ms.SmolVLAManifest:
    for rel in (ms.PREFIX_FILE, ms.DENOISE_FILE):
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stage / rel, tmp / rel)
    (tmp / ms.TOKENIZER_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(stage / "tokenizer.json", tmp / ms.TOKENIZER_FILE)
    for adapter in meta["adapters"]:
        with np.load(stage / f"adapter.{adapter}.npz") as z:
            write_adapter_file(tmp / mf.adapter_file(adapter), {k: z[k] for k in z.files})
    state_names = tuple(state or (f"state_{i}" for i in range(meta["state_dim"])))
    action_names = tuple(action or (f"action_{i}" for i in range(meta["action_dim"])))
    if len(state_names) != meta["state_dim"] or len(action_names) != meta["action_dim"]:
        raise ExportError(f"{len(state_names)} state / {len(action_names)} action names for a SmolVLA with "
                          f"{meta['state_dim']} state / {meta['action_dim']} action dimensions")
    # LeRobot checkpoints carry no action bounds: without --action-low/--action-high, a wide finite range
    # (the contract needs finite numbers) so the runtime's clip never bites.
    lo = _per_action(low, -UNBOUNDED, len(action_names))
    hi = _per_action(high, UNBOUNDED, len(action_names))
    cameras = tuple(mf.CameraInput(c, ms.image_input(c, len(meta["cameras"])), *meta["image_size"]) for c in meta["cameras"])
    stats = meta["stats"]

    def lerobot_normalizer(key: str) -> Normalizer:
        """LeRobot's MEAN_STD: (x - mean) / (std + 1e-8), no larger floor (ours is 1e-2 by default)."""
        return Normalizer(stats[key]["mean"], np.asarray(stats[key]["std"], np.float64) + LEROBOT_EPS, LEROBOT_EPS)
    graphs = meta["graphs"]

    def inputs(rel: str) -> tuple[mf.TensorSpec, ...]:
        return tuple(mf.TensorSpec(k, tuple(s), "float32") for k, s in graphs[rel]["adapter_inputs"].items())

    manifest = ms.SmolVLAManifest(
        root=tmp, name=name, created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        versions={**meta["versions"], "vla_adapter_ros": __version__, "onnx": onnx.__version__,
                  "onnxruntime": ort.__version__},
        model_config={k: meta[k] for k in ("max_state_dim", "max_action_dim", "chunk_size", "num_steps",
                                           "tokenizer_max_length", "image_size")},
        backbone={"fingerprint": meta["fingerprint"], "num_parameters": meta["parameters"], "checkpoint": meta["checkpoint"]},
        image=mf.ImageSpec(*meta["image_size"]), cameras=cameras,
        contract=mf.derived_contract(tuple(meta["cameras"]), state_names, action_names, lo, hi),
        proprio=mf.ProprioSpec(state_names, lerobot_normalizer("observation.state")),
        actions=mf.ActionSpec(action_names, lo, hi, meta["chunk_size"], ACTION_DT,
                              lerobot_normalizer("action")),
        smolvla=ms.SmolVLASpec(
            prefix=ms.PREFIX_FILE, denoise=ms.DENOISE_FILE, tokenizer=ms.TOKENIZER_FILE,
            max_length=meta["tokenizer_max_length"], pad_token_id=meta["pad_token_id"], num_steps=meta["num_steps"],
            chunk_size=meta["chunk_size"], max_state_dim=meta["max_state_dim"], max_action_dim=meta["max_action_dim"],
            prefix_adapter_inputs=inputs(ms.PREFIX_FILE), denoise_adapter_inputs=inputs(ms.DENOISE_FILE)),
        adapters=tuple(_adapter_spec(n, a) for n, a in meta["adapters"].items()),
        default_adapter=next(iter(meta["adapters"])),
    )
    return write_manifest(manifest)


def _adapter_spec(name: str, info: dict[str, Any]) -> mf.AdapterSpec:
    c = info["config"]
    return mf.AdapterSpec(
        name=name, task=c.get("task") or name, instruction_examples=(), method="bottleneck", rank=int(c["rank"]),
        description=f"bottleneck adapter (rank {c['rank']}, {'+'.join(c['sites'])}) on SmolVLA",
        num_parameters=int(info["num_parameters"]), file=mf.adapter_file(name), sha256="", merged_file="",
        merged_sha256="", config=c)


def _per_action(values: Sequence[float] | None, default: float, n: int) -> tuple[float, ...]:
    if values is None:
        return (default,) * n
    v = [float(x) for x in values]
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise ExportError(f"action bounds need 1 or {n} values, got {len(v)}")
    return tuple(v)


def measure_parity(model_dir: Path, stage: Path, meta: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    """The runtime against LeRobot's reference: model-side inputs, then the whole pipeline from raw inputs."""
    rows = []
    ref = np.load(stage / "reference.npz")
    with SmolVLAPolicy.from_dir(model_dir, providers=["cpu"], warmup=False) as policy:
        n = len(meta["cameras"])
        feeds = {k: ref[k] for k in (*(ms.image_input(c, n) for c in meta["cameras"]), "lang_tokens", "lang_mask", "state")}
        frames = {c: ref[f"pipeline.frame.{c}"] for c in meta["cameras"]}
        tokens, _ = policy.tokens(meta["instruction"])
        for adapter in (None, *meta["adapters"]):
            got = policy.run_network(feeds, ref["noise"], adapter)[:, :, : meta["action_dim"]]
            diff = float(np.abs(got - ref[f"actions.{adapter or ''}"]).max())
            rows.append({"check": "graphs", "adapter": adapter, "max_abs": diff})
            policy.switch(adapter)
            result = policy.infer(frames, meta["instruction"], ref["pipeline.state"], noise=ref["pipeline.noise"])
            diff = float(np.abs(result.actions - ref[f"pipeline.actions.{adapter or ''}"]).max())
            rows.append({"check": "pipeline", "adapter": adapter, "max_abs": diff,
                         "tokens_equal": bool(np.array_equal(tokens, ref["pipeline.tokens"]))})
    return rows


def unrolled_session(stage: Path, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime CPU session of ``export-unrolled``'s graph in ``stage`` (options as the runtime's)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the adapter inputs-with-initializers are by design
    if threads:
        so.intra_op_num_threads = threads
    meta = json.loads((stage / UNROLLED_META).read_text())
    return ort.InferenceSession(str(stage / meta["file"]), so, providers=["CPUExecutionProvider"])


def measure_unrolled_parity(stage: Path) -> list[dict[str, Any]]:
    """``export-unrolled``'s one graph (model-side inputs, batch of 2, the reference noise) against LeRobot's
    ``predict_action_chunk``, for the backbone alone and each adapter: max |diff| per row."""
    meta = json.loads((stage / UNROLLED_META).read_text())
    ref = np.load(stage / "reference.npz")
    session = unrolled_session(stage)
    declared = {i.name for i in (*session.get_inputs(), *session.get_overridable_initializers())}
    feeds = {k: ref[k] for k in meta["graph"]["inputs"]}
    rows = []
    for adapter in (None, *meta["adapters"]):
        tensors = {} if adapter is None else dict(np.load(stage / f"adapter.{adapter}.npz"))
        extra = {ADAPTER_INPUT_PREFIX + k: v for k, v in tensors.items() if ADAPTER_INPUT_PREFIX + k in declared}
        got = session.run(["actions"], {**feeds, **extra})[0][:, :, : meta["action_dim"]]
        rows.append({"check": "unrolled", "adapter": adapter,
                     "max_abs": float(np.abs(got - ref[f"actions.{adapter or ''}"]).max())})
    return rows


def adapter_input_names(manifest: ms.SmolVLAManifest) -> list[str]:
    return [t.name for t in manifest.adapter_inputs if t.name.startswith(ADAPTER_INPUT_PREFIX)]
