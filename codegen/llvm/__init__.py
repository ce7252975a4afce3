"""CPU backend: kernels lowered to LLVM IR with llvmlite and compiled with MCJIT.

Building blocks (see docs/cpu-backend.md):
- jit: host target, module helpers, O3 + vectorisation, object emit/reload, ctypes binding
- mathlib: vectorisable exp/log/tanh/erf/... emitted into a module (no libm calls)
- parallel: a persistent worker pool callable from generated code (`tracecc_parallel_for`)
- matmul: sgemm from numpy's bundled OpenBLAS, callable from generated code, plus epilogue
"""

from . import backend  # noqa: E402,F401  (registers the "llvm" backend)
