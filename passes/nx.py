"""A networkx view of a graph, for the analyses that want graph algorithms (min-cut
rematerialisation, dominators, longest paths), and its DOT drawing for `tracecc graph`.

Nodes of the DiGraph are Values (graph inputs and node outputs); an edge u -> v means node
v reads u. Node attributes: `op` ("input" for graph inputs), `type`, `loc`, `role`,
`kernel` (the fused kernel it belongs to, once the fusion pass reports kernel groups).
"""

from __future__ import annotations

import networkx as nx

from .ir import Graph, Value
from .printer import format_literal, format_type


def to_networkx(graph: Graph) -> nx.DiGraph:
    g = nx.DiGraph(name=graph.name)
    kernel_of = {m: k.name for k in graph.kernels for m in k.members}
    for v in graph.inputs:
        g.add_node(v, op="input", type=str(v.type), loc="", role=v.role, kernel=kernel_of.get(v))
    for n in graph.nodes:
        g.add_node(n.out, op=n.op, type=str(n.out.type), loc=n.loc, role=None,
                   kernel=kernel_of.get(n.out), params=n.params)
        for a in n.inputs:
            g.add_edge(a, n.out)
    return g


def _quote(s: str) -> str:
    """A DOT string; newlines in s become DOT's line breaks."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph, *, show_params: bool = False) -> str:
    """Graphviz DOT text. Fused kernels (graph.kernels) are drawn as clusters; outputs and
    writes are marked; inputs are boxes labelled with their role."""
    ids = {}
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica, '
             "fontsize=10];", "  edge [color=gray40];"]

    def ident(v: Value) -> str:
        return ids.setdefault(v, f"v{len(ids)}")

    kernel_of = {m: k for k in graph.kernels for m in k.members}
    body: dict[object, list[str]] = {}
    for v in graph.inputs:
        label = f"%{v.name}\n{format_type(v)}" + (f"\n{v.role}" if v.role != "arg" else "")
        body.setdefault(kernel_of.get(v), []).append(
            f"{ident(v)} [label={_quote(label)}, shape=ellipse, fillcolor=lightblue];")
    for n in graph.nodes:
        label = f"{n.op}\n%{n.out.name}: {format_type(n.out)}"
        if show_params and n.params:
            label += "\n" + ", ".join(f"{k}={format_literal(p)}" for k, p in n.params.items())
        if n.loc:
            label += f"\n{n.loc.rsplit('/', 1)[-1]}"
        color = "lightyellow" if n.region == "backward" else "white"
        body.setdefault(kernel_of.get(n.out), []).append(
            f"{ident(n.out)} [label={_quote(label)}, fillcolor={color}];")
    for k, items in body.items():
        if k is None:
            lines += ["  " + s for s in items]
        else:
            lines.append(f"  subgraph {_quote('cluster_' + k.name)} {{")
            lines.append(f"    label={_quote(f'{k.name} [{k.info}]')}; style=dashed; color=blue;")
            lines += ["    " + s for s in items]
            lines.append("  }")
    for n in graph.nodes:
        for a in n.inputs:
            lines.append(f"  {ident(a)} -> {ident(n.out)};")
    for i, (v, label) in enumerate(zip(graph.outputs, graph.output_labels)):
        lines.append(f'  out{i} [label={_quote(label or f"output {i}")}, shape=plaintext];')
        lines.append(f"  {ident(v)} -> out{i} [style=bold];")
    for target, new in graph.writes:
        lines.append(f"  {ident(new)} -> {ident(target)} [style=dashed, color=red, "
                     f'label="writes", constraint=false];')
    lines.append("}")
    return "\n".join(lines) + "\n"
