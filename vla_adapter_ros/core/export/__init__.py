"""``vla-adapter export``: a trained backbone + task adapters -> a self-describing ONNX model directory.

What lands in ``--out`` (layout and manifest schema: :mod:`vla_adapter_ros.runtime.manifest`):

- ``shared/backbone.onnx``: the policy with every adapter tensor as a named graph input
  that also has an initializer (identity adapter by default), plus one onnxruntime adapter
  file per task in ``adapters/`` (``AdapterFormat``), so the runtime swaps adapters per run
  through ``RunOptions.add_active_adapter`` without a new session;
- ``merged/<name>.onnx``: the same graph with that adapter's tensors baked in as constants
  and folded (self-contained; what TensorRT likes); ``merged_fp16/`` with ``--fp16``;
- ``language/``: all-MiniLM-L6-v2 (mean pooling + L2 norm inside), int8 with
  ``--quantize-language``, and its tokenizer files;
- ``manifest.json``: inputs/outputs (one image input per camera), cameras, the robot contract
  (``<checkpoint>/contract.yaml``, else the one derived from the model's names and bounds), image
  size and colour order, normalisation, action spec, adapters, every file's sha256, versions and
  the parity table.

Adapters may differ in rank, placement and scaling as long as they share a method (and,
for bottlenecks, an activation): the shared graph carries the union of their slots at the
largest rank. Each adapter is zero-padded into it (zero rows/columns contribute exactly
nothing) with its scaling folded into the up-projection, so one graph serves all of them.

The graph is exported once with the dynamo exporter (the adapter tensors are passed in
through ``torch.func.functional_call``, so nothing about them can be constant-folded); the
merged models are derived from it. Parity is then measured through the deployed runtime
(:class:`vla_adapter_ros.runtime.policy.OnnxPolicy`, both modes, every adapter, random and
realistic inputs, two batch sizes) against PyTorch eager; any difference above the
tolerance fails the export and nothing is left behind. Work happens in a hidden temp
directory next to ``--out`` that is renamed into place only at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_adapter_ros.contract import ContractError, RobotContract
from vla_adapter_ros.core.adapters import AdapterLoadError, SavedAdapter, load_adapter
from vla_adapter_ros.core.checkpoint import CONFIG_NAME, CONTRACT_NAME, CheckpointError, load_checkpoint
from vla_adapter_ros.names import AdapterNameError, validate_adapter_name
from vla_adapter_ros.runtime import manifest as mf

from . import smolvla  # noqa: E402 - after the helpers it reuses (the SmolVLA family's exporter)
from .artifacts import build_manifest, write_manifest
from .errors import ExportError
from .graph import (
    DEFAULT_OPSET,
    SharedLayout,
    bake,
    build_template,
    export_predictor,
    export_shared,
    save_proto,
    shared_tensors,
    to_fp16,
    write_adapter_file,
)
from .language import export_encoder, load_encoder, quantize_encoder
from .parity import ParityRow, check_parity, format_table, measure_parity, scene_frames
from .random_model import make_random_checkpoint

DEFAULT_TOLERANCE = 1e-4
DEFAULT_MIN_LANGUAGE_COSINE = 0.98
EXPORTABLE_METHODS = ("bottleneck", "lora")  # tuners the ONNX graphs carry; prefix tuning is not exported

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_TOLERANCE",
    "ExportError",
    "ExportResult",
    "ParityRow",
    "add_arguments",
    "check_parity",
    "export_model",
    "export_predictor",
    "format_table",
    "make_random_checkpoint",
    "measure_parity",
    "run",
    "scene_frames",
]


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="backbone checkpoint directory")
    parser.add_argument(
        "--adapter", required=True, action="append", type=Path, metavar="DIR",
        help="saved adapter directory (repeat for several); the first is the default adapter",
    )
    parser.add_argument("--out", required=True, type=Path, help="model directory to create, e.g. models/NAME")
    parser.add_argument("--name", default=None, help="model name in the manifest (default: the --out directory name)")
    parser.add_argument("--fp16", action="store_true", help="also write fp16 merged models and measure their error")
    parser.add_argument("--quantize-language", action="store_true", help="ship the language encoder int8-quantised")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs difference allowed (fp32)")
    parser.add_argument("--action-low", default=None,
                        help="action lower bound(s): one number or a comma list (default: the contract's, else -1)")
    parser.add_argument("--action-high", default=None,
                        help="action upper bound(s): one number or a comma list (default: the contract's, else 1)")
    parser.add_argument("--language-model", type=Path, default=None, help="all-MiniLM-L6-v2 directory (default: bundled)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--state-names", nargs="+", default=None,
                        help="SmolVLA checkpoints: the robot's state names (default state_0 ...)")
    parser.add_argument("--action-names", nargs="+", default=None,
                        help="SmolVLA checkpoints: the robot's action names (default action_0 ...)")


def run(args: argparse.Namespace) -> int:
    if smolvla.is_smolvla_checkpoint(args.checkpoint):  # a LeRobot SmolVLA checkpoint: the family's exporter
        try:
            out = smolvla.export_smolvla(args.checkpoint, args.adapter, args.out, name=args.name,
                                         tolerance=min(args.tolerance, smolvla.DEFAULT_TOLERANCE),
                                         action_low=_bounds(args.action_low, "--action-low"),
                                         action_high=_bounds(args.action_high, "--action-high"),
                                         state_names=args.state_names, action_names=args.action_names, force=args.force)
        except ExportError as exc:
            print(f"vla-adapter export: error: {exc}", file=sys.stderr)
            return 2
        print(f"exported {out['out']} (SmolVLA, {len(out['adapters'])} adapters) in {out['seconds']:.1f} s")
        return 0
    try:
        result = export_model(
            args.checkpoint,
            args.adapter,
            args.out,
            name=args.name,
            fp16=args.fp16,
            quantize_language=args.quantize_language,
            opset=args.opset,
            tolerance=args.tolerance,
            action_low=_bounds(args.action_low, "--action-low"),
            action_high=_bounds(args.action_high, "--action-high"),
            language_model=args.language_model,
            force=args.force,
        )
    except ExportError as exc:
        print(f"vla-adapter export: error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {result.out} ({len(result.adapters)} adapters) in {result.seconds:.1f} s")
    return 0


def _bounds(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError as exc:
        raise ExportError(f"{flag} {text!r} is not a number or a comma list of numbers") from exc


# ----------------------------------------------------------------------------- the export


@dataclass
class ExportResult:
    out: Path
    adapters: list[str]
    rows: list[ParityRow] = field(default_factory=list)
    language: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def export_model(
    checkpoint: str | Path,
    adapters: Sequence[str | Path],
    out: str | Path,
    *,
    name: str | None = None,
    fp16: bool = False,
    quantize_language: bool = False,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    action_low: Sequence[float] | None = None,
    action_high: Sequence[float] | None = None,
    language_model: str | Path | None = None,
    min_language_cosine: float = DEFAULT_MIN_LANGUAGE_COSINE,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Export ``checkpoint`` + ``adapters`` into the model directory ``out`` (see the module doc).

    ``action_low`` / ``action_high``: one value or one per action; None = the bounds of
    ``<checkpoint>/contract.yaml`` where it gives them, else -1 / 1.
    """
    start = time.perf_counter()
    out = Path(out)
    if not adapters:
        raise ExportError("no adapter given; pass at least one --adapter DIR")
    try:
        validate_adapter_name(name or out.name, "model name")
    except AdapterNameError as exc:
        raise ExportError(f"{exc} (the model is named like its adapters)") from exc
    if opset < 18:
        raise ExportError(f"--opset {opset} is too old; the dynamo exporter needs 18 or newer")
    if not (0 < tolerance < 1):
        raise ExportError(f"--tolerance must be in (0, 1), got {tolerance}")
    if out.exists() and not force:
        raise ExportError(f"{str(out)!r} already exists; remove it or pass --force")
    tmp = _make_temp_dir(out)
    try:
        result = _export_into(
            tmp, out, Path(checkpoint), [Path(a) for a in adapters], name=name or out.name, fp16=fp16,
            quantize_language=quantize_language, opset=opset, tolerance=tolerance, action_low=action_low,
            action_high=action_high, language_model=language_model, min_language_cosine=min_language_cosine,
            log=log,
        )
        _publish(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.seconds = time.perf_counter() - start
    return result


def _make_temp_dir(out: Path) -> Path:
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise ExportError(f"cannot write the output next to {str(out)!r}: {exc.strerror or exc}") from exc


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished temp directory into place (a directory rename is atomic)."""
    backup = None
    try:
        if out.exists():
            if not force:
                raise ExportError(f"{str(out)!r} appeared while exporting; not replacing it")
            backup = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, backup)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model directory is meant to be read by others
        os.rename(tmp, out)
    except OSError as exc:
        if backup is not None and not out.exists():
            os.rename(backup, out)
        raise ExportError(f"cannot move the export into {str(out)!r}: {exc.strerror or exc}") from exc
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _export_into(
    tmp: Path,
    out: Path,
    checkpoint: Path,
    adapter_dirs: list[Path],
    *,
    name: str,
    fp16: bool,
    quantize_language: bool,
    opset: int,
    tolerance: float,
    action_low: Sequence[float] | None,
    action_high: Sequence[float] | None,
    language_model: str | Path | None,
    min_language_cosine: float,
    log: Callable[[str], None],
) -> ExportResult:
    torch.manual_seed(0)
    model, names = _load_policy(checkpoint, adapter_dirs)
    cfg = model.config
    contract = _load_contract(checkpoint, cfg)
    bounds = _action_bounds(action_low, action_high, cfg.action_names, contract)
    if contract is None:
        contract = mf.derived_contract(cfg.cameras, cfg.proprio_names, cfg.action_names, *bounds)
    log(f"backbone {checkpoint} ({model.num_backbone_parameters():,} parameters), cameras {list(cfg.cameras)}, "
        f"adapters {names}")
    layout = _write_policy_graphs(tmp, model, names, opset, fp16, log)

    log("exporting the language encoder ...")
    encoder = load_encoder(language_model)
    language = export_encoder(encoder, tmp, opset)
    manifest = write_manifest(build_manifest(tmp, name, model, names, layout, bounds, language, contract,
                                             fp16=fp16, opset=opset, checkpoint=checkpoint))
    # -- quantise after the fp32 reference is in place (its error is measured against it)
    language_info: dict[str, Any] = {}
    if quantize_language:
        language_info = quantize_encoder(tmp, encoder, min_language_cosine)
        quantized = replace(manifest.language, quantized=True, quantization=language_info)
        manifest = write_manifest(replace(manifest, language=quantized))

    log("checking parity through the runtime (both modes, every adapter) ...")
    rows = measure_parity(tmp, model, encoder, names, tolerance, fp16, quantize_language)
    log(format_table(rows))
    check_parity(rows)
    write_manifest(replace(manifest, parity={
        "tolerance": tolerance,
        "passed": True,
        "reference": f"PyTorch {torch.__version__} eager, CPU, float32",
        "rows": [r.to_dict() for r in rows],
    }))
    mf.Manifest.load(tmp)  # the runtime must accept exactly what is published
    return ExportResult(out, names, rows, language_info)


def _write_policy_graphs(
    tmp: Path, model: Any, names: list[str], opset: int, fp16: bool, log: Callable[[str], None]
) -> SharedLayout:
    """One dynamo export of the shared graph; per adapter its adapter file and the merged model(s) derived from it."""
    template, layout = build_template(model, names)
    tensors = {n: shared_tensors(model, n, template, layout) for n in names}
    log("exporting the shared-backbone graph ...")
    shared_proto = export_shared(template, layout, opset)
    save_proto(shared_proto, tmp / mf.SHARED_FILE)
    for n in names:
        write_adapter_file(tmp / mf.adapter_file(n), tensors[n])
        baked = bake(shared_proto, tensors[n])
        save_proto(baked, tmp / mf.merged_file(n))
        if fp16:
            save_proto(to_fp16(baked), tmp / mf.merged_fp16_file(n))
    return layout


# ----------------------------------------------------------------------------- loading


def _load_policy(checkpoint: Path, adapter_dirs: list[Path]) -> tuple[Any, list[str]]:
    try:
        model = load_checkpoint(checkpoint, adapters=False)
    except CheckpointError as exc:
        raise ExportError(f"checkpoint {str(checkpoint)!r} is not a usable backbone: {exc}") from exc
    model.eval()
    names: list[str] = []
    for directory in adapter_dirs:
        if not directory.is_dir():
            raise ExportError(f"adapter directory {str(directory)!r} does not exist")
        try:
            saved = SavedAdapter.load(directory)
        except (FileNotFoundError, ValueError) as exc:
            raise ExportError(f"adapter {str(directory)!r} is not a saved adapter: {exc}") from exc
        if saved.name in names:
            raise ExportError(f"two adapters are named {saved.name!r} ({str(directory)!r}); names must be unique")
        if saved.method not in EXPORTABLE_METHODS:
            raise ExportError(
                f"adapter {saved.name!r} is a {saved.method} tuner; ONNX export covers {list(EXPORTABLE_METHODS)} "
                "(prefix tuning is trained and evaluated in PyTorch only)"
            )
        if "language" in saved.config.components:
            raise ExportError(
                f"adapter {saved.name!r} adapts the language encoder; exported models ship one adapter-free "
                "language encoder shared by every adapter (train it on vision/fusion)"
            )
        try:
            names.append(load_adapter(model, directory))
        except AdapterLoadError as exc:
            raise ExportError(f"adapter {str(directory)!r} does not match checkpoint {str(checkpoint)!r}: {exc}") from exc
    model.eval()
    return model, names


def _load_contract(checkpoint: Path, config: Any) -> RobotContract | None:
    """``<checkpoint>/contract.yaml`` (saved beside the checkpoint by training), checked against the model; None without one."""
    path = checkpoint / CONTRACT_NAME
    if not path.is_file():
        return None
    try:
        contract = RobotContract.load(path)
    except ContractError as exc:
        raise ExportError(f"checkpoint {str(checkpoint)!r} has an unusable {CONTRACT_NAME}: {exc}") from exc
    problems = mf.contract_mismatches(contract, config.cameras, config.proprio_names, config.action_names)
    if problems:
        raise ExportError(f"{path} does not describe the model in {str(checkpoint)!r} ({CONFIG_NAME}): "
                          + "; ".join(problems))
    return contract


def _action_bounds(low: Sequence[float] | None, high: Sequence[float] | None, action_names: Sequence[str],
                   contract: RobotContract | None = None) -> tuple[list[float], list[float]]:
    """Per-action bounds: the given ones (one value = every action), else the contract's finite ones, else -1 / 1."""
    limits = [(a.low, a.high) for a in contract.actions] if contract is not None else [(-np.inf, np.inf)] * len(action_names)
    low = list(low) if low is not None else [lo if np.isfinite(lo) else -1.0 for lo, _ in limits]
    high = list(high) if high is not None else [hi if np.isfinite(hi) else 1.0 for _, hi in limits]
    n = len(action_names)
    low = low * n if len(low) == 1 else low
    high = high * n if len(high) == 1 else high
    if len(low) != n or len(high) != n:
        raise ExportError(f"action bounds need 1 or {n} values for {list(action_names)}, got low={low} high={high}")
    bad = [a for a, lo, hi in zip(action_names, low, high, strict=True) if not lo <= hi]
    if bad or not all(np.isfinite(low + high)):
        raise ExportError(f"action bounds must be finite with low <= high; bad for {bad}: low={low} high={high}")
    return [float(x) for x in low], [float(x) for x in high]
