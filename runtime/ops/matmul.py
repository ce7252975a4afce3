"""matmul: batched matrix product with broadcast batch dimensions (both operands >= 2-d;
the front end reshapes 1-d operands as PyTorch does)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..registry import Primitive, TensorType, ops, register
from ..shapes import broadcast_shapes, fmt
from ._common import require_same_dtype, sum_to


def _matmul_meta(a: TensorType, b: TensorType) -> TensorType:
    require_same_dtype("matmul", a, b)
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ShapeError(f"matmul: primitive needs operands of at least 2 dimensions, got "
                         f"{fmt(a.shape)} and {fmt(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {fmt(a.shape)} and {fmt(b.shape)} cannot be multiplied "
                         f"({a.shape[-1]} != {b.shape[-2]})",
                         hint="the last dimension of the first operand must equal the "
                              "second-to-last of the second")
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _transpose_last(t):
    n = len(t.shape)
    return ops.permute(t, dims=tuple(range(n - 2)) + (n - 1, n - 2))


def _matmul_vjp(c, g):
    a, b = c.inputs
    return (sum_to(ops.matmul(g, _transpose_last(b)), a.shape) if c.needs[0] else None,
            sum_to(ops.matmul(_transpose_last(a), g), b.shape) if c.needs[1] else None)


register(Primitive("matmul", "matmul", _matmul_meta, np.matmul, _matmul_vjp, saves=(0, 1)))
