"""The torch-level functions (tracecc.add, tracecc.softmax, ...), also bound as Tensor methods.

Each either binds one primitive (after PyTorch's type promotion and argument
normalisation) or is a composite: a short decomposition into primitives, which the
compiler sees through. Table METHODS at the bottom binds them to Tensor.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from . import _tensor as _tensor_mod
from .runtime import dtypes
from .runtime.dtypes import get_dtype, result_type
from .runtime.errors import DTypeError, ShapeError
from .runtime.registry import PRIMITIVES as P
from .runtime.shapes import broadcast_shapes, fmt, normalize_axes, normalize_axis
from ._composite import composite
from ._tensor import Size, Tensor, _make, apply

_Number = (int, float, bool, np.number, np.bool_)


# ---------------------------------------------------------------- conversions
def scalar_tensor(value, dtype) -> Tensor:
    """A 0-d tensor holding a Python number: a constant node while tracing."""
    if _tensor_mod._tracer is None:
        return _make(np.asarray(value, dtype=dtype.np), dtype)
    return apply(P["full"], (), {"shape": (), "value": value, "dtype": dtype})


def cast(x: Tensor, dtype) -> Tensor:
    dtype = get_dtype(dtype)
    return x if x._dtype is dtype else apply(P["cast"], (x,), {"dtype": dtype})


def _as_tensor_arg(op: str, x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (list, tuple, np.ndarray)):
        return Tensor(x)
    raise TypeError(f"{op}: expected a tensor or a number, got {type(x).__name__}")


def promote(op: str, *operands) -> list[Tensor]:
    """PyTorch's result_type over tensors and Python numbers; all returned at that dtype."""
    same = _one_dtype(operands)
    if same is not None:  # the common case, without the general rule: a third of an add's cost
        return [x if isinstance(x, Tensor) else scalar_tensor(x, same) for x in operands]
    dim_dtypes, zero_dtypes, scalars = [], [], []
    for x in operands:
        if isinstance(x, Tensor):
            (dim_dtypes if x.ndim else zero_dtypes).append(x._dtype)
        elif isinstance(x, _Number):
            scalars.append(x)
        else:
            operands = [o if isinstance(o, _Number) else _as_tensor_arg(op, o) for o in operands]
            return promote(op, *operands)
    dtype = result_type(dim_dtypes, zero_dtypes, scalars)
    return [cast(x, dtype) if isinstance(x, Tensor) else scalar_tensor(x, dtype) for x in operands]


def _one_dtype(operands):
    """The result dtype when it is plain: tensors of one dtype, with Python numbers only
    beside a floating one (a number never outranks a floating tensor); else None."""
    dtype, numbers = None, False
    for x in operands:
        if isinstance(x, Tensor):
            if dtype is None:
                dtype = x._dtype
            elif x._dtype is not dtype:
                return None
        elif type(x) in (float, int, bool):
            numbers = True
        else:
            return None
    if dtype is None or (numbers and not dtype.is_floating_point):
        return None
    return dtype


def _float_dtype_of(x: Tensor):
    return x._dtype if x._dtype.is_floating_point else dtypes.get_default_dtype()


def _to_float(x) -> Tensor:
    x = _as_tensor_arg("op", x) if not isinstance(x, Tensor) else x
    return cast(x, _float_dtype_of(x))


# ---------------------------------------------------------------- pointwise
def _unary(name, float_only):
    prim = P[name]

    def fn(input):
        x = _to_float(input) if float_only else input
        return apply(prim, (x,), {})

    fn.__name__ = name
    return fn


_FLOAT_UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
                "erf", "floor", "ceil", "round")
_ANY_UNARY = ("neg", "abs", "relu", "sign")
for _n in _FLOAT_UNARY + _ANY_UNARY:
    globals()[_n] = _unary(_n, _n in _FLOAT_UNARY)
negative, absolute = neg, abs  # noqa: F821


def _binary(name):
    prim = P[name]

    def fn(input, other):
        a, b = promote(name, input, other)
        return apply(prim, (a, b), {})

    fn.__name__ = name
    return fn


for _n in ("sub", "mul", "maximum", "minimum", "remainder", "floor_divide",
           "eq", "ne", "lt", "le", "gt", "ge"):
    globals()[_n] = _binary(_n)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne  # noqa: F821
