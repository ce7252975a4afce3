"""Every differentiable op's gradient against central differences of its numpy reference,
in float64, over hypothesis shapes (broadcasting, size-1 and 0-size dimensions) and
non-contiguous inputs. Each output gets a random cotangent, so non-scalar outputs are
checked through backward(gradient=...)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tracecc as tc
from op_cases import GRAD_CASES
from op_harness import as_tuple, autograd_vjp, cotangents, drawn_inputs, numeric_vjp


@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_gradients_match_central_differences(case, data):
    arrays, layout = data.draw(drawn_inputs(case))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            outs = as_tuple(case.ref(*arrays))
        except (ValueError, IndexError):
            assume(False)  # no value, so no gradient (test_ops_values checks the error)
        # a gradient is only defined where the value is finite (var of one element: nan)
        assume(all(np.all(np.isfinite(o)) for o in outs))
        vs = cotangents(outs)
        expected = numeric_vjp(case, arrays, vs)
    actual = autograd_vjp(tc, case, arrays, layout, vs)
    for k, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None
            continue
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{case.name}: gradient of input {k} ({layout})")
