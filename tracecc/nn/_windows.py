"""Sliding-window layers as decompositions: pad, unfold (im2col), conv, pooling.

The one idea: `_windows` turns (N, C, H, W) into (N, C, kh*kw, OH, OW), the input seen
under each kernel tap, using one strided slice per tap and a cat. A convolution is then a
matmul with the flattened weight; max/avg pooling is an amax/sum over the tap axis. When
windows tile the input exactly (stride == kernel, no padding), pooling is a reshape and a
reduction instead. Everything is tracecc ops, so the compiler sees slices and a matmul.
"""

from __future__ import annotations

import numpy as np

from .. import _functions as T
from .._tensor import Tensor, apply
from ..runtime.errors import InvalidArgumentError, ShapeError
from ..runtime.registry import PRIMITIVES as P


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) == 1:
        return (value[0], value[0])
    if len(value) != 2:
        raise InvalidArgumentError(f"{name} must be an int or a pair of ints, got {value}")
    return value


def _batched(input: Tensor, op: str, spatial: int = 2) -> tuple[Tensor, bool]:
    """Accept (C, *spatial) as one sample, like PyTorch; return (batched input, was_unbatched)."""
    if input.ndim == spatial + 1:
        return T.unsqueeze(input, 0), True
    if input.ndim != spatial + 2:
        raise ShapeError(f"{op}: expected {spatial + 1}-d (unbatched) or {spatial + 2}-d (batched) "
                         f"input, got shape {list(input.shape)}")
    return input, False


# ---------------------------------------------------------------- pad
def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last len(pad)//2 dimensions: pad = (left, right, top, bottom, ...) from the last
    dimension backwards, like torch.nn.functional.pad. Negative amounts crop."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ShapeError(f"pad: padding length {len(pad)} must be even and at most twice the "
                         f"number of dimensions of input of shape {list(input.shape)}")
    amounts = {input.ndim - 1 - k: (pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)}
    if all(a == 0 and b == 0 for a, b in amounts.values()):
        return input
    if mode == "constant":
        return _pad_constant(input, amounts, 0 if value is None else value)
    if value not in (None, 0):
        raise InvalidArgumentError(f"pad: padding mode {mode!r} doesn't take a value")
    if mode not in ("reflect", "replicate", "circular"):
        raise InvalidArgumentError(f"pad: mode must be one of constant, reflect, replicate, "
                                   f"circular, got {mode!r}")
    out = input
    for dim, (before, after) in amounts.items():
        if before or after:
            out = T.index_select(out, dim, _pad_indices(mode, out.shape[dim], before, after))
    return out


def _pad_constant(x: Tensor, amounts: dict, value) -> Tensor:
    # crop first (negative padding), then write x into a tensor filled with value
    crop = tuple(slice(max(0, -amounts[d][0]), x.shape[d] - max(0, -amounts[d][1]))
                 if d in amounts else slice(None) for d in range(x.ndim))
    x = x[crop]
    grow = {d: (max(0, a), max(0, b)) for d, (a, b) in amounts.items()}
    shape = tuple(n + sum(grow.get(d, (0, 0))) for d, n in enumerate(x.shape))
    if shape == tuple(x.shape):
        return x
    base = T.full_(shape, value, x.dtype)
    starts = tuple(grow.get(d, (0, 0))[0] for d in range(x.ndim))
    stops = tuple(s + n for s, n in zip(starts, x.shape))
    return apply(P["slice_scatter"], (base, x),
                 {"starts": starts, "stops": stops, "steps": (1,) * x.ndim})


def _pad_indices(mode: str, size: int, before: int, after: int) -> Tensor:
    """Source index for each output position of one padded dimension."""
    limit = size if mode == "circular" else size - 1
    if before > limit or after > limit or before < 0 or after < 0:
        raise ShapeError(f"pad: {mode} padding ({before}, {after}) must be non-negative and at "
                         f"most {limit} for a dimension of size {size}")
    idx = T.sub(T.arange_(size + before + after), before)
    if mode == "replicate":
        return T.clamp(idx, 0, size - 1)
    if mode == "circular":
        return T.remainder(idx, size)
    last = size - 1  # reflect about the first and last elements, without repeating them
    return T.sub(last, T.abs(T.sub(last, T.abs(idx))))


