"""matmul: BLAS call and generated kernel against numpy, every transpose layout, odd and
tiny shapes, padded leading dimensions, alpha/beta, and fused epilogues."""

import ctypes

import numpy as np
import pytest
from llvmlite import ir

from tracecc.codegen.llvm import jit, matmul
from tracecc.codegen.llvm.mathlib import MathLib
from tracecc.codegen.llvm.matmul import MatmulSpec
from tracecc.runtime.errors import CodegenError

P32 = ir.FloatType().as_pointer()
HAVE_BLAS = matmul.find_blas() is not None
STRATEGIES = ["tiled"] + (["blas"] if HAVE_BLAS else [])


def build(spec, strategy, epilogue=None, residual_rs=0):
    m = jit.new_module("mm_test")
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [P32] * 5), "mm")
    a, b_, c, bias, res = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    epi = None
    if epilogue:
        epi = matmul.bias_act(bias, epilogue.get("act"), residual=res if epilogue.get("res") else None,
                              residual_rs=residual_rs, scale=epilogue.get("scale"), mathlib=MathLib(m))
    used = matmul.emit_matmul(b, spec, a, b_, c, epi, strategy)
    b.ret_void()
    cm = jit.compile_module(m)
    return cm.cfunc("mm", None, *[ctypes.c_void_p] * 5), used


def operands(rng, M, N, K, ta, tb, pad=0):
    """A view [M, K] and B view [K, N], transposed views when ta/tb, rows padded by `pad`."""
    A = rng.standard_normal((K, M + pad) if ta else (M, K + pad), dtype=np.float32)
    B = rng.standard_normal((N, K + pad) if tb else (K, N + pad), dtype=np.float32)
    Av = A[:, :M].T if ta else A[:, :K]
    Bv = B[:, :K].T if tb else B[:, :N]
    return A, B, Av, Bv


def strides(v):
    return (v.strides[0] // 4, v.strides[1] // 4)


SHAPES = [(1, 1, 1), (2, 3, 1), (7, 10, 13), (5, 33, 3), (17, 9, 31), (64, 10, 64), (13, 40, 100),
          (64, 128, 784)]


# the tiled kernel needs B rows (unit column stride), so no transposed B for it
LAYOUTS = [(s, ta, tb) for s in STRATEGIES for ta in (False, True) for tb in (False, True)
           if not (s == "tiled" and tb)]


@pytest.mark.parametrize("strategy,ta,tb", LAYOUTS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_product_matches_numpy(strategy, ta, tb, M, N, K):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    pad = 3 if (M + N + K) % 2 else 0
    A, B, Av, Bv = operands(rng, M, N, K, ta, tb, pad)
    spec = MatmulSpec(M, N, K, strides(Av), strides(Bv))
    f, used = build(spec, strategy)
    assert used == strategy
    C = np.full((M, N), np.nan, np.float32)
    f(A.ctypes.data, B.ctypes.data, C.ctypes.data, None, None)
    ref = Av.astype(np.float64) @ Bv.astype(np.float64)
    np.testing.assert_allclose(C, ref, rtol=2e-5, atol=2e-5 * np.sqrt(K))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fused_epilogues(strategy):
    rng = np.random.default_rng(7)
    M, N, K = 19, 37, 23
    A, B, Av, Bv = operands(rng, M, N, K, False, False)
    bias = rng.standard_normal(N, dtype=np.float32)
    res = rng.standard_normal((M, N + 5), dtype=np.float32)  # residual with its own row stride
    spec = MatmulSpec(M, N, K, strides(Av), strides(Bv))
    ref0 = Av.astype(np.float64) @ Bv.astype(np.float64)
    cases = {
        "relu": ({"act": "relu"}, np.maximum(ref0 + bias, 0)),
        "sigmoid": ({"act": "sigmoid"}, 1 / (1 + np.exp(-(ref0 + bias)))),
        "tanh+res+scale": ({"act": "tanh", "res": True, "scale": 0.5},
                           np.tanh(0.5 * ref0 + bias + res[:, :N])),
    }
    for name, (epi, want) in cases.items():
        f, _ = build(spec, strategy, epi, residual_rs=N + 5)
        C = np.empty((M, N), np.float32)
        f(A.ctypes.data, B.ctypes.data, C.ctypes.data, bias.ctypes.data, res.ctypes.data)
        np.testing.assert_allclose(C, want, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.skipif(not HAVE_BLAS, reason="no BLAS in this process")
def test_blas_alpha_beta_and_padded_c():
    rng = np.random.default_rng(3)
    M, N, K = 6, 5, 4
    A, B, Av, Bv = operands(rng, M, N, K, False, True)
    Cbig = rng.standard_normal((M, N + 2), dtype=np.float32)  # C rows padded: ldc = N + 2
    before = Cbig.copy()
    spec = MatmulSpec(M, N, K, strides(Av), strides(Bv), c_rs=N + 2, alpha=2.0, beta=0.5)
    f, _ = build(spec, "blas")
    f(A.ctypes.data, B.ctypes.data, Cbig.ctypes.data, None, None)
    want = 2.0 * (Av.astype(np.float64) @ Bv) + 0.5 * before[:, :N]
    np.testing.assert_allclose(Cbig[:, :N], want, rtol=1e-5, atol=1e-5)
    assert np.array_equal(Cbig[:, N:], before[:, N:])  # padding untouched


def test_zero_k_gives_zeros():
    spec = MatmulSpec(3, 4, 0, (1, 1), (4, 1))
    for strategy in STRATEGIES:
        f, _ = build(spec, strategy)
        C = np.full((3, 4), np.nan, np.float32)
        a = np.zeros(1, np.float32)
        f(a.ctypes.data, a.ctypes.data, C.ctypes.data, None, None)
        assert np.array_equal(C, np.zeros((3, 4), np.float32)), strategy


def test_operands_the_strategies_cannot_take_are_clear_errors():
    with pytest.raises(CodegenError, match="unit-stride"):
        matmul._layout((8, 2), 4, 4, "A")  # BLAS: neither dimension contiguous
    with pytest.raises(CodegenError, match="unit column stride"):
        build(MatmulSpec(4, 4, 4, (4, 1), (1, 4)), "tiled")  # tiled: B transposed


def test_choose_follows_the_measured_rule():
    small = MatmulSpec(64, 10, 64, (64, 1), (10, 1))
    big = MatmulSpec(512, 128, 784, (784, 1), (1, 784))
    assert matmul.choose(small) == ("blas" if HAVE_BLAS else "tiled")  # compile time decides
    assert matmul.choose(big) == ("blas" if HAVE_BLAS else "tiled")
    assert matmul.choose(MatmulSpec(64, 10, 64, (64, 1), (1, 64))) == ("blas" if HAVE_BLAS else "tiled")


def test_relu_epilogue_keeps_nan_like_numpy():
    spec = MatmulSpec(2, 3, 1, (1, 1), (3, 1))
    f, _ = build(spec, "tiled", {"act": "relu"})
    a = np.ones(2, np.float32)
    b = np.array([1.0, -1.0, 2.0], np.float32)
    bias = np.array([np.nan, 0.0, -5.0], np.float32)
    C = np.empty((2, 3), np.float32)
    f(a.ctypes.data, b.ctypes.data, C.ctypes.data, bias.ctypes.data, None)
    want = np.maximum(np.outer(a, b) + bias, 0)
    assert np.array_equal(C, want, equal_nan=True)
