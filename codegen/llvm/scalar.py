"""How each pointwise primitive lowers to LLVM IR: one emitter per op name, in one table.

Values travel in registers as: floats (f16/bf16 widened to float), integers of their own
width, bool as i1. Every emitter takes (builder, ctx, args, dtypes, out dtype, params) and
returns one LLVM value. Semantics follow the eager numpy kernels (NaN propagation of
maximum/minimum, round half to even, Python's sign rules for remainder/floor_divide).
"""

from __future__ import annotations

import math

from llvmlite import ir

from ...runtime import dtypes

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()


def register_type(dtype) -> ir.Type:
    """The LLVM type a value of this dtype has in registers."""
    if dtype is dtypes.bool_:
        return I1
    if dtype.category == dtypes.INT:
        return ir.IntType(dtype.itemsize * 8)
    if dtype is dtypes.float64:
        return F64
    return F32  # float32, and float16/bfloat16 computed in float32


def memory_type(dtype) -> ir.Type:
    if dtype is dtypes.bool_:
        return I8
    if dtype in (dtypes.float16, dtypes.bfloat16):
        return I16
    return register_type(dtype)


def constant(dtype, value) -> ir.Constant:
    t = register_type(dtype)
    if isinstance(t, ir.IntType):
        return ir.Constant(t, int(value))
    return ir.Constant(t, float(value))


def is_float(dtype) -> bool:
    return dtype.category == dtypes.FLOAT


