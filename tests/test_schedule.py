"""Fusion and scheduling: graphs traced from real tracecc code become fused kernels whose
results match the graph interpreter (eager kernels), through the kernel evaluator and LLVM."""

import numpy as np

import tracecc as tc
from tracecc.codegen.llvm.runner import CompiledProgram
from tracecc.passes.kernel_eval import run_program
from tracecc.passes.kernel_ir import format_program
from tracecc.passes.schedule import schedule
from tracecc.runtime.registry import PRIMITIVES

from graph_builder import random_input as _random_input
from graph_builder import trace
from tracecc.passes.interpret import interpret

f32, i64 = tc.float32, tc.int64
rng = np.random.default_rng(0)


def random_input(shape, dtype, high=None):
    return _random_input(rng, shape, dtype, high)


def check(fn, *specs, kernels=None, fuse=True, rtol=1e-5, atol=1e-6):
    graph = trace(fn, *[(s, d) for s, d, *_ in specs])
    arrays = [random_input(s, d, *rest) for s, d, *rest in specs]
    expected = interpret(graph, arrays)
    prog, log = schedule(graph, fuse=fuse)
    inputs = {name: a for name, a in zip(prog.inputs, arrays)}
    for runner in (lambda: run_program(prog, inputs), lambda: CompiledProgram(prog)(inputs)):
        got = runner()
        for name, e in zip(prog.outputs, expected):
            np.testing.assert_allclose(got[name].reshape(e.shape), e, rtol=rtol, atol=atol,
                                       err_msg=format_program(prog))
    if kernels is not None:
        assert len(prog.kernels) == kernels, format_program(prog) + "\n" + "\n".join(log)
    return prog, log


def test_pointwise_chain_is_one_kernel():
    prog, _ = check(lambda x, w, b: tc.tanh(x * w + b) * tc.sigmoid(x),
                    ((64,), f32), ((), f32), ((), f32), kernels=1)
    assert prog.kernels[0].name.startswith("poi_fused_mul_add_tanh")


def test_views_fold_into_indices():
    check(lambda x: (x.T + 1).reshape(6, 4)[1:5:2] * 2, ((4, 6), f32), kernels=1)
    check(lambda x: x.permute(2, 0, 1).reshape(-1, 3).sum(1), ((3, 4, 2), f32))


def test_softmax_is_one_kernel():
    prog, log = check(lambda x: tc.softmax(x, 1), ((8, 33), f32), kernels=1)
    assert any("same rows" in line for line in log)


def test_log_softmax_and_layernorm_rows():
    check(lambda x: tc.log_softmax(x, -1), ((5, 17), f32), kernels=1)

    def layer_norm(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) * (x - mu)).mean(-1, keepdim=True)
        return (x - mu) * tc.rsqrt(var + 1e-5) * w + b

    check(layer_norm, ((6, 32), f32), ((32,), f32), ((32,), f32), kernels=1, rtol=1e-4, atol=1e-5)


def test_independent_reductions_share_one_pass_over_the_row():
    """Batch norm's backward sums dy and dy * xhat over the same rows: one pass computes
    both. A reduction that reads an earlier one (softmax's sum reads its max) gets its own."""
    prog, _ = check(lambda x, y: (x * y).sum(1) + x.sum(1) * (y * y).sum(1),
                    ((6, 40), f32), ((6, 40), f32), kernels=1, rtol=1e-4)
    (k,) = prog.kernels
    assert [len(p.reductions) for p in k.phases if p.reductions] == [3]
    prog, _ = check(lambda x: tc.softmax(x, 1), ((8, 33), f32), kernels=1)
    assert [len(p.reductions) for p in prog.kernels[0].phases if p.reductions] == [1, 1]


