"""The op table: every eager op with its numpy reference, how its inputs are drawn, and
whether it is differentiable.

One table drives three suites: values against numpy over hypothesis shapes
(test_ops_values.py), gradients against central differences in float64
(test_ops_grads.py), and values and gradients against PyTorch when it is installed
(test_ops_torch.py). Each case's `fn(m, *xs)` is written against a module `m`, so the same
lambda runs with `m = tracecc` and with `m = torch`.

Inputs are drawn as float64 (or int64 / bool) numpy arrays: shapes by hypothesis
(broadcasting, size-1 and 0-size dimensions), values by a seeded numpy generator in the
op's domain. The suites cast floating inputs to the dtype under test.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_SIDE = 4
MAX_DIMS = 3


@dataclass(frozen=True)
class OpCase:
    name: str
    fn: Callable  # fn(m, *tensors) -> tensor or tuple of tensors; m is tracecc or torch
    ref: Callable  # ref(*arrays) -> array or tuple of arrays (numpy)
    gen: Callable  # gen(draw, rng, integer: bool) -> tuple of numpy arrays
    grad: bool = True  # differentiable in its floating inputs
    ints: bool = False  # also defined on integer tensors (values checked with int32/int64)
    index_args: tuple = ()  # positions of index arrays: always int64, never differentiated

    def __repr__(self) -> str:  # pytest ids
        return self.name


# ---------------------------------------------------------------- input generation
def shapes(min_dims=0, max_dims=MAX_DIMS, min_side=0):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=MAX_SIDE)


def values(rng, shape, domain: str, integer: bool = False) -> np.ndarray:
    """Values in an op's domain: real, positive, nonzero or bool (always an ndarray)."""
    return np.asarray(_values(rng, tuple(shape), domain, integer))


def _values(rng, shape, domain, integer):
    if domain == "bool":
        return rng.random(shape) < 0.5
    if integer:
        if domain == "positive":
            return rng.integers(1, 5, shape)
        if domain == "nonzero":
            return rng.integers(1, 5, shape) * rng.choice([-1, 1], shape)
        return rng.integers(-5, 6, shape)
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":
        return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return rng.uniform(-2.0, 2.0, shape)


def unary(domain="real", min_dims=0, max_dims=MAX_DIMS, min_side=0):
    def gen(draw, rng, integer=False):
        return (values(rng, draw(shapes(min_dims, max_dims, min_side)), domain, integer),)

    return gen


def nary(*domains, min_dims=0):
    """Mutually broadcastable operands, one per domain."""

    def gen(draw, rng, integer=False):
        drawn = draw(hnp.mutually_broadcastable_shapes(
            num_shapes=len(domains), min_dims=min_dims, max_dims=MAX_DIMS, min_side=0,
            max_side=MAX_SIDE))
        return tuple(values(rng, s, d, integer) for s, d in zip(drawn.input_shapes, domains))

    return gen


def same_shape(n, min_dims=0):
    def gen(draw, rng, integer=False):
        shape = draw(shapes(min_dims))
        return tuple(values(rng, shape, "real", integer) for _ in range(n))

    return gen


def cat_pair(axis):
    """Two operands that agree everywhere except along `axis`."""

    def gen(draw, rng, integer=False):
        shape = list(draw(shapes(min_dims=1)))
        other = list(shape)
        other[axis] = draw(st.integers(0, MAX_SIDE))
        return values(rng, shape, "real", integer), values(rng, other, "real", integer)

    return gen


def matmul_pair(draw, rng, integer=False):
    """Operands of matmul: 1-d or batched, with broadcast batch dimensions."""
    m, k, n = (draw(st.integers(0, MAX_SIDE)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2,
                                                   min_side=1, max_side=3)).input_shapes
    vector_a, vector_b = draw(st.booleans()), draw(st.booleans())
    a_shape = (k,) if vector_a else batch[0] + (m, k)
    b_shape = (k,) if vector_b else batch[1] + (k, n)
    return values(rng, a_shape, "real", integer), values(rng, b_shape, "real", integer)


def fixed_shapes(*shape_list):
    def gen(draw, rng, integer=False):
        return tuple(values(rng, s, "real", integer) for s in shape_list)

    return gen


def gather_args(draw, rng, integer=False):
    """x, index for gather along the last axis (index no larger than x off that axis)."""
    shape = draw(shapes(min_dims=1))
    size = shape[-1]
    index_shape = tuple(draw(st.integers(0, d)) for d in shape[:-1])
    index_shape += (draw(st.integers(0, MAX_SIDE)) if size else 0,)
    index = rng.integers(0, max(size, 1), index_shape)
    return values(rng, shape, "real", integer), index


def scatter_args(draw, rng, integer=False):
    """x, index, src for scatter_add along the last axis (duplicate targets included)."""
    x, index = gather_args(draw, rng, integer)
    return x, index, values(rng, index.shape, "real", integer)


