"""Composites and the decompose pass: a composite call is traced as one node and the pass
replaces it with exactly the primitives tracing the function inline records."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn.functional as F
from tracecc._trace import Tracer
from tracecc.passes.decompose import expand_composites
from tracecc.passes.interpret import interpret
from tracecc.passes.parser import parse_graph
from tracecc.passes.verify import verify
from tracecc.runtime.errors import ShapeError
from tracecc.runtime.registry import PRIMITIVES

REF = dict(backend="interpreter", options={"passes": []})
rng = np.random.default_rng(0)


def test_a_composite_node_in_ir_text_decomposes_to_softmax():
    g = parse_graph("""
graph f(%x: f32[3,5]) {
  %0 = softmax(%x, dim=1, dtype=None) : f32[3,5]
  return (%0)
}
""")
    x = rng.standard_normal((3, 5)).astype(np.float32)
    (whole,) = interpret(g, [x])  # the composite's eager rule: its decomposition
    expand_composites(g)
    verify(g)
    assert all(PRIMITIVES[n.op].kind != "composite" for n in g.nodes) and len(g.nodes) > 3
    (parts,) = interpret(g, [x])
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(parts, e / e.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(parts, whole)


def _mlp_loss(x, w1, b1, w2, y):
    h = F.gelu(F.linear(x, w1, b1), approximate="tanh")
    h = F.layer_norm(h, (h.shape[-1],))
    loss = F.cross_entropy(F.linear(h, w2), y, label_smoothing=0.1) + F.mse_loss(h, h * 0.5)
    loss.backward()
    return loss


def _args():
    r = np.random.default_rng(3)
    x = tc.tensor(r.standard_normal((4, 6)).astype(np.float32))
    params = [tc.tensor(r.standard_normal(s).astype(np.float32), requires_grad=True)
              for s in [(8, 6), (8,), (3, 8)]]
    return [x, *params, tc.tensor(r.integers(0, 3, 4))]


def _final_ops(compiled) -> list[str]:
    return [n.op for n in compiled._entries[0].final[0].nodes]


def test_decomposing_gives_the_graph_that_tracing_inline_gives(monkeypatch):
    whole = tc.compile(_mlp_loss, **REF)
    a = _args()
    loss_whole = whole(*a)
    traced = [n.op for n in whole._entries[0].graph.nodes]
    for op in ("linear", "gelu", "layer_norm", "cross_entropy", "mse_loss"):
        assert op in traced

    monkeypatch.setattr(Tracer, "records_composites", False)
    inline = tc.compile(_mlp_loss, **REF)
    b = _args()
    loss_inline = inline(*b)
    assert not any(PRIMITIVES[op].kind == "composite"
                   for op in (n.op for n in inline._entries[0].graph.nodes))
    assert _final_ops(whole) == _final_ops(inline)
    assert loss_whole.item() == loss_inline.item()
    for p, q in zip(a[1:4], b[1:4]):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_compiled_composites_match_eager_values_and_grads():
    eager_args, comp_args = _args(), _args()
    expected = _mlp_loss(*eager_args)
    got = tc.compile(_mlp_loss, backend="llvm")(*comp_args)
    np.testing.assert_allclose(got.item(), expected.item(), rtol=1e-5)
    for p, q in zip(eager_args[1:4], comp_args[1:4]):
        np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_a_composite_given_bad_shapes_names_the_users_line():
    @tc.compile(**REF)
    def fn(x, w):
        return F.linear(x, w)  # the bad line

    with pytest.raises(ShapeError) as err:
        fn(tc.ones(2, 3), tc.ones(4, 5))
    assert "test_decompose.py" in str(err.value)


def test_an_inplace_composite_call_is_traced_inline():
    @tc.compile(**REF)
    def fn(x):
        y = x * 1.0
        F.silu(y, inplace=True)
        return y

    x = tc.tensor(rng.standard_normal(5).astype(np.float32))
    np.testing.assert_allclose(fn(x).numpy(), (x * x.sigmoid()).numpy(), rtol=1e-6)
    assert "silu" not in [n.op for n in fn._entries[0].graph.nodes]
