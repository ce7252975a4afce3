"""Creation functions: tensor, zeros, ones, full, arange, linspace, eye, *_like, ..."""

from __future__ import annotations

import numpy as np

from . import _functions as F
from .runtime import dtypes
from .runtime.device import check_device
from .runtime.dtypes import get_dtype
from ._tensor import Tensor, _make, _unwrap_nested


def _finish(t: Tensor, requires_grad: bool, device=None) -> Tensor:
    """t on `device` (made on the cpu, then copied: the values are the cpu's), a leaf."""
    if device is not None and check_device(device).type != "cpu":
        from .cuda import to_device
        t = to_device(t, device)
    t._anywhere = False  # the user's tensor: not an internal constant
    return t.requires_grad_(True) if requires_grad else t


def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of data (nested lists, numbers, numpy arrays, tensors)."""
    if isinstance(data, Tensor):
        data = data.detach().cpu().numpy()
    return _finish(Tensor(data, dtype=dtype), requires_grad, device)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor(), but shares memory with a numpy array or tensor when the dtype allows."""
    if isinstance(data, Tensor):
        return data.to(device, dtype) if device is not None else (data if dtype is None else data.to(dtype))
    if isinstance(data, np.ndarray) and (dtype is None or get_dtype(dtype).np == data.dtype):
        return _finish(from_numpy(data), False, device)
    return _finish(Tensor(data, dtype=dtype), False, device)


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
    if dtype is None:
        dtype = dtypes.default_dtype_for_category(dtypes.scalar_category(fill_value))
    return _finish(F.full_(tuple(size), fill_value, get_dtype(dtype)), requires_grad, device)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(F.full_(_size(size), 0, _dtype(dtype)), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(F.full_(_size(size), 1, _dtype(dtype)), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    # zero-filled: uninitialised memory only hides bugs
    return _finish(F.full_(_size(size), 0, _dtype(dtype)), requires_grad, device)


def _like(fill):
    def fn(input, *, dtype=None, device=None, requires_grad=False):
        return _finish(F.full_(tuple(input.shape), fill, _dtype(dtype, input.dtype)), requires_grad,
                       input.device if device is None else device)

    return fn


zeros_like, ones_like, empty_like = _like(0), _like(1), _like(0)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(F.full_(tuple(input.shape), fill_value, _dtype(dtype, input.dtype)), requires_grad,
                   input.device if device is None else device)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = dtypes.get_default_dtype() if is_float else dtypes.int64
    dtype = get_dtype(dtype)
    from .runtime.registry import PRIMITIVES
    from ._tensor import apply
    out = apply(PRIMITIVES["arange"], (), {"start": start, "end": end, "step": step, "dtype": dtype})
    return _finish(out, requires_grad, device)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    values = np.linspace(start, end, int(steps))
    return _finish(_make(values.astype(_dtype(dtype).np)), requires_grad, device)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(_make(np.eye(n, m, dtype=_dtype(dtype).np)), requires_grad, device)


def numel(input) -> int:
    return input.numel()


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


__all__ = ["tensor", "as_tensor", "from_numpy", "full", "zeros", "ones", "empty", "zeros_like",
           "ones_like", "empty_like", "full_like", "arange", "linspace", "eye", "numel",
           "is_tensor", "_unwrap_nested"]