def index_select_args(with_source):
    """x, a 1-d index along axis 0 (repeats and negative values included), and a source."""

    def gen(draw, rng, integer=False):
        shape = draw(shapes(min_dims=1))
        n = draw(st.integers(0, MAX_SIDE)) if shape[0] else 0
        index = rng.integers(-shape[0], max(shape[0], 1), n) if shape[0] else np.zeros(0, np.int64)
        x = values(rng, shape, "real", integer)
        if not with_source:
            return x, index
        return x, index, values(rng, (n,) + tuple(shape[1:]), "real", integer)

    return gen


def int_index_args(draw, rng, integer=False):
    """x and an integer index array (any shape, negative values included) for x[index]."""
    shape = draw(shapes(min_dims=1, min_side=1))
    index = rng.integers(-shape[0], shape[0], draw(shapes(max_dims=2)))
    return values(rng, shape, "real", integer), index


def two_index_args(draw, rng, integer=False):
    """x and two broadcastable index arrays for x[:, i, j] (needs 3 dims)."""
    shape = draw(shapes(min_dims=3, max_dims=3, min_side=1))
    pair = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    i = rng.integers(0, shape[1], pair[0])
    j = rng.integers(-shape[2], shape[2], pair[1])
    return values(rng, shape, "real", integer), i, j


def integers(low, high, *, shifts=False):
    """Two broadcastable integer operands (bitwise ops are defined on integers only): values
    in [low, high), or for shifts a value and an amount that also runs out of range."""

    def gen(draw, rng, integer=False):
        a, b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=MAX_DIMS,
                                                      max_side=MAX_SIDE)).input_shapes
        return rng.integers(low, high, a), rng.integers(-2, 70 if shifts else high, b)

    return gen


def masked(draw, rng, integer=False):
    shape = draw(shapes())
    return values(rng, shape, "real", integer), values(rng, shape, "bool")


# ---------------------------------------------------------------- numpy helpers
def _erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _gather(x, index):
    region = tuple(slice(0, n) for n in index.shape[:-1]) + (slice(None),)
    return np.take_along_axis(x[region], index, axis=-1)


def _scatter_add(x, index, src):
    out = x.copy()
    coords = list(np.indices(index.shape, sparse=True))
    coords[-1] = index
    np.add.at(out, tuple(coords), src)
    return out


def _index_add(x, index, src):
    out = x.copy()
    np.add.at(out, index, src)
    return out


def _max_values(x, axis):
    return np.max(x, axis=axis)


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True) if x.shape[axis] else np.zeros_like(
        np.sum(x, axis=axis, keepdims=True))
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _softmax(x, axis):
    e = np.exp(x - (np.max(x, axis=axis, keepdims=True) if x.shape[axis] else 0))
    return e / np.sum(e, axis=axis, keepdims=True)


def _split(x, size, axis):
    n = x.shape[axis]
    return tuple(np.split(x, list(range(size, n, size)), axis=axis)) if n else (x,)


