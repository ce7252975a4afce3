"""Lower a kernel-IR Program to one LLVM module.

Each kernel becomes `void <name>(ptr args, i64 start, i64 end)`: loops over its outer
nest, with the outermost loop restricted to [start, end) so a kernel can be split over
threads. `args` holds the base pointers of the kernel's own buffers, in the order of
`kernel_buffers(k)`. One exported `void entry(ptr bufs)` fills each kernel's `args` from
`bufs` (every buffer of the program, in the order of `Program.buffers`) and runs the
kernels in order, so a compiled program costs one native call.

Kernels that are the same up to which buffers they use (a model's repeated layers) share
one function: a 6-layer transformer step has 408 kernels but 89 distinct ones, and LLVM
compiles each once.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from ...passes.kernel_emit import HEAVY_OPS
from ...passes.kernel_ir import (
    Acc, Const, Kernel, Load, LoopIndex, Op, Program, RowValue, all_stores, format_kernel, walk_kernel,
)
from ...runtime import dtypes
from .scalar import (
    EMITTERS, F32, I1, I8, I16, I32, I64, REDUCE_IDENTITY, Intrinsics, cast_value, constant, is_float,
    memory_type, register_type,
)

PTR = ir.PointerType(I8)


class LoweringContext:
    def __init__(self, module: ir.Module, mathlib=None):
        self.module = module
        self.intrinsics = Intrinsics(module)
        self.mathlib = mathlib  # callable(name, llvm type) -> ir.Function or None


class AccessGroup(ir.values.MDValue):
    """`distinct !{}`: the kernel's buffer loads and stores, which `llvm.loop.parallel_accesses`
    declares free of dependences between a loop's iterations (MDValue cannot print
    `distinct`, which the verifier requires of an access group)."""

    def __init__(self, module: ir.Module):
        super().__init__(module, [], name=str(len(module.metadata)))

    def descr(self, buf):
        buf += ("distinct !{}", "\n")

    __eq__, __ne__, __hash__ = object.__eq__, object.__ne__, object.__hash__


def _loop_id(module: ir.Module, interleave: int = 0, unroll: bool = False,
             parallel: AccessGroup | None = None) -> ir.MDValue:
    """A fresh `llvm.loop` node: ask the loop vectoriser to interleave `interleave` vectors,
    and/or ask for the loop to be unrolled completely, and/or declare the accesses of the
    group `parallel` independent across iterations. A loop ID must list itself first,
    which Module.add_metadata (uniquing by operands) cannot build, so the node is made
    directly and then pointed at itself."""
    hints = []
    if parallel is not None:
        hints.append(module.add_metadata([ir.MetaDataString(module, "llvm.loop.parallel_accesses"), parallel]))
    if interleave:
        hints.append(module.add_metadata([ir.MetaDataString(module, "llvm.loop.interleave.count"),
                                          ir.Constant(I32, interleave)]))
    if unroll:
        hints.append(module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.full")]))
    md = ir.values.MDValue(module, hints, name=str(len(module.metadata)))
    md.operands = (md, *hints)
    return md


def _for(b: ir.IRBuilder, start, end, name: str, interleave: int = 0, step: int = 1,
         unroll: bool = False, parallel: AccessGroup | None = None):
    """Emit `for (i = start; i < end; i += step)`; returns (i, exit_block_fn). Body goes at
    b's position. unroll: unroll it completely (a constant trip count of a few iterations).
    parallel: the access group whose loads and stores no iteration shares with another."""
    pre = b.block
    cond_bb = b.append_basic_block(f"{name}.cond")
    body_bb = b.append_basic_block(f"{name}.body")
    exit_bb = b.append_basic_block(f"{name}.exit")
    b.branch(cond_bb)
    b.position_at_end(cond_bb)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, end), body_bb, exit_bb)
    b.position_at_end(body_bb)

    def close():
        nxt = b.add(i, ir.Constant(I64, step))
        i.add_incoming(nxt, b.block)
        br = b.branch(cond_bb)
        if interleave or unroll or parallel is not None:
            br.set_metadata("llvm.loop", _loop_id(b.module, interleave, unroll, parallel))
        b.position_at_end(exit_bb)

    return i, close


# Kernels estimated below this (single-thread ns) are compiled with `optsize`: LLVM spends
# less on them (no interleaved vector loops and their epilogues) and they run no slower.
# The MNIST step (batch 64), 6 of its 15 kernels: LLVM 250 -> 198 ms, step 588 vs 588 us;
# at 20 us (10 kernels) 175 ms but the step 6% slower.
SMALL_KERNEL_NS = 5_000

# Innermost loops this short are unrolled completely (LLVM only does so when asked: its
# loop unrolling is off, jit.UNROLL), so the loop around them is the one that runs long:
# a pooling window (2x2, 3x3) or a stride-2 axis innermost was a scalar loop of 2-9
# iterations per element otherwise (a 2x2 max-pool: 4.0 -> 1.1 ms).
TINY_LOOP = 4  # iterations of one loop
TINY_NEST = 16  # iterations of the whole unrolled nest


def _tiny_suffix(sizes: list[int]) -> int:
    """How many of the innermost loops (sizes, outermost first) are tiny: at most TINY_LOOP
    iterations each, TINY_NEST together."""
    n, total = 0, 1
    for size in reversed(sizes):
        if size > TINY_LOOP or total * size > TINY_NEST:
            break
        total *= size
        n += 1
    return n


class KernelLowering:
    def __init__(self, ctx: LoweringContext, kernel: Kernel, buffer_slots: dict, buffer_dtypes: dict):
        self.ctx, self.k = ctx, kernel
        self.slots, self.dtypes = buffer_slots, buffer_dtypes
        fnty = ir.FunctionType(ir.VoidType(), [ir.PointerType(PTR), I64, I64])
        self.fn = ir.Function(ctx.module, fnty, kernel.name)  # exported: the profiler calls it
        self.fn.attributes.add("nounwind")
        # never inlined into `entry`: the exported kernel stays the only copy, which halves
        # LLVM time (the MNIST step: each of its 15 kernels was optimised and compiled twice)
        self.fn.attributes.add("noinline")
        if estimated_work_ns(kernel) < SMALL_KERNEL_NS and not _interleave(kernel):
            self.fn.attributes.add("optsize")  # (an interleave hint asks for speed)
        # allocas and buffer base pointers go in "entry", which branches to "body" at the end
        self.entry_bb = self.fn.append_basic_block("entry")
        self.entry_b = ir.IRBuilder(self.entry_bb)
        self.b = ir.IRBuilder(self.fn.append_basic_block("body"))
        self.vars: dict[str, ir.Value] = {}
        self.rows: dict[str, ir.Value] = {}
        self.acc = None
        self.cache: dict[int, ir.Value] = {}
        self.bases: dict[str, ir.Value] = {}
        # Values no loop changes (scalar loads from buffers this kernel does not write, and
        # what is computed from them and constants) are computed once in "entry". LLVM
        # cannot hoist them itself: a scalar load might alias the kernel's own stores.
        # AdamW's bias correction pow(beta, step) had been a libm call per element.
        self.written = set(kernel.writes())
        self.invariant: dict[int, bool] = {}
        self.hoisted: dict[int, ir.Value] = {}
        self.infinities: dict[tuple, ir.Value] = {}
        # Without it, an in-place update (p[i] = p[i] - lr * g[i], the output the input's own
        # memory) fails the vectoriser's runtime overlap check and runs its scalar loop.
        self.group = AccessGroup(ctx.module) if _iterations_independent(kernel) else None

    def entry_builder(self) -> ir.IRBuilder:
        """The one builder of "entry": a second one would insert before what this one
        added since that one was positioned."""
        return self.entry_b

    # ------------------------------------------------------------ memory
    def base(self, name: str):
        if name not in self.bases:
            entry_b = self.entry_builder()
            slot = entry_b.gep(self.fn.args[0], [ir.Constant(I64, self.slots[name])])
            raw = entry_b.load(slot)
            self.bases[name] = entry_b.bitcast(raw, ir.PointerType(memory_type(self.dtypes[name])))
        return self.bases[name]

    def index(self, index):
        b = self.b
        total = ir.Constant(I64, index.offset)
        for t in index.terms:
            if t.expr is not None:
                v = self.eval(t.expr)
                v = cast_value(b, v, t.expr.dtype if hasattr(t.expr, "dtype") else dtypes.int64, dtypes.int64)
            else:
                v = self.vars[t.var.name]
                if t.div != 1:
                    v = b.sdiv(v, ir.Constant(I64, t.div))
                if t.mod:
                    v = b.srem(v, ir.Constant(I64, t.mod))
            total = b.add(total, v if t.stride == 1 else b.mul(v, ir.Constant(I64, t.stride)))
        return total

    def load(self, e: Load):
        b = self.b
        ptr = b.gep(self.base(e.buffer), [self.index(e.index)])
        raw = self.grouped(b.load(ptr))
        return self.from_memory(raw, e.dtype)

    def grouped(self, instr):
        if self.group is not None:
            instr.set_metadata("llvm.access.group", self.group)
        return instr

    def from_memory(self, raw, dtype):
        b = self.b
        if dtype is dtypes.bool_:
            return b.icmp_unsigned("!=", raw, ir.Constant(I8, 0))
        if dtype is dtypes.float16:
            return b.fpext(b.bitcast(raw, ir.HalfType()), F32)
        if dtype is dtypes.bfloat16:
            return b.bitcast(b.shl(b.zext(raw, I32), ir.Constant(I32, 16)), F32)
        return raw

    def to_memory(self, value, dtype):
        b = self.b
        if dtype is dtypes.bool_:
            return b.zext(value, I8)
        if dtype is dtypes.float16:
            return b.bitcast(b.fptrunc(value, ir.HalfType()), I16)
        if dtype is dtypes.bfloat16:  # round to nearest even; NaN stays NaN
            bits = b.bitcast(value, I32)
            lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
            rounded = b.add(bits, b.add(lsb, ir.Constant(I32, 0x7FFF)))
            nan = b.fcmp_unordered("uno", value, value)
            bits = b.select(nan, b.or_(bits, ir.Constant(I32, 0x400000)), rounded)
            return b.trunc(b.lshr(bits, ir.Constant(I32, 16)), I16)
        return value

    def store(self, s):
        b = self.b
        dtype = self.dtypes[s.buffer]
        value = self.eval(s.value)
        value_dtype = _dtype_of(s.value)
        if value_dtype is not dtype:
            value = cast_value(b, value, value_dtype, dtype)
        ptr = b.gep(self.base(s.buffer), [self.index(s.index)])
        if s.accumulate:
            old = self.from_memory(b.load(ptr), dtype)
            value = b.fadd(old, value) if is_float(dtype) else b.add(old, value)
        self.grouped(b.store(self.to_memory(value, dtype), ptr))

    # ------------------------------------------------------------ expressions
    def eval(self, e):
        hit = self.cache.get(id(e))
        if hit is None:
            hit = self.hoisted.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, (Load, Op)) and self.is_invariant(e):
            body, self.b = self.b, self.entry_builder()
            try:
                v = self.hoisted[id(e)] = self._eval(e)
            finally:
                self.b = body
            return v
        v = self.cache[id(e)] = self._eval(e)
        return v

    def infinity(self, e: Const):
        """An infinite constant, computed once through llvm.arithmetic.fence. Left bare,
        InstCombine folds maximum(acc, where(mask, -inf, x)) into select(mask, acc,
        maximum(acc, x)), a conditional reduction the loop vectoriser leaves scalar: the
        causal mask of attention made its softmax 3x slower than an unmasked one."""
        key = (e.dtype, e.value)
        if key not in self.infinities:
            b = self.entry_builder()
            self.infinities[key] = self.ctx.intrinsics.call(
                b, "llvm.arithmetic.fence", [constant(e.dtype, e.value)], register_type(e.dtype))
        return self.infinities[key]

    def is_invariant(self, e) -> bool:
        known = self.invariant.get(id(e))
        if known is None:
            if isinstance(e, Const):
                known = True
            elif isinstance(e, Load):
                known = e.buffer not in self.written and all(
                    t.var is None and (t.expr is None or self.is_invariant(t.expr)) for t in e.index.terms)
            elif isinstance(e, Op):  # (an integer division by zero must not run before the loop)
                known = all(self.is_invariant(a) for a in e.args) and not (
                    e.op in _TRAPPING and not is_float(e.dtype))
            else:  # loop indices, row values, the matmul accumulator
                known = False
            self.invariant[id(e)] = known
        return known

    def _eval(self, e):
        if isinstance(e, Load):
            v = self.load(e)
        elif isinstance(e, Const):
            v = self.infinity(e) if is_float(e.dtype) and math.isinf(e.value) else constant(e.dtype, e.value)
        elif isinstance(e, LoopIndex):
            v = self.vars[e.var.name]
        elif isinstance(e, RowValue):
            v = self.rows[e.name]
        elif isinstance(e, Acc):
            v = self.acc
        elif isinstance(e, Op):
            emit = EMITTERS.get(e.op)
            if emit is None:
                raise NotImplementedError(f"LLVM backend: no lowering for pointwise op {e.op!r}")
            args = [self.eval(a) for a in e.args]
            v = emit(self.b, self.ctx, args, [_dtype_of(a) for a in e.args], e.dtype, e.param_dict)
        else:
            raise TypeError(f"LLVM backend: unknown expression {e!r}")
        return v

    # ------------------------------------------------------------ loops
    def lower(self) -> ir.Function:
        b = self.b
        start, end = self.fn.args[1], self.fn.args[2]
        closers = []
        blas = self.blas_layout(self.k.matmul) if self.k.matmul is not None else None
        loops = self.k.outer[:-2] if blas is not None else self.k.outer
        interleave = _interleave(self.k)
        column = _column_var(self.k)
        tile = _transpose_tile(self.k)
        flat = self.k.matmul is None and not any(p.loops for p in self.k.phases)
        tiny = _tiny_suffix([v.size for v in loops]) if flat and not tile else 0
        phases_lowered = False
        for depth, v in enumerate(loops):
            lo, hi = (start, end) if depth == 0 else (ir.Constant(I64, 0), ir.Constant(I64, v.size))
            if v is column:
                self.lower_columns(v, lo, hi)  # the phases too, inside the column blocks
                phases_lowered = True
                break
            if tile and depth == len(loops) - 2:
                closers += self.tiled_loops(v, lo, hi, loops[-1], tile, interleave)
                break
            inner = depth == len(loops) - 1
            unroll = depth > 0 and depth >= len(loops) - tiny
            self.vars[v.name], close = _for(b, lo, hi, v.name, interleave if inner else 0,
                                            unroll=unroll, parallel=self.group if inner and flat else None)
            closers.append(close)
        if not phases_lowered:
            for phase in self.k.phases:
                self.lower_phase(phase)
        if blas is not None:
            self.lower_blas_matmul(self.k.matmul, blas)
        elif self.k.matmul is not None:
            self.lower_matmul(self.k.matmul)
        for close in reversed(closers):
            self.cache.clear()
            close()
        b.ret_void()
        self.entry_builder().branch(self.fn.blocks[1])
        return self.fn

    def tiled_loops(self, a, lo, hi, q, tile: int, interleave: int) -> list:
        """The last two loops (a over [lo, hi), q over its size) walked in tile x tile
        blocks: for ab, for qb, for a in block, for q in block. Returns their closers."""
        b = self.b

        def upto(x, limit):
            end = b.add(x, ir.Constant(I64, tile))
            return b.select(b.icmp_signed("<", end, limit), end, limit)

        q_size = ir.Constant(I64, q.size)
        ab, close_ab = _for(b, lo, hi, f"{a.name}.tile", step=tile)
        qb, close_qb = _for(b, ir.Constant(I64, 0), q_size, f"{q.name}.tile", step=tile)
        self.vars[a.name], close_a = _for(b, ab, upto(ab, hi), a.name)
        self.vars[q.name], close_q = _for(b, qb, upto(qb, q_size), q.name, interleave)
        return [close_ab, close_qb, close_a, close_q]

    def lower_phase(self, phase):
        b = self.b
        entry = self.entry_builder()
        accs = []
        for r in phase.reductions:
            ty = register_type(r.dtype)
            slot = entry.alloca(ty, name=f"acc.{r.name}")
            best_index = entry.alloca(I64, name=f"idx.{r.name}") if r.combine in ("argmax", "argmin") else None
            value_dtype = _dtype_of(r.value)
            value_slot = entry.alloca(register_type(value_dtype), name=f"val.{r.name}") if best_index else None
            if best_index is not None:
                init = -float("inf") if r.combine == "argmax" else float("inf")
                if not is_float(value_dtype):
                    bits = register_type(value_dtype).width
                    init = -(2 ** (bits - 1)) if r.combine == "argmax" else 2 ** (bits - 1) - 1
                b.store(constant(value_dtype, init), value_slot)
                b.store(ir.Constant(I64, -1), best_index)
            else:
                b.store(constant(r.dtype, _identity(r.combine, r.dtype)), slot)
            accs.append((r, slot, best_index, value_slot))
        closers, flat = [], ir.Constant(I64, 0)
        outer_cache = dict(self.cache)
        unroll = _tiny_suffix([v.size for v in phase.loops]) == len(phase.loops)
        for depth, v in enumerate(phase.loops):
            innermost = depth == len(phase.loops) - 1
            self.vars[v.name], close = _for(b, ir.Constant(I64, 0), ir.Constant(I64, v.size), v.name,
                                            unroll=unroll, parallel=self.group if innermost else None)
            closers.append(close)
            flat = b.add(b.mul(flat, ir.Constant(I64, v.size)), self.vars[v.name])
        for r, slot, best_index, value_slot in accs:
            self.update(r, slot, best_index, value_slot, flat)
        for s in phase.stores:
            self.store(s)
        for close in reversed(closers):
            close()
        self.cache = outer_cache  # values computed inside the inner loops don't dominate here
        for r, slot, best_index, value_slot in accs:
            self.rows[r.name] = b.load(best_index if best_index is not None else slot)

    def lower_columns(self, col, lo, hi):
        """A reduction kernel whose rows are columns (the reduced axes are not the innermost:
        a bias gradient summed over the batch): for each block of COLUMN_BLOCK columns, every
        phase runs its loops with the columns innermost, so rows are read contiguously and the
        loop vectorises, each reduction accumulating a block of columns at once in a small
        array. Column iterations are independent (the outer loops are parallel), so this
        reorders nothing that any column sees."""
        b = self.b
        entry = self.entry_builder()
        c0, close_block = _for(b, lo, hi, f"{col.name}.block", step=COLUMN_BLOCK)
        c1 = b.add(c0, ir.Constant(I64, COLUMN_BLOCK))
        c1 = b.select(b.icmp_signed("<", c1, hi), c1, hi)
        arrays = {}  # reduction name -> its block of accumulators

        def columns(body):
            """for (c = c0; c < c1; ++c) body(offset in the block); innermost, so vectorised."""
            outer_cache = dict(self.cache)
            c, close = _for(b, c0, c1, col.name)
            self.vars[col.name] = c
            offset = b.sub(c, c0)
            for name, arr in arrays.items():  # unused ones are removed by LLVM
                self.rows[name] = b.load(b.gep(arr, [offset]))
            body(offset)
            close()
            self.cache = outer_cache

        for phase in self.k.phases:
            for r in phase.reductions:
                arr = entry.alloca(register_type(r.dtype), size=ir.Constant(I64, COLUMN_BLOCK), name=f"acc.{r.name}")
                init = constant(r.dtype, _identity(r.combine, r.dtype))
                columns(lambda off, arr=arr, init=init: b.store(init, b.gep(arr, [off])))
                arrays[r.name] = arr
            closers = []
            for v in phase.loops:
                self.vars[v.name], close = _for(b, ir.Constant(I64, 0), ir.Constant(I64, v.size), v.name)
                closers.append(close)

            def body(off, phase=phase):
                for r in phase.reductions:
                    self.update(r, b.gep(arrays[r.name], [off]), None, None, None)
                for s in phase.stores:
                    self.store(s)

            columns(body)
            for close in reversed(closers):
                close()
        close_block()

    def update(self, r, slot, best_index, value_slot, flat):
        b = self.b
        v = self.eval(r.value)
        value_dtype = _dtype_of(r.value)
        if best_index is not None:
            best = b.load(value_slot)
            if is_float(value_dtype):
                better = b.fcmp_ordered(">" if r.combine == "argmax" else "<", v, best)
                first_nan = b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best))
                take = b.or_(better, first_nan)
            else:
                pred = ">" if r.combine == "argmax" else "<"
                take = b.icmp_signed(pred, v, best) if value_dtype.is_signed else b.icmp_unsigned(pred, v, best)
            take = b.or_(take, b.icmp_signed("<", b.load(best_index), ir.Constant(I64, 0)))
            b.store(b.select(take, v, best), value_slot)
            b.store(b.select(take, flat, b.load(best_index)), best_index)
            return
        if value_dtype is not r.dtype:
            v = cast_value(b, v, value_dtype, r.dtype)
        acc = b.load(slot)
        if is_float(r.dtype):
            if r.combine == "add":
                new = b.fadd(acc, v, flags=("reassoc", "nsz"))
            elif r.combine == "mul":
                new = b.fmul(acc, v, flags=("reassoc", "nsz"))
            else:
                name = "llvm.maximum" if r.combine == "maximum" else "llvm.minimum"
                new = self.ctx.intrinsics.call(b, name, [acc, v], acc.type)
        else:
            if r.combine in ("add", "mul"):
                new = b.add(acc, v) if r.combine == "add" else b.mul(acc, v)
            else:
                signed = r.dtype.is_signed and r.dtype is not dtypes.bool_
                cmp = b.icmp_signed if signed else b.icmp_unsigned
                keep = cmp(">" if r.combine == "maximum" else "<", acc, v)
                new = b.select(keep, acc, v)
        b.store(new, slot)

    # ------------------------------------------------------------ matmul through BLAS
    def blas_layout(self, mm):
        """(a strides, b strides) in elements for sgemm, when the product can go to BLAS:
        float32, affine operand indices, a unit stride in each operand, a product buffer."""
        from .matmul import find_blas

        if mm.out is None or mm.a.dtype is not dtypes.float32 or find_blas() is None:
            return None
        if not (isinstance(mm.a, Load) and isinstance(mm.b, Load)):
            return None  # e.g. a broadcast constant operand: the loop nest handles it
        *batch, m, n = self.k.outer

        def strides(load, rows, cols):
            found = {}
            for t in load.index.terms:
                if t.expr is not None or t.div != 1 or t.mod:
                    return None
                found[t.var.name] = found.get(t.var.name, 0) + t.stride
            known = {v.name for v in batch} | {rows.name, cols.name}
            if set(found) - known:
                return None
            rs, cs = found.get(rows.name, 0), found.get(cols.name, 0)
            if rows.size == 1:
                rs = max(cs * cols.size, 1) if cs == 1 else rs
            if cols.size == 1:
                cs = 1 if rs != 1 else max(rows.size, 1)
            if not (cs == 1 and rs >= max(cols.size, 1)) and not (rs == 1 and cs >= max(rows.size, 1)):
                return None
            return rs, cs

        a = strides(mm.a, m, mm.k)
        b = strides(mm.b, mm.k, n)
        if a is None or b is None or min(m.size, n.size, mm.k.size) == 0:
            return None
        return a, b

    def lower_blas_matmul(self, mm, layout):
        from .matmul import MatmulSpec, emit_matmul

        b = self.b
        *batch, m, n = self.k.outer
        (a_rs, a_cs), (b_rs, b_cs) = layout
        zero = ir.Constant(I64, 0)
        self.vars.update({m.name: zero, n.name: zero, mm.k.name: zero})
        a_ptr = b.gep(self.base(mm.a.buffer), [self.index(mm.a.index)])
        b_ptr = b.gep(self.base(mm.b.buffer), [self.index(mm.b.index)])
        c_offset = zero
        stride = m.size * n.size
        for v in reversed(batch):
            c_offset = b.add(c_offset, b.mul(self.vars[v.name], ir.Constant(I64, stride)))
            stride *= v.size
        c_ptr = b.gep(self.base(mm.out), [c_offset])
        spec = MatmulSpec(m.size, n.size, mm.k.size, (a_rs, a_cs), (b_rs, b_cs))
        # BLAS above ~0.4M multiply-adds, the generated register-tiled kernel below
        # (codegen/llvm/matmul.py: measured at the MLP shapes)
        emit_matmul(b, spec, a_ptr, b_ptr, c_ptr, strategy="auto")
        self.cache.clear()
        closers = []
        for v in (m, n):
            self.vars[v.name], close = _for(b, zero, ir.Constant(I64, v.size), v.name,
                                            parallel=self.group if v is n else None)
            closers.append(close)
        product = b.gep(c_ptr, [b.add(b.mul(self.vars[m.name], ir.Constant(I64, n.size)), self.vars[n.name])])
        self.acc = self.grouped(b.load(product))
        for s in mm.stores:
            if s.buffer == mm.out and isinstance(s.value, Acc):
                continue  # the product is already there
            self.store(s)
        for close in reversed(closers):
            self.cache.clear()
            close()

    def lower_matmul(self, mm):
        b = self.b
        entry = self.entry_builder()
        ty = register_type(mm.a.dtype)
        slot = entry.alloca(ty, name="acc")
        b.store(ir.Constant(ty, 0.0), slot)
        outer_cache = dict(self.cache)
        self.vars[mm.k.name], close = _for(b, ir.Constant(I64, 0), ir.Constant(I64, mm.k.size), mm.k.name)
        prod = b.fmul(self.eval(mm.a), self.eval(mm.b), flags=("reassoc", "nsz", "contract"))
        b.store(b.fadd(b.load(slot), prod, flags=("reassoc", "nsz", "contract")), slot)
        close()
        self.cache = outer_cache
        self.acc = b.load(slot)
        for s in mm.stores:
            self.store(s)


_TRAPPING = frozenset({"div", "floor_divide", "remainder"})  # on integers


def _iterations_independent(k: Kernel) -> bool:
    """Whether no iteration of the loops that get the access group (the innermost of each
    phase, or the kernel's innermost) reads or writes what another iteration writes. Each
    store must step with that loop and neither accumulate nor scatter (a data-dependent
    index); a buffer the kernel writes is read only where it is written (the memory plan's
    rule for in-place updates; the scheduler recomputes members rather than reloading
    them); temporaries that share arena memory are never live in one kernel."""
    stores = all_stores(k)
    if any(s.accumulate or any(t.expr is not None for t in s.index.terms) for s in stores):
        return False
    pieces = [(p.loops[-1] if p.loops else k.outer[-1] if k.outer else None, p.stores) for p in k.phases]
    if k.matmul is not None:  # the epilogue's loop is the product's columns
        pieces.append((k.outer[-1], k.matmul.stores))
    for loop, piece in pieces:
        if loop is not None and loop.size > 1 and not all(
                any(t.var is not None and t.var.name == loop.name and t.stride for t in s.index.terms)
                for s in piece):
            return False
    where = {}
    for s in stores:
        where.setdefault(s.buffer, set()).add(s.index)
    return all(e.index in where[e.buffer] for e in walk_kernel(k) if isinstance(e, Load) and e.buffer in where)


def _identity(combine: str, dtype):
    """The reduction's starting value; integer max/min start at the dtype's extremes."""
    if combine in ("maximum", "minimum") and not is_float(dtype):
        if dtype is dtypes.bool_:
            return 0 if combine == "maximum" else 1
        info = np.iinfo(dtype.np)
        return info.min if combine == "maximum" else info.max
    return REDUCE_IDENTITY[combine]


def _dtype_of(e):
    return e.dtype


def estimated_work_ns(k: Kernel) -> float:
    """Single-thread time estimate for the threading decision: iterations times a cost per
    iteration that grows with the transcendental functions in the body."""
    outer = 1
    for v in k.outer:
        outer *= v.size
    inner = 0
    for p in k.phases:
        n = 1
        for v in p.loops:
            n *= v.size
        inner += n
    if k.matmul is not None:
        inner += k.matmul.k.size
    heavy = sum(1 for e in walk_kernel(k) if isinstance(e, Op) and e.op in _HEAVY)
    return outer * max(inner, 1) * (0.4 + 2.0 * heavy)


# Columns accumulated at once by a column reduction (lower_columns): 4 KB per float32
# reduction, whole rows of W5's gradients (up to 1024 columns) read in one sequential pass.
# Measured on column sums of [256..1024 rows, 256..1024 columns]: 7-30x over the strided
# loops at 1024; 256 and 512 were 0-40% slower than 1024 on the widest rows.
COLUMN_BLOCK = 1024
# Below this many elements (rows x columns) a column reduction keeps the plain loops: the
# blocked form adds ~70 ms of LLVM time to the MNIST step (its bias gradients, 64 x 128)
# for kernels that take microseconds either way.
BLOCK_COLUMNS_FROM = 1 << 14


def _column_var(k: Kernel):
    """The innermost outer loop variable of a reduction kernel, when every load that depends
    on it reads along it with unit stride (a column reduction: its rows run down the
    columns), or when none does and the reductions are not contiguous either (the same
    strided sum for every column, e.g. broadcast before a transpose: vectorised over the
    columns at least); else None. Loads that do not depend on it stay loop-invariant."""
    if k.kind != "reduction" or k.matmul is not None or not k.outer or k.outer[-1].size < 2:
        return None
    if any(r.combine in ("argmax", "argmin") for p in k.phases for r in p.reductions):
        return None
    if not any(p.loops and p.reductions for p in k.phases):
        return None
    rows = max(math.prod(v.size for v in p.loops) for p in k.phases if p.loops)
    if rows * k.outer[-1].size < BLOCK_COLUMNS_FROM:
        return None  # small: the strided loops are fast enough, and cheaper to compile
    col = k.outer[-1]
    loads = [e for e in walk_kernel(k) if isinstance(e, Load)]

    def unit(load, names):
        return any(t.var is not None and t.var.name in names and t.stride == 1 and t.div == 1
                   and not t.mod for t in load.index.terms)

    reading = [ld for ld in loads if any(t.var is not None and t.var.name == col.name for t in ld.index.terms)]
    if reading:
        return col if all(unit(ld, {col.name}) for ld in reading) else None
    inner = {p.loops[-1].name for p in k.phases if p.loops and p.reductions}
    return None if any(unit(ld, inner) for ld in loads) else col


# A pointwise kernel that reads an operand transposed (unit stride along its second-innermost
# loop, a long one along the innermost: a materialised .T or permute) walks those two loops
# in TRANSPOSE_TILE-square blocks, so each cache line a strided read fetches is used for a
# whole block row before it is evicted.
TRANSPOSE_TILE = 16


def _transpose_tile(k: Kernel) -> int:
    """The tile size for a pointwise kernel that reads a transposed operand, else 0."""
    if k.kind != "pointwise" or k.matmul is not None or len(k.outer) < 2:
        return 0
    if any(p.loops for p in k.phases):
        return 0
    a, q = k.outer[-2], k.outer[-1]
    if min(a.size, q.size) < TRANSPOSE_TILE:
        return 0
    for ld in (e for e in walk_kernel(k) if isinstance(e, Load)):
        stride = {}
        for t in ld.index.terms:
            if t.var is not None and t.div == 1 and not t.mod:
                stride[t.var.name] = stride.get(t.var.name, 0) + t.stride
        if stride.get(a.name) == 1 and abs(stride.get(q.name, 0)) >= TRANSPOSE_TILE:
            return TRANSPOSE_TILE
    return 0


_HEAVY = HEAVY_OPS | {"div", "sqrt"}  # what the work estimate counts as costly

# The loop vectoriser does not interleave large loop bodies, but the exp family's long
# dependent chains leave the core idle without a second independent vector per iteration
# (W1: two sigmoids per element, 1.25x; exp alone 1.11x, tanh 1.12x). erf (0.85x: its
# polynomials' constants spill) and the table-driven sin/cos are left alone; log gained 1.0x.
_INTERLEAVE_OPS = {"exp", "expm1", "sigmoid", "tanh"}
_NO_INTERLEAVE_OPS = {"erf", "sin", "cos"}


def _interleave(k: Kernel) -> int:
    """Interleave count for a pointwise kernel's innermost loop (0: the vectoriser decides)."""
    if k.kind != "pointwise" or k.matmul is not None or any(p.loops for p in k.phases):
        return 0
    ops = {e.op for e in walk_kernel(k) if isinstance(e, Op)}
    return 2 if ops & _INTERLEAVE_OPS and not ops & _NO_INTERLEAVE_OPS else 0


def kernel_buffers(k: Kernel, text: str | None = None) -> list[str]:
    """The buffers kernel k uses, in the order they first appear in its text (format_kernel,
    if already made): the order of its `args`, the same for kernels that differ only in
    which buffers they use."""
    text = format_kernel(k) if text is None else text
    names = set(k.reads()) | set(k.writes())
    if k.matmul is not None and k.matmul.out is not None:
        names.add(k.matmul.out)
    return sorted(names, key=lambda n: (text.find(n + "["), n))


def kernel_signature(k: Kernel, buffer_dtypes: dict) -> tuple[str, list[str]]:
    """(what k's code depends on, its buffers): its text with buffers renamed by position
    (members and fusion reasons left out) and the buffers' dtypes."""
    text = format_kernel(k)
    names = kernel_buffers(k, text)
    head, *lines = text.splitlines()
    body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for j, n in sorted(enumerate(names), key=lambda jn: -len(jn[1])):  # longest first
        body = body.replace(n + "[", f"@{j}[")
    loops = head.split(" ", 2)[2]  # "[kind] over (loops):"
    return f"{loops}\n{body}\n{[str(buffer_dtypes[n]) for n in names]}", names


def shared_functions(p: Program) -> dict[str, tuple[str, list[str]]]:
    """Kernel name -> (the name of the function that runs it: the first kernel with its
    signature, the kernel's buffers in the order of its pointer table)."""
    buffer_dtypes = {name: b.dtype for name, b in p.buffers.items()}
    first: dict[str, str] = {}
    out = {}
    for k in p.kernels:
        sig, names = kernel_signature(k, buffer_dtypes)
        out[k.name] = (first.setdefault(sig, k.name), names)
    return out


def lower_program(p: Program, mathlib=None, module: ir.Module | None = None,
                  split=None) -> ir.Module:
    """split(kernel) -> grain or None decides which kernels run over the thread pool."""
    module = module or ir.Module(name=p.name)
    ctx = LoweringContext(module, mathlib)
    slots = {name: i for i, name in enumerate(p.buffers)}
    buffer_dtypes = {name: b.dtype for name, b in p.buffers.items()}
    shared = shared_functions(p)
    functions: dict[str, ir.Function] = {}  # function name -> the function (its first kernel's)
    calls = []
    for k in p.kernels:
        fn_name, names = shared[k.name]
        if fn_name not in functions:
            local = {n: j for j, n in enumerate(names)}
            functions[fn_name] = KernelLowering(ctx, k, local, buffer_dtypes).lower()
        calls.append((k, functions[fn_name], names))
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.PointerType(PTR)]), "entry")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    widest = max((len(names) for _, _, names in calls), default=0)
    args = b.alloca(PTR, size=ir.Constant(I64, max(widest, 1)), name="args")
    for k, fn, names in calls:
        for j, n in enumerate(names):  # this call's buffers, in the kernel's order
            ptr = b.load(b.gep(entry.args[0], [ir.Constant(I64, slots[n])]))
            b.store(ptr, b.gep(args, [ir.Constant(I64, j)]))
        outer = ir.Constant(I64, k.outer[0].size if k.outer else 1)
        grain = split(k) if split is not None and k.outer else None
        if grain:
            from .parallel import emit_parallel_for
            emit_parallel_for(b, fn, args, ir.Constant(I64, 0), outer, ir.Constant(I64, grain))
        else:
            b.call(fn, [args, ir.Constant(I64, 0), outer])
    b.ret_void()
    return module


__all__ = ["lower_program", "kernel_buffers", "shared_functions", "LoweringContext", "KernelLowering", "I1"]
