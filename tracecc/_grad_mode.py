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


class no_grad(_GradMode):
    mode = False


class enable_grad(_GradMode):
    mode = True


class set_grad_enabled(_GradMode):
    """Like torch: calling it switches at once; as a context manager it restores on exit."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = _set(self.mode)

    def __enter__(self):
        return self


class inference_mode(_GradMode):
    def __init__(self, mode: bool = True):
        self.mode = not mode
