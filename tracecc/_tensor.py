"""The Tensor, and `apply`: the one place where a primitive meets values.

A Tensor wraps a payload: a numpy array when eager, a symbolic value while a function is
traced by @compile. Every op funnels through `apply(prim, args, params)`, which runs the
eager kernel (or lets the active tracer record a node) and attaches autograd history.
"""

from __future__ import annotations

import numpy as np

from . import _grad_mode
from .autograd import Node, retain_grad, retains_grad, run_backward
from .runtime import dtypes, eager
from .runtime.cuda import CudaArray, run_op
from .runtime.device import cpu, of_array
from .runtime.dtypes import DType, get_dtype
from .runtime.errors import AutogradError, DeviceError, DTypeError, InplaceError, ShapeError
from .runtime.registry import PRIMITIVES, set_dispatcher
from .runtime.shapes import fmt

# The active tracer (set by tracecc's compile machinery), or None when running eagerly.
# It provides apply(prim, args, params) -> Tensor, inplace(target, result),
# and needs_value(tensor, what) for code that asks for a concrete value.
_tracer = None

# Primitives whose eager result is a view of their input: it shares the version counter,
# so an in-place write through either is seen by autograd.
VIEW_PRIMS = frozenset({"reshape", "permute", "expand", "slice"})


def apply(prim, args, params):
    if _tracer is not None:
        out = _tracer.apply(prim, args, params)
    else:
        if _grad_mode._enabled:
            for a in args:
                if a._view_of is not None and a._history_version != a._version[0]:
                    _refresh_view(a)
        datas = [a._data for a in args]
        for d in datas:
            if type(d) is CudaArray:
                out = _make(run_op(prim, _on_one_device(prim, args, datas), params))
                break
        else:
            out = _make(eager.run(prim, datas, params))
            if not args and prim.kind == "creation":  # an internal constant: goes where it is used
                out._anywhere = True
        src = args[0] if args else None
        # (a reshape that had to copy is no view)
        if prim.name in VIEW_PRIMS and (prim.name != "reshape" or np.may_share_memory(out._data, src._data)):
            out._version = src._version
            out._base = src if src._base is None else src._base
            out._view_of = (src, prim, params)
            out._history_version = src._version[0]
    # integer and bool results have no gradient: they never require grad (as in PyTorch)
    if _grad_mode._enabled and prim.vjp is not None and out._dtype.is_floating_point:
        needs = tuple(a.requires_grad for a in args)
        if True in needs:
            out.requires_grad = True
            out.grad_fn = Node(prim, args, params, needs, out)
    return out


set_dispatcher(apply)


def _on_one_device(prim, args, datas) -> list:
    """The payloads of an op on cuda tensors, all on one device. As in PyTorch, a 0-d cpu
    tensor (a Python number) may join a cuda op, and so may constants tracecc makes
    internally (masks, zeros in gradient rules); any other cpu tensor is an error."""
    device = next(d.device for d in datas if type(d) is CudaArray)
    out = []
    for a, d in zip(args, datas):
        if type(d) is not CudaArray:
            if d.ndim and not a._anywhere:
                raise DeviceError(f"{prim.name}: expected all tensors to be on the same device, "
                                  f"but found at least two devices, cuda:{device.index} and cpu",
                                  hint="move them to one device first: .to(device), .cuda(), .cpu()")
            d = device.constant(d) if d.ndim == 0 else CudaArray.from_numpy(device, d)
        elif d.device is not device:
            raise DeviceError(f"{prim.name}: expected all tensors to be on the same device, but "
                              f"found at least two devices, cuda:{device.index} and "
                              f"cuda:{d.device.index}", hint="move them to one device with .to(device)")
        out.append(d)
    return out


