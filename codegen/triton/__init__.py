"""GPU backend: kernel IR -> Triton source -> kernels on an NVIDIA GPU, or on Triton's
CPU interpreter in tests (see docs/gpu-backend.md).

- scalar: one Triton emitter per pointwise op name (the twin of codegen/llvm/scalar.py)
- lower: kernel IR -> one readable Triton module per kernel, plus its launch specs
- launch: writing/importing generated modules, argument adapters, configs, autotuning
- backend: TritonProgram (a Program's buffers and launch plan) and the "triton" backend

Importing this package does not import triton; that happens when a kernel is loaded.
"""

from . import backend  # noqa: F401  (registers the "triton" and "triton_interpret" backends)
