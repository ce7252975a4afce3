"""Emitting one kernel: a kernel group of the scheduler (passes/schedule.py) becomes a
kernel-IR Kernel.

`value_at(v, comps)` gives v's value at an index as a scalar expression: it inlines
producers (pointwise ops become Op nodes, movement ops become index arithmetic through
passes/indexing.py, gathers become data-dependent indices) and stops at buffers, at the
row values of this kernel's reductions and at a matmul's accumulator. Row kernels get
one pass per reduction and a final pass for the full-row members (_emit_rows); a value
computed by two passes is stored once (_stash).
"""

from __future__ import annotations

from ..runtime import dtypes
from ..runtime.registry import PRIMITIVES
from .indexing import Comp, expand_back, linearize, permute_back, reshape_back, slice_back
from .kernel_ir import (
    Acc, Const, Kernel, Load, LoopIndex, LoopVar, Matmul, Op, Phase, Reduction, RowValue, Store, Term,
    children,
)

REALIZED_OPS = {"scatter_add", "index_add", "cat", "slice_scatter"}
SHORT = {"reduction": "red", "pointwise": "poi", "matmul": "mm", "scatter": "sca", "copy": "cpy"}


class NeedsOwnKernel(Exception):
    """A member reads a reduction of its own group other than along the row: it must not
    join that group (the reduction is only stored at the end of the kernel)."""

    def __init__(self, value):
        self.value = value


class NeedsRealize(Exception):
    """value_at met a view it cannot express as index arithmetic: realise `value` first."""

    def __init__(self, value):
        self.value = value


def _shape(v):
    return tuple(v.type.shape)


def _name(v) -> str:
    return "v_" + str(v.name).lstrip("%").replace(".", "_")


