"""The language encoder (all-MiniLM-L6-v2) as ONNX, its tokenizer files, optional int8 quantisation.

The encoder is frozen and the same in every export, and tracing it with the dynamo exporter takes
~7 s of CPU: the graph is kept in a cache (:func:`language_cache`) keyed by everything it depends on
(the model's files, torch / onnx / onnxscript versions, the opset, this exporter's source), so the next
export copies it. The parity check measures every export's language graph against PyTorch as before.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from vla_adapter_ros.core.language import LanguageEncoder
from vla_adapter_ros.runtime import manifest as mf
from vla_adapter_ros.runtime.language import LanguageEncoder as RtEncoder
from vla_adapter_ros.runtime.providers import CACHE_ROOT

from . import graph
from .errors import ExportError
from .graph import finish_io, quiet, save_proto, torch_export
from .parity import PARITY_SENTENCES

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
CACHE_ENV = "VLA_LANGUAGE_CACHE"  # a folder; "off": no cache (every export traces the encoder)


def language_cache() -> Path | None:
    """Where exported language graphs are kept: $VLA_LANGUAGE_CACHE, default
    $XDG_CACHE_HOME/vla_adapter_ros/language (~/.cache/...); None when it is "off"."""
    value = os.environ.get(CACHE_ENV, "")
    if value.strip().lower() == "off":
        return None
    return Path(value).expanduser() if value.strip() else CACHE_ROOT / "language"


def _cache_key(encoder: Any, opset: int) -> str:
    h = hashlib.sha256()
    src = Path(encoder.model_path)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(src)}\0{_digest(path)}\0".encode())
    for part in (torch.__version__, onnx.__version__, onnxscript.__version__, str(opset), type(encoder).__name__,
                 inspect.getsource(sys.modules[__name__]), inspect.getsource(graph)):  # the exporter's own code
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _from_cache(entry: Path | None, dest: Path) -> bool:
    """The cached graph copied to ``dest`` if the entry is whole (its recorded sha256 matches)."""
    if entry is None or not (entry / "encoder.onnx").is_file() or not (entry / "sha256").is_file():
        return False
    if _digest(entry / "encoder.onnx") != (entry / "sha256").read_text().strip():
        return False
    shutil.copyfile(entry / "encoder.onnx", dest)
    return True


def _to_cache(entry: Path | None, graph_file: Path) -> None:
    """Best effort (a read-only or full disk only costs the next export the trace): written aside, then
    renamed into place, so a reader never sees half an entry, and two exports racing both succeed."""
    if entry is None:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        shutil.copyfile(graph_file, staging / "encoder.onnx")
        (staging / "sha256").write_text(_digest(graph_file))
        try:
            os.replace(staging, entry)
        except OSError:  # another export put it there first (a non-empty folder is not replaced)
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        return


def load_encoder(path: str | Path | None) -> Any:
    try:
        return LanguageEncoder(path).eval()
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load the language model: {exc}") from exc


def export_encoder(encoder: Any, root: Path, opset: int) -> mf.LanguageSpec:
    """The encoder as ONNX plus its tokenizer files, into the model directory ``root``."""
    out_dir = root / mf.LANGUAGE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    (embedding,) = mf.LANGUAGE_OUTPUTS
    cache = language_cache()
    entry = cache / _cache_key(encoder, opset) if cache is not None else None
    if not _from_cache(entry, root / mf.LANGUAGE_FILE):
        tokens = encoder.tokenize(["open the drawer", "pick up the puck and place it at the goal"])
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        seq = torch.export.Dim("sequence", min=1, max=512)
        dyn = ({0: batch, 1: seq}, {0: batch, 1: seq})
        proto = torch_export(encoder, (tokens["input_ids"], tokens["attention_mask"]), list(mf.LANGUAGE_INPUTS), dyn,
                             opset, "language encoder")
        finish_io(proto, {"__output__": embedding}, {**{n: ("batch", "sequence") for n in mf.LANGUAGE_INPUTS},
                                                    embedding: ("batch",)})
        save_proto(proto, root / mf.LANGUAGE_FILE)
        _to_cache(entry, root / mf.LANGUAGE_FILE)
    src = Path(encoder.model_path)
    extra = []
    for fname in TOKENIZER_FILES:
        if (src / fname).is_file():
            shutil.copyfile(src / fname, out_dir / fname)
            if f"{mf.LANGUAGE_DIR}/{fname}" != mf.TOKENIZER_FILE:
                extra.append(f"{mf.LANGUAGE_DIR}/{fname}")
    if not (root / mf.TOKENIZER_FILE).is_file():
        raise ExportError(f"the language model at {src} has no tokenizer.json (the runtime's tokenizer needs it)")
    dim = int(encoder.dim)
    return mf.LanguageSpec(
        file=mf.LANGUAGE_FILE, tokenizer=mf.TOKENIZER_FILE, extra_files=tuple(extra), embedding_dim=dim,
        max_length=int(encoder.max_length),
        inputs=tuple(mf.TensorSpec(n, ("batch", "sequence"), "int64") for n in mf.LANGUAGE_INPUTS),
        outputs=(mf.TensorSpec(embedding, ("batch", dim), "float32"),),
    )


def quantize_encoder(tmp: Path, encoder: Any, min_cosine: float) -> dict[str, Any]:
    """int8 dynamic quantisation of the encoder; cosine similarity to the fp32 PyTorch embeddings, measured."""
    fp32 = tmp / mf.LANGUAGE_FILE
    int8 = fp32.with_suffix(".int8.onnx")
    fp32_bytes = fp32.stat().st_size
    with quiet():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    os.replace(int8, fp32)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    tokenizer = (tmp / mf.TOKENIZER_FILE).read_bytes()
    rt = RtEncoder.from_bytes(session, tokenizer, int(encoder.dim), int(encoder.max_length), cache_size=0)
    texts = list(PARITY_SENTENCES)
    got = rt.encode_batch(texts)
    ref = encoder.encode(texts).detach().cpu().numpy()
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    info = {
        "method": "onnxruntime quantize_dynamic, int8 weights (per channel)",
        "fp32_bytes": fp32_bytes,
        "int8_bytes": fp32.stat().st_size,
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.abs(got - ref).max()),
        "sentences": len(texts),
    }
    if not info["min_cosine"] >= min_cosine:
        raise ExportError(
            f"int8 language encoder is too far from fp32: min cosine {info['min_cosine']:.4f} < {min_cosine}; "
            "export without --quantize-language"
        )
    return info