def _chunk3(x):
    """torch.chunk: pieces of ceil(n / 3); a 0-size dimension gives 3 empty pieces."""
    n = x.shape[0]
    return _split(x, -(-n // 3), 0) if n else (x, x, x)


def _index_i_slice_j(x, i, j):
    """x[i, :, j] as PyTorch reads it: a 0-d index tensor selects like an int."""
    i = i % x.shape[0]
    if i.ndim == 0:
        return x[int(i)][:, j]
    return x[i, :, j]


def _squeeze_dim0(x):
    return np.squeeze(x, 0) if x.shape[0] == 1 else x


def _narrow_last(x):
    n = x.shape[-1]
    return x[..., n // 2:]


def _as_int(t):
    """The float suites hand integer-valued float tensors; bitwise ops need integers, as a
    user would convert them (the integer suites pass int32/int64 through unchanged)."""
    return t.long() if t.is_floating_point() else t


def _np_int(a):
    return a.astype(np.int64) if a.dtype.kind == "f" else a


def _shift_ref(left):
    """PyTorch's shifts, element by element in Python integers wrapped to the width: an
    amount < 0 or >= the width gives 0 (left) or the sign (right)."""

    def ref(a, b):
        a, b = np.broadcast_arrays(_np_int(a), _np_int(b))
        dtype = np.result_type(a, b)
        bits = dtype.itemsize * 8
        out = np.empty(a.shape, dtype)
        for i in np.ndindex(a.shape):
            x, s = int(a[i]), int(b[i])
            if not 0 <= s < bits:
                v = 0 if left else (-1 if x < 0 else 0)
            else:
                v = (x << s) % 2 ** bits if left else x >> s
                v = v - 2 ** bits if v >= 2 ** (bits - 1) else v
            out[i] = v
        return out

    return ref


def _conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    """Every input cell adds its value times the kernel into the output, at stride spacing."""
    n, c, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, groups * ocg, oh + 2 * ph + kh * dh, ow + 2 * pw + kw * dw), x.dtype)
    cg = c // groups
    for ci in range(c):
        g = ci // cg
        for a in range(kh):
            for e in range(kw):
                contrib = x[:, ci, :, :, None] * w[ci, :, a, e]  # (n, h, w, ocg)
                rows = slice(a * dh, a * dh + (h - 1) * sh + 1, sh)
                cols = slice(e * dw, e * dw + (wd - 1) * sw + 1, sw)
                full[:, g * ocg:(g + 1) * ocg, rows, cols] += np.moveaxis(contrib, -1, 1)
    return full[:, :, ph:ph + oh, pw:pw + ow] + b.reshape(1, -1, 1, 1)


def _max_pool2d_indices(x, k, s, p):
    """(values, flat h*W+w indices) of max pooling, window by window (first maximum)."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    values, indices = np.zeros((n, c, oh, ow), x.dtype), np.zeros((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - p, j * s - p
            rs = [r for r in range(r0, r0 + k) if 0 <= r < h]
            cs = [q for q in range(c0, c0 + k) if 0 <= q < w]
            window = x[:, :, rs][:, :, :, cs].reshape(n, c, -1)
            best = np.argmax(window, -1)
            values[:, :, i, j] = np.take_along_axis(window, best[..., None], -1)[..., 0]
            indices[:, :, i, j] = np.array(rs)[best // len(cs)] * w + np.array(cs)[best % len(cs)]
    return values, indices


def _max_unpool2d(x):
    values, indices = _max_pool2d_indices(x, 2, 2, 0)
    out = np.zeros(x.shape[:2] + (x.shape[2] * x.shape[3],), x.dtype)
    np.put_along_axis(out, indices.reshape(x.shape[:2] + (-1,)), values.reshape(x.shape[:2] + (-1,)), -1)
    return out.reshape(x.shape)


def _clamp_ref(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def _flatten_from_1(x):
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


# ---------------------------------------------------------------- the table
CASES: list[OpCase] = []


def case(name, fn, ref, gen, **kw) -> None:
    CASES.append(OpCase(name, fn, ref, gen, **kw))


# unary math
case("neg", lambda m, x: m.neg(x), np.negative, unary(), ints=True)
case("-x", lambda m, x: -x, np.negative, unary(), ints=True)
case("abs", lambda m, x: m.abs(x), np.abs, unary(), ints=True)
case("exp", lambda m, x: m.exp(x), np.exp, unary())
case("expm1", lambda m, x: m.expm1(x), np.expm1, unary())
case("log", lambda m, x: m.log(x), np.log, unary("positive"))
case("log1p", lambda m, x: m.log1p(x), np.log1p, unary("positive"))
case("sqrt", lambda m, x: m.sqrt(x), np.sqrt, unary("positive"))
case("rsqrt", lambda m, x: m.rsqrt(x), lambda x: 1 / np.sqrt(x), unary("positive"))
case("sin", lambda m, x: m.sin(x), np.sin, unary())
case("cos", lambda m, x: m.cos(x), np.cos, unary())
case("tanh", lambda m, x: m.tanh(x), np.tanh, unary())
case("sigmoid", lambda m, x: m.sigmoid(x), lambda x: 1 / (1 + np.exp(-x)), unary())
case("erf", lambda m, x: m.erf(x), _erf, unary())
case("relu", lambda m, x: m.relu(x), lambda x: np.maximum(x, 0), unary(), ints=True)
case("sign", lambda m, x: m.sign(x), np.sign, unary(), ints=True)
case("floor", lambda m, x: m.floor(x), np.floor, unary())
case("ceil", lambda m, x: m.ceil(x), np.ceil, unary())
case("round", lambda m, x: m.round(x), np.round, unary())
case("square", lambda m, x: m.square(x), np.square, unary(), ints=True)
case("reciprocal", lambda m, x: m.reciprocal(x), lambda x: 1 / x, unary("nonzero"))
case("clamp", lambda m, x: m.clamp(x, -0.5, 0.75), lambda x: np.clip(x, -0.5, 0.75), unary())
case("clamp(min)", lambda m, x: x.clamp(min=0.25), lambda x: np.maximum(x, 0.25), unary())
case("clamp(max)", lambda m, x: x.clamp(max=0.25), lambda x: np.minimum(x, 0.25), unary())
case("clamp(tensors)", lambda m, x, lo, hi: m.clamp(x, lo, lo + m.abs(hi)),
     lambda x, lo, hi: _clamp_ref(x, lo, lo + np.abs(hi)), nary("real", "real", "real"))
case("x ** 2", lambda m, x: x ** 2, lambda x: x ** 2, unary(), ints=True)
case("x ** 0.5", lambda m, x: x ** 0.5, np.sqrt, unary("positive"))

# binary arithmetic, with broadcasting
case("add", lambda m, a, b: m.add(a, b), np.add, nary("real", "real"), ints=True)
case("add(alpha)", lambda m, a, b: m.add(a, b, alpha=2), lambda a, b: a + 2 * b,
     nary("real", "real"), ints=True)
case("sub", lambda m, a, b: m.sub(a, b), np.subtract, nary("real", "real"), ints=True)
case("mul", lambda m, a, b: m.mul(a, b), np.multiply, nary("real", "real"), ints=True)
case("div", lambda m, a, b: m.div(a, b), np.divide, nary("real", "nonzero"))
case("pow", lambda m, a, b: m.pow(a, b), np.power, nary("positive", "real"))
case("maximum", lambda m, a, b: m.maximum(a, b), np.maximum, nary("real", "real"), ints=True)
case("minimum", lambda m, a, b: m.minimum(a, b), np.minimum, nary("real", "real"), ints=True)
case("max(a, b)", lambda m, a, b: m.max(a, b), np.maximum, nary("real", "real"), ints=True)
case("remainder", lambda m, a, b: m.remainder(a, b), np.remainder, nary("real", "nonzero"),
     ints=True)
case("floor_divide", lambda m, a, b: m.floor_divide(a, b), np.floor_divide,
     nary("real", "nonzero"), grad=False, ints=True)
case("lerp", lambda m, a, b: m.lerp(a, b, 0.25), lambda a, b: a + 0.25 * (b - a),
     nary("real", "real"))
case("lerp(tensor weight)", lambda m, a, b, w: m.lerp(a, b, w), lambda a, b, w: a + w * (b - a),
     nary("real", "real", "real"))
# operators, Python scalars on either side
case("a + b", lambda m, a, b: a + b, np.add, nary("real", "real"), ints=True)
case("a - b", lambda m, a, b: a - b, np.subtract, nary("real", "real"), ints=True)
case("a * b", lambda m, a, b: a * b, np.multiply, nary("real", "real"), ints=True)
case("a / b", lambda m, a, b: a / b, np.divide, nary("real", "nonzero"))
case("a // b", lambda m, a, b: a // b, np.floor_divide, nary("real", "nonzero"), grad=False,
     ints=True)
case("a % b", lambda m, a, b: a % b, np.remainder, nary("real", "nonzero"), ints=True)
case("a ** b", lambda m, a, b: a ** b, np.power, nary("positive", "real"))
case("x + 2", lambda m, x: x + 2, lambda x: x + 2, unary(), ints=True)
case("3 - x", lambda m, x: 3 - x, lambda x: 3 - x, unary(), ints=True)
case("x * 1.5", lambda m, x: x * 1.5, lambda x: x * 1.5, unary())
case("2 * x", lambda m, x: 2 * x, lambda x: 2 * x, unary(), ints=True)
case("x / 4", lambda m, x: x / 4, lambda x: x / 4, unary())
case("1 / x", lambda m, x: 1 / x, lambda x: 1 / x, unary("nonzero"))
case("2 ** x", lambda m, x: 2 ** x, lambda x: 2.0 ** x, unary())
case("x % 1.5", lambda m, x: x % 1.5, lambda x: np.remainder(x, 1.5), unary())
case("7 % x", lambda m, x: 7 % x, lambda x: np.remainder(7, x), unary("nonzero"), ints=True)
case("5 // x", lambda m, x: 5 // x, lambda x: np.floor_divide(5, x), unary("nonzero"),
     grad=False, ints=True)

# comparisons and logic (bool results)
for _op, _np in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                 ("gt", np.greater), ("ge", np.greater_equal)]:
    case(_op, (lambda op: lambda m, a, b: getattr(m, op)(a, b))(_op), _np, nary("real", "real"),
         grad=False, ints=True)
case("a < b", lambda m, a, b: a < b, np.less, nary("real", "real"), grad=False, ints=True)
case("x >= 0.5", lambda m, x: x >= 0.5, lambda x: x >= 0.5, unary(), grad=False)
case("x == x", lambda m, x: x == x, lambda x: x == x, unary(), grad=False, ints=True)
for _op, _np in [("logical_and", np.logical_and), ("logical_or", np.logical_or),
                 ("logical_xor", np.logical_xor)]:
    case(_op, (lambda op: lambda m, a, b: getattr(m, op)(a, b))(_op), _np, nary("bool", "bool"),
         grad=False)
case("logical_not", lambda m, x: m.logical_not(x), np.logical_not, unary("bool"), grad=False)
case("~x (bool)", lambda m, x: ~x, np.logical_not, unary("bool"), grad=False)
# bitwise: integers (and bools for and/or/xor/not); operators are the bitwise ops, as in torch
for _op, _np, _sym, _operator in [("bitwise_and", np.bitwise_and, "&", operator.and_),
                                  ("bitwise_or", np.bitwise_or, "|", operator.or_),
                                  ("bitwise_xor", np.bitwise_xor, "^", operator.xor)]:
    case(_op, (lambda op: lambda m, a, b: getattr(m, op)(_as_int(a), _as_int(b)))(_op),
         (lambda f: lambda a, b: f(_np_int(a), _np_int(b)))(_np), integers(-70, 70), grad=False,
         ints=True)
    case(f"a {_sym} b (bool)", (lambda f: lambda m, a, b: f(a, b))(_operator), _np,
         nary("bool", "bool"), grad=False)
case("a & b", lambda m, a, b: _as_int(a) & _as_int(b), lambda a, b: _np_int(a) & _np_int(b),
     integers(-70, 70), grad=False, ints=True)
case("a | 6", lambda m, a, b: _as_int(a) | 6, lambda a, b: _np_int(a) | 6, integers(-70, 70),
     grad=False, ints=True)
case("5 ^ a", lambda m, a, b: 5 ^ _as_int(a), lambda a, b: 5 ^ _np_int(a), integers(-70, 70),
     grad=False, ints=True)
case("bitwise_not", lambda m, a, b: m.bitwise_not(_as_int(a)), lambda a, b: ~_np_int(a),
     integers(-70, 70), grad=False, ints=True)
case("~x", lambda m, a, b: ~_as_int(a), lambda a, b: ~_np_int(a), integers(-70, 70), grad=False,
     ints=True)
case("bitwise_left_shift", lambda m, a, b: m.bitwise_left_shift(_as_int(a), _as_int(b)),
     _shift_ref(True), integers(-70, 70, shifts=True), grad=False, ints=True)
case("a >> b", lambda m, a, b: _as_int(a) >> _as_int(b), _shift_ref(False),
     integers(-70, 70, shifts=True), grad=False, ints=True)
case("a << 3", lambda m, a, b: _as_int(a) << 3, lambda a, b: _shift_ref(True)(a, np.full_like(a, 3)),
     integers(-70, 70), grad=False, ints=True)
case("1 << b", lambda m, a, b: 1 << _as_int(b), lambda a, b: _shift_ref(True)(np.ones_like(b), b),
     integers(-70, 70, shifts=True), grad=False, ints=True)
case("isnan", lambda m, x: m.isnan(m.log(x)), lambda x: np.isnan(np.log(x)), unary(), grad=False)

# creation inside an expression
# (refs pick numpy dtypes that give PyTorch's promotion: int64 arange + float32 x is float32)
case("x + arange", lambda m, x: x + m.arange(x.shape[-1]),
     lambda x: x + np.arange(x.shape[-1]).astype(x.dtype if x.dtype.kind == "f" else np.int64),
     unary(min_dims=1), ints=True)
case("x * arange(float)", lambda m, x: x * m.arange(0.5, x.shape[-1] + 0.5, 1.0),
     lambda x: x * np.arange(0.5, x.shape[-1] + 0.5, 1.0, dtype=np.float32), unary(min_dims=1))

# casts
case("to(float64)", lambda m, x: x.to(m.float64), lambda x: x.astype(np.float64), unary(),
     grad=False, ints=True)
case("int()", lambda m, x: x.int(), lambda x: x.astype(np.int32), unary(), grad=False, ints=True)
case("bool()", lambda m, x: x.bool(), lambda x: x.astype(bool), unary(), grad=False, ints=True)

# selection
case("where", lambda m, c, a, b: m.where(c, a, b), np.where,
     nary("bool", "real", "real"), ints=True)
case("where(scalar)", lambda m, c, a: m.where(c, a, 0.5), lambda c, a: np.where(c, a, 0.5),
     nary("bool", "real"))
case("masked_fill", lambda m, x, mask: x.masked_fill(mask, 0.5),
     lambda x, mask: np.where(mask, 0.5, x), masked)

# reductions
case("sum", lambda m, x: m.sum(x), np.sum, unary(), ints=True)
case("sum(0)", lambda m, x: m.sum(x, 0), lambda x: np.sum(x, 0), unary(min_dims=1), ints=True)
case("sum(-1, keepdim)", lambda m, x: x.sum(-1, keepdim=True),
     lambda x: np.sum(x, -1, keepdims=True), unary(min_dims=1), ints=True)
case("sum((0, -1))", lambda m, x: x.sum((0, -1)), lambda x: np.sum(x, (0, -1)),
     unary(min_dims=2), ints=True)
case("mean", lambda m, x: m.mean(x), np.mean, unary())
case("mean(-1, keepdim)", lambda m, x: x.mean(-1, keepdim=True),
     lambda x: np.mean(x, -1, keepdims=True), unary(min_dims=1))
case("mean((0, 1))", lambda m, x: x.mean((0, 1)), lambda x: np.mean(x, (0, 1)),
     unary(min_dims=2))
case("prod", lambda m, x: m.prod(x), np.prod, unary(), ints=True)
case("prod(1)", lambda m, x: m.prod(x, 1), lambda x: np.prod(x, 1), unary(min_dims=2), ints=True)
case("amax", lambda m, x: m.amax(x), np.max, unary(), ints=True)
case("amax([0, 2])", lambda m, x: x.amax([0, 2]), lambda x: np.max(x, (0, 2)), unary(min_dims=3),
     ints=True)
case("amax(-1)", lambda m, x: m.amax(x, -1), lambda x: np.max(x, -1), unary(min_dims=1),
     ints=True)
case("amin((0, -1), keepdim)", lambda m, x: m.amin(x, (0, -1), keepdim=True),
     lambda x: np.min(x, (0, -1), keepdims=True), unary(min_dims=2), ints=True)
case("max()", lambda m, x: x.max(), np.max, unary(), ints=True)
case("min()", lambda m, x: m.min(x), np.min, unary(), ints=True)
case("max(0).values", lambda m, x: m.max(x, 0).values, lambda x: np.max(x, 0),
     unary(min_dims=1), ints=True)
case("max(-1).indices", lambda m, x: m.max(x, -1).indices, lambda x: np.argmax(x, -1),
     unary(min_dims=1), grad=False, ints=True)
case("min(-1, keepdim)", lambda m, x: tuple(x.min(-1, keepdim=True)),
     lambda x: (np.min(x, -1, keepdims=True), np.argmin(x, -1, keepdims=True)),
     unary(min_dims=1), ints=True)
case("argmax", lambda m, x: m.argmax(x), np.argmax, unary(), grad=False, ints=True)
case("argmax(0)", lambda m, x: x.argmax(0), lambda x: np.argmax(x, 0), unary(min_dims=1),
     grad=False, ints=True)
case("argmin(-1, keepdim)", lambda m, x: m.argmin(x, -1, keepdim=True),
     lambda x: np.argmin(x, -1, keepdims=True), unary(min_dims=1), grad=False, ints=True)
case("var", lambda m, x: m.var(x), lambda x: np.var(x, ddof=1), unary())
case("var(-1, correction=0)", lambda m, x: m.var(x, -1, correction=0),
     lambda x: np.var(x, -1, ddof=0), unary(min_dims=1))
case("var(0, keepdim, unbiased)", lambda m, x: x.var(0, keepdim=True),
     lambda x: np.var(x, 0, ddof=1, keepdims=True), unary(min_dims=1))
case("std", lambda m, x: m.std(x), lambda x: np.std(x, ddof=1), unary())
case("var(0, False)", lambda m, x: x.var(0, False), lambda x: np.var(x, 0), unary(min_dims=1))
case("std((0, 1), correction=2)", lambda m, x: m.std(x, (0, 1), correction=2),
     lambda x: np.std(x, (0, 1), ddof=2), unary(min_dims=2))
case("logsumexp(-1)", lambda m, x: m.logsumexp(x, -1), lambda x: _logsumexp(x, -1),
     unary(min_dims=1))
case("logsumexp(0, keepdim)", lambda m, x: m.logsumexp(x, 0, keepdim=True),
     lambda x: np.expand_dims(_logsumexp(x, 0), 0), unary(min_dims=1))
case("softmax(-1)", lambda m, x: m.softmax(x, -1), lambda x: _softmax(x, -1), unary(min_dims=1))
case("softmax(0)", lambda m, x: x.softmax(0), lambda x: _softmax(x, 0), unary(min_dims=1))
case("log_softmax(-1)", lambda m, x: m.log_softmax(x, dim=-1),
     lambda x: np.log(_softmax(x, -1)), unary(min_dims=1))
case("norm", lambda m, x: m.norm(x), lambda x: np.sqrt(np.sum(x * x)), unary("nonzero"))
case("norm(1)", lambda m, x: m.norm(x, 1), lambda x: np.sum(np.abs(x)), unary("nonzero"))
case("norm(inf, -1)", lambda m, x: m.norm(x, float("inf"), dim=-1), lambda x: np.max(np.abs(x), -1),
     unary("nonzero", min_dims=1, min_side=1))
case("norm(3, 0)", lambda m, x: m.norm(x, 3, dim=0), lambda x: np.sum(np.abs(x) ** 3, 0) ** (1 / 3),
     unary("nonzero", min_dims=1, min_side=1))
case("count_nonzero(0)", lambda m, x: m.count_nonzero(x, dim=0), lambda x: np.count_nonzero(x, 0),
     unary("bool", min_dims=1), grad=False)
case("all", lambda m, x: m.all(x > 0), lambda x: np.all(x > 0), unary(), grad=False)
case("any(-1)", lambda m, x: m.any(x > 1, -1), lambda x: np.any(x > 1, -1), unary(min_dims=1),
     grad=False)
case("count_nonzero", lambda m, x: m.count_nonzero(x), np.count_nonzero, unary("bool"),
     grad=False)

# movement
case("reshape(-1)", lambda m, x: x.reshape(-1), lambda x: x.reshape(-1), unary(), ints=True)
case("view(n, -1)", lambda m, x: x.contiguous().view(x.shape[0], -1) if x.shape[0] else x,
     lambda x: x.reshape(x.shape[0], -1) if x.shape[0] else x, unary(min_dims=1, min_side=0))
case("permute(reversed)", lambda m, x: x.permute(tuple(reversed(range(x.ndim)))), np.transpose,
     unary(), ints=True)
case("permute(tuple)", lambda m, x: m.permute(x, (1, 2, 0)), lambda x: np.transpose(x, (1, 2, 0)),
     unary(min_dims=3))
case("transpose(0, -1)", lambda m, x: x.transpose(0, -1), lambda x: np.swapaxes(x, 0, -1),
     unary(min_dims=1), ints=True)
case("t", lambda m, x: m.t(x), lambda x: x.T, unary(max_dims=2))
case("T (2-d)", lambda m, x: x.T, lambda x: x.T, unary(min_dims=2, max_dims=2))
case("mT", lambda m, x: x.mT, lambda x: np.swapaxes(x, -1, -2), unary(min_dims=2))
case("squeeze", lambda m, x: m.squeeze(x), np.squeeze, unary())
case("squeeze(0)", lambda m, x: x.squeeze(0), _squeeze_dim0, unary(min_dims=1))
case("squeeze((0, -1))", lambda m, x: x.squeeze((0, -1)),
     lambda x: np.squeeze(x, tuple(a for a in {0, x.ndim - 1} if x.shape[a] == 1)), unary(min_dims=2))
case("unsqueeze(-1)", lambda m, x: m.unsqueeze(x, -1), lambda x: np.expand_dims(x, -1), unary())
case("unsqueeze(0)", lambda m, x: x.unsqueeze(0), lambda x: np.expand_dims(x, 0), unary())
case("flatten", lambda m, x: m.flatten(x), np.ravel, unary(), ints=True)
case("flatten(1)", lambda m, x: x.flatten(1), _flatten_from_1, unary(min_dims=2))
case("expand", lambda m, x: x.expand(2, *x.shape), lambda x: np.broadcast_to(x, (2,) + x.shape),
     unary(), ints=True)
case("broadcast_tensors", lambda m, a, b: m.broadcast_tensors(a, b),
     lambda a, b: tuple(np.broadcast_arrays(a, b)), nary("real", "real"))
case("broadcast_to", lambda m, a, b: m.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)),
     lambda a, b: np.broadcast_arrays(a, b)[0], nary("real", "real"))
case("contiguous", lambda m, x: x.contiguous(), lambda x: x, unary())
case("clone", lambda m, x: m.clone(x), lambda x: x.copy(), unary(), ints=True)
case("cat(0)", lambda m, a, b: m.cat([a, b]), lambda a, b: np.concatenate([a, b]), cat_pair(0),
     ints=True)
case("cat(-1)", lambda m, a, b: m.cat((a, b), dim=-1), lambda a, b: np.concatenate([a, b], -1),
     cat_pair(-1))
case("stack(0)", lambda m, a, b: m.stack([a, b]), lambda a, b: np.stack([a, b]), same_shape(2),
     ints=True)
case("stack(-1)", lambda m, a, b: m.stack([a, b], dim=-1), lambda a, b: np.stack([a, b], -1),
     same_shape(2))
case("split(2, -1)", lambda m, x: x.split(2, -1), lambda x: _split(x, 2, -1), unary(min_dims=1))
case("split([1, n-1])", lambda m, x: m.split(x, [1, x.shape[0] - 1]),
     lambda x: (x[:1], x[1:]), unary(min_dims=1, min_side=1))
case("chunk(3)", lambda m, x: x.chunk(3), _chunk3, unary(min_dims=1))
case("unbind", lambda m, x: m.unbind(x), lambda x: tuple(x), unary(min_dims=1))
case("narrow", lambda m, x: x.narrow(-1, x.shape[-1] // 2, x.shape[-1] - x.shape[-1] // 2),
     _narrow_last, unary(min_dims=1))
case("flip(0)", lambda m, x: m.flip(x, [0]), lambda x: np.flip(x, 0), unary(min_dims=1),
     ints=True)
case("flip(0, -1)", lambda m, x: x.flip((0, -1)), lambda x: np.flip(x, (0, -1)),
     unary(min_dims=2))
case("repeat", lambda m, x: x.repeat(2, *([1] * x.ndim)), lambda x: np.tile(x, (2,) + (1,) * x.ndim),
     unary(), ints=True)
case("repeat(per dim)", lambda m, x: x.repeat(*range(1, x.ndim + 1)),
     lambda x: np.tile(x, tuple(range(1, x.ndim + 1))), unary(min_dims=1))
case("tril", lambda m, x: m.tril(x), np.tril, unary(min_dims=2))
case("triu(1)", lambda m, x: x.triu(1), lambda x: np.triu(x, 1), unary(min_dims=2))
case("tril(-1)", lambda m, x: x.tril(-1), lambda x: np.tril(x, -1), unary(min_dims=2), ints=True)

# indexing
case("x[0]", lambda m, x: x[0], lambda x: x[0], unary(min_dims=1, min_side=1), ints=True)
case("x[-1, 1:]", lambda m, x: x[-1, 1:], lambda x: x[-1, 1:], unary(min_dims=2, min_side=1))
case("x[..., ::2]", lambda m, x: x[..., ::2], lambda x: x[..., ::2], unary(min_dims=1))
case("x[None, 1:3, ..., None]", lambda m, x: x[None, 1:3, ..., None],
     lambda x: x[None, 1:3, ..., None], unary(min_dims=1))
case("x[index]", lambda m, x, i: x[i], lambda x, i: x[i], int_index_args, ints=True, index_args=(1,))
case("x[:, i, j]", lambda m, x, i, j: x[:, i, j], lambda x, i, j: x[:, i, j], two_index_args,
     index_args=(1, 2))
case("x[i, :, j]", lambda m, x, i, j: x[i % x.shape[0], :, j], _index_i_slice_j, two_index_args,
     index_args=(1, 2))
case("x[list]", lambda m, x: x[[0, -1, 0]], lambda x: x[[0, -1, 0]], unary(min_dims=1, min_side=1))
case("x[mask]", lambda m, x, mask: x[mask], lambda x, mask: x[mask], masked)
case("x[x > 0]", lambda m, x: x[x > 0], lambda x: x[x > 0], unary())
case("gather(-1)", lambda m, x, i: m.gather(x, -1, i), _gather, gather_args, ints=True,
     index_args=(1,))
case("scatter_add(-1)", lambda m, x, i, s: m.scatter_add(x, -1, i, s), _scatter_add,
     scatter_args, ints=True, index_args=(1,))
case("index_select(0)", lambda m, x, i: m.index_select(x, 0, i % max(x.shape[0], 1)),
     lambda x, i: np.take(x, i % max(x.shape[0], 1), 0), index_select_args(False), ints=True,
     index_args=(1,))
case("index_add(0, alpha)", lambda m, x, i, s: m.index_add(x, 0, i % max(x.shape[0], 1), s, alpha=2),
     lambda x, i, s: _index_add(x, i % max(x.shape[0], 1), 2 * s), index_select_args(True),
     index_args=(1,))
case("index_add(0)", lambda m, x, i, s: x.index_add(0, i % max(x.shape[0], 1), s),
     lambda x, i, s: _index_add(x, i % max(x.shape[0], 1), s), index_select_args(True), ints=True,
     index_args=(1,))

# layers built from the ops above (nn/_windows.py)
case("conv_transpose2d(stride 2, output_padding, groups)",
     lambda m, x, w, b: m.nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                         output_padding=1, groups=2),
     lambda x, w, b: _conv_transpose2d(x, w, b, (2, 2), (1, 1), (1, 1), 2, (1, 1)),
     fixed_shapes((2, 4, 3, 3), (4, 3, 2, 2), (6,)))
case("conv_transpose2d(dilation, crop)",  # width: padding 2 > dilation * (kernel - 1)
     lambda m, x, w, b: m.nn.functional.conv_transpose2d(x, w, b, stride=(1, 2), padding=(1, 2),
                                                         output_padding=(0, 1), dilation=(2, 1)),
     lambda x, w, b: _conv_transpose2d(x, w, b, (1, 2), (1, 2), (0, 1), 1, (2, 1)),
     fixed_shapes((1, 2, 3, 4), (2, 3, 3, 2), (3,)))
case("max_pool2d(return_indices)",
     lambda m, x: tuple(m.nn.functional.max_pool2d(x, 3, 2, 1, return_indices=True)),
     lambda x: _max_pool2d_indices(x, 3, 2, 1), fixed_shapes((2, 3, 7, 6)))
case("max_unpool2d",
     lambda m, x: m.nn.functional.max_unpool2d(*m.nn.functional.max_pool2d(x, 2, return_indices=True),
                                               2, output_size=x.shape[-2:]),
     _max_unpool2d, fixed_shapes((2, 2, 4, 6)))

# matmul family
case("matmul", lambda m, a, b: m.matmul(a, b), np.matmul, matmul_pair, ints=True)
case("a @ b", lambda m, a, b: a @ b, np.matmul, matmul_pair)
case("mm", lambda m, a, b: m.mm(a, b), np.matmul, fixed_shapes((3, 4), (4, 2)))
case("bmm", lambda m, a, b: m.bmm(a, b), np.matmul, fixed_shapes((2, 3, 4), (2, 4, 5)))
case("dot", lambda m, a, b: m.dot(a, b), np.dot, fixed_shapes((5,), (5,)))
case("outer", lambda m, a, b: m.outer(a, b), np.outer, fixed_shapes((3,), (4,)))

CASE_BY_NAME = {c.name: c for c in CASES}
assert len(CASE_BY_NAME) == len(CASES), "duplicate case names"
GRAD_CASES = [c for c in CASES if c.grad]
