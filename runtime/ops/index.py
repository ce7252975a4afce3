"""Data-dependent indexing: gather, scatter_add, index_select, index_add.

Indices are int64 tensors; out-of-range indices raise with the op named.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, IndexError_, ShapeError
from ..registry import Primitive, TensorType, ops, register
from ..shapes import fmt
from ._common import require_same_dtype, zeros


def _check_index(op, index: TensorType):
    if index.dtype.category != dtypes.INT:
        raise DTypeError(f"{op}: index must be an integer tensor, got {index.dtype}")


def _check_bounds(op, index, size):
    if index.size and (index.min() < -size or index.max() >= size):
        raise IndexError_(f"{op}: index out of range for a dimension of size {size} "
                          f"(got values {int(index.min())}..{int(index.max())})")


# --- gather / scatter_add (torch.gather semantics: index has x's rank)
def _gather_meta(x: TensorType, index: TensorType, axis) -> TensorType:
    _check_index("gather", index)
    if len(index.shape) != len(x.shape) or _larger_off_axis(index.shape, x.shape, axis):
        raise ShapeError(f"gather: index of shape {fmt(index.shape)} does not fit input of shape "
                         f"{fmt(x.shape)} (same rank, and no larger outside dimension {axis})")
    return TensorType(tuple(index.shape), x.dtype)


def _larger_off_axis(index_shape, x_shape, axis) -> bool:
    """torch.gather/scatter_add: index may not be larger than the input outside `axis`."""
    return any(i > d for a, (i, d) in enumerate(zip(index_shape, x_shape)) if a != axis)


def _gather_kernel(x, index, axis):
    if _larger_off_axis(index.shape, x.shape, axis):
        raise ValueError("gather: index larger than the input")  # numpy would broadcast; meta explains
    _check_bounds("gather", index, x.shape[axis])
    region = tuple(slice(0, n) if a != axis else slice(None) for a, n in enumerate(index.shape))
    return np.take_along_axis(x[region], index, axis=axis)


def _gather_vjp(c, g):
    x, index = c.inputs
    return (ops.scatter_add(zeros(x.shape, g.dtype), index, g, axis=c.params["axis"]), None)


register(Primitive("gather", "index", _gather_meta, _gather_kernel, _gather_vjp,
                   saves=(1,)))


def _scatter_add_meta(x: TensorType, index: TensorType, src: TensorType, axis) -> TensorType:
    _check_index("scatter_add", index)
    require_same_dtype("scatter_add", x, src)
    if len(index.shape) != len(x.shape) or tuple(index.shape) != tuple(src.shape):
        raise ShapeError(f"scatter_add: index {fmt(index.shape)} and src {fmt(src.shape)} must "
                         f"have the same shape and the rank of input {fmt(x.shape)}")
    if _larger_off_axis(index.shape, x.shape, axis):
        raise ShapeError(f"scatter_add: index of shape {fmt(index.shape)} does not fit input of "
                         f"shape {fmt(x.shape)} outside dimension {axis}")
    return x


def _scatter_add_kernel(x, index, src, axis):
    if _larger_off_axis(index.shape, x.shape, axis):
        raise ValueError("scatter_add: index larger than the input")  # meta explains
    _check_bounds("scatter_add", index, x.shape[axis])
    out = np.array(x, copy=True)
    coords = list(np.indices(index.shape, sparse=True))
    coords[axis] = index
    np.add.at(out, tuple(coords), src)
    return out


def _scatter_add_vjp(c, g):
    _, index, _ = c.inputs
    return (g, None, ops.gather(g, index, axis=c.params["axis"]))


register(Primitive("scatter_add", "index", _scatter_add_meta, _scatter_add_kernel, _scatter_add_vjp,
                   saves=(1,)))


# --- index_select / index_add (a 1-d index along one axis)
def _index_select_meta(x: TensorType, index: TensorType, axis) -> TensorType:
    _check_index("index_select", index)
    if len(index.shape) != 1:
        raise ShapeError(f"index_select: index must be 1-d, got shape {fmt(index.shape)}")
    shape = list(x.shape)
    shape[axis] = index.shape[0]
    return TensorType(tuple(shape), x.dtype)


def _index_select_kernel(x, index, axis):
    _check_bounds("index_select", index, x.shape[axis])
    return np.take(x, index, axis=axis)


def _index_select_vjp(c, g):
    x, index = c.inputs
    return (ops.index_add(zeros(x.shape, g.dtype), index, g, axis=c.params["axis"]), None)


register(Primitive("index_select", "index", _index_select_meta, _index_select_kernel,
                   _index_select_vjp, saves=(1,)))


def _index_add_meta(x: TensorType, index: TensorType, src: TensorType, axis) -> TensorType:
    require_same_dtype("index_add", x, src)
    expected = _index_select_meta(x, index, axis).shape
    if tuple(src.shape) != expected:
        raise ShapeError(f"index_add: source of shape {fmt(src.shape)} should be {fmt(expected)}")
    return x


def _index_add_kernel(x, index, src, axis):
    _check_bounds("index_add", index, x.shape[axis])
    out = np.array(x, copy=True)
    np.add.at(out, (slice(None),) * axis + (index,), src)
    return out


def _index_add_vjp(c, g):
    _, index, _ = c.inputs
    return (g, None, ops.index_select(g, index, axis=c.params["axis"]))


register(Primitive("index_add", "index", _index_add_meta, _index_add_kernel, _index_add_vjp,
                   saves=(1,)))
