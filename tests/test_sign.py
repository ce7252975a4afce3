"""sign(nan): tracecc answers nan, as numpy, in eager mode and in both backends' emitters
(documented in docs/differences.md: PyTorch 2.13 answers 0). The point pinned here is that
eager and compiled code agree, whichever answer is chosen."""

from __future__ import annotations

import math

import numpy as np

import tracecc as tc


def test_sign_of_nan_is_nan_eager_and_compiled():
    x = tc.tensor([math.nan, -2.0, -0.0, 0.0, 3.0, math.inf, -math.inf])
    want = [math.nan, -1.0, 0.0, 0.0, 1.0, 1.0, -1.0]
    for fn in (tc.sign, tc.compile(lambda t: tc.sign(t) * 1.0, backend="llvm")):
        np.testing.assert_array_equal(fn(x).numpy(), np.array(want, np.float32))
