"""Triton lowering of the kernel IR, run under Triton's CPU interpreter and compared with the
kernel-IR evaluator: every kernel kind, every pointwise op, and programs scheduled from
traced graphs. Shapes stay tiny: each interpreted program instance costs ~0.6 ms.

The interpreter must be chosen before anything imports triton (codegen/triton/launch.py,
require_triton), so this module sets TRITON_INTERPRET=1 itself."""

import os

if os.environ.get("TRACECC_TEST_COMPILE_ONLY") != "1":  # set by the offline-compile subprocess
    os.environ.setdefault("TRITON_INTERPRET", "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("triton")

from graph_builder import random_input as _random_input  # noqa: E402
from graph_builder import trace  # noqa: E402
from kernel_cases import matmul_kernel, pointwise_kernel, softmax_kernel  # noqa: E402
from tracecc.passes.interpret import interpret  # noqa: E402
from tracecc.codegen.triton.backend import TritonProgram  # noqa: E402
from tracecc.codegen.triton.lower import Options, lower_kernel, pointer_param  # noqa: E402
from tracecc.codegen.triton.scalar import EMITTERS  # noqa: E402
from tracecc.passes.kernel_eval import run_kernel as eval_kernel  # noqa: E402
from tracecc.passes.kernel_eval import run_program  # noqa: E402
from tracecc.passes.kernel_ir import (  # noqa: E402
    Acc, Buffer, Const, Index, Kernel, Load, LoopIndex, LoopVar, Matmul, Op, Phase, Program, Reduction,
    RowValue, Store, Term, format_program,
)
from tracecc.passes.schedule import schedule  # noqa: E402
from tracecc.runtime.dtypes import bfloat16, bool_, float16, float32, get_dtype, int64  # noqa: E402

import tracecc as tc  # noqa: E402

rng = np.random.default_rng(0)


@pytest.fixture(scope="module")
def src_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("triton_src")


def program_of(k: Kernel, bufs: dict) -> Program:
    buffers = {n: Buffer(n, a.size, get_dtype(a.dtype), "input") for n, a in bufs.items()}
    return Program(k.name, buffers, [k], list(bufs), list(bufs))


def run_triton(k, bufs, src_dir, **kw) -> TritonProgram:
    """Run one kernel through Triton (interpreted), writing into bufs like the evaluator."""
    tp = TritonProgram(program_of(k, bufs), device="interpreter", source_dir=src_dir, **kw)
    for name, a in tp(bufs).items():
        bufs[name][...] = a
    return tp


def both(k, bufs, src_dir, **kw):
    """(evaluator result, triton result, TritonProgram) for one kernel on copies of bufs."""
    expected = {n: a.copy() for n, a in bufs.items()}
    eval_kernel(k, expected)
    got = {n: a.copy() for n, a in bufs.items()}
    tp = run_triton(k, got, src_dir, **kw)
    return expected, got, tp


# ---------------------------------------------------------------- hand-written kernels
def test_pointwise_with_broadcast_and_transposed_load(src_dir):
    k, bufs, (x, b) = pointwise_kernel(rng)
    _, got, tp = both(k, bufs, src_dir)
    np.testing.assert_array_equal(got["y"].reshape(5, 7), np.maximum(x.T + b, 0))
    src = tp.kernels[0].source
    # named as the kernel, headed by its members, one flat block with // and % for the loops
    assert "def triton_poi_fused_add_relu_0(" in src
    assert "# members (the traced graph's ops this kernel computes):\n#   add %1 (model.py:12)\n" \
           "#   relu %2 (model.py:12)\n" in src
    assert "i0 = (xindex // 7)" in src and "i1 = xindex % 7" in src
    assert tp.paths[0].exists() and tp.paths[0].read_text() == src  # a real file, imported


@pytest.mark.parametrize("max_rblock", [4096, 4])
def test_softmax_rows_persistent_and_looped(src_dir, max_rblock):
    k, bufs, x = softmax_kernel(rng)
    _, got, tp = both(k, bufs, src_dir, options=Options(max_rblock=max_rblock))
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(got["y"].reshape(x.shape), e / e.sum(1, keepdims=True), rtol=1e-6)
    src = tp.kernels[0].source
    spec = tp.kernels[0].launches[0]
    if max_rblock == 4:
        assert not spec.persistent and src.count("for roffset in range(0, 9, RBLOCK):") == 3
        assert tp.configs[0][1].params == (("RBLOCK", 4), ("XBLOCK", 4))
    else:
        # one tile for the whole row: x is loaded once although three phases read it
        assert spec.persistent and src.count("tl.load(") == 1 and "for " not in src


@pytest.mark.parametrize("dtype", [float32, float16, int64])
def test_matmul_with_bias_relu_epilogue(src_dir, dtype):
    k, bufs = matmul_kernel(rng, M=20, K=37, N=18, dtype=dtype)
    expected, got, tp = both(k, bufs, src_dir)
    tol = {float32: 1e-5, float16: 2e-3, int64: 0}[dtype]
    # float16: where the sum cancels, one rounding of the accumulator to f16 (the evaluator
    # rounds it before the epilogue, Triton keeps f32) is an absolute error of the size of
    # the accumulator's ulp, so the absolute tolerance scales with the largest product sum
    # (a fixed one failed on some draws: the data depends on which tests ran before)
    scale = 1.0
    if dtype is float16:
        a, w = (bufs[n].astype(np.float64).reshape(r, 37) for n, r in (("a", 20), ("w", 18)))
        scale = float(np.abs(a @ w.T).max())
    np.testing.assert_allclose(got["y"].astype(np.float64), expected["y"].astype(np.float64),
                               rtol=tol, atol=tol * scale)
    src = tp.kernels[0].source
    if dtype is int64:
        assert "tl.dot" not in src and "tl.sum(" in src  # no integer tensor-core path
    else:
        assert "acc = tl.dot(" in src and "for koffset in range(0, 37, BLOCK_K):" in src
        # f16 operands reach tl.dot as f16 (accumulating in f32); f32 asks for ieee by default
        assert ('input_precision="ieee"' in src) == (dtype is float32)
        assert ".to(tl.float32)" not in src.split("acc = tl.dot")[0]


def test_batched_matmul_with_broadcast_operand_and_residual(src_dir):
    B, M, K, N = 3, 4, 6, 5
    b, m, n, kk = LoopVar("i0", B), LoopVar("i1", M), LoopVar("i2", N), LoopVar("k", K)
    a = rng.standard_normal((B, M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32)  # shared by every batch
    res = rng.standard_normal((B, M, N)).astype(np.float32)
    out_idx = Index.affine([(b, M * N), (m, N), (n, 1)])
    mm = Matmul(Load("a", Index.affine([(b, M * K), (m, K), (kk, 1)]), float32),
                Load("w", Index.affine([(kk, N), (n, 1)]), float32), kk,
                (Store("y", out_idx, Acc(float32)),
                 Store("z", out_idx, Op("add", (Acc(float32), Load("res", out_idx, float32)), float32))))
    k = Kernel("mm_epi_add_3", "matmul", (b, m, n), matmul=mm)
    bufs = {"a": a.ravel(), "w": w.ravel(), "res": res.ravel(),
            "y": np.zeros(B * M * N, np.float32), "z": np.zeros(B * M * N, np.float32)}
    _, got, tp = both(k, bufs, src_dir)
    np.testing.assert_allclose(got["y"].reshape(B, M, N), a @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["z"].reshape(B, M, N), a @ w + res, rtol=1e-5, atol=1e-6)
    assert "bid = tl.program_id(1)" in tp.kernels[0].source


def test_gather_by_label_and_scatter_add_with_repeated_labels(src_dir):
    # cross-entropy pick: out[i] = logp[i, y[i]]; a scatter: g[y[i]] += w[i] (labels repeat)
    B, C = 6, 4
    i = LoopVar("i0", B)
    logp = rng.standard_normal((B, C)).astype(np.float32)
    y = np.array([1, 3, 1, 0, 1, 3])
    wts = rng.standard_normal(B).astype(np.float32)
    label = Load("y", Index.affine([(i, 1)]), int64)
    pick = Load("logp", Index(0, (Term(C, i), Term(1, expr=label))), float32)
    gather = Kernel("gat_0", "pointwise", (i,),
                    (Phase(stores=(Store("out", Index.affine([(i, 1)]), pick),)),))
    scatter = Kernel("sca_1", "scatter", (i,), (Phase(stores=(
        Store("g", Index(0, (Term(1, expr=label),)), Load("w", Index.affine([(i, 1)]), float32),
              accumulate=True),)),))
    prog = Program("ce", {"logp": Buffer("logp", B * C, float32, "input"),
                          "y": Buffer("y", B, int64, "input"),
                          "w": Buffer("w", B, float32, "input"), "out": Buffer("out", B, float32, "output"),
                          "g": Buffer("g", C, float32, "input")},
                   [gather, scatter], ["logp", "y", "w", "g"], ["out", "g"])
    g0 = rng.standard_normal(C).astype(np.float32)
    inputs = {"logp": logp, "y": y, "w": wts, "g": g0}
    tp = TritonProgram(prog, device="interpreter", source_dir=src_dir)
    for _ in range(2):  # a second call starts from the inputs again
        got = tp(inputs)
        np.testing.assert_array_equal(got["out"], logp[np.arange(B), y])
        expected = g0.copy()
        np.add.at(expected, y, wts)
        np.testing.assert_allclose(got["g"], expected, rtol=1e-6)
    assert "tl.atomic_add(g_ptr + tmp" in tp.kernels[1].source
    assert not tp.kernels[1].launches[0].rerunnable and tp.kernels[0].launches[0].rerunnable


def scatter_kernel():
    B, C = 6, 4
    i = LoopVar("i0", B)
    label = Load("y", Index.affine([(i, 1)]), int64)
    k = Kernel("sca_1", "scatter", (i,), (Phase(stores=(
        Store("g", Index(0, (Term(1, expr=label),)), Load("w", Index.affine([(i, 1)]), float32),
              accumulate=True),)),))
    return k, {"y": np.array([1, 3, 1, 0, 1, 3]), "w": rng.standard_normal(B).astype(np.float32),
               "g": np.zeros(C, np.float32)}


def test_reshape_of_permuted_view_uses_div_mod_terms(src_dir):
    R, C = 3, 4
    f = LoopVar("i0", R * C)
    x = np.arange(R * C, dtype=np.float32).reshape(R, C)
    load = Load("x", Index(0, (Term(C, f, mod=R), Term(1, f, div=R))), float32)
    k = Kernel("poi_0", "pointwise", (f,), (Phase(stores=(Store("y", Index.affine([(f, 1)]), load),)),))
    _, got, tp = both(k, {"x": x.ravel(), "y": np.zeros(R * C, np.float32)}, src_dir)
    np.testing.assert_array_equal(got["y"], x.T.reshape(-1))
    assert "4*(i0 % 3) + (i0 // 3)" in tp.kernels[0].source


def argmax_kernel():
    R, C = 5, 7
    r, c, c2 = LoopVar("i0", R), LoopVar("r0", C), LoopVar("r1", C)
    x = rng.standard_normal((R, C)).astype(np.float32)
    x[1, 4] = x[1, 6] = 9.0  # a tie: the first wins
    x[2, 3], x[2, 5] = np.nan, np.nan  # NaN wins, the first one
    x[3, :] = -np.inf  # all equal: index 0
    xi = rng.integers(-3, 3, (R, C))

    def load(v):
        return Load("x", Index.affine([(r, C), (v, 1)]), float32)

    k = Kernel("red_argmax_0", "reduction", (r,), (
        Phase((c,), reductions=(Reduction("a", "argmax", load(c), int64),
                                Reduction("b", "argmin", load(c), int64))),
        Phase((c2,), reductions=(Reduction("ai", "argmax", Load("xi", Index.affine([(r, C), (c2, 1)]), int64),
                                           int64),)),
        Phase(stores=(Store("y", Index.affine([(r, 1)]), RowValue("a", int64)),
                      Store("ymin", Index.affine([(r, 1)]), RowValue("b", int64)),
                      Store("yi", Index.affine([(r, 1)]), RowValue("ai", int64)),
                      Store("pos", Index.affine([(r, 1)]),
                            Op("gt", (RowValue("a", int64), Const(2, int64)), bool_)))),
    ))
    bufs = {"x": x.ravel(), "xi": xi.ravel(), "y": np.zeros(R, np.int64), "ymin": np.zeros(R, np.int64),
            "yi": np.zeros(R, np.int64), "pos": np.zeros(R, np.bool_)}
    return k, bufs, (x, xi)


@pytest.mark.parametrize("max_rblock", [4096, 2])
def test_argmax_argmin_with_nan_and_ties_and_bool_ops(src_dir, max_rblock):
    k, bufs, (x, xi) = argmax_kernel()
    expected, got, _ = both(k, bufs, src_dir, options=Options(max_rblock=max_rblock))
    np.testing.assert_array_equal(got["y"], np.argmax(x, 1))
    np.testing.assert_array_equal(got["ymin"], np.argmin(x, 1))
    np.testing.assert_array_equal(got["yi"], np.argmax(xi, 1))
    for name in ("y", "ymin", "yi", "pos"):
        np.testing.assert_array_equal(got[name], expected[name])


@pytest.mark.parametrize("max_rblock", [4096, 8])
def test_full_reductions_column_reduction_and_nan_max(src_dir, max_rblock):
    R, C = 6, 10
    x = rng.standard_normal((R, C)).astype(np.float32)
    x[4, 2] = np.nan
    r, c = LoopVar("r0", R), LoopVar("r1", C)
    loads = lambda: Load("x", Index.affine([(r, C), (c, 1)]), float32)  # noqa: E731
    total = Kernel("red_sum_0", "reduction", (), (  # outer=(): one row, the whole tensor
        Phase((r, c), reductions=(Reduction("s", "add", loads(), float32),
                                  Reduction("p", "mul", Op("add", (Op("mul", (loads(), Const(0.01, float32)),
                                                                       float32), Const(1.0, float32)),
                                                               float32), float32),
                                  Reduction("mx", "maximum", loads(), float32),
                                  Reduction("mn", "minimum", Op("abs", (loads(),), float32), float32))),
        Phase(stores=tuple(Store(n, Index(), RowValue(n, float32)) for n in ("s", "p", "mx", "mn"))),
    ))
    bufs = {"x": x.ravel(), **{n: np.zeros(1, np.float32) for n in ("s", "p", "mx", "mn")}}
    expected, got, _ = both(total, bufs, src_dir, options=Options(max_rblock=max_rblock))
    assert np.isnan(got["s"][0]) and np.isnan(got["mx"][0]) and np.isnan(got["mn"][0])
    xs = x.copy()
    xs[4, 2] = 0.5
    bufs["x"] = xs.ravel()
    expected, got, _ = both(total, bufs, src_dir, options=Options(max_rblock=max_rblock))
    for n in ("s", "p", "mx", "mn"):
        np.testing.assert_allclose(got[n], expected[n], rtol=1e-5)
    # column sums: outer over columns, the inner loop strides down the rows
    i, rr = LoopVar("i0", C), LoopVar("r0", R)
    colsum = Kernel("red_sum_1", "reduction", (i,), (
        Phase((rr,), reductions=(Reduction("s", "add", Load("x", Index.affine([(rr, C), (i, 1)]), float32),
                                           float32),)),
        Phase(stores=(Store("cs", Index.affine([(i, 1)]), RowValue("s", float32)),))))
    expected, got, _ = both(colsum, {"x": xs.ravel(), "cs": np.zeros(C, np.float32)}, src_dir,
                            options=Options(max_rblock=max_rblock))
    np.testing.assert_allclose(got["cs"], xs.sum(0), rtol=1e-5, atol=1e-6)


def half_kernel():
    R, C = 3, 40
    r, c, c2 = LoopVar("i0", R), LoopVar("r0", C), LoopVar("r1", C)
    x = rng.standard_normal((R, C)).astype(np.float16)
    w = rng.standard_normal(C).astype(bfloat16.np)
    xl = lambda v: Load("x", Index.affine([(r, C), (v, 1)]), float16)  # noqa: E731
    k = Kernel("red_fused_sum_mul_0", "reduction", (r,), (
        Phase((c,), reductions=(Reduction("s", "add", xl(c), float16),)),
        Phase((c2,), stores=(Store("y", Index.affine([(r, C), (c2, 1)]), Op("mul", (
            Op("cast", (xl(c2),), bfloat16, (("dtype", bfloat16),)),
            Load("w", Index.affine([(c2, 1)]), bfloat16)), bfloat16)),)),
        Phase(stores=(Store("s", Index.affine([(r, 1)]), RowValue("s", float16)),)),
    ))
    return k, {"x": x.ravel(), "w": w, "y": np.zeros(R * C, bfloat16.np), "s": np.zeros(R, np.float16)}, x


def test_half_precision_loads_and_stores_compute_in_float32(src_dir):
    k, bufs, x = half_kernel()
    expected, got, tp = both(k, bufs, src_dir)
    np.testing.assert_allclose(got["s"].astype(np.float32), x.astype(np.float32).sum(1), rtol=2e-3, atol=2e-3)
    # one bfloat16 rounding (to nearest even) per op, as eager: the interpreter is patched to round
    np.testing.assert_allclose(got["y"].astype(np.float32), expected["y"].astype(np.float32), rtol=1e-2)
    src = tp.kernels[0].source
    assert ".to(tl.float32)" in src and ".to(tl.bfloat16)" in src and ".to(tl.float16)" in src


def every_op_kernel():
    n = 16
    i = LoopVar("i0", n)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[:4] = [np.nan, 2.5, -2.5, 0.0]
    y = (rng.standard_normal(n) * 2).astype(np.float32)
    y[np.abs(y) < 0.2] = 0.7
    xi = rng.integers(-9, 9, n)
    yi = rng.integers(1, 5, n) * rng.choice([-1, 1], n)
    bx = rng.random(n) > 0.5
    def f(name, d):
        return Load(name, Index.affine([(i, 1)]), d)

    X, Y, XI, YI, BX = f("x", float32), f("y", float32), f("xi", int64), f("yi", int64), f("bx", bool_)
    P = Op("add", (Op("abs", (X,), float32), Const(0.25, float32)), float32)  # positive
    cases = {}
    for op in ("neg", "abs", "relu", "sign", "exp", "tanh", "erf", "expm1", "sin", "cos", "sigmoid",
               "floor", "ceil", "round", "copy"):
        cases[op] = Op(op, (X,), float32)
    for op in ("log", "log1p", "sqrt", "rsqrt"):
        cases[op] = Op(op, (P,), float32)
    for op in ("add", "sub", "mul", "div", "maximum", "minimum", "floor_divide", "remainder"):
        cases[op] = Op(op, (X, Y), float32)
        cases[op + "_int"] = Op(op, (XI, YI), int64)
    for op in ("neg", "abs", "sign", "relu"):
        cases[op + "_int"] = Op(op, (XI,), int64)
    cases["pow"] = Op("pow", (P, Y), float32)
    for op in ("eq", "ne", "lt", "le", "gt", "ge"):
        cases[op] = Op(op, (X, Y), bool_)
        cases[op + "_int"] = Op(op, (XI, YI), bool_)
    for op in ("logical_and", "logical_or", "logical_xor"):
        cases[op] = Op(op, (BX, Op("gt", (X, Const(0.0, float32)), bool_)), bool_)
    cases["logical_not"] = Op("logical_not", (BX,), bool_)
    for op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        cases[op] = Op(op, (XI, YI), int64)
        cases[op + "_bool"] = Op(op, (BX, Op("gt", (X, Const(0.0, float32)), bool_)), bool_)
    cases["bitwise_not"] = Op("bitwise_not", (XI,), int64)
    cases["bitwise_not_bool"] = Op("bitwise_not", (BX,), bool_)
    for op in ("bitwise_left_shift", "bitwise_right_shift"):  # amounts -81..72: out of range too
        cases[op] = Op(op, (XI, Op("mul", (XI, Const(9, int64)), int64)), int64)
    cases["isnan"] = Op("isnan", (X,), bool_)
    cases["where"] = Op("where", (BX, X, Y), float32)
    cases["cast_f_i"] = Op("cast", (Op("mul", (Y, Const(3.0, float32)), float32),), int64,
                           (("dtype", int64),))
    cases["cast_i_f"] = Op("cast", (XI,), float32, (("dtype", float32),))
    cases["cast_f_b"] = Op("cast", (X,), bool_, (("dtype", bool_),))
    cases["cast_f_h"] = Op("cast", (Op("mul", (Y, Const(1 / 3, float32)), float32),), float16,
                           (("dtype", float16),))
    cases["arange"] = Op("mul", (LoopIndex(i), Const(3, int64)), int64)
    assert {name.removesuffix("_int").removesuffix("_bool") for name in cases} | {"cast"} >= set(EMITTERS)
    stores = tuple(Store(name, Index.affine([(i, 1)]), e) for name, e in cases.items())
    k = Kernel("poi_every_op_0", "pointwise", (i,), (Phase(stores=stores),))
    bufs = {"x": x, "y": y, "xi": xi, "yi": yi, "bx": bx}
    bufs.update({name: np.zeros(n, e.dtype.np) for name, e in cases.items()})
    return k, bufs, cases


def test_every_pointwise_op_matches_the_evaluator(src_dir):
    k, bufs, cases = every_op_kernel()
    expected, got, _ = both(k, bufs, src_dir)
    for name in cases:
        np.testing.assert_allclose(got[name].astype(np.float64), expected[name].astype(np.float64),
                                   rtol=2e-6, atol=1e-6, equal_nan=True, err_msg=name)


def split_kernel():
    # slice_scatter-like: copy base, then overwrite a region; the second launch must follow
    n = 10
    r0, r1 = LoopVar("r0", n), LoopVar("r1", 3)
    k = Kernel("poi_fused_copy_0", "pointwise", (), (
        Phase((r0,), stores=(Store("out", Index.affine([(r0, 1)]),
                                   Load("base", Index.affine([(r0, 1)]), float32)),)),
        Phase((r1,), stores=(Store("out", Index.affine([(r1, 2)], offset=1),
                                   Load("src", Index.affine([(r1, 1)]), float32)),)),
    ))
    base, src = np.arange(n, dtype=np.float32), -np.arange(1, 4, dtype=np.float32)
    return k, {"base": base, "src": src, "out": np.zeros(n, np.float32)}


def test_split_kernel_launches_each_phase_in_order(src_dir):
    k, bufs = split_kernel()
    expected, got, tp = both(k, bufs, src_dir)
    np.testing.assert_array_equal(got["out"], expected["out"])
    assert [s.fn for s in tp.kernels[0].launches] == ["triton_poi_fused_copy_0_p0",
                                                      "triton_poi_fused_copy_0_p1"]


def test_unknown_op_is_not_implemented():
    i = LoopVar("i0", 4)
    k = Kernel("poi_0", "pointwise", (i,), (Phase(stores=(Store("y", Index.affine([(i, 1)]), Op(
        "frobnicate", (Load("x", Index.affine([(i, 1)]), float32),), float32)),)),))
    with pytest.raises(NotImplementedError, match="frobnicate"):
        lower_kernel(k, {"x": float32, "y": float32}, {"x": 4, "y": 4})


def test_int64_offsets_only_where_int32_could_overflow():
    k, bufs, _ = pointwise_kernel(rng)
    dts = {n: get_dtype(a.dtype) for n, a in bufs.items()}
    small = lower_kernel(k, dts, {n: a.size for n, a in bufs.items()})
    big = lower_kernel(k, dts, {"x": 2 ** 31, "b": 7, "y": 35})
    assert "to(tl.int64)" not in small.source
    assert "tl.program_id(0).to(tl.int64)" in big.source


# ---------------------------------------------------------------- scheduled programs
f32, i64 = tc.float32, tc.int64


def random_input(shape, dtype, high=None):
    return _random_input(rng, shape, dtype, high)


def check_graph(src_dir, fn, *specs, rtol=1e-5, atol=1e-6, options=None, kernels=None):
    """Trace fn, schedule it, run it through Triton; compare with eager and the evaluator."""
    graph = trace(fn, *[(s, d) for s, d, *_ in specs])
    arrays = [random_input(s, d, *rest) for s, d, *rest in specs]
    expected = interpret(graph, arrays)
    prog, _ = schedule(graph)
    inputs = dict(zip(prog.inputs, arrays))
    reference = run_program(prog, inputs)
    tp = TritonProgram(prog, device="interpreter", source_dir=src_dir, options=options)
    got = tp(inputs)
    for name, e in zip(prog.outputs, expected):
        np.testing.assert_allclose(got[name].reshape(e.shape), e, rtol=rtol, atol=atol,
                                   err_msg=format_program(prog) + "\n" + tp.source)
        np.testing.assert_allclose(got[name], reference[name], rtol=rtol, atol=atol)
    if kernels is not None:
        assert len(prog.kernels) == kernels
    return prog, tp


def test_scheduled_softmax_layernorm_log_softmax(src_dir):
    prog, tp = check_graph(src_dir, lambda x: tc.softmax(x, 1), ((8, 33), f32), kernels=1)
    assert tp.kernels[0].kind == "rows"
    # the persistent row keeps exp(x - max) in registers: the output is stored once, never read
    out = pointer_param(prog.outputs[0])
    assert tp.kernels[0].source.count(f"tl.store({out}") == 1
    assert f"tl.load({out}" not in tp.kernels[0].source
    prog, looped = check_graph(src_dir, lambda x: tc.softmax(x, 1), ((3, 33), f32),
                               options=Options(max_rblock=8))
    out = pointer_param(prog.outputs[0])
    assert looped.kernels[0].source.count(f"tl.load({out}") == 1  # across loops: stored, read back
    check_graph(src_dir, lambda x: tc.log_softmax(x, -1), ((5, 17), f32), options=Options(max_rblock=8))

    def layer_norm(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) * (x - mu)).mean(-1, keepdim=True)
        return (x - mu) * tc.rsqrt(var + 1e-5) * w + b

    check_graph(src_dir, layer_norm, ((6, 32), f32), ((32,), f32), ((32,), f32), rtol=1e-4, atol=1e-5)


def test_scheduled_independent_reductions_in_one_pass_and_a_hoisted_cat(src_dir):
    """Two sums that share a pass over the row (persistent and looped rows), and a cat
    along columns whose pieces run inside one outer loop (passes/collapse.py)."""
    def sums(x, y):
        return (x * y).sum(1) + x.sum(1) * (y * y).sum(1)

    for options in (None, Options(max_rblock=8)):
        prog, _ = check_graph(src_dir, sums, ((6, 40), f32), ((6, 40), f32), rtol=1e-4, atol=1e-5,
                              options=options, kernels=1)
        assert [len(p.reductions) for p in prog.kernels[0].phases if p.reductions] == [3]
    prog, tp = check_graph(src_dir, lambda a, b: tc.cat([a, b * 2], 1), ((3, 4), f32), ((3, 2), f32))
    assert [len(k.outer) for k in prog.kernels] == [1] and len(tp.plan) == 1


def test_scheduled_cross_entropy_and_argmax(src_dir):
    def ce(logits, y):
        logp = tc.log_softmax(logits, 1)
        return -logp.gather(1, y.unsqueeze(1)).mean(), logits.argmax(1)

    check_graph(src_dir, ce, ((16, 10), f32), ((16,), i64, 10))


def test_scheduled_matmul_bias_relu_and_batched(src_dir):
    prog, tp = check_graph(src_dir, lambda x, w, b: tc.relu(x @ w.T + b), ((8, 12), f32), ((5, 12), f32),
                           ((5,), f32), kernels=1, rtol=1e-4, atol=1e-5)
    assert tp.kernels[0].kind == "matmul" and "tl.dot" in tp.kernels[0].source
    check_graph(src_dir, lambda a, b: a @ b, ((2, 3, 4, 5), f32), ((3, 5, 2), f32), rtol=1e-4, atol=1e-5)


def test_scheduled_index_select_index_add_cat(src_dir):
    check_graph(src_dir, lambda a, b: tc.cat([a, b * 2], 1), ((3, 2), f32), ((3, 4), f32))
    check_graph(src_dir, lambda x, i: x.index_select(0, i) + 1, ((6, 3), f32), ((4,), i64, 6))
    _, tp = check_graph(src_dir, lambda x, i, s: x.index_add(0, i, s), ((6, 3), f32), ((9,), i64, 3),
                        ((9, 3), f32))
    assert "tl.atomic_add(" in tp.source


def test_scheduled_mlp_forward_and_backward_step(src_dir):
    """One SGD step of a 2-layer MLP with cross-entropy, the backward written out by hand."""
    B, D, H, C, lr = 8, 12, 16, 4, 0.1

    def step(x, y, w1, b1, w2, b2):
        h = tc.relu(x @ w1.T + b1)
        logits = h @ w2.T + b2
        logp = tc.log_softmax(logits, 1)
        loss = -logp.gather(1, y.unsqueeze(1)).mean()
        onehot = (tc.arange(C).unsqueeze(0) == y.unsqueeze(1)).to(tc.float32)
        g = (tc.exp(logp) - onehot) / B  # dloss/dlogits
        gw2, gb2 = g.T @ h, g.sum(0)
        gh = tc.where(h > 0, g @ w2, h * 0)
        gw1, gb1 = gh.T @ x, gh.sum(0)
        return loss, w1 - lr * gw1, b1 - lr * gb1, w2 - lr * gw2, b2 - lr * gb2

    prog, tp = check_graph(src_dir, step, ((B, D), f32), ((B,), i64, C), ((H, D), f32), ((H,), f32),
                           ((C, H), f32), ((C,), f32), rtol=1e-4, atol=1e-5)
    kinds = {k.kind for k in tp.kernels}
    assert {"matmul", "rows"} <= kinds


# ---------------------------------------------------------------- PTX for sm_90, offline
_COMPILE_SCRIPT = textwrap.dedent("""
    import json, sys, os
    sys.path.insert(0, {tests!r})
    import test_triton_lower as t
    from tracecc.codegen.triton import launch
    from tracecc.codegen.triton.lower import Options, set_float32_matmul_precision
    set_float32_matmul_precision("high")
    cases = {{
        "pointwise": (t.pointwise_kernel(t.rng)[:2], 4096), "softmax": (t.softmax_kernel(t.rng)[:2], 4096),
        "softmax_looped": (t.softmax_kernel(t.rng)[:2], 4), "argmax": (t.argmax_kernel()[:2], 4096),
        "argmax_looped": (t.argmax_kernel()[:2], 2), "half": (t.half_kernel()[:2], 4096),
        "every_op": (t.every_op_kernel()[:2], 4096), "split": (t.split_kernel(), 4096),
        "scatter": (t.scatter_kernel(), 4096),
        "matmul": (t.matmul_kernel(t.rng, M=64, K=64, N=64), 4096),
        "matmul_f16": (t.matmul_kernel(t.rng, M=64, K=64, N=64, dtype=t.float16), 4096),
        "matmul_int": (t.matmul_kernel(t.rng, M=20, K=8, N=16, dtype=t.int64), 4096),
        "matmul_medium": (t.matmul_kernel(t.rng, M=64, K=64, N=64), 4096, "medium"),
    }}
    out = {{}}
    for name, ((k, bufs), max_rblock, *precision) in cases.items():
        kern = t.lower_kernel(k, {{n: t.get_dtype(a.dtype) for n, a in bufs.items()}},
                              {{n: a.size for n, a in bufs.items()}},
                              Options(max_rblock=max_rblock, matmul_precision=(precision or [None])[0]))
        for spec in kern.launches:
            config = launch.configs(spec, interpret=False, max_rblock=max_rblock)[0]
            ck = launch.compile_offline(kern, spec, config, arch=90, directory={src!r})
            out[spec.fn + ":" + name] = {{"ptx": ck.asm["ptx"], "cubin": len(ck.asm["cubin"])}}
    print(json.dumps(out))
""")


def test_generated_source_compiles_to_ptx_for_sm90_offline(src_dir):
    """triton.compile for GPUTarget("cuda", 90, 32) works without a GPU (codegen-facts §2.6). It
    needs a process where triton was imported for the GPU, not the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_DEFAULT_FP_FUSION="1", TRACECC_TEST_COMPILE_ONLY="1")
    script = _COMPILE_SCRIPT.format(tests=os.path.dirname(__file__), src=str(src_dir))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out) == 14  # every kernel kind (split has two launches)
    for name, r in out.items():
        assert ".target sm_90" in r["ptx"] and r["cubin"] > 0, name
        assert ".entry triton_" in r["ptx"], name
    ptx = {name.split(":")[1]: r["ptx"] for name, r in out.items()}
    # tensor cores for tf32 and f16 operands; none for the int64 fallback. "high" (tf32x3)
    # issues three tf32 products where "medium" issues one.
    assert "mma" in ptx["matmul"] and "tf32" in ptx["matmul"]
    assert ptx["matmul"].count("mma") >= 3 * ptx["matmul_medium"].count("mma") > 0
    assert "mma" in ptx["matmul_f16"] and "f16" in ptx["matmul_f16"]
    assert "mma" not in ptx["matmul_int"]
    assert "atom.global" in ptx["scatter"] or "red.global" in ptx["scatter"]