def _refresh_view(view: "Tensor") -> None:
    """Memory under `view` was written through another tensor (its base or a sibling view)
    since its history was recorded: take the view again from its source, whose history is
    current, so gradients follow what the memory now holds (PyTorch regenerates it too)."""
    src, prim, params = view._view_of
    fresh = apply(prim, (src,), params)  # a numpy view of the same memory: no copy
    view.requires_grad, view.grad_fn = fresh.requires_grad, fresh.grad_fn
    view._history_version = view._version[0]


def _write_into(src: "Tensor", prim, params, value: "Tensor") -> "Tensor":
    """src's new value (functional) when its view `prim(src, **params)` takes `value`."""
    name = prim.name
    if name == "slice":
        return apply(PRIMITIVES["slice_scatter"], (src, value), params)
    if name == "reshape":
        return apply(prim, (value,), {"shape": tuple(src.shape)})
    if name == "permute":
        dims = params["dims"]
        return apply(prim, (value,), {"dims": tuple(sorted(range(len(dims)), key=dims.__getitem__))})
    raise InplaceError("in-place update of an expanded tensor: its memory is shared by several "
                       "elements", hint="call .clone() first")


def _make(data, dtype: DType | None = None) -> "Tensor":
    t = Tensor.__new__(Tensor)
    t._data = data
    t._dtype = dtype if dtype is not None else dtypes._BY_NP[data.dtype]
    t.requires_grad = False
    t.grad = None
    t.grad_fn = None
    t._version = [0]
    t._base = None
    if _tracer is not None:  # while tracing, the tracer tracks every tensor made
        _tracer.made(t)
    return t


def _float_mode(data: np.ndarray) -> str:
    """PyTorch prints integral floats as "1., 2." and others with 4 decimals, switching to
    scientific notation by the same rule numpy uses."""
    if data.dtype.kind != "f":
        return "maxprec"
    finite = np.abs(data[np.isfinite(data)])
    nonzero = finite[finite != 0]
    sci = nonzero.size and (nonzero.max() >= 1e8 or nonzero.max() / nonzero.min() > 1000)
    return "maxprec" if np.all(finite == np.round(finite)) and not sci else "fixed"


def as_tensor_list(x) -> list:
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def _infer_dtype(data) -> DType:
    """dtype of a new tensor from Python/numpy data, as torch.tensor infers it."""
    if isinstance(data, np.ndarray) or isinstance(data, np.generic):
        return get_dtype(data.dtype)
    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        return dtypes.bool_
    if arr.dtype.kind in "iu":
        return dtypes.int64
    if arr.dtype.kind == "f":
        return dtypes.get_default_dtype()
    raise DTypeError(f"tensor(): cannot make a tensor from data of type {arr.dtype}")


def _cuda_value(data: CudaArray, what: str):
    """A cuda payload where host values are asked for: metadata reads get the array itself,
    numpy() is an error (as in PyTorch: it would not share memory), the rest a host copy."""
    if what in ("stride()", "is_contiguous()"):
        return data
    if what in ("numpy()", "__array__"):
        raise DeviceError(f"{what}: can't convert a {of_array(data)} tensor to numpy",
                          hint="use tensor.cpu() to copy the tensor to host memory first")
    return data.numpy()


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        if data.is_cuda:
            return data._data.numpy()
        return data.numpy()
    if isinstance(data, (list, tuple)):
        return [_unwrap_nested(d) for d in data]
    return data


