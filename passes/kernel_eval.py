"""Reference evaluator of the kernel IR, vectorised with numpy.

Every loop variable becomes a broadcast arange, so one phase evaluates in a handful of
numpy calls. Pointwise ops run through the registry's eager kernels: the kernel IR has no
scalar semantics of its own. Backends are tested against this evaluator, and it against
the graph interpreter.
"""

from __future__ import annotations

import numpy as np

from ..runtime import eager
from ..runtime.registry import PRIMITIVES
from .kernel_ir import Acc, Const, Kernel, Load, LoopIndex, Op, Program, RowValue

_REDUCE = {"add": np.sum, "mul": np.prod, "maximum": np.max, "minimum": np.min}


class _Env:
    def __init__(self, loops, buffers, rows, acc=None):
        self.shape = tuple(v.size for v in loops)
        self.axis = {v.name: i for i, v in enumerate(loops)}
        self.buffers, self.rows, self.acc = buffers, rows, acc
        self.cache: dict[int, np.ndarray] = {}

    def var(self, v) -> np.ndarray:
        shape = [1] * len(self.shape)
        shape[self.axis[v.name]] = v.size
        return np.arange(v.size, dtype=np.int64).reshape(shape)

    def index(self, index) -> np.ndarray:
        total = np.asarray(index.offset, dtype=np.int64)
        for t in index.terms:
            if t.expr is not None:
                value = self.eval(t.expr).astype(np.int64)
            else:
                value = self.var(t.var) // t.div
                if t.mod:
                    value = value % t.mod
            total = total + value * t.stride
        return total

    def eval(self, e) -> np.ndarray:
        hit = self.cache.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            out = self.buffers[e.buffer][self.index(e.index)]
        elif isinstance(e, Const):
            out = np.asarray(e.value, dtype=e.dtype.np)
        elif isinstance(e, LoopIndex):
            out = self.var(e.var)
        elif isinstance(e, RowValue):
            row = self.rows[e.name]
            out = row.reshape(row.shape + (1,) * (len(self.shape) - row.ndim))
        elif isinstance(e, Acc):
            out = self.acc
        elif isinstance(e, Op):
            args = [self.eval(a) for a in e.args]
            out = eager.run(PRIMITIVES[e.op], args, e.param_dict)
        else:
            raise TypeError(f"kernel evaluator: unknown expression {e!r}")
        self.cache[id(e)] = out
        return out

    def full(self, value) -> np.ndarray:
        return np.broadcast_to(value, self.shape)


def _reduce(combine, value, n_outer):
    axes = tuple(range(n_outer, value.ndim))
    if combine in ("argmax", "argmin"):
        flat = value.reshape(value.shape[:n_outer] + (-1,))
        return (np.argmax if combine == "argmax" else np.argmin)(flat, axis=-1)
    return _REDUCE[combine](value, axis=axes)


def _store(env, store, buffers):
    value = env.full(env.eval(store.value)).ravel()
    index = env.full(env.index(store.index)).ravel()
    buf = buffers[store.buffer]
    if store.accumulate:
        np.add.at(buf, index, value.astype(buf.dtype, copy=False))
    else:
        buf[index] = value


def run_kernel(k: Kernel, buffers: dict[str, np.ndarray]) -> None:
    """Execute one kernel on flat numpy buffers (modified in place)."""
    rows: dict[str, np.ndarray] = {}
    n_outer = len(k.outer)
    for phase in k.phases:
        env = _Env(k.outer + phase.loops, buffers, rows)
        new_rows = {}
        for r in phase.reductions:
            value = env.full(env.eval(r.value))
            new_rows[r.name] = np.asarray(_reduce(r.combine, value, n_outer)).astype(r.dtype.np)
        for s in phase.stores:
            _store(env, s, buffers)
        rows.update(new_rows)
    if k.matmul is not None:
        mm = k.matmul
        env = _Env(k.outer + (mm.k,), buffers, rows)
        product = env.full(env.eval(mm.a)) * env.full(env.eval(mm.b))
        acc = product.sum(axis=-1).astype(mm.a.dtype.np)
        epilogue = _Env(k.outer, buffers, rows, acc=acc)
        for s in mm.stores:
            _store(epilogue, s, buffers)


def run_program(p: Program, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Allocate the program's buffers, run its kernels in order, return its outputs."""
    buffers = {}
    for name, b in p.buffers.items():
        if name in inputs:
            buffers[name] = np.ascontiguousarray(inputs[name], dtype=b.dtype.np).reshape(-1).copy()
        else:
            buffers[name] = np.zeros(b.numel, dtype=b.dtype.np)
    for k in p.kernels:
        run_kernel(k, buffers)
    return {name: buffers[name] for name in p.outputs}
