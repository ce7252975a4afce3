"""x[index] and x[index] = value against numpy (basic indices by hypothesis; integer tensors,
masks, None, Ellipsis), with and without autograd watching, and the errors for bad indices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tracecc as tc
from tracecc.runtime.errors import IndexError_, TraceccError


def _forward_slices_only(index) -> bool:
    """PyTorch (and tracecc) take no negative slice steps."""
    items = index if isinstance(index, tuple) else (index,)
    return all(not (isinstance(i, slice) and i.step is not None and i.step < 0) for i in items)


@st.composite
def array_and_basic_index(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True)
                 .filter(_forward_slices_only))
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape), index


@settings(max_examples=150, deadline=None)
@given(array_and_basic_index())
def test_basic_indexing_matches_numpy(case):
    a, index = case
    t = tc.tensor(a)
    out = t[index]
    np.testing.assert_array_equal(out.numpy(), a[index])
    if out.numel():  # basic indexing gives a view: writes show through
        out.fill_(-1.0)
        assert (t.numpy() == -1.0).sum() == out.numel()


@settings(max_examples=100, deadline=None)
@given(array_and_basic_index(), st.booleans())
def test_basic_index_assignment_matches_numpy(case, watched):
    a, index = case
    expected = a.copy()
    expected[index] = -7.0
    base = tc.tensor(a, requires_grad=watched)
    t = base * 1 if watched else base  # a non-leaf that requires grad takes the autograd path
    t[index] = -7.0
    np.testing.assert_array_equal(t.detach().numpy(), expected)
    if watched:
        t.sum().backward()
        np.testing.assert_array_equal(base.grad.numpy(), (expected != -7.0) | (a == -7.0))


X = np.arange(60, dtype=np.float64).reshape(3, 4, 5)


@pytest.mark.parametrize("make_index", [
    lambda m: (m.tensor([2, 0, 2]),),
    lambda m: (m.tensor([[0, 1], [-1, -2]]),),
    lambda m: (slice(None), m.tensor([3, 1])),
    lambda m: (m.tensor([0, 2]), m.tensor([1, 3])),
    lambda m: (m.tensor([0, 2]), slice(None), m.tensor([1, 4])),  # separated: indexed dims go first
    lambda m: (Ellipsis, m.tensor([0, -1])),
    lambda m: (None, m.tensor([1]), None, slice(1, 3)),
    lambda m: (1, slice(None), m.tensor([0, 4])),
    lambda m: (m.tensor(1), slice(None), m.tensor([0, 4])),  # a 0-d index tensor is an int
    lambda m: ([0, 2],),
    lambda m: (m.tensor(X.sum(axis=(1, 2)) > 500),),
    lambda m: (slice(None), m.tensor([True, False, True, False])),
    lambda m: (m.tensor(X > 30),),
    lambda m: (slice(None), m.tensor(X[0] > 3)),
    lambda m: (True,), lambda m: (False,), lambda m: (m.tensor(True), 0),
    lambda m: (m.tensor([], dtype=m.int64),),
    lambda m: (m.tensor([1, 2], dtype=m.int32), slice(None, None, 2)),
])
def test_advanced_indexing_matches_pytorch_placement(make_index):
    torch = pytest.importorskip("torch")
    ours = tc.tensor(X)[make_index(tc)]
    theirs = torch.tensor(X)[make_index(torch)]
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_advanced_indexing_values_without_torch():
    t = tc.tensor(X)
    np.testing.assert_array_equal(t[tc.tensor([2, 0])].numpy(), X[[2, 0]])
    np.testing.assert_array_equal(t[:, [3, 1]].numpy(), X[:, [3, 1]])
    np.testing.assert_array_equal(t[[0, 2], :, [1, 4]].numpy(), X[[0, 2], :, [1, 4]])
    np.testing.assert_array_equal(t[tc.tensor(X > 30)].numpy(), X[X > 30])
    np.testing.assert_array_equal(t[1, :, [0, 4]].numpy(), X[1][:, [0, 4]])


def test_advanced_indexing_gradient_accumulates_repeats():
    x = tc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[tc.tensor([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])


@pytest.mark.parametrize("index,value", [
    ((tc.tensor([0, 2]),), 5.0),
    ((slice(None), tc.tensor([1, 3])), np.arange(6.0).reshape(3, 2, 1)),
    ((tc.tensor(X > 30),), -1.0),
    ((0, tc.tensor([True, False, False, True])), np.arange(10.0).reshape(2, 5)),
    ((Ellipsis, 2), np.arange(4.0)),
])
@pytest.mark.parametrize("watched", [False, True])
def test_advanced_index_assignment(index, value, watched):
    np_index = tuple(i.numpy() if isinstance(i, tc.Tensor) else i for i in index)
    expected = X.copy()
    expected[np_index] = value
    v = tc.tensor(value, dtype=tc.float64, requires_grad=watched) if isinstance(value, np.ndarray) else value
    base = tc.tensor(X, requires_grad=watched)
    t = base * 1 if watched else base
    t[index] = v
    np.testing.assert_array_equal(t.detach().numpy(), expected)
    if watched:
        t.sum().backward()
        written = np.zeros(X.shape, bool)
        written[np_index] = True
        np.testing.assert_array_equal(base.grad.numpy(), ~written)
        if isinstance(v, tc.Tensor):
            assert v.grad.shape == v.shape


@pytest.mark.parametrize("watched", [False, True])
def test_index_assignment_places_dimensions_as_pytorch(watched):
    """x[0, :, [0, 1]] selects shape (3, 2) in PyTorch (numpy would say (2, 3)): the value
    is laid out the same way when assigning."""
    base = tc.zeros(2, 3, 4, dtype=tc.float64, requires_grad=watched)
    x = base * 1 if watched else base
    value = tc.tensor(np.arange(6.0).reshape(3, 2))
    x[0, :, [0, 1]] = value
    np.testing.assert_array_equal(x[0, :, [0, 1]].detach().numpy(), value.numpy())
    assert x.sum().item() == 15.0
    x[tc.tensor([1, 1]), 0] = 7.0  # a repeated index writes one place
    assert x[1, 0].tolist() == [7.0] * 4


def test_index_assignment_with_tensor_value_and_dtype_cast():
    t = tc.zeros(4, dtype=tc.int64)
    t[1:3] = tc.tensor([1.9, -2.9])  # cast to the destination dtype, as torch does
    assert t.tolist() == [0, 1, -2, 0]
    t[tc.tensor([True, False, False, True])] = 7
    assert t.tolist() == [7, 1, -2, 7]


def test_index_assignment_broadcast_error_names_the_shape():
    t = tc.zeros(3, 4)
    with pytest.raises(TraceccError):
        t[0] = tc.ones(3)


@pytest.mark.parametrize("index,pattern", [
    ((0, 0, 0, 0), "too many indices"),
    ((5,), "out of bounds"),
    ((-4,), "out of bounds"),
    ((tc.tensor([0, 3]),), "out of bounds"),
    ((tc.tensor([-4]),), "out of bounds"),
    ((slice(None), tc.tensor([9])), "out of bounds"),
    ((tc.tensor([0.5]),), "long, int or bool"),
    ((Ellipsis, Ellipsis), "single ellipsis"),
    ((tc.tensor([True, False]),), "shape of the mask"),
])
def test_bad_indices_raise_index_errors(index, pattern):
    t = tc.zeros(3, 4, 5)
    with pytest.raises(IndexError_, match=pattern) as err:
        t[index]
    assert isinstance(err.value, IndexError)  # also catchable as the builtin


def test_negative_slice_steps_are_refused():
    with pytest.raises(ValueError, match="step"):
        tc.arange(5)[::-1]
