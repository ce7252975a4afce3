"""Merging a kernel's outer loops where every access walks them as one.

The scheduler gives a kernel one outer loop per dimension of what it computes. When every
Load and Store steps through two adjacent loops as through one (the outer loop's stride
is the inner one's times the inner size, with no // or % on either), the pair is one loop
over the product: the same iterations in the same order, with a longer innermost loop to
vectorise. A contiguous (64, 16, 14, 14) pointwise kernel becomes one loop of 200,704
instead of loops of 14; a broadcast (a bias read along one axis) or a transpose keeps
the loops apart.

Kernels with a Matmul keep their loops (the product maps (m, n) onto the BLAS), as do
loops whose index a value reads (LoopIndex).
"""

from __future__ import annotations

from dataclasses import replace
from math import prod

from .kernel_ir import (
    Index, Kernel, Load, LoopIndex, LoopVar, Op, Phase, Store, Term, all_stores, walk_kernel,
)


def collapse_loops(k: Kernel) -> Kernel:
    """k with each run of mergeable adjacent outer loops made one loop (a new Kernel), or
    k itself when nothing merges."""
    if k.matmul is not None or len(k.outer) < 2:
        return k
    exprs = list(walk_kernel(k))
    indices = [e.index for e in exprs if isinstance(e, Load)] + [s.index for s in all_stores(k)]
    fixed = {e.var.name for e in exprs if isinstance(e, LoopIndex)}
    fixed |= {t.var.name for ix in indices for t in ix.terms
              if t.var is not None and (t.div != 1 or t.mod)}
    runs = [[v] for v in k.outer]
    for j in range(len(runs) - 2, -1, -1):  # innermost pair first
        a, b = runs[j], runs[j + 1]
        if any(v.name in fixed for v in a + b):
            continue
        if all(_one_walk(ix, a, b) for ix in indices):
            runs[j:j + 2] = [a + b]
    if len(runs) == len(k.outer):
        return k
    return _rewrite(k, runs)


def _stride(index: Index, run: list[LoopVar]) -> int:
    """How far index moves per step of the run's merged loop: the stride of its innermost
    loop that has more than one iteration (0 if none has)."""
    for v in reversed(run):
        if v.size > 1:
            return sum(t.stride for t in index.terms if t.var is not None and t.var.name == v.name)
    return 0


def _one_walk(index: Index, a: list[LoopVar], b: list[LoopVar]) -> bool:
    size_a, size_b = prod(v.size for v in a), prod(v.size for v in b)
    if size_a <= 1 or size_b <= 1:
        return True
    return _stride(index, a) == _stride(index, b) * size_b


def _rewrite(k: Kernel, runs: list[list[LoopVar]]) -> Kernel:
    """k over the merged loops: every index re-expressed in them."""
    merged = [(run, LoopVar(run[0].name, prod(v.size for v in run))) for run in runs]
    in_run = {v.name for run, _ in merged if len(run) > 1 for v in run}

    def index(ix: Index, expr) -> Index:
        terms = [replace(t, expr=expr(t.expr)) if t.expr is not None else t for t in ix.terms
                 if t.var is None or t.var.name not in in_run]
        for run, m in merged:
            if len(run) > 1:
                stride = _stride(ix, run)
                if stride:
                    terms.append(Term(stride, m))
        return Index(ix.offset, tuple(terms))

    expr, store = _rebuilder(index)
    phases = tuple(Phase(p.loops, tuple(replace(r, value=expr(r.value)) for r in p.reductions),
                         tuple(store(s) for s in p.stores)) for p in k.phases)
    return replace(k, outer=tuple(m for _, m in merged), phases=phases)


def _rebuilder(index, leaf=lambda e: e):
    """(expr, store): expressions and stores rebuilt with index(ix, expr) for every Index
    and leaf(e) for every other leaf, each expression once (memoised by identity), so
    shared subexpressions stay shared."""
    memo: dict[int, object] = {}

    def expr(e):
        hit = memo.get(id(e))
        if hit is None:
            if isinstance(e, Load):
                hit = replace(e, index=index(e.index, expr))
            elif isinstance(e, Op):
                hit = replace(e, args=tuple(expr(a) for a in e.args))
            else:
                hit = leaf(e)
            memo[id(e)] = hit
        return hit

    def store(s: Store) -> Store:
        return replace(s, index=index(s.index, expr), value=expr(s.value))

    return expr, store


def hoist_shared_loop(k: Kernel) -> Kernel:
    """A kernel without outer loops whose phases each start with a loop of one size that
    partitions what they write, made one outer loop around the phases.

    `cat` and padding copies are such kernels: each phase copies one piece, and its first
    loop walks the batch, writing batch b's rows only. Run phase by phase, each piece
    streams the whole batch and nothing splits the work across threads (im2col in
    examples/mnist_cnn.py: nine pieces). With the batch outside, one iteration writes all
    of batch b's pieces, and the pool splits the batch. The order changes only between
    iterations that touch disjoint memory: every store to a buffer steps the loop with the
    same stride S and keeps the rest of its index inside [0, S), and nothing the kernel
    writes is read by it."""
    if k.outer or k.matmul is not None or len(k.phases) < 2:
        return k
    if any(not p.loops or p.reductions for p in k.phases):
        return k
    n = k.phases[0].loops[0].size
    if n < 2 or any(p.loops[0].size != n for p in k.phases):
        return k
    written = set(k.writes())
    if any(isinstance(e, Load) and e.buffer in written for e in walk_kernel(k)):
        return k
    stride_of: dict[str, int] = {}  # buffer -> the stride of the hoisted loop in its stores
    for p in k.phases:
        first = p.loops[0].name
        for s in p.stores:
            stride = _partition_stride(s.index, first, p.loops[1:])
            if s.accumulate or stride is None or stride_of.setdefault(s.buffer, stride) != stride:
                return k
    outer = LoopVar("i0", n)
    phases = tuple(Phase(p.loops[1:], (), tuple(_renamed(s, p.loops[0].name, outer) for s in p.stores))
                   for p in k.phases)
    return replace(k, outer=(outer,), phases=phases)


def _partition_stride(index: Index, name: str, rest: tuple[LoopVar, ...]) -> int | None:
    """S when index = S * v + (something in [0, S)) for the loop variable `name`, else None."""
    mine = [t for t in index.terms if t.var is not None and t.var.name == name]
    if len(mine) != 1 or mine[0].div != 1 or mine[0].mod or mine[0].stride <= 0:
        return None
    sizes = {v.name: v.size for v in rest}
    lo = hi = index.offset
    for t in index.terms:
        if t is mine[0]:
            continue
        if t.expr is not None or t.var is None or t.var.name not in sizes:
            return None
        most = (sizes[t.var.name] - 1) // t.div  # the largest (v // div) % mod
        top = t.stride * (min(most, t.mod - 1) if t.mod else most)
        lo, hi = lo + min(top, 0), hi + max(top, 0)
    return mine[0].stride if 0 <= lo and hi < mine[0].stride else None


def _renamed(s: Store, name: str, to: LoopVar) -> Store:
    """s with the loop variable `name` replaced by `to`."""
    def index(ix: Index, expr) -> Index:
        return Index(ix.offset, tuple(replace(t, var=to) if t.var is not None and t.var.name == name
                                      else replace(t, expr=expr(t.expr)) if t.expr is not None else t
                                      for t in ix.terms))

    def leaf(e):
        return replace(e, var=to) if isinstance(e, LoopIndex) and e.var.name == name else e

    return _rebuilder(index, leaf)[1](s)


__all__ = ["collapse_loops", "hoist_shared_loop"]