subtract, multiply = sub, mul  # noqa: F821


def add(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)  # noqa: F821
    a, b = promote("add", input, other)
    return apply(P["add"], (a, b), {})


def div(input, other, *, rounding_mode=None):
    a, b = promote("div", input, other)
    if rounding_mode == "floor":
        return floor_divide(a, b) if not a._dtype.is_floating_point else floor(apply(P["div"], (a, b), {}))  # noqa: F821
    if not a._dtype.is_floating_point:
        a, b = cast(a, dtypes.get_default_dtype()), cast(b, dtypes.get_default_dtype())
    out = apply(P["div"], (a, b), {})
    if rounding_mode == "trunc":
        out = where(out < 0, ceil(out), floor(out))  # noqa: F821
        return cast(out, input._dtype) if isinstance(input, Tensor) and not input._dtype.is_floating_point else out
    return out


true_divide = divide = div


def pow(input, exponent):
    a, b = promote("pow", input, exponent)
    return apply(P["pow"], (a, b), {})


def square(input):
    return mul(input, input)  # noqa: F821


def reciprocal(input):
    return div(1.0, _to_float(input))


def _logical(name):
    prim = P[name]

    def fn(input, other):
        return apply(prim, (cast(_as_tensor_arg(name, input), dtypes.bool_),
                            cast(_as_tensor_arg(name, other), dtypes.bool_)), {})

    fn.__name__ = name
    return fn


logical_and, logical_or, logical_xor = (_logical(n) for n in ("logical_and", "logical_or", "logical_xor"))


def _type_name(x) -> str:
    return str(x._dtype) if isinstance(x, Tensor) else f"a Python {type(x).__name__}"


def _bitwise(name, allow_bool=True):
    """bitwise_and/or/xor and the shifts: PyTorch's promotion, then integers (or bools) only."""
    prim = P[name]

    def fn(input, other):
        a, b = promote(name, input, other)
        if a._dtype.is_floating_point or (a._dtype is dtypes.bool_ and not allow_bool):
            kinds = "integer or bool" if allow_bool else "integer"
            raise DTypeError(f"{name}: expected {kinds} operands, got {_type_name(input)} and "
                             f"{_type_name(other)} (promoted to {a._dtype})")
        return apply(prim, (a, b), {})

    fn.__name__ = name
    return fn


bitwise_and, bitwise_or, bitwise_xor = (_bitwise(n) for n in ("bitwise_and", "bitwise_or", "bitwise_xor"))
bitwise_left_shift, bitwise_right_shift = (
    _bitwise(n, allow_bool=False) for n in ("bitwise_left_shift", "bitwise_right_shift"))


def bitwise_not(input):
    if input._dtype.is_floating_point:
        raise DTypeError(f"bitwise_not: expected an integer or bool tensor, got {input._dtype}",
                         hint="for a mask use logical_not, or compare first (x == 0)")
    return apply(P["bitwise_not"], (input,), {})


def logical_not(input):
    return apply(P["logical_not"], (cast(input, dtypes.bool_),), {})


def isnan(input):
    return apply(P["isnan"], (input,), {}) if input._dtype.is_floating_point else zeros_like_bool(input)


def zeros_like_bool(x):
    return full_(tuple(x.shape), False, dtypes.bool_)


def where(condition, input, other):
    a, b = promote("where", input, other)
    return apply(P["where"], (cast(_as_tensor_arg("where", condition), dtypes.bool_), a, b), {})


