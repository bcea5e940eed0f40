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


class GraphSession:
    """One CUDA-graph session of a model: every input and output at a fixed device address.

    onnxruntime's CUDA provider with ``enable_cuda_graph`` captures the whole run once and then
    replays it: one launch instead of one per kernel (H200, bundled model, network p50 1.67 ->
    0.64 ms, bit-identical; docs/BENCHMARKS.md). Replay reads whatever the fixed buffers hold, so
    the adapter tensors of the model's adapter inputs live in ONE set of device buffers shared by
    every adapter of the session; a run for another adapter first copies that adapter's tensors in
    (:class:`GraphRunner`; ~40 small host -> device copies, only when the adapter changes). A graph
    has one shape: batch-1 feeds replay it, any other batch runs ``fallback`` (the ordinary
    session) with the adapter tensors as feeds. On the CPU provider the same code runs without a
    graph (the tests check it against the plain path there).
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        fallback: ort.InferenceSession,
        outputs: Sequence[str],
        device: tuple[str, int],
        input_shapes: Mapping[str, Sequence[int]],
        adapter_shapes: Mapping[str, Sequence[int]],
    ) -> None:
        self.session, self.fallback = session, fallback
        self.outputs = list(outputs)
        self.device, self.device_id = device
        self.lock = threading.Lock()
        self.loaded: object = None  # the GraphRunner whose adapter tensors are in the buffers
        self._binding = session.io_binding()

        def buffer(shape: Sequence[int]) -> ort.OrtValue:
            return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, self.device, self.device_id)

        self.inputs = {name: buffer(shape) for name, shape in input_shapes.items()}
        self.adapter = {name: buffer(shape) for name, shape in adapter_shapes.items()}
        for name, value in {**self.inputs, **self.adapter}.items():
            self._binding.bind_ortvalue_input(name, value)
        zeros = {k: np.zeros(tuple(s), np.float32) for k, s in input_shapes.items()}
        shapes = [o.shape for o in fallback.run(self.outputs, zeros)]
        self.results = [buffer(shape) for shape in shapes]
        for name, value in zip(self.outputs, self.results, strict=True):
            self._binding.bind_ortvalue_output(name, value)

    def replay(self, run_options: ort.RunOptions) -> list[np.ndarray]:
        """Run on what the buffers hold (the caller holds ``lock``); outputs copied to host arrays."""
        self.session.run_with_iobinding(self._binding, run_options)
        return [v.numpy() for v in self.results]


class GraphRunner:
    """One adapter served through a shared :class:`GraphSession`."""

    serving = "cuda_graph"

    def __init__(self, graph: GraphSession, adapter_tensors: Mapping[str, np.ndarray] | None = None) -> None:
        self.graph = graph
        self.session = graph.session
        self.outputs = graph.outputs
        self.run_options = ort.RunOptions()  # no adapters here (they are in the graph's buffers)
        tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in (adapter_tensors or {}).items()}
        # Every adapter input is bound in a graph (a graph's own default values cannot be read
        # without the onnx package): an adapter must bring all of them.
        if set(tensors) != set(graph.adapter):
            raise ValueError(f"a graph adapter needs exactly the graph's adapter inputs: missing "
                             f"{sorted(set(graph.adapter) - set(tensors))}, unknown {sorted(set(tensors) - set(graph.adapter))}")
        self._host = tensors

    @property
    def adapter_tensor_names(self) -> list[str]:
        return sorted(self._host)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        graph = self.graph
        if any(tuple(graph.inputs[name].shape()) != np.shape(array) for name, array in feeds.items()) \
                or set(feeds) != set(graph.inputs):
            return graph.fallback.run(self.outputs, {**dict(feeds), **self._host}, self.run_options)
        with graph.lock:
            if graph.loaded is not self:
                for name, array in self._host.items():
                    graph.adapter[name].update_inplace(array)
                graph.loaded = self
            for name, array in feeds.items():
                graph.inputs[name].update_inplace(np.ascontiguousarray(array, np.float32))
            return graph.replay(self.run_options)
