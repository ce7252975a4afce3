"""Every op in the table against its numpy reference: hypothesis shapes with broadcasting,
size-1 and 0-size dimensions, non-contiguous inputs, in float32, float64 and (where the op
takes them) int32/int64. Where numpy refuses the input (a max over an empty dimension),
tracecc must refuse it too, with a TraceccError."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracecc as tc
from op_cases import CASES
from op_harness import as_tuple, assert_same_values, cast_inputs, drawn_inputs, make_inputs, to_numpy

INT_CASES = [c for c in CASES if c.ints]


def _reference(case, arrays):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of nothing is nan, quietly
        return as_tuple(case.ref(*arrays))


def check_against_numpy(case, arrays, layout, dtype) -> None:
    inputs, _, _ = make_inputs(tc, case, arrays, layout)
    try:
        expected = _reference(case, arrays)
    except (ValueError, IndexError):  # e.g. max over an empty dimension has no identity
        with pytest.raises(tc.TraceccError):
            case.fn(tc, *inputs)
        return
    out = as_tuple(case.fn(tc, *inputs))
    # computed exactly (float64) from the same inputs, so float32 is held to its rounding
    wide = _reference(case, [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays])
    assert len(out) == len(expected), f"{case.name}: {len(out)} outputs, numpy gives {len(expected)}"
    for o, e, w in zip(out, expected, wide):
        assert isinstance(o, tc.Tensor), f"{case.name} returned {type(o).__name__}"
        assert o.dtype.name == np.asarray(e).dtype.name, f"{case.name}: dtype {o.dtype}"
        assert_same_values(to_numpy(o), w, dtype, case.name)
    for t, a in zip(inputs, arrays):  # ops never write to their inputs
        np.testing.assert_array_equal(to_numpy(t), a, err_msg=f"{case.name} modified an input")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_float_values_match_numpy(case, dtype, data):
    arrays, layout = data.draw(drawn_inputs(case))
    check_against_numpy(case, cast_inputs(case, arrays, dtype), layout, dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", INT_CASES, ids=str)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_integer_values_match_numpy(case, dtype, data):
    arrays, layout = data.draw(drawn_inputs(case, integer=True))
    check_against_numpy(case, cast_inputs(case, arrays, dtype), layout, dtype)
