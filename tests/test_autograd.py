"""Eager autograd: backward and its arguments, accumulation, retain_graph, detach, grad
mode (context managers and decorators), grad_fn, autograd.grad, double backward."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
from tracecc.runtime.errors import AutogradError


def f64(values, requires_grad=True):
    return tc.tensor(values, dtype=tc.float64, requires_grad=requires_grad)


# ---------------------------------------------------------------- backward
def test_backward_of_a_scalar_fills_leaf_grads():
    x = f64([1.0, 2.0, 3.0])
    w = f64([0.5, -1.0, 2.0])
    (x * w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.5, -1.0, 2.0])
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0, 3.0])
    assert x.grad.dtype is tc.float64 and x.grad.shape == x.shape
    assert x.grad.grad_fn is None and not x.grad.requires_grad


def test_backward_with_gradient_argument_for_non_scalars():
    x = f64([[1.0, 2.0], [3.0, 4.0]])
    y = x * x
    y.backward(tc.tensor([[1.0, 0.0], [2.0, -1.0]], dtype=tc.float64))
    np.testing.assert_allclose(x.grad.numpy(), [[2.0, 0.0], [12.0, -8.0]])


def test_gradients_accumulate_across_backward_calls():
    x = f64([2.0])
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0 + 4.0])
    x.grad = None
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0])


def test_grad_zero_resets_in_place():
    x = f64([1.0, 2.0])
    (x * 2).sum().backward()
    x.grad.zero_()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_a_value_used_twice_gets_both_contributions():
    x = f64([1.5])
    a = x * 2
    b = a * a + a  # a reaches the loss along two paths
    b.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [(2 * 3.0 + 1) * 2])


def test_backward_twice_needs_retain_graph():
    x = f64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(AutogradError, match="second time") as err:
        y.backward()
    assert "retain_graph=True" in str(err.value)


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = f64([1.0, 2.0])
    y = (x.exp()).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([1.0, 2.0]))


def test_backward_on_a_leaf():
    x = f64([1.0, 2.0])
    x.backward(tc.ones(2, dtype=tc.float64))
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_broadcast_leaf_gets_a_gradient_of_its_own_shape():
    b = tc.zeros(3, requires_grad=True)
    x = tc.ones(4, 3)
    (x + b).sum().backward()
    assert b.grad.shape == (3,)
    np.testing.assert_allclose(b.grad.numpy(), [4.0, 4.0, 4.0])


def test_float32_leaves_get_float32_gradients():
    x = tc.ones(3, requires_grad=True)
    (x.double() * 2).sum().backward()
    assert x.grad.dtype is tc.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_gradients_are_fresh_buffers():
    x = f64([1.0, 2.0])
    y = f64([3.0, 4.0])
    (x + y).sum().backward()
    x.grad.add_(10)  # must not show up in y.grad
    np.testing.assert_allclose(y.grad.numpy(), [1.0, 1.0])


# ---------------------------------------------------------------- what requires grad
def test_requires_grad_propagates_and_names_grad_fn():
    x = f64([1.0])
    c = tc.ones(1, dtype=tc.float64)
    assert x.is_leaf and x.grad_fn is None
    y = x * c
    assert y.requires_grad and not y.is_leaf
    assert y.grad_fn.name == "MulBackward"
    assert "grad_fn=<MulBackward>" in repr(y)
    z = c * 2
    assert not z.requires_grad and z.grad_fn is None


def test_integer_and_bool_results_do_not_require_grad():
    x = f64([1.5, -2.5])
    for out in (x.long(), x.argmax(), x > 0, x.to(tc.int32), x.floor_divide(1.0).long(),
                tc.max(x, 0).indices):
        assert not out.requires_grad, out
        assert out.grad_fn is None, out
    # and they cut the gradient path, as in PyTorch
    y = (x * x.long()).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -2.0])


def test_only_floating_tensors_can_require_grad():
    with pytest.raises(AutogradError, match="floating point"):
        tc.tensor([1, 2], requires_grad=True)
    with pytest.raises(AutogradError):
        tc.arange(3).requires_grad_()


def test_numpy_of_a_tensor_that_requires_grad_says_detach():
    x = f64([1.0])
    with pytest.raises(AutogradError, match="detach"):
        x.numpy()
    np.testing.assert_allclose(x.detach().numpy(), [1.0])


def test_requires_grad_false_on_non_leaf_is_refused():
    y = f64([1.0]) * 2
    with pytest.raises(AutogradError, match="non-leaf"):
        y.requires_grad_(False)


# ---------------------------------------------------------------- detach
def test_detach_stops_gradients_and_shares_values():
    x = f64([1.0, 2.0])
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])  # d acted as a constant
    e = x.detach()
    with tc.no_grad():
        x.add_(1)
    np.testing.assert_allclose(e.numpy(), [2.0, 3.0])  # same memory, as in PyTorch


def test_detach_in_place():
    y = f64([1.0]) * 2
    y.detach_()
    assert not y.requires_grad and y.grad_fn is None


# ---------------------------------------------------------------- grad mode
def test_no_grad_context_records_nothing():
    x = f64([1.0])
    with tc.no_grad():
        y = x * 2
        assert not tc.is_grad_enabled()
    assert tc.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_enable_grad_inside_no_grad():
    x = f64([1.0])
    with tc.no_grad():
        with tc.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_grad_mode_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with tc.no_grad():
            1 / 0
    assert tc.is_grad_enabled()


# factories: set_grad_enabled(False) switches grad mode the moment it is called
@pytest.mark.parametrize("make_decorator", [tc.no_grad, lambda: tc.no_grad, tc.inference_mode,
                                            lambda: tc.inference_mode,
                                            lambda: tc.set_grad_enabled(False)],
                         ids=["no_grad()", "no_grad", "inference_mode()", "inference_mode",
                              "set_grad_enabled(False)"])
def test_grad_mode_decorators_apply_only_inside(make_decorator):
    try:
        @make_decorator()
        def double(t):
            assert not tc.is_grad_enabled()
            return t * 2

        assert tc.is_grad_enabled(), "decorating a function must not change grad mode"
        y = double(f64([1.0]))
        assert not y.requires_grad
        assert tc.is_grad_enabled()
        assert double.__name__ == "double"
    finally:
        tc.set_grad_enabled(True)


def test_enable_grad_decorator_inside_no_grad():
    @tc.enable_grad()
    def double(t):
        return t * 2

    with tc.no_grad():
        y = double(f64([1.0]))
    assert y.requires_grad


def test_set_grad_enabled_switches_at_once_and_as_context():
    try:
        tc.set_grad_enabled(False)
        assert not tc.is_grad_enabled()
        tc.set_grad_enabled(True)
        with tc.set_grad_enabled(False):
            assert not tc.is_grad_enabled()
        assert tc.is_grad_enabled()
        with tc.no_grad(), tc.set_grad_enabled(True):
            assert tc.is_grad_enabled()
    finally:
        tc.set_grad_enabled(True)


# ---------------------------------------------------------------- autograd.grad
def test_autograd_grad_returns_gradients_without_touching_dot_grad():
    x = f64([1.0, 2.0])
    w = f64([3.0, 4.0])
    gx, gw = tc.autograd.grad((x * w).sum(), [x, w])
    np.testing.assert_allclose(gx.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(gw.numpy(), [1.0, 2.0])
    assert x.grad is None and w.grad is None


def test_autograd_grad_of_a_non_leaf():
    x = f64([1.0, 2.0])
    h = x * 3
    (gh,) = tc.autograd.grad((h * h).sum(), h)
    np.testing.assert_allclose(gh.numpy(), [6.0, 12.0])


def test_autograd_grad_with_grad_outputs():
    x = f64([1.0, 2.0])
    (g,) = tc.autograd.grad(x * x, x, grad_outputs=tc.tensor([1.0, -1.0], dtype=tc.float64))
    np.testing.assert_allclose(g.numpy(), [2.0, -4.0])


def test_autograd_grad_unused_input():
    x, unused = f64([1.0]), f64([2.0])
    with pytest.raises(AutogradError, match="allow_unused"):
        tc.autograd.grad((x * 2).sum(), [x, unused])
    gx, gu = tc.autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_allclose(gx.numpy(), [2.0])


def test_autograd_grad_needs_inputs_that_require_grad():
    with pytest.raises(AutogradError):
        tc.autograd.grad((f64([1.0]) * 2).sum(), tc.ones(1))


# ---------------------------------------------------------------- double backward
def _second_derivative(fn, x0: float) -> float:
    x = f64([x0])
    (g,) = tc.autograd.grad(fn(x).sum(), x, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    (h,) = tc.autograd.grad(g.sum(), x)
    return float(h.item())


@pytest.mark.parametrize("name,fn,second", [
    ("cube", lambda x: x * x * x, lambda v: 6 * v),
    ("pow", lambda x: x ** 3, lambda v: 6 * v),
    ("exp", tc.exp, np.exp),
    ("log", tc.log, lambda v: -1 / v**2),
    ("sin", tc.sin, lambda v: -np.sin(v)),
    ("tanh", tc.tanh, lambda v: -2 * np.tanh(v) * (1 - np.tanh(v) ** 2)),
    ("sigmoid", tc.sigmoid, lambda v: (s := 1 / (1 + np.exp(-v))) * (1 - s) * (1 - 2 * s)),
    ("sqrt", tc.sqrt, lambda v: -0.25 * v ** -1.5),
    ("reciprocal", lambda x: 1 / x, lambda v: 2 / v**3),
    ("softmax-ish", lambda x: tc.log_softmax(tc.cat([x, x * 2]), 0)[0], None),
])
def test_double_backward(name, fn, second):
    x0 = 0.7
    actual = _second_derivative(fn, x0)
    # central differences of the first derivative, itself taken by autograd
    def first(v):
        x = f64([v])
        fn(x).sum().backward()
        return float(x.grad.item())
    eps = 1e-5
    numeric = (first(x0 + eps) - first(x0 - eps)) / (2 * eps)
    np.testing.assert_allclose(actual, numeric, rtol=1e-6, atol=1e-8)
    if second is not None:
        np.testing.assert_allclose(actual, second(x0), rtol=1e-6)


def test_hessian_vector_product_through_matmul():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    x = f64(rng.normal(size=3))
    v = tc.tensor(rng.normal(size=3), dtype=tc.float64)
    A = tc.tensor(a, dtype=tc.float64)
    f = ((A @ x) ** 2).sum()  # Hessian 2 A^T A
    (g,) = tc.autograd.grad(f, x, create_graph=True)
    (hv,) = tc.autograd.grad((g * v).sum(), x)
    np.testing.assert_allclose(hv.numpy(), 2 * a.T @ a @ v.numpy(), rtol=1e-10)


def test_create_graph_backward_accumulates_differentiable_grads():
    x = f64([2.0])
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    np.testing.assert_allclose(g.detach().numpy(), [12.0])
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [12.0])  # d(3x^2)/dx = 6x
