"""Merging outer loops that every access walks as one (passes/collapse.py): which loops
merge, which stay apart, and that the merged kernels compute what the unmerged ones do
(kernel evaluator and LLVM) and what the graph interpreter computes."""

import numpy as np
import pytest

import tracecc as tc
from tracecc.codegen.llvm.runner import CompiledProgram
from tracecc.passes import schedule as schedule_module
from tracecc.passes.collapse import collapse_loops
from tracecc.passes.interpret import interpret
from tracecc.passes.kernel_eval import run_program
from tracecc.passes.kernel_ir import (
    Const, Index, Kernel, Load, LoopIndex, LoopVar, Op, Phase, Store, Term, format_kernel,
)
from tracecc.passes.schedule import schedule

from graph_builder import random_input, trace

f32 = tc.float32


def _kernel(outer, load_terms, store_terms, value=None):
    ld = Load("x", Index(0, tuple(load_terms)), f32)
    value = value or Op("exp", (ld,), f32)
    store = Store("y", Index(0, tuple(store_terms)), value)
    return Kernel("poi_k", "pointwise", tuple(outer), (Phase(stores=(store,)),))


def test_contiguous_loops_become_one():
    a, b, c = LoopVar("i0", 4), LoopVar("i1", 3), LoopVar("i2", 5)
    k = _kernel((a, b, c), [Term(15, a), Term(5, b), Term(1, c)], [Term(15, a), Term(5, b), Term(1, c)])
    out = collapse_loops(k)
    assert [(v.name, v.size) for v in out.outer] == [("i0", 60)]
    assert "y[i0] = exp(x[i0])" in format_kernel(out)


@pytest.mark.parametrize("why,load_terms", [
    ("broadcast along the inner loop", [Term(3, LoopVar("i0", 4))]),
    ("transposed", [Term(1, LoopVar("i0", 4)), Term(4, LoopVar("i1", 3))]),
    ("a // on the loop", [Term(1, LoopVar("i0", 4), div=2), Term(1, LoopVar("i1", 3))]),
])
def test_loops_an_access_walks_differently_stay_apart(why, load_terms):
    a, b = LoopVar("i0", 4), LoopVar("i1", 3)
    k = _kernel((a, b), load_terms, [Term(3, a), Term(1, b)])
    assert collapse_loops(k) is k, why


def test_a_loop_whose_index_is_read_stays_and_size_one_loops_merge():
    a, b = LoopVar("i0", 4), LoopVar("i1", 3)
    k = _kernel((a, b), [Term(3, a), Term(1, b)], [Term(3, a), Term(1, b)],
                value=Op("add", (Load("x", Index(0, (Term(3, a), Term(1, b))), f32), LoopIndex(b)), f32))
    assert collapse_loops(k) is k
    one, c = LoopVar("i0", 1), LoopVar("i1", 7)
    k = _kernel((one, c), [Term(0, one), Term(1, c)], [Term(99, one), Term(1, c)])
    assert [v.size for v in collapse_loops(k).outer] == [7]


def _programs(fn, *specs):
    """The program schedule() builds, and the same program without collapsing."""
    graph = trace(fn, *specs)
    real = schedule_module.collapse_loops
    try:
        schedule_module.collapse_loops = lambda k: k
        plain, _ = schedule(graph)
    finally:
        schedule_module.collapse_loops = real
    collapsed, _ = schedule(graph)
    return graph, plain, collapsed


