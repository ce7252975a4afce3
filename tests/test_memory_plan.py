"""Memory planning: temporaries share an arena by lifetime; parameter updates happen in
place only when nothing reads the old value afterwards."""

import numpy as np

import tracecc as tc
import tracecc.nn as nn
import tracecc.optim as optim
from tracecc.passes.kernel_ir import (
    Buffer, Index, Kernel, Load, LoopVar, Op, Phase, Program, Store,
)
from tracecc.passes.memory import plan
from tracecc.runtime.dtypes import float32

from train_steps import train_step


def _copy_kernel(name, src, dst, n=1000, op="neg"):
    i = LoopVar("i0", n)
    idx = Index.affine([(i, 1)])
    return Kernel(name, "pointwise", (i,), (Phase(stores=(Store(dst, idx, Op(op, (Load(src, idx, float32),),
                                                                                  float32)),)),))


def _program(kernels, temps, n=1000, inputs=("x",), outputs=("y",)):
    bufs = {b: Buffer(b, n, float32, "input") for b in inputs}
    bufs.update({b: Buffer(b, n, float32, "temp") for b in temps})
    bufs.update({b: Buffer(b, n, float32, "output") for b in outputs})
    return Program("p", bufs, kernels, list(inputs), list(outputs))


def test_temporaries_with_disjoint_lifetimes_share_memory():
    # x -> t1 -> t2 -> t3 -> y: t1 is dead once t2 exists, so t3 can take t1's place
    ks = [_copy_kernel("k0", "x", "t1"), _copy_kernel("k1", "t1", "t2"),
          _copy_kernel("k2", "t2", "t3"), _copy_kernel("k3", "t3", "y")]
    mp = plan(_program(ks, ["t1", "t2", "t3"]))
    assert mp.temp_bytes == 3 * 4032 and mp.arena_bytes == 2 * 4032
    assert mp.offsets["t1"] == mp.offsets["t3"] != mp.offsets["t2"]


def test_live_temporaries_never_overlap():
    ks = [_copy_kernel("k0", "x", "t1"), _copy_kernel("k1", "x", "t2"),
          Kernel("k2", "pointwise", (LoopVar("i0", 1000),), (Phase(stores=(Store(
              "y", Index.affine([(LoopVar("i0", 1000), 1)]),
              Op("add", (Load("t1", Index.affine([(LoopVar("i0", 1000), 1)]), float32),
                         Load("t2", Index.affine([(LoopVar("i0", 1000), 1)]), float32)), float32)),)),))]
    mp = plan(_program(ks, ["t1", "t2"]))
    assert mp.offsets["t1"] != mp.offsets["t2"] and mp.arena_bytes == 2 * 4032


def test_inplace_update_only_when_the_old_value_is_dead():
    update = _copy_kernel("upd", "w", "w_new")
    later_read = _copy_kernel("later", "w", "y")
    p = _program([update, later_read], [], inputs=("w",), outputs=("w_new", "y"))
    assert plan(p, {"w_new": "w"}).inplace == {}  # "later" still reads the old w
    p = _program([later_read, update], [], inputs=("w",), outputs=("w_new", "y"))
    assert plan(p, {"w_new": "w"}).inplace == {"w_new": "w"}


def test_compiled_sgd_step_updates_parameters_in_their_own_arrays():
    def setup():
        tc.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
        return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    (m0, o0), (m1, o1) = setup(), setup()
    x, y = tc.randn(5, 12), tc.randint(0, 3, (5,))


    eager, compiled = train_step(m0, o0), tc.compile(train_step(m1, o1), backend="llvm")
    arrays = [p._data for p in m1.parameters()]
    for _ in range(4):
        eager(x, y), compiled(x, y)
    for p0, p1, a in zip(m0.parameters(), m1.parameters(), arrays):
        assert p1._data is a  # the same memory, updated in place
        np.testing.assert_allclose(p1.detach().numpy(), p0.detach().numpy(), rtol=1e-6, atol=1e-7)
    runner = compiled._entries[-1].runner
    assert len(runner.compiled.memory.inplace) == 8  # 4 parameters and their momentum buffers


def test_perf_log_profiles_kernels_without_applying_updates_twice(monkeypatch, capsys):
    monkeypatch.setenv("TRACECC_LOGS", "perf")
    p = tc.tensor([1.0, 2.0, 3.0])
    g = tc.tensor([0.5, 0.5, 0.5])

    @tc.compile(backend="llvm")
    def update(g):
        with tc.no_grad():
            p.sub_(g)

    update(g)
    np.testing.assert_array_equal(p.numpy(), [0.5, 1.5, 2.5])  # once, despite the profiling run
    err = capsys.readouterr().err
    assert "GB/s" in err and "GFLOP/s" in err


def test_kernel_times_for_the_benchmark_overhead_column():
    f = tc.compile(lambda x: tc.softmax(x * 2, 1), backend="llvm")
    assert f.kernel_times() is None  # nothing compiled yet
    f(tc.randn(8, 16))
    times = f.kernel_times()
    assert times and all(t > 0 for t in times.values())


def test_cache_key_records_whether_kernels_are_split_over_threads(tmp_path, monkeypatch):
    """A program lowered for one thread must not be reused where two are available."""
    import sys
    sys.path.insert(0, "tests")
    from graph_builder import trace

    from tracecc.codegen.llvm.runner import CompiledProgram
    from tracecc.passes.schedule import schedule

    monkeypatch.setenv("TRACECC_CACHE_DIR", str(tmp_path))
    prog, _ = schedule(trace(lambda x: tc.exp(x) * 2, ((1 << 16,), tc.float32)))
    monkeypatch.setenv("TRACECC_NUM_THREADS", "1")
    assert not CompiledProgram(prog, cache=True).compiled.from_cache
    monkeypatch.setenv("TRACECC_NUM_THREADS", "2")
    assert not CompiledProgram(prog, cache=True).compiled.from_cache  # another key
    assert CompiledProgram(prog, cache=True).compiled.from_cache
