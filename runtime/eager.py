"""Run a primitive's eager kernel on numpy arrays.

The kernel runs first; only when it fails is the meta rule asked to explain (so the common
path pays nothing for shape checking, and every failure names the op and the shapes).
float16/bfloat16 are storage types: they are computed in float32 and rounded back.
"""

from __future__ import annotations

import numpy as np

from .dtypes import STORAGE_ONLY, float32, get_dtype
from .registry import Primitive, TensorType

_STORAGE_NP = {d.np for d in STORAGE_ONLY}

# inf/nan results are values, as in PyTorch: every kernel runs with numpy's floating-point
# warnings off. `np.errstate(all="ignore")` builds its error object on each entry, ~2 us of
# an add's ~7; the same object made once and set through numpy's context variable (what
# errstate itself does) costs ~0.2 us. numpy's own errstate where that internal is missing.
try:
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

    _QUIET = _make_extobj(all="ignore")
except (ImportError, AttributeError, TypeError):  # pragma: no cover - another numpy
    _extobj_contextvar = None


def types_of(arrays) -> list[TensorType]:
    return [TensorType(a.shape, get_dtype(a.dtype)) for a in arrays]


def quiet_call(fn, *args, **kwargs):
    """fn(*args, **kwargs) with numpy's floating-point warnings off."""
    if _extobj_contextvar is None:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    token = _extobj_contextvar.set(_QUIET)
    try:
        return fn(*args, **kwargs)
    finally:
        _extobj_contextvar.reset(token)


def run(prim: Primitive, arrays, params: dict) -> np.ndarray:
    upcast = False
    for a in arrays:
        if a.dtype in _STORAGE_NP:
            upcast = True
    try:
        if upcast:
            out_dtype = prim.meta(*types_of(arrays), **params).dtype
            arrays = [a.astype(np.float32) if a.dtype in _STORAGE_NP else a for a in arrays]
            if prim.name == "cast":
                params = dict(params, dtype=float32)
        out = np.asarray(quiet_call(prim.eager, *arrays, **params))
    except (ValueError, TypeError, IndexError):
        prim.meta(*types_of(arrays), **params)  # raises a TraceccError naming op and shapes
        raise
    if upcast:
        out = out.astype(out_dtype.np, copy=False)
    return out
