"""Property test: random programs of pointwise, reduction, movement and matmul ops, compiled
(default passes, fusion, LLVM) vs eager, values and gradients."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracecc as tc

UNARY = [tc.exp, tc.tanh, tc.sigmoid, tc.relu, tc.neg, lambda x: x * x, lambda x: tc.log(x * x + 1)]
BINARY = [tc.add, tc.sub, tc.mul, tc.maximum, lambda a, b: a / (b * b + 1)]


def _apply(step, pool):
    """One random step on a pool of (N, M) tensors; returns the new tensor (same shape)."""
    kind, i, j, k = step
    a, b = pool[i % len(pool)], pool[j % len(pool)]
    if kind == "unary":
        return UNARY[k % len(UNARY)](a)
    if kind == "binary":
        return BINARY[k % len(BINARY)](a, b)
    if kind == "rowreduce":  # a reduction broadcast back over its rows
        axis = k % 2
        red = [a.sum(axis, keepdim=True), a.amax(axis, keepdim=True), a.mean(axis, keepdim=True)][k % 3]
        return b - red
    if kind == "softmax":
        return tc.softmax(a, k % 2)
    if kind == "transpose":  # a square view, through index arithmetic
        return a.T + b
    if kind == "matmul":
        return tc.tanh(a @ b.T @ a / 8)
    raise AssertionError(kind)


steps = st.lists(st.tuples(st.sampled_from(["unary", "binary", "rowreduce", "softmax", "transpose", "matmul"]),
                           st.integers(0, 7), st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=7)


def _program(steps_):
    def fn(x, y):
        pool = [x, y]
        for s in steps_:
            pool.append(_apply(s, pool))
        return pool[-1], pool[-1].sum() + pool[len(pool) // 2].mean()
    return fn


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, seed=st.integers(0, 2**16))
def test_random_programs_compile_to_eager_values_and_gradients(steps, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((6, 6)).astype(np.float32) * 0.5 for _ in range(2)]
    fn = _program(steps)

    def run(f):
        x, y = (tc.tensor(a, requires_grad=True) for a in xs)
        out, loss = f(x, y)
        loss.backward()
        grads = [None if t.grad is None else t.grad.numpy() for t in (x, y)]
        return [out.detach().numpy(), loss.item()] + grads

    want = run(fn)
    got = run(tc.compile(fn, backend="llvm"))
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
