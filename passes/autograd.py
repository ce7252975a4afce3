"""The autograd pass: `grad` requests become gradient nodes in the same graph.

The tracer records a function's ops as they run. For each backward() or autograd.grad()
call it records one `grad` node per tensor that receives a gradient (all with the same
`request` id), and it reads through `stop_gradient` every value whose use eager autograd
would not record (no_grad, `.detach()`); see runtime/ops/autodiff.py. So the graph alone
says what to differentiate, and this pass can do it as JAX does: for each request, in
order, it finds the forward nodes on a path from a requested value to a root, sweeps them
in reverse calling each primitive's VJP rule from the registry (the rules eager autograd
runs, here binding graph nodes), and puts the gradient nodes where the request was made.
The result is one joint program: forward, backward, and whatever used the gradients (an
optimizer update). Gradients are built only for requested values, only along paths that
reach a root; a request's gradients are constants to later requests unless it was made
with create_graph=True (double backward).
"""

from __future__ import annotations

from ..runtime.errors import UnsupportedError
from .bind import Binder, binding
from .ir import Graph, Node, Value

MARKERS = ("grad", "stop_gradient")


def autograd(graph: Graph) -> Graph:
    return differentiate(graph)[0]


def differentiate(graph: Graph) -> tuple[Graph, dict[Value, Value]]:
    """Expand every `grad` request and drop the `stop_gradient` markers (in place).
    Returns the graph and what each removed marker's value became."""
    subst: dict[Value, Value] = {}
    requests = _requests(graph)
    for i, req in enumerate(requests):
        later = i + 1 < len(requests)
        subst.update(_expand(graph, req, constant_grads=later))
    stops = {n.out: n.inputs[0] for n in graph.nodes if n.op == "stop_gradient"}
    if stops:
        graph.nodes = [n for n in graph.nodes if n.op != "stop_gradient"]
        _substitute(graph, stops)
    return graph, {k: _resolve(stops, v) for k, v in subst.items()} | {
        k: _resolve(stops, v) for k, v in stops.items()}


def _requests(graph: Graph) -> list[int]:
    seen: list[int] = []
    for n in graph.nodes:
        if n.op == "grad" and n.params["request"] not in seen:
            seen.append(n.params["request"])
    return seen


def _resolve(subst, v):
    while v in subst:
        v = subst[v]
    return v


def _substitute(graph: Graph, subst: dict[Value, Value]) -> None:
    for n in graph.nodes:
        n.inputs = [_resolve(subst, v) for v in n.inputs]
    graph.outputs = [_resolve(subst, v) for v in graph.outputs]
    graph.writes = [(a, _resolve(subst, b)) for a, b in graph.writes]


def _differentiable(n: Node) -> bool:
    """Does a gradient flow from n's output to its inputs? (Markers have no VJP rule.)"""
    return n.prim.vjp is not None and n.out.type.dtype.is_floating_point


def _expand(graph: Graph, request: int, constant_grads: bool) -> dict[Value, Value]:
    nodes = graph.nodes
    asks = [n for n in nodes if n.op == "grad" and n.params["request"] == request]
    first = nodes.index(asks[0])
    k = asks[0].params["n_roots"]
    roots, seeds = asks[0].inputs[:k], asks[0].inputs[k:2 * k]
    wrts = [a.inputs[-1] for a in asks]
    forward = nodes[:first]

    depends = set(wrts)  # values that depend on a requested value, differentiably
    for n in forward:
        if _differentiable(n) and any(v in depends for v in n.inputs):
            depends.add(n.out)
    wanted = {r for r in roots if r in depends}  # ... and lie on a path to a root
    sweep = []
    for n in reversed(forward):
        if n.out in wanted and _differentiable(n):
            sweep.append(n)
            wanted.update(v for v in n.inputs if v in depends)

    start = len(nodes)
    with binding(graph, "backward") as rec:
        cot: dict[Value, object] = {}
        for r, s in zip(roots, seeds):
            _accumulate(cot, r, rec.tensor(s))
        for n in sweep:
            g = cot.get(n.out)
            if g is None:
                continue
            rec.loc = n.loc
            ctx = _Context(n, rec, tuple(v in depends for v in n.inputs))
            grads = n.prim.vjp(ctx, g)
            for v, gv in zip(n.inputs, grads):
                if gv is not None and v in depends:
                    _accumulate(cot, v, gv)
        rec.loc = asks[0].loc
        subst = {}
        for a in asks:
            constant = constant_grads and not a.params["create_graph"]
            subst[a.out] = rec.value(_finish(cot.get(a.inputs[-1]), a.out, constant))
    asked = {id(a) for a in asks}
    built = graph.nodes[start:]
    graph.nodes = nodes[:first] + built + [n for n in nodes[first:start] if id(n) not in asked]
    _substitute(graph, subst)
    return subst


def _finish(g, like: Value, constant: bool):
    """The gradient as the request's node promised it: its dtype, zeros where no path
    reached it, and a constant to later requests unless create_graph was asked for."""
    from ..runtime.registry import ops
    if g is None:
        return ops.full(shape=tuple(like.type.shape), value=0, dtype=like.type.dtype)
    if g.dtype is not like.type.dtype:
        g = ops.cast(g, dtype=like.type.dtype)
    if tuple(g.shape) != tuple(like.type.shape):
        raise UnsupportedError(f"autograd: a gradient of shape {list(g.shape)} for a value of "
                               f"shape {list(like.type.shape)}")
    return ops.stop_gradient(g) if constant else g


def _accumulate(cot: dict, v: Value, g) -> None:
    prev = cot.get(v)
    cot[v] = g if prev is None else prev + g


class _Context:
    """What a VJP rule reads (see tracecc/autograd.py's Node): the forward node's inputs
    and output as tensors, its params, and which inputs want a gradient."""

    __slots__ = ("prim", "params", "needs", "inputs", "out")

    def __init__(self, n: Node, rec: Binder, needs):
        self.prim = n.prim
        self.params = n.params
        self.needs = needs
        self.inputs = tuple(rec.tensor(v) for v in n.inputs)
        self.out = rec.tensor(n.out)