def test_an_exp_kept_for_later_is_stored_once_and_the_softmax_reads_it():
    """exp(x - max) is an output too (attention keeps it for its backward pass): the pass
    that sums it stores it once, and the softmax divides what it stored."""
    def f(x):
        e = tc.exp(x - x.amax(-1, keepdim=True))
        return e, e / e.sum(-1, keepdim=True)

    prog, _ = check(f, ((4, 16), f32), kernels=1)
    (k,) = prog.kernels
    exp_out, softmax_out = prog.outputs
    assert [s.buffer for p in k.phases for s in p.stores] == [exp_out, softmax_out]
    assert f"div({exp_out}[" in format_program(prog)


def test_cross_entropy_forward():
    def ce(logits, y):
        logp = tc.log_softmax(logits, 1)
        return -logp.gather(1, y.unsqueeze(1)).mean()

    check(ce, ((16, 10), f32), ((16,), i64, 10), rtol=1e-5)


def test_matmul_with_bias_relu_epilogue():
    prog, _ = check(lambda x, w, b: tc.relu(x @ w.T + b), ((8, 12), f32), ((5, 12), f32), ((5,), f32),
                    kernels=1, rtol=1e-4, atol=1e-5)
    assert prog.kernels[0].kind == "matmul"


def test_batched_matmul_broadcast():
    check(lambda a, b: a @ b, ((2, 3, 4, 5), f32), ((3, 5, 2), f32), rtol=1e-4, atol=1e-5)


def test_column_reduction_and_argmax():
    check(lambda x: (x.sum(0), x.argmax(1), x.amax(0, keepdim=True)), ((7, 9), f32))


def test_cat_slice_scatter_scatter_index_select():
    check(lambda a, b: tc.cat([a, b * 2], 1), ((3, 2), f32), ((3, 4), f32))
    check(lambda x, i: x.index_select(0, i) + 1, ((6, 3), f32), ((4,), i64, 6))
    check(lambda x, i, s: x.index_add(0, i, s), ((6, 3), f32), ((4,), i64, 6), ((4, 3), f32))

    def setitem(x, v):
        y = x * 1
        return tc.ops_slice_scatter(y, v) if False else _slice_scatter(y, v)

    check(setitem, ((4, 5), f32), ((2, 5), f32))


def _slice_scatter(y, v):
    from tracecc._tensor import apply
    return apply(PRIMITIVES["slice_scatter"], (y, v), {"starts": (1, 0), "stops": (3, 5), "steps": (1, 1)})


def test_output_that_is_an_input_and_unfused_mode():
    check(lambda x, y: (x, x + y), ((3,), f32), ((3,), f32))
    prog, _ = check(lambda x: tc.softmax(x, 1), ((4, 6), f32), fuse=False)
    assert len(prog.kernels) > 1


def test_mlp_forward_and_backward_kernel_count():
    def step(x, y, w1, b1, w2, b2):
        h = tc.relu(x @ w1.T + b1)
        logits = h @ w2.T + b2
        logp = tc.log_softmax(logits, 1)
        loss = -logp.gather(1, y.unsqueeze(1)).mean()
        return loss, h

    prog, log = check(step, ((16, 20), f32), ((16,), i64, 4), ((8, 20), f32), ((8,), f32),
                      ((4, 8), f32), ((4,), f32), rtol=1e-4, atol=1e-5)
    assert len(prog.kernels) <= 5, format_program(prog)


def test_max_pool_mask_reads_the_row_maximum_not_a_stale_buffer():
    # max-pool backward compares each window element with the window maximum: the maximum
    # is read through reshape+expand and must come from the same kernel's reduction
    def pool_mask(x):
        w = x.reshape(2, 3, 2, 3, 2)
        m = w.amax((2, 4))
        mask = (w == m.reshape(2, 3, 1, 3, 1).expand(2, 3, 2, 3, 2)).float()
        return mask.sum((2, 4), keepdim=True)

    prog, _ = check(pool_mask, ((2, 6, 6), f32), kernels=1)
    graph = trace(pool_mask, ((2, 6, 6), f32))
    x = random_input((2, 6, 6), f32)
    np.testing.assert_array_equal(interpret(graph, [x])[0], np.ones((2, 3, 1, 3, 1), np.float32))


