"""Movement primitives: reshape, permute, expand, slice, slice_scatter, cat.

Backends lower these to index arithmetic inside fused kernels, never to copies.
Eagerly they are numpy views where numpy can make one.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..registry import Primitive, TensorType, ops, register
from ..shapes import fmt, infer_reshape, slice_length
from ._common import require_same_dtype, sum_to, zeros


def _reshape_meta(x: TensorType, shape) -> TensorType:
    return TensorType(infer_reshape("reshape", x.shape, shape), x.dtype)


register(Primitive("reshape", "movement", _reshape_meta, lambda x, shape: np.reshape(x, shape),
                   lambda c, g: (ops.reshape(g, shape=tuple(c.inputs[0].shape)),), saves=()))


def _permute_meta(x: TensorType, dims) -> TensorType:
    if sorted(dims) != list(range(len(x.shape))):
        raise ShapeError(f"permute: dims {tuple(dims)} are not a permutation of the "
                         f"{len(x.shape)} dimensions of shape {fmt(x.shape)}")
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


def _permute_vjp(c, g):
    dims = c.params["dims"]
    inverse = tuple(sorted(range(len(dims)), key=lambda i: dims[i]))
    return (ops.permute(g, dims=inverse),)


register(Primitive("permute", "movement", _permute_meta, lambda x, dims: np.transpose(x, dims),
                   _permute_vjp, saves=()))


def _expand_meta(x: TensorType, shape) -> TensorType:
    shape = tuple(shape)
    lead = len(shape) - len(x.shape)
    ok = lead >= 0 and all(d == s or d == 1 for d, s in zip(x.shape, shape[lead:]))
    if not ok:
        raise ShapeError(f"expand: cannot expand shape {fmt(x.shape)} to {fmt(shape)}",
                         hint="only size-1 dimensions can grow; new dimensions go on the left")
    return TensorType(shape, x.dtype)


register(Primitive("expand", "movement", _expand_meta,
                   lambda x, shape: np.broadcast_to(x, shape),
                   lambda c, g: (sum_to(g, c.inputs[0].shape),), saves=()))


def _slice_shape(x_shape, starts, stops, steps):
    if not len(starts) == len(stops) == len(steps) == len(x_shape):
        raise ShapeError(f"slice: expected one start/stop/step per dimension of {fmt(x_shape)}")
    for d, (a, b, s) in zip(x_shape, zip(starts, stops, steps)):
        if s < 1 or not 0 <= a <= d or not 0 <= b <= d:
            raise ShapeError(f"slice: bad slice {a}:{b}:{s} for a dimension of size {d}")
    return tuple(slice_length(a, b, s) for a, b, s in zip(starts, stops, steps))


def _slice_meta(x: TensorType, starts, stops, steps) -> TensorType:
    return TensorType(_slice_shape(x.shape, starts, stops, steps), x.dtype)


def _slices(starts, stops, steps):
    return tuple(slice(a, b, s) for a, b, s in zip(starts, stops, steps))


def _slice_vjp(c, g):
    x = c.inputs[0]
    return (ops.slice_scatter(zeros(x.shape, g.dtype), g, **c.params),)


register(Primitive("slice", "movement", _slice_meta,
                   lambda x, starts, stops, steps: x[_slices(starts, stops, steps)], _slice_vjp,
                   saves=()))


def _slice_scatter_meta(base: TensorType, src: TensorType, starts, stops, steps) -> TensorType:
    require_same_dtype("slice_scatter", base, src)
    region = _slice_shape(base.shape, starts, stops, steps)
    if tuple(src.shape) != region:
        raise ShapeError(f"slice_scatter: source of shape {fmt(src.shape)} does not fit the "
                         f"region of shape {fmt(region)}")
    return base


def _slice_scatter_kernel(base, src, starts, stops, steps):
    out = np.array(base, copy=True)
    out[_slices(starts, stops, steps)] = src
    return out


def _slice_scatter_vjp(c, g):
    base, src = c.inputs
    return (ops.slice_scatter(g, zeros(src.shape, g.dtype), **c.params) if c.needs[0] else None,
            ops.slice(g, **c.params) if c.needs[1] else None)


register(Primitive("slice_scatter", "movement", _slice_scatter_meta, _slice_scatter_kernel,
                   _slice_scatter_vjp, saves=(), doc="base with the strided region replaced by src"))


def _cat_meta(*xs: TensorType, axis) -> TensorType:
    first = xs[0]
    require_same_dtype("cat", *xs)
    for x in xs[1:]:
        if len(x.shape) != len(first.shape) or any(
                a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis):
            raise ShapeError(f"cat: shapes {' and '.join(fmt(t.shape) for t in xs)} differ "
                             f"outside dimension {axis}")
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return TensorType(tuple(shape), first.dtype)


def _cat_vjp(c, g):
    axis, grads, offset = c.params["axis"], [], 0
    for x in c.inputs:
        n = x.shape[axis]
        starts = tuple(offset if i == axis else 0 for i in range(len(x.shape)))
        stops = tuple(offset + n if i == axis else d for i, d in enumerate(x.shape))
        grads.append(ops.slice(g, starts=starts, stops=stops, steps=(1,) * len(x.shape)))
        offset += n
    return tuple(grads)


register(Primitive("cat", "movement", _cat_meta, lambda *xs, axis: np.concatenate(xs, axis=axis),
                   _cat_vjp, saves=()))
