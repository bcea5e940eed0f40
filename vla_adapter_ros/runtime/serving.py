"""The two ways one prepared adapter runs its session: plain feeds, or device-resident bindings.

- :class:`PlainRunner`: ``session.run(outputs, numpy feeds, run_options)``; in shared mode the
  adapter is an onnxruntime ``LoraAdapter`` activated through the slot's ``RunOptions``. On a
  GPU provider onnxruntime copies every fed tensor, adapter weights included (~40 tensors for
  the bundled model), from host memory to the device at every run.
- :class:`BoundRunner`: ``session.run_with_iobinding``. ``run_with_iobinding`` ignores adapters
  set on ``RunOptions``, so each adapter's tensors are uploaded to the provider's device ONCE,
  when the adapter is prepared, and bound as inputs of that adapter's own ``IOBinding``; the
  network inputs live in preallocated device buffers updated in place (one host -> device copy
  per input and frame, the unavoidable one), and the output is bound to host memory.

On the CPU provider both run the same kernels on the same values, so their outputs are equal
(the tests check it, adapter switching and hot-add included); on CUDA/TensorRT the bound path
saves the per-frame adapter copies.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort


class PlainRunner:
    """``session.run`` with numpy feeds and the adapter's RunOptions (thread-safe like the session)."""

    serving = "plain"

    def __init__(self, session: ort.InferenceSession, outputs: Sequence[str], run_options: ort.RunOptions | None,
                 adapter: Any = None) -> None:
        self.session = session
        self.outputs = list(outputs)
        self.run_options = ort.RunOptions() if run_options is None else run_options
        self.adapter = adapter  # the LoraAdapter, kept alive while run_options refers to it

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, dict(feeds), self.run_options)


class BoundRunner:
    """One adapter's device-resident run: adapter tensors bound once, input buffers updated in place.

    ``buffer_shapes``: the shape of each network input that gets a preallocated buffer (batch 1
    for serving); a feed of another shape is uploaded for that call only. One run at a time per
    runner (a lock): the buffers are shared state.
    """

    serving = "iobinding"

    def __init__(
        self,
        session: ort.InferenceSession,
        outputs: Sequence[str],
        device: tuple[str, int],
        buffer_shapes: Mapping[str, Sequence[int]],
        adapter_tensors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.session = session
        self.outputs = list(outputs)
        self.device, self.device_id = device
        self.run_options = ort.RunOptions()  # no adapters here: run_with_iobinding would ignore them
        self._lock = threading.Lock()
        self._binding = session.io_binding()
        # OrtValue.ortvalue_from_numpy does not copy on the CPU: the host arrays stay referenced here.
        self._host = {k: np.ascontiguousarray(v) for k, v in (adapter_tensors or {}).items()}
        self._resident = {k: self._upload(v) for k, v in self._host.items()}
        for name, value in self._resident.items():
            self._binding.bind_ortvalue_input(name, value)
        self._buffers = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, self.device, self.device_id)
            for name, shape in buffer_shapes.items()
        }
        self._bound: dict[str, ort.OrtValue] = {}

    @property
    def adapter_tensor_names(self) -> list[str]:
        return sorted(self._resident)

    def _upload(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(array, self.device, self.device_id)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            call: list[ort.OrtValue] = []  # per-call uploads, alive until the run returns
            for name, array in feeds.items():
                buffer = self._buffers.get(name)
                if buffer is not None and tuple(buffer.shape()) == array.shape:
                    if array.size:
                        buffer.update_inplace(np.ascontiguousarray(array, np.float32))
                    value = buffer
                else:
                    value = self._upload(np.ascontiguousarray(array))
                    call.append(value)
                if self._bound.get(name) is not value:
                    self._binding.bind_ortvalue_input(name, value)
                    self._bound[name] = value
            # Outputs bound by device only: onnxruntime allocates them in host memory for this run's
            # shape (an output it allocated stays bound and would refuse the next batch size).
            self._binding.clear_binding_outputs()
            for name in self.outputs:
                self._binding.bind_output(name, "cpu")
            self._binding.synchronize_inputs()
            self.session.run_with_iobinding(self._binding, self.run_options)
            self._binding.synchronize_outputs()
            out = [v.numpy() for v in self._binding.get_outputs()]
            for name in [n for n, v in self._bound.items() if any(v is c for c in call)]:
                del self._bound[name]  # rebind the buffer next time, not a freed per-call upload
            return out
