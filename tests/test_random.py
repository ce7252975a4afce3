"""Random numbers: seeding (manual_seed, Generator), shapes and dtypes, ranges, and the
first two moments (bounds of many standard errors, so they cannot flake)."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc


def test_manual_seed_makes_draws_repeat():
    tc.manual_seed(123)
    a = (tc.randn(5), tc.rand(3), tc.randint(0, 10, (4,)), tc.randperm(6))
    tc.manual_seed(123)
    b = (tc.randn(5), tc.rand(3), tc.randint(0, 10, (4,)), tc.randperm(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert tc.initial_seed() == 123
    tc.manual_seed(124)
    assert not np.array_equal(tc.randn(5).numpy(), a[0].numpy())


def test_generators_are_independent_of_the_default():
    g = tc.Generator().manual_seed(7)
    first = tc.randn(4, generator=g)
    tc.manual_seed(0)
    tc.randn(100)  # the default stream moving on does not touch g
    g2 = tc.Generator().manual_seed(7)
    np.testing.assert_array_equal(tc.randn(4, generator=g2).numpy(), first.numpy())
    assert g.initial_seed() == 7


def test_generator_state_round_trips():
    g = tc.Generator().manual_seed(3)
    state = g.get_state()
    a = tc.rand(5, generator=g)
    g.set_state(state)
    np.testing.assert_array_equal(tc.rand(5, generator=g).numpy(), a.numpy())


@pytest.mark.parametrize("make,shape,dtype", [
    (lambda: tc.rand(2, 3), (2, 3), tc.float32),
    (lambda: tc.rand((4,)), (4,), tc.float32),
    (lambda: tc.rand(3, dtype=tc.float64), (3,), tc.float64),
    (lambda: tc.randn(2, 2, dtype=tc.float16), (2, 2), tc.float16),
    (lambda: tc.randn([]), (), tc.float32),
    (lambda: tc.randn(0, 3), (0, 3), tc.float32),
    (lambda: tc.randint(5, (3,)), (3,), tc.int64),
    (lambda: tc.randint(2, 9, (2, 2)), (2, 2), tc.int64),
    (lambda: tc.randint(0, 4, size=(2,), dtype=tc.int32), (2,), tc.int32),
    (lambda: tc.randperm(5), (5,), tc.int64),
    (lambda: tc.normal(0.0, 1.0, (2, 3)), (2, 3), tc.float32),
    (lambda: tc.normal(tc.zeros(4, dtype=tc.float64), 1.0), (4,), tc.float64),
    (lambda: tc.rand_like(tc.ones(2, dtype=tc.float64)), (2,), tc.float64),
    (lambda: tc.randn_like(tc.ones(3, 1)), (3, 1), tc.float32),
    (lambda: tc.bernoulli(tc.full((6,), 0.5)), (6,), tc.float32),
])
def test_shapes_and_dtypes(make, shape, dtype):
    t = make()
    assert tuple(t.shape) == shape and t.dtype is dtype
    assert not t.requires_grad


def test_requires_grad_on_random_tensors():
    assert tc.rand(2, requires_grad=True).requires_grad
    assert tc.randn(2, requires_grad=True).is_leaf


def test_float_draws_need_a_float_dtype():
    with pytest.raises(TypeError):
        tc.rand(2, dtype=tc.int64)


def test_ranges():
    tc.manual_seed(0)
    u = tc.rand(10_000).numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    r = tc.randint(3, 7, (10_000,)).numpy()
    assert set(np.unique(r)) == {3, 4, 5, 6}
    assert set(np.unique(tc.randint(4, (1000,)).numpy())) == {0, 1, 2, 3}
    p = tc.randperm(50).numpy()
    assert sorted(p.tolist()) == list(range(50))
    b = tc.bernoulli(tc.tensor([0.0, 1.0] * 50)).numpy()
    assert b[::2].sum() == 0 and b[1::2].sum() == 50


def test_moments():
    n = 40_000
    tc.manual_seed(1)
    x = tc.randn(n, dtype=tc.float64).numpy()
    assert abs(x.mean()) < 6 / np.sqrt(n) and abs(x.std() - 1) < 6 / np.sqrt(2 * n)
    u = tc.rand(n, dtype=tc.float64).numpy()
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
    y = tc.normal(3.0, 2.0, (n,)).numpy()
    assert abs(y.mean() - 3) < 6 * 2 / np.sqrt(n) and abs(y.std() - 2) < 0.1
    m = tc.normal(tc.tensor([-5.0, 5.0]).repeat(n // 2), tc.tensor(0.5)).numpy()
    assert abs(m[::2].mean() + 5) < 0.05 and abs(m[1::2].mean() - 5) < 0.05


def test_in_place_initialisers():
    tc.manual_seed(2)
    w = tc.zeros(5000, requires_grad=True)  # nn.init style: a leaf, filled without history
    w.uniform_(-2, 3)
    assert w.requires_grad and w.grad_fn is None
    assert w.detach().numpy().min() >= -2 and w.detach().numpy().max() < 3
    w.normal_(10.0, 0.1)
    assert abs(w.detach().numpy().mean() - 10) < 0.05
