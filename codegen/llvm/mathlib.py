"""Vectorisable math functions emitted into a module as LLVM IR (no libm calls).

LLVM turns `llvm.exp`/`llvm.tanh` into one scalar libm call per lane, and this llvmlite
build has no vector math library (codegen-facts §3.4). So each function here is an
`internal alwaysinline` function built only from arithmetic, `llvm.fma`, `llvm.fabs`,
`llvm.copysign`, integer bit operations on the float's bits, compares and selects. After
inlining, the loop vectoriser widens it like any other arithmetic.

Usage (the `mathlib` hook that codegen/llvm/lower.py takes):

    ml = MathLib(module)
    fn = ml("exp", ir.FloatType())        # ir.Function, or None if not provided
    y = builder.call(fn, [x])

Accuracy: `ULP_BOUNDS[(name, bits)]` is the stated bound on the error, in units in the last
place of the correctly rounded result (0.5 would be correctly rounded), set above the
maximum measured over the whole float range, subnormal inputs and outputs included
(benchmarks/llvm_micro.py --ulp; numbers below and in docs/cpu-backend.md) and checked by
tests/test_llvm_mathlib.py on a smaller sweep.
Special values follow C/numpy: NaN in -> NaN out, exp(+inf)=inf, exp(-inf)=0, overflow to
inf, underflow through subnormals to 0, log(0)=-inf, log(<0)=nan, tanh(+-inf)=+-1,
signed zeros kept where C keeps them.

sin/cos (float32) reduce |x| exactly for every float32, huge ones included: the 24-bit
mantissa times the 96 bits of 2/pi that matter at its exponent (a constant table; Payne-
Hanek without loops) gives |x|*2/pi mod 4 as 64-bit fixed point; the polynomials run in
double, so the result is within 0.501 ulp.

Algorithms: exp/expm1 reduce x = n*ln2 + r (|r| <= ln2/2, Cody-Waite with fma) and scale
by 2^n in two steps (2^n itself may not be a normal float); exp folds the first step into
its last fma, 2^ceil(n/2) * (1 + q), so a normal result is rounded once; log/log1p use the fdlibm
formula log(1+f) = f - (f^2/2 - s*(f^2/2 + R(s^2))), s = f/(2+f), with the series
coefficients of 2*atanh; tanh = e/(e+2) with e = expm1(2|x|); sigmoid = {1 or e}/(1+e)
with e = exp(-|x|); erf = x*P(x^2) below 0.875 and 1 - exp(-x^2)*Q(1/(1+x)) above, with P
and Q fitted (near-minimax, Lawson's algorithm against mpmath; fit in
benchmarks/llvm_micro.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import factorial

from llvmlite import ir

F32, F64 = ir.FloatType(), ir.DoubleType()
I32, I64 = ir.IntType(32), ir.IntType(64)

# Stated bounds, in ulp, checked by tests/test_llvm_mathlib.py. Measured maxima behind them
# (docs/cpu-backend.md): float32 exp 1.036 over all 2^32 inputs; the others over every 17th
# bit pattern (253M inputs) -- expm1 1.333, log 0.826, log1p 0.841, tanh 1.498, sigmoid
# 2.402, erf 1.696, sin 0.500, cos 0.500; float64 over 6M random and range-focused bit
# patterns -- exp 0.985, expm1 1.796, log 0.780, log1p 0.772, tanh 2.596, sigmoid 2.177.
# (float32 exp was 0.973 with two more polynomial terms: 0.06 ulp for 1.3x on W1.)
ULP_BOUNDS = {
    ("exp", 32): 1.1, ("expm1", 32): 1.5, ("log", 32): 1.0, ("log1p", 32): 1.0,
    ("tanh", 32): 2.0, ("sigmoid", 32): 3.0, ("erf", 32): 2.0, ("sin", 32): 1.0, ("cos", 32): 1.0,
    ("exp", 64): 1.5, ("expm1", 64): 2.0, ("log", 64): 1.0, ("log1p", 64): 1.0,
    ("tanh", 64): 3.0, ("sigmoid", 64): 3.0,
}


@dataclass(frozen=True)
class _Type:
    """Per-precision constants."""

    ft: ir.Type
    it: ir.Type
    bits: int
    mant: int  # explicit mantissa bits
    bias: int
    suffix: str  # LLVM intrinsic suffix and our function name suffix
    exp_hi: float  # above: exp overflows (inputs are clamped here, then overflow naturally)
    exp_lo: float  # below: exp underflows to 0
    expm1_lo: float  # below: expm1 rounds to -1
    tanh_one: float  # above: tanh rounds to 1
    ln2_hi: float
    ln2_lo: float


T32 = _Type(F32, I32, 32, 23, 127, "f32", 89.0, -104.0, -18.0, 9.1,
            0.693359375, -2.12194440e-4)
T64 = _Type(F64, I64, 64, 52, 1023, "f64", 710.0, -746.0, -38.0, 19.1,
            6.93147180369123816490e-01, 1.90821492927058770002e-10)
_TYPES = {32: T32, 64: T64}

LOG2E = 1.4426950408889634
# exp(r) = 1 + r + r^2 * P(r), |r| <= ln2/2. float32: P of degree 4, near-minimax for the
# relative error of the whole (fit in benchmarks/llvm_micro.py --fit; 3.8e-9 = 0.06 ulp with
# float32 coefficients, so rounding decides). It replaced Taylor to degree 8 (two more fma):
# W1's two exps per element were its cost. float64: Taylor 1/k! to k=13.
_EXP_P = {32: [0.0013814594130963087, 0.0083687175065279, 0.04166838899254799,
               0.1666652113199234, 0.4999999403953552],
          64: [1 / factorial(k) for k in range(13, 1, -1)]}
# expm1(r) = r + r^2 * Q(r), Taylor 1/k!
_EXPM1_Q = {32: [1 / factorial(k) for k in range(9, 1, -1)],
            64: [1 / factorial(k) for k in range(14, 1, -1)]}
# log: R(z) = z*(2/3 + z*(2/5 + ...)), z = s^2 <= 0.0295
_LOG_R = {32: [2 / (2 * k + 1) for k in range(4, 0, -1)],
          64: [2 / (2 * k + 1) for k in range(10, 0, -1)]}
# erf, float32: erf(a) = a * (1 + P(a^2)) on [0, 0.875], rel. error of the fit 8.5e-9
_ERF_P = [-0.0006203537341207266, 0.005032240878790617, -0.026791509240865707,
          0.11282456666231155, -0.3761255145072937, 1.1283791065216064 - 1.0]  # erf(a) = a + a*P
# erfc(a) = exp(-a^2) * Q(1/(1+a)) on [0.875, 4], rel. error of the fit 6.6e-10
_ERFC_Q = [0.9589720964431763, -3.2897448539733887, 4.551846981048584, -2.8313651084899902,
           0.2987280488014221, 0.18159693479537964, 0.5749548673629761, 0.563541829586029,
           1.6534773749299347e-05]
_ERF_ONE = 3.95
# tanh, float32: tanh(a) = a + a^3 * P(a^2) on [0, 0.55], abs. error of the fit of P 1.3e-8
_TANH_P = [-0.006621656008064747, 0.021316342055797577, -0.0539107546210289, 0.13333122432231903,
           -0.3333333134651184]
_TANH_SMALL = 0.55  # above: erf rounds to 1 in float32
# sigmoid's fixed scale S: n + S stays a normal exponent for every clamped n in
# [exp_lo/ln2, 0] (float32: [-150, 0] -> [-86, 64]; float64: [-1077, 0] -> [-1013, 64])
_SIGMOID_SCALE = 64


# sin/cos, float32: reduced and evaluated in double, so one final rounding decides
_SIN_S = [-1 / factorial(11), 1 / factorial(9), -1 / factorial(7), 1 / factorial(5), -1 / factorial(3)]
_COS_C = [-1 / factorial(14), 1 / factorial(12), -1 / factorial(10), 1 / factorial(8),
          -1 / factorial(6), 1 / factorial(4), -1 / factorial(2)]
_PIO4 = 0.7853981633974483


def _two_over_pi_bits(nbits: int) -> int:
    """floor(2/pi * 2**nbits), exactly, with Machin's formula in integer arithmetic."""
    guard = nbits + 64
    one = 1 << guard

    def atan_inv(k):  # atan(1/k) * 2**guard
        total, term, n, sign = 0, one // k, 1, 1
        while term:
            total += sign * (term // n)
            term //= k * k
            n += 2
            sign = -sign
        return total

    pi = 16 * atan_inv(5) - 4 * atan_inv(239)
    return (2 << (guard + nbits)) // pi


def _reduction_table():
    """For biased exponents 126..255: the 96 bits of 2/pi starting at bit e - 152, as three
    32-bit words (hi, mid, lo). With them, |x| * 2/pi mod 4 is an exact 64-bit fixed-point
    product (Payne-Hanek without loops), for every float32."""
    bits = _two_over_pi_bits(300)
    hi, mid, lo = [], [], []
    for e in range(126, 256):
        j0 = e - 152
        w = (bits >> (300 - j0 - 96)) & ((1 << 96) - 1)
        hi.append(w >> 64)
        mid.append((w >> 32) & 0xFFFFFFFF)
        lo.append(w & 0xFFFFFFFF)
    return hi, mid, lo


class _Emitter:
    """IR-builder helpers over one float type (scalar; the vectoriser widens the loop)."""

    def __init__(self, lib: "MathLib", b: ir.IRBuilder, t: _Type):
        self.lib, self.b, self.t = lib, b, t

    def c(self, v: float) -> ir.Constant:
        return ir.Constant(self.t.ft, v)

    def ci(self, v: int) -> ir.Constant:
        return ir.Constant(self.t.it, v)

    def _intr(self, name, n):
        return self.lib.intrinsic(f"{name}.{self.t.suffix}", self.t.ft, n)

    def fma(self, a, x, y):
        return self.b.call(self._intr(self.lib.fma_name, 3), [a, x, y])

    def fabs(self, x):
        return self.b.call(self._intr("llvm.fabs", 1), [x])

    def copysign(self, mag, sign):
        return self.b.call(self._intr("llvm.copysign", 2), [mag, sign])

    def horner(self, x, coeffs):
        acc = self.c(coeffs[0])
        for k in coeffs[1:]:
            acc = self.fma(acc, x, self.c(k))
        return acc

    def estrin(self, x, coeffs):
        """The polynomial of `horner`, evaluated in pairs (c1*x + c0) + x^2*(...): half the
        dependent fma chain of Horner for log2(n) more squarings. Used for exp: in W1's loop
        (two exps per element) Estrin instead of Horner alone measured 1.13x."""
        c = [self.c(k) for k in reversed(coeffs)]  # lowest degree first
        p = x
        while True:
            c = [self.fma(c[i + 1], p, c[i]) if i + 1 < len(c) else c[i] for i in range(0, len(c), 2)]
            if len(c) == 1:
                return c[0]
            p = self.b.fmul(p, p)

    def lt(self, x, y):
        return self.b.fcmp_ordered("<", x, y)

    def gt(self, x, y):
        return self.b.fcmp_ordered(">", x, y)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def sel(self, cond, x, y):
        return self.b.select(cond, x, y)

    def to_bits(self, x):
        return self.b.bitcast(x, self.t.it)

    def to_bits_const(self, c: ir.Constant) -> int:
        fmt = ("<f", "<I") if self.t.bits == 32 else ("<d", "<Q")
        return struct.unpack(fmt[1], struct.pack(fmt[0], c.constant))[0]

    def from_bits(self, i):
        return self.b.bitcast(i, self.t.ft)

    def pow2(self, n):
        """2**n as a float for an integer n in the normal exponent range."""
        return self.from_bits(self.b.shl(self.b.add(n, self.ci(self.t.bias)), self.ci(self.t.mant)))

    def scale(self, y, n):
        """y * 2**n in two exact steps, so only the last multiply rounds (subnormals, overflow)."""
        n1 = self.b.ashr(n, self.ci(1))
        return self.b.fmul(self.b.fmul(y, self.pow2(n1)), self.pow2(self.b.sub(n, n1)))

    def split_scale(self, q, m):
        """For m = n + 2*bias: (2**ceil(n/2) * (1 + q) rounded once by an fma, m1 = floor(n/2) +
        bias). Both halves of 2**n are normal over exp's whole range."""
        m1 = self.b.ashr(m, self.ci(1))
        s1 = self.from_bits(self.b.shl(self.b.sub(m, m1), self.ci(self.t.mant)))
        return self.fma(q, s1, s1), m1

    def scale1p(self, q, m):
        """2**n * (1 + q), rounded once when the result is normal (the last multiply by a power of
        two is exact); subnormal results round once more there."""
        t, m1 = self.split_scale(q, m)
        return self.b.fmul(t, self.from_bits(self.b.shl(m1, self.ci(self.t.mant))))

    def reduce_ln2(self, x):
        """x = n*ln2 + r with n = rint(x/ln2): returns (n as int, r). Needs |x/ln2| < 2**(mant-1)."""
        shift = self.c(1.5 * 2.0 ** self.t.mant)  # adding it rounds to an integer kept in the low bits
        k = self.fma(x, self.c(LOG2E), shift)
        nf = self.b.fsub(k, shift)
        n = self.b.sub(self.to_bits(k), self.to_bits(shift))
        r = self.fma(nf, self.c(-self.t.ln2_hi), x)
        r = self.fma(nf, self.c(-self.t.ln2_lo), r)
        return n, r

    def clamp(self, x, lo, hi):
        """Clamp with selects; NaN stays NaN (bit tricks on NaN are harmless, checked at the end)."""
        x = self.sel(self.gt(x, self.c(hi)), self.c(hi), x)
        return self.sel(self.lt(x, self.c(lo)), self.c(lo), x)


class MathLib:
    """Defines tracecc's math functions in one module on first use; callable as the lowering hook."""

    NAMES = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos")
    ONLY_32 = ("erf", "sin", "cos")

    def __init__(self, module: ir.Module, use_fma: bool | None = None):
        self.module = module
        if use_fma is None:
            from .jit import host_target

            use_fma = host_target().has_fma
        # without hardware FMA, llvm.fma is a slow libm call; fmuladd then rounds twice
        self.fma_name = "llvm.fma" if use_fma else "llvm.fmuladd"
        self._defined: dict[tuple[str, int], ir.Function] = {}

    def __call__(self, name: str, ty: ir.Type) -> ir.Function | None:
        bits = 32 if ty == F32 else 64 if ty == F64 else None
        if bits is None or name not in self.NAMES or (name in self.ONLY_32 and bits == 64):
            return None
        return self.get(name, bits)

    def get(self, name: str, bits: int) -> ir.Function:
        key = (name, bits)
        fn = self._defined.get(key)
        if fn is None:
            t = _TYPES[bits]
            fn = ir.Function(self.module, ir.FunctionType(t.ft, [t.ft]), f"tracecc.{name}.{t.suffix}")
            fn.linkage = "internal"
            fn.attributes.add("alwaysinline")
            fn.attributes.add("nounwind")
            self._defined[key] = fn  # before the body: bodies call each other
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            b.ret(getattr(self, "_" + name)(_Emitter(self, b, t), fn.args[0]))
        return fn

    def intrinsic(self, full_name: str, ty: ir.Type, nargs: int) -> ir.Function:
        fn = self.module.globals.get(full_name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ty, [ty] * nargs), full_name)
        return fn

    def _call(self, e: _Emitter, name: str, x):
        return e.b.call(self.get(name, e.t.bits), [x])

    # ------------------------------------------------------------ functions
    def _exp(self, e: _Emitter, x):
        return self._exp_core(e, x, upper=True)

    def _exp_core(self, e: _Emitter, x, upper: bool):
        """exp(x); upper=False when the caller knows x <= 0 (no overflow clamp needed).
        NaN needs no select: the clamp's selects pass it and every later step propagates it."""
        return e.scale1p(*self._exp_parts(e, x, upper))

    def _exp_parts(self, e: _Emitter, x, upper: bool):
        """exp(x) = 2**n * (1 + q): returns (q, n + 2*bias)."""
        t = e.t
        if upper:
            x = e.sel(e.gt(x, e.c(t.exp_hi)), e.c(t.exp_hi), x)
        x = e.sel(e.lt(x, e.c(t.exp_lo)), e.c(t.exp_lo), x)
        shift = e.c(1.5 * 2.0 ** t.mant)  # adding it rounds x/ln2 to an integer in the low bits
        k = e.fma(x, e.c(LOG2E), shift)
        nf = e.b.fsub(k, shift)
        m = e.b.sub(e.to_bits(k), e.ci(e.to_bits_const(shift) - 2 * t.bias))  # n + 2*bias
        r = e.fma(nf, e.c(-t.ln2_hi), x)
        r = e.fma(nf, e.c(-t.ln2_lo), r)
        r2 = e.b.fmul(r, r)
        q = e.fma(e.estrin(r, _EXP_P[t.bits]), r2, r)  # exp(r) - 1
        return q, m

    def _expm1(self, e: _Emitter, x):
        t = e.t
        xc = e.clamp(x, t.expm1_lo, t.exp_hi)
        n, r = e.reduce_ln2(xc)
        p = e.fma(e.b.fmul(r, r), e.horner(r, _EXPM1_Q[t.bits]), r)  # expm1(r)
        # expm1(x) = 2^n * p + (2^n - 1), one rounding (fma) in each regime:
        #   n <= mant+1: 2^n - 1 is exact;  n <= bias-1: = 2^n * (p - 2^-n) + 2^n, where
        #   p - 2^-n loses nothing that matters;  above: 2^n * (1 + p), scaled in two steps.
        mid = e.b.icmp_signed(">", n, e.ci(t.mant + 1))
        big = e.b.icmp_signed(">", n, e.ci(t.bias - 1))
        s = e.pow2(e.sel(big, e.ci(0), n))
        cap = e.ci(2 * t.mant + 2)
        tiny = e.pow2(e.b.sub(e.ci(0), e.sel(e.b.icmp_signed(">", n, cap), cap, n)))
        q = e.sel(mid, e.b.fsub(p, tiny), p)
        y = e.fma(s, q, e.sel(mid, s, e.b.fsub(s, e.c(1.0))))
        y = e.sel(big, e.scale(e.b.fadd(e.c(1.0), p), n), y)
        y = e.sel(e.b.fcmp_ordered("==", x, e.c(0.0)), x, y)  # keep -0
        return e.sel(e.isnan(x), x, y)

    def _log_core(self, e: _Emitter, u, corr):
        """log(u) + corr for finite u > 0 (subnormals included); corr is a tiny correction."""
        t = e.t
        tiny = e.lt(u, e.c(2.0 ** (1 - t.bias)))
        extra = t.mant + 2
        us = e.sel(tiny, e.b.fmul(u, e.c(2.0 ** extra)), u)
        ebias = e.sel(tiny, e.ci(-extra), e.ci(0))
        # subtract the bits of ~sqrt(1/2) so the mantissa lands in [sqrt(1/2), sqrt(2))
        off = 0x3F3504F3 if t.bits == 32 else 0x3FE6A09E667F3BCD
        ix = e.b.sub(e.to_bits(us), e.ci(off))
        k = e.b.add(e.b.ashr(ix, e.ci(t.mant)), ebias)
        m = e.from_bits(e.b.add(e.b.and_(ix, e.ci((1 << t.mant) - 1)), e.ci(off)))
        f = e.b.fsub(m, e.c(1.0))
        dk = e.b.sitofp(k, t.ft)
        hfsq = e.b.fmul(e.c(0.5), e.b.fmul(f, f))
        s = e.b.fdiv(f, e.b.fadd(e.c(2.0), f))
        z = e.b.fmul(s, s)
        r = e.b.fmul(z, e.horner(z, _LOG_R[t.bits]))
        lo = e.fma(dk, e.c(t.ln2_lo), corr)
        inner = e.b.fsub(hfsq, e.fma(s, e.b.fadd(hfsq, r), lo))
        return e.fma(dk, e.c(t.ln2_hi), e.b.fsub(f, inner))

    def _log_specials(self, e: _Emitter, arg, y, zero_at):
        """NaN -> NaN, arg < zero_at -> NaN, arg == zero_at -> -inf, +inf -> +inf."""
        inf = e.c(float("inf"))
        y = e.sel(e.b.fcmp_ordered("==", arg, e.c(zero_at)), e.c(float("-inf")), y)
        y = e.sel(e.b.fcmp_ordered("==", arg, inf), inf, y)
        y = e.sel(e.lt(arg, e.c(zero_at)), e.c(float("nan")), y)
        return e.sel(e.isnan(arg), arg, y)

    def _log(self, e: _Emitter, x):
        return self._log_specials(e, x, self._log_core(e, x, e.c(0.0)), 0.0)

    def _log1p(self, e: _Emitter, x):
        t = e.t
        u = e.b.fadd(e.c(1.0), x)
        # (x - (u - 1)) is what rounding 1 + x lost; log(1+x) = log(u) + lost/u
        lost = e.b.fsub(x, e.b.fsub(u, e.c(1.0)))
        big = e.gt(x, e.c(2.0 ** (t.mant + 1)))
        corr = e.sel(big, e.c(0.0), e.b.fdiv(lost, u))
        uu = e.sel(e.gt(u, e.c(0.0)), u, e.c(1.0))  # keep the core's bit tricks on valid input
        y = self._log_core(e, uu, corr)
        y = e.sel(e.b.fcmp_ordered("==", x, e.c(0.0)), x, y)  # keep -0
        return self._log_specials(e, x, y, -1.0)

    def _tanh(self, e: _Emitter, x):
        a = e.fabs(x)
        em = self._call(e, "expm1", e.b.fadd(a, a))
        y = e.b.fdiv(em, e.b.fadd(em, e.c(2.0)))
        if e.t.bits == 32:  # near 0 the quotient's roundings cost ~2 ulp; the polynomial ~0.6
            a2 = e.b.fmul(a, a)
            small = e.fma(e.b.fmul(a, a2), e.horner(a2, _TANH_P), a)
            y = e.sel(e.lt(a, e.c(_TANH_SMALL)), small, y)
        y = e.sel(e.gt(a, e.c(e.t.tanh_one)), e.c(1.0), y)
        y = e.copysign(y, x)
        return e.sel(e.isnan(x), x, y)

    def _sigmoid(self, e: _Emitter, x):
        """{1 or e}/(1 + e), e = exp(-|x|) = 2**n * (1 + q) with n <= 0, computed as
        {2**S or t}/(2**S + t) with t = 2**(n+S) * (1 + q), one fma: scaled by the fixed
        2**S, t is a normal number over the whole clamped range, so a subnormal result is
        rounded once, by the division. (Scaling by 2**-floor(n/2) instead gives the same
        bits for five more integer ops per element: W1 has two sigmoids.) NaN in: NaN
        throughout."""
        q, m = self._exp_parts(e, e.b.fneg(e.fabs(x)), upper=False)  # m = n + 2*bias
        scale = _SIGMOID_SCALE
        s = e.from_bits(e.b.shl(e.b.add(m, e.ci(scale - e.t.bias)), e.ci(e.t.mant)))  # 2**(n+S)
        t = e.fma(q, s, s)
        big = e.c(2.0 ** scale)
        num = e.sel(e.b.fcmp_ordered(">=", x, e.c(0.0)), big, t)
        return e.b.fdiv(num, e.b.fadd(big, t))

    def _erf(self, e: _Emitter, x):
        a = e.fabs(x)
        a2 = e.b.fmul(a, a)
        small = e.fma(a, e.horner(a2, _ERF_P), a)
        ac = e.sel(e.gt(a, e.c(_ERF_ONE)), e.c(_ERF_ONE), a)
        q = e.horner(e.b.fdiv(e.c(1.0), e.b.fadd(e.c(1.0), ac)), _ERFC_Q)
        ex = self._call(e, "exp", e.b.fneg(e.b.fmul(ac, ac)))
        large = e.b.fsub(e.c(1.0), e.b.fmul(ex, q))
        y = e.sel(e.lt(a, e.c(0.875)), small, large)
        y = e.sel(e.gt(a, e.c(_ERF_ONE)), e.c(1.0), y)
        y = e.copysign(y, x)
        return e.sel(e.isnan(x), x, y)


    # ------------------------------------------------------------ sin / cos (float32)
    def _table(self, name, values):
        g = self.module.globals.get(name)
        if g is None:
            ty = ir.ArrayType(I32, len(values))
            g = ir.GlobalVariable(self.module, ty, name)
            g.linkage = "internal"
            g.global_constant = True
            g.initializer = ir.Constant(ty, [v - (1 << 32) if v >= 1 << 31 else v for v in values])
        return g

    def _reduce_pio2(self, e: _Emitter, x):
        """|x| = n*pi/2 + r: returns (n mod 4 as i32, r as double, |r| <= pi/4 (+tiny))."""
        b = e.b
        F = F64
        a = e.fabs(x)
        ad = b.fpext(a, F)
        small = e.lt(a, e.c(_PIO4))
        # large: M (24-bit mantissa) times 96 bits of 2/pi picked by the exponent -> Q, the
        # 2.62 fixed-point value of |x|*2/pi mod 4
        xi = e.to_bits(a)
        eb = b.lshr(xi, I32(23))
        idx = b.sub(eb, I32(126))
        idx = b.select(b.icmp_signed("<", idx, I32(0)), I32(0), idx)
        words = []
        for part, values in zip(("hi", "mid", "lo"), _reduction_table()):
            g = self._table(f"tracecc.two_over_pi.{part}", values)
            w = b.load(b.gep(g, [I32(0), idx], inbounds=True))
            words.append(b.zext(w, I64))
        m = b.zext(b.or_(b.and_(xi, I32(0x7FFFFF)), I32(0x800000)), I64)
        q = b.add(b.add(b.shl(b.mul(m, words[0]), I64(32)), b.mul(m, words[1])),
                  b.lshr(b.mul(m, words[2]), I64(32)))
        n = b.lshr(b.add(q, I64(1 << 61)), I64(62))
        f = b.sub(q, b.shl(n, I64(62)))  # in [-2^61, 2^61): the signed fraction
        r = b.fmul(b.sitofp(f, F), ir.Constant(F, 3.141592653589793 * 2.0 ** -63))
        r = b.select(small, ad, r)
        n = b.select(small, I32(0), b.and_(b.trunc(n, I32), I32(3)))
        return n, r

    def _sincos_poly(self, e: _Emitter, r):
        b = e.b
        d = _Emitter(self, b, T64)
        r2 = b.fmul(r, r)
        sin_r = d.fma(b.fmul(r, r2), d.horner(r2, _SIN_S), r)
        cos_r = d.fma(r2, d.horner(r2, _COS_C), ir.Constant(F64, 1.0))
        return sin_r, cos_r

    def _sin(self, e: _Emitter, x):
        return self._sincos(e, x, cos=False)

    def _cos(self, e: _Emitter, x):
        return self._sincos(e, x, cos=True)

    def _sincos(self, e: _Emitter, x, cos: bool):
        """Exact table reduction for every lane, then the double polynomials. (Branching to a
        cheaper Cody-Waite path for moderate |x| stops the loop vectoriser: measured.)"""
        y = self._sincos_finish(e, x, *self._reduce_pio2(e, x), cos)
        inf = e.b.fcmp_ordered("==", e.fabs(x), e.c(float("inf")))
        y = e.sel(inf, e.c(float("nan")), y)
        return e.sel(e.isnan(x), x, y)

    def _sincos_finish(self, e: _Emitter, x, n, r, cos: bool):
        b = e.b
        sin_r, cos_r = self._sincos_poly(e, r)
        if cos:
            n = b.and_(b.add(n, I32(1)), I32(3))  # cos(a) = sin(a + pi/2)
        use_cos = b.icmp_unsigned("!=", b.and_(n, I32(1)), I32(0))
        v = b.select(use_cos, cos_r, sin_r)
        v = b.select(b.icmp_unsigned("!=", b.and_(n, I32(2)), I32(0)), b.fneg(v), v)
        y = b.fptrunc(v, F32)
        if not cos:  # sin is odd: sin(-a) = -sin(a), and sin(-0) = -0
            y = b.select(b.icmp_signed("<", e.to_bits(x), I32(0)), b.fneg(y), y)
        return y


def emit_unary_kernel(module: ir.Module, name: str, fn: ir.Function) -> ir.Function:
    """`void name(T* x, T* y, i64 n)`: y[i] = fn(x[i]). Used by tests and benchmarks."""
    ty = fn.function_type.return_type
    p = ty.as_pointer()
    k = ir.Function(module, ir.FunctionType(ir.VoidType(), [p, p, I64]), name)
    x, y, n = k.args
    x.add_attribute("noalias")
    y.add_attribute("noalias")
    entry = k.append_basic_block("entry")
    loop = k.append_basic_block("loop")
    done = k.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, I64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64, "i")
    i.add_incoming(I64(0), entry)
    b.store(b.call(fn, [b.load(b.gep(x, [i], inbounds=True))]), b.gep(y, [i], inbounds=True))
    i2 = b.add(i, I64(1))
    i.add_incoming(i2, loop)
    b.cbranch(b.icmp_signed("<", i2, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return k


