"""lower.py's loop shapes: column reductions run blocked (columns innermost), and the
exp-family pointwise loops ask the vectoriser for two interleaved vectors."""

import math

import numpy as np
import pytest

import tracecc as tc
from tracecc.codegen.llvm import lower
from tracecc.codegen.llvm.lower import BLOCK_COLUMNS_FROM, COLUMN_BLOCK, _column_var, _interleave
from tracecc.codegen.llvm.runner import CompiledProgram
from tracecc.passes.kernel_ir import (
    Buffer, Const, Index, Kernel, Load, LoopVar, Op, Phase, Program, Reduction, RowValue, Store, Term,
)
from tracecc.runtime.dtypes import float32, get_dtype

rng = np.random.default_rng(0)


def compiled_program(k, bufs, keep_ir=False):
    buffers = {n: Buffer(n, a.size, get_dtype(a.dtype), "input") for n, a in bufs.items()}
    return CompiledProgram(Program(k.name, buffers, [k], list(bufs), list(bufs)), keep_ir=keep_ir)


def column_softmax(R, C):
    """softmax over axis 0 of x[R, C]: three phases down each column."""
    c, r1, r2, r3 = LoopVar("i0", C), LoopVar("r0", R), LoopVar("r1", R), LoopVar("r2", R)

    def load(r):
        return Load("x", Index.affine([(r, C), (c, 1)]), float32)

    def shifted(r):
        return Op("sub", (load(r), RowValue("m", float32)), float32)

    return Kernel("red_fused_softmax_0", "reduction", (c,), (
        Phase((r1,), reductions=(Reduction("m", "maximum", load(r1), float32),)),
        Phase((r2,), reductions=(Reduction("s", "add", Op("exp", (shifted(r2),), float32), float32),)),
        Phase((r3,), stores=(Store("y", Index.affine([(r3, C), (c, 1)]),
                                   Op("div", (Op("exp", (shifted(r3),), float32),
                                              RowValue("s", float32)), float32)),)),
    ))


@pytest.mark.parametrize("R,C", [(7, 3), (33, COLUMN_BLOCK + 5), (300, 2 * COLUMN_BLOCK + 1)])
def test_column_softmax_runs_blocked_and_matches_numpy(R, C):
    k = column_softmax(R, C)
    # tiny reductions keep the plain loops (cheaper to compile); the values agree either way
    assert _column_var(k) is (k.outer[0] if R * C >= BLOCK_COLUMNS_FROM else None)
    x = rng.standard_normal((R, C)).astype(np.float32)
    bufs = {"x": x.ravel(), "y": np.zeros(R * C, np.float32)}
    out = compiled_program(k, bufs)(bufs)["y"].reshape(R, C)
    e = np.exp(x - x.max(0))
    np.testing.assert_allclose(out, e / e.sum(0), rtol=2e-6, atol=1e-7)


def test_row_kernels_and_argmax_are_not_blocked():
    R, C = 4, 9
    r, c = LoopVar("i0", R), LoopVar("r0", C)
    row = Load("x", Index.affine([(r, C), (c, 1)]), float32)
    assert _column_var(Kernel("red_sum", "reduction", (r,), (
        Phase((c,), reductions=(Reduction("s", "add", row, float32),)),))) is None
    col = Load("x", Index.affine([(c, R), (r, 1)]), float32)
    assert _column_var(Kernel("red_argmax", "reduction", (r,), (
        Phase((c,), reductions=(Reduction("a", "argmax", col, float32),)),))) is None


@pytest.mark.parametrize("shape,axis", [((300, 2500), 0), ((8, 128, 96), (0, 1)), ((6, 40, 1030), 1),
                                        ((5, 3), 0)])
