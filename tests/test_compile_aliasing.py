"""A tensor passed as two arguments is one graph input; later calls with two different
tensors must not reuse that graph's aliasing."""

import numpy as np

import tracecc as tc
import tracecc.nn as nn
import tracecc.optim as optim


def _make():
    tc.manual_seed(0)
    m = nn.Linear(4, 4)
    opt = optim.Adam(m.parameters())

    def step(a, b):
        opt.zero_grad()
        loss = (m(a) * b).sum()
        loss.backward()
        opt.step()
        return loss

    return step


def test_same_tensor_twice_then_two_tensors():
    eager, compiled = _make(), tc.compile(_make())
    x, y = tc.randn(3, 4), tc.randn(3, 4)
    for a, b in [(x, x), (x, x), (x, x), (x, y), (y, x), (x, x)]:
        np.testing.assert_allclose(compiled(a, b).item(), eager(a, b).item(), rtol=1e-5)
