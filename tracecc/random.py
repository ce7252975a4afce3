"""Random numbers: a seeded Generator (numpy's PCG64) and the default one behind manual_seed.

Streams differ from PyTorch's; statistics and seeding behaviour match.
"""

from __future__ import annotations

import numpy as np

from .runtime import dtypes
from .runtime.device import check_device
from .runtime.dtypes import get_dtype
from . import _tensor as _tensor_mod
from ._tensor import Tensor, _make


class Generator:
    def __init__(self, device="cpu"):
        check_device(device)
        self._seed = 0
        self._rng = np.random.Generator(np.random.PCG64(0))

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def seed(self) -> int:
        return self.manual_seed(np.random.SeedSequence().entropy % (2**63)).initial_seed()

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> "Generator":
        self._rng.bit_generator.state = state
        return self


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def _rng(generator):
    return (generator or default_generator)._rng


def _float(dtype):
    dtype = get_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if not dtype.is_floating_point:
        raise TypeError(f"expected a floating dtype, got {dtype}")
    return dtype


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def _finish(draw, dtype, requires_grad, shape, device=None):
    """draw() -> numpy array of `shape`. While a function is traced by compile, the draw
    becomes a graph input that each compiled call draws anew from the generator, in the same
    order as eager mode (so compiled and eager runs see the same numbers)."""
    tracer = _tensor_mod._tracer
    if tracer is not None:
        t = tracer.random_input(shape, dtype,
                                lambda: np.asarray(draw()).astype(dtype.np, copy=False))
    else:
        t = _make(np.asarray(draw()).astype(dtype.np, copy=False), dtype)
        if device is not None and check_device(device).type != "cpu":
            from .cuda import to_device  # drawn on the cpu: the same numbers as there
            t = to_device(t, device)
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    dtype = _float(dtype)
    shape = _shape(size)
    return _finish(lambda: _rng(generator).random(shape), dtype, requires_grad, shape, device)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    dtype = _float(dtype)
    shape = _shape(size)
    return _finish(lambda: _rng(generator).standard_normal(shape), dtype, requires_grad, shape, device)


def randint(low, high=None, size=(), *, generator=None, dtype=None, device=None) -> Tensor:
    check_device(device)
    if isinstance(high, (tuple, list)):  # randint(high, size), as in PyTorch
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    dtype = get_dtype(dtype) if dtype is not None else dtypes.int64
    shape = tuple(size)
    return _finish(lambda: _rng(generator).integers(low, high, size=shape), dtype, False, shape, device)


def randperm(n, *, generator=None, dtype=None, device=None) -> Tensor:
    check_device(device)
    dtype = get_dtype(dtype) if dtype is not None else dtypes.int64
    return _finish(lambda: _rng(generator).permutation(int(n)), dtype, False, (int(n),), device)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None) -> Tensor:
    rng = _rng(generator)
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = np.asarray(mean.detach().numpy() if isinstance(mean, Tensor) else mean)
        s = np.asarray(std.detach().numpy() if isinstance(std, Tensor) else std)
        dtype = (mean if isinstance(mean, Tensor) else std).dtype
        return _finish(lambda: rng.normal(m, s), dtype, False, np.broadcast_shapes(m.shape, s.shape))
    shape = tuple(size or ())
    return _finish(lambda: _rng(generator).normal(mean, std, size=shape), _float(dtype), False, shape)


def rand_like(input, *, generator=None, dtype=None) -> Tensor:
    return rand(tuple(input.shape), generator=generator, dtype=dtype or input.dtype, device=input.device)


def randn_like(input, *, generator=None, dtype=None) -> Tensor:
    return randn(tuple(input.shape), generator=generator, dtype=dtype or input.dtype,
                 device=input.device)


def bernoulli(input, p=None, *, generator=None) -> Tensor:
    probs = input.detach().cpu().numpy() if p is None else np.full(tuple(input.shape), p)
    return _finish(lambda: _rng(generator).random(probs.shape) < probs, input.dtype, False,
                   probs.shape, input.device)


def _uniform_(self, a=0.0, b=1.0, *, generator=None):
    from ._grad_mode import no_grad
    with no_grad():
        shape = tuple(self.shape)
        return self.copy_(_finish(lambda: _rng(generator).uniform(a, b, shape), self.dtype, False, shape))


def _normal_(self, mean=0.0, std=1.0, *, generator=None):
    from ._grad_mode import no_grad
    with no_grad():
        shape = tuple(self.shape)
        return self.copy_(_finish(lambda: _rng(generator).normal(mean, std, shape), self.dtype, False,
                                  shape))


Tensor.uniform_ = _uniform_
Tensor.normal_ = _normal_
