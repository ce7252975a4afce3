"""The verifier: the invariants every graph keeps, checked after every pass in tests
(and always with TRACECC_VERIFY=1).

- SSA: every value is defined once (an input or one node), before any use.
- No dangling uses: node arguments, outputs, writes and kernel members are defined values.
- Types: each node's output type is what its primitive's meta rule derives from the input
  types and params (so a pass cannot silently change a shape or a dtype).
- Writes: the target is a graph input, written once, with a value of the same type.
- Devices: a node's inputs and output live on one device.
"""

from __future__ import annotations

from ..runtime.errors import IRVerifyError, TraceccError
from ..runtime.registry import PRIMITIVES
from .ir import Graph, Node, Value
from .printer import SHORT_DTYPES, format_node


def verify(graph: Graph) -> Graph:
    """Raise IRVerifyError (TC121) naming the first broken invariant; return the graph."""
    defined: set[Value] = set()
    names: dict[str, Value] = {}

    def define(v: Value, what: str):
        if v in defined:
            _fail(graph, f"{what} %{v.name} is defined twice (values are SSA)")
        if v.name in names:
            _fail(graph, f"{what} %{v.name}: the name is already used by another value")
        defined.add(v)
        names[v.name] = v

    for v in graph.inputs:
        define(v, "input")
    for n in graph.nodes:
        for a in n.inputs:
            if a not in defined:
                _fail(graph, f"%{n.out.name} = {n.op}(...) uses %{a.name} before it is defined", n)
        _check_type(graph, n)
        define(n.out, "value")
    for v in graph.outputs:
        if v not in defined:
            _fail(graph, f"output %{v.name} is not defined in the graph")
    if len(graph.output_labels) != len(graph.outputs):
        _fail(graph, "output_labels and outputs differ in length")
    inputs, written = set(graph.inputs), set()
    for target, new in graph.writes:
        if target not in inputs:
            _fail(graph, f"write target %{target.name} is not a graph input")
        if target in written:
            _fail(graph, f"input %{target.name} is written twice")
        written.add(target)
        if new not in defined:
            _fail(graph, f"write %{target.name} <- %{new.name}: the value is not defined")
        if new.type != target.type:
            _fail(graph, f"write %{target.name} <- %{new.name}: type {_t(new.type)} differs from "
                         f"the input's {_t(target.type)}")
    for k in graph.kernels:
        for m in k.members:
            if m not in defined:
                _fail(graph, f"kernel {k.name}: member %{m.name} is not defined")
    return graph


def _check_type(graph: Graph, n: Node) -> None:
    prim = PRIMITIVES.get(n.op)
    if prim is None:
        _fail(graph, f"%{n.out.name}: unknown op {n.op!r} (not a primitive of the registry)", n)
    devices = {a.device for a in n.inputs} | {n.out.device}
    if len(devices) > 1:
        _fail(graph, f"%{n.out.name} = {n.op}: values on different devices "
                     f"({', '.join(sorted(map(str, devices)))})", n)
    try:
        expected = prim.meta(*[a.type for a in n.inputs], **n.params)
    except TraceccError as e:
        _fail(graph, f"%{n.out.name} = {n.op}: its meta rule rejects the inputs: {e.message}", n)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        _fail(graph, f"%{n.out.name} = {n.op}: bad inputs or params for the primitive ({e})", n)
    if tuple(expected.shape) != tuple(n.out.type.shape) or expected.dtype is not n.out.type.dtype:
        _fail(graph, f"%{n.out.name} = {n.op}: declared type {_t(n.out.type)} but the meta "
                     f"rule gives {_t(expected)}", n)


def _t(t) -> str:
    return f"{SHORT_DTYPES[t.dtype.name]}[{','.join(map(str, t.shape))}]"


def _fail(graph: Graph, message: str, node: Node | None = None):
    where = f"\n    {format_node(node)}" if node is not None else ""
    raise IRVerifyError(f"graph {graph.name}: {message}{where}",
                        hint="a pass (or hand-written IR) broke an invariant of docs/ir.md",
                        location=(node.loc or f"<graph {graph.name}>") if node else
                        f"<graph {graph.name}>")
