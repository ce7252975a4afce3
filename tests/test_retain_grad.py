"""Tensor.retain_grad(), .retains_grad and .is_leaf, as in PyTorch: a non-leaf that retains
its gradient gets .grad at backward (accumulated over calls, also from autograd.grad, with
history under create_graph), after an in-place op the gradient of its new value; leaves
are unaffected. Each scenario runs on tracecc and, when installed, on torch."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import tracecc as tc
from tracecc import autograd
from tracecc.runtime.errors import AutogradError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch: non-leaf .grad, create_graph


def _modules():
    torch = None
    try:
        import torch
    except ImportError:
        pass
    return [tc] + ([torch] if torch is not None else [])


@pytest.fixture(params=_modules(), ids=lambda m: m.__name__)
def m(request):
    return request.param


def _np(t):
    return None if t is None else t.detach().numpy()


def test_non_leaf_keeps_its_gradient_and_accumulates(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert not y.retains_grad and y.grad is None
    y.retain_grad()
    assert y.retains_grad and not y.is_leaf and x.is_leaf and not x.retains_grad
    z = (y * y).sum()
    z.backward(retain_graph=True)
    np.testing.assert_allclose(_np(y.grad), [4.0, 8.0])  # dz/dy = 2y
    np.testing.assert_allclose(_np(x.grad), [8.0, 16.0])
    z.backward()
    np.testing.assert_allclose(_np(y.grad), [8.0, 16.0])


def test_root_and_explicit_gradient(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    e = x * 2
    e.retain_grad()
    e.backward(m.tensor([5.0, 6.0]))
    np.testing.assert_allclose(_np(e.grad), [5.0, 6.0])


def test_autograd_grad_also_fills_retained_grads(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.retain_grad()
    (gx,) = m.autograd.grad((y * y).sum(), [x])
    np.testing.assert_allclose(_np(gx), [8.0, 16.0])
    np.testing.assert_allclose(_np(y.grad), [4.0, 8.0])
    assert x.grad is None


def test_after_an_in_place_op_the_gradient_is_the_new_values(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    w = x * 1
    w.retain_grad()
    w.mul_(3)
    (w * w).sum().backward()
    assert w.retains_grad
    np.testing.assert_allclose(_np(w.grad), [6.0, 12.0])  # 2 * (3x): the new w
    np.testing.assert_allclose(_np(x.grad), [18.0, 36.0])


def test_create_graph_gives_the_retained_grad_history(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    c = x * 1
    c.retain_grad()
    (c * c * c).sum().backward(create_graph=True)
    assert c.grad.requires_grad
    (gx,) = m.autograd.grad(c.grad.sum(), [x])  # d/dx sum(3c^2) = 6x
    np.testing.assert_allclose(_np(gx), [6.0, 12.0])


def test_leaves_detached_and_grad_free_tensors(m):
    x = m.tensor([1.0], requires_grad=True)
    x.retain_grad()  # a leaf: nothing changes
    assert x.is_leaf and not x.retains_grad
    y = x * 2
    y.retain_grad()
    assert not y.detach().retains_grad and y.detach().is_leaf
    assert m.tensor([1.0]).is_leaf and (x > 0).is_leaf  # no history: leaves by convention
    with pytest.raises(RuntimeError, match="retain_grad"):
        m.tensor([1.0]).retain_grad()


def test_error_is_a_tracecc_autograd_error():
    with pytest.raises(AutogradError, match="does not require grad"):
        tc.tensor([1.0]).retain_grad()


def test_only_retaining_tensors_get_a_grad_and_dead_ones_are_forgotten():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    a, b = x * 2, x * 3
    a.retain_grad()
    (a * b).sum().backward()
    assert a.grad is not None and b.grad is None
    before = len(autograd._retaining)
    t = x * 4
    t.retain_grad()
    assert len(autograd._retaining) == before + 1
    del t
    gc.collect()
    assert len(autograd._retaining) == before


def test_compiled_step_fills_retained_grads_as_eager():
    def step(x):
        y = x * 2
        y.retain_grad()
        (y * y).sum().backward()
        return y.grad

    x = tc.tensor([1.0, 2.0], requires_grad=True)
    out = tc.compile(step)(x)
    np.testing.assert_allclose(_np(out), [4.0, 8.0])
    np.testing.assert_allclose(_np(x.grad), [8.0, 16.0])
