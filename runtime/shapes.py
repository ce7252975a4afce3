"""Shape arithmetic shared by meta rules and the front end, with errors that name the op."""

from __future__ import annotations

from math import prod

from .errors import IndexError_, ShapeError


def fmt(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(-ndim, 0):
        size = 1
        for s in shapes:
            d = s[i] if -i <= len(s) else 1
            if d != 1:
                if size != 1 and size != d:
                    raise ShapeError(
                        f"{op}: shapes {' and '.join(fmt(s) for s in shapes)} cannot be broadcast "
                        f"(dimension {i}: {size} vs {d})",
                        hint="sizes must match or be 1 in every dimension, counting from the right",
                    )
                size = d
        out.append(size)
    return tuple(out)


def normalize_axis(op: str, axis: int, ndim: int) -> int:
    lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)  # 0-d tensors accept axis 0 / -1, like torch
    if not lo <= axis <= hi:
        raise IndexError_(f"{op}: dimension {axis} out of range for a {ndim}-d tensor "
                          f"(expected {lo}..{hi})")
    return axis % ndim if ndim else 0


def normalize_axes(op: str, axes, ndim: int) -> tuple[int, ...]:
    """None -> all axes; int or sequence -> sorted tuple of non-negative axes."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        axes = (axes,)
    result = sorted({normalize_axis(op, a, ndim) for a in axes})
    if len(result) != len(tuple(axes)):
        raise ShapeError(f"{op}: dimension repeated in {tuple(axes)}")
    return tuple(a for a in result if ndim)  # a 0-d tensor has no axes to reduce


def reduced_shape(shape, axes, keepdim: bool) -> tuple[int, ...]:
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def infer_reshape(op: str, old_shape, new_shape) -> tuple[int, ...]:
    """Resolve one -1 in new_shape and check the element count."""
    new_shape = tuple(int(d) for d in new_shape)
    numel = prod(old_shape)
    if new_shape.count(-1) > 1:
        raise ShapeError(f"{op}: only one dimension can be -1, got {fmt(new_shape)}")
    if any(d < -1 for d in new_shape):
        raise ShapeError(f"{op}: invalid size in {fmt(new_shape)}")
    if -1 in new_shape:
        known = prod(d for d in new_shape if d != -1)
        if known == 0 or numel % known:
            raise ShapeError(f"{op}: shape {fmt(new_shape)} is invalid for input of size {numel} "
                             f"(shape {fmt(old_shape)})")
        new_shape = tuple(numel // known if d == -1 else d for d in new_shape)
    if prod(new_shape) != numel:
        raise ShapeError(f"{op}: shape {fmt(new_shape)} is invalid for input of size {numel} "
                         f"(shape {fmt(old_shape)})")
    return new_shape


def slice_length(start: int, stop: int, step: int) -> int:
    return max(0, (stop - start + step - 1) // step)
