"""The autograd pass (passes/autograd.py): gradient requests recorded by the tracer become
gradient nodes built from the registry's VJP rules.

On hand-written IR: the expanded graph computes numpy's gradient, builds only what was
asked for, honours stop_gradient, and leaves no marker behind. Through @compile: what
eager autograd does with detach, no_grad, requires_grad_, autograd.grad, seeds, several
backward calls and double backward, the compiled function does too."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.nn.functional as F
import tracecc.optim as optim
from tracecc.passes.autograd import MARKERS, differentiate
from tracecc.passes.interpret import interpret
from tracecc.passes.parser import parse_graph
from tracecc.passes.verify import verify

from train_steps import train_step

REF = dict(backend="interpreter", options={"passes": []})  # autograd only: exact eager arithmetic
rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _verify_every_pass(monkeypatch):
    monkeypatch.setenv("TRACECC_VERIFY", "1")


def _expand(text: str):
    g = parse_graph(text)
    verify(g)
    g, _ = differentiate(g)
    verify(g)
    assert not any(n.op in MARKERS for n in g.nodes)
    return g


MLP_LAYER = """
graph f(%x: f32[4,3], %w: f32[3,2]) {
  %0 = matmul(%x, %w) : f32[4,2]
  %1 = tanh(%0) : f32[4,2]
  %2 = sum(%1, axes=(0, 1), keepdim=False) : f32[]
  %3 = full(shape=(), value=1.0, dtype=f32) : f32[]
  %4 = grad(%2, %3, %w, request=0, n_roots=1, create_graph=False) : f32[3,2]
  return (%2, %4)
}
"""


def test_the_pass_computes_the_gradient_numpy_gives():
    g = _expand(MLP_LAYER)
    x, w = rng.standard_normal((4, 3), np.float32), rng.standard_normal((3, 2), np.float32)
    loss, gw = interpret(g, [x, w])
    np.testing.assert_allclose(gw, x.T @ (1 - np.tanh(x @ w) ** 2), rtol=1e-5, atol=1e-6)
    backward = [n for n in g.nodes if n.region == "backward"]
    assert backward and all(n.loc == "" or n.region == "backward" for n in backward)


def test_only_requested_gradients_are_built():
    """d/dw of x @ w needs one matmul (x^T g); the gradient for x (g w^T) is not built."""
    g = _expand(MLP_LAYER)
    assert sum(n.op == "matmul" for n in g.nodes) == 2
    both = _expand(MLP_LAYER.replace(
        "  return (%2, %4)",
        "  %5 = grad(%2, %3, %x, request=0, n_roots=1, create_graph=False) : f32[4,3]\n"
        "  return (%2, %4, %5)"))
    assert sum(n.op == "matmul" for n in both.nodes) == 3


def test_stop_gradient_blocks_and_seeds_scale():
    g = _expand("""
graph f(%x: f32[5], %s: f32[5]) {
  %0 = stop_gradient(%x) : f32[5]
  %1 = mul(%x, %0) : f32[5]
  %2 = grad(%1, %s, %x, request=0, n_roots=1, create_graph=False) : f32[5]
  return (%2)
}
""")
    x, s = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    (gx,) = interpret(g, [x, s])
    np.testing.assert_allclose(gx, s * x, rtol=1e-6)  # not 2 * s * x


def test_an_unreached_value_gets_zeros_and_the_dtype_is_kept():
    g = _expand("""
graph f(%x: f32[3], %y: f32[3]) {
  %0 = sum(%x, axes=(0,), keepdim=False) : f32[]
  %1 = full(shape=(), value=1.0, dtype=f32) : f32[]
  %2 = grad(%0, %1, %y, request=0, n_roots=1, create_graph=False) : f32[3]
  return (%2)
}
""")
    (gy,) = interpret(g, [np.ones(3, np.float32), np.ones(3, np.float32)])
    assert gy.dtype == np.float32 and not gy.any()


def test_a_later_request_sees_an_earlier_gradient_as_a_constant():
    """Request 1 differentiates sum(x * g0), g0 = d sum(x^2)/dx = 2x, made without
    create_graph: d/dx is g0 = 2x (with create_graph it would be 4x)."""
    text = """
