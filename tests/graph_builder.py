"""A tiny tracer for scheduler tests: records primitives applied to symbolic tensors.

It implements the front end's tracer protocol (tracecc._tensor._tracer) with the fewest
lines possible, so fusion can be tested on graphs made by real tracecc code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from tracecc import _tensor
from tracecc.runtime.registry import TensorType


@dataclass(eq=False)
class Value:
    name: str
    type: TensorType

    @property
    def shape(self):
        return self.type.shape

    @property
    def ndim(self):
        return len(self.type.shape)


@dataclass(eq=False)
class Node:
    op: str
    inputs: list
    params: dict
    out: Value
    loc: str = ""

    @property
    def prim(self):
        from tracecc.runtime.registry import PRIMITIVES
        return PRIMITIVES[self.op]


@dataclass
class Graph:
    inputs: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def roots(self):
        return list(self.outputs)


def random_input(rng, shape, dtype, high=None):
    """Random data for a graph input: normal floats, integers in [0, high)."""
    if dtype.category == 1:
        return rng.integers(0, high or 5, shape)
    return rng.standard_normal(shape).astype(dtype.np)


class _Recorder:
    def __init__(self, graph):
        self.graph = graph

    def apply(self, prim, args, params):
        ins = [a._data for a in args]
        out_type = prim.meta(*[v.type for v in ins], **params)
        out = Value(f"t{len(self.graph.nodes)}", out_type)
        self.graph.nodes.append(Node(prim.name, ins, dict(params), out))
        return _tensor._make(out, out_type.dtype)

    def made(self, tensor):
        pass

    def needs_value(self, tensor, what):
        raise RuntimeError(f"data-dependent {what} in a test graph")

    def inplace(self, target, result):
        target._data = result._data


def trace(fn, *shapes_dtypes):
    """Trace fn on symbolic inputs; returns (graph, output tensors)."""
    graph = Graph()
    args = []
    for i, (shape, dtype) in enumerate(shapes_dtypes):
        v = Value(f"in{i}", TensorType(tuple(shape), dtype))
        graph.inputs.append(v)
        args.append(_tensor._make(v, dtype))
    prev = _tensor._tracer
    _tensor._tracer = _Recorder(graph)
    try:
        out = fn(*args)
    finally:
        _tensor._tracer = prev
    outs = out if isinstance(out, (tuple, list)) else (out,)
    graph.outputs = [o._data for o in outs]
    return graph
