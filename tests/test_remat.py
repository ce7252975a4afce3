"""Rematerialisation (passes/remat.py): the min-cut partition of a joint forward+backward
graph saves fewer bytes than saving everything the backward reads, recomputes only cheap
ops (never matmuls, reductions or random numbers), and gives the same gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracecc as tc
import tracecc.nn as nn
import tracecc.nn.functional as F
from tracecc.passes.interpret import interpret
from tracecc.passes.parser import parse_graph
from tracecc.passes.partition import split_joint
from tracecc.passes.remat import nbytes, remat_enabled
from tracecc.passes.verify import verify

from test_random_graphs import _program, steps

EXPENSIVE = ("matmul", "reduction", "index")


def _saved_bytes(saved):
    return sum(nbytes(v) for v in saved)


def _recomputed(bwd):
    return [n for n in bwd.nodes if n.region == "recompute"]


# ---------------------------------------------------------------- split_joint on IR text
EXP_SIN = """graph f(%x: f32[8], %grad_out0: f32[] grad_out) {
  %0 = exp(%x) : f32[8]
  %1 = sin(%x) : f32[8]
  %2 = mul(%0, %1) : f32[8]
  %3 = sum(%2, axes=(0,), keepdim=False) : f32[]
  %4 = expand(%grad_out0, shape=(8,)) : f32[8]  # (backward)
  %5 = cos(%x) : f32[8]  # (backward)
  %6 = add(%1, %5) : f32[8]  # (backward)
  %7 = mul(%0, %6) : f32[8]  # (backward)
  %8 = mul(%4, %7) : f32[8]  # (backward)
  return (%3, %8)
}"""


def _check_split(text, inputs, grad_out, remat):
    joint = parse_graph(text)
    fwd, bwd, saved = split_joint(joint, 1, joint.outputs[1:], remat=remat)
    verify(fwd)
    verify(bwd)
    res = interpret(fwd, inputs)
    grads = interpret(bwd, list(res[1:]) + [grad_out])
    return fwd, bwd, saved, res[0], grads


def test_min_cut_saves_the_input_and_recomputes_pointwise():
    x = np.linspace(-1, 1, 8).astype(np.float32)
    g = np.float32(0.5)
    _, bwd0, saved0, y0, (gx0,) = _check_split(EXP_SIN, [x], g, remat=False)
    fwd, bwd, saved, y, (gx,) = _check_split(EXP_SIN, [x], g, remat=True)
    assert sorted(v.name for v in saved0) == ["0", "1", "x"] and not _recomputed(bwd0)
    assert [v.name for v in saved] == ["x"]  # exp and sin are recomputed from x
    assert sorted(n.op for n in _recomputed(bwd)) == ["exp", "sin"]
    assert any("partition (remat): saved 1 values, 32 bytes" in s for s in fwd.notes)
    want = g * np.exp(x) * (np.sin(x) + np.cos(x))
    np.testing.assert_allclose(gx, want, rtol=1e-6)
    np.testing.assert_array_equal(gx, gx0)
    assert y == y0


MATMUL = """graph f(%x: f32[16,2], %w: f32[2,16], %grad_out0: f32[] grad_out) {
  %0 = matmul(%x, %w) : f32[16,16]
  %1 = tanh(%0) : f32[16,16]
  %2 = sigmoid(%0) : f32[16,16]
  %3 = mul(%1, %2) : f32[16,16]
  %4 = sum(%3, axes=(0, 1), keepdim=False) : f32[]
  %5 = expand(%grad_out0, shape=(16, 16)) : f32[16,16]  # (backward)
  %6 = mul(%1, %1) : f32[16,16]  # (backward)
  %7 = full(shape=(), value=1.0, dtype=f32) : f32[]  # (backward)
  %8 = sub(%7, %6) : f32[16,16]  # (backward)
  %9 = mul(%8, %2) : f32[16,16]  # (backward)
  %10 = sub(%7, %2) : f32[16,16]  # (backward)
  %11 = mul(%2, %10) : f32[16,16]  # (backward)
  %12 = mul(%1, %11) : f32[16,16]  # (backward)
  %13 = add(%9, %12) : f32[16,16]  # (backward)
  %14 = mul(%5, %13) : f32[16,16]  # (backward)
  %15 = permute(%x, dims=(1, 0)) : f32[2,16]  # (backward)
  %16 = matmul(%15, %14) : f32[2,16]  # (backward)
  return (%4, %16)
}"""


def test_matmul_output_is_saved_not_recomputed_even_when_its_inputs_are_smaller():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 2)).astype(np.float32)
    w = rng.standard_normal((2, 16)).astype(np.float32)
    g = np.float32(1.5)
    _, _, saved0, _, (gw0,) = _check_split(MATMUL, [x, w], g, remat=False)
    _, bwd, saved, _, (gw,) = _check_split(MATMUL, [x, w], g, remat=True)
    # without remat: tanh and sigmoid outputs (2 KB) and x. With remat: the matmul output
    # (1 KB), from which both are recomputed; x and w (2 x 128 bytes) would be cheaper
    # still, but a matmul is never recomputed
    assert sorted(v.name for v in saved0) == ["1", "2", "x"]
    assert sorted(v.name for v in saved) == ["0", "x"]
    assert sorted(n.op for n in _recomputed(bwd)) == ["sigmoid", "tanh"]
    m = x @ w
    t, s = np.tanh(m), 1 / (1 + np.exp(-m))
    np.testing.assert_allclose(gw, x.T @ (g * ((1 - t * t) * s + t * s * (1 - s))), rtol=1e-5)
    np.testing.assert_allclose(gw, gw0, rtol=1e-6)


def test_switch_env_and_option(monkeypatch):
    monkeypatch.delenv("TRACECC_REMAT", raising=False)
    assert not remat_enabled() and remat_enabled(True)
    monkeypatch.setenv("TRACECC_REMAT", "1")
    assert remat_enabled() and not remat_enabled(False)
    with pytest.raises(Exception, match="unknown option"):
        tc.compile(lambda x: x, options={"rematerialise": True})


# ---------------------------------------------------------------- compiled modules
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 32)
        self.ln = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 5)

    def forward(self, x):
        h = F.gelu(self.ln(self.fc1(x)))
        return self.fc3(tc.tanh(self.fc2(h)) * h)


def _train_grads(model, fn, x, seed=0):
    for p in model.parameters():
        p.grad = None
    xt = tc.tensor(x, requires_grad=True)
    tc.manual_seed(seed)
    out = fn(xt)
    (out * out).sum().backward()
    return [out.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


def _compiled(model, remat, backend):
    fn = tc.compile(model, backend=backend, options={"remat": remat})
    return fn


def _entry(fn):
    (entry,) = fn._entries
    return entry


def _saved_of(entry):
    """(saved values that are not forward inputs, all saved values, the backward graph)"""
    fwd, bwd = entry.final
    saved = fwd.outputs[entry.aot.n_fwd_outputs:]
    assert len(saved) == len([v for v in bwd.inputs if v.role == "saved"])
    inputs = set(fwd.inputs)
    return [v for v in saved if v not in inputs], saved, bwd


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_mlp_gelu_tanh_layer_norm_saves_fewer_bytes_same_gradients(backend):
    tc.manual_seed(0)
    model = MLP()
    x = np.random.default_rng(1).standard_normal((6, 12)).astype(np.float32)
    want = _train_grads(model, model, x)
    results, saved_bytes = {}, {}
    for remat in (False, True):
        fn = _compiled(model, remat, backend)
        results[remat] = _train_grads(model, fn, x)
        saved, _, bwd = _saved_of(_entry(fn))
        saved_bytes[remat] = _saved_bytes(saved)
        recomputed = _recomputed(bwd)
        assert bool(recomputed) == remat
        assert not [n for n in recomputed if n.prim.kind in EXPENSIVE]
    assert saved_bytes[True] < saved_bytes[False] / 2, saved_bytes
    for got_off, got_on, w in zip(results[False], results[True], want):
        np.testing.assert_allclose(got_on, w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got_on, got_off, rtol=1e-5, atol=1e-6)


def test_env_var_turns_remat_on_and_logs_both_sizes(monkeypatch, capsys):
    monkeypatch.setenv("TRACECC_REMAT", "1")
    monkeypatch.setenv("TRACECC_LOGS", "passes")
    tc.manual_seed(0)
    model = MLP()
    fn = tc.compile(model, backend="interpreter")
    fn(tc.randn(6, 12, requires_grad=True)).sum().backward()
    err = capsys.readouterr().err
    line = next(s for s in err.splitlines() if "partition (remat): saved" in s)
    assert "without remat" in line
    assert _recomputed(_saved_of(_entry(fn))[2])


class DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 24)
        self.fc2 = nn.Linear(24, 3)

    def forward(self, x):
        return self.fc2(F.dropout(tc.tanh(self.fc1(x)), p=0.3, training=True))


def test_random_numbers_are_saved_never_redrawn():
    tc.manual_seed(0)
    model = DropoutNet()
    x = np.random.default_rng(2).standard_normal((8, 10)).astype(np.float32)
    want = _train_grads(model, model, x, seed=7)
    fn = _compiled(model, True, "interpreter")
    got = _train_grads(model, fn, x, seed=7)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    entry = _entry(fn)
    fwd, bwd = entry.final
    assert any(v.role == "random" for v in fwd.inputs)
    assert not any(v.role == "random" for v in bwd.inputs)  # the mask comes saved
    assert _recomputed(bwd) and not [n for n in _recomputed(bwd) if n.prim.kind in EXPENSIVE]
    # a second call draws new numbers and still matches eager
    got = _train_grads(model, fn, x, seed=8)
    want = _train_grads(model, model, x, seed=8)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- random programs
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, seed=st.integers(0, 2**16))
def test_random_programs_remat_same_gradients_no_more_bytes(steps, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((6, 6)).astype(np.float32) * 0.5 for _ in range(2)]
    prog = _program(steps)

    def fn(x, y):
        return prog(x, y)[0]

    def run(f):
        x, y = (tc.tensor(a, requires_grad=True) for a in xs)
        out = f(x, y)
        (out * out).sum().backward()
        return [out.detach().numpy()] + [None if t.grad is None else t.grad.numpy() for t in (x, y)]

    want = run(fn)
    compiled = {r: tc.compile(fn, backend="interpreter", options={"remat": r}) for r in (False, True)}
    got = {r: run(c) for r, c in compiled.items()}
    for r in (False, True):
        for g, w in zip(got[r], want):
            assert (g is None) == (w is None)
            if w is not None:
                np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
    sizes = {}
    for r, c in compiled.items():
        _, saved, bwd = _saved_of(_entry(c))
        sizes[r] = _saved_bytes(saved)
        assert not [n for n in _recomputed(bwd) if n.prim.kind in EXPENSIVE]
    assert sizes[True] <= sizes[False]


def test_batch_norm_writes_and_gradients_match_eager_over_two_steps():
    def make():
        tc.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))

    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    results = {}
    for mode in ("eager", True):
        model = make()
        fn = model if mode == "eager" else _compiled(model, True, "interpreter")
        for _ in range(2):  # running stats are written by each forward
            out = fn(tc.tensor(x))
            (out * out).sum().backward()
        results[mode] = [p.grad.numpy() for p in model.parameters()] + [b.numpy() for b in model.buffers()]
    assert _recomputed(_saved_of(fn._entries[-1])[2])
    for got, want in zip(results[True], results["eager"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
