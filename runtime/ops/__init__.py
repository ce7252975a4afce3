"""Importing this package registers every primitive."""

from . import creation, index, matmul, movement, pointwise, reduction  # noqa: F401
