"""Lower kernel-IR kernels to Triton source text.

Each Kernel becomes one Python module (written to a real file by launch.py, because
Triton reads a kernel's source back through `inspect`), headed by a comment with the
kernel's member ops and IR, and holding one `@triton.jit` function per launch:

- pointwise (every phase is loop-free): one flat 1-D block of XBLOCK elements over the
  outer loops; loop variables come back from the flat index with // and %.
- rows (phases with inner loops and reductions: sum, softmax, layer_norm, argmax, ...): a
  2-D tile of XBLOCK rows x RBLOCK inner elements. When the longest inner loop fits in
  one block (`Options.max_rblock`) the kernel is *persistent*: every phase works on the
  same tile, so the loads softmax repeats in its three phases are emitted once. Otherwise
  each phase loops over the row in RBLOCK chunks, accumulating elementwise, and reduces
  the accumulator at the end.
- split (no outer loops and no reductions: cat, index_add, slice_scatter): one pointwise
  launch per phase, in order, since later phases overwrite or accumulate into what
  earlier ones wrote and programs of one launch are not ordered.
- matmul: a tiled `tl.dot` template (grouped program order for L2 reuse) with the
  epilogue stores applied to the accumulator tile (`Acc`) before anything is written.

Values are float32 in registers for float16/bfloat16 buffers (converted on load and
store); matmul operands stay in their storage type so the tensor cores see them. Sizes
and strides are literals (shapes are static), block sizes are constexpr parameters so
launch.py can tune them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ...passes.kernel_ir import (
    Acc, Const, Kernel, Load, LoopIndex, Op, Phase, RowValue, format_kernel,
)
from ...runtime import dtypes
from ...runtime.errors import InvalidArgumentError
from .scalar import (
    EMITTERS, SIGNATURE, Val, as_tensor, cast, constant, int_range, is_float, narrow, reduce_identity,
    register_type,
)

# "high" splits each float32 operand into two TF32 halves and sums three tensor-core
# products (Triton's tf32x3): about float32's accuracy, as PyTorch's "high" (bfloat16x3 or
# TF32) trades a little precision for tensor cores; "medium" is one TF32 product.
_PRECISIONS = {"highest": "ieee", "high": "tf32x3", "medium": "tf32"}
_float32_matmul_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """As torch.set_float32_matmul_precision: "highest" (default) computes float32 matmuls
    in full float32 on the CUDA cores; "high" uses three TF32 tensor-core products per
    multiply (tf32x3, close to float32); "medium" one (10-bit mantissa inputs, ~1e-3)."""
    global _float32_matmul_precision
    if precision not in _PRECISIONS:
        raise InvalidArgumentError(f"set_float32_matmul_precision: unknown precision {precision!r}",
                                   hint="use 'highest', 'high' or 'medium'")
    _float32_matmul_precision = precision


def get_float32_matmul_precision() -> str:
    return _float32_matmul_precision


@dataclass(frozen=True)
class Options:
    max_rblock: int = 4096  # the longest inner loop a row kernel keeps in one block
    matmul_precision: str | None = None  # None: the global setting
    index_bits: int | None = None  # None: 64 only where 32-bit offsets could overflow


@dataclass
class LaunchSpec:
    """One launch of one generated function: what launch.py needs to pick configs and grids."""

    fn: str
    kind: str  # "pointwise" | "rows" | "matmul"
    buffers: tuple[str, ...]  # the pointer parameters, in order
    numel: int = 1  # pointwise: elements; rows: rows; matmul: batch count
    rnumel: int = 0  # rows: the longest inner loop
    persistent: bool = True  # rows: the whole inner loop in one block
    mnk: tuple[int, int, int] = (0, 0, 0)
    dot: bool = True  # matmul through tl.dot (blocks of at least 16)
    writes: tuple[str, ...] = ()  # the buffers it stores into
    rerunnable: bool = True  # running it twice leaves the same result (may be autotuned)
    signature: dict = field(default_factory=dict)  # pointer parameter -> "*fp32", ...


@dataclass
class TritonKernel:
    name: str  # the kernel IR's name
    source: str
    launches: list[LaunchSpec]
    kind: str  # "pointwise" | "rows" | "split" | "matmul"


def _ident(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    return name if name[:1].isalpha() else "b" + name


# names the generated code defines itself; loop variables never take them
_RESERVED = {"xnumel", "rnumel", "xindex", "xmask", "rindex", "rmask", "mask", "roffset", "pid",
             "num_pid_m", "num_pid_n", "group", "first_m", "group_m", "pid_m", "pid_n", "bid", "rm",
             "rn", "mmask", "nmask", "acc", "koffset", "rka", "rkb", "triton", "tl", "libdevice"}


def _var_name(name: str) -> str:
    ident = _ident(name)
    if ident in _RESERVED or ident.startswith(("tmp", "row_", "acc_", "rmask", "mask", "_")):
        return "v_" + ident
    return ident


def pointer_param(buffer: str) -> str:
    return f"{_ident(buffer)}_ptr"


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _prod(vs) -> int:
    return math.prod(v.size for v in vs)


# ---------------------------------------------------------------- per-function writer
class _Ctx:
    """How loop variables, row values and Acc read in the current tile, and the mask code
    for each tile axis."""

    def __init__(self, vars, masks, rows=None, acc=None, full_mask=None):
        self.vars, self.masks, self.rows, self.acc = vars, masks, rows or {}, acc
        self.full_mask = full_mask  # name of a precomputed mask for all axes together

    def mask_for(self, axes) -> str | None:
        axes = sorted(a for a in axes if self.masks.get(a))
        if not axes:
            return None
        if self.full_mask and len(axes) == len(self.masks) and len(axes) > 1:
            return self.full_mask
        return " & ".join(self.masks[a] for a in axes)


class _FunctionWriter:
    def __init__(self, name: str, buffer_dtypes: dict, wide: bool, helpers: set):
        self.name, self.dtypes, self.wide, self.helpers = name, buffer_dtypes, wide, helpers
        self.lines: list[str] = []
        self.depth = 1
        self.scopes: list[dict] = [{}]  # generated code -> the variable holding it
        self.memo: list[dict] = [{}]  # id(expr) -> Val, per scope
        self.tmp = 0
        self.buffers: list[str] = []
        # Store-to-load forwarding within one program: (address, mask) -> the value stored
        # there, and the line of the last store to each (address, mask) that nothing has
        # read yet (a later store there makes it dead). A softmax's persistent row kernel
        # stores exp(x - max) into its output and reads it back to divide: with these it
        # divides the registers and stores once. Both are per loop scope.
        self.stored: list[dict] = [{}]
        self.unread: list[dict] = [{}]

    # ------------------------------------------------------------ output
    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def push(self) -> None:
        self.scopes.append({})
        self.memo.append({})
        self.stored.append({})
        self.unread.append({})
        self.depth += 1

    def pop(self) -> None:
        self.scopes.pop()
        self.memo.pop()
        self.stored.pop()
        self.unread.pop()
        self.depth -= 1
        self._forget(None)  # what the loop stored is at addresses the enclosing code cannot name

    def _forget(self, buffer: str | None, keep=None, levels=None) -> None:
        """Drop forwarding entries (of one buffer, or all) except `keep`'s, from `levels`
        (default: every level of both tables)."""
        for level in (*self.stored, *self.unread) if levels is None else levels:
            for key in [k for k in level if (buffer is None or k[0] == buffer) and k != keep]:
                del level[key]

    def bind(self, code: str, dtype, axes, prefix: str = "tmp") -> Val:
        """Assign code to a fresh variable once per scope (CSE on the generated text)."""
        for scope in reversed(self.scopes):
            if code in scope:
                return Val(scope[code], dtype, frozenset(axes))
        name = f"{prefix}{self.tmp}"
        self.tmp += 1
        self.line(f"{name} = {code}")
        self.scopes[-1][code] = name
        return Val(name, dtype, frozenset(axes))

    def ptr(self, buffer: str) -> str:
        if buffer not in self.buffers:
            self.buffers.append(buffer)
        return pointer_param(buffer)

    # ------------------------------------------------------------ expressions
    def index(self, index, ctx: _Ctx) -> Val:
        parts, axes = [], set()
        for t in index.terms:
            if t.stride == 0:
                continue
            if t.expr is not None:
                v = self.eval(t.expr, ctx)
                code = v.code if v.dtype is dtypes.int64 or v.literal else cast(v, dtypes.int64)
            else:
                v = ctx.vars[t.var.name]
                code = v.code
                if t.div != 1:
                    code = f"({code} // {t.div})"
                if t.mod:
                    code = f"({code} % {t.mod})"
            axes |= v.axes
            parts.append(code if t.stride == 1 else f"{t.stride}*{code}")
        if index.offset or not parts:
            parts.append(str(index.offset))
        return Val(" + ".join(parts), dtypes.int64, frozenset(axes), literal=not axes and not any(
            t.expr is not None for t in index.terms))

    def address(self, buffer: str, idx: Val) -> str:
        p = self.ptr(buffer)
        if idx.code == "0":
            return p
        return f"{p} + ({idx.code})" if " " in idx.code else f"{p} + {idx.code}"

    def load(self, e: Load, ctx: _Ctx, widen: bool = True) -> Val:
        idx = self.index(e.index, ctx)
        mask = ctx.mask_for(idx.axes)
        addr = self.address(e.buffer, idx)
        for level in reversed(self.stored):
            hit = level.get((e.buffer, addr, mask))
            if hit is not None and widen:
                return hit
        self._forget(e.buffer, levels=self.unread)  # this buffer is read: its pending stores are live
        code = f"tl.load({addr}, {mask}, other=0)" if mask else f"tl.load({addr})"
        if widen and e.dtype in dtypes.STORAGE_ONLY:
            code += ".to(tl.float32)"
        return self.bind(code, e.dtype, idx.axes)

    def eval(self, e, ctx: _Ctx) -> Val:
        for memo in reversed(self.memo):
            hit = memo.get(id(e))
            if hit is not None:
                return hit
        v = self._eval(e, ctx)
        self.memo[-1][id(e)] = v
        return v

    def _eval(self, e, ctx: _Ctx) -> Val:
        if isinstance(e, Load):
            return self.load(e, ctx)
        if isinstance(e, Const):
            return constant(e.value, e.dtype)
        if isinstance(e, LoopIndex):
            v = ctx.vars[e.var.name]
            if v.literal:
                return constant(int(v.code), dtypes.int64)
            return Val(v.code if self.wide else f"{v.code}.to(tl.int64)", dtypes.int64, v.axes)
        if isinstance(e, RowValue):
            return ctx.rows[e.name]
        if isinstance(e, Acc):
            return ctx.acc
        if isinstance(e, Op):
            emit = EMITTERS.get(e.op)
            if emit is None:
                raise NotImplementedError(f"Triton backend: no lowering for pointwise op {e.op!r}")
            args = [self.eval(a, ctx) for a in e.args]
            if all(a.literal for a in args):
                args[0] = as_tensor(args[0])
            axes = frozenset().union(*(a.axes for a in args))
            return self.bind(emit(args, e.dtype, e.param_dict), e.dtype, axes)
        raise TypeError(f"Triton backend: unknown expression {e!r}")

    # ------------------------------------------------------------ statements
    def store(self, s, ctx: _Ctx, zero: dict) -> None:
        value = self.eval(s.value, ctx)
        dtype = self.dtypes[s.buffer]
        idx = self.index(s.index, ctx)
        axes = idx.axes | value.axes
        code = idx.code
        for a in sorted(value.axes - idx.axes):  # one address per lane, like the value
            code = f"{code} + 0*{zero[a]}"
        idx = Val(code, dtypes.int64, axes)
        mask = ctx.mask_for(axes)
        v = as_tensor(value)
        vcode = cast(v, dtype) if v.dtype is not dtype else v.code
        if dtype in dtypes.STORAGE_ONLY:
            vcode = narrow(vcode, dtype)
        addr = self.address(s.buffer, idx)
        key = (s.buffer, addr, mask)
        if s.accumulate:
            self._forget(s.buffer)
            m = f", mask={mask}" if mask else ""
            self.line(f"tl.atomic_add({addr}, {vcode}{m}, sem=\"relaxed\")")
            return
        self._forget(s.buffer, keep=key)  # another address of this buffer may alias them
        stale = f"tl.load({pointer_param(s.buffer)}"
        for scope in self.scopes:  # loads bound before this store must not be reused after it
            for code in [c for c in scope if c.startswith(stale)]:
                del scope[code]
        dead = self.unread[-1].get(key)
        if dead is not None:
            self.lines[dead] = None
        self.unread[-1][key] = len(self.lines)
        self.line(f"tl.store({addr}, {vcode}, {mask})" if mask else f"tl.store({addr}, {vcode})")
        if vcode == v.code and not v.literal:  # stored unconverted: a load there gives it back
            self.stored[-1][key] = Val(v.code, v.dtype, v.axes)

    def render(self, constexprs: list[str]) -> str:
        args = [pointer_param(b) for b in self.buffers] + [f"{c}: tl.constexpr" for c in constexprs]
        head = ["@triton.jit", f"def {self.name}({', '.join(args)}):"]
        self.source = "\n".join(head + [line for line in self.lines if line is not None]) + "\n"
        return self.source


# ---------------------------------------------------------------- kernels
_COMBINE_HELPERS = {
    "maximum": '''@triton.jit
def _maximum_combine(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)
''',
    "minimum": '''@triton.jit
def _minimum_combine(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)
''',
    "mul": '''@triton.jit
def _mul_combine(a, b):
    return a * b
''',
    "argmax": '''@triton.jit
def _argmax_combine(value0, index0, value1, index1):
    # numpy's argmax: NaN wins, then the larger value, then the smaller index
    nan0 = value0 != value0
    nan1 = value1 != value1
    pick0 = (value0 > value1) | (nan0 & ~nan1) | (((value0 == value1) | (nan0 & nan1)) & (index0 < index1))
    return tl.where(pick0, value0, value1), tl.where(pick0, index0, index1)
''',
    "argmin": '''@triton.jit
def _argmin_combine(value0, index0, value1, index1):
    # numpy's argmin: NaN wins, then the smaller value, then the smaller index
    nan0 = value0 != value0
    nan1 = value1 != value1
    pick0 = (value0 < value1) | (nan0 & ~nan1) | (((value0 == value1) | (nan0 & nan1)) & (index0 < index1))
    return tl.where(pick0, value0, value1), tl.where(pick0, index0, index1)
''',
}


class KernelLowering:
    def __init__(self, kernel: Kernel, buffer_dtypes: dict, buffer_sizes: dict, options: Options):
        self.k, self.dtypes, self.options = kernel, buffer_dtypes, options
        self.helpers: set = set()
        touched = kernel.reads() + kernel.writes()
        biggest = max([buffer_sizes[b] for b in touched] + [_prod(kernel.outer)])
        if options.index_bits is not None:
            self.wide = options.index_bits == 64
        else:
            self.wide = biggest >= 2 ** 31 - 2 ** 22  # offsets (plus a block) must fit int32
        self.idx = "tl.int64" if self.wide else "tl.int32"

    @property
    def fn_name(self) -> str:
        return "triton_" + _ident(self.k.name)

    def kind(self) -> str:
        k = self.k
        if k.matmul is not None:
            return "matmul"
        reduces = any(p.reductions for p in k.phases)
        if not k.outer and not reduces:
            return "split"
        if not reduces and not any(p.loops for p in k.phases):
            return "pointwise"
        return "rows"

    def arange(self, block: str) -> str:
        a = f"tl.arange(0, {block})"
        return f"{a}.to(tl.int64)" if self.wide else a

    def lower(self) -> TritonKernel:
        kind = self.kind()
        functions, launches = [], []
        if kind == "matmul":
            w, spec = self._matmul()
            functions.append(w)
            launches.append(spec)
        elif kind == "rows":
            w, spec = self._rows()
            functions.append(w)
            launches.append(spec)
        elif kind == "pointwise":
            w, spec = self._pointwise(self.fn_name, self.k.outer, self.k.phases)
            functions.append(w)
            launches.append(spec)
        else:
            for i, phase in enumerate(self.k.phases):
                w, spec = self._pointwise(f"{self.fn_name}_p{i}", phase.loops, (phase,))
                functions.append(w)
                launches.append(spec)
        for spec in launches:
            spec.signature = {pointer_param(b): "*" + SIGNATURE[self.dtypes[b].name] for b in spec.buffers}
        return TritonKernel(self.k.name, self._module(functions), launches, kind)

    def _module(self, functions) -> str:
        k = self.k
        head = [f"# {self.fn_name}: generated by tracecc from kernel {k.name} [{k.kind}]"]
        if k.reason:
            head.append(f"# why fused: {k.reason}")
        if k.members:
            head.append("# members (the traced graph's ops this kernel computes):")
            head += [f"#   {m}" for m in k.members]
        head.append("# kernel IR:")
        head += [f"#   {line}" for line in format_kernel(k).splitlines()
                 if not line.lstrip().startswith(("# member:", "# why:"))]
        head += ["", "import triton", "import triton.language as tl",
                 "from triton.language.extra import libdevice", "", ""]
        helpers = [_COMBINE_HELPERS[h] + "\n" for h in sorted(self.helpers)]
        return "\n".join(head) + "\n".join(helpers) + "\n\n".join(f.source for f in functions)

    # ------------------------------------------------------------ shared pieces
    def _decompose(self, w: _FunctionWriter | None, loops, flat: str, axis: str) -> dict:
        """Loop variables from a flat row-major index; returns name -> Val. With a writer
        each becomes a named line; without one, an inline expression (identical text across
        phases, so CSE spans them)."""
        env, inner = {}, 1
        for i, v in reversed(list(enumerate(loops))):
            if v.size == 1:
                env[v.name] = Val("0", dtypes.int64, frozenset(), literal=True)
            else:
                code = flat if inner == 1 else f"({flat} // {inner})"
                if i > 0:
                    code = f"({code} % {v.size})" if w is None else f"{code} % {v.size}"
                if w is not None:
                    name = _var_name(v.name)
                    w.line(f"{name} = {code}")
                    code = name
                env[v.name] = Val(code, dtypes.int64, frozenset({axis}))
            inner *= v.size
        return env

    def _writer(self, name: str) -> _FunctionWriter:
        return _FunctionWriter(name, self.dtypes, self.wide, self.helpers)

    @staticmethod
    def _store_facts(phases) -> dict:
        """LaunchSpec's `writes` (the buffers stored, in order) and `rerunnable` (no store
        accumulates, and nothing written is also read)."""
        stores = [s for p in phases for s in p.stores]
        writes = tuple(dict.fromkeys(s.buffer for s in stores))
        reads = Kernel("", "", (), tuple(phases)).reads()
        return {"writes": writes,
                "rerunnable": not any(s.accumulate for s in stores) and not set(reads) & set(writes)}

    # ------------------------------------------------------------ pointwise
    def _pointwise(self, name, loops, phases):
        w = self._writer(name)
        numel = _prod(loops)
        w.line(f"xnumel = {numel}")
        pid = "tl.program_id(0).to(tl.int64)" if self.wide else "tl.program_id(0)"
        w.line(f"xindex = {pid} * XBLOCK + {self.arange('XBLOCK')}")
        w.line("xmask = xindex < xnumel")
        env = self._decompose(w, loops, "xindex", "x")
        ctx = _Ctx(env, {"x": "xmask"})
        for phase in phases:
            for s in phase.stores:
                w.store(s, ctx, {"x": "xindex"})
        w.render(["XBLOCK"])
        spec = LaunchSpec(name, "pointwise", tuple(w.buffers), numel=numel,
                          **self._store_facts(phases))
        return w, spec

    # ------------------------------------------------------------ rows
    def _rows(self):
        k = self.k
        w = self._writer(self.fn_name)
        rows = _prod(k.outer)
        rnumel = max([_prod(p.loops) for p in k.phases if p.loops] or [1])
        persistent = _next_pow2(rnumel) <= self.options.max_rblock
        w.line(f"xnumel = {rows}")
        w.line(f"rnumel = {rnumel}")
        pid = "tl.program_id(0).to(tl.int64)" if self.wide else "tl.program_id(0)"
        w.line(f"xindex = {pid} * XBLOCK + {self.arange('XBLOCK')}[:, None]")
        w.line("xmask = xindex < xnumel")
        outer = self._decompose(w, k.outer, "xindex", "x")
        if persistent:
            w.line(f"rindex = {self.arange('RBLOCK')}[None, :]")
            w.line("rmask = rindex < rnumel")
            w.line("mask = xmask & rmask")
        rows_env: dict = {}
        zero = {"x": "xindex", "r": "rindex"}
        for i, phase in enumerate(k.phases):
            n = _prod(phase.loops)
            loops = ", ".join(f"{v.name}<{v.size}" for v in phase.loops)
            what = ", ".join(f"${r.name} = {r.combine}" for r in phase.reductions)
            stores = ", ".join(s.buffer for s in phase.stores)
            w.line(f"# phase {i}" + (f" over ({loops})" if loops else "") +
                   (f": {what}" if what else "") + (f"; stores {stores}" if stores else ""))
            if not phase.loops:
                ctx = _Ctx(outer, {"x": "xmask"}, rows_env)
                for r in phase.reductions:
                    v = w.eval(r.value, ctx)
                    rows_env[r.name] = (constant(0, dtypes.int64) if r.combine in ("argmax", "argmin")
                                        else Val(cast(v, r.dtype), r.dtype, v.axes))
                for s in phase.stores:
                    w.store(s, ctx, zero)
                continue
            if persistent:
                rmask = "rmask"
                if n != rnumel:
                    rmask = w.bind(f"rindex < {n}", dtypes.bool_, {"r"}, prefix="rmask").code
                full = "mask" if rmask == "rmask" else w.bind(f"xmask & {rmask}", dtypes.bool_, {"x", "r"},
                                                               prefix="mask").code
                env = dict(outer, **self._decompose(None, phase.loops, "rindex", "r"))
                ctx = _Ctx(env, {"x": "xmask", "r": rmask}, rows_env, full_mask=full)
                new_rows = {r.name: self._reduce_block(w, r, ctx, full) for r in phase.reductions}
                for s in phase.stores:
                    w.store(s, ctx, zero)
                rows_env.update(new_rows)
                continue
            accs = [self._loop_acc_init(w, r) for r in phase.reductions]
            w.line(f"for roffset in range(0, {n}, RBLOCK):")
            w.push()
            w.line(f"rindex = roffset + {self.arange('RBLOCK')}[None, :]")
            w.line(f"rmask = rindex < {n}")
            w.line("mask = xmask & rmask")
            env = dict(outer, **self._decompose(None, phase.loops, "rindex", "r"))
            ctx = _Ctx(env, {"x": "xmask", "r": "rmask"}, rows_env, full_mask="mask")
            for r, acc in zip(phase.reductions, accs):
                self._loop_acc_update(w, r, acc, ctx)
            for s in phase.stores:
                w.store(s, ctx, zero)
            w.pop()
            for r, acc in zip(phase.reductions, accs):
                rows_env[r.name] = self._loop_acc_finish(w, r, acc)
        w.render(["XBLOCK", "RBLOCK"])
        spec = LaunchSpec(self.fn_name, "rows", tuple(w.buffers), numel=rows, rnumel=rnumel,
                          persistent=persistent, **self._store_facts(k.phases))
        return w, spec

    def _work_dtype(self, r):
        """The dtype a reduction accumulates in (bool reductions count in int8)."""
        return dtypes.int8 if r.dtype is dtypes.bool_ else r.dtype

    def _row_name(self, r) -> str:
        return "row_" + _ident(r.name)

    def _finish_bool(self, w, r, code: str) -> Val:
        name = self._row_name(r)
        if r.dtype is dtypes.bool_:
            code = f"({code}) != 0"
        w.line(f"{name} = {code}")
        return Val(name, r.dtype, frozenset({"x"}))

    def _reduce_block(self, w, r, ctx: _Ctx, mask: str) -> Val:
        v = w.eval(r.value, ctx)
        if r.combine in ("argmax", "argmin"):
            self.helpers.add(r.combine)
            ident = reduce_identity(r.combine, v.dtype)
            big = 2 ** 63 - 1 if self.wide else 2 ** 31 - 1
            vals = f"tl.where({mask}, {as_tensor(v).code}, {ident.code})"
            idxs = f"tl.where({mask}, rindex, {big})"
            name = self._row_name(r)
            w.line(f"_, {name} = tl.reduce(({vals}, {idxs}), 1, _{r.combine}_combine, keep_dims=True)")
            w.line(f"{name} = {name}.to(tl.int64)")
            return Val(name, dtypes.int64, frozenset({"x"}))
        work = self._work_dtype(r)
        v = Val(cast(as_tensor(v), work), work, v.axes)
        ident = reduce_identity(r.combine, work)
        masked = f"tl.where({mask}, {v.code}, {ident.code})"
        return self._finish_bool(w, r, self._reduce_code(r.combine, masked, work))

    def _reduce_code(self, combine: str, tile: str, work) -> str:
        if combine == "add":
            return f"tl.sum({tile}, 1, keep_dims=True)"
        if combine in ("maximum", "minimum") and not is_float(work):
            return f"tl.{'max' if combine == 'maximum' else 'min'}({tile}, 1, keep_dims=True)"
        self.helpers.add(combine)
        return f"tl.reduce({tile}, 1, _{combine}_combine, keep_dims=True)"

    def _loop_acc_init(self, w, r):
        name = "acc_" + _ident(r.name)
        if r.combine in ("argmax", "argmin"):
            vdt = r.value.dtype
            ident = reduce_identity(r.combine, vdt)
            big = 2 ** 63 - 1 if self.wide else 2 ** 31 - 1
            w.line(f"{name} = tl.full([XBLOCK, RBLOCK], {ident.code}, {register_type(vdt)})")
            w.line(f"{name}_index = tl.full([XBLOCK, RBLOCK], {big}, {self.idx})")
            return name, big
        work = self._work_dtype(r)
        ident = reduce_identity(r.combine, work)
        w.line(f"{name} = tl.full([XBLOCK, RBLOCK], {ident.code}, {register_type(work)})")
        return name, None

    def _loop_acc_update(self, w, r, acc, ctx: _Ctx) -> None:
        name, big = acc
        v = w.eval(r.value, ctx)
        if r.combine in ("argmax", "argmin"):
            op = ">" if r.combine == "argmax" else "<"
            better = f"({v.code} {op} {name})"
            if is_float(v.dtype):
                better += f" | (({v.code} != {v.code}) & ({name} == {name}))"
            take = w.bind(f"mask & ({better} | ({name}_index == {big}))", dtypes.bool_, {"x", "r"})
            w.line(f"{name} = tl.where({take.code}, {v.code}, {name})")
            w.line(f"{name}_index = tl.where({take.code}, rindex, {name}_index)")
            return
        work = self._work_dtype(r)
        v = Val(cast(as_tensor(v), work), work, v.axes)
        if r.combine == "add":
            new = f"{name} + {v.code}"
        elif r.combine == "mul":
            new = f"{name} * {v.code}"
        else:
            nan = ", propagate_nan=tl.PropagateNan.ALL" if is_float(work) else ""
            new = f"tl.{r.combine}({name}, {v.code}{nan})"
        w.line(f"{name} = tl.where(mask, {new}, {name})")

    def _loop_acc_finish(self, w, r, acc) -> Val:
        name, _ = acc
        if r.combine in ("argmax", "argmin"):
            self.helpers.add(r.combine)
            row = self._row_name(r)
            w.line(f"_, {row} = tl.reduce(({name}, {name}_index), 1, _{r.combine}_combine, keep_dims=True)")
            w.line(f"{row} = {row}.to(tl.int64)")
            return Val(row, dtypes.int64, frozenset({"x"}))
        return self._finish_bool(w, r, self._reduce_code(r.combine, name, self._work_dtype(r)))

    # ------------------------------------------------------------ matmul
    def _matmul(self):
        k = self.k
        mm = k.matmul
        if len(k.outer) < 2:
            raise NotImplementedError("Triton backend: a matmul kernel needs (..., m, n) outer loops")
        batch, (mv, nv) = k.outer[:-2], k.outer[-2:]
        M, N, K = mv.size, nv.size, mm.k.size
        B = _prod(batch)
        operand = mm.a.dtype
        dot = operand in (dtypes.float32, dtypes.float16, dtypes.bfloat16) and mm.b.dtype is operand
        acc_t = "tl.float32" if dot else register_type(operand)
        w = self._writer(self.fn_name)
        w.line(f"# C[{M}, {N}] = A[{M}, {K}] @ B[{K}, {N}]" + (f" for {B} batches" if B > 1 else ""))
        w.line("pid = tl.program_id(0)")
        w.line(f"num_pid_m = ({M} + BLOCK_M - 1) // BLOCK_M")
        w.line(f"num_pid_n = ({N} + BLOCK_N - 1) // BLOCK_N")
        w.line("# grouped order: GROUP_M row-blocks share each column block while it is in L2")
        w.line("group = GROUP_M * num_pid_n")
        w.line("first_m = (pid // group) * GROUP_M")
        w.line("group_m = tl.minimum(num_pid_m - first_m, GROUP_M)")
        w.line("pid_m = first_m + (pid % group) % group_m")
        w.line("pid_n = (pid % group) // group_m")
        env = {}
        if batch:
            w.line("bid = tl.program_id(1)")
            env = self._decompose(w, batch, "bid", "b")
            env = {n: Val(v.code, v.dtype, frozenset(), v.literal) for n, v in env.items()}
        ar = self.arange
        w.line(f"rm = pid_m * BLOCK_M + {ar('BLOCK_M')}[:, None]")
        w.line(f"rn = pid_n * BLOCK_N + {ar('BLOCK_N')}[None, :]")
        w.line(f"mmask = rm < {M}")
        w.line(f"nmask = rn < {N}")
        w.line(f"acc = tl.zeros([BLOCK_M, BLOCK_N], dtype={acc_t})")
        w.line(f"for koffset in range(0, {K}, BLOCK_K):")
        w.push()
        w.line(f"rka = koffset + {ar('BLOCK_K')}[None, :]")
        w.line(f"rkb = koffset + {ar('BLOCK_K')}[:, None]")
        m_val = Val("rm", dtypes.int64, frozenset({"m"}))
        n_val = Val("rn", dtypes.int64, frozenset({"n"}))
        ctx_a = _Ctx(dict(env, **{mv.name: m_val, mm.k.name: Val("rka", dtypes.int64, frozenset({"k"}))}),
                     {"m": "mmask", "k": f"(rka < {K})"})
        ctx_b = _Ctx(dict(env, **{nv.name: n_val, mm.k.name: Val("rkb", dtypes.int64, frozenset({"k"}))}),
                     {"n": "nmask", "k": f"(rkb < {K})"})
        a = w.load(mm.a, ctx_a, widen=not dot)
        b = w.load(mm.b, ctx_b, widen=not dot)
        a, b = as_tensor(a), as_tensor(b)
        if a.axes != {"m", "k"}:  # an operand constant along m or k (an expanded view)
            a = Val(f"tl.broadcast_to({a.code}, [BLOCK_M, BLOCK_K])", a.dtype, frozenset({"m", "k"}))
        if b.axes != {"k", "n"}:
            b = Val(f"tl.broadcast_to({b.code}, [BLOCK_K, BLOCK_N])", b.dtype, frozenset({"k", "n"}))
        if dot:
            prec = self.options.matmul_precision or _float32_matmul_precision
            extra = f", input_precision=\"{_PRECISIONS[prec]}\"" if operand is dtypes.float32 else ""
            w.line(f"acc = tl.dot({a.code}, {b.code}, acc{extra})")
        else:
            w.line(f"acc += tl.sum({a.code}[:, :, None] * {b.code}[None, :, :], 1)")
        w.pop()
        ctx = _Ctx(dict(env, **{mv.name: m_val, nv.name: n_val}), {"m": "mmask", "n": "nmask"},
                   acc=Val("acc", mm.a.dtype if dot else operand, frozenset({"m", "n"})))
        w.line("# epilogue on the accumulator tile")
        for s in mm.stores:
            w.store(s, ctx, {"m": "rm", "n": "rn"})
        w.render(["BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"])
        facts = self._store_facts([Phase(stores=mm.stores)])
        if {mm.a.buffer, mm.b.buffer} & set(k.writes()):
            facts["rerunnable"] = False
        spec = LaunchSpec(self.fn_name, "matmul", tuple(w.buffers), numel=B, mnk=(M, N, K), dot=dot, **facts)
        return w, spec


def lower_kernel(kernel: Kernel, buffer_dtypes: dict, buffer_sizes: dict,
                 options: Options | None = None) -> TritonKernel:
    """One kernel -> its Triton module source and launch specs."""
    return KernelLowering(kernel, buffer_dtypes, buffer_sizes, options or Options()).lower()


def without_dead_stores(program):
    """The program without stores into temporaries that no kernel reads (the scheduler can
    keep a value it realised for several in-kernel consumers, e.g. softmax's exp; writing it
    out would cost W3 half as much traffic again). Kernels left with nothing are dropped."""
    from dataclasses import replace

    read = {b for k in program.kernels for b in k.reads()} | set(program.outputs)
    dead = {n for n, b in program.buffers.items() if b.role == "temp" and n not in read}
    if not dead:
        return program
    kernels = []
    for k in program.kernels:
        phases = tuple(replace(p, stores=tuple(s for s in p.stores if s.buffer not in dead))
                       for p in k.phases)
        phases = tuple(p for p in phases if p.stores or p.reductions)
        mm = k.matmul
        if mm is not None:
            mm = replace(mm, stores=tuple(s for s in mm.stores if s.buffer not in dead))
        if phases or (mm is not None and mm.stores):
            kernels.append(replace(k, phases=phases, matmul=mm))
    buffers = {n: b for n, b in program.buffers.items() if n not in dead}
    return replace(program, kernels=kernels, buffers=buffers)


def lower_program(program, options: Options | None = None) -> list[TritonKernel]:
    dts = {n: b.dtype for n, b in program.buffers.items()}
    sizes = {n: b.numel for n, b in program.buffers.items()}
    return [lower_kernel(k, dts, sizes, options) for k in program.kernels]


__all__ = ["lower_kernel", "lower_program", "Options", "LaunchSpec", "TritonKernel",
           "set_float32_matmul_precision", "get_float32_matmul_precision", "int_range"]
