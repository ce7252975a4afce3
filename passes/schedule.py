"""Fusion and scheduling: a graph of primitives becomes a Program of fused kernels.

1. Realise: decide which values get a buffer. Graph inputs and outputs, reductions,
   matmuls, scatters, cat and slice_scatter always do; pointwise, movement and creation
   values are recomputed inside their consumers (inlined) unless several kernels read
   them and they cost more than a load, or a consumer reads them through a broadcast and
   they read several buffers.
2. Group: each realised value joins a kernel group, one loop nest. A reduction joins the
   group of earlier reductions over the same rows (same kept and reduced dimensions); a
   pointwise value joins the group of a reduction it reads along those rows (softmax,
   layer_norm, cross-entropy become one kernel); a pointwise value that reads a matmul's
   result at the same element becomes its epilogue. A join is legal only if it creates
   no cycle between groups (checked on the group graph), and every decision is logged.
3. Emit: each group becomes a kernel-IR Kernel (passes/kernel_emit.py), whose values
   inline producers and fold movement ops into index arithmetic (passes/indexing.py).

The graph is passes/ir.py's: inputs, nodes in topological order (.op, .inputs, .params,
.out, .loc) and roots() (outputs, then the new values of writes); values have .name and
.type (a TensorType).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..runtime.registry import PRIMITIVES
from .collapse import collapse_loops, hoist_shared_loop
from .kernel_emit import REALIZED_OPS, KernelEmitter, NeedsOwnKernel, NeedsRealize, _name, _shape
from .kernel_ir import Buffer, Kernel, Program, traffic_bytes

ALWAYS_REALIZED = {"reduction", "matmul"}
# recomputing these in every consumer costs about as much as loading them
CHEAP_OPS = {"full", "arange", "cast", "copy", "neg", "reshape", "permute", "expand", "slice",
             "add", "sub", "mul", "relu", "where", "eq", "ne", "lt", "le", "gt", "ge"}


# A value that reads this many buffers inline is stored rather than recomputed where it
# would be computed more than once: read by several consumers (a transformer's residual
# stream, a sum that grows by one term per layer, was recomputed in every later layer), or
# read through a broadcast (_realise_broadcast_source).
INLINE_LOADS = 4


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
            elif len(self.users.get(n.out, ())) > 1 and (loads := self._inline_loads(n.out)) >= INLINE_LOADS:
                realized.add(n.out)
                self.log.append(f"realise {_name(n.out)} ({n.op}): {len(self.users[n.out])} "
                                f"consumers, and computing it reads {loads} buffers")
            if n.op == "expand":
                self._realise_broadcast_source(n)
            if n.op == "matmul":
                for v in n.inputs:  # operands must be plain loads: no O(MNK) recompute
                    base = self._view_base(v)
                    if base in self.producer and base not in realized \
                            and PRIMITIVES[self.producer[base].op].kind in ("pointwise", "creation"):
                        realized.add(base)  # the base, so a transposed use shares its buffer
        return realized

    def _inline_loads(self, v) -> int:
        """How many buffers computing v inline reads (with what is realised so far)."""
        loads, stack, seen = 0, [v], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            if x not in self.producer or (x in self.realized and x is not v):
                loads += 1
                continue
            stack.extend(self.producer[x].inputs)
        return loads

    def _realise_broadcast_source(self, n):
        """An expand makes its consumer read each element of its source several times; a
        source that reads INLINE_LOADS or more buffers inline gets a buffer instead of
        being recomputed at every read (a 2x2 max-pool's backward read a 9-term sum 4 times
        per element)."""
        base = self._view_base(n.inputs[0])
        if base not in self.producer or base in self.realized \
                or PRIMITIVES[self.producer[base].op].kind != "pointwise":
            return
        if _numel(n.out) < 2 * _numel(base):
            return
        loads = self._inline_loads(base)
        if loads >= INLINE_LOADS:
            self.realized.add(base)
            self.log.append(f"realise {_name(base)}: broadcast {_numel(n.out) // _numel(base)}x by "
                            f"{_name(n.out)}, and it reads {loads} buffers")

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
        if self.readers is None:  # built once grouping is done: who reads each buffer
            self.readers = {}
            for x, h in self.group_of.items():
                for r in self._reads(x):
                    self.readers.setdefault(r, set()).add(h.gid)
        return any(gid != g.gid for gid in self.readers.get(v, ()))

    def is_buffer(self, v) -> bool:
        return v not in self.producer or v in self.realized

    # ------------------------------------------------------------ 2. group
    def _reads(self, v) -> set:
        """Realised values (buffers) that computing v inline reads directly. Memoised: the
        realised set changes only between group() runs, which clear the memo."""
        hit = self.reads_memo.get(v)
        if hit is not None:
            return hit
        out = self.reads_memo[v] = self._walk_reads(v)
        return out

    def _walk_reads(self, v) -> set:
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
        return g_from is g_to or bool(self.upstream[g_from.gid] >> g_to.gid & 1)

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
        gained = 0
        for r in self._reads(v):
            h = self.group_of.get(r)
            if h is not None and h is not g and h.gid not in deps:
                deps.add(h.gid)
                gained |= 1 << h.gid | self.upstream[h.gid]
        gained &= ~self.upstream[g.gid]
        if gained:  # g and every group that reads from g now also reach these groups
            for gid, up in enumerate(self.upstream):
                if gid == g.gid or up >> g.gid & 1:
                    self.upstream[gid] = up | gained

    def _new_group(self, kind) -> Group:
        g = Group(len(self.groups), kind)
        self.groups.append(g)
        self.upstream.append(0)
        return g

    def _gname(self, g: Group) -> str:
        return f"group{g.gid}({', '.join(_name(m) for m in g.members)})"

    @staticmethod
    def _rows_key(node):
        x = node.inputs[0]
        axes = node.params["axes"] if "axes" in node.params else (node.params["axis"],)
        return (_shape(x), tuple(axes))

    def group(self):
        self.reads_memo: dict = {}
        self.groups: list[Group] = []
        self.group_of: dict = {}
        self.group_deps: dict = {}
        # per group, a bitset of the groups it reads from, directly or not: the cycle check
        # of every join is one lookup (a DFS per join took seconds on a 6-layer transformer)
        self.upstream: list[int] = []
        self.readers = None
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

    def _related(self, v, g: Group) -> bool:
        """Does v read what g reads or computes? Reductions over the same rows share a
        kernel only then (one pass over their common input); unrelated ones (each layer's
        bias gradient) keep kernels of their own, which repeat layer after layer and are
        compiled once (codegen/llvm/lower.py)."""
        reads = self._reads(v)
        return any(m in reads or reads & self._reads(m) for m in g.members)

    def _place_reduction(self, n):
        key = self._rows_key(n)
        if self.fuse and n.out not in self.no_row_fusion:
            for g in reversed(self.groups):
                if g.kind == "reduction" and g.key == key and self._related(n.out, g) \
                        and self._legal_join(n.out, g):
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
        # Emitting finds what grouping could not see: a member that reads its kernel's
        # reduction across rows, a view that index arithmetic cannot express. Each such
        # finding regroups; all of one pass's findings are applied at once (one at a time,
        # a 6-layer transformer regrouped 33 times: 6.7 s of scheduling).
        while True:
            self.group()
            kernels, refused, unloadable = [], [], []
            for g in self._ordered_groups():
                try:
                    kernels.append(self._emit(g))
                except NeedsOwnKernel as e:
                    refused.append(e.value)
                except NeedsRealize as e:
                    unloadable.append(e.value)
            if not refused and not unloadable:
                break
            for v in dict.fromkeys(refused):
                self.log.append(f"refuse {_name(v)} in a row kernel: it reads a reduction "
                                f"of that kernel across rows")
                self.no_row_fusion.add(v)
            for v in dict.fromkeys(unloadable):
                if v in self.must_load:
                    raise AssertionError(f"fusion: {_name(v)} realised but still not loadable")
                self.log.append(f"realise {_name(v)}: a reshape of it is not expressible "
                                f"as index arithmetic")
                self.realized.add(v)
                self.must_load.add(v)
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
        return collapse_loops(hoist_shared_loop(KernelEmitter(self, g).emit()))


def schedule(graph, fuse: bool = True, name: str = "program") -> tuple[Program, list[str]]:
    """Graph -> (Program of fused kernels, fusion decisions for TRACECC_LOGS=fusion)."""
    s = Scheduler(graph, fuse)
    prog = s.program(name)
    if hasattr(graph, "notes"):  # (tests schedule bare node lists too)
        graph.notes = [n for n in graph.notes if not n.startswith("fusion:")] + [
            _summary(graph, prog)]
    return prog, s.log


def _summary(graph, prog: Program) -> str:
    """The fused dump's headline: kernel count and memory traffic, against one kernel per
    op (each op reading its operands and writing its result; views cost nothing)."""
    def nbytes(v):
        return _numel(v) * v.type.dtype.itemsize

    unfused = sum(nbytes(n.out) + sum(nbytes(v) for v in n.inputs)
                  for n in graph.nodes if n.prim.kind not in ("movement", "creation"))
    return (f"fusion: {len(graph.nodes)} nodes -> {len(prog.kernels)} kernels; memory traffic "
            f"{_mb(traffic_bytes(prog))} (one kernel per op: {_mb(unfused)})")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


__all__ = ["schedule", "Scheduler"]
