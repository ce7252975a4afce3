"""Split a joint forward+backward graph into a forward and a backward graph (AOTAutograd's
partition, in its simplest form).

Used when a compiled function's outputs require grad but the function does not call
backward itself: the front end traces the backward into the same graph (with `grad_out`
inputs for the output gradients), then splits it here. The forward graph returns its own
outputs followed by the saved values; the backward graph takes the saved values and the
output gradients and returns one gradient per requested input.

Which values are saved: by default every forward value the backward reads (nothing is
recomputed). With remat (TRACECC_REMAT=1 or compile option remat=True) a minimum cut
(passes/remat.py) picks fewer bytes to save, and the backward recomputes cheap pointwise
and movement ops from them (those nodes are marked `(recompute)` in the backward graph).
"""

from __future__ import annotations

from .ir import Graph, Value
from .remat import min_cut_saved, nbytes, remat_enabled


def _ancestors(graph: Graph, roots, stop=frozenset()) -> set[Value]:
    """roots and what they are computed from, not looking past values in stop."""
    return set(graph.upstream(roots, lambda v, n: () if v in stop else n.inputs))


def _default_saved(joint: Graph, fwd_live: set[Value], grads: list[Value]) -> list[Value]:
    """Every forward value (or input) that the backward reads: nothing is recomputed."""
    grad_outs = [v for v in joint.inputs if v.role == "grad_out"]
    bwd_live = _ancestors(joint, grads)
    bwd_nodes = [n for n in joint.nodes if n.out in bwd_live and n.out not in fwd_live]
    bwd_defined = {n.out for n in bwd_nodes} | set(grad_outs)
    saved: list[Value] = []
    for v in [a for n in bwd_nodes for a in n.inputs] + list(grads):
        if v not in bwd_defined and v not in saved:
            saved.append(v)
    return saved


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n} bytes"


def _describe(saved: list[Value]) -> str:
    total = sum(nbytes(v) for v in saved)
    inputs = sum(nbytes(v) for v in saved if v.role is not None)
    return f"{len(saved)} values, {_size(total)} ({_size(inputs)} of them forward inputs)"


def split_joint(joint: Graph, n_outputs: int, grads: list[Value],
                remat: bool | None = None) -> tuple[Graph, Graph, list[Value]]:
    """joint: inputs (with role grad_out for output gradients), nodes, outputs whose first
    n_outputs are the forward's, writes. grads: the gradient values to return. remat: choose
    the saved values by min-cut (None: TRACECC_REMAT decides).

    Returns (forward, backward, saved): forward computes joint.outputs[:n_outputs] + saved
    (and the writes); backward maps saved + grad_out inputs to grads."""
    grad_outs = [v for v in joint.inputs if v.role == "grad_out"]
    fwd_roots = list(joint.outputs[:n_outputs]) + [new for _, new in joint.writes]
    fwd_live = _ancestors(joint, fwd_roots)
    saved = _default_saved(joint, fwd_live, grads)
    note = f"partition: saved {_describe(saved)}"
    if remat_enabled(remat):
        without = saved
        saved = min_cut_saved(joint, n_outputs, fwd_live, grads)
        note = f"partition (remat): saved {_describe(saved)}; without remat {_describe(without)}"
    saved_set = set(saved)
    fwd_keep = _ancestors(joint, fwd_roots + saved)
    bwd_keep = _ancestors(joint, grads, stop=saved_set)
    bwd_nodes = [n for n in joint.nodes if n.out in bwd_keep and n.out not in saved_set]
    missing = [v.name for v in joint.inputs
               if v in bwd_keep and v.role != "grad_out" and v not in saved_set]
    assert not missing, f"split_joint: backward reads unsaved forward inputs {missing}"
    written = {target for target, _ in joint.writes}

    fwd = Graph(f"{joint.name}_forward")
    m: dict[Value, Value] = {}
    for v in joint.inputs:
        if v.role != "grad_out":
            m[v] = fwd.add_input(v.type, v.name, v.role, v.device)
    for n in joint.nodes:
        if n.out in fwd_keep:
            m[n.out] = fwd.add_node(n.op, [m[a] for a in n.inputs], n.params, n.out.type, n.loc,
                                    n.region, n.out.name, n.out.device)
    saved_out = []
    for v in saved:
        if v in written:  # the caller overwrites a written input after the forward runs
            v2 = fwd.add_node("copy", [m[v]], {}, v.type, "", "saved", f"{v.name}.saved", v.device)
            saved_out.append(v2)
        else:
            saved_out.append(m[v])
    fwd.set_outputs([m[v] for v in joint.outputs[:n_outputs]] + saved_out,
                    list(joint.output_labels[:n_outputs]) + [f"saved.{v.name}" for v in saved])
    fwd.writes = [(m[a], m[b]) for a, b in joint.writes]
    fwd.notes = list(joint.notes) + [note]

    bwd = Graph(f"{joint.name}_backward")
    b: dict[Value, Value] = {}
    for v in saved:
        b[v] = bwd.add_input(v.type, v.name, "saved", v.device)
    for v in grad_outs:
        b[v] = bwd.add_input(v.type, v.name, "grad_out", v.device)
    for n in bwd_nodes:
        region = "recompute" if n.out in fwd_keep else n.region  # the forward computes it too
        b[n.out] = bwd.add_node(n.op, [b[a] for a in n.inputs], n.params, n.out.type, n.loc,
                                region, n.out.name, n.out.device)
    bwd.set_outputs([b[v] for v in grads], [f"grad.{i}" for i in range(len(grads))])
    bwd.notes = list(joint.notes) + [note]
    return fwd, bwd, saved
