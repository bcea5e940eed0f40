"""How a policy's network runs, by name: the one list the runtime, the node parameters and the docs
use. Imports nothing (the node parameters read it without loading onnxruntime)."""

# "plain": session.run() with numpy feeds, adapters through RunOptions (host memory, copied to
# the device every run on a GPU). "iobinding": inputs and adapter tensors bound once per adapter
# on the provider's device, a preallocated input buffer updated in place. "cuda_graph": iobinding
# at fixed addresses, the run captured once as a CUDA graph and replayed (runtime/serving.
# GraphSession); TensorRT gets iobinding, the CPU the same fixed-buffer runner without a graph. "auto": cuda_graph on CUDA
# (H200: network p50 0.38x plain, bit-identical), iobinding on TensorRT, plain on the CPU.
SERVING_MODES = ("auto", "plain", "iobinding", "cuda_graph")
