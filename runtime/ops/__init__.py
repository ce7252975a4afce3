"""Importing this package registers every primitive."""

from . import autodiff, creation, index, matmul, movement, pointwise, reduction  # noqa: F401