class Tensor:
    __slots__ = ("_data", "_dtype", "requires_grad", "grad", "grad_fn", "_version", "_base",
                 "__weakref__", "__dict__")
    __array_priority__ = 1000  # numpy defers to Tensor's reflected operators
    # eager views: (source, view primitive, params), and the version their history matches
    _view_of = None
    _history_version = 0
    _anywhere = False  # a constant tracecc made on the cpu that may join an op on any device

    def __init__(self, data=None, *, dtype=None, requires_grad: bool = False):
        if data is None:
            data = []
        data = _unwrap_nested(data)
        dtype = get_dtype(dtype) if dtype is not None else _infer_dtype(data)
        self._data = np.array(data, dtype=dtype.np)
        self._dtype = dtype
        self.grad = None
        self.grad_fn = None
        self._version = [0]
        self._base = None
        self.requires_grad = False
        if _tracer is not None:  # made from data inside a trace: the tracer tracks it too
            _tracer.made(self)
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------ basic properties
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._data.shape)
        from .runtime.shapes import normalize_axis
        return self._data.shape[normalize_axis("size", dim, self.ndim)]

    @property
    def dtype(self) -> DType:
        return self._dtype

    @property
    def device(self):
        data = self._data
        return of_array(data) if type(data) is CudaArray else cpu

    @property
    def is_cuda(self) -> bool:
        return type(self._data) is CudaArray

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        n = 1
        for d in self._data.shape:
            n *= d
        return n

    nelement = numel

    def element_size(self) -> int:
        return self._dtype.itemsize

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def is_floating_point(self) -> bool:
        return self._dtype.is_floating_point

    def stride(self, dim: int | None = None):
        strides = tuple(s // self._dtype.itemsize for s in self._value("stride()").strides)
        return strides if dim is None else strides[dim]

    def is_contiguous(self) -> bool:
        return bool(self._value("is_contiguous()").flags.c_contiguous)

    def data_ptr(self) -> int:
        if type(self._data) is CudaArray:
            return self._data.data_ptr()
        return self._value("data_ptr()").ctypes.data

    # ------------------------------------------------------------ concrete values
    def _value(self, what: str) -> np.ndarray:
        """The numpy payload, for code that needs real numbers; while tracing, the tracer
        decides (a data-dependent value stops the trace with a clear error)."""
        data = self._data
        if not isinstance(data, np.ndarray):
            if type(data) is CudaArray:
                return _cuda_value(data, what)
            return _tracer.needs_value(self, what)
        return data

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self.requires_grad and not force:
            raise AutogradError("numpy(): can't call numpy() on a tensor that requires grad",
                                hint="use tensor.detach().numpy()")
        return self._value("numpy()")

    def __array__(self, dtype=None, copy=None):
        arr = self._value("__array__")
        return arr if dtype is None else arr.astype(dtype)

    def item(self):
        data = self._value("item()")
        if data.size != 1:
            raise ShapeError(f"item(): a tensor with {data.size} elements cannot be converted "
                             f"to a Python scalar (shape {fmt(data.shape)})")
        value = data.item()
        return float(value) if self._dtype in dtypes.STORAGE_ONLY else value

    def tolist(self):
        data = self._value("tolist()")
        if self._dtype in dtypes.STORAGE_ONLY:
            data = data.astype(np.float32)
        return data.tolist()

    def __bool__(self) -> bool:
        data = self._value("bool()")
        if data.size != 1:
            raise RuntimeError(f"Boolean value of a tensor with {data.size} elements is ambiguous")
        return bool(data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._dtype.category != dtypes.INT or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __len__(self) -> int:
        if not self.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if not self.ndim:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        data = self._data
        if type(data) is CudaArray:
            data = data.numpy()
        if isinstance(data, np.ndarray):
            if self._dtype in dtypes.STORAGE_ONLY:
                data = data.astype(np.float32)
            body = np.array2string(data, separator=", ", prefix="tensor(", precision=4,
                                   threshold=1000, edgeitems=3, floatmode=_float_mode(data))
        else:
            body = f"<{data}>"
        extras = []
        if self.is_cuda:
            extras.append(f"device='{self.device}'")
        if self._dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_):
            extras.append(f"dtype={self._dtype}")
        if self.numel() == 0 and self.ndim != 1:
            extras.append(f"size={tuple(self.shape)}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # ------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not self._dtype.is_floating_point:
            raise AutogradError(f"only floating point tensors can require gradients, got {self._dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise AutogradError("requires_grad_(False) on a non-leaf tensor",
                                hint="use .detach() to get a tensor without history")
        if requires_grad and not self.requires_grad and _tracer is not None:
            _tracer.new_leaf(self)
        self.requires_grad = requires_grad
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph: bool = False):
        run_backward([self], None if gradient is None else [gradient], retain_graph, create_graph)

    def _alias(self) -> "Tensor":
        """Same payload and version counter, no history."""
        t = _make(self._data, self._dtype)
        t._version = self._version
        t._base = self._base
        return t

    def detach(self) -> "Tensor":
        return self._alias()

    def detach_(self) -> "Tensor":
        self.grad_fn = None
        self.requires_grad = False
        return self

    @property
    def data(self) -> "Tensor":
        t = self._alias()
        t._version = [0]  # like torch: changes through .data are invisible to autograd
        return t

    @data.setter
    def data(self, other: "Tensor"):
        self._data = other._data
        self._dtype = other._dtype

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in .grad at backward (leaves: a no-op)."""
        retain_grad(self)

    @property
    def retains_grad(self) -> bool:
        return retains_grad(self)

    # ------------------------------------------------------------ in-place updates
    def _inplace_update(self, result: "Tensor", op: str) -> "Tensor":
        """Write result's values into self, as an in-place op does, and move self's history."""
        if tuple(result.shape) != tuple(self.shape):
            raise ShapeError(f"{op}: output with shape {fmt(self.shape)} doesn't match the "
                             f"broadcast shape {fmt(result.shape)}")
        if result._dtype.category > self._dtype.category:
            raise DTypeError(f"{op}: result type {result._dtype} can't be cast to the desired "
                             f"output type {self._dtype}")
        if result._dtype is not self._dtype:
            result = apply(PRIMITIVES["cast"], (result,), {"dtype": self._dtype})
        recording = _grad_mode._enabled and (self.requires_grad or result.requires_grad)
        if recording:
            if self.requires_grad and self.grad_fn is None:
                raise InplaceError(f"{op}: a leaf tensor that requires grad is being used in an "
                                   f"in-place operation",
                                   hint="wrap parameter updates in `with tracecc.no_grad():`")
            if result.grad_fn is None:  # zero_/fill_: the old values get a zero gradient
                false = apply(PRIMITIVES["full"], (), {"shape": (), "value": False, "dtype": dtypes.bool_})
                result = apply(PRIMITIVES["where"], (false, self, result), {})
            node = result.grad_fn
            if node.prim.name == "cast" and node.next[0][0] is not None:  # the dtype fix-up above
                node = node.next[0][0]
            node.keep_old_value(self)
            if self._view_of is not None and _tracer is None:
                # the viewed tensor takes the new values functionally, so it records the
                # history too (as PyTorch's CopySlices); that write fills this view's memory
                src, prim, params = self._view_of
                src._inplace_update(_write_into(src, prim, params, result), op)
                self.requires_grad, self.grad_fn = True, result.grad_fn
                self._history_version = self._version[0]
                return self
        if _tracer is not None:
            _tracer.inplace(self, result)
        else:
            if not self._data.flags.writeable:
                raise InplaceError(f"{op}: this tensor's memory is shared by several elements (it "
                                   f"comes from expand/broadcast) and cannot be written in place",
                                   hint="call .clone() first")
            np.copyto(self._data, result._data)
        self._version[0] += 1
        self._history_version = self._version[0]
        if recording:
            self.requires_grad = True
            self.grad_fn = result.grad_fn
        return self

    def __setitem__(self, index, value):
        from ._indexing import setitem
        setitem(self, index, value)

    def __getitem__(self, index):
        from ._indexing import getitem
        return getitem(self, index)


class Size(tuple):
    """torch.Size: a tuple of ints with a torch-like repr."""

    def __repr__(self) -> str:
        return f"tracecc.Size([{', '.join(map(str, self))}])"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n
