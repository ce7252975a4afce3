"""Composites: front-end functions that are decompositions into primitives, registered in
the op registry so the compiler can see them whole before it sees through them.

`@composite("softmax")` on a function written with tracecc ops registers a primitive of
kind "composite" whose `decompose` is that function. Eagerly, calling it just runs the
function (eager autograd differentiates the primitives it applies). While tracing, the
call becomes one node, `softmax(%x, dim=1, dtype=None)`: tensor arguments are its
inputs and the other arguments its params. The decompose pass (passes/decompose.py) then
replaces each such node with the same function's primitives. One table, shared by eager
and compiled: the decomposition is written once.

A call whose arguments cannot be node params (a callable, a list of tensors) or that
updates a tensor in place (`inplace=True`) is not recorded whole: it runs the function
inline, as eager does.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import _grad_mode, _tensor
from .passes.bind import binding
from .passes.ir import Graph
from .runtime.dtypes import DType
from .runtime.registry import Primitive, register
from ._tensor import Tensor, _make, apply

_LITERALS = (int, float, bool, str, type(None), DType)


def _literal(v) -> bool:
    if isinstance(v, tuple):
        return all(_literal(x) for x in v)
    return isinstance(v, _LITERALS) and not isinstance(v, np.ndarray)


def composite(name: str):
    def deco(fn):
        sig = inspect.signature(fn)

        def call(tensors, params):
            """fn with the node's inputs and params put back in signature order."""
            it = iter(tensors)
            return fn(**{p: params[p] if p in params else next(it) for p in sig.parameters})

        def meta(*types, **params):
            """Shape and dtype by running the decomposition on a scratch graph."""
            g = Graph(f"meta_{name}")
            with binding(g) as b:
                out = call([b.tensor(g.add_input(t)) for t in types], params)
            return out._data.value.type

        def eager(*arrays, **params):
            return call([_make(a) for a in arrays], params)._data

        def vjp(ctx, g):
            """Recompute the decomposition with history and differentiate it (used only
            when a traced function falls back to eager mode with composite history)."""
            from .autograd import grad
            inputs = [t.detach().requires_grad_(ctx.needs[i] and t.dtype.is_floating_point)
                      for i, t in enumerate(ctx.inputs)]
            wanted = [t for t in inputs if t.requires_grad]
            with _grad_mode.enable_grad():  # the sweep runs under no_grad
                out = call(inputs, ctx.params)
            grads = iter(grad(out, wanted, g, allow_unused=True)) if wanted else iter(())
            return tuple(next(grads) if t.requires_grad else None for t in inputs)

        prim = register(Primitive(name, "composite", meta, eager, vjp, saves=None,
                                  doc=(fn.__doc__ or "").strip().split("\n")[0],
                                  decompose=call))

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            tracer = _tensor._tracer
            if tracer is None or not getattr(tracer, "records_composites", False):
                return fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            tensors, params = [], {}
            for p, v in bound.arguments.items():
                if isinstance(v, Tensor):
                    tensors.append(v)
                elif _literal(v):
                    params[p] = v
                else:
                    return fn(*args, **kwargs)
            if not tensors or params.get("inplace"):
                return fn(*args, **kwargs)
            return apply(prim, tuple(tensors), params)

        return wrapper

    return deco
