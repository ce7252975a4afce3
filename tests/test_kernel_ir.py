"""The kernel IR and its reference evaluator, on hand-written kernels of every kind."""

import numpy as np
import pytest

from tracecc.codegen.llvm.runner import CompiledProgram
from tracecc.passes.kernel_eval import run_kernel as eval_kernel
from tracecc.passes.kernel_eval import run_program
from tracecc.passes.kernel_ir import (
    Buffer, Const, Index, Kernel, Load, LoopVar, Op, Phase, Program, Reduction,
    RowValue, Store, Term, format_kernel, format_program,
)
from tracecc.runtime.dtypes import bool_, float32, get_dtype, int64
from kernel_cases import matmul_kernel, pointwise_kernel, softmax_kernel

rng = np.random.default_rng(0)


def llvm_kernel(k, bufs):
    """Run one kernel through the LLVM backend, writing into bufs like the evaluator does."""
    buffers = {n: Buffer(n, a.size, get_dtype(a.dtype), "input") for n, a in bufs.items()}
    results = CompiledProgram(Program(k.name, buffers, [k], list(bufs), list(bufs)))(bufs)
    for name, a in results.items():
        bufs[name][...] = a


@pytest.fixture(params=["evaluator", "llvm"])
def run_kernel(request):
    return eval_kernel if request.param == "evaluator" else llvm_kernel


def test_pointwise_with_broadcast_and_transposed_load(run_kernel):
    k, bufs, (x, b) = pointwise_kernel(rng)
    run_kernel(k, bufs)
    np.testing.assert_array_equal(bufs["y"].reshape(x.T.shape), np.maximum(x.T + b, 0))
    assert k.reads() == ["b", "x"] and k.writes() == ["y"]
    text = format_kernel(k)
    assert "relu(add(x[i0 + 5*i1], b[i1]))" in text


def test_softmax_is_one_kernel_with_three_phases(run_kernel):
    k, bufs, x = softmax_kernel(rng)
    run_kernel(k, bufs)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(bufs["y"].reshape(x.shape), e / e.sum(1, keepdims=True), rtol=1e-6)


def test_matmul_with_bias_relu_epilogue_and_transposed_weight(run_kernel):
    k, bufs = matmul_kernel(rng)
    a, w, bias = bufs["a"].reshape(6, 5), bufs["w"].reshape(3, 5), bufs["bias"]
    run_kernel(k, bufs)
    np.testing.assert_allclose(bufs["y"].reshape(6, 3), np.maximum(a @ w.T + bias, 0), rtol=1e-5, atol=1e-6)
    assert "acc = sum over k<5" in format_kernel(k)


@pytest.mark.parametrize("backend", ["evaluator", "llvm"])
def test_gather_by_label_and_scatter_add(backend):
    # cross-entropy pick: out[i] = logp[i, y[i]]; and its backward: g[i, y[i]] += 1
    B, C = 6, 4
    i = LoopVar("i0", B)
    logp = rng.standard_normal((B, C)).astype(np.float32)
    y = rng.integers(0, C, B)
    label = Load("y", Index.affine([(i, 1)]), int64)
    pick = Load("logp", Index(0, (Term(C, i), Term(1, expr=label))), float32)
    gather = Kernel("gat_0", "pointwise", (i,), (Phase(stores=(Store("out", Index.affine([(i, 1)]), pick),)),))
    scatter = Kernel("sca_1", "scatter", (i,), (Phase(stores=(
        Store("g", Index(0, (Term(C, i), Term(1, expr=label))), Const(1.0, float32), accumulate=True),)),))
    prog = Program("ce", {"logp": Buffer("logp", B * C, float32, "input"),
                          "y": Buffer("y", B, int64, "input"),
                          "out": Buffer("out", B, float32, "output"),
                          "g": Buffer("g", B * C, float32, "input")},  # accumulates into zeros
                   [gather, scatter], ["logp", "y", "g"], ["out", "g"])
    zeros = np.zeros(B * C, np.float32)
    res = (run_program(prog, {"logp": logp, "y": y, "g": zeros}) if backend == "evaluator"
           else CompiledProgram(prog)({"logp": logp.ravel(), "y": y, "g": zeros}))
    np.testing.assert_array_equal(res["out"], logp[np.arange(B), y])
    expected = np.zeros((B, C), np.float32)
    np.add.at(expected, (np.arange(B), y), 1)
    np.testing.assert_array_equal(res["g"].reshape(B, C), expected)
    assert "buffer g: float32[24] input" in format_program(prog)


def test_reshape_of_permuted_view_uses_div_mod_terms(run_kernel):
    # y = x.permute(1, 0).reshape(-1): flat index f -> x[f % R, f // R] for x of shape (R, C)
    R, C = 3, 4
    f = LoopVar("i0", R * C)
    x = np.arange(R * C, dtype=np.float32).reshape(R, C)
    load = Load("x", Index(0, (Term(C, f, mod=R), Term(1, f, div=R))), float32)
    k = Kernel("poi_0", "pointwise", (f,), (Phase(stores=(Store("y", Index.affine([(f, 1)]), load),)),))
    bufs = {"x": x.ravel(), "y": np.zeros(R * C, np.float32)}
    run_kernel(k, bufs)
    np.testing.assert_array_equal(bufs["y"], x.T.reshape(-1))


def test_argmax_reduction_and_bool_ops(run_kernel):
    R, C = 5, 6
    r, c = LoopVar("i0", R), LoopVar("r0", C)
    x = rng.standard_normal((R, C)).astype(np.float32)
    load = Load("x", Index.affine([(r, C), (c, 1)]), float32)
    k = Kernel("red_argmax_0", "reduction", (r,), (
        Phase((c,), reductions=(Reduction("a", "argmax", load, int64),)),
        Phase(stores=(Store("y", Index.affine([(r, 1)]), RowValue("a", int64)),
                      Store("pos", Index.affine([(r, 1)]),
                            Op("gt", (RowValue("a", int64), Const(2, int64)), bool_)))),
    ))
    bufs = {"x": x.ravel(), "y": np.zeros(R, np.int64), "pos": np.zeros(R, np.bool_)}
    run_kernel(k, bufs)
    np.testing.assert_array_equal(bufs["y"], x.argmax(1))
    np.testing.assert_array_equal(bufs["pos"], x.argmax(1) > 2)


def test_index_algebra_divmod_and_modulo():
    from tracecc.passes.indexing import Comp, reshape_back

    i, j, k = LoopVar("i", 2), LoopVar("j", 3), LoopVar("k", 3)
    # (2, 3, 1, 3, 1) viewed as (2, 3, 3): exact affine again
    back = reshape_back([Comp.of(i), Comp.of(j), Comp(), Comp.of(k), Comp()], (2, 3, 3), (2, 3, 1, 3, 1))
    assert back == [Comp.of(i), Comp.of(j), Comp.of(k)]
    flat = Comp.of(i).scale(9) + Comp.of(j).scale(3) + Comp.of(k)
    assert flat.modulo(3) == Comp.of(k)  # multiples of 3 vanish
    assert flat.divmod(3, 3) == Comp.of(j)
    f = LoopVar("f", 12)  # a merged dimension split again needs floor-division and modulo
    assert reshape_back([Comp.of(f)], (3, 4), (12,)) == [Comp(0, (Term(1, f, 4, 0),)), Comp(0, (Term(1, f, 1, 4),))]
