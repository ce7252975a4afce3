"""The loop-level kernel IR: what the fusion pass produces and both code generators lower.

A kernel is a loop nest over flat buffers:

    Kernel  = outer parallel loops + a sequence of phases (or a Matmul)
    Phase   = inner sequential loops, reductions over them, and stores
    Expr    = a scalar expression DAG: Load, Const, LoopIndex, RowValue, Op
    Index   = offset + sum(stride * term), term = a loop variable (optionally // div % mod)
              or an integer Expr (data-dependent: gathers and scatters)

Movement ops (reshape, permute, expand, slice) never appear here: they are folded into the
Index of each Load/Store. A phase's reductions produce one value per outer iteration that
later phases read as RowValue(name): softmax is one kernel with three phases (max, sum of
exp, normalise and store) over the same row.

Op names are the registry's pointwise primitives, so the scalar semantics of every op have
one definition (runtime/ops/pointwise.py), and the evaluator below simply calls their eager
kernels on index arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..runtime.dtypes import DType, int64


# ---------------------------------------------------------------- indices
@dataclass(frozen=True)
class LoopVar:
    """A loop variable: `name` ranges over 0..size-1."""

    name: str
    size: int

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Term:
    """stride * ((var // div) % mod); mod=0 means no modulo. Or stride * expr (gathers)."""

    stride: int
    var: LoopVar | None = None
    div: int = 1
    mod: int = 0
    expr: "Expr | None" = None  # integer-valued, data-dependent

    def __str__(self) -> str:
        if self.expr is not None:
            base = f"({format_expr(self.expr)})"
        else:
            base = self.var.name
            if self.div != 1:
                base = f"({base}//{self.div})"
            if self.mod:
                base = f"({base}%{self.mod})"
        return base if self.stride == 1 else f"{self.stride}*{base}"


@dataclass(frozen=True)
class Index:
    offset: int = 0
    terms: tuple[Term, ...] = ()

    def __str__(self) -> str:
        parts = [str(t) for t in self.terms if t.stride != 0]
        if self.offset or not parts:
            parts.append(str(self.offset))
        return " + ".join(parts)

    @staticmethod
    def affine(pairs, offset: int = 0) -> "Index":
        """Index.affine([(var, stride), ...]): the common strided case."""
        return Index(offset, tuple(Term(stride, var) for var, stride in pairs if stride != 0))


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Load:
    buffer: str
    index: Index
    dtype: DType


@dataclass(frozen=True)
class Const:
    value: Union[int, float, bool]
    dtype: DType


@dataclass(frozen=True)
class LoopIndex:
    """The current value of a loop variable, as an int64 value (arange-style ops)."""

    var: LoopVar

    @property
    def dtype(self) -> DType:
        return int64


@dataclass(frozen=True)
class RowValue:
    """The result of a reduction of an earlier phase, for the current outer iteration."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Op:
    """A pointwise primitive from the registry applied to scalar arguments."""

    op: str
    args: tuple
    dtype: DType
    params: tuple = ()  # sorted (key, value) pairs, e.g. (("dtype", f32),) for cast

    @property
    def param_dict(self) -> dict:
        return dict(self.params)


@dataclass(frozen=True)
class Acc:
    """Inside a Matmul epilogue: the accumulated dot product for the current (b, m, n)."""

    dtype: DType


Expr = Union[Load, Const, LoopIndex, RowValue, Op, Acc]


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Reduction:
    name: str
    combine: str  # "add" | "mul" | "maximum" | "minimum" | "argmax" | "argmin"
    value: Expr
    dtype: DType


@dataclass(frozen=True)
class Store:
    buffer: str
    index: Index
    value: Expr
    accumulate: bool = False  # scatter-add: out[index] += value


@dataclass(frozen=True)
class Phase:
    loops: tuple[LoopVar, ...] = ()  # sequential, inside the kernel's outer loops
    reductions: tuple[Reduction, ...] = ()
    stores: tuple[Store, ...] = ()


@dataclass(frozen=True)
class Matmul:
    """out[b, m, n] = epilogue(sum_k A[b, m, k] * B[b, k, n]) for loop vars (b..., m, n) and k.

    a and b index over the kernel's outer vars and `k`; the epilogue stores read Acc.
    `out` names a contiguous buffer of the product's shape that a backend may use to hold
    the product before the epilogue (e.g. when it calls a BLAS).
    """

    a: Load
    b: Load
    k: LoopVar
    stores: tuple[Store, ...]
    out: str | None = None


@dataclass
class Kernel:
    name: str  # kind and content, e.g. poi_fused_add_relu_3
    kind: str  # "pointwise" | "reduction" | "matmul" | "scatter"
    outer: tuple[LoopVar, ...]
    phases: tuple[Phase, ...] = ()
    matmul: Matmul | None = None
    members: list[str] = field(default_factory=list)  # "add %3 (model.py:12)" lines for dumps
    reason: str = ""  # why these members were fused
    sources: list = field(default_factory=list, repr=False)  # graph values computed inside

    def reads(self) -> list[str]:
        return sorted({e.buffer for e in walk_kernel(self) if isinstance(e, Load)})

    def writes(self) -> list[str]:
        return sorted({s.buffer for s in all_stores(self)})


@dataclass(frozen=True)
class Buffer:
    name: str
    numel: int
    dtype: DType
    role: str  # "input" | "output" | "temp" | "constant"


@dataclass
class Program:
    """Scheduled kernels over named flat buffers: what a backend compiles."""

    name: str
    buffers: dict[str, Buffer]
    kernels: list[Kernel]
    inputs: list[str]
    outputs: list[str]


def traffic_bytes(program: Program) -> int:
    """Bytes the kernels move if each reads each of its buffers once and writes each once:
    the memory traffic fusion is there to cut."""
    size = {b.name: b.numel * b.dtype.itemsize for b in program.buffers.values()}
    return sum(size.get(b, 0) for k in program.kernels for b in set(k.reads()) | set(k.writes()))


# ---------------------------------------------------------------- traversal
def children(e) -> tuple:
    if isinstance(e, Op):
        return e.args
    if isinstance(e, Load):
        return tuple(t.expr for t in e.index.terms if t.expr is not None)
    return ()


def all_stores(k: Kernel) -> list[Store]:
    stores = [s for p in k.phases for s in p.stores]
    if k.matmul is not None:
        stores += list(k.matmul.stores)
    return stores


def walk_kernel(k: Kernel):
    """Every expression node reachable from the kernel, each once."""
    roots = []
    for p in k.phases:
        roots += [r.value for r in p.reductions]
    for s in all_stores(k):
        roots.append(s.value)
        roots += [t.expr for t in s.index.terms if t.expr is not None]
    if k.matmul is not None:
        roots += [k.matmul.a, k.matmul.b]
    seen, stack = set(), list(roots)
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(children(e))


# ---------------------------------------------------------------- printing
def format_expr(e) -> str:
    if isinstance(e, Load):
        return f"{e.buffer}[{e.index}]"
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, LoopIndex):
        return e.var.name
    if isinstance(e, RowValue):
        return f"${e.name}"
    if isinstance(e, Acc):
        return "acc"
    params = "".join(f", {k}={getattr(v, 'name', v)}" for k, v in e.params)
    return f"{e.op}({', '.join(format_expr(a) for a in e.args)}{params})"


def format_kernel(k: Kernel) -> str:
    loops = ", ".join(f"{v.name}<{v.size}" for v in k.outer)
    lines = [f"kernel {k.name} [{k.kind}] over ({loops}):"]
    if k.reason:
        lines.append(f"  # why: {k.reason}")
    for m in k.members:
        lines.append(f"  # member: {m}")
    for i, p in enumerate(k.phases):
        inner = ", ".join(f"{v.name}<{v.size}" for v in p.loops)
        lines.append(f"  phase {i}" + (f" over ({inner}):" if inner else ":"))
        for r in p.reductions:
            lines.append(f"    ${r.name} = {r.combine}-reduce {format_expr(r.value)}")
        for s in p.stores:
            op = "+=" if s.accumulate else "="
            lines.append(f"    {s.buffer}[{s.index}] {op} {format_expr(s.value)}")
    if k.matmul is not None:
        mm = k.matmul
        lines.append(f"  acc = sum over {mm.k.name}<{mm.k.size} of "
                     f"{format_expr(mm.a)} * {format_expr(mm.b)}")
        for s in mm.stores:
            lines.append(f"    {s.buffer}[{s.index}] = {format_expr(s.value)}")
    return "\n".join(lines)


def format_program(p: Program) -> str:
    lines = [f"program {p.name}({', '.join(p.inputs)}) -> ({', '.join(p.outputs)})"]
    for b in p.buffers.values():
        lines.append(f"  buffer {b.name}: {b.dtype.name}[{b.numel}] {b.role}")
    for k in p.kernels:
        lines.append(format_kernel(k))
    return "\n".join(lines)
