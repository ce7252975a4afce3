"""Guards and the cache: what makes a call reuse a graph, what recompiles (and how it is
reported), the recompile limit, and the stances."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.optim as optim

REF = dict(backend="interpreter", options={"passes": []})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.setenv("TRACECC_VERIFY", "1")
    monkeypatch.delenv("TRACECC_LOGS", raising=False)
    monkeypatch.delenv("TRACECC_DUMP_DIR", raising=False)
    tc.set_stance("default")
    yield
    tc.set_stance("default")


def _double():
    return tc.compile(lambda x: x * 2, **REF)


def test_same_key_hits_without_tracing():
    f = _double()
    for _ in range(5):
        f(tc.randn(3))
    assert f.traces == 1 and len(f._entries) == 1


@pytest.mark.parametrize("change, field", [
    (lambda: tc.randn(4), "x.shape changed: [3] -> [4]"),
    (lambda: tc.randn(3).double(), "x.dtype changed"),
    (lambda: tc.randn(3, requires_grad=True), "x.requires_grad changed: False -> True"),
])
def test_argument_changes_recompile_and_say_which_field(monkeypatch, capsys, change, field):
    monkeypatch.setenv("TRACECC_LOGS", "recompiles")
    f = tc.compile(lambda x: x * 2, **REF)
    f(tc.randn(3))
    f(change())  # <- the caller's line in the log
    line = inspect.currentframe().f_lineno - 1
    err = capsys.readouterr().err
    assert f.traces == 2 and field in err
    assert f"test_guards.py:{line}" in err and "recompiling" in err


def test_python_scalars_are_keyed_by_value_and_grad_mode_by_state():
    f = tc.compile(lambda x, k: x * k, **REF)
    x = tc.ones(2)
    f(x, 2)
    f(x, 2)
    f(x, 3)
    f(x, 2.0)  # a float is not the int 2
    assert f.traces == 3
    g = tc.compile(lambda x: x * 2, **REF)
    w = tc.ones(2, requires_grad=True)
    g(w)
    with tc.no_grad():
        out = g(w)
    assert g.traces == 2 and not out.requires_grad


def test_aliased_arguments_are_part_of_the_key():
    f = tc.compile(lambda a, b: a.add_(1) + b, **REF)
    x, y = tc.zeros(2), tc.zeros(2)
    np.testing.assert_array_equal(f(x, x).numpy(), [2, 2])  # b sees a's update
    np.testing.assert_array_equal(f(x, y).numpy(), [2, 2])
    assert f.traces == 2


def test_training_flag_and_parameter_replacement_are_guards():
    tc.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    f = tc.compile(model, **REF)
    x = tc.ones(2, 3)
    f(x)
    model.eval()
    with tc.no_grad():
        np.testing.assert_array_equal(f(x).numpy(), model(x).numpy())
    assert f.traces == 2 and f._entries[-1].graph.inputs[-1].role != "random"
    model[0].weight = nn.Parameter(tc.zeros(3, 3))  # a new object: lift it, not the old one
    with tc.no_grad():
        np.testing.assert_array_equal(f(x).numpy(), model(x).numpy())
    assert f.traces == 3


def test_lifted_tensor_shape_change_and_grad_state_are_guards():
    w = tc.ones(3)

    @tc.compile(**REF)
    def f(x):
        return (x * w).sum()

    f(tc.ones(3))
    w.data = tc.ones(4)  # same tensor, new storage of another shape
    assert f(tc.ones(4)).item() == 4
    assert f.traces == 2
    p = tc.ones(2, requires_grad=True)

    @tc.compile(**REF)
    def step():
        (p * 3).sum().backward()

    step()
    step()  # .grad was None, now it is a tensor: accumulate instead of assign
    np.testing.assert_array_equal(p.grad.numpy(), [6, 6])
    assert step.traces == 2


def test_a_compiled_optimizer_step_sees_grads_appear():
    p = nn.Parameter(tc.ones(2))
    opt = optim.SGD([p], lr=0.5)
    step = tc.compile(opt.step, **REF)
    step()  # p.grad is None: SGD skips p
    np.testing.assert_array_equal(p.detach().numpy(), [1, 1])
    p.grad = tc.ones(2)
    step()  # a guard on `p.grad is None` makes this trace again
    np.testing.assert_array_equal(p.detach().numpy(), [0.5, 0.5])
    assert step.traces == 2


def test_optimizer_hyperparameter_change_recompiles(monkeypatch, capsys):
    """Except the lr: a graph input (tests/test_compiled_lr.py)."""
    monkeypatch.setenv("TRACECC_LOGS", "recompiles")
    p = nn.Parameter(tc.ones(2))
    opt = optim.SGD([p], lr=0.1, weight_decay=0.1)

    @tc.compile(**REF)
    def step():
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()

    step()
    step()
    opt.param_groups[0]["weight_decay"] = 0.5
    step()
    assert "param_groups[0]['weight_decay'] changed: 0.1 -> 0.5" in capsys.readouterr().err


def test_recompile_limit_warns_once_naming_the_guard_then_runs_eagerly(capsys):
    f = tc.compile(lambda x: x + 1, recompile_limit=3, **REF)
    for n in range(1, 8):
        np.testing.assert_array_equal(f(tc.zeros(n)).numpy(), np.ones(n))
    err = capsys.readouterr().err
    assert f.traces == 3 and err.count("hit the recompile limit (3)") == 1
    assert "x.shape changed" in err
    f(tc.zeros(2))  # a shape seen before still runs its graph
    assert len(f._entries) == 3


def test_stance_fail_on_recompile():
    f = _double()
    f(tc.ones(2))
    with tc.set_stance("fail_on_recompile"):
        f(tc.ones(2))  # a hit is fine
        with pytest.raises(tc.TraceccError) as e:
            f(tc.ones(5))
    assert e.value.code == "TC103" and "x.shape changed: [2] -> [5]" in str(e.value)
    f(tc.ones(5))  # the stance is restored on exit
    assert f.traces == 2


def test_stance_eager_on_recompile_and_force_eager():
    f = _double()
    f(tc.ones(2))
    tc.set_stance("eager_on_recompile")
    np.testing.assert_array_equal(f(tc.ones(3)).numpy(), [2, 2, 2])
    assert f.traces == 1
    tc.set_stance("force_eager")
    g = _double()
    np.testing.assert_array_equal(g(tc.ones(2)).numpy(), [2, 2])
    assert g.traces == 0
    tc.set_stance("default")

    @tc.set_stance("force_eager")
    def run_eagerly(x):
        return g(x)

    run_eagerly(tc.ones(4))
    assert g.traces == 0 and tc._compile.get_stance() == "default"
    with pytest.raises(tc.TraceccError, match="unknown stance"):
        tc.set_stance("sometimes")


def test_guard_lines_describe_the_entry():
    tc.manual_seed(0)
    model = nn.Linear(2, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    @tc.compile(**REF)
    def step(x):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    for _ in range(3):
        step(tc.ones(1, 2))
    from tracecc._compile import guard_lines
    lines = guard_lines(step._entries[-1])
    text = "\n".join(lines)
    assert "x.shape == [1, 2]" in text and "%weight: same storage (or another f32[2,2])" in text
    assert "weight.grad is a tensor" in text and "model.training == True" in text
    assert "opt.param_groups[0]['momentum'] == 0.9" in text
    assert "'lr'" not in text  # a graph input, not a guard
