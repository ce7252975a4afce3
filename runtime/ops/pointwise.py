"""Pointwise primitives: unary math, binary arithmetic, comparisons, where, cast.

Binary ops broadcast; their operands must already share a dtype (the front end applies
PyTorch's promotion by inserting casts), so every kernel computes in one dtype.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..errors import InvalidArgumentError
from ..registry import Primitive, TensorType, ops, register
from ..shapes import broadcast_shapes
from ._common import require_float, require_integer, require_same_dtype, scalar, sum_to, zeros

try:  # numpy has no erf; scipy is optional, the fallback is vectorised math.erf
    from scipy.special import erf as _np_erf
except ImportError:  # pragma: no cover - depends on the environment
    _np_erf = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x):
    return np.asarray(_np_erf(x)).astype(x.dtype, copy=False)


def _where0(mask, g):
    return ops.where(mask, g, scalar(0, g.dtype))


# ---------------------------------------------------------------- unary
# name: (numpy kernel, float-only?, vjp(ctx, g) -> grad of x). _UNARY_SAVES: what the rule reads.
_UNARY = {
    "neg": (np.negative, False, lambda c, g: -g),
    "abs": (np.abs, False, lambda c, g: g * ops.sign(c.inputs[0])),
    "exp": (np.exp, True, lambda c, g: g * c.out),
    "log": (np.log, True, lambda c, g: g / c.inputs[0]),
    "log1p": (np.log1p, True, lambda c, g: g / (c.inputs[0] + 1)),
    "expm1": (np.expm1, True, lambda c, g: g * (c.out + 1)),
    "sqrt": (np.sqrt, True, lambda c, g: g / (c.out * 2)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), True, lambda c, g: g * c.out * c.out * c.out * -0.5),
    "sin": (np.sin, True, lambda c, g: g * ops.cos(c.inputs[0])),
    "cos": (np.cos, True, lambda c, g: -(g * ops.sin(c.inputs[0]))),
    "tanh": (np.tanh, True, lambda c, g: g * (1 - c.out * c.out)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), True, lambda c, g: g * c.out * (1 - c.out)),
    "erf": (_erf, True,
            lambda c, g: g * ops.exp(-(c.inputs[0] * c.inputs[0])) * (2 / math.sqrt(math.pi))),
    "relu": (lambda x: np.maximum(x, 0).astype(x.dtype, copy=False), False,
             lambda c, g: _where0(c.out > 0, g)),
    "sign": (np.sign, False, lambda c, g: zeros(c.inputs[0].shape, g.dtype)),
    "floor": (np.floor, True, lambda c, g: zeros(c.inputs[0].shape, g.dtype)),
    "ceil": (np.ceil, True, lambda c, g: zeros(c.inputs[0].shape, g.dtype)),
    "round": (np.round, True, lambda c, g: zeros(c.inputs[0].shape, g.dtype)),
}


_UNARY_SAVES = {"neg": (), "exp": ("out",), "expm1": ("out",), "sqrt": ("out",), "rsqrt": ("out",),
                "tanh": ("out",), "sigmoid": ("out",), "relu": ("out",), "sign": (), "floor": (),
                "ceil": (), "round": ()}  # the others read their input


def _unary_meta(name, float_only):
    def meta(x: TensorType) -> TensorType:
        if float_only:
            require_float(name, x)
        return x

    return meta


def _vjp_unary(rule):
    return lambda c, g: (rule(c, g),)


for _name, (_fn, _float_only, _rule) in _UNARY.items():
    register(Primitive(_name, "pointwise", _unary_meta(_name, _float_only), _fn, _vjp_unary(_rule),
                       saves=_UNARY_SAVES.get(_name, (0,))))

register(Primitive("logical_not", "pointwise", lambda x: TensorType(x.shape, dtypes.bool_),
                   lambda x: np.logical_not(x)))
register(Primitive("isnan", "pointwise", lambda x: TensorType(x.shape, dtypes.bool_), np.isnan))


def _copy_kernel(x):
    return np.array(x, copy=True, order="C")  # contiguous() relies on a C-ordered copy


register(Primitive("copy", "pointwise", lambda x: x, _copy_kernel, lambda c, g: (g,), saves=(),
                   doc="a fresh buffer with x's values (clone/contiguous)"))


# ---------------------------------------------------------------- binary
def _binary_meta(name, out_dtype=None):
    def meta(a: TensorType, b: TensorType) -> TensorType:
        require_same_dtype(name, a, b)
        return TensorType(broadcast_shapes(name, a.shape, b.shape), out_dtype or a.dtype)

    return meta


def _tie_split(x, y, g):
    """d max(x, y)/dx: all of g where x wins, half of it on ties (as PyTorch)."""
    return ops.where(x > y, g, ops.where(x == y, g * 0.5, scalar(0, g.dtype)))


def _pow_vjp(c, g):
    x, y = c.inputs
    gx = gy = None
    if c.needs[0]:  # x ** 0 is constant: gradient 0 even at x == 0 (where x ** -1 is inf)
        gx = sum_to(_where0(ops.ne(y, scalar(0, y.dtype)), g * y * ops.pow(x, y - 1)), x.shape)
    if c.needs[1]:
        safe_log = ops.log(ops.where(x > 0, x, scalar(1, x.dtype)))  # 0 ** y has no log-grad
        gy = sum_to(g * c.out * safe_log, y.shape)
    return gx, gy


def _div_int_safe(fn):
    def kernel(a, b):
        if a.dtype.kind in "iub" and not np.all(b):  # numpy would quietly answer 0
            raise InvalidArgumentError(f"{fn.__name__}: integer division by zero")
        return fn(a, b)  # (float x/0 is inf/nan quietly: eager.run turns numpy's warnings off)

    return kernel


_BINARY = {
    "add": (np.add, lambda c, g: (sum_to(g, c.inputs[0].shape), sum_to(g, c.inputs[1].shape))),
    "sub": (np.subtract, lambda c, g: (sum_to(g, c.inputs[0].shape), sum_to(-g, c.inputs[1].shape))),
    "mul": (np.multiply, lambda c, g: (sum_to(g * c.inputs[1], c.inputs[0].shape) if c.needs[0] else None,
                                       sum_to(g * c.inputs[0], c.inputs[1].shape) if c.needs[1] else None)),
    "div": (_div_int_safe(np.divide),
            lambda c, g: (sum_to(g / c.inputs[1], c.inputs[0].shape) if c.needs[0] else None,
                          sum_to(-(g * c.out) / c.inputs[1], c.inputs[1].shape) if c.needs[1] else None)),
    "pow": (np.power, _pow_vjp),
    "maximum": (np.maximum, lambda c, g: (sum_to(_tie_split(*c.inputs, g), c.inputs[0].shape),
                                          sum_to(_tie_split(c.inputs[1], c.inputs[0], g), c.inputs[1].shape))),
    "minimum": (np.minimum, lambda c, g: (sum_to(_tie_split(c.inputs[1], c.inputs[0], g), c.inputs[0].shape),
                                          sum_to(_tie_split(*c.inputs, g), c.inputs[1].shape))),
    # remainder / floor_divide follow Python's sign rules, as PyTorch does
    "remainder": (_div_int_safe(np.remainder),
                  lambda c, g: (sum_to(g, c.inputs[0].shape),
                                sum_to(-g * ops.floor(c.inputs[0] / c.inputs[1]), c.inputs[1].shape))),
    "floor_divide": (_div_int_safe(np.floor_divide), None),
}

_BINARY_SAVES = {"add": (), "sub": (), "div": (1, "out"), "pow": (0, 1, "out")}  # others: (0, 1)
for _name, (_fn, _rule) in _BINARY.items():
    register(Primitive(_name, "pointwise", _binary_meta(_name), _fn, _rule,
                       saves=_BINARY_SAVES.get(_name, (0, 1))))

_COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
            "gt": np.greater, "ge": np.greater_equal, "logical_and": np.logical_and,
            "logical_or": np.logical_or, "logical_xor": np.logical_xor}
for _name, _fn in _COMPARE.items():
    register(Primitive(_name, "pointwise", _binary_meta(_name, dtypes.bool_), _fn))



# ---------------------------------------------------------------- bitwise (integer / bool)
def _shift_kernel(left):
    """PyTorch's shifts: a shift by a negative amount or by the width or more gives 0 (left)
    or the sign fill (right), where C (and numpy) leave it undefined."""

    def kernel(a, b):
        bits = a.dtype.itemsize * 8
        outside = (b < 0) | (b >= bits)
        amount = np.where(outside, 0, b).astype(a.dtype, copy=False)
        if left:
            out, fill = np.left_shift(a, amount), 0
        else:
            out = np.right_shift(a, amount)
            fill = np.right_shift(a, bits - 1) if a.dtype.kind == "i" else 0
        return np.where(outside, fill, out).astype(a.dtype, copy=False)

    return kernel


def _bitwise_meta(name, allow_bool):
    def meta(a: TensorType, b: TensorType) -> TensorType:
        require_integer(name, a, b, allow_bool=allow_bool)
        return _binary_meta(name)(a, b)

    return meta


def _bitwise_not_meta(x: TensorType) -> TensorType:
    require_integer("bitwise_not", x)
    return x


# name: (numpy kernel, also defined on bool?)
_BITWISE = {"bitwise_and": (np.bitwise_and, True), "bitwise_or": (np.bitwise_or, True),
            "bitwise_xor": (np.bitwise_xor, True),
            "bitwise_left_shift": (_shift_kernel(True), False),
            "bitwise_right_shift": (_shift_kernel(False), False)}
for _name, (_fn, _bool) in _BITWISE.items():
    register(Primitive(_name, "pointwise", _bitwise_meta(_name, _bool), _fn))
register(Primitive("bitwise_not", "pointwise", _bitwise_not_meta, np.invert))


# ---------------------------------------------------------------- where, cast
def _where_meta(cond: TensorType, a: TensorType, b: TensorType) -> TensorType:
    if cond.dtype is not dtypes.bool_:
        from ..errors import DTypeError
        raise DTypeError(f"where: condition must be bool, got {cond.dtype}")
    require_same_dtype("where", a, b)
    return TensorType(broadcast_shapes("where", cond.shape, a.shape, b.shape), a.dtype)


def _where_vjp(c, g):
    cond, a, b = c.inputs
    return (None,
            sum_to(_where0(cond, g), a.shape) if c.needs[1] else None,
            sum_to(ops.where(cond, scalar(0, g.dtype), g), b.shape) if c.needs[2] else None)


register(Primitive("where", "pointwise", _where_meta, np.where, _where_vjp, saves=(0,)))


def _cast_kernel(x, dtype):
    return x.astype(dtype.np, copy=False)


def _cast_vjp(c, g):
    x = c.inputs[0]
    return (ops.cast(g, dtype=x.dtype) if x.dtype.is_floating_point else None,)


register(Primitive("cast", "pointwise", lambda x, dtype: TensorType(x.shape, dtype),
                   _cast_kernel, _cast_vjp, saves=()))
