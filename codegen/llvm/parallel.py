"""A parallel-for that generated code calls, backed by a persistent worker pool, no GIL.

Generated code splits a kernel's outer loop by calling

    void tracecc_parallel_for(void (*body)(ptr ctx, i64 start, i64 end), ptr ctx,
                              i64 start, i64 end, i64 grain)

which runs `body` over [start, end) cut into up to CHUNKS_PER_THREAD contiguous chunks per
thread (whole multiples of `grain`, except the last), claimed dynamically by the calling
thread and the workers. It returns when every chunk is done. Ranges of at most `grain`
items, a busy pool (a nested or concurrent call) or a pool of one thread run
`body(ctx, start, end)` inline.

The pool itself is LLVM IR built here with llvmlite and compiled once per process (no C
compiler involved): helper threads made with pthread_create wait for work by spinning on an
atomic generation counter for a short while (~82 us here, so back-to-back kernels start
within a microsecond or two) and then sleep on a futex, so an idle process burns no CPU. Python never takes
part: a compiled graph entry calls it directly, which is why it beats a Python-side pool
(benchmarks/llvm_micro.py measures both; numbers in docs/cpu-backend.md).

Linux x86-64 and aarch64 (futex through libc's `syscall`). Elsewhere, and in a child after
fork(), `tracecc_parallel_for` runs serially. Threads: TRACECC_NUM_THREADS, else the CPUs
this process may run on.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import sys
import threading

from llvmlite import ir

from . import jit

SYMBOL = "tracecc_parallel_for"
MAX_THREADS = 64

# Work below which splitting does not pay, from benchmarks/llvm_micro.py --parallel on this
# 2-vCPU machine (docs/cpu-backend.md): a dispatch costs ~1-2 us, and when the other core is
# free an exp kernel ran 1.5-1.97x faster from 16K elements (13 us of work) up, a memory-bound
# fused kernel 1.2-2.2x from 64K; when the other core is busy, splitting costs at most that
# dispatch (the caller runs unclaimed chunks itself).
MIN_PARALLEL_WORK_NS = 20_000
# Idle workers spin this many cycle-counter ticks (~70-100 us here) before sleeping on a
# futex: long enough to bridge the gaps between the kernels of one training step.
DEFAULT_SPIN_CYCLES = 200_000
# Jobs are cut into up to this many chunks per thread, claimed dynamically: a thread that
# is descheduled (a busy shared machine) or wakes late delays a job by one chunk at most.
# On this VM an idle worker's wake-up took 1.7-3.8 ms at the 90th percentile; 16 instead
# of 4 took W1 after an idle gap from 4.0-4.7 to 3.6-4.3 ms (three paired runs, under load).
# Small kernels get fewer, bigger chunks (runner.CHUNK_WORK_NS).
CHUNKS_PER_THREAD = 16

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType(I8)
VOID = ir.VoidType()
BODY_TYPE = ir.FunctionType(VOID, [PTR, I64, I64])
PFOR_TYPE = ir.FunctionType(VOID, [PTR, PTR, I64, I64, I64])

_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine().lower())
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129  # the *_PRIVATE variants
_SUPPORTED = sys.platform.startswith("linux") and _SYS_FUTEX is not None


def num_threads() -> int:
    env = os.environ.get("TRACECC_NUM_THREADS")
    if env:
        return max(1, min(MAX_THREADS, int(env)))
    try:
        return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def worth_splitting(work_ns: float) -> bool:
    """Should a kernel with this much single-thread work (estimated) be split over threads?"""
    return work_ns >= MIN_PARALLEL_WORK_NS and num_threads() > 1


def declare(module: ir.Module) -> ir.Function:
    """Declare `tracecc_parallel_for` in a module being generated (idempotent)."""
    fn = module.globals.get(SYMBOL)
    return fn if fn is not None else ir.Function(module, PFOR_TYPE, SYMBOL)


def emit_parallel_for(builder: ir.IRBuilder, body: ir.Function, ctx, start, end, grain) -> None:
    """Emit a call that runs body(ctx, s, e) over [start, end) on the pool.

    `body` must have type void(ptr, i64, i64); ctx is any pointer (bitcast to i8*)."""
    fn = declare(builder.module)
    ctx = builder.bitcast(ctx, PTR) if ctx.type != PTR else ctx
    builder.call(fn, [builder.bitcast(body, PTR), ctx, start, end, grain])


# ------------------------------------------------------------------ the runtime, in IR
def _build_runtime(serial: bool) -> ir.Module:
    m = jit.new_module("tracecc_parallel_runtime")
    pfor = ir.Function(m, PFOR_TYPE, SYMBOL)

    if serial:
        body, ctx, start, end, _grain = pfor.args
        b = ir.IRBuilder(pfor.append_basic_block("entry"))
        run, done = pfor.append_basic_block("run"), pfor.append_basic_block("done")
        b.cbranch(b.icmp_signed("<", start, end), run, done)
        b.position_at_end(run)
        b.call(b.bitcast(body, BODY_TYPE.as_pointer()), [ctx, start, end])
        b.branch(done)
        b.position_at_end(done)
        b.ret_void()
        return m

    def glob(name, ty, init=0):
        g = ir.GlobalVariable(m, ty, f"pool.{name}")
        g.linkage = "internal"
        g.initializer = ir.Constant(ty, None if init is None else init)
        g.align = 64  # each on its own cache line: no false sharing between the hot words
        return g

    g_fn, g_ctx = glob("fn", PTR, None), glob("ctx", PTR, None)
    g_start, g_end, g_chunk = glob("start", I64), glob("end", I64), glob("chunk", I64)
    g_gen, g_done, g_sleepers = glob("gen", I32), glob("done", I32), glob("sleepers", I32)
    g_nchunks = glob("nchunks", I32)
    # (job generation << 32) | next unclaimed chunk: claiming with one compare-and-swap on
    # this word means a late worker can never take a chunk of a newer job with stale params
    g_claim = glob("claim", I64)
    g_nworkers, g_busy, g_quit = glob("nworkers", I32), glob("busy", I32), glob("quit", I32)
    g_spin = glob("spin", I64, DEFAULT_SPIN_CYCLES)
    g_start_gen = glob("start_gen", I32)  # gen when the workers were created: their first "seen"
    g_tids = ir.GlobalVariable(m, ir.ArrayType(I64, MAX_THREADS), "pool.tids")
    g_tids.linkage = "internal"
    g_tids.initializer = ir.Constant(ir.ArrayType(I64, MAX_THREADS), None)

    syscall = ir.Function(m, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    pthread_create = ir.Function(m, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]), "pthread_create")
    pthread_join = ir.Function(m, ir.FunctionType(I32, [I64, PTR]), "pthread_join")
    cycles = ir.Function(m, ir.FunctionType(I64, []), "llvm.readcyclecounter")
    if platform.machine().lower() in ("x86_64", "amd64"):
        pause_fn = ir.Function(m, ir.FunctionType(VOID, []), "llvm.x86.sse2.pause")
        pause_args = []
    else:
        pause_fn = ir.Function(m, ir.FunctionType(VOID, [I32]), "llvm.aarch64.hint")
        pause_args = [I32(1)]  # yield

    def futex(b, addr, op, val):
        b.call(syscall, [I64(_SYS_FUTEX), addr, I64(op), b.zext(val, I64) if val.type == I32 else val,
                         ir.Constant(PTR, None), ir.Constant(PTR, None), I64(0)])

    def size(ty):
        return ty.width // 8 if isinstance(ty, ir.IntType) else 8

    # Every access to a shared word is atomic (monotonic where ordering comes from elsewhere),
    # so reads that race with the next job's writes are defined, and the CAS on g_claim decides.
    def load(b, g, order="acquire"):
        return b.load_atomic(g, order, size(g.value_type))

    def store(b, v, g, order="release"):
        b.store_atomic(v, g, order, size(v.type))

    def wait_until_changed(b, fn, g, old, name):
        """Spin (with pause) for up to `spin` cycles until *g != old, then sleep on the futex."""
        t0 = b.call(cycles, [])
        spin_bb, sleep_bb, sleep_chk, out_bb = (fn.append_basic_block(f"{name}.{s}")
                                                for s in ("spin", "sleep", "check", "out"))
        b.branch(spin_bb)
        b.position_at_end(spin_bb)
        changed = b.icmp_unsigned("!=", load(b, g), old)
        b.call(pause_fn, pause_args)
        elapsed = b.sub(b.call(cycles, []), t0)
        timeout = b.icmp_unsigned(">", elapsed, load(b, g_spin, "monotonic"))
        go_on = fn.append_basic_block(f"{name}.spin.more")
        b.cbranch(changed, out_bb, go_on)
        b.position_at_end(go_on)
        b.cbranch(timeout, sleep_bb, spin_bb)
        b.position_at_end(sleep_bb)
        if g is g_gen:  # announce the sleep so the caller knows a wake-up syscall is needed
            b.atomic_rmw("add", g_sleepers, I32(1), "seq_cst")
        b.branch(sleep_chk)
        b.position_at_end(sleep_chk)
        still = b.icmp_unsigned("==", load(b, g, "seq_cst"), old)
        wait_bb = fn.append_basic_block(f"{name}.wait")
        woke_bb = fn.append_basic_block(f"{name}.woke")
        b.cbranch(still, wait_bb, woke_bb)
        b.position_at_end(wait_bb)
        futex(b, g, _FUTEX_WAIT, old)
        b.branch(sleep_chk)
        b.position_at_end(woke_bb)
        if g is g_gen:
            b.atomic_rmw("sub", g_sleepers, I32(1), "seq_cst")
        b.branch(out_bb)
        b.position_at_end(out_bb)

    def claim_and_run(b, fn, name):
        """Claim chunks of the current job until none is left, running each; returns after
        the last claim attempt. Each finished chunk counts in `done`; whoever finishes the
        job's last chunk wakes a caller sleeping on `done`."""
        loop_bb, try_bb, run_bb, out_bb = (fn.append_basic_block(f"{name}.{x}")
                                           for x in ("claim", "try", "run", "out"))
        b.branch(loop_bb)
        b.position_at_end(loop_bb)
        w = load(b, g_claim)
        nch = b.zext(load(b, g_nchunks, "monotonic"), I64)  # the CAS below validates it
        idx = b.and_(w, I64(0xFFFFFFFF))
        b.cbranch(b.icmp_unsigned("<", idx, nch), try_bb, out_bb)
        b.position_at_end(try_bb)
        st, en, ch, f, c = (load(b, g, "monotonic") for g in (g_start, g_end, g_chunk, g_fn, g_ctx))
        ok = b.extract_value(b.cmpxchg(g_claim, w, b.add(w, I64(1)), "acq_rel", "monotonic"), 1)
        b.cbranch(ok, run_bb, loop_bb)
        b.position_at_end(run_bb)
        lo = b.add(st, b.mul(idx, ch))
        hi = b.add(lo, ch)
        hi = b.select(b.icmp_signed("<", hi, en), hi, en)
        b.call(b.bitcast(f, BODY_TYPE.as_pointer()), [c, lo, hi])
        finished = b.add(b.atomic_rmw("add", g_done, I32(1), "acq_rel"), I32(1))
        last_bb = fn.append_basic_block(f"{name}.last")
        b.cbranch(b.icmp_unsigned("==", b.zext(finished, I64), nch), last_bb, loop_bb)
        b.position_at_end(last_bb)
        futex(b, g_done, _FUTEX_WAKE, I32(1))
        b.branch(loop_bb)
        b.position_at_end(out_bb)

    # worker(ptr arg): wait for a new job, claim chunks, repeat. A worker that wakes late
    # finds the chunks taken (the caller runs unclaimed chunks itself) and just waits again,
    # so a descheduled worker never holds a job up unless it is inside a chunk.
    worker = ir.Function(m, ir.FunctionType(PTR, [PTR]), "tracecc_pool_worker")
    worker.linkage = "internal"
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    seen0 = load(b, g_start_gen)
    entry_bb = b.block
    loop_bb = worker.append_basic_block("loop")
    b.branch(loop_bb)
    b.position_at_end(loop_bb)
    seen = b.phi(I32, "seen")
    seen.add_incoming(seen0, entry_bb)
    wait_until_changed(b, worker, g_gen, seen, "w")
    now = load(b, g_gen)
    quit_bb, work_bb = worker.append_basic_block("quit"), worker.append_basic_block("work")
    b.cbranch(b.icmp_unsigned("!=", load(b, g_quit), I32(0)), quit_bb, work_bb)
    b.position_at_end(quit_bb)
    b.ret(ir.Constant(PTR, None))
    b.position_at_end(work_bb)
    claim_and_run(b, worker, "w")
    seen.add_incoming(now, b.block)
    b.branch(loop_bb)

    # parallel_for(body, ctx, start, end, grain)
    body, ctx, start, end, grain = pfor.args
    b = ir.IRBuilder(pfor.append_basic_block("entry"))
    serial_bb, try_bb, par_bb = (pfor.append_basic_block(s) for s in ("serial", "try", "parallel"))
    ret_bb = pfor.append_basic_block("ret")
    n = b.sub(end, start)
    grain1 = b.select(b.icmp_signed("<", grain, I64(1)), I64(1), grain)
    nw = b.zext(load(b, g_nworkers), I64)
    small = b.or_(b.icmp_signed("<=", n, grain1), b.icmp_signed("==", nw, I64(0)))
    empty = b.icmp_signed("<=", n, I64(0))
    not_empty = pfor.append_basic_block("nonempty")
    b.cbranch(empty, ret_bb, not_empty)
    b.position_at_end(not_empty)
    b.cbranch(small, serial_bb, try_bb)
    b.position_at_end(serial_bb)
    b.call(b.bitcast(body, BODY_TYPE.as_pointer()), [ctx, start, end])
    b.branch(ret_bb)
    b.position_at_end(try_bb)
    got = b.extract_value(b.cmpxchg(g_busy, I32(0), I32(1), "acquire", "monotonic"), 1)
    b.cbranch(got, par_bb, serial_bb)
    b.position_at_end(par_bb)
    # chunks = min(CHUNKS_PER_THREAD * threads, ceil(n / grain)), each a whole number of grains
    blocks = b.sdiv(b.add(n, b.sub(grain1, I64(1))), grain1)
    want = b.mul(b.add(nw, I64(1)), I64(CHUNKS_PER_THREAD))
    want = b.select(b.icmp_signed("<", blocks, want), blocks, want)
    per = b.sdiv(b.add(blocks, b.sub(want, I64(1))), want)
    chunk = b.mul(per, grain1)
    nchunks = b.sdiv(b.add(n, b.sub(chunk, I64(1))), chunk)
    for v, g in ((b.bitcast(body, PTR), g_fn), (ctx, g_ctx), (start, g_start), (end, g_end),
                 (chunk, g_chunk), (b.trunc(nchunks, I32), g_nchunks), (I32(0), g_done)):
        store(b, v, g, "monotonic")
    newgen = b.add(load(b, g_gen, "monotonic"), I32(1))
    store(b, b.shl(b.zext(newgen, I64), I64(32)), g_claim, "seq_cst")
    store(b, newgen, g_gen, "seq_cst")
    wake_bb, run0_bb = pfor.append_basic_block("wake"), pfor.append_basic_block("run0")
    b.cbranch(b.icmp_unsigned("!=", load(b, g_sleepers, "seq_cst"), I32(0)), wake_bb, run0_bb)
    b.position_at_end(wake_bb)
    futex(b, g_gen, _FUTEX_WAKE, I32(0x7FFFFFFF))
    b.branch(run0_bb)
    b.position_at_end(run0_bb)
    claim_and_run(b, pfor, "c")
    # every chunk is claimed; wait for those still running on workers
    chk_bb, wait_bb, done_bb = (pfor.append_basic_block(s) for s in ("join.check", "join.wait", "join.done"))
    b.branch(chk_bb)
    b.position_at_end(chk_bb)
    d = load(b, g_done)
    b.cbranch(b.icmp_unsigned("==", b.zext(d, I64), nchunks), done_bb, wait_bb)
    b.position_at_end(wait_bb)
    wait_until_changed(b, pfor, g_done, d, "j")
    b.branch(chk_bb)
    b.position_at_end(done_bb)
    store(b, I32(0), g_busy)
    b.branch(ret_bb)
    b.position_at_end(ret_bb)
    b.ret_void()

    # int tracecc_pool_start(i32 nthreads): start nthreads-1 workers; returns how many started.
    # Workers are published (nworkers) only once all exist, so no job can miss one.
    start_fn = ir.Function(m, ir.FunctionType(I32, [I32]), "tracecc_pool_start")
    b = ir.IRBuilder(start_fn.append_basic_block("entry"))
    store(b, load(b, g_gen, "seq_cst"), g_start_gen, "seq_cst")
    want = b.sub(start_fn.args[0], I32(1))
    loop_bb, body_bb, out_bb = (start_fn.append_basic_block(s) for s in ("loop", "body", "out"))
    b.branch(loop_bb)
    b.position_at_end(loop_bb)
    i = b.phi(I32, "i")
    i.add_incoming(I32(0), start_fn.entry_basic_block)
    b.cbranch(b.icmp_signed("<", i, want), body_bb, out_bb)
    b.position_at_end(body_bb)
    slot = b.gep(g_tids, [I32(0), i], inbounds=True)
    arg = b.inttoptr(b.zext(b.add(i, I32(1)), I64), PTR)
    rc = b.call(pthread_create, [b.bitcast(slot, PTR), ir.Constant(PTR, None), b.bitcast(worker, PTR), arg])
    ok_bb = start_fn.append_basic_block("ok")
    b.cbranch(b.icmp_signed("==", rc, I32(0)), ok_bb, out_bb)
    b.position_at_end(ok_bb)
    i.add_incoming(b.add(i, I32(1)), ok_bb)
    b.branch(loop_bb)
    b.position_at_end(out_bb)
    store(b, i, g_nworkers, "seq_cst")
    b.ret(i)

    # void tracecc_pool_stop(): tell the workers to quit and join them
    stop = ir.Function(m, ir.FunctionType(VOID, []), "tracecc_pool_stop")
    b = ir.IRBuilder(stop.append_basic_block("entry"))
    nwk = load(b, g_nworkers)
    store(b, I32(0), g_nworkers)
    store(b, I32(1), g_quit)
    b.atomic_rmw("add", g_gen, I32(1), "seq_cst")
    futex(b, g_gen, _FUTEX_WAKE, I32(0x7FFFFFFF))
    loop_bb, body_bb, out_bb = (stop.append_basic_block(s) for s in ("loop", "body", "out"))
    b.branch(loop_bb)
    b.position_at_end(loop_bb)
    i = b.phi(I32, "i")
    i.add_incoming(I32(0), stop.entry_basic_block)
    b.cbranch(b.icmp_signed("<", i, nwk), body_bb, out_bb)
    b.position_at_end(body_bb)
    b.call(pthread_join, [b.load(b.gep(g_tids, [I32(0), i], inbounds=True)), ir.Constant(PTR, None)])
    i.add_incoming(b.add(i, I32(1)), body_bb)
    b.branch(loop_bb)
    b.position_at_end(out_bb)
    store(b, I32(0), g_quit)
    b.ret_void()

    # void tracecc_pool_forget(): after fork() the workers are gone; run serially from now on
    forget = ir.Function(m, ir.FunctionType(VOID, []), "tracecc_pool_forget")
    b = ir.IRBuilder(forget.append_basic_block("entry"))
    for g in (g_nworkers, g_busy, g_sleepers):
        store(b, I32(0), g)
    b.ret_void()

    # void tracecc_pool_set_spin(i64 cycles)
    setspin = ir.Function(m, ir.FunctionType(VOID, [I64]), "tracecc_pool_set_spin")
    b = ir.IRBuilder(setspin.append_basic_block("entry"))
    store(b, setspin.args[0], g_spin)
    b.ret_void()
    return m