class Intrinsics:
    """Declares LLVM intrinsics and libm functions in a module on first use."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.cache: dict[tuple, ir.Function] = {}

    def call(self, b: ir.IRBuilder, name: str, args, ty):
        key = (name, str(ty))
        fn = self.cache.get(key)
        if fn is None:
            if name.startswith("llvm."):
                full = f"{name}.{'f32' if ty == F32 else 'f64'}"
            else:  # libm: tanhf / tanh
                full = name + ("f" if ty == F32 else "")
            fn = self.module.globals.get(full)
            if fn is None:
                fn = ir.Function(self.module, ir.FunctionType(ty, [ty] * len(args)), full)
            self.cache[key] = fn
        return b.call(fn, args)


# ---------------------------------------------------------------- emitters
def _arith(float_op, int_op, uint_op=None):
    def emit(b, ctx, args, in_dtypes, out, params):
        x, y = args
        if is_float(in_dtypes[0]):
            return getattr(b, float_op)(x, y)
        if uint_op and not in_dtypes[0].is_signed:
            return getattr(b, uint_op)(x, y)
        return getattr(b, int_op)(x, y)

    return emit


def _intrinsic(name):
    def emit(b, ctx, args, in_dtypes, out, params):
        return ctx.intrinsics.call(b, name, args, args[0].type)

    return emit


def _neg(b, ctx, args, in_dtypes, out, params):
    return b.fneg(args[0]) if is_float(in_dtypes[0]) else b.neg(args[0])


def _abs(b, ctx, args, in_dtypes, out, params):
    x = args[0]
    if is_float(in_dtypes[0]):
        return ctx.intrinsics.call(b, "llvm.fabs", [x], x.type)
    if not in_dtypes[0].is_signed:
        return x
    return b.select(b.icmp_signed("<", x, ir.Constant(x.type, 0)), b.neg(x), x)


def _relu(b, ctx, args, in_dtypes, out, params):
    x = args[0]
    zero = ir.Constant(x.type, 0.0 if is_float(in_dtypes[0]) else 0)
    neg = b.fcmp_ordered("<", x, zero) if is_float(in_dtypes[0]) else b.icmp_signed("<", x, zero)
    return b.select(neg, zero, x)  # NaN is not < 0: it stays NaN, as np.maximum(nan, 0)


def _sigmoid(b, ctx, args, in_dtypes, out, params):
    x = args[0]
    fast = ctx.mathlib("sigmoid", x.type) if ctx.mathlib else None
    if fast is not None:
        return b.call(fast, args)
    one = ir.Constant(x.type, 1.0)
    e = ctx.intrinsics.call(b, "llvm.exp", [b.fneg(x)], x.type)
    return b.fdiv(one, b.fadd(one, e))


def _rsqrt(b, ctx, args, in_dtypes, out, params):
    x = args[0]
    return b.fdiv(ir.Constant(x.type, 1.0), ctx.intrinsics.call(b, "llvm.sqrt", [x], x.type))


def _sign(b, ctx, args, in_dtypes, out, params):
    x = args[0]
    if is_float(in_dtypes[0]):
        zero, one = ir.Constant(x.type, 0.0), ir.Constant(x.type, 1.0)
        pos = b.select(b.fcmp_ordered(">", x, zero), one, zero)
        val = b.select(b.fcmp_ordered("<", x, zero), ir.Constant(x.type, -1.0), pos)
        return b.select(b.fcmp_unordered("uno", x, x), x, val)  # sign(nan) = nan
    zero = ir.Constant(x.type, 0)
    if not in_dtypes[0].is_signed:
        return b.zext(b.icmp_unsigned(">", x, zero), x.type)
    return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type), b.zext(b.icmp_signed("<", x, zero), x.type))


def _minmax(name, int_pred):
    def emit(b, ctx, args, in_dtypes, out, params):
        x, y = args
        if is_float(in_dtypes[0]):
            return ctx.intrinsics.call(b, name, [x, y], x.type)  # NaN-propagating, as numpy
        cmp = b.icmp_signed if in_dtypes[0].is_signed else b.icmp_unsigned
        return b.select(cmp(int_pred, x, y), x, y)

    return emit


def _pow(b, ctx, args, in_dtypes, out, params):
    x, y = args
    if is_float(in_dtypes[0]):
        return ctx.intrinsics.call(b, "llvm.pow", [x, y], x.type)
    raise NotImplementedError("integer pow is not lowered to LLVM yet")


def _floor_divide(b, ctx, args, in_dtypes, out, params):
    x, y = args
    if is_float(in_dtypes[0]):
        return ctx.intrinsics.call(b, "llvm.floor", [b.fdiv(x, y)], x.type)
    q, r = b.sdiv(x, y), b.srem(x, y)
    zero = ir.Constant(x.type, 0)
    adjust = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero)))
    return b.sub(q, b.zext(adjust, x.type))


def _remainder(b, ctx, args, in_dtypes, out, params):
    """Python's sign rule: the result has the sign of the divisor."""
    x, y = args
    if is_float(in_dtypes[0]):
        r = b.frem(x, y)
        zero = ir.Constant(x.type, 0.0)
        fix = b.and_(b.fcmp_ordered("!=", r, zero), b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero)))
        return b.select(fix, b.fadd(r, y), r)
    r = b.srem(x, y)
    zero = ir.Constant(x.type, 0)
    fix = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero)))
    return b.select(fix, b.add(r, y), r)


_FLOAT_PRED = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _compare(name):
    pred = _FLOAT_PRED[name]

    def emit(b, ctx, args, in_dtypes, out, params):
        x, y = args
        if is_float(in_dtypes[0]):
            # ne is unordered: NaN != NaN is true, as in numpy
            return b.fcmp_unordered(pred, x, y) if name == "ne" else b.fcmp_ordered(pred, x, y)
        if in_dtypes[0] is dtypes.bool_ or not in_dtypes[0].is_signed:
            return b.icmp_unsigned(pred, x, y)
        return b.icmp_signed(pred, x, y)

    return emit


def _where(b, ctx, args, in_dtypes, out, params):
    return b.select(*args)


def cast_value(b, x, src, dst):
    """Convert a register value between dtypes (register representations)."""
    s_t, d_t = register_type(src), register_type(dst)
    if dst is dtypes.bool_:
        if is_float(src):
            return b.fcmp_unordered("!=", x, ir.Constant(s_t, 0.0))
        return x if src is dtypes.bool_ else b.icmp_unsigned("!=", x, ir.Constant(s_t, 0))
    if is_float(dst):
        if is_float(src):
            if s_t == d_t:
                return x
            return b.fpext(x, d_t) if d_t == F64 else b.fptrunc(x, d_t)
        if src is dtypes.bool_ or not src.is_signed:
            return b.uitofp(x, d_t)
        return b.sitofp(x, d_t)
    # integer destination
    if is_float(src):
        return b.fptosi(x, d_t) if dst.is_signed else b.fptoui(x, d_t)
    if s_t.width == d_t.width:
        return x
    if s_t.width > d_t.width:
        return b.trunc(x, d_t)
    return b.zext(x, d_t) if src is dtypes.bool_ or not src.is_signed else b.sext(x, d_t)


