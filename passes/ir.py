"""The graph IR: SSA values, nodes that apply registry primitives, and the graph that holds them.

A Graph has typed inputs, a list of nodes in execution order, outputs, and writes (input
<- new value: the functionalised in-place updates the caller copies back after a run).
Every Value is defined once: by a graph input or by exactly one node. A Node applies one
primitive of the registry (its `op` is the primitive's name) to input Values with keyword
params, and defines one output Value whose type its meta rule gives. `loc` is the user's
`file:line` that created the node; `region` marks nodes recorded inside e.g. `backward()`.

The text form (printer.py / parser.py) is the contract: tests and bug reports write graphs
as text, and every dump is that text. See docs/ir.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..runtime.device import Device, cpu
from ..runtime.registry import Primitive, TensorType, get

# Input roles: where a graph input's value comes from when the graph runs.
ROLES = (
    "arg",       # an argument of the compiled function
    "param",     # a module parameter, lifted from where the function read it
    "buffer",    # a module buffer
    "state",     # optimizer state (momentum buffers, step counters, ...)
    "grad",      # the .grad of a lifted tensor, as it was when the call started
    "tensor",    # any other tensor the function read (closure, global)
    "const",     # a tensor the function created from Python/numpy data: fixed per graph
    "random",    # random numbers the compiled call draws from the generator before running
    "hyper",     # an optimizer hyperparameter (the lr), a 0-d float64 fetched on every call
    "grad_out",  # backward graphs: the gradient flowing into an output of the forward graph
    "saved",     # backward graphs: a forward value saved for the backward graph
)


class Value:
    """An SSA value: a name, a TensorType and a device. Graph inputs also carry a role."""

    __slots__ = ("name", "type", "device", "role")

    def __init__(self, name: str, type: TensorType, device: Device = cpu, role: str | None = None):
        self.name = name
        self.type = type
        self.device = device
        self.role = role

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """`out = op(*inputs, **params)` where op names a primitive of the registry."""

    __slots__ = ("op", "inputs", "params", "out", "loc", "region")

    def __init__(self, op: str, inputs: list[Value], params: dict, out: Value, loc: str = "",
                 region: str | None = None):
        self.op = op
        self.inputs = list(inputs)
        self.params = dict(params)
        self.out = out
        self.loc = loc
        self.region = region

    @property
    def prim(self) -> Primitive:
        return get(self.op)

    def __repr__(self) -> str:
        from .printer import format_node
        return f"<Node {format_node(self)}>"


@dataclass(eq=False)
class KernelGroup:
    """A fused kernel's membership, as the fusion pass reports it (shown as a cluster by
    `tracecc graph`): `kernel k3 [pointwise, 8192 elems] = {add %1, relu %2}  # why: ...`"""

    name: str
    info: str
    members: list[Value]
    why: str = ""


class Graph:
    """inputs -> nodes (in execution order) -> outputs, plus writes and notes."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.output_labels: list[str | None] = []  # optional names shown in `return (...)`
        self.writes: list[tuple[Value, Value]] = []  # (graph input, its new value)
        self.notes: list[str] = []  # provenance lines, e.g. "pass simplify: 0.4 ms"
        self.kernels: list[KernelGroup] = []  # filled by the fusion pass
        self._counter = 0
        self._names: set[str] = set()

    # ------------------------------------------------------------ building
    def fresh_name(self, hint: str | None = None) -> str:
        """`hint` if free (else hint_1, hint_2, ...); without a hint the next number."""
        if hint is None:
            while str(self._counter) in self._names:
                self._counter += 1
            name = str(self._counter)
            self._counter += 1
        else:
            name, i = hint, 1
            while name in self._names:
                name, i = f"{hint}_{i}", i + 1
        self._names.add(name)
        return name

    def add_input(self, type: TensorType, name: str | None = None, role: str = "arg",
                  device: Device = cpu) -> Value:
        if role not in ROLES:
            raise ValueError(f"unknown input role {role!r}; known: {', '.join(ROLES)}")
        v = Value(self.fresh_name(name), TensorType(tuple(type.shape), type.dtype), device, role)
        self.inputs.append(v)
        return v

    def add_node(self, op: str, inputs, params: dict, type: TensorType, loc: str = "",
                 region: str | None = None, name: str | None = None,
                 device: Device = cpu) -> Value:
        out = Value(self.fresh_name(name), TensorType(tuple(type.shape), type.dtype), device)
        self.nodes.append(Node(op, inputs, params, out, loc, region))
        return out

    def set_outputs(self, values, labels=None) -> None:
        self.outputs = list(values)
        self.output_labels = list(labels) if labels is not None else [None] * len(self.outputs)

    def add_write(self, target: Value, new: Value) -> None:
        self.writes.append((target, new))

    def rename(self, value: Value, name: str) -> str:
        """Give a value a readable name (kept unique); returns the name it got."""
        self._names.discard(value.name)
        value.name = self.fresh_name(name)
        return value.name

    def _adopt_names(self) -> None:
        """Recompute the set of used names (after a pass built nodes by hand)."""
        self._names = {v.name for v in self.inputs} | {n.out.name for n in self.nodes}

    # ------------------------------------------------------------ queries
    def values(self) -> Iterator[Value]:
        yield from self.inputs
        for n in self.nodes:
            yield n.out

    def producers(self) -> dict[Value, Node]:
        return {n.out: n for n in self.nodes}

    def upstream(self, roots, follow=None) -> list[Value]:
        """roots and the values they are computed from, each once, depth first: from a
        reached value v with a producer n, the walk goes on to follow(v, n) (default: all
        of n's inputs)."""
        producers = self.producers()
        seen, order, stack = set(), [], list(roots)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            order.append(v)
            n = producers.get(v)
            if n is not None:
                stack.extend(n.inputs if follow is None else follow(v, n))
        return order

    def users(self) -> dict[Value, list[Node]]:
        result: dict[Value, list[Node]] = {v: [] for v in self.values()}
        for n in self.nodes:
            for v in n.inputs:
                result.setdefault(v, []).append(n)
        return result

    def roots(self) -> list[Value]:
        """What the graph must compute: its outputs and the new values of its writes."""
        return list(self.outputs) + [new for _, new in self.writes]

    def input(self, name: str) -> Value:
        for v in self.inputs:
            if v.name == name:
                return v
        raise KeyError(f"graph {self.name} has no input %{name}")

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def copy(self) -> "Graph":
        """A deep copy with fresh Values (so a pass can edit it without touching the original)."""
        g = Graph(self.name)
        m: dict[Value, Value] = {}
        for v in self.inputs:
            m[v] = g.add_input(v.type, v.name, v.role or "arg", v.device)
        for n in self.nodes:
            m[n.out] = g.add_node(n.op, [m[v] for v in n.inputs], n.params, n.out.type, n.loc,
                                  n.region, n.out.name, n.out.device)
        g.set_outputs([m[v] for v in self.outputs], self.output_labels)
        g.writes = [(m[a], m[b]) for a, b in self.writes]
        g.notes = list(self.notes)
        g.kernels = [KernelGroup(k.name, k.info, [m[v] for v in k.members], k.why)
                     for k in self.kernels]
        g._counter = self._counter
        return g

    def __str__(self) -> str:
        from .printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, "
                f"{len(self.outputs)} outputs, {len(self.writes)} writes>")


def dead_code_elimination(graph: Graph) -> Graph:
    """Drop nodes whose values reach no output or write (in place; returns the graph).
    Every primitive is pure, so an unused node has no effect."""
    live = set(graph.roots())
    live.update(m for k in graph.kernels for m in k.members)
    kept = []
    for n in reversed(graph.nodes):
        if n.out in live:
            kept.append(n)
            live.update(n.inputs)
    kept.reverse()
    graph.nodes = kept
    return graph
