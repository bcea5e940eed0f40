"""What the runtime checks before it serves a file: graphs and adapter files against the manifest.

The runtime never guesses: a session whose inputs/outputs differ from the manifest, or an
adapter file whose tensors do not fit the shared graph, is refused with both sides named.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vla_adapter_ros.runtime.errors import ManifestError
from vla_adapter_ros.runtime.manifest import AdapterSpec, Manifest, TensorSpec

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


def check_graph(manifest: Manifest, session: ort.InferenceSession, adapter_inputs: Sequence[TensorSpec], rel: str) -> None:
    """The session's inputs/outputs must be exactly what the manifest describes."""
    declared = {t.name: t for t in (*manifest.inputs, *manifest.outputs, *adapter_inputs)}
    actual = [*session.get_inputs(), *session.get_outputs(), *session.get_overridable_initializers()]
    names = [a.name for a in actual]
    if sorted(names) != sorted(declared):
        missing, extra = sorted(set(declared) - set(names)), sorted(set(names) - set(declared))
        raise ManifestError(f"{rel}: the graph lacks {missing[:8]} that the manifest declares, and has {extra[:8]} "
                            "the manifest does not declare")
    for a in actual:
        want = declared[a.name]
        shape = [d if isinstance(d, int) else "?" for d in a.shape]
        expect = [d if isinstance(d, int) else "?" for d in want.shape]
        dtype = _ORT_DTYPES.get(getattr(a, "type", "tensor(float)"), "?")
        if shape != expect or dtype != want.dtype:
            raise ManifestError(f"{rel}: {a.name} is {a.shape} {dtype}, the manifest says {list(want.shape)} {want.dtype}")


def read_adapter_tensors(adapter_inputs: Sequence[TensorSpec], path: Path, spec: AdapterSpec) -> dict[str, np.ndarray]:
    """The adapter file's tensors, checked against the graph's adapter inputs (every family's)."""
    try:
        # The OrtValues point into the AdapterFormat's buffer: keep it alive while copying out
        # (onnxruntime 1.23 crashes reading them from a temporary).
        adapter_format = ort.AdapterFormat.read_adapter(str(path))
        params = adapter_format.get_parameters()
        tensors = {k: np.array(v.numpy(), copy=True) for k, v in params.items()}
        del params, adapter_format
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise ManifestError(f"adapter {spec.name!r}: cannot read {spec.file!r}: {exc}") from exc
    expected = {t.name: t for t in adapter_inputs}
    got = {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items()}
    if set(got) != set(expected):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        raise ManifestError(
            f"adapter {spec.name!r} ({spec.file}) does not fit the shared backbone: "
            f"missing tensors {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected tensors {extra[:5]}{'...' if len(extra) > 5 else ''}"
        )
    for key, (shape, dtype) in got.items():
        want = expected[key]
        if shape != tuple(want.shape) or dtype != want.dtype:
            raise ManifestError(
                f"adapter {spec.name!r} tensor {key!r} is {list(shape)} {dtype}; "
                f"the shared backbone expects {list(want.shape)} {want.dtype}"
            )
    return tensors