def test_reading_a_reduction_across_rows_gets_its_own_kernel():
    prog, log = check(lambda x: x + x.amax(1).reshape(1, 4), ((4, 4), f32), kernels=2)
    assert any("across rows" in line for line in log)


def test_softmax_stores_only_its_result():
    prog, _ = check(lambda x: tc.softmax(x, 1), ((8, 33), f32), kernels=1)
    from tracecc.passes.kernel_ir import Op, walk_kernel
    k = prog.kernels[0]
    stores = {s.buffer for p in k.phases for s in p.stores}
    assert stores == set(prog.outputs)  # no temporary for the exp tile
    # exp(x - max) is computed once per element: the sum's pass stores it in the output,
    # the last pass divides it in place
    assert len({e for e in walk_kernel(k) if isinstance(e, Op) and e.op == "exp"}) == 1
    assert not any(isinstance(e, Op) and e.op == "exp" for s in k.phases[-1].stores
                   for e in [s.value, *getattr(s.value, "args", ())])


def test_a_member_read_by_a_later_reduction_is_recomputed_not_loaded():
    # y = expand(column sums) is an output stored in the kernel's last pass, and a second
    # reduction of the same kernel reads it: it must be recomputed, not read unwritten
    def fn(g):
        y = (-g).sum(0, keepdim=True).expand(6, 6)
        return y, (-y).sum(0)

    check(fn, ((6, 6), f32), kernels=1)


def test_matmul_with_a_constant_operand():
    # the backward of mean(x @ w) multiplies a broadcast constant gradient by w
    check(lambda w: tc.full((3, 4), 0.5) @ w, ((4, 5), f32), rtol=1e-5)


def test_a_sum_of_many_buffers_read_through_a_broadcast_is_stored_once():
    # a max-pool backward spreads each pooled gradient over its window: when that gradient
    # is a sum of several buffers (a conv's input gradient), it is computed once, not once
    # per window element
    def spread(a, b, c, d, x):
        g = (a + b + c + d).reshape(2, 3, 1, 4, 1).expand(2, 3, 2, 4, 2)
        return g * x.reshape(2, 3, 2, 4, 2)

    prog, log = check(spread, *[((2, 3, 4), f32)] * 4, ((2, 6, 8), f32), kernels=2)
    assert any("broadcast 4x" in line for line in log), "\n".join(log)

    def cheap(a, b, x):  # two loads: recomputing them is cheaper than a buffer
        return (a + b).reshape(2, 3, 1, 4, 1).expand(2, 3, 2, 4, 2) * x.reshape(2, 3, 2, 4, 2)

    check(cheap, ((2, 3, 4), f32), ((2, 3, 4), f32), ((2, 6, 8), f32), kernels=1)


def test_a_residual_stream_read_by_every_later_layer_is_stored_not_recomputed():
    # x_k = x_{k-1} + f(x_{k-1}): each x_k has two consumers; inline, the sum would grow by
    # a term per layer and be recomputed in every later kernel
    def stream(x, a, b, c, d, e):
        stats = []
        for k, w in enumerate((a, b, c, d, e)):  # read by the next layer and by a reduction
            x = x + w
            stats.append(x.sum(k % 2))
        return stats

    prog, log = check(stream, *[((4, 8), f32)] * 6, rtol=1e-5)
    assert any("consumers, and computing it reads" in line for line in log), "\n".join(log)
    for k in prog.kernels:  # inline, the last layers' kernels read every earlier layer's
        assert len(k.reads()) <= 4, format_program(prog)


def test_unrelated_reductions_over_the_same_rows_get_kernels_of_their_own():
    def two(x, y):  # same rows, nothing shared: two kernels, not one with two phases
        return x.sum(0), (y * 2).sum(0)

    check(two, ((6, 5), f32), ((6, 5), f32), kernels=2)

    def shared(x):  # reading the same input: one pass
        return x.sum(0), (x * x).sum(0)

    check(shared, ((6, 5), f32), kernels=1)
