"""The reference interpreter: evaluates a graph with the registry's eager kernels.

Every backend is tested against it. `interpret` is the whole idea (as autodidax's
eval_jaxpr); `compile_graph` is the same loop with the lookups done once, which is what the
"interpreter" backend runs on each call.
"""

from __future__ import annotations

import numpy as np

from ..runtime.eager import run
from .ir import Graph, Value


def interpret(graph: Graph, inputs, *, env: dict | None = None) -> list[np.ndarray]:
    """Run graph on numpy arrays (one per input). Returns the outputs, then the new values
    of the writes, in order. Pass `env={}` to get every value's array back in it."""
    env = {} if env is None else env
    env.update(zip(graph.inputs, inputs))
    for node in graph.nodes:
        env[node.out] = run(node.prim, [env[v] for v in node.inputs], node.params)
    return [env[v] for v in graph.roots()]


def compile_graph(graph: Graph):
    """A runner: list of input arrays -> outputs then write values (as `interpret`).

    Values are numbered slots; each is freed after its last use, so peak memory is the live
    set, not the whole trace."""
    slot: dict[Value, int] = {v: i for i, v in enumerate(graph.inputs)}
    for n in graph.nodes:
        slot[n.out] = len(slot)
    roots = [slot[v] for v in graph.roots()]
    last_use: dict[int, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            last_use[slot[v]] = i
    keep = set(roots) | set(range(len(graph.inputs)))
    program = []
    for i, n in enumerate(graph.nodes):
        frees = tuple(s for s in {slot[v] for v in n.inputs} if last_use[s] == i and s not in keep)
        program.append((n.prim, tuple(slot[v] for v in n.inputs), n.params, slot[n.out], frees))
    n_slots = len(slot)
    n_inputs = len(graph.inputs)

    def runner(arrays):
        if len(arrays) != n_inputs:
            raise ValueError(f"graph {graph.name} takes {n_inputs} inputs, got {len(arrays)}")
        env = list(arrays) + [None] * (n_slots - n_inputs)
        for prim, ins, params, out, frees in program:
            env[out] = run(prim, [env[i] for i in ins], params)
            for s in frees:
                env[s] = None
        return [env[i] for i in roots]

    return runner


def random_inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    """Inputs of the graph's types for repros and `tracecc run`: floats ~ N(0, 1) (uniform
    [0, 1) for `random` inputs such as dropout draws), integers in {0, 1} so they are valid
    indices, booleans at random."""
    rng = np.random.default_rng(seed)
    arrays = []
    for v in graph.inputs:
        shape, dtype = v.type.shape, v.type.dtype
        if dtype.is_floating_point:
            a = rng.random(shape) if v.role == "random" else rng.standard_normal(shape)
        elif dtype.name == "bool":
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(0, 2, size=shape)
        arrays.append(np.asarray(a).astype(dtype.np))
    return arrays