def clamp(input, min=None, max=None):
    """Gradient flows where min <= x <= max, as in PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    out = input
    if min is not None:
        out = where(lt(out, min), min, out)  # noqa: F821
    if max is not None:
        out = where(gt(out, max), max, out)  # noqa: F821
    return out


clip = clamp


def lerp(input, end, weight):
    return add(input, mul(weight, sub(end, input)))  # noqa: F821


# ---------------------------------------------------------------- reductions
def _axes(op, x, dim):
    if isinstance(dim, (list, tuple)) and len(dim) == 0:
        dim = None  # torch: an empty dim list reduces everything
    return normalize_axes(op, dim, x.ndim)


def sum(input, dim=None, keepdim=False, *, dtype=None):
    x = cast(input, dtype) if dtype is not None else input
    return apply(P["sum"], (x,), {"axes": _axes("sum", x, dim), "keepdim": bool(keepdim)})


def prod(input, dim=None, keepdim=False, *, dtype=None):
    x = cast(input, dtype) if dtype is not None else input
    return apply(P["prod"], (x,), {"axes": _axes("prod", x, dim), "keepdim": bool(keepdim)})


def _count(x, axes):
    return math.prod(x.shape[a] for a in axes)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    x = cast(input, dtype) if dtype is not None else input
    if not x._dtype.is_floating_point:
        raise DTypeError(f"mean(): could not infer output dtype. Input dtype must be floating "
                         f"point, got {x._dtype}", hint="call .float() first or pass dtype=")
    axes = _axes("mean", x, dim)
    total = apply(P["sum"], (x,), {"axes": axes, "keepdim": bool(keepdim)})
    return div(total, _count(x, axes))


def amax(input, dim=None, keepdim=False):
    return apply(P["amax"], (input,), {"axes": _axes("amax", input, dim), "keepdim": bool(keepdim)})


def amin(input, dim=None, keepdim=False):
    return apply(P["amin"], (input,), {"axes": _axes("amin", input, dim), "keepdim": bool(keepdim)})


def _arg(name, x, dim, keepdim):
    if dim is None:
        flat = reshape(x, (-1,))
        out = apply(P[name], (flat,), {"axis": 0, "keepdim": False})
        return reshape(out, (1,) * x.ndim) if keepdim else out
    return apply(P[name], (x,), {"axis": normalize_axis(name, dim, x.ndim), "keepdim": bool(keepdim)})


def argmax(input, dim=None, keepdim=False):
    return _arg("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    return _arg("argmin", input, dim, keepdim)


values_indices = namedtuple("values_indices", ["values", "indices"])


def _extreme(reduce, arg, pairwise):
    def fn(input, dim=None, keepdim=False):
        if isinstance(dim, Tensor):  # max(a, b) is the pointwise maximum
            return pairwise(input, dim)
        if dim is None:
            return reduce(input)  # ties share the gradient evenly, as in PyTorch
        if input.ndim == 0:
            return values_indices(clone(input), arg(input, dim, keepdim))
        # values picked at the indices, so the gradient goes to that one element (PyTorch)
        indices = arg(input, dim, True)
        values = gather(input, dim, indices)
        if not keepdim:
            values, indices = squeeze(values, dim), squeeze(indices, dim)
        return values_indices(values, indices)

    return fn


max = _extreme(amax, argmax, maximum)  # noqa: F821
min = _extreme(amin, argmin, minimum)  # noqa: F821


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    x = _to_float(input)
    axes = _axes("var", x, dim)
    centered = sub(x, mean(x, axes, keepdim=True))  # noqa: F821
    n = _count(x, axes)
    return div(sum(mul(centered, centered), axes, keepdim), builtins.max(n - correction, 0))  # noqa: F821


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))  # noqa: F821


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(_to_float(input), dim, keepdim)


def _stable_max(x, dim):
    """Row maximum used only to shift exponentials: no gradient, and -inf rows (and empty
    ones, which have no maximum) shift by 0."""
    if 0 in (x.shape[a] for a in normalize_axes("softmax", dim, x.ndim)):
        return scalar_tensor(0.0, x._dtype)
    m = amax(x.detach(), dim, keepdim=True)
    return where(isinf_neg(m), 0.0, m)


def isinf_neg(x):
    return eq(x, float("-inf"))  # noqa: F821


@composite("logsumexp")
def logsumexp(input, dim, keepdim=False):
    x = _to_float(input)
    m = _stable_max(x, dim)
    m = where(eq(m, float("inf")), 0.0, m)  # an inf row sums to inf, as in PyTorch  # noqa: F821
    out = add(log(sum(exp(sub(x, m)), dim, keepdim=True)), m)  # noqa: F821
    return out if keepdim else squeeze(out, dim)


@composite("softmax")
def softmax(input, dim, dtype=None):
    x = cast(input, dtype) if dtype is not None else _to_float(input)
    e = exp(sub(x, _stable_max(x, dim)))  # noqa: F821
    return div(e, sum(e, dim, keepdim=True))


@composite("log_softmax")
def log_softmax(input, dim, dtype=None):
    x = cast(input, dtype) if dtype is not None else _to_float(input)
    shifted = sub(x, _stable_max(x, dim))  # noqa: F821
    return sub(shifted, log(sum(exp(shifted), dim, keepdim=True)))  # noqa: F821


def all(input, dim=None, keepdim=False):
    return eq(sum(cast(logical_not(input), dtypes.int64), dim, keepdim), 0)  # noqa: F821


def any(input, dim=None, keepdim=False):
    return gt(sum(cast(cast(input, dtypes.bool_), dtypes.int64), dim, keepdim), 0)  # noqa: F821


def norm(input, p="fro", dim=None, keepdim=False):
    x = _to_float(input)
    if p in ("fro", 2, 2.0):
        return sqrt(sum(mul(x, x), dim, keepdim))  # noqa: F821
    if p in (float("inf"), "inf"):
        return amax(abs(x), dim, keepdim)  # noqa: F821
    if p == 1:
        return sum(abs(x), dim, keepdim)  # noqa: F821
    return pow(sum(pow(abs(x), p), dim, keepdim), 1.0 / p)  # noqa: F821


def count_nonzero(input, dim=None):
    return sum(cast(ne(input, 0), dtypes.int64), dim)  # noqa: F821


# ---------------------------------------------------------------- movement
def _shape_args(op, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = tuple(shape[0])
    return tuple(int(d) for d in shape)


def reshape(input, *shape):
    shape = _shape_args("reshape", shape)
    if tuple(shape) == tuple(input.shape):
        return input
    return apply(P["reshape"], (input,), {"shape": shape})


def view(input, *shape):
    """reshape that must not copy: a view of memory whose strides don't allow the new shape
    is an error, as in PyTorch (a silent copy would break writes through the view)."""
    out = reshape(input, *shape)
    data = input._data
    if out is not input and isinstance(data, np.ndarray) and data.size and not np.may_share_memory(
            out._data, data):
        raise ShapeError(f"view: shape {fmt(out.shape)} is not compatible with the input's shape "
                         f"{fmt(input.shape)} and strides (it would need a copy)",
                         hint="use .reshape(...) instead, or .contiguous().view(...)")
    return out


def view_as(input, other):
    return reshape(input, tuple(other.shape))


def permute(input, *dims):
    dims = tuple(normalize_axis("permute", d, input.ndim) for d in _shape_args("permute", dims))
    if dims == tuple(range(input.ndim)):
        return input
    return apply(P["permute"], (input,), {"dims": dims})


def transpose(input, dim0, dim1):
    n = input.ndim
    d0, d1 = normalize_axis("transpose", dim0, n), normalize_axis("transpose", dim1, n)
    dims = list(range(n))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(input, dims)


swapaxes = transpose


def t(input):
    if input.ndim > 2:
        raise ShapeError(f"t(): expects a tensor with <= 2 dimensions, got shape {fmt(input.shape)}",
                         hint="use transpose(dim0, dim1) or .mT")
    return permute(input, tuple(reversed(range(input.ndim))))


def squeeze(input, dim=None):
    if dim is None:
        axes = [i for i, d in enumerate(input.shape) if d == 1]
    else:
        axes = [a for a in normalize_axes("squeeze", dim, input.ndim) if input.shape[a] == 1]
    return reshape(input, tuple(d for i, d in enumerate(input.shape) if i not in axes))


def unsqueeze(input, dim):
    dim = normalize_axis("unsqueeze", dim, input.ndim + 1)
    shape = list(input.shape)
    shape.insert(dim, 1)
    return reshape(input, tuple(shape))


def flatten(input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        return reshape(input, (1,))
    s = normalize_axis("flatten", start_dim, input.ndim)
    e = normalize_axis("flatten", end_dim, input.ndim)
    if s > e:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape "
                         f"{fmt(input.shape)}")
    shape = tuple(input.shape)
    return reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def unflatten(input, dim, sizes):
    dim = normalize_axis("unflatten", dim, input.ndim)
    shape = tuple(input.shape)
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = shape[dim] // known
    return reshape(input, shape[:dim] + tuple(sizes) + shape[dim + 1:])


def expand(input, *sizes):
    sizes = _shape_args("expand", sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise ShapeError(f"expand: the number of sizes ({len(sizes)}) must be at least the "
                         f"number of dimensions of shape {fmt(input.shape)}")
    if -1 in sizes[:lead]:
        raise ShapeError(f"expand: -1 is not allowed for a new leading dimension (sizes {sizes}, "
                         f"shape {fmt(input.shape)})")
    shape = tuple(input.shape[i - lead] if d == -1 else d for i, d in enumerate(sizes))
    if shape == tuple(input.shape):
        return input
    return apply(P["expand"], (input,), {"shape": shape})


def broadcast_to(input, shape):
    return expand(input, tuple(shape))


def expand_as(input, other):
    return expand(input, tuple(other.shape))


def broadcast_tensors(*tensors):
    shape = broadcast_shapes("broadcast_tensors", *(tuple(t.shape) for t in tensors))
    return tuple(expand(t, shape) for t in tensors)


def _slice_dim(x, dim, start, stop, step=1):
    starts = tuple(start if i == dim else 0 for i in range(x.ndim))
    stops = tuple(stop if i == dim else d for i, d in enumerate(x.shape))
    steps = tuple(step if i == dim else 1 for i in range(x.ndim))
    if starts == (0,) * x.ndim and stops == tuple(x.shape) and steps == (1,) * x.ndim:
        return x
    return apply(P["slice"], (x,), {"starts": starts, "stops": stops, "steps": steps})


def narrow(input, dim, start, length):
    dim = normalize_axis("narrow", dim, input.ndim)
    start = start + input.shape[dim] if start < 0 else start
    return _slice_dim(input, dim, start, start + length)


def split(tensor, split_size_or_sections, dim=0):
    dim = normalize_axis("split", dim, tensor.ndim)
    size = tensor.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [builtins.min(step, size - i) for i in range(0, size, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != size:
            raise ShapeError(f"split: sections {sizes} don't add up to dimension {dim} of size {size}")
    out, offset = [], 0
    for n in sizes:
        out.append(_slice_dim(tensor, dim, offset, offset + n))
        offset += n
    return tuple(out)


def chunk(input, chunks, dim=0):
    size = input.shape[normalize_axis("chunk", dim, input.ndim)]
    if size == 0:  # PyTorch gives `chunks` empty pieces
        return (input,) * chunks
    return split(input, -(-size // chunks), dim)


def unbind(input, dim=0):
    dim = normalize_axis("unbind", dim, input.ndim)
    if input.shape[dim] == 0:
        return ()
    return tuple(squeeze(p, dim) for p in split(input, 1, dim))


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    tensors = promote("cat", *tensors)
    if builtins.any(t.ndim != 1 for t in tensors):  # PyTorch skips legacy empty [0] tensors
        tensors = [t for t in tensors if tuple(t.shape) != (0,)] or tensors[:1]
    dim = normalize_axis("cat", dim, tensors[0].ndim)
    if len(tensors) == 1:
        return tensors[0]
    return apply(P["cat"], tuple(tensors), {"axis": dim})


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ShapeError(f"stack: expects each tensor to be equal size, got "
                         f"{', '.join(fmt(s) for s in shapes)}")
    dim = normalize_axis("stack", dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def repeat(input, *sizes):
    sizes = _shape_args("repeat", sizes)
    x = reshape(input, (1,) * (len(sizes) - input.ndim) + tuple(input.shape))
    interleaved = tuple(v for d in x.shape for v in (1, d))
    target = tuple(v for r, d in zip(sizes, x.shape) for v in (r, d))
    out = expand(reshape(x, interleaved), target)
    return reshape(out, tuple(r * d for r, d in zip(sizes, x.shape)))


def flip(input, dims):
    from ._indexing import flip as _flip
    return _flip(input, dims)


def tril(input, diagonal=0):
    return _triangle(input, diagonal, lower=True)


def triu(input, diagonal=0):
    return _triangle(input, diagonal, lower=False)


def _triangle(x, diagonal, lower):
    rows, cols = x.shape[-2], x.shape[-1]
    r = reshape(arange_(rows), (rows, 1))
    c = reshape(arange_(cols), (1, cols))
    keep = le(sub(c, r), diagonal) if lower else ge(sub(c, r), diagonal)  # noqa: F821
    return where(keep, x, scalar_tensor(0, x._dtype))


def masked_fill(input, mask, value):
    """The result keeps input's dtype (the value is cast to it), as in PyTorch."""
    value = cast(value, input._dtype) if isinstance(value, Tensor) else scalar_tensor(value, input._dtype)
    return where(mask, value, input)


