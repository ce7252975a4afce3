"""Error paths: every error is a TraceccError with a stable code, names the op and the
shapes or dtypes involved, and points at the user's line (this file), not tracecc's."""

from __future__ import annotations

import inspect

import pytest

import tracecc as tc
from tracecc.runtime import errors
from tracecc.runtime.errors import AutogradError, DTypeError, ShapeError, TraceccError
from tracecc.runtime.registry import TensorType, get


def _raises(exc, fn, *fragments):
    """fn() raises exc whose message holds every fragment and whose location is the line of
    the caller (the user's code)."""
    line = inspect.currentframe().f_back.f_lineno
    with pytest.raises(exc) as info:
        fn()
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} missing from: {text}"
    assert text.startswith(f"[{info.value.code}] ")
    assert info.value.location.startswith(__file__), info.value.location
    return info.value, line


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("op,fn", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: tc.sub(a, b)), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("maximum", tc.maximum), ("lt", lambda a, b: a < b),
    ("pow", lambda a, b: a ** b), ("where", lambda a, b: tc.where(a > 0, a, b)),
])
def test_broadcast_mismatch_names_op_and_both_shapes(op, fn):
    a, b = tc.ones(2, 3), tc.ones(4)
    _raises(ShapeError, lambda: fn(a, b), op, "[2, 3]", "[4]", "broadcast")


def test_broadcast_error_points_at_the_users_line():
    a, b = tc.ones(3), tc.ones(4)
    with pytest.raises(ShapeError) as info:
        a + b  # this line
    expected_line = inspect.currentframe().f_lineno - 1
    assert info.value.location == f"{__file__}:{expected_line}"
    assert f"at: {__file__}:{expected_line}" in str(info.value)


@pytest.mark.parametrize("a,b,fragments", [
    ((2, 3), (4, 5), ("matmul", "[2, 3]", "[4, 5]", "3 != 4")),
    ((5, 2, 3), (5, 4, 2), ("matmul", "[5, 2, 3]", "[5, 4, 2]")),
    ((2, 2, 3), (3, 3, 4), ("matmul", "[2]", "[3]")),  # batch dimensions don't broadcast
    ((3,), (4,), ("matmul", "[1, 3]", "[4, 1]")),
])
def test_matmul_mismatch_names_both_shapes(a, b, fragments):
    _raises(ShapeError, lambda: tc.ones(*a) @ tc.ones(*b), *fragments)


def test_matmul_of_a_0d_tensor():
    _raises(ShapeError, lambda: tc.matmul(tc.tensor(1.0), tc.ones(2)), "matmul", "[]", "[2]")


@pytest.mark.parametrize("fn,fragments", [
    (lambda: tc.mm(tc.ones(2, 3, 4), tc.ones(4, 2)), ("mm", "[2, 3, 4]")),
    (lambda: tc.bmm(tc.ones(2, 3), tc.ones(3, 2)), ("bmm", "[2, 3]")),
    (lambda: tc.dot(tc.ones(2, 2), tc.ones(2)), ("dot", "[2, 2]")),
    (lambda: tc.ones(6).reshape(4, 2), ("reshape", "[4, 2]", "6")),
    (lambda: tc.ones(6).reshape(-1, -1), ("reshape", "-1")),
    (lambda: tc.ones(2, 3).expand(4, 3, 2), ("expand", "[2, 3]", "[4, 3, 2]")),
    (lambda: tc.ones(2, 3).permute(0, 0), ("permute", "(0, 0)")),
    (lambda: tc.cat([tc.ones(2, 3), tc.ones(2, 4)]), ("cat", "[2, 3]", "[2, 4]")),
    (lambda: tc.stack([tc.ones(2), tc.ones(3)]), ("stack", "[2]", "[3]")),
    (lambda: tc.split(tc.ones(5), [2, 2]), ("split", "5")),
    (lambda: tc.ones(2, 3).t().view(6), ("view", "reshape")),
    (lambda: tc.ones(3).item(), ("item", "3 elements")),
    (lambda: tc.gather(tc.ones(1, 3), 1, tc.zeros(2, 3, dtype=tc.int64)), ("gather", "[2, 3]", "[1, 3]")),
    (lambda: tc.scatter_add(tc.ones(1, 3), 1, tc.zeros(2, 3, dtype=tc.int64), tc.ones(2, 3)),
     ("scatter_add", "[2, 3]", "[1, 3]")),
    (lambda: tc.index_add(tc.ones(3, 2), 0, tc.tensor([0]), tc.ones(2, 2)), ("index_add", "[2, 2]")),
    (lambda: tc.zeros(3).add_(tc.ones(2, 3)), ("add_", "[3]", "[2, 3]")),
    (lambda: tc.full((-1,), 0.0), ("negative",)),
])
def test_shape_errors_name_the_op(fn, fragments):
    _raises(ShapeError, fn, *fragments)


