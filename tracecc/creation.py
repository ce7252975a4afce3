"""Creation functions: tensor, zeros, ones, full, arange, linspace, eye, *_like, ..."""

from __future__ import annotations

import numpy as np

from . import _functions as F
from .runtime import dtypes
from .runtime.device import check_device
from .runtime.dtypes import get_dtype
from ._tensor import Tensor, _make, _unwrap_nested


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    return t.requires_grad_(True) if requires_grad else t


def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of data (nested lists, numbers, numpy arrays, tensors)."""
    check_device(device)
    if isinstance(data, Tensor):
        data = data.detach().numpy()
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor(), but shares memory with a numpy array or tensor when the dtype allows."""
    check_device(device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or get_dtype(dtype).np == data.dtype):
        return from_numpy(data)
    return Tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with the numpy array (writes show through both)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(array).__name__}")
    return _make(array)


def _size(size):
    return F._shape_args("size", size)


def _dtype(dtype, default=None):
    return get_dtype(dtype) if dtype is not None else (default or dtypes.get_default_dtype())


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    if dtype is None:
        dtype = dtypes.default_dtype_for_category(dtypes.scalar_category(fill_value))
    return _finish(F.full_(tuple(size), fill_value, get_dtype(dtype)), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return _finish(F.full_(_size(size), 0, _dtype(dtype)), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return _finish(F.full_(_size(size), 1, _dtype(dtype)), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)  # zero-filled: uninitialised memory only hides bugs
    return _finish(F.full_(_size(size), 0, _dtype(dtype)), requires_grad)


def _like(fill):
    def fn(input, *, dtype=None, device=None, requires_grad=False):
        check_device(device)
        return _finish(F.full_(tuple(input.shape), fill, _dtype(dtype, input.dtype)), requires_grad)

    return fn


zeros_like, ones_like, empty_like = _like(0), _like(1), _like(0)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return _finish(F.full_(tuple(input.shape), fill_value, _dtype(dtype, input.dtype)), requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = dtypes.get_default_dtype() if is_float else dtypes.int64
    dtype = get_dtype(dtype)
    from .runtime.registry import PRIMITIVES
    from ._tensor import apply
    out = apply(PRIMITIVES["arange"], (), {"start": start, "end": end, "step": step, "dtype": dtype})
    return _finish(out, requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    values = np.linspace(start, end, int(steps))
    return _finish(_make(values.astype(_dtype(dtype).np)), requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return _finish(_make(np.eye(n, m, dtype=_dtype(dtype).np)), requires_grad)


def numel(input) -> int:
    return input.numel()


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


__all__ = ["tensor", "as_tensor", "from_numpy", "full", "zeros", "ones", "empty", "zeros_like",
           "ones_like", "empty_like", "full_like", "arange", "linspace", "eye", "numel",
           "is_tensor", "_unwrap_nested"]
