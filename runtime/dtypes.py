"""Data types and PyTorch's type-promotion rules.

A DType wraps a numpy dtype. Its str() ends in the numpy name ("tracecc.float32" ->
"float32") and its hash is the name's, so Triton's pointer-type lookup (keyed by hash,
then by the last dotted component of str) types every dtype distinctly.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np


class DType:
    __slots__ = ("name", "np", "itemsize", "category")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.category = category  # 0 bool, 1 integer, 2 floating: promotion compares these

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOAT

    @property
    def is_signed(self) -> bool:
        return self.name not in ("bool", "uint8")

    def __repr__(self) -> str:
        return f"tracecc.{self.name}"

    __str__ = __repr__

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self):  # DTypes are singletons, also across copy/pickle
        return (get_dtype, (self.name,))


BOOL, INT, FLOAT = 0, 1, 2

bool_ = DType("bool", np.bool_, BOOL)
uint8 = DType("uint8", np.uint8, INT)
int8 = DType("int8", np.int8, INT)
int16 = DType("int16", np.int16, INT)
int32 = DType("int32", np.int32, INT)
int64 = DType("int64", np.int64, INT)
float16 = DType("float16", np.float16, FLOAT)
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, FLOAT)
float32 = DType("float32", np.float32, FLOAT)
float64 = DType("float64", np.float64, FLOAT)

ALL_DTYPES = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64, "int": int32})
_BY_NP = {d.np: d for d in ALL_DTYPES}

# dtypes numpy cannot compute in directly (or slowly): kernels upcast them to float32.
STORAGE_ONLY = (float16, bfloat16)

_default_float = float32


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    global _default_float
    dtype = get_dtype(dtype)
    if not dtype.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating dtypes are allowed, got {dtype}")
    _default_float = dtype


def get_dtype(d) -> DType:
    """Any dtype-like (DType, name, numpy dtype, Python type) -> DType."""
    if isinstance(d, DType):
        return d
    if isinstance(d, str):
        found = _BY_NAME.get(d.removeprefix("tracecc.").removeprefix("torch."))
        if found is None:
            raise TypeError(f"unknown dtype {d!r}; known: {', '.join(x.name for x in ALL_DTYPES)}")
        return found
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    try:
        return _BY_NP[np.dtype(d)]
    except (KeyError, TypeError):
        raise TypeError(f"unsupported dtype {d!r}") from None


def promote_types(a: DType, b: DType) -> DType:
    """Smallest dtype both a and b convert to without loss of kind (torch.promote_types)."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.category == FLOAT:
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.itemsize >= b.itemsize else b
    return get_dtype(np.promote_types(a.np, b.np))


def scalar_category(value) -> int:
    if isinstance(value, (bool, np.bool_)):
        return BOOL
    if isinstance(value, (int, np.integer)):
        return INT
    return FLOAT


def default_dtype_for_category(category: int) -> DType:
    return (bool_, int64, _default_float)[category]


def result_type(tensor_dtypes_dimensioned, tensor_dtypes_zero_dim, scalars) -> DType:
    """PyTorch's result_type: dimensioned tensors outrank 0-d tensors, which outrank Python
    scalars, but only within the same category (bool < integer < floating)."""
    groups = [list(tensor_dtypes_dimensioned), list(tensor_dtypes_zero_dim),
              [default_dtype_for_category(scalar_category(s)) for s in scalars]]
    top = max(d.category for g in groups for d in g)
    for group in groups:
        candidates = [d for d in group if d.category == top]
        if candidates:
            result = candidates[0]
            for d in candidates[1:]:
                result = promote_types(result, d)
            return result
    raise ValueError("result_type needs at least one operand")
