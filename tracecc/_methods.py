"""Binds the functions of _functions.py to Tensor as methods, operators and in-place variants."""

from __future__ import annotations

from . import _functions as F
from .runtime import dtypes
from .runtime.device import check_device
from .runtime.dtypes import get_dtype
from ._tensor import Tensor

# methods whose body is exactly the function of the same name, with self first
_SAME_NAME = """
    exp log log1p expm1 sqrt rsqrt sin cos tanh sigmoid erf floor ceil round neg abs relu sign
    add sub mul div true_divide floor_divide remainder pow maximum minimum square reciprocal
    eq ne lt le gt ge logical_and logical_or logical_xor logical_not isnan where clamp clip lerp
    bitwise_and bitwise_or bitwise_xor bitwise_not bitwise_left_shift bitwise_right_shift
    sum prod mean amax amin argmax argmin max min var std logsumexp softmax log_softmax all any
    norm count_nonzero
    reshape view view_as permute transpose swapaxes t squeeze unsqueeze flatten unflatten expand
    expand_as broadcast_to narrow split chunk unbind repeat flip tril triu masked_fill contiguous
    clone matmul mm bmm dot outer gather scatter_add index_select index_add nonzero
""".split()
for _name in _SAME_NAME:
    setattr(Tensor, _name, getattr(F, _name))
Tensor.negative, Tensor.absolute, Tensor.subtract, Tensor.multiply = F.neg, F.abs, F.sub, F.mul
Tensor.divide, Tensor.greater, Tensor.less = F.div, F.gt, F.lt


def _reflected(fn):
    return lambda self, other: fn(other, self)


_OPERATORS = {
    "__add__": F.add, "__radd__": _reflected(F.add), "__sub__": F.sub, "__rsub__": _reflected(F.sub),
    "__mul__": F.mul, "__rmul__": _reflected(F.mul), "__truediv__": F.div,
    "__rtruediv__": _reflected(F.div), "__floordiv__": F.floor_divide,
    "__rfloordiv__": _reflected(F.floor_divide), "__mod__": F.remainder,
    "__rmod__": _reflected(F.remainder), "__pow__": F.pow, "__rpow__": _reflected(F.pow),
    "__matmul__": F.matmul, "__rmatmul__": _reflected(F.matmul),
    "__eq__": F.eq, "__ne__": F.ne, "__lt__": F.lt, "__le__": F.le, "__gt__": F.gt, "__ge__": F.ge,
    "__neg__": F.neg, "__abs__": F.abs, "__pos__": lambda self: self,
    # & | ^ ~ << >> are the bitwise ops, as in PyTorch (on bool tensors: logical results)
    "__and__": F.bitwise_and, "__or__": F.bitwise_or, "__xor__": F.bitwise_xor,
    "__rand__": _reflected(F.bitwise_and), "__ror__": _reflected(F.bitwise_or),
    "__rxor__": _reflected(F.bitwise_xor), "__invert__": F.bitwise_not,
    "__lshift__": F.bitwise_left_shift, "__rlshift__": _reflected(F.bitwise_left_shift),
    "__rshift__": F.bitwise_right_shift, "__rrshift__": _reflected(F.bitwise_right_shift),
}


def _comparison(fn):
    """== and != with a non-numeric object answer NotImplemented, so Python falls back to identity."""
    def method(self, other):
        if not isinstance(other, (Tensor, F._Number, list, tuple)):
            return NotImplemented
        return fn(self, other)

    return method


_OPERATORS["__eq__"], _OPERATORS["__ne__"] = _comparison(F.eq), _comparison(F.ne)
for _name, _fn in _OPERATORS.items():
    setattr(Tensor, _name, _fn)


# ---------------------------------------------------------------- in-place variants
def _make_inplace(name, fn):
    def method(self, *args, **kwargs):
        return self._inplace_update(fn(self, *args, **kwargs), name)

    method.__name__ = name
    return method


