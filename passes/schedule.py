"""Fusion and scheduling: a graph of primitives becomes a Program of fused kernels.

1. Realise: decide which values get a buffer. Graph inputs and outputs, reductions,
   matmuls, scatters, cat and slice_scatter always do; pointwise, movement and creation
   values are recomputed inside their consumers (inlined) unless several kernels read
   them and they cost more than a load.
2. Group: each realised value joins a kernel group, one loop nest. A reduction joins the
   group of earlier reductions over the same rows (same kept and reduced dimensions); a
   pointwise value joins the group of a reduction it reads along those rows (softmax,
   layer_norm, cross-entropy become one kernel); a pointwise value that reads a matmul's
   result at the same element becomes its epilogue. A join is legal only if it creates
   no cycle between groups (checked on the group graph), and every decision is logged.
3. Emit: each group becomes a kernel-IR Kernel. Values are built by `value_at`, which
   inlines producers and folds movement ops into index arithmetic (passes/indexing.py).

The graph protocol is minimal: graph.inputs / graph.outputs are values, graph.nodes are
nodes in topological order with .op, .inputs, .params, .out (and optionally .loc);
values have .name and .type (a TensorType).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..runtime import dtypes
from ..runtime.registry import PRIMITIVES
from .indexing import (
    Comp, contiguous_strides, expand_back, linearize, permute_back, reshape_back, slice_back,
)
from .kernel_ir import (
    children,
    Acc, Buffer, Const, Kernel, Load, LoopIndex, LoopVar, Matmul, Op, Phase, Program, Reduction,
    RowValue, Store, Term,
)

ALWAYS_REALIZED = {"reduction", "matmul"}
REALIZED_OPS = {"scatter_add", "index_add", "cat", "slice_scatter"}
# recomputing these in every consumer costs about as much as loading them
CHEAP_OPS = {"full", "arange", "cast", "copy", "neg", "reshape", "permute", "expand", "slice",
             "add", "sub", "mul", "relu", "where", "eq", "ne", "lt", "le", "gt", "ge"}
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


def _numel(v):
    return math.prod(_shape(v))


@dataclass
class Group:
    gid: int
    kind: str  # "pointwise" | "reduction" | "matmul" | "scatter"
    members: list = field(default_factory=list)  # realised values, in topological order
    key: tuple | None = None  # rows signature for reduction groups
    reductions: list = field(default_factory=list)
    matmul: object = None
    epilogue: object = None


class Scheduler:
    def __init__(self, graph, fuse: bool = True):
        self.graph, self.fuse = graph, fuse
        self.producer = {n.out: n for n in graph.nodes}
        self.position = {id(n): i for i, n in enumerate(graph.nodes)}
        self.users: dict = {}
        for n in graph.nodes:
            for v in n.inputs:
                self.users.setdefault(v, []).append(n)
        self.inputs = list(graph.inputs)
        # what must be computed: outputs, then the new values of functionalised writes
        self.roots = list(graph.roots() if hasattr(graph, "roots") else graph.outputs)
        self.outputs = list(dict.fromkeys(self.roots))
        self.log: list[str] = []
        self.realized = self._initial_realized()
        self.must_load: set = set()  # realised values consumers must load, never recompute
        self.no_row_fusion: set = set()  # members that must get a kernel of their own

    # ------------------------------------------------------------ 1. realise
    def _initial_realized(self) -> set:
        realized = self.realized = set(self.outputs)
        for n in self.graph.nodes:
            kind = PRIMITIVES[n.op].kind
            if kind in ALWAYS_REALIZED or n.op in REALIZED_OPS:
                realized.add(n.out)
            elif not self.fuse:
                realized.add(n.out)
            elif len(self.users.get(n.out, ())) > 1 and n.op not in CHEAP_OPS:
                realized.add(n.out)
                self.log.append(f"realise {_name(n.out)} ({n.op}): {len(self.users[n.out])} "
                                f"consumers, recomputing it would repeat {n.op}")
            if n.op == "matmul":
                for v in n.inputs:  # operands must be plain loads: no O(MNK) recompute
                    base = self._view_base(v)
                    if base in self.producer and base not in realized \
                            and PRIMITIVES[self.producer[base].op].kind in ("pointwise", "creation"):
                        realized.add(base)  # the base, so a transposed use shares its buffer
        return realized

    def _view_base(self, v):
        """The value a chain of movement ops starts from."""
        while v in self.producer and PRIMITIVES[self.producer[v].op].kind == "movement" \
                and self.producer[v].op not in REALIZED_OPS:
            v = self.producer[v].inputs[0]
        return v

    def needs_buffer(self, v, g: "Group") -> bool:
        """Must v be stored? Yes if it is an output or a kernel outside g reads it."""
        if v in self.outputs:
            return True
        return any(v in self._reads(x) for x, h in self.group_of.items() if h is not g)

    def is_buffer(self, v) -> bool:
        return v not in self.producer or v in self.realized

    # ------------------------------------------------------------ 2. group
    def _reads(self, v) -> set:
        """Realised values (buffers) that computing v inline reads directly."""
        out, stack, seen = set(), [v], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            node = self.producer.get(x)
            if node is None:
                continue
            for i in node.inputs:
                if self.is_buffer(i):
                    out.add(i)
                else:
                    stack.append(i)
        return out

    def _order(self, v) -> int:
        """Position of v in the graph (inputs first): sorts sets of values deterministically."""
        node = self.producer.get(v)
        return -1 if node is None else self.position[id(node)]

    def _depends(self, g_from: Group, g_to: Group) -> bool:
        """Does group g_from (transitively) read something group g_to produces?"""
        stack, seen = [g_from.gid], set()
        while stack:
            gid = stack.pop()
            if gid == g_to.gid:
                return True
            if gid in seen:
                continue
            seen.add(gid)
            stack.extend(self.group_deps.get(gid, ()))
        return False

    def _legal_join(self, v, g: Group) -> bool:
        for r in sorted(self._reads(v), key=self._order):
            h = self.group_of.get(r)
            if h is not None and h is not g and self._depends(h, g):
                self.log.append(f"refuse {_name(v)} -> {self._gname(g)}: would create a cycle "
                                f"through {self._gname(h)}")
                return False
        return True

    def _add(self, v, g: Group):
        g.members.append(v)
        self.group_of[v] = g
        deps = self.group_deps.setdefault(g.gid, set())
        for r in self._reads(v):
            h = self.group_of.get(r)
            if h is not None and h is not g:
                deps.add(h.gid)

    def _new_group(self, kind) -> Group:
        g = Group(len(self.groups), kind)
        self.groups.append(g)
        return g

    def _gname(self, g: Group) -> str:
        return f"group{g.gid}({', '.join(_name(m) for m in g.members)})"

    @staticmethod
    def _rows_key(node):
        x = node.inputs[0]
        axes = node.params["axes"] if "axes" in node.params else (node.params["axis"],)
        return (_shape(x), tuple(axes))

    def group(self):
        self.groups: list[Group] = []
        self.group_of: dict = {}
        self.group_deps: dict = {}
        for n in self.graph.nodes:
            v = n.out
            if v not in self.realized:
                continue
            kind = PRIMITIVES[n.op].kind
            if kind == "reduction":
                self._place_reduction(n)
            elif n.op == "matmul":
                g = self._new_group("matmul")
                g.matmul = v
                self._add(v, g)
            elif n.op in REALIZED_OPS:
                self._add(v, self._new_group("scatter" if n.op in ("scatter_add", "index_add") else "copy"))
            else:
                self._place_pointwise(n)
        for v in self.outputs:  # an output that is a graph input: a copy kernel
            if v not in self.producer and v not in self.group_of:
                self._add(v, self._new_group("copy"))

    def _place_reduction(self, n):
        key = self._rows_key(n)
        if self.fuse and n.out not in self.no_row_fusion:
            for g in reversed(self.groups):
                if g.kind == "reduction" and g.key == key and self._legal_join(n.out, g):
                    self.log.append(f"fuse {_name(n.out)} ({n.op}) into {self._gname(g)}: same rows "
                                    f"(shape {list(key[0])}, axes {list(key[1])})")
                    g.reductions.append(n.out)
                    self._add(n.out, g)
                    return
        g = self._new_group("reduction")
        g.key = key
        g.reductions.append(n.out)
        self._add(n.out, g)

    def _place_pointwise(self, n):
        v = n.out
        if self.fuse:
            reads = sorted(self._reads(v), key=self._order)  # deterministic decisions
            for r in reads:
                g = self.group_of.get(r)
                if g is None:
                    continue
                if g.kind == "reduction" and v not in self.no_row_fusion and self._row_compatible(v, g) \
                        and self._legal_join(v, g):
                    self.log.append(f"fuse {_name(v)} ({n.op}) into {self._gname(g)}: reads the "
                                    f"reductions along the same rows")
                    self._add(v, g)
                    return
                if g.kind == "matmul" and g.epilogue is None and _shape(v) == _shape(g.matmul) \
                        and self._legal_join(v, g):
                    self.log.append(f"fuse {_name(v)} ({n.op}) into {self._gname(g)} as its epilogue")
                    g.epilogue = v
                    self._add(v, g)
                    return
        self._add(v, self._new_group("pointwise"))

    def _row_compatible(self, v, g: Group) -> bool:
        """v can be computed inside g's loop nest: its shape is the rows' full shape or the
        reduced (keepdim or not) shape."""
        full, axes = g.key
        shape = _shape(v)
        kept = tuple(d for i, d in enumerate(full) if i not in axes)
        keepdim = tuple(1 if i in axes else d for i, d in enumerate(full))
        return shape in (full, kept, keepdim) and len(shape) > 0 or (shape == () and kept == ())

    # ------------------------------------------------------------ 3. emit
    def program(self, name: str = "program") -> Program:
        while True:
            try:
                self.group()
                kernels = [self._emit(g) for g in self._ordered_groups()]
                break
            except NeedsOwnKernel as e:
                self.log.append(f"refuse {_name(e.value)} in a row kernel: it reads a reduction "
                                f"of that kernel across rows")
                self.no_row_fusion.add(e.value)
            except NeedsRealize as e:
                if e.value in self.must_load:
                    raise AssertionError(f"fusion: {_name(e.value)} realised but still not loadable")
                self.log.append(f"realise {_name(e.value)}: a reshape of it is not expressible "
                                f"as index arithmetic")
                self.realized.add(e.value)
                self.must_load.add(e.value)
        buffers = {}
        for v in self.inputs:
            buffers[_name(v)] = Buffer(_name(v), _numel(v), v.type.dtype, "input")
        ordered = [n.out for n in self.graph.nodes] + [v for v in self.outputs if v not in self.producer]
        for v in dict.fromkeys(ordered):
            if v in self.realized:
                role = "output" if v in self.outputs else "temp"
                bname = _name(v) if v in self.producer else _name(v) + "_out"
                buffers[bname] = Buffer(bname, _numel(v), v.type.dtype, role)
        # one entry per root, in order (a value can be both an output and a write)
        outputs = [_name(v) if v in self.producer else _name(v) + "_out" for v in self.roots]
        return Program(name, buffers, kernels, [_name(v) for v in self.inputs], outputs)

    def _ordered_groups(self):
        order, done = [], set()

        def visit(g):
            if g.gid in done:
                return
            done.add(g.gid)
            for d in sorted(self.group_deps.get(g.gid, ())):
                visit(self.groups[d])
            order.append(g)

        for g in self.groups:
            visit(g)
        return order

    def _emit(self, g: Group) -> Kernel:
        return KernelEmitter(self, g).emit()


def _name(v) -> str:
    return "v_" + str(v.name).lstrip("%").replace(".", "_")


class KernelEmitter:
    """Builds one Kernel from a group, inlining producers through value_at."""

    def __init__(self, s: Scheduler, g: Group):
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
                rname = f"r{len(phases)}"
                phases.append(Phase(inner, reductions=(Reduction(rname, combine, value, m.type.dtype),)))
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


HEAVY_OPS = {"exp", "log", "tanh", "sigmoid", "erf", "log1p", "expm1", "pow", "sin", "cos"}


def _subexpressions(e, out: set) -> set:
    if e not in out:
        out.add(e)
        for c in children(e):
            _subexpressions(c, out)
    return out


def _first_heavy(e, candidates: set):
    """The outermost transcendental subexpression of e that is also in candidates."""
    if isinstance(e, Op) and e.op in HEAVY_OPS and e in candidates:
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
    for k, st in enumerate(final.stores):
        if st.accumulate:
            continue
        for i in reversed(reductions):
            hit = _first_heavy(st.value, seen[i])
            if hit is not None and hit.dtype == _dtype_of_store(st):
                extra.setdefault(i, []).append(Store(st.buffer, st.index, hit))
                value = _substitute(st.value, hit, Load(st.buffer, st.index, hit.dtype))
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


def schedule(graph, fuse: bool = True, name: str = "program") -> tuple[Program, list[str]]:
    """Graph -> (Program of fused kernels, fusion decisions for TRACECC_LOGS=fusion)."""
    s = Scheduler(graph, fuse)
    prog = s.program(name)
    return prog, s.log


__all__ = ["schedule", "Scheduler", "contiguous_strides"]