graph f(%x: f32[3]) {
  %0 = mul(%x, %x) : f32[3]
  %1 = sum(%0, axes=(0,), keepdim=False) : f32[]
  %2 = full(shape=(), value=1.0, dtype=f32) : f32[]
  %3 = grad(%1, %2, %x, request=0, n_roots=1, create_graph=CG) : f32[3]
  %4 = mul(%x, %3) : f32[3]
  %5 = sum(%4, axes=(0,), keepdim=False) : f32[]
  %6 = grad(%5, %2, %x, request=1, n_roots=1, create_graph=False) : f32[3]
  return (%6)
}
"""
    x = np.array([1.0, -2.0, 3.0], np.float32)
    (g1,) = interpret(_expand(text.replace("CG", "False")), [x])
    (g2,) = interpret(_expand(text.replace("CG", "True")), [x])
    np.testing.assert_allclose(g1, 2 * x)
    np.testing.assert_allclose(g2, 4 * x)


# ------------------------------------------------------------------ through @compile
def _same(fn, make_args, *, check_grads=True):
    """fn eager and compiled (interpreter, autograd pass only) on equal fresh inputs:
    same results and the same .grad on every argument."""
    eager_args, compiled_args = make_args(), make_args()
    expected = fn(*eager_args)
    got = tc.compile(fn, **REF)(*compiled_args)
    for e, c in zip(_flat(expected), _flat(got)):
        if e is None or c is None:
            assert e is None and c is None
        else:
            np.testing.assert_array_equal(c.detach().numpy(), e.detach().numpy())
    if check_grads:
        for e, c in zip(eager_args, compiled_args):
            if isinstance(e, tc.Tensor):
                assert (e.grad is None) == (c.grad is None)
                if e.grad is not None:
                    np.testing.assert_array_equal(c.grad.numpy(), e.grad.numpy())


def _flat(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _leaves(*shapes, seed=1):
    def make():
        r = np.random.default_rng(seed)
        return [tc.tensor(r.standard_normal(s).astype(np.float32), requires_grad=True)
                for s in shapes]
    return make


def test_detach_and_no_grad_inside_a_compiled_function():
    def fn(x, w):
        h = x * w
        with tc.no_grad():
            scale = (h * h).sum()  # no gradient through this
        loss = (h * h.detach()).sum() * scale
        loss.backward()
        return loss

    _same(fn, _leaves((3, 4), (4,)))


def test_requires_grad_inside_the_function_starts_a_new_leaf():
    def fn(x):
        y = x * 2
        x.requires_grad_()
        loss = (x * y).sum()  # eager: y does not depend on x
        loss.backward()
        return loss

    def make():
        return [tc.tensor(np.arange(4, dtype=np.float32))]

    eager_x, comp_x = make(), make()
    fn(*eager_x)
    tc.compile(fn, **REF)(*comp_x)
    np.testing.assert_array_equal(comp_x[0].grad.numpy(), eager_x[0].grad.numpy())


def test_autograd_grad_of_an_intermediate_and_an_unused_input():
    def fn(x, w, unused):
        h = (x * w).sin()
        loss = (h * h).sum()
        gh, gx, gu = tc.autograd.grad(loss, [h, x, unused], allow_unused=True)
        return gh, gx, gu

    _same(fn, _leaves((2, 3), (3,), (1,)))


def test_several_roots_with_seeds_and_two_backward_calls_accumulate():
    def fn(x, w):
        a, b = x * w, (x - w).exp()
        tc.autograd.backward([a, b], [tc.ones_like(a) * 0.5, tc.full_like(b, 2.0)])
        (x * x).sum().backward()
        return a, b

    _same(fn, _leaves((4,), (4,)))


def test_double_backward_gradient_penalty():
    def fn(x, w):
        y = ((x * w).tanh() ** 2).sum()
        (gx,) = tc.autograd.grad(y, [x], create_graph=True)
        penalty = (gx * gx).sum()
        penalty.backward()
        return penalty

    _same(fn, _leaves((3,), (3,)))


def test_backward_twice_through_one_graph_fails_as_in_eager():
    def fn(x):
        y = (x * x).sum()
        y.backward()
        y.backward()

    with pytest.raises(tc.runtime.errors.AutogradError, match="second time"):
        tc.compile(fn, **REF)(tc.ones(3, requires_grad=True))


def test_a_parameter_the_loss_does_not_reach_keeps_grad_none():
    model = nn.Linear(3, 2)
    unused = nn.Parameter(tc.ones(5))

    @tc.compile(**REF)
    def step(x):
        loss = model(x).sum()
        loss.backward()
        return loss

    step(tc.ones(4, 3))
    assert unused.grad is None and model.weight.grad is not None


def test_the_mnist_step_is_a_joint_graph_built_by_the_pass(tmp_path, monkeypatch):
    """The traced step holds composites and gradient requests; after the decompose and
    autograd passes the joint graph has primitives, backward nodes and no markers, and
    the compiled step equals eager."""
    monkeypatch.setenv("TRACECC_DUMP_DIR", str(tmp_path))
    torch_like = []
    for _ in range(2):
        tc.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
        torch_like.append((model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9)))


    x = tc.tensor(rng.standard_normal((16, 784)).astype(np.float32))
    y = tc.tensor(rng.integers(0, 10, 16))
    eager_step = train_step(*torch_like[0])
    compiled = tc.compile(train_step(*torch_like[1]), backend="llvm")
    for _ in range(3):
        np.testing.assert_allclose(compiled(x, y).item(), eager_step(x, y).item(), rtol=1e-5)
    for pe, pc in zip(torch_like[0][0].parameters(), torch_like[1][0].parameters()):
        np.testing.assert_allclose(pc.detach().numpy(), pe.detach().numpy(), rtol=1e-4, atol=1e-6)
    dumps = sorted(tmp_path.glob("step_*"))
    traced = (dumps[-1] / "000_traced.ir").read_text()
    decomposed = (dumps[-1] / "001_decompose.ir").read_text()
    joint = (dumps[-1] / "002_autograd.ir").read_text()
    # composites recorded whole, then decomposed into primitives
    assert " = linear(" in traced and " = cross_entropy(" in traced
    assert " = linear(" not in decomposed and " = cross_entropy(" not in decomposed
    assert traced.count(" = grad(") == 4 and "(backward)" in joint
    assert " = grad(" not in joint and "stop_gradient" not in joint
    assert "# pass autograd:" in joint
    # the fused dump reports the kernel count and the traffic fusion saved
    fused = next(dumps[-1].glob("*_fused.ir")).read_text()
    m = re.search(r"# fusion: (\d+) nodes -> (\d+) kernels; memory traffic ([\d.]+) (KB|MB) "
                  r"\(one kernel per op: ([\d.]+) (KB|MB)\)", fused)
    assert m, fused[:400]
    scale = {"KB": 1e3, "MB": 1e6}
    assert int(m[2]) <= 16 < int(m[1])
    assert float(m[3]) * scale[m[4]] < 0.8 * float(m[5]) * scale[m[6]]


def test_a_transformer_block_step_equals_eager_exactly():
    """Embedding, pre-LN attention and a GELU MLP, cross-entropy, AdamW: after three compiled
    steps (decompose and autograd only, on the interpreter) everything equals eager."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 8)
            self.ln1, self.ln2 = nn.LayerNorm(8), nn.LayerNorm(8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate="tanh"),
                                     nn.Linear(16, 8))
            self.head = nn.Linear(8, 11)

        def forward(self, tokens):
            h = self.emb(tokens)
            a = self.ln1(h)
            h = h + self.attn(a, a, a, need_weights=False)[0]
            h = h + self.mlp(self.ln2(h))
            return self.head(h)

    runs = []
    for _ in range(2):
        tc.manual_seed(0)
        model = Block()
        runs.append((model, optim.AdamW(model.parameters(), lr=1e-2)))

    def make(model, opt):
        def step(tokens, targets):
            opt.zero_grad()
            loss = F.cross_entropy(model(tokens).reshape(-1, 11), targets.reshape(-1))
            loss.backward()
            opt.step()
            return loss
        return step

    tokens = tc.tensor(rng.integers(0, 11, (2, 5)))
    targets = tc.tensor(rng.integers(0, 11, (2, 5)))
    eager, compiled = make(*runs[0]), tc.compile(make(*runs[1]), **REF)
    for _ in range(3):
        assert compiled(tokens, targets).item() == eager(tokens, targets).item()
    for pe, pc in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        np.testing.assert_array_equal(pc.detach().numpy(), pe.detach().numpy())
