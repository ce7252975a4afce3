"""PyTorch's answers at the edges the op table does not draw: NaN and infinity, ties, zeros
in products, integer division by zero, data-dependent shapes (nonzero), and legacy forms
PyTorch still accepts. Each expectation is PyTorch's, checked against torch when installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tracecc as tc
from tracecc.runtime.errors import ShapeError, TraceccError

try:  # the expectations are PyTorch's: when it is installed, it is asked too
    import torch
except ImportError:
    torch = None

NAN, INF = math.nan, math.inf
pytestmark = pytest.mark.filterwarnings("ignore:var\\(\\):UserWarning")  # torch, on var of one element


def _values(t):
    return np.asarray(t.detach().numpy(), dtype=np.float64)


@pytest.mark.parametrize("name,fn,expected", [
    ("max propagates nan", lambda m: m.tensor([1.0, NAN, 3.0]).max(), NAN),
    ("argmax points at nan", lambda m: m.tensor([1.0, NAN, 3.0]).argmax(), 1),
    ("maximum propagates nan", lambda m: m.maximum(m.tensor([1.0, NAN]), m.tensor([NAN, 0.0])), [NAN, NAN]),
    ("relu keeps nan", lambda m: m.relu(m.tensor([NAN, -1.0])), [NAN, 0.0]),
    ("clamp keeps nan", lambda m: m.clamp(m.tensor([NAN, -1.0, 2.0]), 0, 1), [NAN, 0.0, 1.0]),
    ("clamp with min > max gives max", lambda m: m.clamp(m.tensor([0.0, 5.0]), 3, 1), [1.0, 1.0]),
    ("round half to even", lambda m: m.round(m.tensor([0.5, 1.5, 2.5, -0.5])), [0.0, 2.0, 2.0, -0.0]),
    ("softmax of -inf row entries", lambda m: m.softmax(m.tensor([-INF, 1.0]), 0), [0.0, 1.0]),
    ("log_softmax with -inf", lambda m: m.log_softmax(m.tensor([-INF, 1.0]), 0), [-INF, 0.0]),
    ("logsumexp of inf", lambda m: m.logsumexp(m.tensor([INF, 1.0]), 0), INF),
    ("logsumexp of all -inf", lambda m: m.logsumexp(m.tensor([-INF, -INF]), 0), -INF),
    ("logsumexp of an empty row", lambda m: m.logsumexp(m.zeros(2, 0), 1), [-INF, -INF]),
    ("softmax of an empty row", lambda m: m.softmax(m.zeros(2, 0), 1).reshape(-1), []),
    ("mean of nothing", lambda m: m.zeros(2, 0).mean(1), [NAN, NAN]),
    ("var of one element", lambda m: m.tensor([3.0]).var(), NAN),
    ("sum of nothing", lambda m: m.zeros(0).sum(), 0.0),
    ("prod of nothing", lambda m: m.zeros(0).prod(), 1.0),
    ("float division by zero", lambda m: m.tensor([1.0, -1.0, 0.0]) / 0, [INF, -INF, NAN]),
    ("float floor division by zero", lambda m: m.tensor([1.0]) // 0, [INF]),
    ("sqrt of negative", lambda m: m.sqrt(m.tensor([-1.0])), [NAN]),
    ("log of zero", lambda m: m.log(m.tensor([0.0])), [-INF]),
    ("remainder takes the divisor's sign", lambda m: m.tensor([-7, 7]) % 3, [2, 1]),
    ("fmod-free floor division", lambda m: m.tensor([-7, 7]) // m.tensor([2, -2]), [-4, -4]),
    ("int8 abs wraps", lambda m: m.abs(m.tensor([-128], dtype=m.int8)), [-128]),
    ("bool plus bool is or", lambda m: m.tensor([True, False]) + m.tensor([True, False]), [1.0, 0.0]),
])
def test_special_values(name, fn, expected):
    np.testing.assert_array_equal(_values(fn(tc)), np.asarray(expected, dtype=np.float64), err_msg=name)
    if torch is not None:
        np.testing.assert_array_equal(_values(fn(torch)), np.asarray(expected, dtype=np.float64),
                                      err_msg=f"{name}: the expectation is not PyTorch's")


@pytest.mark.parametrize("name,fn,grad", [
    ("prod with one zero", lambda x: x.prod(), [6.0, 0.0, 0.0]),
    ("prod with two zeros", lambda x: (x * x.new_tensor([1.0, 1.0, 0.0])).prod(), [0.0, 0.0, 0.0]),
    ("prod over dim with a zero", lambda x: x.reshape(1, 3).prod(1).sum(), [6.0, 0.0, 0.0]),
    ("x ** 0 at zero", lambda x: (x ** 0).sum(), [0.0, 0.0, 0.0]),
    ("abs at zero", lambda x: x.abs().sum(), [0.0, 1.0, 1.0]),
    ("relu at zero", lambda x: x.relu().sum(), [0.0, 1.0, 1.0]),
    ("clamp at the bounds", lambda x: x.clamp(0.0, 2.0).sum(), [1.0, 1.0, 0.0]),
    ("maximum on ties", lambda x: x.maximum(x.detach()).sum(), [0.5, 0.5, 0.5]),
    ("max over ties shares", lambda x: _ties(x).max(), [1 / 3] * 3),
    ("max(dim) over ties picks one", lambda x: _ties(x).reshape(1, 3).max(1).values.sum(), [1.0, 0.0, 0.0]),
    ("amax over ties shares", lambda x: _ties(x).amax(), [1 / 3] * 3),
    ("sqrt at zero", lambda x: (x * x.new_tensor([1.0, 0.0, 0.0])).sqrt().sum(), [INF, NAN, NAN]),
])
def test_gradients_at_special_points(name, fn, grad):
    """x = [0, 2, 3]: gradients where the function has a kink, a zero, or a tie."""
    x = tc.tensor([0.0, 2.0, 3.0], dtype=tc.float64, requires_grad=True)
    fn(x).backward()
    np.testing.assert_allclose(_values(x.grad), grad, err_msg=name)
    if torch is not None:
        t = torch.tensor([0.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
        fn(t).backward()
        np.testing.assert_allclose(_values(t.grad), grad, err_msg=f"{name}: the expectation is not PyTorch's")


def _ties(x):
    """All ones, with gradient 1 back to each element of x."""
    return x - x.detach() + 1


def test_integer_division_by_zero_is_an_error_not_zero():
    for fn in (lambda: tc.tensor([1, 2]) // tc.tensor([0, 1]), lambda: tc.tensor([1, 2]) % 0,
               lambda: tc.floor_divide(tc.tensor([3], dtype=tc.int32), 0)):
        with pytest.raises(TraceccError, match="division by zero"):
            fn()


def test_nonzero():
    x = tc.tensor([[0, 1, 0], [2, 0, 3]])
    np.testing.assert_array_equal(tc.nonzero(x).numpy(), np.argwhere(x.numpy()))
    assert x.nonzero().dtype is tc.int64
    rows, cols = tc.nonzero(x, as_tuple=True)
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [1, 0, 2]
    assert tc.nonzero(tc.zeros(2, 3)).shape == (0, 2)
    assert tc.nonzero(tc.tensor(5.0)).shape == (1, 0) and tc.nonzero(tc.tensor(0.0)).shape == (0, 0)
    assert tc.nonzero(tc.tensor(5.0), as_tuple=True)[0].tolist() == [0]


def test_cat_skips_legacy_empty_vectors():
    x = tc.ones(2, 3)
    assert tc.cat([x, tc.zeros(0)]).shape == (2, 3)
    assert tc.cat([tc.tensor([]), x, tc.tensor([])], dim=1).shape == (2, 3)
    assert tc.cat([tc.zeros(0), tc.zeros(0)]).shape == (0,)
    acc = tc.tensor([])
    for i in range(3):
        acc = tc.cat([acc, tc.full((1,), float(i))])
    assert acc.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("fn,pattern", [
    (lambda: tc.ones(3).expand(-1, 3), "leading"),
    (lambda: tc.ones(2, 3, 4).flatten(2, 1), "start_dim"),
])
def test_more_shape_errors(fn, pattern):
    with pytest.raises(ShapeError, match=pattern):
        fn()


def test_inf_and_nan_results_raise_no_numpy_warning_and_leave_numpy_settings_alone():
    """Eager kernels run with numpy's floating-point warnings off (inf/nan are values, as in
    PyTorch); the caller's own numpy error settings are untouched, inside errstate too."""
    import warnings

    before = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = tc.tensor([1.0, 0.0, -1.0]) / tc.tensor([0.0, 0.0, 0.0])
        assert np.isinf(y.numpy()[0]) and np.isnan(y.numpy()[1])
        assert tc.exp(tc.tensor([1000.0])).numpy()[0] == np.inf
        with np.errstate(divide="raise"):
            assert tc.log(tc.tensor([0.0])).numpy()[0] == -np.inf
            with pytest.raises(FloatingPointError):
                np.log(np.zeros(1))
    assert np.geterr() == before
    with pytest.warns(RuntimeWarning):
        np.array([1.0]) / 0.0
