"""Whole training steps captured as one graph: zero_grad, forward, backward and the optimizer
update. After every compiled step (on the reference interpreter) the parameters, their
.grad, the optimizer state and the loss are exactly what eager mode leaves."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.nn.functional as F
import tracecc.optim as optim

from train_steps import train_step


# the reference: the traced graph as it is, on the interpreter (bit-for-bit eager results)
REF = dict(backend="interpreter", options={"passes": []})

@pytest.fixture(autouse=True)
def _verify_every_pass(monkeypatch):
    monkeypatch.setenv("TRACECC_VERIFY", "1")


class MLP(nn.Module):
    """MNIST's MLP, narrower (the graph is the same, the test is faster)."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 10)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = self.drop(F.relu(self.fc1(x)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _setup(make_opt, dropout=0.0):
    tc.manual_seed(0)
    model = MLP(dropout)
    return model, make_opt(model.parameters())


def _batches(n, batch=16, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        images = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        labels = rng.integers(0, 10, batch)
        yield tc.tensor(images), tc.tensor(labels)


def _state_arrays(opt):
    out = []
    for p in opt.param_groups[0]["params"]:
        for k, v in sorted(opt.state[p].items()):
            out.append((k, v.numpy() if isinstance(v, tc.Tensor) else v))
    return out


def _assert_same(eager, compiled, what):
    (m0, o0), (m1, o1) = eager, compiled
    for (name, p0), p1 in zip(m0.named_parameters(), m1.parameters()):
        assert np.array_equal(p0.detach().numpy(), p1.detach().numpy()), f"{what}: {name}"
        assert (p0.grad is None) == (p1.grad is None), f"{what}: {name}.grad"
        if p0.grad is not None:
            assert np.array_equal(p0.grad.numpy(), p1.grad.numpy()), f"{what}: {name}.grad"
    s0, s1 = _state_arrays(o0), _state_arrays(o1)
    assert [k for k, _ in s0] == [k for k, _ in s1], what
    for (k, a), (_, b) in zip(s0, s1):
        assert np.array_equal(a, b), f"{what}: optimizer state {k}"


OPTIMIZERS = {
    "sgd_momentum": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
    "sgd_nesterov_wd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, lr=1e-3),
    "adamw_amsgrad": lambda ps: optim.AdamW(ps, lr=1e-3, amsgrad=True),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_twenty_steps_match_eager_exactly(opt_name):
    eager = _setup(OPTIMIZERS[opt_name])
    comp = _setup(OPTIMIZERS[opt_name])
    eager_step = train_step(*eager)
    step = tc.compile(train_step(*comp), **REF)
    for i, (x, y) in enumerate(_batches(20)):
        l0 = eager_step(x, y)
        l1 = step(x, y)
        assert l0.item() == l1.item(), f"step {i}: loss"
        _assert_same(eager, comp, f"step {i}")
    # step 1 creates the optimizer state (run once on the interpreter, then traced again);
    # every later step reuses one graph
    assert step.traces <= 2 and len(step._entries) == 1
    graph = step.graphs[0]
    assert sum(1 for v in graph.inputs if v.role == "param") == 6
    assert len(graph.writes) >= 6 and any(n.region == "backward" for n in graph.nodes)
    labels = graph.output_labels
    assert "fc1.weight.grad" in labels and labels[0] == "out"


def test_dropout_and_zero_grad_in_place_match_eager():
    """Random masks are drawn per call from the same generator (as eager draws them), and
    zero_grad(set_to_none=False) zeroes the existing .grad in place."""
    make = OPTIMIZERS["sgd_momentum"]
    eager, comp = _setup(make, dropout=0.25), _setup(make, dropout=0.25)
    eager_step = train_step(*eager, set_to_none=False)
    step = tc.compile(train_step(*comp, set_to_none=False), **REF)
    for i, (x, y) in enumerate(_batches(8)):
        tc.manual_seed(100 + i)
        l0 = eager_step(x, y)
        tc.manual_seed(100 + i)
        l1 = step(x, y)
        assert l0.item() == l1.item(), f"step {i}"
        _assert_same(eager, comp, f"step {i}")
    graph = step.graphs[0]
    assert [v.role for v in graph.inputs].count("random") == 1
    assert any(v.role == "grad" for v in graph.inputs)  # .grad read (zeroed, accumulated)
    # eval mode: a training flag is a guard, and dropout disappears from the graph
    comp[0].eval()
    eager[0].eval()
    x, y = next(_batches(1, seed=9))
    assert eager_step(x, y).item() == step(x, y).item()
    assert step.graphs[-1] is not graph
    assert all(v.role != "random" for v in step.graphs[-1].inputs)


def test_grads_set_to_none_by_the_step_are_none_afterwards():
    model, opt = _setup(OPTIMIZERS["sgd_momentum"])

    @tc.compile(**REF)
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()  # at the end this time
        return loss

    for x, y in _batches(3):
        step(x, y)
        assert all(p.grad is None for p in model.parameters())


def test_returned_loss_is_like_eager_with_its_graph_already_used():
    eager, comp = _setup(OPTIMIZERS["adam"]), _setup(OPTIMIZERS["adam"])
    step = tc.compile(train_step(*comp), **REF)
    eager_step = train_step(*eager)
    for x, y in _batches(3):  # the first call runs the trace once, the others the graph
        l0, l1 = eager_step(x, y), step(x, y)
        assert l1.item() == l0.item() and l1.requires_grad and l0.requires_grad
        for loss in (l0, l1):
            with pytest.raises(tc.TraceccError, match="backward through the graph a second time"):
                loss.backward()


def test_learning_rate_is_an_input_and_momentum_a_guard():
    """A new lr is read by the same graph (no recompile); a new momentum is baked in, so
    it recompiles. Either way the results stay eager's, bit for bit."""
    model, opt = _setup(OPTIMIZERS["sgd_momentum"])
    ref_model, ref_opt = _setup(OPTIMIZERS["sgd_momentum"])
    step = tc.compile(train_step(model, opt), **REF)
    ref = train_step(ref_model, ref_opt)
    for i, (x, y) in enumerate(_batches(8)):
        if i == 3:
            opt.param_groups[0]["lr"] = ref_opt.param_groups[0]["lr"] = 0.01
        if i == 4:
            assert len(step._entries) == 1
        if i == 6:
            opt.param_groups[0]["momentum"] = ref_opt.param_groups[0]["momentum"] = 0.5
        assert step(x, y).item() == ref(x, y).item()
        _assert_same((ref_model, ref_opt), (model, opt), f"step {i}")
    assert len(step._entries) == 2
    assert [v.role for v in step.graphs[0].inputs].count("hyper") == 1


def test_fullgraph_false_step_with_item_inside_runs_eagerly_and_matches():
    eager, comp = _setup(OPTIMIZERS["sgd_momentum"]), _setup(OPTIMIZERS["sgd_momentum"])

    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            value = loss.item()  # data-dependent: the rest of this call runs eagerly
            loss.backward()
            opt.step()
            return value

        return step

    ref = make(*eager)
    step = tc.compile(make(*comp), **REF, fullgraph=False)
    for x, y in _batches(3):
        assert ref(x, y) == step(x, y)
        _assert_same(eager, comp, "eager fallback")
    assert step.fallbacks and "item()" in step.fallbacks[0]
    assert not step._entries


def test_mnist_step_on_the_best_backend_stays_close_to_eager():
    """The default backend (LLVM when available) over a few steps, within float tolerance."""
    eager, comp = _setup(OPTIMIZERS["sgd_momentum"]), _setup(OPTIMIZERS["sgd_momentum"])
    eager_step = train_step(*eager)
    step = tc.compile(train_step(*comp))
    for x, y in _batches(5):
        np.testing.assert_allclose(step(x, y).item(), eager_step(x, y).item(), rtol=1e-4)
    for p0, p1 in zip(eager[0].parameters(), comp[0].parameters()):
        np.testing.assert_allclose(p1.detach().numpy(), p0.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_default_pipeline_on_the_interpreter_stays_close_to_eager():
    """With every pass of the pipeline (simplification may reassociate float math)."""
    eager, comp = _setup(OPTIMIZERS["adam"]), _setup(OPTIMIZERS["adam"])
    eager_step = train_step(*eager)
    step = tc.compile(train_step(*comp), backend="interpreter")
    for x, y in _batches(5):
        np.testing.assert_allclose(step(x, y).item(), eager_step(x, y).item(), rtol=1e-5)
    for p0, p1 in zip(eager[0].parameters(), comp[0].parameters()):
        np.testing.assert_allclose(p1.detach().numpy(), p0.detach().numpy(), rtol=1e-5, atol=1e-6)
