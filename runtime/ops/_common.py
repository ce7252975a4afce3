"""Helpers shared by the op definitions: dtype checks and gradient reshaping."""

from __future__ import annotations

from ..dtypes import BOOL, FLOAT
from ..errors import DTypeError
from ..registry import TensorType, ops


def require_float(op: str, *types: TensorType) -> None:
    for t in types:
        if t.dtype.category != FLOAT:
            raise DTypeError(f"{op}: expected a floating-point tensor, got {t.dtype}",
                             hint="convert with .float() first")


def require_integer(op: str, *types: TensorType, allow_bool: bool = True) -> None:
    """Bitwise ops: integer tensors (and bool where the op has a logical meaning)."""
    for t in types:
        if t.dtype.category == FLOAT or (t.dtype.category == BOOL and not allow_bool):
            kinds = "integer or bool" if allow_bool else "integer"
            raise DTypeError(f"{op}: expected {kinds} tensors, got "
                             f"{' and '.join(str(x.dtype) for x in types)}",
                             hint="bitwise ops are not defined on floating-point values" if
                             t.dtype.category == FLOAT else "convert with .long() first")


def require_same_dtype(op: str, *types: TensorType) -> None:
    first = types[0].dtype
    for t in types[1:]:
        if t.dtype is not first:
            raise DTypeError(f"{op}: dtypes must match, got {' and '.join(str(x.dtype) for x in types)}",
                             hint="the front end promotes dtypes; when calling primitives "
                                  "directly, cast with .to(dtype)")


def sum_to(g, shape: tuple[int, ...]):
    """Undo broadcasting: sum g over the dimensions that were broadcast to reach g.shape."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = len(g.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    if axes:
        g = ops.sum(g, axes=axes, keepdim=False)
    if tuple(g.shape) != tuple(shape):
        g = ops.reshape(g, shape=tuple(shape))
    return g


def zeros(shape, dtype):
    return ops.full(shape=tuple(shape), value=0, dtype=dtype)


def scalar(value, dtype):
    return ops.full(shape=(), value=value, dtype=dtype)
