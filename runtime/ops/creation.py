"""Creation primitives (no tensor inputs): full and arange. Random numbers are drawn by
the front end's Generator; they enter a graph as inputs."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..registry import Primitive, TensorType, register
from ..shapes import fmt


def _full_meta(shape, value, dtype) -> TensorType:
    if any(d < 0 for d in shape):
        raise ShapeError(f"full: negative dimension in shape {fmt(shape)}")
    return TensorType(tuple(shape), dtype)


register(Primitive("full", "creation", _full_meta,
                   lambda shape, value, dtype: np.full(shape, value, dtype=dtype.np)))


def arange_length(start, end, step) -> int:
    if step == 0:
        raise ShapeError("arange: step must be nonzero")
    if (end - start) * step < 0:  # PyTorch refuses rather than return an empty range
        raise ShapeError(f"arange: end {end} is on the wrong side of start {start} for step {step}",
                         hint="swap start and end, or use a negative step")
    return max(0, int(np.ceil((end - start) / step)))


register(Primitive("arange", "creation",
                   lambda start, end, step, dtype: TensorType((arange_length(start, end, step),), dtype),
                   lambda start, end, step, dtype: (start + np.arange(arange_length(start, end, step))
                                                    * step).astype(dtype.np)))
