"""tracecc.runtime: devices, buffers, the op registry and its eager kernels.

Imports nothing from the rest of tracecc (see DESIGN.md: runtime <- passes <- codegen <- front end).
"""

from . import ops  # noqa: F401  (registers the primitives)
from .dtypes import DType, get_dtype, promote_types
from .registry import PRIMITIVES, Primitive, TensorType, get, register

__all__ = ["DType", "PRIMITIVES", "Primitive", "TensorType", "get", "get_dtype", "promote_types",
           "register"]
