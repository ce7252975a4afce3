"""simplify: CSE, constant folding and algebraic identities, as one table of rewrite rules.

The graph is rebuilt in one sweep in topological order: each node's inputs are already
rewritten, identical nodes are merged (common subexpression elimination: a node is its op,
its inputs and its params), and the rules for its op get a chance to return a simpler
value. Sweeps repeat until nothing changes; dead nodes are dropped at the end. A rule is
(op, function(node, rw) -> Value | None); rw.emit(op, inputs, **params) builds new nodes.

Every rule preserves results bit for bit on finite and non-finite values alike (so x - x
and x * 0 are not folded: inf and NaN say otherwise).
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime import eager
from ..runtime.registry import PRIMITIVES
from .ir import Graph, Value, dead_code_elimination


def _freeze(x):
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, float) and math.isnan(x):
        return ("nan",)
    return x


class Rewriter:
    """Builds the new graph; rules see nodes whose inputs are already in it."""

    def __init__(self, old: Graph):
        self.old = old
        self.new = Graph(old.name)
        self.producer: dict[Value, object] = {}
        self.seen: dict[tuple, Value] = {}
        self.changed = False
        self.uses: dict[Value, int] = {}  # how many nodes of the old graph read each value
        self.loc = ""
        self.region = None

    def node_of(self, v: Value):
        return self.producer.get(v)

    def const_of(self, v: Value):
        """The scalar value of a `full` node (any shape), else None."""
        n = self.producer.get(v)
        if n is not None and n.op == "full":
            return n.params["value"]
        return None

    def emit(self, op: str, inputs, **params) -> Value:
        """The value of op(inputs, params) in the new graph: an existing identical node
        (CSE) or a new one."""
        key = (op, tuple(id(v) for v in inputs), _freeze(params))
        hit = self.seen.get(key)
        if hit is not None:
            return hit
        prim = PRIMITIVES[op]
        out_type = prim.meta(*[v.type for v in inputs], **params)
        v = self.new.add_node(op, list(inputs), params, out_type, self.loc, self.region)
        self.producer[v] = self.new.nodes[-1]
        self.seen[key] = v
        return v


def simplify(graph: Graph, max_sweeps: int = 8) -> Graph:
    for _ in range(max_sweeps):
        graph, changed = _sweep(graph)
        if not changed:
            break
    return dead_code_elimination(graph)


def _sweep(graph: Graph) -> tuple[Graph, bool]:
    rw = Rewriter(graph)
    m: dict[Value, Value] = {}
    old_uses: dict[Value, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            old_uses[v] = old_uses.get(v, 0) + 1
    for v in graph.roots():
        old_uses[v] = old_uses.get(v, 0) + 1
    for v in graph.inputs:
        m[v] = rw.new.add_input(v.type, v.name, v.role or "arg", v.device)
    for n in graph.nodes:
        rw.loc, rw.region = n.loc, n.region
        inputs = [m[v] for v in n.inputs]
        before = len(rw.new.nodes)
        out = None
        for rule in RULES.get(n.op, ()):
            out = rule(_View(n.op, inputs, n.params, n.out.type), rw)
            if out is not None:
                break
        if out is None:
            out = rw.emit(n.op, inputs, **n.params)
            if len(rw.new.nodes) == before:  # merged with an identical earlier node
                rw.changed = True
            else:
                rw.new.rename(out, n.out.name)
        else:
            rw.changed = True
        if out.type != n.out.type:
            raise AssertionError(f"simplify: a rule changed the type of {n.op} "
                                 f"({n.out.type} -> {out.type})")
        m[n.out] = out
        rw.uses[out] = rw.uses.get(out, 0) + old_uses.get(n.out, 0)
    rw.new.set_outputs([m[v] for v in graph.outputs], graph.output_labels)
    rw.new.writes = [(m[a], m[b]) for a, b in graph.writes]
    rw.new.notes = list(graph.notes)
    return rw.new, rw.changed


class _View:
    """A node being rewritten: its op, its (rewritten) inputs, params and result type."""

    __slots__ = ("op", "inputs", "params", "type")

    def __init__(self, op, inputs, params, type):
        self.op, self.inputs, self.params, self.type = op, inputs, params, type


# ---------------------------------------------------------------- rules
def _is(rw, v, value) -> bool:
    c = rw.const_of(v)
    return c is not None and not isinstance(c, bool) and c == value


def _same_type(n, v):
    return v if v.type == n.type else None


def fold_constants(n, rw):
    """An op whose inputs are all scalar constants becomes one constant."""
    if PRIMITIVES[n.op].kind != "pointwise" or not n.inputs:
        return None
    consts = [rw.const_of(v) for v in n.inputs]
    if any(c is None for c in consts):
        return None
    arrays = [np.asarray(c, dtype=v.type.dtype.np) for c, v in zip(consts, n.inputs)]
    value = eager.run(PRIMITIVES[n.op], arrays, n.params).item()
    return rw.emit("full", [], shape=tuple(n.type.shape), value=value, dtype=n.type.dtype)


def neutral_element(value, commutative: bool):
    """x + 0, x - 0, x * 1, x / 1 (and 0 + x, 1 * x when commutative) -> x, unless the
    constant's shape broadcasts x to a bigger shape."""

    def rule(n, rw):
        a, b = n.inputs
        if _is(rw, b, value):
            return _same_type(n, a)
        if commutative and _is(rw, a, value):
            return _same_type(n, b)
        return None

    rule.__name__ = f"neutral_{value}"
    return rule


def double_negation(n, rw):
    inner = rw.node_of(n.inputs[0])
    return inner.inputs[0] if inner is not None and inner.op == "neg" else None


