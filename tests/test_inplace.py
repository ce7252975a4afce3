"""In-place variants: their values, dtype rules, and autograd safety. Modifying a tensor that
a pending backward still needs is an error (version counter), never a wrong gradient; an
in-place op whose old value nobody needs works as in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
from tracecc.runtime.errors import DTypeError, InplaceError, ShapeError, TraceccError


def f64(values, requires_grad=False):
    return tc.tensor(values, dtype=tc.float64, requires_grad=requires_grad)


X = np.array([[0.5, -1.5, 2.0], [1.0, 0.25, -0.75]])
Y = np.array([2.0, -0.5, 1.5])


@pytest.mark.parametrize("name,call,ref", [
    ("add_", lambda t: t.add_(f64(Y)), lambda x: x + Y),
    ("add_(alpha)", lambda t: t.add_(f64(Y), alpha=2), lambda x: x + 2 * Y),
    ("sub_", lambda t: t.sub_(1.5), lambda x: x - 1.5),
    ("mul_", lambda t: t.mul_(f64(Y)), lambda x: x * Y),
    ("div_", lambda t: t.div_(4), lambda x: x / 4),
    ("pow_", lambda t: t.pow_(2), lambda x: x**2),
    ("neg_", lambda t: t.neg_(), lambda x: -x),
    ("abs_", lambda t: t.abs_(), np.abs),
    ("exp_", lambda t: t.exp_(), np.exp),
    ("sqrt_", lambda t: t.abs_().sqrt_(), lambda x: np.sqrt(np.abs(x))),
    ("relu_", lambda t: t.relu_(), lambda x: np.maximum(x, 0)),
    ("sigmoid_", lambda t: t.sigmoid_(), lambda x: 1 / (1 + np.exp(-x))),
    ("tanh_", lambda t: t.tanh_(), np.tanh),
    ("clamp_", lambda t: t.clamp_(-1, 1), lambda x: np.clip(x, -1, 1)),
    ("clamp_(min)", lambda t: t.clamp_(min=0), lambda x: np.maximum(x, 0)),
    ("zero_", lambda t: t.zero_(), np.zeros_like),
    ("fill_", lambda t: t.fill_(3.5), lambda x: np.full_like(x, 3.5)),
    ("fill_(tensor)", lambda t: t.fill_(f64(2.0)), lambda x: np.full_like(x, 2.0)),
    ("copy_", lambda t: t.copy_(f64(Y)), lambda x: np.broadcast_to(Y, x.shape)),
    ("masked_fill_", lambda t: t.masked_fill_(f64(X) > 0, -1.0), lambda x: np.where(x > 0, -1.0, x)),
    ("lerp_", lambda t: t.lerp_(f64(Y), 0.5), lambda x: x + 0.5 * (Y - x)),
    ("addcmul_", lambda t: t.addcmul_(f64(Y), f64(Y), value=2), lambda x: x + 2 * Y * Y),
    ("addcdiv_", lambda t: t.addcdiv_(f64(Y), f64(Y) + 3, value=0.5), lambda x: x + 0.5 * Y / (Y + 3)),
    ("+=", lambda t: t.__iadd__(f64(Y)), lambda x: x + Y),
    ("-=", lambda t: t.__isub__(2), lambda x: x - 2),
    ("*=", lambda t: t.__imul__(3), lambda x: x * 3),
    ("/=", lambda t: t.__itruediv__(f64(Y)), lambda x: x / Y),
])
def test_inplace_values_and_identity(name, call, ref):
    t = f64(X)
    data_before = t._data
    out = call(t)
    assert out is t, f"{name} must return the tensor itself"
    assert t._data is data_before, f"{name} must write into the same memory"
    np.testing.assert_allclose(t.numpy(), ref(X.copy()), rtol=1e-12)
    assert t._version[0] > 0


def test_augmented_assignment_keeps_the_object():
    t = f64(X)
    alias = t
    t += 1
    t *= 2
    assert t is alias
    np.testing.assert_allclose(alias.numpy(), (X + 1) * 2)


def test_inplace_writes_through_views_and_numpy():
    base = np.zeros((2, 3))
    t = tc.from_numpy(base)
    t[0].fill_(1.0)
    t[:, 2].add_(5.0)
    np.testing.assert_allclose(base, [[1, 1, 6], [0, 0, 5]])
    v = t.view(6)
    v.mul_(2)
    np.testing.assert_allclose(base, [[2, 2, 12], [0, 0, 10]])


def test_inplace_result_is_cast_to_the_tensors_dtype():
    t = tc.ones(3)  # float32
    t.add_(f64([1.0, 2.0, 3.0]))
    assert t.dtype is tc.float32
    np.testing.assert_allclose(t.numpy(), [2.0, 3.0, 4.0])
    i = tc.tensor([1, 2, 3])
    i.add_(tc.tensor([1, 1, 1], dtype=tc.int32))
    assert i.dtype is tc.int64


def test_inplace_cannot_go_from_float_to_int():
    i = tc.tensor([1, 2, 3])
    with pytest.raises(DTypeError) as err:
        i.add_(1.5)
    assert "float32" in str(err.value) and "int64" in str(err.value)
    with pytest.raises(DTypeError):
        i /= 2  # true division gives floats
    np.testing.assert_array_equal(i.numpy(), [1, 2, 3])  # untouched


def test_inplace_cannot_broadcast_the_destination():
    t = tc.zeros(3)
    with pytest.raises(ShapeError) as err:
        t.add_(tc.ones(2, 3))
    assert "[3]" in str(err.value) and "[2, 3]" in str(err.value)


def test_inplace_on_an_expanded_tensor_is_refused():
    e = tc.ones(3).expand(2, 3)
    with pytest.raises(TraceccError, match="clone"):
        e.add_(1)


# ---------------------------------------------------------------- autograd safety
def test_inplace_on_a_leaf_that_requires_grad_is_refused():
    w = f64([1.0, 2.0], requires_grad=True)
    with pytest.raises(InplaceError, match="leaf"):
        w.add_(1)
    with tc.no_grad():  # the parameter update idiom
        w.sub_(0.5)
    np.testing.assert_allclose(w.detach().numpy(), [0.5, 1.5])
    assert w.requires_grad and w.grad_fn is None


def test_modifying_a_saved_input_then_backward_raises():
    x = f64([1.0, 2.0], requires_grad=True)
    c = f64([3.0, 4.0])
    y = (x * c).sum()  # mul saves c to compute x's gradient
    c.add_(1)
    with pytest.raises(InplaceError, match="modified by an in-place operation"):
        y.backward()


def test_modifying_a_saved_output_then_backward_raises():
    x = f64([1.0, 2.0], requires_grad=True)
    e = x.exp()  # exp's gradient reads its output
    loss = e.sum()
    e.mul_(2)
    with pytest.raises(InplaceError):
        loss.backward()


def test_modifying_a_saved_tensor_through_a_view_raises():
    x = f64([1.0, 2.0, 3.0], requires_grad=True)
    c = f64([3.0, 4.0, 5.0])
    y = (x * c).sum()
    c[1:].zero_()  # a view shares the version counter
    with pytest.raises(InplaceError):
        y.backward()


def test_modifying_a_detached_alias_then_backward_raises():
    x = f64([1.0, 2.0], requires_grad=True)
    e = x.exp()
    loss = e.sum()
    e.detach().zero_()
    with pytest.raises(InplaceError):
        loss.backward()


def test_index_assignment_of_a_saved_tensor_raises():
    x = f64([1.0, 2.0], requires_grad=True)
    c = f64([3.0, 4.0])
    y = (x * c).sum()
    c[0] = 10.0
    with pytest.raises(InplaceError):
        y.backward()


def test_modifying_a_tensor_nobody_saved_is_fine():
    x = f64([1.0, 2.0], requires_grad=True)
    c = f64([3.0, 4.0])
    y = (x + c).sum()  # add's gradient reads no values
    c.add_(100)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_changes_through_dot_data_are_invisible_to_autograd():
    x = f64([1.0, 2.0], requires_grad=True)
    c = f64([3.0, 4.0])
    y = (x * c).sum()
    c.data.mul_(1)  # like torch: .data bypasses the version counter
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


@pytest.mark.parametrize("name,update,grad", [
    ("mul_", lambda h: h.mul_(3), [6.0, 6.0]),
    ("*=", lambda h: h.__imul__(3), [6.0, 6.0]),
    ("add_", lambda h: h.add_(1), [2.0, 2.0]),
    ("div_", lambda h: h.div_(4), [0.5, 0.5]),
    ("pow_", lambda h: h.pow_(2), [8.0, 16.0]),  # d(2x)^2/dx = 8x
    ("relu_", lambda h: h.relu_(), [2.0, 2.0]),
    ("exp_", lambda h: h.exp_(), [2 * np.exp(2.0), 2 * np.exp(4.0)]),
    ("clamp_", lambda h: h.clamp_(max=3.0), [2.0, 0.0]),
    ("setitem", lambda h: h.__setitem__(0, 5.0), [0.0, 2.0]),
])
def test_inplace_on_a_non_leaf_gives_pytorchs_gradient(name, update, grad):
    x = f64([1.0, 2.0], requires_grad=True)
    h = x * 2
    update(h)
    assert h.requires_grad
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-12)


def test_inplace_adding_a_tensor_that_requires_grad():
    w = f64([1.0, 2.0], requires_grad=True)
    acc = tc.zeros(2, dtype=tc.float64)
    acc += w * w
    acc += w
    assert acc.requires_grad
    acc.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 5.0])


def test_inplace_multiply_by_a_tensor_that_requires_grad():
    w = f64([1.0, 2.0], requires_grad=True)
    h = f64([3.0, 4.0])
    h.mul_(w)  # w's gradient needs h's old value, which the in-place op overwrites
    h.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 4.0])


def test_index_assignment_with_a_value_that_requires_grad():
    v = f64([5.0, 6.0], requires_grad=True)
    x = tc.zeros(4, dtype=tc.float64)
    x[1:3] = v * 2
    assert x.requires_grad
    (x * f64([1.0, 2.0, 3.0, 4.0])).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), [4.0, 6.0])
    np.testing.assert_allclose(x.detach().numpy(), [0.0, 10.0, 12.0, 0.0])


def test_inplace_on_a_non_leaf_still_protects_other_consumers():
    x = f64([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = (h * h).sum()  # saves h
    h.mul_(3)  # h's own history is fine, y's is not
    h.sum().backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])
    with pytest.raises(InplaceError):
        y.backward()


@pytest.mark.parametrize("reset", [lambda h: h.zero_(), lambda h: h.fill_(3.0)],
                         ids=["zero_", "fill_"])
def test_resetting_a_non_leaf_cuts_its_gradient(reset):
    x = f64([1.0, 2.0], requires_grad=True)
    h = x * 2
    reset(h)
    h.add_(1)  # h is still a non-leaf, not a leaf that requires grad
    assert h.requires_grad and h.grad_fn is not None
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0])  # as PyTorch: zeros, not None


@pytest.mark.parametrize("update", [lambda x, w: x[:2].add_(w), lambda x, w: x[:2].__iadd__(w),
                                    lambda x, w: x.__setitem__(slice(0, 2), w),
                                    lambda x, w: x.view(3)[:2].copy_(w)],
                         ids=["x[:2].add_(w)", "x[:2] += w", "x[:2] = w", "x.view(3)[:2].copy_(w)"])
def test_recorded_inplace_update_of_a_view_reaches_the_viewed_tensor(update):
    """The tensor a view looks into records the update too (PyTorch's CopySlices): its
    values and its gradient both include w."""
    w = f64([1.0, 2.0], requires_grad=True)
    x = tc.zeros(3, dtype=tc.float64)
    update(x, w)
    assert x.requires_grad
    (x * f64([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 2.0, 0.0])


def test_inplace_update_of_a_view_of_a_non_leaf():
    a = f64([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    h = a * 2
    h[0].mul_(3)  # row 0 scaled again: d/da = 6 there, 2 elsewhere
    h.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [[6.0, 6.0], [2.0, 2.0]])


def test_inplace_update_of_a_view_of_a_leaf_that_requires_grad_is_refused():
    w = f64([1.0, 2.0], requires_grad=True)
    with pytest.raises(InplaceError, match="leaf"):
        w[0].mul_(2)
    with tc.no_grad():
        w[0].mul_(2)
    np.testing.assert_allclose(w.detach().numpy(), [2.0, 2.0])


@pytest.mark.parametrize("base_requires_grad", [False, True])
def test_a_view_taken_before_its_base_changed_follows_the_new_history(base_requires_grad):
    """v = x[:, 0] is taken, then x[0] is overwritten with w * 5 through x: v's memory now
    holds w's values, so v's gradient must reach w (not the old x)."""
    a = f64([[1.0, 1.0], [1.0, 1.0]], requires_grad=base_requires_grad)
    w = f64([1.0, 1.0], requires_grad=True)
    x = a * 1 if base_requires_grad else a
    v = x[:, 0]
    x[0] = w * 5
    np.testing.assert_allclose(v.detach().numpy(), [5.0, 1.0])
    (v * f64([1.0, 10.0])).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [5.0, 0.0])
    if base_requires_grad:
        np.testing.assert_allclose(a.grad.numpy(), [[0.0, 0.0], [10.0, 0.0]])


def test_sibling_views_see_each_others_recorded_updates():
    w = f64([2.0], requires_grad=True)
    x = tc.zeros(2, 2, dtype=tc.float64)
    row, col = x[0], x[:, 0]
    row[0:1].copy_(w)  # writes x[0, 0], which col also shows
    col.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0])


@pytest.mark.parametrize("requires_grad", [False, True])
def test_a_reshape_that_copies_is_not_a_view(requires_grad):
    x = f64([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=requires_grad)
    y = x.t().reshape(6)  # not expressible as a view: a copy, as in PyTorch
    w = f64([1.0] * 6, requires_grad=True)
    y.add_(w) if requires_grad else y.add_(1.0)
    np.testing.assert_allclose(x.detach().numpy(), [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(y.detach().numpy(), [2.0, 5.0, 3.0, 6.0, 4.0, 7.0])
