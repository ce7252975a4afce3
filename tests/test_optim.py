"""Optimizers and schedulers: trajectories vs numpy re-implementations of the update rules
(always) and vs PyTorch from identical parameters (when installed); state in tensors;
state_dict round trips; schedulers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.optim as optim
from tracecc.optim import lr_scheduler
from tracecc.runtime.errors import InvalidArgumentError, StateDictError

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

RNG = np.random.default_rng(2)
INIT = [RNG.standard_normal((4, 3)).astype(np.float32), RNG.standard_normal(3).astype(np.float32)]
TARGETS = [RNG.standard_normal((4, 3)).astype(np.float32), RNG.standard_normal(3).astype(np.float32)]


def loss_fn(params, lib):
    """A quartic-plus-quadratic bowl: gradients change from step to step."""
    total = 0
    for p, target in zip(params, TARGETS):
        d = p - lib.tensor(target)
        total = total + (d * d).sum() + 0.1 * (d * d * d * d).sum()
    return total


def run(lib, opt_cls, kwargs, steps=6):
    params = [lib.tensor(a.copy(), requires_grad=True) for a in INIT]
    opt = opt_cls(params, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(params, lib).backward()
        opt.step()
    return [p.detach().numpy() for p in params], opt


def grad_np(p, target):
    d = p - target
    return 2 * d + 0.4 * d**3


def sgd_np(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, steps=6):
    params = [a.astype(np.float64) for a in INIT]
    bufs = [None, None]
    for _ in range(steps):
        for i, (p, target) in enumerate(zip(params, TARGETS)):
            g = grad_np(p, target) + weight_decay * p
            if momentum:
                bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            params[i] = p - lr * g
    return params


def adam_np(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False, steps=6):
    params = [a.astype(np.float64) for a in INIT]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    vmax = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        for i, target in enumerate(TARGETS):
            p = params[i]
            g = grad_np(p, target)
            if weight_decay and decoupled:
                p = p * (1 - lr * weight_decay)
            elif weight_decay:
                g = g + weight_decay * p
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            vmax[i] = np.maximum(vmax[i], v[i])
            second = vmax[i] if amsgrad else v[i]
            denom = np.sqrt(second) / math.sqrt(1 - betas[1] ** t) + eps
            params[i] = p - lr / (1 - betas[0] ** t) * m[i] / denom
    return params


SGD_CASES = [dict(lr=0.05), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
             dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
             dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1)]
ADAM_CASES = [(optim.Adam, dict(lr=0.1)), (optim.Adam, dict(lr=0.1, weight_decay=0.1)),
              (optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), amsgrad=True)),
              (optim.AdamW, dict(lr=0.1)), (optim.AdamW, dict(lr=0.1, weight_decay=0.5, amsgrad=True))]


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_follows_the_update_rule(kwargs):
    ours, _ = run(tc, optim.SGD, kwargs)
    for a, b in zip(ours, sgd_np(**kwargs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls,kwargs", ADAM_CASES)
def test_adam_follows_the_update_rule(cls, kwargs):
    ours, _ = run(tc, cls, kwargs)
    defaults = dict(weight_decay=0.01) if cls is optim.AdamW else {}  # AdamW's default decay
    ref = adam_np(decoupled=cls is optim.AdamW, **dict(defaults, **kwargs))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("cls,kwargs", [(optim.SGD, k) for k in SGD_CASES] + ADAM_CASES
                         + [(optim.SGD, dict(lr=0.002, momentum=0.9, maximize=True)),
                            (optim.Adam, dict(lr=0.01, maximize=True))])
def test_trajectories_match_torch(cls, kwargs):
    ours, opt = run(tc, cls, kwargs)
    theirs, topt = run(torch, getattr(torch.optim, cls.__name__), kwargs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # the state matches too, name by name
    for p_state, tp_state in zip(opt.state_dict()["state"].values(), topt.state_dict()["state"].values()):
        assert set(p_state) == set(tp_state)
        for key in p_state:
            np.testing.assert_allclose(p_state[key].numpy(), tp_state[key].numpy(), rtol=1e-5, atol=1e-6)


def test_state_lives_in_tensors_and_updates_are_in_place():
    p = nn.Parameter(tc.ones(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = tc.ones(3)
    opt.step()
    state = opt.state[p]
    assert all(isinstance(v, tc.Tensor) for v in state.values())
    assert state["step"].ndim == 0 and state["step"].item() == 1.0
    exp_avg, step = state["exp_avg"], state["step"]
    p.grad = tc.ones(3)
    opt.step()
    assert opt.state[p]["exp_avg"] is exp_avg and opt.state[p]["step"] is step  # updated in place
    assert step.item() == 2.0 and p.grad_fn is None and p.requires_grad

    q = nn.Parameter(tc.ones(2))
    sgd = optim.SGD([q], lr=0.1, momentum=0.9)
    q.grad = tc.ones(2)
    sgd.step()
    buf = sgd.state[q]["momentum_buffer"]
    sgd.step()
    assert sgd.state[q]["momentum_buffer"] is buf
    np.testing.assert_allclose(buf.numpy(), 1.9)


def test_zero_grad_and_parameters_without_grad():
    a, b = nn.Parameter(tc.ones(2)), nn.Parameter(tc.ones(2))
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = tc.ones(2)
    opt.step()  # b has no grad: untouched
    np.testing.assert_array_equal(a.detach().numpy(), 0)
    np.testing.assert_array_equal(b.detach().numpy(), 1)
    opt.zero_grad()
    assert a.grad is None
    a.grad = tc.ones(2)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.numpy(), 0)


def test_param_groups_use_their_own_hyperparameters():
    a, b = nn.Parameter(tc.ones(1)), nn.Parameter(tc.ones(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = tc.ones(1), tc.ones(1)
    opt.step()
    np.testing.assert_allclose(a.detach().numpy(), 0.9)
    np.testing.assert_allclose(b.detach().numpy(), 0.5)
    assert opt.param_groups[0]["momentum"] == 0  # defaults fill the groups
    with pytest.raises(InvalidArgumentError):
        opt.add_param_group({"params": [a]})


def test_bad_arguments_raise():
    p = [nn.Parameter(tc.ones(1))]
    with pytest.raises(InvalidArgumentError):
        optim.SGD(p, lr=-1)
    with pytest.raises(InvalidArgumentError):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(InvalidArgumentError):
        optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(InvalidArgumentError):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(nn.Parameter(tc.ones(1)), lr=0.1)


@pytest.mark.parametrize("cls,kwargs", [(optim.SGD, dict(lr=0.05, momentum=0.9)),
                                        (optim.AdamW, dict(lr=0.1))])
def test_state_dict_resumes_exactly(cls, kwargs):
    full, _ = run(tc, cls, kwargs, steps=6)
    params = [tc.tensor(a.copy(), requires_grad=True) for a in INIT]
    opt = cls(params, **kwargs)
    for _ in range(3):
        opt.zero_grad()
        loss_fn(params, tc).backward()
        opt.step()
    saved = opt.state_dict()
    assert set(saved) == {"state", "param_groups"} and saved["param_groups"][0]["params"] == [0, 1]
    resumed = [tc.tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]
    opt2 = cls(resumed, lr=123.0)  # hyperparameters come back from the state dict
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    for key, value in opt2.state[resumed[0]].items():
        assert value is not opt.state[params[0]][key]  # a private copy
    for _ in range(3):
        opt2.zero_grad()
        loss_fn(resumed, tc).backward()
        opt2.step()
    for a, b in zip(resumed, full):
        np.testing.assert_allclose(a.detach().numpy(), b, rtol=1e-6, atol=1e-7)
    with pytest.raises(StateDictError):
        cls(resumed[:1], lr=0.1).load_state_dict(saved)


# ---------------------------------------------------------------- schedulers
def make_opt(lr=1.0):
    return optim.SGD([nn.Parameter(tc.ones(1))], lr=lr)


def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


def test_schedulers_follow_their_formulas():
    np.testing.assert_allclose(lrs(lr_scheduler.StepLR(make_opt(), step_size=3, gamma=0.5), 8),
                               [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    cos = lrs(lr_scheduler.CosineAnnealingLR(make_opt(), T_max=10, eta_min=0.1), 25)
    closed = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(25)]
    np.testing.assert_allclose(cos, closed, atol=1e-12)
    np.testing.assert_allclose(lrs(lr_scheduler.LambdaLR(make_opt(2.0), lambda e: 1 / (e + 1)), 4),
                               [2, 1, 2 / 3, 0.5])
    np.testing.assert_allclose(lrs(lr_scheduler.MultiStepLR(make_opt(), [2, 4], 0.1), 5),
                               [1, 1, 0.1, 0.1, 0.01])
    np.testing.assert_allclose(lrs(lr_scheduler.ExponentialLR(make_opt(), 0.5), 3), [1, 0.5, 0.25])
    sched = lr_scheduler.StepLR(make_opt(), 2)
    lrs(sched, 3)
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 3


@needs_torch
def test_schedulers_match_torch():
    for name, kwargs in [("StepLR", dict(step_size=2, gamma=0.3)), ("CosineAnnealingLR", dict(T_max=7)),
                         ("ExponentialLR", dict(gamma=0.9)), ("MultiStepLR", dict(milestones=[1, 3]))]:
        ours = lrs(getattr(lr_scheduler, name)(make_opt(0.1), **kwargs), 20)
        topt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
        tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
        theirs = []
        for _ in range(20):
            theirs.append(tsched.get_last_lr()[0])
            topt.step()
            tsched.step()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, err_msg=name)
