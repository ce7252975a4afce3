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


def types_of(arrays) -> list[TensorType]:
    return [TensorType(a.shape, get_dtype(a.dtype)) for a in arrays]


def run(prim: Primitive, arrays, params: dict) -> np.ndarray:
    upcast = any(a.dtype in _STORAGE_NP for a in arrays)
    try:
        if upcast:
            out_dtype = prim.meta(*types_of(arrays), **params).dtype
            arrays = [a.astype(np.float32) if a.dtype in _STORAGE_NP else a for a in arrays]
            if prim.name == "cast":
                params = dict(params, dtype=float32)
        with np.errstate(all="ignore"):  # inf/nan results are values, as in PyTorch
            out = np.asarray(prim.eager(*arrays, **params))
    except (ValueError, TypeError, IndexError):
        prim.meta(*types_of(arrays), **params)  # raises a TraceccError naming op and shapes
        raise
    if upcast:
        out = out.astype(out_dtype.np, copy=False)
    return out
