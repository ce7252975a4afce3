"""Hand-written kernels of the kernel IR shared by the evaluator/LLVM tests
(test_kernel_ir.py) and the Triton tests (test_triton_lower.py): each builder returns the
kernel, its buffers, and the inputs to compute the expected result from. They draw their
data from the caller's generator (each test file keeps its own sequence of draws)."""

import numpy as np

from tracecc.passes.kernel_ir import (
    Acc, Index, Kernel, Load, LoopVar, Matmul, Op, Phase, Reduction, RowValue, Store,
)
from tracecc.runtime.dtypes import float32


def pointwise_kernel(rng):
    """y[i, j] = relu(x.T[i, j] + b[j]) with x stored as (J, I): the transpose is an index."""
    I, J = 5, 7  # noqa: E741
    i, j = LoopVar("i0", I), LoopVar("i1", J)
    x = rng.standard_normal((J, I)).astype(np.float32)
    b = rng.standard_normal(J).astype(np.float32)
    xt = Load("x", Index.affine([(i, 1), (j, I)]), float32)
    bj = Load("b", Index.affine([(j, 1)]), float32)
    body = Op("relu", (Op("add", (xt, bj), float32),), float32)
    k = Kernel("poi_fused_add_relu_0", "pointwise", (i, j),
               (Phase(stores=(Store("y", Index.affine([(i, J), (j, 1)]), body),)),),
               members=["add %1 (model.py:12)", "relu %2 (model.py:12)"])
    return k, {"x": x.ravel(), "b": b, "y": np.zeros(I * J, np.float32)}, (x, b)


def softmax_kernel(rng, R=4, C=9):
    r, c1, c2, c3 = LoopVar("i0", R), LoopVar("r0", C), LoopVar("r1", C), LoopVar("r2", C)
    x = rng.standard_normal((R, C)).astype(np.float32)

    def load(c):
        return Load("x", Index.affine([(r, C), (c, 1)]), float32)

    shifted = lambda c: Op("sub", (load(c), RowValue("m", float32)), float32)  # noqa: E731
    k = Kernel("red_fused_softmax_1", "reduction", (r,), (
        Phase((c1,), reductions=(Reduction("m", "maximum", load(c1), float32),)),
        Phase((c2,), reductions=(Reduction("s", "add", Op("exp", (shifted(c2),), float32), float32),)),
        Phase((c3,), stores=(Store("y", Index.affine([(r, C), (c3, 1)]),
                                   Op("div", (Op("exp", (shifted(c3),), float32),
                                              RowValue("s", float32)), float32)),)),
    ))
    return k, {"x": x.ravel(), "y": np.zeros(R * C, np.float32)}, x


def matmul_kernel(rng, M=6, K=5, N=3, dtype=float32):
    m, n, kk = LoopVar("i0", M), LoopVar("i1", N), LoopVar("k", K)
    a = rng.standard_normal((M, K)).astype(dtype.np)
    w = rng.standard_normal((N, K)).astype(dtype.np)  # Linear weight: x @ w.T
    bias = rng.standard_normal(N).astype(np.float32)
    epi = Op("relu", (Op("add", (Acc(dtype), Op("cast", (Load("bias", Index.affine([(n, 1)]), float32),),
                                                          dtype, (("dtype", dtype),))), dtype),), dtype)
    mm = Matmul(Load("a", Index.affine([(m, K), (kk, 1)]), dtype),
                Load("w", Index.affine([(kk, 1), (n, K)]), dtype), kk,
                (Store("y", Index.affine([(m, N), (n, 1)]), epi),))
    k = Kernel("mm_epi_bias_relu_2", "matmul", (m, n), matmul=mm)
    return k, {"a": a.ravel(), "w": w.ravel(), "bias": bias, "y": np.zeros(M * N, dtype.np)}