class KernelEmitter:
    """Builds one Kernel from a group, inlining producers through value_at."""

    def __init__(self, s, g):  # the Scheduler, and the Group to emit
        self.s, self.g = s, g
        self.counter = 0
        self.row_vars: tuple = ()
        self.rows: dict = {}  # reduction value -> RowValue name, once its phase is emitted
        self.acc_of = None
        self.current = None  # the member being computed (to refuse it if it cannot stay)
        self.absorbed: list = []
        self.cache: dict = {}

    def var(self, prefix, size) -> LoopVar:
        self.counter += 1
        return LoopVar(f"{prefix}{self.counter - 1}", size)

    # ------------------------------------------------------------ values
    def value_at(self, v, comps) -> object:
        key = (v, tuple(comps))
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out = self._value_at(v, comps)
        self.cache[key] = out
        return out

    def _is_row_read(self, v, comps) -> bool:
        """comps read reduction v at the current row (broadcast along reduced dims)."""
        full, axes = self.g.key
        keep = [i for i in range(len(full)) if i not in axes]
        shape = _shape(v)
        if len(shape) == len(full):  # keepdim
            expect = [Comp.of(self.row_vars[keep.index(i)]) if i in keep else Comp()
                      for i in range(len(full))]
        else:
            expect = [Comp.of(x) for x in self.row_vars]
        return [c for c, d in zip(comps, shape) if d != 1] == [e for e, d in zip(expect, shape) if d != 1]

    def _value_at(self, v, comps):
        s = self.s
        if v in self.rows:
            if not self._is_row_read(v, comps):
                raise NeedsOwnKernel(self.current)
            return self.rows[v]
        if v in self.g.reductions and v not in self.rows and self.g.kind == "reduction":
            raise NeedsOwnKernel(self.current)  # read before (or while) it is computed
        if self.acc_of is not None and v is self.acc_of and comps == self.identity:
            return Acc(v.type.dtype)
        # a member of this kernel read by another member is recomputed, never loaded: its
        # store may come later in the kernel (reductions are handled by rows above)
        inline_member = (v in s.realized and s.group_of.get(v) is self.g and v in s.producer
                         and v not in s.must_load and v not in self.g.reductions
                         and PRIMITIVES[s.producer[v].op].kind in ("pointwise", "movement", "creation", "index")
                         and s.producer[v].op not in REALIZED_OPS)
        if s.is_buffer(v) and not inline_member:
            return Load(_name(v), linearize(comps, _shape(v)).to_index(), v.type.dtype)
        return self.compute(v, comps)

    def compute(self, v, comps):
        """v's value at comps from its producer's inputs (never a load of v itself)."""
        s = self.s
        node = s.producer[v]
        self.absorbed.append(node)
        op, kind = node.op, PRIMITIVES[node.op].kind
        p = node.params
        if kind == "pointwise":
            args = tuple(self.value_at(i, expand_back(comps, _shape(i), _shape(v))) for i in node.inputs)
            params = tuple(sorted(p.items()))
            return Op(op, args, v.type.dtype, params)
        if op == "reshape":
            x = node.inputs[0]
            own_reduction = x in self.g.reductions
            if s.is_buffer(x) and not own_reduction and (x in s.must_load or s.group_of.get(x) is not self.g):
                # a contiguous buffer: the flat offset is the same before and after
                return Load(_name(x), linearize(comps, _shape(v)).to_index(), x.type.dtype)
            back = reshape_back(comps, _shape(x), _shape(v))
            if back is None:
                raise NeedsOwnKernel(self.current) if own_reduction else NeedsRealize(x)
            return self.value_at(x, back)
        if op == "permute":
            return self.value_at(node.inputs[0], permute_back(comps, p["dims"]))
        if op == "expand":
            return self.value_at(node.inputs[0], expand_back(comps, _shape(node.inputs[0]), _shape(v)))
        if op == "slice":
            return self.value_at(node.inputs[0], slice_back(comps, p["starts"], p["steps"]))
        if op == "full":
            return Const(p["value"], p["dtype"])
        if op == "arange":
            i = _comp_expr(comps[0])
            val = Op("cast", (i,), p["dtype"], (("dtype", p["dtype"]),))
            if p["step"] != 1:
                val = Op("mul", (val, Const(p["step"], p["dtype"])), p["dtype"])
            if p["start"] != 0:
                val = Op("add", (val, Const(p["start"], p["dtype"])), p["dtype"])
            return val
        if op in ("gather", "index_select"):
            x, index = node.inputs
            axis = p["axis"]
            idx_comps = comps if op == "gather" else [comps[axis]]
            idx = self.value_at(index, idx_comps)
            new = list(comps)
            new[axis] = Comp(0, (Term(1, expr=idx),))
            return self.value_at(x, new)
        raise NotImplementedError(f"fusion: cannot inline {op}")

    # ------------------------------------------------------------ kernels
    def emit(self) -> Kernel:
        g = self.g
        if g.kind == "reduction":
            k = self._emit_rows()
        elif g.kind == "matmul":
            k = self._emit_matmul()
        elif g.kind == "scatter":
            k = self._emit_scatter()
        elif g.kind == "copy":
            k = self._emit_copy()
        else:
            k = self._emit_pointwise()
        nodes = {id(n): n for n in self.absorbed + [self.s.producer[m] for m in g.members
                                                     if m in self.s.producer]}
        nodes = sorted(nodes.values(), key=lambda n: self.s.position[id(n)])
        ops = []
        for n in nodes:
            if n.op not in ops and PRIMITIVES[n.op].kind not in ("movement", "creation"):
                ops.append(n.op)
        k.name = f"{SHORT.get(g.kind, g.kind)}_fused_{'_'.join(ops[:5]) or 'copy'}_{g.gid}"
        k.members = [f"{n.op} {n.out.name}" + (f" ({n.loc})" if getattr(n, "loc", None) else "")
                     for n in nodes]
        k.sources = [n.out for n in nodes]
        return k

    def _store(self, v, comps, value) -> Store:
        return Store(_name(v), linearize(comps, _shape(v)).to_index(), value)

    def _loops(self, shape, prefix="i"):
        return tuple(self.var(prefix, d) for d in shape)

    def _emit_pointwise(self) -> Kernel:
        v = self.g.members[0]
        loops = self._loops(_shape(v))
        comps = [Comp.of(x) for x in loops]
        stores = tuple(self._store(m, comps, self.compute(m, comps)) for m in self.g.members)
        return Kernel("", "pointwise", loops, (Phase(stores=stores),), reason="pointwise chain"
                      if len(self.absorbed) > 1 else "")

    def _emit_copy(self) -> Kernel:
        v = self.g.members[0]
        node = self.s.producer.get(v)
        if node is None:  # graph input returned as output
            loops = self._loops(_shape(v))
            comps = [Comp.of(x) for x in loops]
            store = Store(_name(v) + "_out", linearize(comps, _shape(v)).to_index(),
                          Load(_name(v), linearize(comps, _shape(v)).to_index(), v.type.dtype))
            return Kernel("", "pointwise", loops, (Phase(stores=(store,)),))
        self.absorbed.append(node)
        phases = []
        if node.op == "cat":
            offset, axis = 0, node.params["axis"]
            for x in node.inputs:
                loops = self._loops(_shape(x), "r")
                comps = [Comp.of(i) for i in loops]
                out_comps = [c.shift(offset) if a == axis else c for a, c in enumerate(comps)]
                phases.append(Phase(loops, stores=(self._store(v, out_comps, self.value_at(x, comps)),)))
                offset += _shape(x)[axis]
        else:  # slice_scatter: copy base, then write src into its region
            base, src = node.inputs
            loops = self._loops(_shape(v), "r")
            comps = [Comp.of(i) for i in loops]
            phases.append(Phase(loops, stores=(self._store(v, comps, self.value_at(base, comps)),)))
            loops = self._loops(_shape(src), "r")
            comps = [Comp.of(i) for i in loops]
            region = slice_back(comps, node.params["starts"], node.params["steps"])
            phases.append(Phase(loops, stores=(self._store(v, region, self.value_at(src, comps)),)))
        return Kernel("", "pointwise", (), tuple(phases))

    def _emit_scatter(self) -> Kernel:
        v = self.g.members[0]
        node = self.s.producer[v]
        self.absorbed.append(node)
        x, index, src = node.inputs
        axis = node.params["axis"]
        loops = self._loops(_shape(v), "r")
        comps = [Comp.of(i) for i in loops]
        copy = Phase(loops, stores=(self._store(v, comps, self.value_at(x, comps)),))
        loops = self._loops(_shape(src), "r")
        comps = [Comp.of(i) for i in loops]
        idx = self.value_at(index, comps if node.op == "scatter_add" else [comps[axis]])
        target = list(comps)
        target[axis] = Comp(0, (Term(1, expr=idx),))
        add = Phase(loops, stores=(Store(_name(v), linearize(target, _shape(v)).to_index(),
                                         self.value_at(src, comps), accumulate=True),))
        return Kernel("", "scatter", (), (copy, add), reason="copy then scatter-add")

    def _emit_rows(self) -> Kernel:
        g, s = self.g, self.s
        full, axes = g.key
        keep = [i for i in range(len(full)) if i not in axes]
        self.row_vars = self._loops([full[i] for i in keep])
        phases = []
        row_members = []
        full_members = []
        # every pass over the row uses the same loop variables (the passes run one after
        # another), so a value computed in two passes is the same expression (_stash)
        inner = self._loops([full[a] for a in axes], "r")
        for m in g.members:
            self.current = m
            if m in g.reductions:
                node = s.producer[m]
                self.absorbed.append(node)
                comps = self._full_comps(inner)
                value = self.value_at(node.inputs[0], comps)
                combine = PRIMITIVES[node.op].reduce.combine
                rname = f"r{len(self.rows)}"
                reduction = Reduction(rname, combine, value, m.type.dtype)
                last = phases[-1] if phases else None
                if last is not None and not _uses_rows(value, {r.name for r in last.reductions}):
                    # independent of the pass before (batch norm's backward sums): one pass
                    # over the row computes both
                    phases[-1] = Phase(inner, reductions=last.reductions + (reduction,))
                else:
                    phases.append(Phase(inner, reductions=(reduction,)))
                self.rows[m] = RowValue(rname, m.type.dtype)
            elif _shape(m) == full and len(axes):
                full_members.append(m)
            else:
                row_members.append(m)
        stores = []
        for m in g.members:
            if (m in g.reductions or m in row_members) and s.needs_buffer(m, g):
                self.current = m
                comps = self._row_comps(m)
                stores.append(self._store(m, comps, self.rows[m] if m in self.rows else self.compute(m, comps)))
        if stores:
            phases.append(Phase((), stores=tuple(stores)))
        if full_members:
            comps = self._full_comps(inner)
            full_stores = []
            for m in full_members:
                if s.needs_buffer(m, g):  # read only inside this kernel: recomputed, not stored
                    self.current = m
                    full_stores.append(self._store(m, comps, self.compute(m, comps)))
            if full_stores:
                phases.append(Phase(inner, stores=tuple(full_stores)))
                phases = _stash(phases)
        reason = "reductions over the same rows and their consumers" if len(g.members) > 1 else ""
        return Kernel("", "reduction", self.row_vars, tuple(phases), reason=reason)

    def _full_comps(self, inner):
        full, axes = self.g.key
        comps, ri, ki = [], iter(inner), iter(self.row_vars)
        for i in range(len(full)):
            comps.append(Comp.of(next(ri) if i in axes else next(ki)))
        return comps

    def _row_comps(self, m):
        full, axes = self.g.key
        shape = _shape(m)
        if len(shape) == len(full):
            it = iter(self.row_vars)
            return [Comp() if i in axes else Comp.of(next(it)) for i in range(len(full))]
        return [Comp.of(x) for x in self.row_vars]

    def _emit_matmul(self) -> Kernel:
        g, s = self.g, self.s
        m = g.matmul
        node = s.producer[m]
        self.absorbed.append(node)
        a, b = node.inputs
        out_shape = _shape(m)
        loops = self._loops(out_shape)
        kvar = self.var("k", _shape(a)[-1])
        comps = [Comp.of(x) for x in loops]
        batch = comps[:-2]
        a_comps = expand_back(batch + [comps[-2], Comp.of(kvar)], _shape(a), out_shape[:-2] + (out_shape[-2], kvar.size))
        b_comps = expand_back(batch + [Comp.of(kvar), comps[-1]], _shape(b), out_shape[:-2] + (kvar.size, out_shape[-1]))
        la, lb = self.value_at(a, a_comps), self.value_at(b, b_comps)
        self.acc_of, self.identity = m, comps
        stores = []
        if g.epilogue is None or s.needs_buffer(m, g):
            stores.append(self._store(m, comps, Acc(m.type.dtype)))
        if g.epilogue is not None:
            stores.append(self._store(g.epilogue, comps, self.compute(g.epilogue, comps)))
        reason = "matmul with a fused epilogue" if g.epilogue is not None else ""
        return Kernel("", "matmul", loops, matmul=Matmul(la, lb, kvar, tuple(stores), _name(m)),
                      reason=reason)