class _Runtime:
    def __init__(self):
        self.lock = threading.Lock()
        self.compiled = None
        self.threads = 1
        self.serial = not _SUPPORTED

    def ensure(self) -> None:
        with self.lock:
            if self.compiled is not None:
                return
            # cached on disk like any generated code: a new process reloads it in ~2 ms
            self.compiled = jit.compile_module(_build_runtime(self.serial), "tracecc_parallel_runtime",
                                               cache=True)
            jit.register_symbol(SYMBOL, self.compiled.address(SYMBOL))
            self.pfor = self.compiled.cfunc(SYMBOL, None, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
            if not self.serial:
                self._start(num_threads())
                atexit.register(self.stop)
                os.register_at_fork(after_in_child=self._forget)

    def _start(self, n: int) -> None:
        start = self.compiled.cfunc("tracecc_pool_start", ctypes.c_int32, ctypes.c_int32)
        self.threads = start(n) + 1

    def stop(self) -> None:
        if self.compiled is not None and not self.serial:
            self.compiled.cfunc("tracecc_pool_stop", None)()
            self.threads = 1

    def _forget(self) -> None:
        if self.compiled is not None:
            self.compiled.cfunc("tracecc_pool_forget", None)()
            self.threads = 1

    def restart(self, n: int) -> None:
        self.ensure()
        with self.lock:
            if not self.serial:
                self.stop()
                self._start(max(1, min(MAX_THREADS, n)))


_runtime = _Runtime()


def ensure_runtime() -> None:
    """Compile the pool (once per process), start its threads, register `tracecc_parallel_for`.

    jit calls this by itself when a module it loads needs the symbol."""
    _runtime.ensure()


def pool_threads() -> int:
    """Threads a parallel_for uses now (1 = serial), counting the calling thread."""
    ensure_runtime()
    return _runtime.threads


def set_num_threads(n: int) -> None:
    """Restart the pool with n threads in all (1 = everything runs serially)."""
    _runtime.restart(n)


def set_spin_cycles(cycles: int) -> None:
    """How long idle workers spin (in cycle-counter ticks) before they sleep on a futex."""
    ensure_runtime()
    if not _runtime.serial:
        _runtime.compiled.cfunc("tracecc_pool_set_spin", None, ctypes.c_int64)(cycles)


def parallel_for(body_address: int, ctx: int, start: int, end: int, grain: int = 1) -> None:
    """Call the pool from Python (tests, benchmarks): body is a void(ptr, i64, i64) address."""
    ensure_runtime()
    _runtime.pfor(body_address, ctx, start, end, grain)


jit.register_provider(SYMBOL, ensure_runtime)