def _cast(b, ctx, args, in_dtypes, out, params):
    return cast_value(b, args[0], in_dtypes[0], out)


def _logical(op):
    def emit(b, ctx, args, in_dtypes, out, params):
        return getattr(b, op)(*args)

    return emit


def _shift(left):
    """PyTorch's shifts: an amount < 0 or >= the width gives 0 (left) or the sign fill (right);
    LLVM's shl/ashr/lshr would give poison there."""

    def emit(b, ctx, args, in_dtypes, out, params):
        x, y = args
        width = ir.Constant(x.type, x.type.width)
        inside = b.icmp_unsigned("<", y, width)  # unsigned: negative amounts are huge
        if left:
            return b.select(inside, b.shl(x, y), ir.Constant(x.type, 0))
        if in_dtypes[0].is_signed:
            return b.select(inside, b.ashr(x, y), b.ashr(x, ir.Constant(x.type, x.type.width - 1)))
        return b.select(inside, b.lshr(x, y), ir.Constant(x.type, 0))

    return emit


def _math(name):
    """A math function: from the vectorisable mathlib when it has one, else an intrinsic/libm."""

    def emit(b, ctx, args, in_dtypes, out, params):
        fast = ctx.mathlib(name, args[0].type) if ctx.mathlib else None
        if fast is not None:
            return b.call(fast, args)
        fallback = {"exp": "llvm.exp", "log": "llvm.log", "sin": "llvm.sin", "cos": "llvm.cos"}
        return ctx.intrinsics.call(b, fallback.get(name, name), args, args[0].type)

    return emit


EMITTERS = {
    "add": _arith("fadd", "add"), "sub": _arith("fsub", "sub"), "mul": _arith("fmul", "mul"),
    "div": _arith("fdiv", "sdiv", "udiv"),
    "neg": _neg, "abs": _abs, "relu": _relu, "sign": _sign,
    "exp": _math("exp"), "log": _math("log"), "tanh": _math("tanh"), "erf": _math("erf"),
    "log1p": _math("log1p"), "expm1": _math("expm1"), "sin": _math("sin"), "cos": _math("cos"),
    "sqrt": _intrinsic("llvm.sqrt"), "rsqrt": _rsqrt, "sigmoid": _sigmoid,
    "floor": _intrinsic("llvm.floor"), "ceil": _intrinsic("llvm.ceil"),
    "round": _intrinsic("llvm.roundeven"),  # numpy rounds half to even
    "maximum": _minmax("llvm.maximum", ">"), "minimum": _minmax("llvm.minimum", "<"),
    "pow": _pow, "floor_divide": _floor_divide, "remainder": _remainder,
    "eq": _compare("eq"), "ne": _compare("ne"), "lt": _compare("lt"), "le": _compare("le"),
    "gt": _compare("gt"), "ge": _compare("ge"),
    "logical_and": _logical("and_"), "logical_or": _logical("or_"), "logical_xor": _logical("xor"),
    "logical_not": lambda b, ctx, args, d, out, p: b.not_(args[0]),
    "bitwise_and": _logical("and_"), "bitwise_or": _logical("or_"), "bitwise_xor": _logical("xor"),
    "bitwise_not": lambda b, ctx, args, d, out, p: b.not_(args[0]),
    "bitwise_left_shift": _shift(True), "bitwise_right_shift": _shift(False),
    "isnan": lambda b, ctx, args, d, out, p: b.fcmp_unordered("uno", args[0], args[0]),
    "where": _where, "cast": _cast, "copy": lambda b, ctx, args, d, out, p: args[0],
}

# identity values of reductions, by combine op
REDUCE_IDENTITY = {"add": 0, "mul": 1, "maximum": -math.inf, "minimum": math.inf}
