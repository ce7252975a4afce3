"""Tensor indexing, `x[index]` and `x[index] = value`, in PyTorch's semantics.

Basic indices (ints, slices, None, Ellipsis) become one `slice` and one `reshape`;
integer-tensor indices become `index_select` on the (flattened) indexed dimensions;
boolean masks become integer indices through nonzero (eager only: the shape depends on
the data). Assignment is functional when autograd or a tracer is watching: the selected
positions are found by indexing an arange, then written with index_add and where.
"""

from __future__ import annotations

import math

import numpy as np

from . import _grad_mode
from . import _tensor as _tensor_mod
from .runtime import dtypes
from .runtime.errors import IndexError_, ShapeError
from .runtime.registry import PRIMITIVES as P
from .runtime.shapes import broadcast_shapes, fmt, normalize_axes
from ._tensor import Tensor, _make, apply


_EMPTY_AXIS = object()  # x[False]: a new dimension of size 0


def _is_mask(item) -> bool:
    return isinstance(item, Tensor) and item.dtype is dtypes.bool_


def _normalize_items(x: Tensor, index):
    """One item per dimension of x (Ellipsis expanded, boolean masks turned into integer
    index tensors), plus None / _EMPTY_AXIS where a new dimension goes."""
    if not isinstance(index, tuple):
        index = (index,)
    items = []
    for item in index:
        if isinstance(item, (list, np.ndarray, bool, np.bool_)):
            item = Tensor(item)
        if _is_mask(item) and item.ndim == 0:
            # x[True] adds a dimension, x[False] adds one of size 0
            item = None if item._value("boolean mask indexing") else _EMPTY_AXIS
        elif isinstance(item, Tensor) and not _is_mask(item):
            if item.dtype.category != dtypes.INT:
                raise IndexError_(f"tensors used as indices must be long, int or bool tensors, "
                                  f"got {item.dtype}")
            if item.ndim == 0 and isinstance(item._data, np.ndarray):
                item = int(item._data)  # a 0-d index tensor selects like an int, as in PyTorch
        items.append(item)
    consumed = sum(i.ndim if _is_mask(i) else 1 for i in items
                   if i is not None and i is not Ellipsis and i is not _EMPTY_AXIS)
    if consumed > x.ndim:
        raise IndexError_(f"too many indices for tensor of dimension {x.ndim}")
    ellipses = [k for k, i in enumerate(items) if i is Ellipsis]  # identity: == is elementwise
    if len(ellipses) > 1:
        raise IndexError_("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        items[at:at + 1] = [slice(None)] * (x.ndim - consumed)
    else:
        items += [slice(None)] * (x.ndim - consumed)
    # index tensors go where x is (PyTorch accepts cpu indices for cuda tensors)
    return [i.to(x.device) if isinstance(i, Tensor) and i.device != x.device else i
            for i in _masks_to_indices(x, items)]


def _masks_to_indices(x: Tensor, items) -> list:
    """A k-d boolean mask covers k dimensions and must match their sizes (as in PyTorch)."""
    out, dim = [], 0
    for item in items:
        if not _is_mask(item):
            out.append(item)
            dim += item is not None and item is not _EMPTY_AXIS
            continue
        mask = item._value("boolean mask indexing")
        covered = tuple(x.shape[dim:dim + mask.ndim])
        if mask.shape != covered:
            raise IndexError_(f"the shape of the mask {fmt(mask.shape)} at index {dim} does not "
                              f"match the shape of the indexed tensor {fmt(x.shape)}")
        out.extend(_make(i.astype(np.int64)) for i in np.nonzero(mask))
        dim += mask.ndim
    return out


def getitem(x: Tensor, index) -> Tensor:
    items = _normalize_items(x, index)
    starts, stops, steps = [], [], []
    out_shape = []  # shape after basic indexing
    advanced = []  # (position in out_shape, index tensor)
    dim = 0
    empty_axes = []  # new dimensions of size 0 (x[False])
    for item in items:
        if item is None or item is _EMPTY_AXIS:
            if item is _EMPTY_AXIS:
                empty_axes.append(len(out_shape))
            out_shape.append(1)
            continue
        size = x.shape[dim]
        if isinstance(item, Tensor):
            advanced.append((len(out_shape), item, size))
            starts.append(0), stops.append(size), steps.append(1)
            out_shape.append(size)
        elif isinstance(item, slice):
            if item.step is not None and int(item.step) <= 0:
                raise ValueError("step must be greater than zero")
            a, b, s = slice(item.start, item.stop, item.step).indices(size)
            b = max(a, b)
            starts.append(a), stops.append(b), steps.append(s)
            out_shape.append(len(range(a, b, s)))
        else:
            i = int(item)
            if not -size <= i < size:
                raise IndexError_(f"index {i} is out of bounds for dimension {dim} with size {size}")
            i %= size
            starts.append(i), stops.append(i + 1), steps.append(1)
        dim += 1
    out = x
    if (tuple(starts), tuple(stops), tuple(steps)) != ((0,) * x.ndim, tuple(x.shape), (1,) * x.ndim):
        out = apply(P["slice"], (x,), {"starts": tuple(starts), "stops": tuple(stops),
                                        "steps": tuple(steps)})
    if tuple(out_shape) != tuple(out.shape):
        out = apply(P["reshape"], (out,), {"shape": tuple(out_shape)})
    if empty_axes:
        stops = tuple(0 if a in empty_axes else d for a, d in enumerate(out_shape))
        out = apply(P["slice"], (out,), {"starts": (0,) * out.ndim, "stops": stops,
                                          "steps": (1,) * out.ndim})
    # a traced 0-d index tensor selects like an int (as a concrete one does, and PyTorch):
    # pick the element along its dimension and drop the dimension, before the other
    # integer-tensor indices are placed
    for p, t, size in sorted((a for a in advanced if a[1].ndim == 0), key=lambda a: -a[0]):
        picked = apply(P["index_select"], (out, apply(P["reshape"], (_wrap_negative(t, size),),
                                                            {"shape": (1,)})), {"axis": p})
        shape = tuple(d for k, d in enumerate(picked.shape) if k != p)
        out = apply(P["reshape"], (picked,), {"shape": shape})
        advanced = [(q - 1 if q > p else q, u, n) for q, u, n in advanced if q != p]
    if advanced:
        out = _advanced(out, advanced)
    return out


def _wrap_negative(idx: Tensor, size: int) -> Tensor:
    from ._functions import add, lt, where
    if idx.dtype is not dtypes.int64:
        idx = apply(P["cast"], (idx,), {"dtype": dtypes.int64})
    data = idx._data
    if isinstance(data, np.ndarray) and (data.size == 0 or data.min() >= 0):
        return idx
    return where(lt(idx, 0), add(idx, size), idx)


def _advanced(x: Tensor, advanced) -> Tensor:
    """Integer-tensor indices at positions `advanced` of x, with PyTorch's placement rule:
    adjacent indexed dims keep their place, separated ones move to the front."""
    from ._functions import add, mul, permute, reshape
    positions = [p for p, _, _ in advanced]
    bshape = broadcast_shapes("index", *(tuple(i.shape) for _, i, _ in advanced))
    rest = [d for d in range(x.ndim) if d not in positions]
    # move indexed dims to the front and flatten them into one
    moved = permute(x, positions + rest)
    sizes = [x.shape[p] for p in positions]
    flat = reshape(moved, (math.prod(sizes),) + tuple(x.shape[d] for d in rest))
    linear = None
    stride = 1
    for (_, idx, size), _s in zip(reversed(advanced), reversed(sizes)):
        data = idx._data
        if isinstance(data, np.ndarray) and data.size and (data.max() >= size or data.min() < -size):
            bad = int(data.max()) if data.max() >= size else int(data.min())
            raise IndexError_(f"index {bad} is out of bounds for dimension with size {size}")
        term = _wrap_negative(idx, size)
        term = mul(term, stride) if stride != 1 else term
        linear = term if linear is None else add(linear, term)
        stride *= size
    linear = apply(P["expand"], (linear,), {"shape": bshape}) if tuple(linear.shape) != bshape else linear
    picked = apply(P["index_select"], (flat, reshape(linear, (-1,))), {"axis": 0})
    out = reshape(picked, bshape + tuple(x.shape[d] for d in rest))
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if adjacent and positions[0] > 0:
        nb, first = len(bshape), positions[0]
        order = list(range(nb, nb + first)) + list(range(nb)) + list(range(nb + first, out.ndim))
        out = permute(out, order)
    return out


def _numpy_index(index):
    if not isinstance(index, tuple):
        index = (index,)
    # a 0-d index tensor selects like an int (PyTorch), not as numpy's 0-d advanced index
    return tuple((int(i._value("indexing")) if i.ndim == 0 and not _is_mask(i) else i._value("indexing"))
                 if isinstance(i, Tensor) else i for i in index)


def setitem(x: Tensor, index, value) -> None:
    from ._functions import cast, expand, full_, promote, reshape, where
    value_is_tensor = isinstance(value, Tensor)
    watched = _tensor_mod._tracer is not None or x.is_cuda or (
        _grad_mode._enabled and (x.requires_grad or (value_is_tensor and value.requires_grad)))
    if not watched:
        if not x._data.flags.writeable:
            raise ShapeError("index assignment: this tensor comes from expand/broadcast and "
                             "cannot be written in place", hint="call .clone() first")
        v = value._value("index assignment") if value_is_tensor else value
        items = index if isinstance(index, tuple) else (index,)
        try:
            if any(isinstance(i, (Tensor, list, np.ndarray)) for i in items):
                # PyTorch's placement of the indexed dimensions (numpy's differs when an int
                # and an index tensor are separated by a slice): positions found by getitem
                where_ = getitem(_make(np.arange(x.numel()).reshape(tuple(x.shape))), index)._data
                x._data[np.unravel_index(where_, x.shape)] = np.broadcast_to(v, where_.shape)
            else:
                x._data[_numpy_index(index)] = v
        except ValueError as e:
            raise ShapeError(f"index assignment: {e} (tensor shape {fmt(x.shape)})") from None
        x._version[0] += 1
        return
    n = x.numel()
    positions = getitem(_tensor_mod._make(np.arange(n, dtype=np.int64).reshape(tuple(x.shape)))
                        if _tensor_mod._tracer is None else
                        reshape(apply(P["arange"], (), {"start": 0, "end": n, "step": 1,
                                                         "dtype": dtypes.int64}), tuple(x.shape)),
                        index)
    v = value if value_is_tensor else promote("setitem", x, value)[1]
    v = cast(v, x.dtype)
    v = reshape(expand(v, tuple(positions.shape)), (-1,))
    flat_pos = reshape(positions, (-1,))
    if isinstance(flat_pos._data, np.ndarray):  # eager: a repeated position keeps its last value,
        taken = flat_pos._data                    # as in numpy and PyTorch (index_add would sum)
        last = np.full(n, -1, np.int64)
        last[taken] = np.arange(taken.size)
        keep = np.sort(last[last >= 0])
        if keep.size != taken.size:
            flat_pos = _make(taken[keep])
            v = apply(P["index_select"], (v, _make(keep).to(v.device)), {"axis": 0})
    if x.is_cuda:  # positions were found on the host
        flat_pos, v = flat_pos.to(x.device), v.to(x.device)
    hits = apply(P["index_add"], (full_((n,), 0, dtypes.int64), flat_pos,
                                  full_((flat_pos.shape[0],), 1, dtypes.int64)), {"axis": 0})
    scattered = apply(P["index_add"], (full_((n,), 0, x.dtype), flat_pos, v), {"axis": 0})
    from ._functions import gt
    new = where(gt(hits, 0), scattered, reshape(x, (-1,)))
    x._inplace_update(reshape(new, tuple(x.shape)), "index assignment")


def flip(x: Tensor, dims) -> Tensor:
    axes = normalize_axes("flip", dims, x.ndim)
    out = x
    for a in axes:
        from ._functions import arange_, index_select, sub
        rev = sub(x.shape[a] - 1, arange_(x.shape[a]))
        out = index_select(out, a, rev)
    return out
