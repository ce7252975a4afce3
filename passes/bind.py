"""Binding tracecc-op code to graph nodes: the way passes run the registry's Python rules.

VJP rules (runtime/ops) and composite decompositions (tracecc/_composite.py) are written
with tensor operators and `ops.*`. A Binder stands in for the tracer while such code runs
on tensors whose payloads are graph values: every op it applies is appended to the graph
as a node (the caller moves the new nodes into place). With `track_grads` it also marks,
as the tracer does, where eager autograd would not record a use (`.detach()` inside a
decomposition) by reading through stop_gradient.

`passes/` reaches the front end's Tensor here, lazily: the rules need real tensors.
"""

from __future__ import annotations

import contextlib

from ..runtime.errors import UnsupportedError
from ..runtime.registry import PRIMITIVES
from .ir import Graph, Value


def gradient_flow(prim, args, values: list[Value], out_type, differentiable: set, stop) -> bool:
    """Where gradients flow, as eager autograd decides it (tracecc/_tensor.apply): an input
    that requires grad is recorded, and then the output (of type out_type) may carry a
    gradient; any other input that may carry one is read through stop(value) (values is
    updated in place). Returns whether the output may carry a gradient."""
    from .. import _grad_mode
    if prim.vjp is None or not (differentiable or any(a.requires_grad for a in args)):
        return False
    if not out_type.dtype.is_floating_point:
        return False  # integer and bool results have no gradient
    recorded = _grad_mode._enabled
    flows = False
    for i, (a, v) in enumerate(zip(args, values)):
        if recorded and a.requires_grad:
            differentiable.add(v)
            flows = True
        elif v in differentiable:
            values[i] = stop(v)
    return flows


class Binder:
    def __init__(self, graph: Graph, region: str | None = None, track_grads: bool = False):
        from .._trace import Sym
        self.graph = graph
        self.region = region
        self.loc = ""
        self.Sym = Sym
        self.tensors: dict[Value, object] = {}
        self.differentiable: set[Value] | None = set() if track_grads else None

    def tensor(self, v: Value, requires_grad: bool = False):
        t = self.tensors.get(v)
        if t is None:
            from .._tensor import _make
            t = self.tensors[v] = _make(self.Sym(v), v.type.dtype)
        if requires_grad:
            t.requires_grad = True
            self.differentiable.add(v)
        return t

    @staticmethod
    def value(t) -> Value:
        return t._data.value

    def _record(self, prim, values, params, out_type=None) -> Value:
        if out_type is None:
            out_type = prim.meta(*[v.type for v in values], **params)
        return self.graph.add_node(prim.name, values, params, out_type, self.loc, self.region)

    def stop_gradient(self, v: Value) -> Value:
        return self._record(PRIMITIVES["stop_gradient"], [v], {})

    # the protocol of tracecc/_tensor.py's _tracer
    def apply(self, prim, args, params):
        values = []
        for a in args:
            if not isinstance(a._data, self.Sym):
                raise UnsupportedError(f"{prim.name} applied to a {type(a._data).__name__}, not "
                                       f"a graph value, by a rule a pass runs")
            values.append(a._data.value)
        out_type = prim.meta(*[v.type for v in values], **params)  # once: stops keep types
        flows = self.differentiable is not None and gradient_flow(
            prim, args, values, out_type, self.differentiable, self.stop_gradient)
        out = self._record(prim, values, params, out_type)
        if flows:
            self.differentiable.add(out)
        return self.tensor(out)

    def _sym(self, value):
        return self.Sym(value)

    def made(self, t) -> None:
        pass

    def inplace(self, target, result) -> None:
        raise UnsupportedError("a rule a pass runs updated a tensor in place")

    def needs_value(self, t, what):
        raise UnsupportedError(f"a rule a pass runs needs a concrete value ({what})")


@contextlib.contextmanager
def binding(graph: Graph, region: str | None = None, track_grads: bool = False):
    """Install a Binder as the tracer (grad mode on only when tracking gradients)."""
    from .. import _grad_mode, _tensor
    binder = Binder(graph, region, track_grads)
    prev = _tensor._tracer
    _tensor._tracer = binder
    try:
        with _grad_mode.set_grad_enabled(track_grads):
            yield binder
    finally:
        _tensor._tracer = prev


def splice(graph: Graph, at: int, start: int, drop) -> None:
    """Move the nodes appended since index `start` to index `at`, dropping node `drop`
    (an identity-compared node or None) from what was there."""
    nodes = graph.nodes
    built = nodes[start:]
    graph.nodes = nodes[:at] + built + [n for n in nodes[at:start] if n is not drop]
