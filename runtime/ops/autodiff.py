"""Markers the tracer leaves for the autograd pass (passes/autograd.py). Neither reaches a
backend: the pass replaces `grad` nodes with gradient computations and drops
`stop_gradient` nodes once every gradient is built.

- `stop_gradient(x)`: x, but no gradient flows through it. The tracer inserts it where
  eager autograd would not record (under no_grad, through `.detach()`, a tensor that does
  not require grad) so that the graph alone says where gradients flow.
- `grad(*roots, *seeds, wrt, request, n_roots, create_graph)`: the gradient of
  sum(root_i * seed_i) with respect to `wrt`. All `grad` nodes with the same `request`
  come from one `backward()` / `autograd.grad()` call.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..registry import Primitive, TensorType, register


def _grad_meta(*types, request, n_roots, create_graph) -> TensorType:
    return types[-1]


def _grad_eager(*arrays, request, n_roots, create_graph):
    raise UnsupportedError("grad: a gradient placeholder cannot be evaluated on its own",
                           hint="run the autograd pass (passes/autograd.py) over the graph first")


register(Primitive("stop_gradient", "marker", lambda x: x, lambda x: x,
                   doc="x, with no gradient flowing through it (removed by the autograd pass)"))
register(Primitive("grad", "marker", _grad_meta, _grad_eager,
                   doc="a gradient request from backward() (expanded by the autograd pass)"))