def contiguous(input):
    data = input._data
    if isinstance(data, np.ndarray) and data.flags.c_contiguous:
        return input
    return clone(input)


def clone(input):
    return apply(P["copy"], (input,), {})


# ---------------------------------------------------------------- matmul
def matmul(input, other):
    a, b = promote("matmul", input, other)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both arguments need at least 1 dimension, got shapes "
                         f"{fmt(a.shape)} and {fmt(b.shape)}")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = reshape(a, (1, a.shape[0]))
    if squeeze_b:
        b = reshape(b, (b.shape[0], 1))
    out = apply(P["matmul"], (a, b), {})
    if squeeze_a or squeeze_b:
        shape = tuple(out.shape)
        shape = shape[:-2] + (() if squeeze_a else shape[-2:-1]) + (() if squeeze_b else shape[-1:])
        out = reshape(out, shape)
    return out


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise ShapeError(f"mm: expects 2-d tensors, got {fmt(input.shape)} and {fmt(mat2.shape)}")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise ShapeError(f"bmm: expects 3-d tensors, got {fmt(input.shape)} and {fmt(mat2.shape)}")
    return matmul(input, mat2)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise ShapeError(f"dot: expects 1-d tensors, got {fmt(input.shape)} and {fmt(other.shape)}")
    return matmul(input, other)


