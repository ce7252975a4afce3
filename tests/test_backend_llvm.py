"""The op table through the LLVM backend: every op, compiled with the default passes and
fused, equals eager within float32 tolerance; so do gradients of a compiled backward.

Inputs come from the table's own generators at a fixed seed and in every memory layout
(contiguous, strided, transposed), so views reach the index arithmetic of the kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracecc as tc
from tracecc.runtime.errors import DataDependentError

from op_cases import CASES
from op_harness import cast_inputs, drawn_inputs, make_inputs

LLVM = dict(backend="llvm")


def _leaves(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _close(got, want, what, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        tol = 2e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_op_table_on_llvm(case, data):
    arrays, layout = data.draw(drawn_inputs(case))
    arrays = cast_inputs(case, arrays, np.float32)
    inputs, _, _ = make_inputs(tc, case, arrays, layout)

    def fn(*xs):
        return case.fn(tc, *xs)

    try:
        eager = _leaves(fn(*inputs))
    except tc.TraceccError:
        return  # inputs eager refuses (e.g. max over an empty dimension)
    try:
        compiled = _leaves(tc.compile(fn, **LLVM)(*inputs))
    except DataDependentError:
        return  # nonzero / boolean masks: covered by the tracing tests
    for c, e in zip(compiled, eager):
        _close(c.detach().numpy(), e.detach().numpy(), f"{case.name} [{layout}]", np.float32)


GRAD_CASES = [c for c in CASES if c.grad]


def _grads(fn, case, arrays, layout, compiled):
    inputs, leaves, _ = make_inputs(tc, case, arrays, layout, requires_grad=True)
    f = tc.compile(fn, **LLVM) if compiled else fn
    outs = _leaves(f(*inputs))
    rng = np.random.default_rng(1)
    loss = None
    for o in outs:
        if o.dtype.is_floating_point and o.requires_grad:
            w = tc.tensor(rng.standard_normal(tuple(o.shape)).astype(np.float32))
            term = (o * w).sum()
            loss = term if loss is None else loss + term
    if loss is None:
        return []
    loss.backward()
    return [None if leaf is None or leaf.grad is None else leaf.grad.numpy() for leaf in leaves]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.name for c in GRAD_CASES])
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_op_table_gradients_on_llvm(case, data):
    """Forward compiled, backward through the compiled backward graph, vs eager autograd."""
    arrays, layout = data.draw(drawn_inputs(case))
    arrays = cast_inputs(case, arrays, np.float32)
    if not all(a.size for a in arrays):
        return

    def fn(*xs):
        return case.fn(tc, *xs)

    try:
        want = _grads(fn, case, arrays, layout, compiled=False)
        got = _grads(fn, case, arrays, layout, compiled=True)
    except (tc.TraceccError, DataDependentError):
        return
    for g, w in zip(got, want):
        if w is None:
            continue
        assert g is not None, case.name
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"{case.name} [{layout}]")


def test_outputs_held_by_the_user_are_never_overwritten():
    f = tc.compile(lambda x: x * 2 + 1, **LLVM)
    a, b = tc.randn(1000), tc.randn(1000)
    ya = f(a)
    keep = ya.numpy().copy()
    for _ in range(3):  # buffers nobody holds are recycled; ya's must not be
        yb = f(b)
    np.testing.assert_array_equal(ya.numpy(), keep)
    np.testing.assert_array_equal(yb.numpy(), b.numpy() * 2 + 1)
    view = f(a)[:10]  # a view keeps its base alive too
    f(b)
    np.testing.assert_array_equal(view.numpy(), keep[:10])


def test_integer_max_min_and_unknown_ops_attribute():
    x = tc.tensor([[3, -7, 2], [0, 5, -1]], dtype=tc.int32)
    f = tc.compile(lambda x: (x.amax(1), x.amin(0)), **LLVM)
    mx, mn = f(x)
    np.testing.assert_array_equal(mx.numpy(), [3, 5])
    np.testing.assert_array_equal(mn.numpy(), [0, -7, -1])
    from tracecc.runtime.registry import ops
    assert not hasattr(ops, "no_such_primitive")  # AttributeError, not KeyError


@pytest.mark.parametrize("shape", [(16, 16), (17, 33), (100, 3), (3, 100), (40, 1030), (2, 37, 19)])
def test_transposed_reads_walk_in_tiles_and_stay_exact(shape):
    """A materialised transpose (or a permute feeding a pointwise op) is lowered in square
    tiles when both loops are long enough; any shape, tile edges included, is exact."""
    from tracecc.codegen.llvm import lower

    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[-2]).astype(np.float32)

    def f(x, b):  # out[..., i, j] = 2 * x[..., j, i] + b[j]: reads x transposed
        return x.transpose(-1, -2) * 2.0 + b

    cf = tc.compile(f, **LLVM)
    got = cf(tc.tensor(x), tc.tensor(b)).numpy()
    np.testing.assert_array_equal(got, np.swapaxes(x, -1, -2) * np.float32(2.0) + b)
    (entry,) = cf._entries
    tiled = [k for k in entry.runner.program.kernels if lower._transpose_tile(k)]
    assert bool(tiled) == (min(shape[-2:]) >= lower.TRANSPOSE_TILE), shape


@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 1), (3, 2)])
def test_pooling_windows_are_unrolled_and_exact(kernel_size, stride):
    """A pooling window (or any loop nest of a few iterations innermost) is unrolled, so the
    loop around it runs long; values and gradients stay those of eager mode."""
    from tracecc.codegen.llvm import lower

    x = np.random.default_rng(kernel_size).standard_normal((2, 3, 11, 12)).astype(np.float32)

    def f(x):
        y = tc.nn.functional.max_pool2d(x, kernel_size, stride)
        y.sum().backward()
        return y, x.grad

    cf = tc.compile(f, **LLVM)
    ex = tc.tensor(x, requires_grad=True)
    cx = tc.tensor(x, requires_grad=True)
    want, got = f(ex), cf(cx)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g.detach().numpy(), w.detach().numpy())
    if kernel_size == stride:  # a reshape into windows, reduced over (2, 2): unrolled
        assert "llvm.loop.unroll.full" in cf._entries[0].runner.compiled.llvm_ir
    assert lower._tiny_suffix([64, 14, kernel_size, kernel_size]) == 2
    assert lower._tiny_suffix([64, 14, 5]) == 0 and lower._tiny_suffix([7, 2]) == 1


def test_small_kernels_are_compiled_for_size_large_ones_for_speed():
    f = tc.compile(lambda x: (x * 2 + 1).relu(), **LLVM)
    small, large = tc.randn(100), tc.randn(1 << 20)
    for x in (small, large):
        np.testing.assert_array_equal(f(x).numpy(), np.maximum(x.numpy() * 2 + 1, 0))
    irs = [e.runner.compiled.llvm_ir for e in f._entries]
    assert "optsize" in irs[0] and "optsize" not in irs[1]


def test_kernels_that_differ_only_in_their_buffers_share_one_function(monkeypatch):
    """A model's repeated layers give kernels that are the same code on other buffers: LLVM
    compiles one function for them, entry calls it with each call's own buffers, and the
    per-kernel profile (TRACECC_LOGS=perf) still times every kernel."""
    from tracecc.codegen.llvm.lower import shared_functions

    ws = [tc.randn(16, 16) for _ in range(4)]

    def layers(x):
        for w in ws:
            x = (x @ w).relu() * 0.5 + x
        return x

    cf = tc.compile(layers, **LLVM)
    x = tc.randn(8, 16)
    np.testing.assert_allclose(cf(x).numpy(), layers(x).numpy(), rtol=1e-5, atol=1e-6)
    compiled = cf._entries[0].runner.compiled
    program = compiled.program
    functions = {fn for fn, _ in shared_functions(program).values()}
    assert len(functions) < len(program.kernels)
    assert compiled.llvm_ir.count('define void @"') == len(functions) + 1  # and entry
    rows = compiled.profile(compiled.converted, repeat=1)
    assert [r["kernel"] for r in rows] == [k.name for k in program.kernels]
