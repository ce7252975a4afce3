"""The op table against PyTorch itself, when it is installed (never required): values and
result dtypes in float32, float64 and int32/int64, gradients in float64, and the same
refusals (an input torch rejects, tracecc rejects with a TraceccError)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracecc as tc
from op_cases import CASES, GRAD_CASES
from op_harness import (as_tuple, assert_same_values, autograd_vjp, cast_inputs, cotangents,
                        drawn_inputs, make_inputs, to_numpy)

torch = pytest.importorskip("torch")
# torch warns where the correction leaves no degrees of freedom; both give nan/inf there
pytestmark = pytest.mark.filterwarnings("ignore:std\\(\\)|var\\(\\):UserWarning")


def _dtype_name(t) -> str:
    return str(t.dtype).rsplit(".", 1)[-1]


def _run(m, case, arrays, layout):
    inputs, _, _ = make_inputs(m, case, arrays, layout)
    return as_tuple(case.fn(m, *inputs))


def check_against_torch(case, arrays, layout, dtype) -> None:
    try:
        expected = _run(torch, case, arrays, layout)
    except (RuntimeError, IndexError, ValueError, TypeError):
        with pytest.raises(tc.TraceccError):
            _run(tc, case, arrays, layout)
        return
    out = _run(tc, case, arrays, layout)
    assert len(out) == len(expected)
    for o, e in zip(out, expected):
        assert o.dtype.name == _dtype_name(e), f"{case.name}: {o.dtype} where torch gives {e.dtype}"
        assert_same_values(to_numpy(o), to_numpy(e).astype(to_numpy(o).dtype), dtype, case.name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_float_values_match_torch(case, dtype, data):
    arrays, layout = data.draw(drawn_inputs(case))
    check_against_torch(case, cast_inputs(case, arrays, dtype), layout, dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", [c for c in CASES if c.ints], ids=str)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_integer_values_match_torch(case, dtype, data):
    arrays, layout = data.draw(drawn_inputs(case, integer=True))
    check_against_torch(case, cast_inputs(case, arrays, dtype), layout, dtype)


@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_gradients_match_torch(case, data):
    arrays, layout = data.draw(drawn_inputs(case))
    try:
        outs = _run(torch, case, arrays, layout)
    except (RuntimeError, IndexError, ValueError):
        return  # refusals are compared by the value tests
    vs = cotangents([to_numpy(o) if o.dtype.is_floating_point else np.zeros(0, bool) for o in outs])
    try:
        expected = autograd_vjp(torch, case, arrays, layout, vs)
    except RuntimeError:  # torch lacks this derivative (remainder by a tensor, ...)
        return  # test_ops_grads checks it against central differences
    actual = autograd_vjp(tc, case, arrays, layout, vs)
    for k, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None
            continue
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12, equal_nan=True,
                                   err_msg=f"{case.name}: gradient of input {k} ({layout})")
