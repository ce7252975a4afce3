"""The Tensor itself: creation functions, dtype inference, properties, conversions to Python
and numpy, the repr, and casts."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
from tracecc.runtime.errors import ShapeError, TraceccError


# ---------------------------------------------------------------- tensor() and dtype inference
@pytest.mark.parametrize("data,dtype", [
    (1.5, tc.float32), (3, tc.int64), (True, tc.bool), ([1, 2], tc.int64), ([1, 2.5], tc.float32),
    ([[True, False]], tc.bool), ([], tc.float32), (np.arange(3, dtype=np.int32), tc.int32),
    (np.ones(2), tc.float64), (np.float32(2.0), tc.float32), ([[1], [2]], tc.int64),
])
def test_tensor_infers_dtype_like_pytorch(data, dtype):
    t = tc.tensor(data)
    assert t.dtype is dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


def test_tensor_with_explicit_dtype_and_requires_grad():
    t = tc.tensor([1, 2], dtype=tc.float64, requires_grad=True)
    assert t.dtype is tc.float64 and t.requires_grad and t.is_leaf
    assert tc.tensor([1.7, -1.7], dtype=tc.int32).tolist() == [1, -1]  # truncates, as torch


def test_tensor_copies_but_from_numpy_and_as_tensor_share():
    a = np.zeros(3)
    copied, shared, as_t = tc.tensor(a), tc.from_numpy(a), tc.as_tensor(a)
    a[0] = 7.0
    assert copied[0].item() == 0.0
    assert shared[0].item() == 7.0 and as_t[0].item() == 7.0
    shared[1] = 5.0  # writes show through both ways
    assert a[1] == 5.0
    assert tc.as_tensor(a, dtype=tc.float32).dtype is tc.float32  # a different dtype copies
    t = tc.ones(2)
    assert tc.as_tensor(t) is t


def test_tensor_of_a_tensor_copies_without_history():
    x = tc.ones(2, requires_grad=True)
    y = tc.tensor(x * 2)
    assert not y.requires_grad and y.grad_fn is None
    np.testing.assert_array_equal(y.numpy(), [2.0, 2.0])


def test_nested_lists_of_0d_tensors():
    t = tc.tensor([tc.tensor(1.0), tc.tensor(2.0)])
    assert t.shape == (2,) and t.tolist() == [1.0, 2.0]


def test_from_numpy_rejects_non_arrays():
    with pytest.raises(TypeError):
        tc.from_numpy([1, 2])


# ---------------------------------------------------------------- creation functions
@pytest.mark.parametrize("make,shape,fill,dtype", [
    (lambda: tc.zeros(2, 3), (2, 3), 0.0, tc.float32),
    (lambda: tc.zeros((2, 3)), (2, 3), 0.0, tc.float32),
    (lambda: tc.zeros([4]), (4,), 0.0, tc.float32),
    (lambda: tc.zeros(tc.Size([1, 2])), (1, 2), 0.0, tc.float32),
    (lambda: tc.zeros(()), (), 0.0, tc.float32),
    (lambda: tc.zeros(0, 3), (0, 3), 0.0, tc.float32),
    (lambda: tc.ones(3, dtype=tc.int32), (3,), 1, tc.int32),
    (lambda: tc.ones(2, 2, dtype=tc.bool), (2, 2), True, tc.bool),
    (lambda: tc.empty(2, 2), (2, 2), None, tc.float32),
    (lambda: tc.full((2,), 1.5), (2,), 1.5, tc.float32),
    (lambda: tc.full((2,), 7), (2,), 7, tc.int64),
    (lambda: tc.full((2,), True), (2,), True, tc.bool),
    (lambda: tc.full((2,), 3, dtype=tc.float64), (2,), 3.0, tc.float64),
])
def test_filled_creation(make, shape, fill, dtype):
    t = make()
    assert tuple(t.shape) == shape and t.dtype is dtype
    if fill is not None:
        assert np.all(t.numpy() == fill)


def test_like_functions_follow_their_input():
    x = tc.ones(2, 3, dtype=tc.float64)
    for fn, fill in [(tc.zeros_like, 0), (tc.ones_like, 1), (tc.empty_like, None)]:
        t = fn(x)
        assert t.shape == x.shape and t.dtype is tc.float64
        if fill is not None:
            assert np.all(t.numpy() == fill)
    assert tc.zeros_like(x, dtype=tc.int32).dtype is tc.int32
    f = tc.full_like(x, 2.5)
    assert f.dtype is tc.float64 and np.all(f.numpy() == 2.5)
    assert tc.full_like(tc.arange(3), 4).dtype is tc.int64
    assert tc.ones_like(x, requires_grad=True).requires_grad


@pytest.mark.parametrize("args,kwargs,expected,dtype", [
    ((5,), {}, np.arange(5), tc.int64),
    ((2, 7), {}, np.arange(2, 7), tc.int64),
    ((0, 10, 3), {}, np.arange(0, 10, 3), tc.int64),
    ((5, 0, -2), {}, np.arange(5, 0, -2), tc.int64),
    ((0, 1, 0.25), {}, np.arange(0, 1, 0.25), tc.float32),
    ((4.0,), {}, np.arange(4.0), tc.float32),
    ((3,), {"dtype": tc.float64}, np.arange(3.0), tc.float64),
    ((0, 1, 0.1), {}, np.arange(0, 1, 0.1), tc.float32),
    ((3, 3), {}, np.arange(3, 3), tc.int64),
])
def test_arange(args, kwargs, expected, dtype):
    t = tc.arange(*args, **kwargs)
    assert t.dtype is dtype
    assert t.shape == expected.shape
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-6)


def test_arange_with_zero_step_is_an_error():
    with pytest.raises(TraceccError, match="step"):
        tc.arange(0, 5, 0)


def test_linspace_and_eye():
    lin = tc.linspace(-1, 1, 5)
    assert lin.dtype is tc.float32
    np.testing.assert_allclose(lin.numpy(), [-1, -0.5, 0, 0.5, 1])
    assert tc.linspace(0, 1, 1).tolist() == [0.0]
    assert tc.linspace(0, 1, 3, dtype=tc.float64).dtype is tc.float64
    np.testing.assert_array_equal(tc.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(tc.eye(2, 3).numpy(), np.eye(2, 3))
    assert tc.eye(2).dtype is tc.float32 and tc.eye(2, dtype=tc.int64).dtype is tc.int64


def test_default_dtype_governs_float_creation():
    try:
        tc.set_default_dtype(tc.float64)
        assert tc.tensor([1.5]).dtype is tc.float64
        assert tc.zeros(2).dtype is tc.float64
        assert tc.arange(0.0, 1.0, 0.5).dtype is tc.float64
        assert (tc.arange(3) / 2).dtype is tc.float64  # int / int promotes to the default
    finally:
        tc.set_default_dtype(tc.float32)
    assert tc.get_default_dtype() is tc.float32
    with pytest.raises(TypeError):
        tc.set_default_dtype(tc.int64)


def test_cpu_device_accepted_and_cuda_refused():
    assert tc.zeros(2, device="cpu").device == tc.device("cpu")
    assert str(tc.ones(1).device) == "cpu"
    with pytest.raises(TraceccError):
        tc.zeros(2, device="cuda")


# ---------------------------------------------------------------- properties
def test_shape_size_and_counts():
    t = tc.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tc.Size)
    assert repr(t.shape) == "tracecc.Size([2, 3, 4])"
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.ndim == 3 and t.dim() == 3
    assert t.numel() == 24 and tc.numel(t) == 24 and t.shape.numel() == 24
    assert t.element_size() == 4 and tc.ones(1, dtype=tc.float64).element_size() == 8
    assert len(t) == 2
    assert t.is_floating_point() and not tc.arange(2).is_floating_point()
    assert tc.is_tensor(t) and not tc.is_tensor(np.zeros(2))
    with pytest.raises(TraceccError):
        t.size(3)


def test_strides_and_contiguity():
    t = tc.zeros(2, 3)
    assert t.stride() == (3, 1) and t.stride(0) == 3
    assert t.is_contiguous()
    tt = t.t()
    assert tt.stride() == (1, 3) and not tt.is_contiguous()
    c = tt.contiguous()
    assert c.is_contiguous() and c.stride() == (2, 1)
    np.testing.assert_array_equal(c.numpy(), tt.numpy())
    assert t.contiguous() is t
    assert tt.clone().is_contiguous()


# ---------------------------------------------------------------- conversions
def test_item_and_python_numbers():
    assert tc.tensor(2.5).item() == 2.5 and isinstance(tc.tensor(2.5).item(), float)
    assert tc.tensor([7]).item() == 7 and isinstance(tc.tensor([7]).item(), int)
    assert tc.tensor(True).item() is True
    assert float(tc.tensor([1.5])) == 1.5 and int(tc.tensor(3.9)) == 3
    assert bool(tc.tensor([1])) and not bool(tc.tensor(0.0))
    assert tc.tensor(1.0, dtype=tc.bfloat16).item() == 1.0
    with pytest.raises(ShapeError, match="2 elements"):
        tc.tensor([1.0, 2.0]).item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(tc.tensor([1, 2]))


def test_index_dunder_for_python_indexing():
    items = ["a", "b", "c"]
    assert items[tc.tensor(2)] == "c"
    assert list(range(10))[tc.tensor(1):tc.tensor(3)] == [1, 2]
    with pytest.raises(TypeError):
        items[tc.tensor(1.0)]


def test_tolist_numpy_and_array_protocol():
    t = tc.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert tc.tensor(5).tolist() == 5
    assert tc.tensor([1.5], dtype=tc.float16).tolist() == [1.5]
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    a[0, 0] = 9.0  # numpy() shares memory, as in torch
    assert t[0, 0].item() == 9.0
    np.testing.assert_array_equal(np.asarray(t), a)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.add(t.numpy(), 1).sum() == 22.0


def test_iteration_and_len():
    t = tc.arange(6).reshape(3, 2)
    rows = list(t)
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(TypeError):
        len(tc.tensor(1.0))
    with pytest.raises(TypeError):
        iter(tc.tensor(1.0))


def test_tensors_hash_by_identity():
    a, b = tc.ones(2), tc.ones(2)
    assert len({a, b}) == 2
    assert (a == None) is False and (a != None) is True  # noqa: E711 - identity fallback


@pytest.mark.parametrize("convert,dtype", [
    (lambda t: t.float(), tc.float32), (lambda t: t.double(), tc.float64),
    (lambda t: t.half(), tc.float16), (lambda t: t.bfloat16(), tc.bfloat16),
    (lambda t: t.long(), tc.int64), (lambda t: t.int(), tc.int32), (lambda t: t.bool(), tc.bool),
    (lambda t: t.to(tc.float64), tc.float64), (lambda t: t.to(dtype=tc.int32), tc.int32),
    (lambda t: t.to("cpu", tc.float16), tc.float16), (lambda t: t.to(tc.ones(1, dtype=tc.int64)), tc.int64),
    (lambda t: t.type_as(tc.ones(1, dtype=tc.float64)), tc.float64),
])
def test_casts(convert, dtype):
    t = tc.tensor([-1.5, 0.0, 2.75])
    out = convert(t)
    assert out.dtype is dtype
    expected = np.array([-1.5, 0.0, 2.75]).astype(dtype.np)
    np.testing.assert_array_equal(np.asarray(out.tolist(), dtype=np.float64), expected.astype(np.float64))


def test_to_same_dtype_and_cpu_return_the_tensor_itself():
    t = tc.ones(2)
    assert t.to(tc.float32) is t and t.to("cpu") is t and t.cpu() is t
    with pytest.raises(TraceccError):
        t.to("cuda")


def test_cast_gradient_comes_back_in_the_source_dtype():
    x = tc.ones(2, requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype is tc.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_new_factories_follow_the_tensor():
    t = tc.ones(2, dtype=tc.float64)
    assert t.new_zeros(3).dtype is tc.float64 and t.new_zeros(3).shape == (3,)
    assert t.new_ones((2, 2)).shape == (2, 2)
    assert t.new_full((2,), 4.0).tolist() == [4.0, 4.0]
    assert t.new_tensor([1, 2]).dtype is tc.float64


# ---------------------------------------------------------------- repr
@pytest.mark.parametrize("make,text", [
    (lambda: tc.tensor([1.0, 2.0, 3.0]), "tensor([1., 2., 3.])"),
    (lambda: tc.tensor([[1.0, 2.0], [3.0, 4.0]]), "tensor([[1., 2.],\n        [3., 4.]])"),
    (lambda: tc.tensor(3.5), "tensor(3.5000)"),
    (lambda: tc.tensor([1, 2]), "tensor([1, 2])"),
    (lambda: tc.tensor([True, False]), "tensor([ True, False])"),
    (lambda: tc.tensor([1.0, 2.0], dtype=tc.float64), "tensor([1., 2.], dtype=tracecc.float64)"),
    (lambda: tc.tensor([1, 2], dtype=tc.int32), "tensor([1, 2], dtype=tracecc.int32)"),
    (lambda: tc.zeros(0, 3), "tensor([], size=(0, 3))"),
    (lambda: tc.zeros(0), "tensor([])"),
    (lambda: tc.ones(2, requires_grad=True), "tensor([1., 1.], requires_grad=True)"),
    (lambda: tc.ones(2, requires_grad=True) * 2, "tensor([2., 2.], grad_fn=<MulBackward>)"),
    (lambda: tc.tensor([0.1234567, 10.5]), "tensor([ 0.1235, 10.5000])"),
    (lambda: tc.tensor([-0.5, 2.0]), "tensor([-0.5000,  2.0000])"),
    (lambda: tc.tensor([10.0, float("inf")]), "tensor([10., inf])"),
    (lambda: tc.tensor([1.5, float("nan")]), "tensor([1.5000,    nan])"),
    (lambda: tc.tensor(1e-5), "tensor(1.0000e-05)"),
    (lambda: tc.tensor([1e9, 1.0]), "tensor([1.0000e+09, 1.0000e+00])"),
    (lambda: tc.tensor([0.5], dtype=tc.float16), "tensor([0.5000], dtype=tracecc.float16)"),
])
def test_repr_reads_like_pytorch(make, text):
    assert repr(make()) == text


def test_repr_of_a_large_tensor_is_summarised():
    text = repr(tc.arange(5000))
    assert "..." in text and len(text) < 200


def test_arange_refuses_a_range_that_runs_backwards():
    for args in [(5, 3), (0, -1, 1), (0.5, 0, 1.0)]:
        with pytest.raises(ShapeError, match="wrong side"):
            tc.arange(*args)
    assert tc.arange(5, 0, -2).tolist() == [5, 3, 1]
    assert tc.arange(0, 0, -1).tolist() == []