@pytest.mark.parametrize("fn,specs,loops", [
    # contiguous pointwise: one loop
    (lambda x, y: (x * y + 1).relu(), [((8, 3, 5, 7), f32), ((8, 3, 5, 7), f32)], [[840]]),
    # a bias along the channel axis: (n), (c), (h*w)
    (lambda x, b: x + b.reshape(3, 1, 1), [((4, 3, 5, 6), f32), ((3,), f32)], [[4, 3, 30]]),
    # a transposed read of the last two axes keeps them apart, the batch merges with none
    (lambda x: x.transpose(1, 2) * 2, [((2, 6, 9), f32)], [[2, 9, 6]]),
    # row reductions over contiguous rows: the row loops merge, the reduction loop stays
    (lambda x: x.softmax(-1), [((4, 5, 16), f32)], [[20]]),
])
def test_scheduled_kernels_collapse_and_compute_the_same(fn, specs, loops):
    graph, plain, collapsed = _programs(fn, *specs)
    assert [[v.size for v in k.outer] for k in collapsed.kernels] == loops
    rng = np.random.default_rng(0)
    arrays = [random_input(rng, s, d) for s, d in specs]
    expected = interpret(graph, arrays)
    for prog in (plain, collapsed):
        inputs = dict(zip(prog.inputs, arrays))
        for got in (run_program(prog, inputs), CompiledProgram(prog)(inputs)):
            for name, e in zip(prog.outputs, expected):
                np.testing.assert_allclose(got[name].reshape(e.shape), e, rtol=1e-6, atol=1e-6)


def _im2col(x):
    """A 3x3 convolution's patches, as examples/mnist_cnn.py builds them: pad, nine shifted
    slices, one cat."""
    p = tc.nn.functional.pad(x, (1, 1, 1, 1))
    return tc.cat([p[:, :, i:i + 5, j:j + 5] for i in range(3) for j in range(3)], 1)


@pytest.mark.parametrize("fn,specs,hoisted", [
    # padding (zero fill, then the interior) and the nine-piece cat: the batch goes outside
    (_im2col, [((4, 3, 5, 5), f32)], [4, 4]),
    # a cat along the batch axis: piece 2 writes where piece 1's rows b > 0 would: no
    (lambda a, b: tc.cat([a, b], 0) * 1, [((3, 4), f32), ((3, 4), f32)], None),
    # a cat along columns: each piece writes row b of the output only
    (lambda a, b: tc.cat([a, b], 1), [((3, 4), f32), ((3, 2), f32)], [3]),
    # pieces whose first loops differ in size: no
    (lambda a, b: tc.cat([a, b], 0), [((3, 4), f32), ((2, 4), f32)], None),
])
def test_phases_sharing_a_partitioning_loop_run_inside_it(fn, specs, hoisted):
    graph = trace(fn, *specs)
    prog, _ = schedule(graph)
    split = [k for k in prog.kernels if len(k.phases) > 1 and not any(p.reductions for p in k.phases)]
    assert split
    if hoisted:
        assert [k.outer[0].size for k in split if k.outer] == hoisted
    else:
        assert all(not k.outer for k in split)
    rng = np.random.default_rng(0)
    arrays = [random_input(rng, s, d) for s, d in specs]
    expected = interpret(graph, arrays)
    inputs = dict(zip(prog.inputs, arrays))
    for got in (run_program(prog, inputs), CompiledProgram(prog)(inputs)):
        for name, e in zip(prog.outputs, expected):
            np.testing.assert_array_equal(got[name].reshape(e.shape), e)


def test_a_piece_writing_into_the_next_row_keeps_the_phases_apart():
    """zero rows 0..3, then copy x into rows 1..4: run row by row, zeroing row b + 1 would
    wipe what the copy put there a step before."""
    from tracecc.passes.collapse import hoist_shared_loop
    S = 6
    b0, r0, b1, r1 = LoopVar("r0", 4), LoopVar("r1", S), LoopVar("r2", 4), LoopVar("r3", S)
    zero = Phase((b0, r0), stores=(Store("y", Index(0, (Term(S, b0), Term(1, r0))), Const(0.0, f32)),))

    def copy(offset):
        return Phase((b1, r1), stores=(Store("y", Index(offset, (Term(S, b1), Term(1, r1))),
                                             Load("x", Index(0, (Term(S, b1), Term(1, r1))), f32)),))

    shifted = Kernel("cpy_k", "pointwise", (), (zero, copy(S)))
    assert hoist_shared_loop(shifted) is shifted
    in_place = hoist_shared_loop(Kernel("cpy_k", "pointwise", (), (zero, copy(0))))
    assert [v.size for v in in_place.outer] == [4] and [len(p.loops) for p in in_place.phases] == [1, 1]