_INPLACE = {
    "add_": F.add, "sub_": F.sub, "mul_": F.mul, "div_": F.div, "pow_": F.pow, "clamp_": F.clamp,
    "clip_": F.clamp, "neg_": F.neg, "abs_": F.abs, "exp_": F.exp, "log_": F.log, "sqrt_": F.sqrt,
    "relu_": F.relu, "sigmoid_": F.sigmoid, "tanh_": F.tanh, "floor_": F.floor, "ceil_": F.ceil,
    "round_": F.round, "maximum_": F.maximum, "minimum_": F.minimum, "lerp_": F.lerp,
    "masked_fill_": F.masked_fill, "square_": F.square, "remainder_": F.remainder,
    "__iadd__": F.add, "__isub__": F.sub, "__imul__": F.mul, "__itruediv__": F.div,
    "__ipow__": F.pow, "__imod__": F.remainder, "__ifloordiv__": F.floor_divide,
    "bitwise_and_": F.bitwise_and, "bitwise_or_": F.bitwise_or, "bitwise_xor_": F.bitwise_xor,
    "bitwise_not_": F.bitwise_not, "bitwise_left_shift_": F.bitwise_left_shift,
    "bitwise_right_shift_": F.bitwise_right_shift, "__iand__": F.bitwise_and,
    "__ior__": F.bitwise_or, "__ixor__": F.bitwise_xor, "__ilshift__": F.bitwise_left_shift,
    "__irshift__": F.bitwise_right_shift,
}
for _name, _fn in _INPLACE.items():
    setattr(Tensor, _name, _make_inplace(_name, _fn))


def addcmul_(self, tensor1, tensor2, *, value=1):
    return self._inplace_update(F.add(self, F.mul(F.mul(tensor1, tensor2), value)), "addcmul_")


def addcdiv_(self, tensor1, tensor2, *, value=1):
    return self._inplace_update(F.add(self, F.mul(F.div(tensor1, tensor2), value)), "addcdiv_")


def zero_(self):
    return self._inplace_update(F.full_(tuple(self.shape), 0, self.dtype), "zero_")


def fill_(self, value):
    value = F.cast(value, self.dtype) if isinstance(value, Tensor) else F.full_((), value, self.dtype)
    return self._inplace_update(F.expand(value, tuple(self.shape)), "fill_")


def copy_(self, src):
    src = src if isinstance(src, Tensor) else Tensor(src)
    return self._inplace_update(F.expand(F.cast(src, self.dtype), tuple(self.shape)), "copy_")


Tensor.addcmul_, Tensor.addcdiv_, Tensor.zero_, Tensor.fill_, Tensor.copy_ = (
    addcmul_, addcdiv_, zero_, fill_, copy_)


# ---------------------------------------------------------------- conversions
def to(self, *args, **kwargs):
    """to(dtype) / to(device) / to(device, dtype) / to(other_tensor), like torch."""
    dtype, device = kwargs.get("dtype"), kwargs.get("device")
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, dtypes.DType) or a in (float, int, bool):
            dtype = a
        elif a is not None:
            try:
                dtype = get_dtype(a)
            except TypeError:
                device = a
    if device is None:
        return F.cast(self, dtype) if dtype is not None else self
    from .cuda import to_device
    if check_device(device).type == "cuda":  # cast where the data is, then copy
        return to_device(F.cast(self, dtype) if dtype is not None else self, device)
    out = to_device(self, device)
    return F.cast(out, dtype) if dtype is not None else out


def type_as(self, other):
    return F.cast(self, other.dtype)


def cuda(self, device=None):
    return to(self, "cuda" if device is None else device)


def _cast_method(dtype):
    return lambda self: F.cast(self, dtype)


Tensor.to, Tensor.type_as, Tensor.cuda, Tensor.cpu = to, type_as, cuda, lambda self: to(self, "cpu")
for _name, _dtype in {"float": dtypes.float32, "double": dtypes.float64, "half": dtypes.float16,
                      "bfloat16": dtypes.bfloat16, "long": dtypes.int64, "int": dtypes.int32,
                      "short": dtypes.int16, "byte": dtypes.uint8, "bool": dtypes.bool_}.items():
    setattr(Tensor, _name, _cast_method(_dtype))

Tensor.T = property(lambda self: F.permute(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(lambda self: F.transpose(self, -2, -1))


def new_zeros(self, *size, dtype=None):
    return to(F.full_(F._shape_args("new_zeros", size), 0, get_dtype(dtype) if dtype else self.dtype),
              self.device)


def new_ones(self, *size, dtype=None):
    return to(F.full_(F._shape_args("new_ones", size), 1, get_dtype(dtype) if dtype else self.dtype),
              self.device)


def new_full(self, size, fill_value, *, dtype=None):
    return to(F.full_(tuple(size), fill_value, get_dtype(dtype) if dtype else self.dtype), self.device)


def new_tensor(self, data, *, dtype=None):
    return to(Tensor(data, dtype=dtype or self.dtype), self.device)


Tensor.new_zeros, Tensor.new_ones, Tensor.new_full, Tensor.new_tensor = (
    new_zeros, new_ones, new_full, new_tensor)
