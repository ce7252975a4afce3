"""The decompose pass: composite nodes become the primitives of their decomposition.

The tracer records a composite (softmax, layer_norm, cross_entropy, ...; see
tracecc/_composite.py) as one node, so the traced graph reads like the user's program.
This pass runs each composite's decomposition, the same function eager mode runs, on the
node's inputs and splices the primitives it applies in place of the node, with the node's
source line and region. It runs first, on the whole program: the autograd pass needs
primitives, whose VJP rules it knows.

Inside a decomposition, `.detach()` is honoured as the tracer honours it (the inputs are
taken to require grad; a detached use reads through stop_gradient), so the graph after
this pass is the one tracing the decomposition inline would have recorded.
"""

from __future__ import annotations

from .bind import binding, splice
from .ir import Graph, Value


def decompose(graph: Graph) -> Graph:
    expand_composites(graph)
    return graph


def expand_composites(graph: Graph) -> dict[Value, Value]:
    """Expand every composite node (in place). Returns what each composite's value became."""
    subst: dict[Value, Value] = {}
    i = 0
    while i < len(graph.nodes):
        n = graph.nodes[i]
        n.inputs = [subst.get(v, v) for v in n.inputs]
        if n.prim.kind != "composite":
            i += 1
            continue
        start = len(graph.nodes)
        with binding(graph, n.region, track_grads=True) as b:
            b.loc = n.loc
            inputs = [b.tensor(v, requires_grad=v.type.dtype.is_floating_point)
                      for v in n.inputs]
            out = n.prim.decompose(inputs, n.params)
        subst[n.out] = b.value(out)
        added = len(graph.nodes) - start
        splice(graph, i, start, n)
        i += added
    graph.outputs = [subst.get(v, v) for v in graph.outputs]
    graph.writes = [(a, subst.get(b, b)) for a, b in graph.writes]
    return subst