@pytest.mark.parametrize("fn,fragments", [
    (lambda: tc.ones(2, 3).sum(2), ("sum", "dimension 2", "2-d")),
    (lambda: tc.ones(2, 3).softmax(-3), ("-3",)),
    (lambda: tc.ones(2).unsqueeze(3), ("unsqueeze",)),
    (lambda: tc.ones(2).transpose(0, 1), ("transpose",)),
    (lambda: tc.ones(2, 3).size(5), ("size",)),
])
def test_dimension_out_of_range(fn, fragments):
    err, _ = _raises(TraceccError, fn, *fragments)
    assert isinstance(err, IndexError)


def test_reducing_an_empty_dimension_without_identity():
    _raises(ShapeError, lambda: tc.zeros(2, 0).amax(1), "amax", "zero-size", "[2, 0]")
    _raises(ShapeError, lambda: tc.zeros(0).argmax(), "argmax")
    assert tc.zeros(2, 0).sum(1).tolist() == [0.0, 0.0]  # sum has an identity


# ---------------------------------------------------------------- dtypes
def _meta(name, *types, **params):
    """A primitive's meta rule: what tracing checks (eager asks it only when a kernel fails)."""
    return lambda: get(name).meta(*(TensorType(shape, dtype) for shape, dtype in types), **params)


@pytest.mark.parametrize("name,types,fragments", [
    ("add", [((2,), tc.float32), ((2,), tc.float64)], ("add", "float32", "float64")),
    ("matmul", [((2, 2), tc.float32), ((2, 2), tc.int64)], ("matmul", "float32", "int64")),
    ("where", [((2,), tc.float32), ((2,), tc.float32), ((2,), tc.float32)], ("where", "bool", "float32")),
    ("exp", [((2,), tc.int64)], ("exp", "int64", ".float()")),
    ("cat", [((2,), tc.float32), ((2,), tc.float16)], ("cat", "float32", "float16")),
])
def test_primitive_dtype_rules_name_the_dtypes(name, types, fragments):
    params = {"axis": 0} if name == "cat" else {}
    err, _ = _raises(DTypeError, _meta(name, *types, **params), *fragments[:2])
    assert all(f in str(err) for f in fragments)


def test_inplace_dtype_error_names_both_dtypes():
    _raises(DTypeError, lambda: tc.arange(3).mul_(0.5), "mul_", "float32", "int64")


@pytest.mark.parametrize("fn,fragments", [
    (lambda: tc.gather(tc.ones(3), 0, tc.tensor([0.0])), ("gather", "float32")),
    (lambda: tc.index_select(tc.ones(3), 0, tc.tensor([0.0])), ("index_select", "float32")),
    (lambda: tc.arange(3).mean(), ("mean", "int64")),
])
def test_dtype_errors(fn, fragments):
    _raises(DTypeError, fn, *fragments)


def test_dtype_errors_are_type_errors_and_shape_errors_value_errors():
    with pytest.raises(TypeError):
        tc.arange(3).add_(0.5)
    with pytest.raises(ValueError):
        tc.ones(2) + tc.ones(3)


# ---------------------------------------------------------------- autograd
def test_backward_on_a_non_scalar_without_gradient_says_so():
    y = tc.ones(2, 3, requires_grad=True) * 2
    err, _ = _raises(AutogradError, lambda: y.backward(), "scalar outputs", "[2, 3]")
    assert "gradient=" in err.hint


def test_backward_with_a_gradient_of_the_wrong_shape():
    y = tc.ones(2, 3, requires_grad=True) * 2
    _raises(AutogradError, lambda: y.backward(tc.ones(3)), "[3]", "[2, 3]")


def test_backward_on_a_tensor_without_history():
    _raises(AutogradError, lambda: tc.ones(2).sum().backward(), "does not require grad")


# ---------------------------------------------------------------- the error types themselves
def test_error_codes_are_stable_and_distinct():
    codes = {cls.code for cls in errors.ERROR_CLASSES}
    assert len(codes) == len(errors.ERROR_CLASSES)
    assert errors.ShapeError.code == "TC001" and errors.DTypeError.code == "TC002"
    assert errors.IndexError_.code == "TC004" and errors.AutogradError.code == "TC010"
    assert errors.InplaceError.code == "TC011"
    for cls in errors.ERROR_CLASSES:
        assert issubclass(cls, TraceccError)


def test_hints_are_printed():
    err = ShapeError("something", hint="do this", location="here.py:1")
    assert str(err) == "[TC001] something\n  hint: do this\n  at: here.py:1"
