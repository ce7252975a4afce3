"""mathlib: each function within its stated ulp bound over the whole float range, special
values right, and the loop that calls it vectorised with no libm calls left."""

import ctypes
import math
import re

import numpy as np
import pytest

from tracecc.codegen.llvm import jit
from tracecc.codegen.llvm.mathlib import F32, F64, ULP_BOUNDS, MathLib, emit_unary_kernel

NAMES32 = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos"]
NAMES64 = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid"]

_erf = np.frompyfunc(math.erf, 1, 1)
REFS = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "erf": lambda x: _erf(x).astype(np.float64), "sin": np.sin, "cos": np.cos,
}


@pytest.fixture(scope="module")
def kernels():
    m = jit.new_module("mathlib_test")
    ml = MathLib(m)
    for nm in NAMES32:
        emit_unary_kernel(m, f"k_{nm}_32", ml.get(nm, 32))
    for nm in NAMES64:
        emit_unary_kernel(m, f"k_{nm}_64", ml.get(nm, 64))
    cm = jit.compile_module(m, keep_ir=True)
    sig = (None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    fns = {(nm, 32): cm.cfunc(f"k_{nm}_32", *sig) for nm in NAMES32}
    fns.update({(nm, 64): cm.cfunc(f"k_{nm}_64", *sig) for nm in NAMES64})
    return cm, fns


def run(fns, name, bits, x):
    x = np.ascontiguousarray(x, dtype=np.float32 if bits == 32 else np.float64)
    y = np.empty_like(x)
    fns[(name, bits)](x.ctypes.data, y.ctypes.data, x.size)
    return y


def ulp_error(y, ref, bits):
    """|y - ref| in ulps of the correctly rounded result; inf counts as 2**(max exponent + 1)."""
    mant, emin, big = (23, -126, 2.0 ** 128) if bits == 32 else (52, -1022, np.longdouble(2) ** 1024)
    ft = np.float64 if bits == 32 else np.longdouble
    y = y.astype(ft)
    y[np.isinf(y)] = np.sign(y[np.isinf(y)]) * big
    ref = np.clip(ref.astype(ft), -big, big)
    _, e = np.frexp(np.abs(ref))
    return np.abs(y - ref) / np.ldexp(ft(1), np.maximum(e - 1, emin) - mant)


def check(fns, name, bits, x):
    y = run(fns, name, bits, x)
    with np.errstate(all="ignore"):
        ref = REFS[name](x.astype(np.float64 if bits == 32 else np.longdouble))
    nan_ref, nan_y = np.isnan(ref), np.isnan(y)
    assert np.array_equal(nan_ref, nan_y), f"{name}: NaN where the reference is not (or back) at {x[nan_ref != nan_y][:5]}"
    ok = ~nan_ref
    err = ulp_error(y[ok], ref[ok], bits)
    i = int(np.argmax(err))
    assert err[i] <= ULP_BOUNDS[(name, bits)], (
        f"{name}{bits}: {float(err[i]):.3f} ulp at x={x[ok][i]!r} (got {y[ok][i]!r}, want {ref[ok][i]!r})")
    return float(err[i])


@pytest.mark.parametrize("name", NAMES32)
def test_float32_whole_range_sweep(kernels, name):
    """Every 2039th float32 bit pattern (2.1M values: both signs, subnormals, inf, NaN), and every
    1021st one with |x| < 4 where the functions bend. The bounds themselves come from the
    exhaustive run over all 2**32 inputs (benchmarks/llvm_micro.py --ulp)."""
    _, fns = kernels
    whole = np.arange(0, 2**32, 2039, dtype=np.uint64).astype(np.uint32)
    near = np.arange(17, 0x40800000, 1021, dtype=np.uint32)
    x = np.concatenate([whole, near, near | np.uint32(0x80000000)]).view(np.float32)
    if name == "erf":  # reference is math.erf one by one: keep where erf is not +-1
        x = x[~(np.abs(x) > 4.5)]
    check(fns, name, 32, x)


@pytest.mark.parametrize("name", NAMES64)
def test_float64_random_bit_patterns(kernels, name):
    """256K random float64 bit patterns, 256K with |x| in [2^-15, 2^1], 256K in [2^-63, 2^10]."""
    _, fns = kernels
    rng = np.random.default_rng(1)
    b = rng.integers(0, 2**64, 2**18, dtype=np.uint64)
    mant = b & np.uint64(0x800FFFFFFFFFFFFF)
    near = mant | (rng.integers(0x3F0, 0x401, b.size, dtype=np.uint64) << np.uint64(52))
    wide = mant | (rng.integers(0x3C0, 0x409, b.size, dtype=np.uint64) << np.uint64(52))
    for bits in (b, near, wide):
        check(fns, name, 64, bits.view(np.float64))


inf, nan = float("inf"), float("nan")
SPECIALS = {
    "exp": [(inf, inf), (-inf, 0.0), (0.0, 1.0), (-0.0, 1.0), (1000.0, inf),
            (-1000.0, 0.0)],
    "expm1": [(inf, inf), (-inf, -1.0), (0.0, 0.0), (-0.0, -0.0), (1000.0, inf), (-100.0, -1.0)],
    "log": [(0.0, -inf), (-0.0, -inf), (-1.0, nan), (-inf, nan), (inf, inf), (1.0, 0.0)],
    "log1p": [(-1.0, -inf), (-2.0, nan), (-inf, nan), (inf, inf), (0.0, 0.0), (-0.0, -0.0)],
    "tanh": [(inf, 1.0), (-inf, -1.0), (0.0, 0.0), (-0.0, -0.0), (20.0, 1.0), (-20.0, -1.0)],
    "sigmoid": [(inf, 1.0), (-inf, 0.0), (0.0, 0.5), (800.0, 1.0), (-800.0, 0.0)],
    "erf": [(inf, 1.0), (-inf, -1.0), (0.0, 0.0), (-0.0, -0.0), (10.0, 1.0), (-10.0, -1.0)],
    "sin": [(inf, nan), (-inf, nan), (0.0, 0.0), (-0.0, -0.0)],
    "cos": [(inf, nan), (-inf, nan), (0.0, 1.0), (-0.0, 1.0)],
}


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("name", NAMES32)
def test_special_values(kernels, name, bits):
    if (name, bits) not in ULP_BOUNDS:
        pytest.skip(f"{name} float{bits} is not provided (the lowering falls back to libm)")
    _, fns = kernels
    cases = SPECIALS[name] + [(nan, nan), (-nan, nan)]
    x = np.array([c[0] for c in cases])
    want = np.array([c[1] for c in cases])
    got = run(fns, name, bits, x).astype(np.float64)
    for xi, g, w in zip(x, got, want):
        if math.isnan(w):
            assert math.isnan(g), f"{name}({xi}) = {g}, want nan"
        else:
            assert g == w and math.copysign(1, g) == math.copysign(1, w), f"{name}({xi}) = {g}, want {w}"


def test_exp_overflow_and_subnormal_edges(kernels):
    _, fns = kernels
    big = np.float32(88.72283172607422)  # largest float32 whose exp rounds to a finite float32
    with np.errstate(over="ignore"):
        assert np.isfinite(np.float32(np.exp(np.float64(big))))
        assert np.isinf(np.float32(np.exp(np.float64(np.nextafter(big, np.float32(100))))))
    assert np.isfinite(run(fns, "exp", 32, np.array([big]))[0])
    assert np.isinf(run(fns, "exp", 32, np.array([np.nextafter(big, np.float32(100))]))[0])
    sub = run(fns, "exp", 32, np.array([-100.0, -103.0], np.float32))
    assert 0 < sub[0] < np.finfo(np.float32).tiny and 0 < sub[1] < sub[0]  # gradual underflow
    tiny = np.array([1e-45, 1e-40, 1e-39], np.float32)  # subnormal inputs to log
    assert np.allclose(run(fns, "log", 32, tiny), np.log(tiny.astype(np.float64)), rtol=1e-6)


def test_loops_vectorise_without_libm_calls(kernels):
    cm, _ = kernels
    width = jit.host_target().vector_bits // 32
    text = cm.optimized_ir
    for nm in NAMES32:
        body = text[text.index(f"@k_{nm}_32("):]
        body = body[:body.index("\n}\n")]
        assert f"<{width} x float>" in body, f"{nm}: loop not vectorised"
        calls = re.findall(r"call [^@]*@([\w.]+)", body)
        assert all(c.startswith("llvm.") for c in calls), f"{nm}: calls {calls}"


def test_hook_returns_none_for_what_it_lacks():
    ml = MathLib(jit.new_module())
    assert ml("erf", F64) is None and ml("sin", F64) is None and ml("exp", F32) is not None
    assert ml("exp", F32) is ml("exp", F32)  # defined once per module


def test_sin_cos_of_huge_arguments(kernels):
    """The reduction is exact for every float32, so huge arguments are as accurate as small ones."""
    _, fns = kernels
    x = np.array([1e10, -3.0e20, 1e30, 3.4028235e38, 2.0**100, 16777217.0, 6.2831855], np.float32)
    for name, ref in (("sin", np.sin), ("cos", np.cos)):
        err = ulp_error(run(fns, name, 32, x), ref(x.astype(np.float64)), 32)
        assert err.max() <= 0.51, (name, err)


def test_without_hardware_fma_the_fmuladd_path_still_works():
    """MathLib(use_fma=False) (a CPU without FMA) emits llvm.fmuladd; on this host LLVM
    fuses it anyway, so this checks the path builds and computes, not its accuracy there."""
    m = jit.new_module("nofma")
    ml = MathLib(m, use_fma=False)
    for nm in ("exp", "log", "tanh"):
        emit_unary_kernel(m, f"k_{nm}", ml.get(nm, 32))
    assert "llvm.fmuladd" in str(m) and "llvm.fma." not in str(m)
    cm = jit.compile_module(m)
    x = np.linspace(0.01, 20, 10001, dtype=np.float32)
    for nm, ref in (("exp", np.exp), ("log", np.log), ("tanh", np.tanh)):
        y = np.empty_like(x)
        cm.cfunc(f"k_{nm}", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(x.ctypes.data, y.ctypes.data, x.size)
        assert ulp_error(y, ref(x.astype(np.float64)), 32).max() <= 4, nm