# Transcendental functions: the ops worth computing once and keeping (here), and the bulk
# of a kernel's per-element cost (codegen/llvm/lower.py's work estimate).
HEAVY_OPS = frozenset({"exp", "log", "tanh", "sigmoid", "erf", "log1p", "expm1", "pow", "sin", "cos"})


def _uses_rows(e, names: set) -> bool:
    return any(isinstance(x, RowValue) and x.name in names for x in _subexpressions(e, set()))


def _subexpressions(e, out: set) -> set:
    if e not in out:
        out.add(e)
        for c in children(e):
            _subexpressions(c, out)
    return out


def _is_heavy(e) -> bool:
    return isinstance(e, Op) and e.op in HEAVY_OPS


def _first_heavy(e, candidates: set):
    """The outermost transcendental subexpression of e that is also in candidates."""
    if _is_heavy(e) and e in candidates:
        return e
    for c in children(e):
        hit = _first_heavy(c, candidates)
        if hit is not None:
            return hit
    return None


def _substitute(e, old, new):
    if e == old:
        return new
    if isinstance(e, Op):
        return Op(e.op, tuple(_substitute(a, old, new) for a in e.args), e.dtype, e.params)
    return e


def _stash(phases: list) -> list:
    """Compute a transcendental once per element, not once per pass over the row: when the
    final pass of a row kernel recomputes exp(x - max) that an earlier reduction pass
    already computed (softmax, log_softmax, cross-entropy), the earlier pass also stores
    it into the output and the final pass reads it back (from cache: the row was just
    written) instead of calling exp again."""
    final = phases[-1]
    reductions = [i for i, p in enumerate(phases[:-1]) if p.reductions and p.loops == final.loops]
    seen = {i: set().union(*(_subexpressions(r.value, set()) for r in phases[i].reductions))
            for i in reductions}
    new_stores = list(final.stores)
    extra: dict[int, list] = {}
    stashed: dict[tuple, str] = {}  # (value, index) -> the buffer an earlier pass stores it in
    # a store of the transcendental itself first (the exp a backward pass keeps): the others
    # (softmax's output, exp / sum) then read that buffer instead of storing exp again
    for k in sorted(range(len(final.stores)), key=lambda k: not _is_heavy(final.stores[k].value)):
        st = final.stores[k]
        if st.accumulate:
            continue
        for i in reversed(reductions):
            hit = _first_heavy(st.value, seen[i])
            if hit is not None and hit.dtype == _dtype_of_store(st):
                where = stashed.get((hit, st.index))
                if where is None:
                    extra.setdefault(i, []).append(Store(st.buffer, st.index, hit))
                    where = stashed[hit, st.index] = st.buffer
                value = _substitute(st.value, hit, Load(where, st.index, hit.dtype))
                # storing exactly what the earlier pass stored would be a dead self-copy
                new_stores[k] = None if value == Load(st.buffer, st.index, hit.dtype) else \
                    Store(st.buffer, st.index, value)
                break
    if not extra:
        return phases
    phases = [Phase(p.loops, p.reductions, p.stores + tuple(extra.get(i, ()))) for i, p in enumerate(phases)]
    kept = tuple(st for st in new_stores if st is not None)
    if kept or final.reductions:
        phases[-1] = Phase(final.loops, final.reductions, kept)
    else:
        phases.pop()
    return phases


def _dtype_of_store(st):
    return getattr(st.value, "dtype", None)


def _comp_expr(c: Comp):
    """A Comp as an int64 expression (for arange and comparisons)."""
    i64 = dtypes.int64
    total = Const(c.const, i64)
    for t in c.terms:
        if t.expr is not None:
            x = t.expr
        else:
            x = LoopIndex(t.var)
            if t.div != 1:
                x = Op("floor_divide", (x, Const(t.div, i64)), i64)
            if t.mod:
                x = Op("remainder", (x, Const(t.mod, i64)), i64)
        if t.stride != 1:
            x = Op("mul", (x, Const(t.stride, i64)), i64)
        total = x if (total.__class__ is Const and total.value == 0) else Op("add", (total, x), i64)
    return total