def outer(input, vec2):
    return mul(unsqueeze(input, 1), unsqueeze(vec2, 0))  # noqa: F821


# ---------------------------------------------------------------- gather / scatter
def gather(input, dim, index):
    return apply(P["gather"], (input, index), {"axis": normalize_axis("gather", dim, input.ndim)})


def scatter_add(input, dim, index, src):
    return apply(P["scatter_add"], (input, index, cast(src, input._dtype)),
                 {"axis": normalize_axis("scatter_add", dim, input.ndim)})


def index_select(input, dim, index):
    return apply(P["index_select"], (input, index),
                 {"axis": normalize_axis("index_select", dim, input.ndim)})


def index_add(input, dim, index, source, *, alpha=1):
    if alpha != 1:
        source = mul(source, alpha)  # noqa: F821
    return apply(P["index_add"], (input, index, cast(source, input._dtype)),
                 {"axis": normalize_axis("index_add", dim, input.ndim)})


def nonzero(input, *, as_tuple=False):
    data = input._value("nonzero()")
    if data.ndim == 0:  # as PyTorch: a 0-d tensor reads as one element
        n = int(bool(data))
        return (_make(np.zeros(n, np.int64)),) if as_tuple else _make(np.zeros((n, 0), np.int64))
    idx = np.nonzero(data)
    if as_tuple:
        return tuple(_make(np.asarray(i, dtype=np.int64)) for i in idx)
    return _make(np.stack(idx, axis=1).astype(np.int64) if idx else np.zeros((1, 0), np.int64))


# ---------------------------------------------------------------- small creation helpers
def full_(shape, value, dtype) -> Tensor:
    if builtins.min(shape, default=0) < 0:
        P["full"].meta(tuple(shape), value, dtype)  # raises, naming the shape
    if _tensor_mod._tracer is None:
        t = _make(np.full(shape, value, dtype=dtype.np), dtype)
        t._anywhere = True  # an internal constant: it may join an op on a cuda tensor
        return t
    return apply(P["full"], (), {"shape": tuple(shape), "value": value, "dtype": dtype})


def arange_(n, dtype=dtypes.int64) -> Tensor:
    if _tensor_mod._tracer is None:
        t = _make(np.arange(n, dtype=dtype.np), dtype)
        t._anywhere = True  # as full_'s
        return t
    return apply(P["arange"], (), {"start": 0, "end": n, "step": 1, "dtype": dtype})
