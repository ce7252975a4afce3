"""The op registry: one definition per primitive op.

A Primitive holds everything every stage needs to know about an op, side by side
(as JAX keeps a primitive's rules together):

- meta:  (*input TensorTypes, **params) -> output TensorType, with clear errors for bad
         shapes and dtypes. Tracing and the verifier use it; eager calls it when the
         kernel fails, to explain why.
- eager: (*numpy arrays, **params) -> numpy array, the reference kernel on the CPU.
- vjp:   (grad, out, *inputs, **params) -> one gradient (or None) per input, written with
         tracecc ops, so the same rule runs on real tensors (eager autograd) and on traced
         values (the autograd pass).
- kind:  pointwise | reduction | movement | matmul | index | creation, which tells the
         fusion pass and the code generators how the op iterates.
- saves: which values the VJP rule reads (input indices and/or "out"); the rest it uses
         for shapes only. Autograd checks only these for in-place modification, and the
         memory planner keeps only these alive for the backward pass. None: everything.
- reduce: for reductions, the combine op and its identity.
- lower: per-backend lowering data, filled in by the code generators' tables.

Rules call other ops through `ops.<name>(...)`, which binds the primitive through the
dispatcher the front end installs (eager kernel, or a node in the graph being traced).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from .dtypes import DType


class TensorType(NamedTuple):
    shape: tuple[int, ...]
    dtype: DType

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class ReduceInfo:
    combine: str  # name of the binary primitive that combines two partial results
    identity: Any  # starting value: 0 for sum, -inf for max, ...


@dataclass(eq=False)
class Primitive:
    name: str
    kind: str
    meta: Callable[..., TensorType]
    eager: Callable[..., Any]
    vjp: Callable[..., tuple] | None = None
    saves: tuple | None = None
    reduce: ReduceInfo | None = None
    lower: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    decompose: Callable[..., Any] | None = None  # composites: (input tensors, params) -> tensor

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


# "marker": tracer annotations for the autograd pass, never lowered (runtime/ops/autodiff.py).
# "composite": front-end functions recorded whole, expanded by the decompose pass
# (tracecc/_composite.py); their `decompose` is the function.
KINDS = ("pointwise", "reduction", "movement", "matmul", "index", "creation", "marker",
         "composite")
PRIMITIVES: dict[str, Primitive] = {}


def register(prim: Primitive) -> Primitive:
    if prim.kind not in KINDS:
        raise ValueError(f"{prim.name}: unknown kind {prim.kind!r}")
    if prim.name in PRIMITIVES:
        raise ValueError(f"primitive {prim.name!r} registered twice")
    PRIMITIVES[prim.name] = prim
    return prim


def get(name: str) -> Primitive:
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"no primitive named {name!r}") from None


# The front end installs how a primitive is applied to its values: eagerly on tensors,
# or by recording a node while tracing. Rules in this package only ever call `ops`.
_dispatcher: Callable[[Primitive, tuple, dict], Any] | None = None


def set_dispatcher(fn: Callable[[Primitive, tuple, dict], Any]) -> None:
    global _dispatcher
    _dispatcher = fn


def bind(prim: Primitive, *args, **params):
    return _dispatcher(prim, args, params)


class _Ops:
    """`ops.add(a, b)` binds the primitive `add`: the way rules call other ops."""

    def __getattr__(self, name: str):
        if name not in PRIMITIVES:  # AttributeError, so hasattr()/getattr(default) behave
            raise AttributeError(f"no primitive named {name!r}")
        prim = PRIMITIVES[name]

        def call(*args, **params):
            return _dispatcher(prim, args, params)

        call.__name__ = name
        setattr(self, name, call)
        return call


ops = _Ops()