def test_compiled_column_reductions_match_numpy(shape, axis):
    x = rng.standard_normal(shape).astype(np.float32)

    @tc.compile(backend="llvm")
    def f(t):
        mean = t.mean(axis, keepdim=True)
        return t.sum(axis), t.amax(axis), ((t - mean) * (t - mean)).mean(axis), t.argmax(0)

    s, m, v, a = (o.numpy() for o in f(tc.tensor(x)))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(s, x64.sum(axis), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(m, x.max(axis))
    np.testing.assert_allclose(v, x64.var(axis), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(a, x.argmax(0))


def pointwise(op, n=1000):
    i = LoopVar("i0", n)
    x = Load("x", Index.affine([(i, 1)]), float32)
    return Kernel(f"poi_{op}_0", "pointwise", (i,),
                  (Phase(stores=(Store("y", Index.affine([(i, 1)]), Op(op, (x,), float32)),)),))


def vector_loads(cp, name):
    body = cp.compiled.optimized_ir.split(f"@{name}(")[1].split("\n}\n")[0]
    return body.count("load <")


def test_exp_family_loops_are_interleaved_and_erf_is_not(monkeypatch):
    x = rng.standard_normal(1000).astype(np.float32)
    for op, want in [("sigmoid", 2), ("exp", 2), ("tanh", 2), ("erf", 0), ("log", 0)]:
        k = pointwise(op)
        assert _interleave(k) == want, op
        bufs = {"x": x, "y": np.zeros_like(x)}
        cp = compiled_program(k, bufs, keep_ir=True)
        assert ("llvm.loop.interleave.count" in cp.llvm_ir) == bool(want), op
        if want:  # LLVM takes the loop ID: more vector loads (interleaved, plus an epilogue)
            with monkeypatch.context() as m:
                m.setattr(lower, "_interleave", lambda k: 0)
                plain = compiled_program(k, bufs, keep_ir=True)
            assert vector_loads(cp, k.name) > vector_loads(plain, k.name), op
        if op in ("sigmoid", "exp", "tanh"):
            ref = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "exp": np.exp, "tanh": np.tanh}[op]
            np.testing.assert_allclose(cp(bufs)["y"], ref(x.astype(np.float64)), rtol=1e-6)


def test_strided_sum_broadcast_over_columns_runs_blocked():
    """y[i, j] = sum_r x[r, i] for every j (a broadcast before a transpose, as in W5's
    backward): no load depends on j and the rows are strided, so j goes innermost."""
    R, I, J = 256, 50, 70  # R * J above BLOCK_COLUMNS_FROM
    i, j, r = LoopVar("i0", I), LoopVar("i1", J), LoopVar("r0", R)
    k = Kernel("red_fused_sum_0", "reduction", (i, j), (
        Phase((r,), reductions=(Reduction("s", "add", Load("x", Index.affine([(r, I), (i, 1)]), float32),
                                          float32),)),
        Phase((), stores=(Store("y", Index.affine([(i, J), (j, 1)]), RowValue("s", float32)),)),
    ))
    assert _column_var(k) is j
    x = rng.standard_normal((R, I)).astype(np.float32)
    bufs = {"x": x.ravel(), "y": np.zeros(I * J, np.float32)}
    out = compiled_program(k, bufs)(bufs)["y"].reshape(I, J)
    np.testing.assert_allclose(out, np.repeat(x.sum(0)[:, None], J, 1), rtol=1e-6)


def test_values_no_loop_changes_are_computed_before_the_loops():
    """y[i] = x[i] * beta ** step + n // d, as AdamW's bias correction reads its step: the
    pow of two scalars runs once in "entry", not per element (a libm call each, before).
    An integer division stays in the loop: the loop may not run, and d may be 0."""
    n = 1000
    i = LoopVar("i0", n)

    def scalar(name, dtype=float32):
        return Load(name, Index.affine([]), dtype)

    int64 = get_dtype("int64")
    correction = Op("pow", (scalar("beta"), scalar("step")), float32)
    quotient = Op("cast", (Op("floor_divide", (scalar("n", int64), scalar("d", int64)), int64),),
                  float32, (("dtype", float32),))
    value = Op("add", (Op("mul", (Load("x", Index.affine([(i, 1)]), float32), correction), float32),
                       quotient), float32)
    k = Kernel("poi_fused_pow_0", "pointwise", (i,), (Phase(stores=(Store("y", Index.affine([(i, 1)]), value),)),))
    x = rng.standard_normal(n).astype(np.float32)
    bufs = {"x": x, "beta": np.array([0.9], np.float32), "step": np.array([7.0], np.float32),
            "n": np.array([17]), "d": np.array([5]), "y": np.zeros(n, np.float32)}
    cp = compiled_program(k, bufs, keep_ir=True)
    fn = cp.llvm_ir.split(f'@"{k.name}"(')[1].split("\n}\n")[0]
    entry, loops = fn.split("\nbody:")
    assert "llvm.pow" in entry and "llvm.pow" not in loops
    assert "sdiv" not in entry
    np.testing.assert_allclose(cp(bufs)["y"], x * np.float32(0.9) ** 7 + 3, rtol=1e-6)


def test_max_of_a_masked_row_stays_vectorised_and_keeps_nan_and_inf():
    """max over where(mask, -inf, x), as attention's causal mask feeds softmax: LLVM used to
    turn it into a conditional reduction and leave it scalar (3x slower than unmasked)."""
    R, C = 16, 64
    i, r = LoopVar("i0", R), LoopVar("r0", C)
    masked = Op("where", (Load("m", Index.affine([(i, C), (r, 1)]), get_dtype("bool")),
                          Const(-math.inf, float32), Load("x", Index.affine([(i, C), (r, 1)]), float32)),
                float32)
    k = Kernel("red_fused_where_amax_0", "reduction", (i,), (
        Phase((r,), reductions=(Reduction("m0", "maximum", masked, float32),)),
        Phase((), stores=(Store("y", Index.affine([(i, 1)]), RowValue("m0", float32)),)),
    ))
    x = rng.standard_normal((R, C)).astype(np.float32)
    m = rng.random((R, C)) < 0.5
    m[3] = True  # every element masked: -inf
    x[5, 7], m[5, 7] = np.nan, False  # a NaN that is not masked wins
    bufs = {"m": m.ravel(), "x": x.ravel(), "y": np.zeros(R, np.float32)}
    cp = compiled_program(k, bufs, keep_ir=True)
    want = np.where(m, -np.inf, x).max(1)
    np.testing.assert_array_equal(cp(bufs)["y"], want)
    body = cp.compiled.optimized_ir.split(f"@{k.name}(")[1].split("\n}\n")[0]
    assert "x float> @llvm.maximum" in body or "vector.reduce.fmaximum" in body


def test_an_update_written_in_place_vectorises_without_a_runtime_overlap_check(monkeypatch):
    """p = p - 0.01 * sqrt(|g|) stored into p's own array: the output and input pointers are
    equal, so the vectoriser's runtime overlap check would always pick its scalar loop (an
    AdamW step's update kernels ran 7x slower). The kernel's loads and stores form an access
    group its loop declares parallel: no check. A scatter-add keeps the check."""
    n = 4096
    i = LoopVar("i0", n)

    def at(name):
        return Load(name, Index.affine([(i, 1)]), float32)

    step = Op("mul", (Const(0.01, float32), Op("sqrt", (Op("abs", (at("g"),), float32),), float32)), float32)
    k = Kernel("poi_fused_sub_0", "pointwise", (i,),
               (Phase(stores=(Store("p_new", Index.affine([(i, 1)]), Op("sub", (at("p"), step), float32)),)),))
    buffers = {"p": Buffer("p", n, float32, "input"), "g": Buffer("g", n, float32, "input"),
               "p_new": Buffer("p_new", n, float32, "output")}
    prog = Program(k.name, buffers, [k], ["p", "g"], ["p_new"])

    def program():
        return CompiledProgram(prog, keep_ir=True, writes={"p_new": "p"})

    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    want = p - np.float32(0.01) * np.sqrt(np.abs(g))
    cp = program()
    assert cp.memory.inplace == {"p_new": "p"}
    (out,) = cp.run([p, g])
    assert out is p  # written into p's own array
    np.testing.assert_allclose(p, want, rtol=1e-6)
    assert "vector.memcheck" not in cp.compiled.optimized_ir and "llvm.loop.parallel_accesses" in cp.llvm_ir
    monkeypatch.setattr(lower, "_iterations_independent", lambda k: False)
    assert "vector.memcheck" in program().compiled.optimized_ir
    monkeypatch.undo()
    scatter = Kernel("sca_k", "scatter", (i,), (Phase(stores=(
        Store("p_new", Index(0, (Term(1, expr=Op("abs", (Load("idx", Index.affine([(i, 1)]), get_dtype("int64")),),
                                                    get_dtype("int64"))),)), at("g"), accumulate=True),)),))
    assert not lower._iterations_independent(scatter)
    same_element = Kernel("poi_k", "pointwise", (i,), (Phase(stores=(Store("y", Index.affine([]), at("g")),)),))
    assert not lower._iterations_independent(same_element)  # every iteration writes y[0]
