"""parallel: tracecc_parallel_for covers [start, end) exactly once, in grain-sized chunks,
for uneven, empty and tiny ranges, nested and concurrent calls, and any thread count."""

import ctypes
import threading

import numpy as np
import pytest
from llvmlite import ir

from tracecc.codegen.llvm import jit, parallel

I32, I64 = ir.IntType(32), ir.IntType(64)


def _loop(b, fn, s, e, emit):
    entry = b.block
    loop, done = fn.append_basic_block("loop"), fn.append_basic_block("done")
    b.cbranch(b.icmp_signed("<", s, e), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(s, entry)
    emit(i)
    i2 = b.add(i, I64(1))
    i.add_incoming(i2, b.block)
    b.cbranch(b.icmp_signed("<", i2, e), loop, done)
    b.position_at_end(done)


@pytest.fixture(scope="module")
def kernels():
    return build_kernels()


def build_kernels():
    """ctx = {i32* counts, i64* chunk_len, i64 inner_grain}:
    mark(ctx, s, e): counts[i] += 1 for i in [s, e); chunk_len[s] = e - s
    run(ctx, start, end, grain): parallel_for(mark, ctx, start, end, grain)
    nested(ctx, start, end, grain): parallel_for(outer, ...), outer calls parallel_for(mark) on its chunk
    """
    m = jit.new_module("pfor_test")
    ctx_t = ir.LiteralStructType([I32.as_pointer(), I64.as_pointer(), I64])

    mark = ir.Function(m, parallel.BODY_TYPE, "mark")
    b = ir.IRBuilder(mark.append_basic_block("entry"))
    c = b.bitcast(mark.args[0], ctx_t.as_pointer())
    counts = b.load(b.gep(c, [I32(0), I32(0)]))
    lens = b.load(b.gep(c, [I32(0), I32(1)]))
    s, e = mark.args[1], mark.args[2]
    b.store(b.sub(e, s), b.gep(lens, [s]))

    def bump(i):
        p = b.gep(counts, [i])
        b.store(b.add(b.load(p), I32(1)), p)

    _loop(b, mark, s, e, bump)
    b.ret_void()

    outer = ir.Function(m, parallel.BODY_TYPE, "outer")
    b = ir.IRBuilder(outer.append_basic_block("entry"))
    c = b.bitcast(outer.args[0], ctx_t.as_pointer())
    parallel.emit_parallel_for(b, mark, outer.args[0], outer.args[1], outer.args[2],
                               b.load(b.gep(c, [I32(0), I32(2)])))
    b.ret_void()

    for name, body in (("run", mark), ("nested", outer)):
        fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [parallel.PTR, I64, I64, I64]), name)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        parallel.emit_parallel_for(b, body, fn.args[0], fn.args[1], fn.args[2], fn.args[3])
        b.ret_void()

    cm = jit.compile_module(m)
    sig = (None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
    return {k: cm.cfunc(k, *sig) for k in ("run", "nested")}, ctx_t


class Ctx(ctypes.Structure):
    _fields_ = [("counts", ctypes.c_void_p), ("lens", ctypes.c_void_p), ("inner_grain", ctypes.c_int64)]


def go(fn, start, end, grain, size=None, inner_grain=1):
    size = size if size is not None else max(end, 1)
    counts = np.zeros(size, np.int32)
    lens = np.full(size, -1, np.int64)
    ctx = Ctx(counts.ctypes.data, lens.ctypes.data, inner_grain)
    fn(ctypes.addressof(ctx), start, end, grain)
    return counts, lens


def chunks(lens):
    return [(int(s), int(s + n)) for s, n in enumerate(lens) if n >= 0]


@pytest.mark.parametrize("start,end,grain", [
    (0, 0, 1), (5, 5, 1), (9, 3, 1), (0, 1, 1), (0, 1, 64), (0, 2, 1), (0, 3, 1), (0, 7, 2),
    (0, 1000, 1), (0, 1000, 64), (0, 1001, 64), (3, 1000, 7), (17, 100_003, 256), (0, 129, 128),
    (0, 100, 0), (0, 100, -5), (0, 1 << 20, 4096),
])
def test_every_index_exactly_once(kernels, start, end, grain):
    fns, _ = kernels
    counts, lens = go(fns["run"], start, end, grain)
    want = np.zeros_like(counts)
    if end > start:
        want[start:end] = 1
    assert np.array_equal(counts, want)
    cs = chunks(lens)
    if end > start:
        assert cs[0][0] == start and cs[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(cs, cs[1:]))  # chunks tile the range
        g = max(grain, 1)
        assert all((e - s) % g == 0 for s, e in cs[:-1])  # whole grains except the last
        assert len(cs) <= parallel.CHUNKS_PER_THREAD * parallel.pool_threads()
    else:
        assert cs == []


def test_large_range_is_cut_into_chunks_for_every_thread(kernels):
    fns, _ = kernels
    n = parallel.pool_threads()
    _, lens = go(fns["run"], 0, 10_000, 1)
    assert len(chunks(lens)) == parallel.CHUNKS_PER_THREAD * n


def test_nested_call_runs_inline(kernels):
    fns, _ = kernels
    counts, _ = go(fns["nested"], 0, 50_000, 100, inner_grain=10)
    assert np.all(counts == 1)


def test_concurrent_callers_from_python_threads(kernels):
    fns, _ = kernels
    results = [None] * 4

    def worker(k):
        out = []
        for _ in range(25):
            counts, _ = go(fns["run"], 0, 20_000 + k, 16)
            out.append(bool(np.all(counts == 1)))
        results[k] = all(out)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [True] * 4


@pytest.mark.parametrize("threads", [1, 3])
def test_other_thread_counts(kernels, threads):
    fns, _ = kernels
    default = parallel.pool_threads()
    try:
        parallel.set_num_threads(threads)
        assert parallel.pool_threads() == threads
        counts, lens = go(fns["run"], 0, 1001, 1)
        assert np.all(counts == 1)
        assert len(chunks(lens)) == (1 if threads == 1 else parallel.CHUNKS_PER_THREAD * threads)
    finally:
        parallel.set_num_threads(default)
    assert parallel.pool_threads() == default


def test_sleeping_workers_wake_up(kernels):
    fns, _ = kernels
    parallel.set_spin_cycles(0)  # workers go straight to the futex
    try:
        for _ in range(20):
            counts, lens = go(fns["run"], 0, 4096, 64)
            assert np.all(counts == 1)
    finally:
        parallel.set_spin_cycles(parallel.DEFAULT_SPIN_CYCLES)


def test_threshold_helper():
    assert not parallel.worth_splitting(1_000)
    assert parallel.worth_splitting(10 * parallel.MIN_PARALLEL_WORK_NS) == (parallel.num_threads() > 1)


def test_stress_back_to_back_restarts_and_sleeps(kernels):
    """Many short jobs with workers alternately spinning and sleeping, across pool restarts:
    a lost wake-up or a worker missing a job would hang here (the whole file runs in seconds)."""
    fns, _ = kernels
    default = parallel.pool_threads()
    try:
        for round_ in range(6):
            parallel.set_num_threads(2 + round_ % 2)
            parallel.set_spin_cycles(0 if round_ % 2 else parallel.DEFAULT_SPIN_CYCLES)
            for n in range(1, 300, 7):
                counts, _ = go(fns["run"], 0, n, 1)
                assert np.all(counts == 1)
    finally:
        parallel.set_spin_cycles(parallel.DEFAULT_SPIN_CYCLES)
        parallel.set_num_threads(default)


FORK_SCRIPT = r"""
import ctypes, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import test_llvm_parallel as t
fns, _ = t.build_kernels()
counts, _ = t.go(fns["run"], 0, 100_000, 64)          # pool running in the parent
assert np.all(counts == 1)
pid = os.fork()
if pid == 0:                                           # child: the workers do not exist here
    counts, _ = t.go(fns["run"], 0, 100_000, 64)
    os._exit(0 if np.all(counts == 1) else 3)
_, status = os.waitpid(pid, 0)
counts, _ = t.go(fns["run"], 0, 100_000, 64)          # the parent's pool still works
print("ok", os.waitstatus_to_exitcode(status), bool(np.all(counts == 1)))
"""


def test_fork_child_runs_serially_and_parent_keeps_its_pool():
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT, here], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "0", "True"]
