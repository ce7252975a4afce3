"""Grad mode: whether new ops record autograd history. Context managers that also decorate."""

from __future__ import annotations

import functools

_enabled = True


def is_grad_enabled() -> bool:
    return _enabled


def _set(mode: bool) -> bool:
    global _enabled
    prev, _enabled = _enabled, mode
    return prev


class _GradMode:
    """`with no_grad():` or `@no_grad()`: sets grad mode for a block or a function."""

    mode = True

    def __enter__(self):
        self._prev = _set(self.mode)
        return self

    def __exit__(self, *exc):
        _set(self._prev)
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = _set(mode)
            try:
                return fn(*args, **kwargs)
            finally:
                _set(prev)

        return wrapper


class _BareDecorator(_GradMode):
    """Also decorates without parentheses (`@no_grad`), as in PyTorch."""

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        return self(fn) if callable(fn) else self


class no_grad(_BareDecorator):
    mode = False


class enable_grad(_BareDecorator):
    mode = True


class set_grad_enabled(_GradMode):
    """Like torch: calling it switches at once; as a context manager it restores on exit."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = _set(self.mode)

    def __enter__(self):
        return self

    def __call__(self, fn):
        _set(self._prev)  # as a decorator it applies only inside fn, as in PyTorch
        return super().__call__(fn)


class inference_mode(_GradMode):
    def __new__(cls, mode=True):
        if callable(mode):  # bare @inference_mode
            return cls(True)(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        self.mode = not mode