# ---------------------------------------------------------------- windows
def _out_size(op: str, size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0 or s < 1:
        raise ShapeError(f"{op}: kernel {k} (dilation {d}) is larger than the padded input "
                         f"size {size + 2 * p}" if s >= 1 else f"{op}: stride must be positive")
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or the left padding
    return out


def _windows(x: Tensor, kernel, stride, padding, dilation, fill, out_hw) -> Tensor:
    """(N, C, H, W) -> (N, C, kh*kw, OH, OW): the input under each kernel tap. Padding (and
    any extra right/bottom cells a ceil_mode window needs) holds `fill`."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_hw
    h, w = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - h)
    extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - w)
    x = pad(x, (pw, pw + extra_w, ph, ph + extra_h), value=fill)
    taps = []
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            tap = x[:, :, top:top + (oh - 1) * sh + 1:sh, left:left + (ow - 1) * sw + 1:sw]
            taps.append(T.unsqueeze(tap, 2))
    return taps[0] if len(taps) == 1 else T.cat(taps, 2)


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C*kh*kw, L), each column one window (torch's unfold)."""
    x, _ = _batched(input, "unfold")
    k, d, p, s = (_pair(kernel_size, "kernel_size"), _pair(dilation, "dilation"),
                  _pair(padding, "padding"), _pair(stride, "stride"))
    out_hw = tuple(_out_size("unfold", x.shape[2 + i], k[i], s[i], p[i], d[i], False) for i in range(2))
    cols = _windows(x, k, s, p, d, 0, out_hw)
    n, c = x.shape[0], x.shape[1]
    return T.reshape(cols, (n, c * k[0] * k[1], out_hw[0] * out_hw[1]))


# ---------------------------------------------------------------- convolution
def _same_padding(kernel, dilation) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) for padding='same' at stride 1: the extra cell goes last."""
    th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
    return (tw // 2, tw - tw // 2, th // 2, th - th // 2)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-d cross-correlation by im2col and one (grouped) matmul."""
    x, unbatched = _batched(input, "conv2d")
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight must be 4-d (out_channels, in_channels/groups, kh, kw), "
                         f"got shape {list(weight.shape)}")
    n, c = x.shape[0], x.shape[1]
    oc, cg, kh, kw = weight.shape
    if c != cg * groups or oc % groups:
        raise ShapeError(f"conv2d: input of shape {list(input.shape)} (channels {c}) does not fit "
                         f"weight of shape {list(weight.shape)} with groups={groups}",
                         hint="in_channels must equal weight.shape[1] * groups, and out_channels "
                              "be divisible by groups")
    s, d = _pair(stride, "stride"), _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            p = (0, 0)
        elif padding == "same":
            if s != (1, 1):
                raise InvalidArgumentError("conv2d: padding='same' is not supported for strided "
                                           "convolutions")
            x, p = pad(x, _same_padding((kh, kw), d)), (0, 0)
        else:
            raise InvalidArgumentError(f"conv2d: padding must be 'valid', 'same' or ints, got {padding!r}")
    else:
        p = _pair(padding, "padding")
    out_hw = tuple(_out_size("conv2d", x.shape[2 + i], (kh, kw)[i], s[i], p[i], d[i], False)
                   for i in range(2))
    cols = _windows(x, (kh, kw), s, p, d, 0, out_hw)
    cols = T.reshape(cols, (n, groups, cg * kh * kw, out_hw[0] * out_hw[1]))
    w = T.reshape(weight, (groups, oc // groups, cg * kh * kw))
    out = T.reshape(T.matmul(w, cols), (n, oc) + out_hw)
    if bias is not None:
        out = T.add(out, T.reshape(bias, (1, oc, 1, 1)))
    return T.squeeze(out, 0) if unbatched else out


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """The gradient of conv2d with respect to its input, as a forward op: the input spread
    out by the stride (zeros between its cells), padded by dilation * (kernel - 1) - padding
    (cropped where negative; output_padding more at the bottom and right), then an ordinary
    convolution with the kernel flipped and its channel axes swapped."""
    x, unbatched = _batched(input, "conv_transpose2d")
    if weight.ndim != 4:
        raise ShapeError(f"conv_transpose2d: weight must be 4-d (in_channels, out_channels/groups, "
                         f"kh, kw), got shape {list(weight.shape)}")
    n, c, h, w = x.shape
    ic, ocg, kh, kw = weight.shape
    if c != ic or ic % groups:
        raise ShapeError(f"conv_transpose2d: input of shape {list(input.shape)} (channels {c}) does "
                         f"not fit weight of shape {list(weight.shape)} with groups={groups}",
                         hint="in_channels must equal weight.shape[0] and be divisible by groups")
    s, p, op, d = (_pair(stride, "stride"), _pair(padding, "padding"),
                   _pair(output_padding, "output_padding"), _pair(dilation, "dilation"))
    for i in range(2):
        if s[i] < 1 or d[i] < 1 or p[i] < 0:
            raise InvalidArgumentError(f"conv_transpose2d: stride and dilation must be positive and "
                                       f"padding non-negative, got stride={s}, dilation={d}, padding={p}")
        if not 0 <= op[i] < max(s[i], d[i]):
            raise InvalidArgumentError(f"conv_transpose2d: output_padding {op} must be smaller than "
                                       f"either stride {s} or dilation {d}")
    if (h - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1 <= 0 or \
            (w - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1 <= 0:
        raise ShapeError(f"conv_transpose2d: padding {p} leaves no output for input of shape "
                         f"{list(input.shape)} and kernel {(kh, kw)}")
    if s != (1, 1) and h and w:  # spread: x lands on every s-th cell of a zero image
        spread = ((h - 1) * s[0] + 1, (w - 1) * s[1] + 1)
        x = apply(P["slice_scatter"], (T.full_((n, c) + spread, 0, x.dtype), x),
                  {"starts": (0, 0, 0, 0), "stops": (n, c) + spread, "steps": (1, 1) + s})
    qh, qw = d[0] * (kh - 1) - p[0], d[1] * (kw - 1) - p[1]
    x = pad(x, (qw, qw + op[1], qh, qh + op[0]))
    # (in, out/g, kh, kw) -> (out, in/g, kh, kw), flipped: the kernel of the equivalent conv
    wt = T.reshape(weight, (groups, ic // groups, ocg, kh, kw))
    wt = T.reshape(T.permute(wt, (0, 2, 1, 3, 4)), (groups * ocg, ic // groups, kh, kw))
    out = conv2d(x, T.flip(wt, (2, 3)), bias, dilation=d, groups=groups)
    return T.squeeze(out, 0) if unbatched else out


def _single(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise InvalidArgumentError(f"{name} must be an int or a 1-tuple, got {value}")
        return value[0]
    return value


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-d convolution as a 2-d one over a height-1 image."""
    x, unbatched = _batched(input, "conv1d", spatial=1)
    pad_arg = padding if isinstance(padding, str) else (0, _single(padding, "padding"))
    out = conv2d(T.unsqueeze(x, 2), T.unsqueeze(weight, 2), bias, stride=(1, _single(stride, "stride")),
                 padding=pad_arg, dilation=(1, _single(dilation, "dilation")), groups=groups)
    out = T.squeeze(out, 2)
    return T.squeeze(out, 0) if unbatched else out


# ---------------------------------------------------------------- pooling
def _pool_args(op, kernel_size, stride, padding, dilation):
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise InvalidArgumentError(f"{op}: padding {p} should be at most half of kernel size {k}")
    return k, s, p, d


def _tiles_exactly(x, k, s, p, d) -> bool:
    return s == k and p == (0, 0) and d == (1, 1) and x.shape[2] % k[0] == 0 and x.shape[3] % k[1] == 0


def _tiles(x: Tensor, k) -> Tensor:
    """(N, C, H, W) -> (N, C, H/kh, kh, W/kw, kw): non-overlapping windows as a reshape."""
    n, c, h, w = x.shape
    return T.reshape(x, (n, c, h // k[0], k[0], w // k[1], k[1]))


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """Maximum over each window. Where several elements tie for the maximum, the gradient is
    shared among them (PyTorch gives it all to one). With return_indices, also where each
    maximum is (h * W + w in its channel's input plane), and the gradient goes there only."""
    x, unbatched = _batched(input, "max_pool2d")
    k, s, p, d = _pool_args("max_pool2d", kernel_size, stride, padding, dilation)
    if return_indices:
        out, indices = _max_pool2d_with_indices(x, k, s, p, d, ceil_mode)
        return (T.squeeze(out, 0), T.squeeze(indices, 0)) if unbatched else (out, indices)
    if _tiles_exactly(x, k, s, p, d):
        out = T.amax(_tiles(x, k), (3, 5))
    else:
        out_hw = tuple(_out_size("max_pool2d", x.shape[2 + i], k[i], s[i], p[i], d[i], ceil_mode)
                       for i in range(2))
        lowest = float("-inf") if x.dtype.is_floating_point else int(np.iinfo(x.dtype.np).min)
        out = T.amax(_windows(x, k, s, p, d, lowest, out_hw), 2)
    return T.squeeze(out, 0) if unbatched else out


def _max_pool2d_with_indices(x, k, s, p, d, ceil_mode):
    out_hw = tuple(_out_size("max_pool2d", x.shape[2 + i], k[i], s[i], p[i], d[i], ceil_mode)
                   for i in range(2))
    lowest = float("-inf") if x.dtype.is_floating_point else int(np.iinfo(x.dtype.np).min)
    out, tap = T.max(_windows(x, k, s, p, d, lowest, out_hw), 2)  # gradient: to the index
    # tap t of the window at (i, j) reads input row i*sh - ph + (t // kw)*dh, column likewise
    oh, ow = out_hw
    row = T.add(T.reshape(T.mul(T.arange_(oh), s[0]), (oh, 1)), -p[0])
    col = T.add(T.reshape(T.mul(T.arange_(ow), s[1]), (1, ow)), -p[1])
    rows = T.add(row, T.mul(T.floor_divide(tap, k[1]), d[0]))
    cols = T.add(col, T.mul(T.remainder(tap, k[1]), d[1]))
    return out, T.add(T.mul(rows, x.shape[3]), cols)


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The inverse of max_pool2d(return_indices=True): each value written at its index in a
    zero image. An index that several windows share holds the value once (their mean)."""
    x, unbatched = _batched(input, "max_unpool2d")
    idx, _ = _batched(indices, "max_unpool2d")
    if tuple(idx.shape) != tuple(x.shape):
        raise ShapeError(f"max_unpool2d: indices of shape {list(indices.shape)} must match the "
                         f"input's {list(input.shape)}")
    k, p = _pair(kernel_size, "kernel_size"), _pair(padding, "padding")
    s = k if stride is None else _pair(stride, "stride")
    n, c, h, w = x.shape
    size = tuple(((h, w)[i] - 1) * s[i] - 2 * p[i] + k[i] for i in range(2))
    if output_size is not None:
        size = tuple(output_size)[-2:]
    flat = T.reshape(idx, (n, c, h * w))
    zeros = T.full_((n, c, size[0] * size[1]), 0, x.dtype)
    total = T.scatter_add(zeros, 2, flat, T.reshape(x, (n, c, h * w)))
    hits = T.scatter_add(zeros, 2, flat, T.full_((n, c, h * w), 1, x.dtype))
    out = T.reshape(T.div(total, T.clamp(hits, min=1)), (n, c) + size)
    return T.squeeze(out, 0) if unbatched else out


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    x, unbatched = _batched(input, "avg_pool2d")
    k, s, p, d = _pool_args("avg_pool2d", kernel_size, stride, padding, 1)
    if _tiles_exactly(x, k, s, p, d) and divisor_override is None:
        out = T.mean(_tiles(x, k), (3, 5))
        return T.squeeze(out, 0) if unbatched else out
    out_hw = tuple(_out_size("avg_pool2d", x.shape[2 + i], k[i], s[i], p[i], 1, ceil_mode)
                   for i in range(2))
    total = T.sum(_windows(x, k, s, p, d, 0, out_hw), 2)
    if divisor_override is not None:
        divisor = divisor_override
    else:
        # how many cells each window covers: padding counts (if asked) but not the cells a
        # ceil_mode window hangs past the padded input, exactly as PyTorch divides
        ones = T.full_((1, 1) + tuple(x.shape[2:]), 1, x.dtype)
        covered = pad(ones, (p[1], p[1], p[0], p[0]), value=1 if count_include_pad else 0)
        divisor = T.sum(_windows(covered, k, s, (0, 0), d, 0, out_hw), 2)
    out = T.div(total, divisor)
    return T.squeeze(out, 0) if unbatched else out


def _adaptive_weights(size: int, out: int, dtype) -> Tensor:
    """(out, size) averaging matrix: row i averages input cells floor(i*size/out) up to
    ceil((i+1)*size/out), PyTorch's adaptive windows."""
    i = T.reshape(T.arange_(out), (out, 1))
    j = T.reshape(T.arange_(size), (1, size))
    start = T.floor_divide(T.mul(i, size), out)
    end = T.floor_divide(T.add(T.mul(T.add(i, 1), size), out - 1), out)
    inside = T.logical_and(T.ge(j, start), T.lt(j, end))
    return T.div(T.cast(inside, dtype), T.cast(T.sub(end, start), dtype))


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    x, unbatched = _batched(input, "adaptive_avg_pool2d")
    h, w = x.shape[2], x.shape[3]
    oh, ow = _pair(output_size, "output_size")
    oh, ow = h if oh is None else oh, w if ow is None else ow
    if h % oh == 0 and w % ow == 0:
        out = T.mean(_tiles(x, (h // oh, w // ow)), (3, 5))
    else:
        rows = _adaptive_weights(h, oh, x.dtype)
        cols = _adaptive_weights(w, ow, x.dtype)
        out = T.matmul(T.matmul(rows, x), T.t(cols))
    return T.squeeze(out, 0) if unbatched else out


__all__ = ["pad", "unfold", "conv2d", "conv1d", "conv_transpose2d", "max_pool2d", "max_unpool2d",
           "avg_pool2d", "adaptive_avg_pool2d"]
