"""How each pointwise primitive lowers to Triton source: one emitter per op name, in one table.

The Triton twin of codegen/llvm/scalar.py. Values are source snippets (`Val`), typed by
the kernel IR's dtype; in registers float16/bfloat16 are float32 (converted on load and
store), bool is int1, every other dtype is itself. An emitter takes (args, out dtype,
params) and returns an expression string. Semantics follow the eager numpy kernels: NaN
propagates through maximum/minimum, round is half to even, remainder and floor_divide use
Python's sign rules (Triton's `%` and `//` truncate, like C).

Functions Triton's core lacks (tanh, log1p, expm1, rint, pow) come from `libdevice`; the
interpreter cannot run libdevice, so launch.py swaps in numpy versions there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...runtime import dtypes
from ...runtime.dtypes import DType

_TL = {
    "bool": "tl.int1", "uint8": "tl.uint8", "int8": "tl.int8", "int16": "tl.int16",
    "int32": "tl.int32", "int64": "tl.int64", "float16": "tl.float16", "bfloat16": "tl.bfloat16",
    "float32": "tl.float32", "float64": "tl.float64",
}
# pointer element types for triton.compile signatures, as the launcher types numpy-named
# dtypes (triton.runtime.jit.mangle_type: bool is "u1")
SIGNATURE = {
    "bool": "u1", "uint8": "u8", "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64",
}
_INT_RANGE = {"bool": (0, 1), "uint8": (0, 255), "int8": (-(2 ** 7), 2 ** 7 - 1),
              "int16": (-(2 ** 15), 2 ** 15 - 1), "int32": (-(2 ** 31), 2 ** 31 - 1),
              "int64": (-(2 ** 63), 2 ** 63 - 1)}


@dataclass(frozen=True)
class Val:
    """A value in generated source: its code, kernel-IR dtype, and the tile axes it varies
    along ("x"/"r" in row kernels, "m"/"n"/"k" in matmuls). `literal`: a bare Python
    number, which Triton types weakly (it takes the other operand's type)."""

    code: str
    dtype: DType
    axes: frozenset = frozenset()
    literal: bool = False


def is_float(dtype: DType) -> bool:
    return dtype.category == dtypes.FLOAT


def register_type(dtype: DType) -> str:
    """The tl type a value of this dtype has in registers."""
    if dtype in dtypes.STORAGE_ONLY:
        return "tl.float32"
    return _TL[dtype.name]


def storage_type(dtype: DType) -> str:
    return _TL[dtype.name]


def narrow(code: str, dtype: DType) -> str:
    """A float32 register value converted to float16/bfloat16 (round to nearest even)."""
    return f"{code}.to({storage_type(dtype)})"


def int_range(dtype: DType) -> tuple[int, int]:
    return _INT_RANGE[dtype.name]


def float_literal(value: float) -> str:
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else 'float("-inf")'
    return repr(float(value))


def constant(value, dtype: DType) -> Val:
    """A constant. float32-in-registers values and int32-range integers are bare literals
    (Triton gives them the other operand's type); others are typed scalars."""
    if dtype is dtypes.bool_:
        return Val("True" if value else "False", dtype, literal=True)
    if is_float(dtype):
        lit = float_literal(float(value))
        if register_type(dtype) == "tl.float32":
            return Val(lit, dtype, literal=True)
        return Val(f"tl.full([], {lit}, {register_type(dtype)})", dtype)
    value = int(value)
    if dtype in (dtypes.int32, dtypes.int64) and -(2 ** 31) <= value < 2 ** 31:
        return Val(str(value), dtype, literal=True)
    return Val(f"tl.full([], {value}, {register_type(dtype)})", dtype)


def as_tensor(v: Val) -> Val:
    """A literal as a typed scalar tensor (so `.to()`, `tl.where` and stores see its dtype)."""
    if not v.literal:
        return v
    return Val(f"tl.full([], {v.code}, {register_type(v.dtype)})", v.dtype, v.axes)


def cast(v: Val, dst: DType) -> str:
    """Convert a register value between dtypes; returns code."""
    src = v.dtype
    if src is dst:
        return v.code
    if dst is dtypes.bool_:
        return f"({v.code} != 0)"
    v = as_tensor(v)
    if is_float(src) and is_float(dst) and dst in dtypes.STORAGE_ONLY:
        # round to the narrow type, keep float32 in registers (as eager's astype does)
        return f"{narrow(v.code, dst)}.to(tl.float32)"
    if register_type(src) == register_type(dst):
        return v.code
    return f"{v.code}.to({register_type(dst)})"


# ---------------------------------------------------------------- emitters
def _binary(op):
    return lambda a, out, p: f"({a[0].code} {op} {a[1].code})"


def _call(fn):
    return lambda a, out, p: f"{fn}({', '.join(x.code for x in a)})"


def _sqrt(a, out, p):
    # tl.sqrt_rn (IEEE rounding) takes float32 only; tl.sqrt on float64 is sqrt.rn.f64
    fn = "tl.sqrt" if a[0].dtype is dtypes.float64 else "tl.sqrt_rn"
    return f"{fn}({a[0].code})"


def _div(a, out, p):
    x, y = a
    if is_float(x.dtype):
        return f"({x.code} / {y.code})"
    return _trunc_div(a, out, p)  # as the LLVM backend: C division for integers


def _trunc_div(a, out, p):
    return f"({a[0].code} // {a[1].code})"


def _relu(a, out, p):
    x = a[0]
    zero = "0.0" if is_float(x.dtype) else "0"
    return f"tl.where({x.code} < {zero}, {zero}, {x.code})"  # NaN is not < 0: stays NaN


def _abs(a, out, p):
    x = a[0]
    if not is_float(x.dtype) and not x.dtype.is_signed:
        return x.code
    return f"tl.abs({x.code})"


def _sign(a, out, p):
    x = a[0]
    if is_float(x.dtype):
        return (f"tl.where({x.code} != {x.code}, {x.code}, "
                f"tl.where({x.code} > 0, 1.0, tl.where({x.code} < 0, -1.0, 0.0)))")
    t = register_type(x.dtype)
    return f"(({x.code} > 0).to({t}) - ({x.code} < 0).to({t}))"


def _minmax(fn):
    def emit(a, out, p):
        x, y = a
        if is_float(x.dtype):
            return f"tl.{fn}({x.code}, {y.code}, propagate_nan=tl.PropagateNan.ALL)"
        return f"tl.{fn}({x.code}, {y.code})"

    return emit


def _python_sign_fix(r: str, y: str) -> str:
    """Is the C remainder r nonzero with a sign different from the divisor y?"""
    return f"(({r} != 0) & (({r} < 0) != ({y} < 0)))"


def _floor_divide(a, out, p):
    x, y = a
    if is_float(x.dtype):
        return f"tl.floor({x.code} / {y.code})"
    t = register_type(x.dtype)
    fix = _python_sign_fix(f"({x.code} % {y.code})", y.code)
    return f"(({x.code} // {y.code}) - {fix}.to({t}))"


def _remainder(a, out, p):
    x, y = a
    r = f"({x.code} % {y.code})"
    return f"tl.where({_python_sign_fix(r, y.code)}, {r} + {y.code}, {r})"


def _pow(a, out, p):
    if not is_float(a[0].dtype):
        raise NotImplementedError("integer pow is not lowered to Triton yet")
    return f"libdevice.pow({a[0].code}, {a[1].code})"


def _bool(v: Val) -> str:
    return v.code if v.dtype is dtypes.bool_ else f"({v.code} != 0)"


def _logical(op):
    return lambda a, out, p: f"({_bool(a[0])} {op} {_bool(a[1])})"


def _shift(left):
    """PyTorch's shifts: an amount < 0 or >= the width gives 0 (left) or the sign fill (right)."""

    def emit(a, out, p):
        x, y = a
        bits = x.dtype.itemsize * 8
        inside = f"(({y.code} >= 0) & ({y.code} < {bits}))"
        if left:
            return f"tl.where({inside}, {x.code} << {y.code}, 0)"
        fill = f"({x.code} >> {bits - 1})" if x.dtype.is_signed else "0"
        return f"tl.where({inside}, {x.code} >> {y.code}, {fill})"

    return emit


def _cast(a, out, p):
    return cast(a[0], out)


def _sigmoid(a, out, p):
    return f"tl.sigmoid({a[0].code})"


EMITTERS = {
    "add": _binary("+"), "sub": _binary("-"), "mul": _binary("*"), "div": _div,
    "neg": lambda a, out, p: f"(-{a[0].code})", "abs": _abs, "relu": _relu, "sign": _sign,
    "exp": _call("tl.exp"), "log": _call("tl.log"), "tanh": _call("libdevice.tanh"),
    "erf": _call("tl.erf"), "log1p": _call("libdevice.log1p"), "expm1": _call("libdevice.expm1"),
    "sin": _call("tl.sin"), "cos": _call("tl.cos"),
    "sqrt": _sqrt, "rsqrt": _call("tl.rsqrt"), "sigmoid": _sigmoid,
    "floor": _call("tl.floor"), "ceil": _call("tl.ceil"),
    "round": _call("libdevice.rint"),  # half to even, as numpy
    "maximum": _minmax("maximum"), "minimum": _minmax("minimum"),
    "pow": _pow, "floor_divide": _floor_divide, "remainder": _remainder,
    "eq": _binary("=="), "ne": _binary("!="),  # != is unordered in Triton: NaN != NaN
    "lt": _binary("<"), "le": _binary("<="), "gt": _binary(">"), "ge": _binary(">="),
    "logical_and": _logical("&"), "logical_or": _logical("|"), "logical_xor": _logical("^"),
    "logical_not": lambda a, out, p: f"({a[0].code} == 0)",
    "bitwise_and": _binary("&"), "bitwise_or": _binary("|"), "bitwise_xor": _binary("^"),
    "bitwise_not": lambda a, out, p: f"(~{a[0].code})",
    "bitwise_left_shift": _shift(True), "bitwise_right_shift": _shift(False),
    "isnan": lambda a, out, p: f"({a[0].code} != {a[0].code})",
    "where": lambda a, out, p: f"tl.where({_bool(a[0])}, {a[1].code}, {a[2].code})",
    "cast": _cast, "copy": lambda a, out, p: a[0].code,
}

# combine op -> identity for masked-out lanes (by register type)
def reduce_identity(combine: str, dtype: DType) -> Val:
    if combine == "add":
        return constant(0, dtype)
    if combine == "mul":
        return constant(1, dtype)
    if is_float(dtype):
        return constant(-math.inf if combine in ("maximum", "argmax") else math.inf, dtype)
    lo, hi = int_range(dtype)
    return constant(lo if combine in ("maximum", "argmax") else hi, dtype)
