"""Reductions over a set of axes: sum, prod, amax, amin, argmax, argmin.

Parameters are normalised by the front end: `axes` is a sorted tuple of non-negative
axes (argmax/argmin take a single `axis`), `keepdim` a bool.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import ShapeError
from ..registry import Primitive, ReduceInfo, TensorType, ops, register
from ..shapes import reduced_shape
from ._common import scalar


def _accumulate_dtype(dtype):
    """sum/prod of bool or integers give int64, like PyTorch."""
    return dtypes.int64 if dtype.category != dtypes.FLOAT else dtype


def _reduce_meta(name, out_dtype=None, needs_elements=False):
    def meta(x: TensorType, axes, keepdim=False) -> TensorType:
        for a in axes:
            if not 0 <= a < max(len(x.shape), 1):
                raise ShapeError(f"{name}: axis {a} out of range for shape {list(x.shape)}")
            if needs_elements and x.shape and x.shape[a] == 0:
                raise ShapeError(f"{name}: cannot reduce over a zero-size dimension "
                                 f"(axis {a} of shape {list(x.shape)}): it has no identity")
        dtype = out_dtype(x.dtype) if out_dtype else x.dtype
        return TensorType(reduced_shape(x.shape, axes, keepdim), dtype)

    return meta


def _keep(c, t):
    """t (reduced without keepdim) reshaped to keep the reduced axes as size 1."""
    x = c.inputs[0]
    shape = reduced_shape(x.shape, c.params["axes"], True)
    return t if tuple(t.shape) == shape else ops.reshape(t, shape=shape)


def _sum_vjp(c, g):
    return (ops.expand(_keep(c, g), shape=c.inputs[0].shape),)


def _prod_vjp(c, g):
    """d prod/dx_i is the product of the other elements: out / x_i where x_i != 0; at a zero,
    the product of the nonzero others if it is the row's only zero, else 0 (PyTorch's answer,
    where the naive out / x_i would be nan)."""
    x, axes = c.inputs[0], c.params["axes"]
    zero, one = scalar(0, x.dtype), scalar(1, x.dtype)
    is_zero = ops.eq(x, zero)
    nonzero = ops.where(is_zero, one, x)
    zeros_per_row = ops.sum(ops.cast(is_zero, dtype=x.dtype), axes=axes, keepdim=True)
    at_zero = ops.where(ops.eq(zeros_per_row, one), ops.prod(nonzero, axes=axes, keepdim=True), zero)
    local = ops.where(is_zero, at_zero, ops.expand(_keep(c, c.out), shape=x.shape) / nonzero)
    return (ops.expand(_keep(c, g), shape=x.shape) * local,)


def _extreme_vjp(c, g):
    """Gradient of max/min is shared evenly among the positions that attain it (PyTorch's amax)."""
    x = c.inputs[0]
    mask = ops.cast(x == ops.expand(_keep(c, c.out), shape=x.shape), dtype=g.dtype)
    count = ops.sum(mask, axes=c.params["axes"], keepdim=True)
    return (ops.expand(_keep(c, g) / count, shape=x.shape) * mask,)


def _np_reduce(fn):
    def kernel(x, axes, keepdim=False):
        return fn(x, axis=axes, keepdims=keepdim)

    return kernel


def _sum_kernel(x, axes, keepdim=False):
    return np.sum(x, axis=axes, keepdims=keepdim, dtype=_accumulate_dtype(dtypes.get_dtype(x.dtype)).np)


def _prod_kernel(x, axes, keepdim=False):
    return np.prod(x, axis=axes, keepdims=keepdim, dtype=_accumulate_dtype(dtypes.get_dtype(x.dtype)).np)


register(Primitive("sum", "reduction", _reduce_meta("sum", _accumulate_dtype), _sum_kernel, _sum_vjp, saves=(),
                   reduce=ReduceInfo("add", 0)))
register(Primitive("prod", "reduction", _reduce_meta("prod", _accumulate_dtype), _prod_kernel,
                   _prod_vjp, reduce=ReduceInfo("mul", 1)))
register(Primitive("amax", "reduction", _reduce_meta("amax", needs_elements=True), _np_reduce(np.max),
                   _extreme_vjp, reduce=ReduceInfo("maximum", float("-inf"))))
register(Primitive("amin", "reduction", _reduce_meta("amin", needs_elements=True), _np_reduce(np.min),
                   _extreme_vjp, reduce=ReduceInfo("minimum", float("inf"))))


def _arg_meta(name):
    def meta(x: TensorType, axis, keepdim=False) -> TensorType:
        inner = _reduce_meta(name, lambda d: dtypes.int64, needs_elements=True)
        return inner(x, (axis,) if x.shape else (), keepdim)

    return meta


def _arg_kernel(fn):
    def kernel(x, axis, keepdim=False):
        if x.ndim == 0:
            return np.zeros((), np.int64)
        return fn(x, axis=axis, keepdims=keepdim).astype(np.int64, copy=False)

    return kernel


register(Primitive("argmax", "reduction", _arg_meta("argmax"), _arg_kernel(np.argmax),
                   reduce=ReduceInfo("argmax", None)))
register(Primitive("argmin", "reduction", _arg_meta("argmin"), _arg_kernel(np.argmin),
                   reduce=ReduceInfo("argmin", None)))
