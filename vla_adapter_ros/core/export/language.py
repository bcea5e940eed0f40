"""The language encoder (all-MiniLM-L6-v2) as ONNX, its tokenizer files, optional int8 quantisation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from vla_adapter_ros.core.language import LanguageEncoder
from vla_adapter_ros.runtime import manifest as mf
from vla_adapter_ros.runtime.language import LanguageEncoder as RtEncoder

from .errors import ExportError
from .graph import finish_io, quiet, save_proto, torch_export
from .parity import PARITY_SENTENCES

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def load_encoder(path: str | Path | None) -> Any:
    try:
        return LanguageEncoder(path).eval()
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load the language model: {exc}") from exc


def export_encoder(encoder: Any, root: Path, opset: int) -> mf.LanguageSpec:
    """The encoder as ONNX plus its tokenizer files, into the model directory ``root``."""
    out_dir = root / mf.LANGUAGE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = encoder.tokenize(["open the drawer", "pick up the puck and place it at the goal"])
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    seq = torch.export.Dim("sequence", min=1, max=512)
    dyn = ({0: batch, 1: seq}, {0: batch, 1: seq})
    proto = torch_export(
        encoder, (tokens["input_ids"], tokens["attention_mask"]), list(mf.LANGUAGE_INPUTS), dyn, opset, "language encoder"
    )
    (embedding,) = mf.LANGUAGE_OUTPUTS
    finish_io(proto, {"__output__": embedding}, {**{n: ("batch", "sequence") for n in mf.LANGUAGE_INPUTS},
                                                embedding: ("batch",)})
    save_proto(proto, root / mf.LANGUAGE_FILE)
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
