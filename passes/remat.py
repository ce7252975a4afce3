"""Rematerialisation: choose what the forward saves for the backward by a minimum cut, as
AOTAutograd's min-cut partitioner does, in its simplest form.

The flow graph has two nodes per value the backward needs (directly or through cheap
recomputation): `v_in -> v_out` with capacity = the value's bytes, and an infinite edge
`a_out -> v_in` for each input `a` of v's node. The source feeds (infinitely) the forward
inputs and every value the forward computes with an op too expensive or not allowed to
recompute (matmul, reductions, index ops); the sink drains (infinitely) every value the
backward reads: the forward-side inputs of nodes that depend on the output gradients, and
gradients that are forward values. A minimum cut is then a cheapest set of values to save:
a cut edge `v_in -> v_out` means "save v"; nodes whose `v_in` lies on the sink side are
recomputed by the backward from the saved values.

Saving everything the backward reads (what split_joint does without remat) is one such cut,
so the chosen set never has more bytes than that. Random numbers are graph inputs (drawn
before the forward runs), so they are saved, never redrawn.
"""

from __future__ import annotations

import os

from .ir import Graph, Node, Value

# op kinds cheap enough to recompute in the backward: pointwise math, views and copies,
# constants. Matmuls, reductions and index ops are saved (or cut below them).
RECOMPUTABLE_KINDS = ("pointwise", "movement", "creation")


def remat_enabled(option: bool | None = None) -> bool:
    """The compile option `remat` when given, else TRACECC_REMAT=1."""
    if option is not None:
        return bool(option)
    return os.environ.get("TRACECC_REMAT", "") not in ("", "0")


def recomputable(node: Node) -> bool:
    return node.prim.kind in RECOMPUTABLE_KINDS


def nbytes(v: Value) -> int:
    n = 1
    for d in v.shape:
        n *= d
    return n * v.dtype.itemsize


def tangent_values(joint: Graph) -> set[Value]:
    """Values that depend on an output gradient (grad_out input): only the backward has them."""
    dep = {v for v in joint.inputs if v.role == "grad_out"}
    for n in joint.nodes:
        if any(a in dep for a in n.inputs):
            dep.add(n.out)
    return dep


def min_cut_saved(joint: Graph, n_outputs: int, fwd_live: set[Value],
                  grads: list[Value]) -> list[Value]:
    """The values to save, by a minimum cut. fwd_live: what the forward computes anyway
    (recomputing one of those in the backward is what the cut trades against its bytes)."""
    import networkx as nx  # here: importing it costs ~0.25 s, and remat is off by default

    producers = joint.producers()
    tangent = tangent_values(joint)
    # what the backward reads from the forward side, found from the gradients down
    needs = [v for v in joint.upstream(grads, lambda v, n: n.inputs if v in tangent else ())
             if v not in tangent]

    # Capacities are bytes, scaled so that ties (only) are broken: saving a forward input
    # or output costs nothing extra (the caller holds it anyway), so it wins a tie; saving a
    # value the forward would not compute (a backward-only node) loses one.
    held = {v for v in joint.inputs if v.role != "random"} | set(joint.outputs[:n_outputs])
    scale = 2 * len(joint.nodes) + 2 * len(joint.inputs) + 2

    def capacity(v: Value) -> int:
        return nbytes(v) * scale - (v in held) + (v not in fwd_live and v not in held)

    SOURCE, SINK = "source", "sink"
    g = nx.DiGraph()
    g.add_node(SOURCE)
    g.add_node(SINK)
    order = joint.upstream(needs)
    for v in order:
        g.add_edge((v, "in"), (v, "out"), capacity=capacity(v))
        node = producers.get(v)
        if node is None or (v in fwd_live and not recomputable(node)):
            g.add_edge(SOURCE, (v, "in"))  # no capacity attribute: infinite
        for a in node.inputs if node is not None else ():
            g.add_edge((a, "out"), (v, "in"))
    for v in needs:
        g.add_edge((v, "out"), SINK)
    # any max-flow algorithm gives the same partition (networkx takes the sink side as what
    # can still reach the sink); Boykov-Kolmogorov is the fastest here (~20 ms for W5's block)
    _, (source_side, _) = nx.minimum_cut(g, SOURCE, SINK,
                                         flow_func=nx.algorithms.flow.boykov_kolmogorov)
    cut = {v for v in order if (v, "in") in source_side and (v, "out") not in source_side}
    return [v for v in joint.values() if v in cut]  # in graph order, for stable output