def cast_noop(n, rw):
    x = n.inputs[0]
    if x.type.dtype is n.params["dtype"]:
        return x
    inner = rw.node_of(x)
    # widening then narrowing back (f32 -> f64 -> f32) is exact
    if inner is not None and inner.op == "cast" and inner.inputs[0].type.dtype is n.params["dtype"] \
            and x.type.dtype.itemsize >= n.params["dtype"].itemsize \
            and x.type.dtype.category >= n.params["dtype"].category:
        return inner.inputs[0]
    return None


def copy_noop(n, rw):
    return n.inputs[0]  # values are immutable in the graph: a copy is the same value


def where_constant_mask(n, rw):
    c = rw.const_of(n.inputs[0])
    if c is None:
        return None
    chosen = n.inputs[1] if c else n.inputs[2]
    if chosen.type == n.type:
        return chosen
    return rw.emit("expand", [chosen], shape=tuple(n.type.shape))


def chain_of(op: str):
    """op(x) to x's own shape is x; op(op(x)) is one op(x) (reshape and expand)."""

    def rule(n, rw):
        x = n.inputs[0]
        if tuple(x.type.shape) == tuple(n.type.shape):
            return x
        inner = rw.node_of(x)
        if inner is not None and inner.op == op:
            return rw.emit(op, [inner.inputs[0]], shape=tuple(n.type.shape))
        return None

    rule.__name__ = f"{op}_chain"
    return rule


def permute_chain(n, rw):
    dims = tuple(n.params["dims"])
    if dims == tuple(range(len(dims))):
        return n.inputs[0]
    inner = rw.node_of(n.inputs[0])
    if inner is not None and inner.op == "permute":
        composed = tuple(inner.params["dims"][d] for d in dims)
        if composed == tuple(range(len(composed))):
            return inner.inputs[0]
        return rw.emit("permute", [inner.inputs[0]], dims=composed)
    if inner is not None and inner.op == "matmul" and dims[-2:] == (len(dims) - 1, len(dims) - 2) \
            and dims[:-2] == tuple(range(len(dims) - 2)) and rw.uses.get(n.inputs[0]) == 1:
        # (A B)^T = B^T A^T: the transpose disappears into the operands' index arithmetic,
        # and the product becomes a direct producer of its consumer (epilogue fusion)
        a, b = inner.inputs
        return rw.emit("matmul", [_transpose_last(rw, b), _transpose_last(rw, a)])
    return None


def _transpose_last(rw, v):
    nd = len(v.type.shape)
    return rw.emit("permute", [v], dims=tuple(range(nd - 2)) + (nd - 1, nd - 2))


def matmul_by_constant(n, rw):
    """A matmul with a uniform operand (every element the same: a constant, or a broadcast
    scalar such as the gradient of a mean flowing into a linear layer's weight gradient)
    is a scaled sum: c @ B = c * (column sums of B), A @ c = c * (row sums of A). Summing
    costs K*N instead of M*N*K multiply-adds."""
    a, b = n.inputs
    out = tuple(n.type.shape)
    c = _uniform(rw, a)
    if c is not None:
        summed = rw.emit("sum", [b], axes=(len(b.type.shape) - 2,), keepdim=True)
    else:
        c = _uniform(rw, b)
        if c is None:
            return None
        summed = rw.emit("sum", [a], axes=(len(a.type.shape) - 1,), keepdim=True)
    if summed.type.dtype is not n.type.dtype:
        return None
    scaled = rw.emit("mul", [summed, c])
    return scaled if tuple(scaled.type.shape) == out else rw.emit("expand", [scaled], shape=out)


def _uniform(rw, v):
    """A 0-d value every element of v equals (v is a constant, or movement ops of one
    element), else None."""
    while True:
        c = rw.const_of(v)
        if c is not None:
            return rw.emit("full", [], shape=(), value=c, dtype=v.type.dtype)
        if math.prod(v.type.shape) == 1:
            return v if v.type.shape == () else rw.emit("reshape", [v], shape=())
        node = rw.node_of(v)
        if node is None or node.op not in ("expand", "reshape", "permute"):
            return None
        v = node.inputs[0]


def expand_of_constant(n, rw):
    c = rw.const_of(n.inputs[0])
    if c is not None:  # a broadcast constant is just a bigger constant
        return rw.emit("full", [], shape=tuple(n.type.shape), value=c, dtype=n.type.dtype)
    return None


def movement_of_constant(n, rw):
    c = rw.const_of(n.inputs[0])
    if c is None:
        return None
    return rw.emit("full", [], shape=tuple(n.type.shape), value=c, dtype=n.type.dtype)


RULES = {
    "add": [fold_constants, neutral_element(0, commutative=True)],
    "sub": [fold_constants, neutral_element(0, commutative=False)],
    "mul": [fold_constants, neutral_element(1, commutative=True)],
    "div": [fold_constants, neutral_element(1, commutative=False)],
    "neg": [fold_constants, double_negation],
    "cast": [fold_constants, cast_noop],
    "copy": [copy_noop],
    "where": [fold_constants, where_constant_mask],
    "reshape": [movement_of_constant, chain_of("reshape")],
    "permute": [movement_of_constant, permute_chain],
    "expand": [chain_of("expand"), expand_of_constant],
    "slice": [movement_of_constant],
    "matmul": [matmul_by_constant],
}
for _name, _prim in PRIMITIVES.items():  # every other pointwise op folds constants too
    if _prim.kind == "pointwise" and _name not in RULES:
        RULES[_name] = [fold_constants]
