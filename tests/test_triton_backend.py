"""The Triton backend around the generated kernels: the "triton"/"triton_interpret" backends
in compile(), TritonProgram's plan (configs chosen once, CUDA-graph capture on the second
call, fresh outputs), the autotuner, runtime/cuda.py against a fake driver library (there
is no GPU here), and benchmarks/gpu_check.py --dry-run."""

import os

if os.environ.get("TRACECC_TEST_COMPILE_ONLY") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import ctypes  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tracecc.runtime import cuda  # noqa: E402
from tracecc.runtime.errors import (  # noqa: E402
    CudaDriverError, CudaOutOfMemoryError, CudaUnavailableError, TraceccError,
)

import tracecc as tc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- a fake libcuda
class FakeLib:
    """Stands in for libcuda: each cu* symbol is a Python function that records its call and
    writes outputs through the byref() arguments, as the driver would."""

    def __init__(self, devices=1, memory=1 << 30, missing=()):
        self.calls: list[tuple] = []
        self.fail: dict[str, int] = {}
        self.devices, self.memory, self.used = devices, memory, 0
        self.blocks: dict[int, int] = {}
        self.next_ptr = 0x7F0000000000
        self.handles = 0x100
        impls = {
            "cuInit": lambda flags: 0,
            "cuDeviceGetCount": lambda n: self._out(n, self.devices),
            "cuDeviceGet": lambda d, i: self._out(d, i),
            "cuDeviceGetName": self._name,
            "cuDeviceGetAttribute": lambda v, attr, dev: self._out(v, {75: 9, 76: 0, 16: 132}.get(attr, 1)),
            "cuDeviceTotalMem_v2": lambda v, dev: self._out(v, self.memory),
            "cuDevicePrimaryCtxRetain": lambda c, dev: self._out(c, self._handle()),
            "cuCtxSetCurrent": lambda c: 0,
            "cuStreamCreate": lambda s, flags: self._out(s, self._handle()),
            "cuStreamSynchronize": lambda s: 0,
            "cuMemAlloc_v2": self._alloc,
            "cuMemFree_v2": self._free,
            "cuMemGetInfo_v2": lambda f, t: self._out(f, self.memory - self.used)
            or self._out(t, self.memory),
            "cuMemcpyHtoDAsync_v2": lambda dst, src, n, s: 0,
            "cuMemcpyDtoHAsync_v2": lambda dst, src, n, s: 0,
            "cuMemcpyDtoDAsync_v2": lambda dst, src, n, s: 0,
            "cuMemsetD8Async": lambda dst, v, n, s: 0,
            "cuEventCreate": lambda e, flags: self._out(e, self._handle()),
            "cuEventRecord": lambda e, s: 0,
            "cuEventSynchronize": lambda e: 0,
            "cuEventElapsedTime": lambda ms, a, b: self._out(ms, 2.5),
            "cuEventDestroy_v2": lambda e: 0,
            "cuStreamBeginCapture_v2": lambda s, mode: 0,
            "cuStreamEndCapture": lambda s, g: self._out(g, self._handle()),
            "cuGraphInstantiateWithFlags": lambda e, g, flags: self._out(e, self._handle()),
            "cuGraphLaunch": lambda e, s: 0,
            "cuGraphExecDestroy": lambda e: 0,
            "cuGraphDestroy": lambda g: 0,
            "cuGetErrorName": self._error_name,
        }
        for sym, impl in impls.items():
            if sym not in missing:
                setattr(self, sym, self._wrap(sym, impl))

    def _wrap(self, sym, impl):
        def fn(*args):
            self.calls.append((sym, args))
            if sym in self.fail:
                return self.fail[sym]
            return impl(*args) or 0
        return fn

    @staticmethod
    def _out(ref, value):
        ref._obj.value = value  # byref(x)._obj is x

    def _handle(self):
        self.handles += 0x10
        return self.handles

    def _name(self, buf, n, dev):
        buf.value = b"Fake H200"

    def _alloc(self, ref, size):
        if self.used + size > self.memory:
            return 2  # CUDA_ERROR_OUT_OF_MEMORY
        ptr, self.next_ptr = self.next_ptr, self.next_ptr + size
        self.blocks[ptr] = size
        self.used += size
        self._out(ref, ptr)

    def _free(self, ptr):
        self.used -= self.blocks.pop(ptr)

    def _error_name(self, rc, out):
        names = {2: b"CUDA_ERROR_OUT_OF_MEMORY", 700: b"CUDA_ERROR_ILLEGAL_ADDRESS"}
        out._obj.value = names.get(rc, b"CUDA_ERROR_X")

    def names(self):
        return [sym for sym, _ in self.calls]


@pytest.fixture
def fake():
    lib = FakeLib()
    return lib, cuda.Driver(lib)


# ---------------------------------------------------------------- runtime/cuda.py
def test_no_libcuda_is_a_clear_error_not_an_oserror(monkeypatch):
    monkeypatch.setattr(cuda, "_driver", None)
    monkeypatch.setenv("TRACECC_LIBCUDA", "/nonexistent/libcuda.so.1")
    with pytest.raises(CudaUnavailableError) as e:
        cuda.get_driver()
    assert e.value.code == "TC301" and "TRACECC_LIBCUDA" in str(e.value)
    assert cuda.is_available() is False and cuda.device_count() == 0


def test_driver_checks_every_call_and_names_the_error(fake):
    lib, drv = fake
    assert drv.out("device_count", ctypes.c_int) == 1
    lib.fail["cuStreamSynchronize"] = 700
    with pytest.raises(CudaDriverError,
                       match=r"cuStreamSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS \(700\)"):
        drv.call("stream_synchronize", None)
    lib.fail["cuMemAlloc_v2"] = 2
    with pytest.raises(CudaOutOfMemoryError) as e:
        drv.mem_alloc(1024)
    assert e.value.code == "TC303" and isinstance(e.value, CudaDriverError)


def test_driver_binds_older_symbol_names_and_reports_missing_ones():
    lib = FakeLib(missing=("cuEventDestroy_v2",))
    lib.cuEventDestroy = lib._wrap("cuEventDestroy", lambda e: 0)
    drv = cuda.Driver(lib)
    drv.call("event_destroy", 1)
    assert lib.names()[-1] == "cuEventDestroy"
    assert drv.fns["event_elapsed_time"][0] == "cuEventElapsedTime"  # no _v2 in this "driver"
    with pytest.raises(CudaUnavailableError, match="cuMemAlloc_v2"):
        cuda.Driver(FakeLib(missing=("cuMemAlloc_v2",)))
    drv = cuda.Driver(FakeLib(missing=("cuGraphLaunch",)))
    with pytest.raises(CudaUnavailableError, match="cuGraphLaunch"):
        drv.call("graph_launch", 1, 2)


def test_caching_allocator_rounds_reuses_and_counts(fake):
    lib, drv = fake
    alloc = cuda.CachingAllocator(drv)
    a = alloc.alloc(1000)
    assert a.size == 1024 and a.nbytes == 1000 and alloc.memory_allocated() == 1024
    b = alloc.alloc(3 << 20)  # above 1 MiB: multiples of 2 MiB
    assert b.size == 4 << 20
    ptr_a = a.ptr
    a.free()
    a.free()  # a second free() of the same handle is a no-op
    assert alloc.memory_allocated() == 4 << 20 and alloc.memory_reserved() == (4 << 20) + 1024
    c = alloc.alloc(600)  # same rounded size: the cached block, no driver call
    assert c.ptr == ptr_a and alloc.stats["cache_hits"] == 1 and alloc.stats["driver_allocs"] == 2
    assert alloc.max_memory_allocated() == (4 << 20) + 1024
    del c  # garbage collection returns the block too
    b.free()
    alloc.reset_peak_memory_stats()
    assert alloc.memory_allocated() == 0 and alloc.max_memory_allocated() == 0
    alloc.empty_cache()
    assert alloc.memory_reserved() == 0 and lib.used == 0 and lib.names().count("cuMemFree_v2") == 2
    with pytest.raises(CudaDriverError, match="freed twice"):
        alloc._release(cuda.DeviceBuffer(0x1234, 8, 512, alloc))


def test_caching_allocator_empties_its_cache_before_giving_up(fake):
    lib, drv = fake
    lib.memory = 8 << 20
    alloc = cuda.CachingAllocator(drv)
    alloc.alloc(6 << 20).free()  # cached: the driver still holds 6 MiB
    big = alloc.alloc(4 << 20)  # does not fit next to the cached block: cache emptied, retried
    assert big.size == 4 << 20 and alloc.memory_reserved() == 4 << 20
    with pytest.raises(CudaOutOfMemoryError, match="out of device memory allocating"):
        alloc.alloc(6 << 20)


def test_cuda_device_setup_copies_timing_and_graphs(fake):
    lib, drv = fake
    dev = cuda.CudaDevice(0, driver=drv)
    assert dev.name == "Fake H200" and dev.capability == (9, 0) and dev.multiprocessors == 132
    names = lib.names()
    # the primary context (Triton's launcher makes it current too), then a non-blocking stream
    order = [names.index(n) for n in ("cuDevicePrimaryCtxRetain", "cuCtxSetCurrent", "cuStreamCreate")]
    assert order == sorted(order)
    assert [a for s, a in lib.calls if s == "cuStreamCreate"][0][1] == cuda.CU_STREAM_NON_BLOCKING
    x = np.arange(10, dtype=np.float32)
    buf = dev.upload(x)
    sym, args = lib.calls[-1]
    assert sym == "cuMemcpyHtoDAsync_v2" and args[0] == buf.ptr and args[2] == 40 and args[3] == dev.stream
    out = dev.copy_to_host(buf, np.empty(10, np.float32))
    assert out.shape == (10,) and lib.names()[-2:] == ["cuMemcpyDtoHAsync_v2", "cuStreamSynchronize"]
    with pytest.raises(ValueError):
        dev.copy_to_device(buf, np.zeros(11, np.float32))
    assert dev.memory_allocated() == 512 and dev.mem_get_info() == ((1 << 30) - 512, 1 << 30)
    calls = []
    assert dev.time_ms(lambda: calls.append(1), repeat=5) == 0.5 and len(calls) == 5  # 2.5 ms / 5
    graph = dev.capture(lambda: calls.append(2))
    assert lib.names()[-3:] == ["cuStreamBeginCapture_v2", "cuStreamEndCapture",
                                "cuGraphInstantiateWithFlags"]
    graph.replay()
    assert lib.calls[-1] == ("cuGraphLaunch", (graph.exec, dev.stream))
    graph.close()
    assert lib.names()[-2:] == ["cuGraphExecDestroy", "cuGraphDestroy"]
    with pytest.raises(RuntimeError, match="boom"):  # a failed capture is ended and dropped
        dev.capture(lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert lib.names()[-2:] == ["cuStreamEndCapture", "cuGraphDestroy"]
    with pytest.raises(CudaUnavailableError, match="cuda:3 does not exist"):
        cuda.CudaDevice(3, driver=drv)


# ---------------------------------------------------------------- backends and the program runner
pytest.importorskip("triton")

from tracecc.codegen import backends  # noqa: E402
from tracecc.codegen.triton import launch  # noqa: E402
from tracecc.codegen.triton.backend import HostMemory, TritonProgram, gpu_available  # noqa: E402
from tracecc.passes.kernel_ir import (  # noqa: E402
    Buffer, Const, Index, Kernel, Load, LoopVar, Op, Phase, Program, Store,
)
from tracecc.runtime.dtypes import float32  # noqa: E402


def test_backend_registry_without_a_gpu():
    assert gpu_available() is False
    assert backends.get_backend("triton_interpret").name == "triton_interpret"
    assert backends.get_backend("auto").name != "triton_interpret"  # never chosen on its own
    with pytest.raises(TraceccError, match="not available"):
        backends.get_backend("triton")


def test_require_triton_refuses_the_other_mode():
    from tracecc.runtime.errors import TritonUnavailableError
    with pytest.raises(TritonUnavailableError, match="imported for the interpreter"):
        launch.require_triton(interpret=False)


def test_compile_a_function_and_a_training_step_with_triton_interpret(monkeypatch):
    from tracecc.codegen.triton import backend
    launches = []
    real_launch = backend.TritonProgram.launch
    monkeypatch.setattr(backend.TritonProgram, "launch",
                        lambda self: (launches.append(self), real_launch(self))[1])
    F = tc.nn.functional
    x = tc.randn(6, 10)
    y = tc.compile(lambda x: F.softmax(x * 2, -1), backend="triton_interpret")(x)
    np.testing.assert_allclose(y.numpy(), F.softmax(x * 2, -1).numpy(), rtol=1e-6, atol=1e-7)

    def make():
        tc.manual_seed(0)
        return tc.nn.Sequential(tc.nn.Linear(12, 8), tc.nn.ReLU(), tc.nn.Linear(8, 3))

    eager_m, comp_m = make(), make()
    eager_o = tc.optim.SGD(eager_m.parameters(), lr=0.1, momentum=0.9)
    comp_o = tc.optim.SGD(comp_m.parameters(), lr=0.1, momentum=0.9)
    xs, ys = tc.randn(5, 12), tc.tensor(np.array([0, 2, 1, 2, 0]))

    def step(model, opt, x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    cstep = tc.compile(step, backend="triton_interpret")
    launches.clear()
    for _ in range(3):  # the first call creates the momentum buffers: it runs eagerly, once
        le, lc = step(eager_m, eager_o, xs, ys), cstep(comp_m, comp_o, xs, ys)
        assert abs(float(le) - float(lc)) < 1e-6
    for p, q in zip(eager_m.parameters(), comp_m.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert len(cstep.fallbacks) <= 1 and len(launches) >= 2  # later steps ran as Triton kernels


def _two_kernel_program():
    n = 12
    i = LoopVar("i0", n)
    x = Load("x", Index.affine([(i, 1)]), float32)
    k1 = Kernel("poi_fused_mul_0", "pointwise", (i,), (Phase(stores=(
        Store("t", Index.affine([(i, 1)]), Op("mul", (x, x), float32)),)),))
    k2 = Kernel("poi_fused_add_1", "pointwise", (i,), (Phase(stores=(
        Store("y", Index.affine([(i, 1)]),
              Op("add", (Load("t", Index.affine([(i, 1)]), float32), x), float32)),)),))
    return Program("p", {"x": Buffer("x", n, float32, "input"), "t": Buffer("t", n, float32, "temp"),
                         "y": Buffer("y", n, float32, "output")}, [k1, k2], ["x"], ["y"])


class GraphMemory(HostMemory):
    """Interpreter memory with a pretend CUDA graph (replay re-runs what was captured)."""

    def __init__(self):
        self.captures = 0
        self.device = self

    def capture(self, fn):
        self.captures += 1
        memory = self

        class Graph:
            replays = 0

            def replay(self):
                Graph.replays += 1
                fn()

        memory.graph_cls = Graph
        return Graph()


def test_program_plan_graph_capture_and_fresh_outputs(tmp_path):
    memory = GraphMemory()
    tp = TritonProgram(_two_kernel_program(), source_dir=tmp_path, memory=memory, graphs=True)
    results = []
    for call in range(4):
        x = np.arange(12, dtype=np.float32) + call
        (y,) = tp.run([x])
        np.testing.assert_array_equal(y, x * x + x)
        results.append(y)
    # configs chosen once; the second call captures, later calls replay the graph
    assert [fn for fn, _ in tp.configs] == ["triton_poi_fused_mul_0", "triton_poi_fused_add_1"]
    assert memory.captures == 1 and memory.graph_cls.replays == 3
    # outputs are fresh arrays: a later call never overwrote an earlier result
    np.testing.assert_array_equal(results[0], np.arange(12.0) ** 2 + np.arange(12.0))
    # inputs of another dtype or layout are converted
    (y,) = tp.run([np.arange(12, dtype=np.float64)[::-1].copy()[::-1]])
    np.testing.assert_array_equal(y, np.arange(12.0) ** 2 + np.arange(12.0))


def test_autotuner_times_candidates_once_and_remembers(tmp_path, monkeypatch):
    prog = _two_kernel_program()
    two = [launch._cfg(XBLOCK=4), launch._cfg(XBLOCK=16)]
    monkeypatch.setattr(launch, "configs", lambda spec, interpret, max_rblock=4096: list(two))
    monkeypatch.setattr(launch, "TUNE_MIN_ELEMENTS", 0)  # these 12 elements are worth it here
    timings = iter([5.0, 1.0, 3.0, 2.0])  # kernel 1: XBLOCK=16 wins; kernel 2: XBLOCK=16 wins
    tuner_path = tmp_path / "autotune.json"

    def program():
        tp = TritonProgram(prog, source_dir=tmp_path, autotune=True)
        tp.autotuner = launch.Autotuner(lambda fn: (fn(), next(timings))[1], path=tuner_path,
                                        device_name="fake")
        return tp

    tp = program()
    (y,) = tp.run([np.arange(12, dtype=np.float32)])
    np.testing.assert_array_equal(y, np.arange(12.0) ** 2 + np.arange(12.0))
    assert [c for _, c in tp.configs] == [two[1], two[1]]
    assert len(tp.autotuner.tuned) == 2 and len(json.loads(tuner_path.read_text())) == 2
    tp = program()  # a new program reads the choices back: no timing (the iterator is empty)
    tp.run([np.arange(12, dtype=np.float32)])
    assert [c for _, c in tp.configs] == [two[1], two[1]] and tp.autotuner.tuned == []


def test_launches_that_update_in_place_are_tuned_on_scratch_copies(tmp_path, monkeypatch):
    """y = x + 1 written into x's own buffer (an SGD update in place): timing each candidate
    there would add once per run. Tuning writes a scratch copy; only the chosen launch lands."""
    i = LoopVar("i0", 12)
    x = Load("x", Index.affine([(i, 1)]), float32)
    bump = Kernel("poi_fused_add_0", "pointwise", (i,), (Phase(stores=(
        Store("y", Index.affine([(i, 1)]), Op("add", (x, Const(1.0, float32)), float32)),)),))
    prog = Program("p", {"x": Buffer("x", 12, float32, "input"), "y": Buffer("y", 12, float32, "output")},
                   [bump], ["x"], ["y"])
    two = [launch._cfg(XBLOCK=4), launch._cfg(XBLOCK=16)]
    monkeypatch.setattr(launch, "configs", lambda spec, interpret, max_rblock=4096: list(two))
    monkeypatch.setattr(launch, "TUNE_MIN_ELEMENTS", 0)
    tp = TritonProgram(prog, source_dir=tmp_path, autotune=True)
    timings = iter([2.0, 1.0])
    tp.autotuner = launch.Autotuner(lambda fn: (fn(), fn(), next(timings))[2], path=tmp_path / "a.json")
    tp.memory.scratch_copy = _counting(tp.memory.scratch_copy)
    tp.bound = {"x": tp._own("x")}
    tp.bound["y"], tp.aliased = tp.bound["x"], {"y"}  # as run_device binds an in-place output
    tp.memory.upload(tp.bound["x"], np.arange(12, dtype=np.float32))
    tp.launch()
    np.testing.assert_array_equal(tp.memory.download(tp.bound["x"]), np.arange(12.0) + 1)
    assert tp.configs == [("triton_poi_fused_add_0", two[1])] and tp.memory.scratch_copy.calls == 1


def test_only_launches_with_enough_work_are_tuned():
    spec = launch.LaunchSpec
    assert not launch.worth_tuning(spec("k", "pointwise", ("x",), numel=4096))
    assert launch.worth_tuning(spec("k", "pointwise", ("x",), numel=1 << 24))
    assert launch.worth_tuning(spec("k", "rows", ("x",), numel=32768, rnumel=4096))
    assert not launch.worth_tuning(spec("k", "rows", ("x",), numel=512, rnumel=10))
    assert launch.worth_tuning(spec("k", "matmul", ("a",), numel=1, mnk=(512, 128, 784)))  # W4's layer 1
    assert not launch.worth_tuning(spec("k", "matmul", ("a",), numel=1, mnk=(512, 10, 64)))


def _counting(fn):
    def counted(*args):
        counted.calls += 1
        return fn(*args)

    counted.calls = 0
    return counted


def test_autotuner_skips_failing_configs_and_kernels_that_cannot_rerun(tmp_path):
    spec = launch.LaunchSpec("k", "pointwise", ("x",), numel=8)
    kernel = launch.TritonKernel("k", "source", [spec], "pointwise")
    good, bad = launch._cfg(XBLOCK=8), launch._cfg(XBLOCK=4)

    def run(config):
        if config == bad:
            raise RuntimeError("out of resources")

    tuner = launch.Autotuner(lambda fn: (fn(), 1.0)[1], path=tmp_path / "a.json")
    assert tuner.choose(kernel, spec, [bad, good], run) == good
    with pytest.raises(TraceccError, match="every config"):
        launch.Autotuner(lambda fn: fn(), path=tmp_path / "b.json").choose(kernel, spec, [bad, bad], run)


def test_dead_temporary_stores_are_dropped(tmp_path):
    prog = _two_kernel_program()
    i = prog.kernels[0].outer[0]
    extra = Store("dead", Index.affine([(i, 1)]), Load("x", Index.affine([(i, 1)]), float32))
    k1 = prog.kernels[0]
    prog.kernels[0] = Kernel(k1.name, k1.kind, k1.outer, (Phase(stores=k1.phases[0].stores + (extra,)),))
    prog.buffers["dead"] = Buffer("dead", 12, float32, "temp")
    tp = TritonProgram(prog, source_dir=tmp_path)
    assert "dead" not in tp.args and "dead_ptr" not in tp.kernels[0].source
    (y,) = tp.run([np.ones(12, np.float32)])
    np.testing.assert_array_equal(y, np.full(12, 2.0))


# ---------------------------------------------------------------- benchmarks/gpu_check.py
def test_gpu_check_dry_run(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    out = tmp_path / "check.json"
    rc = gpu_check.main(["--dry-run", "--json", str(out), "--skip", "w4", "matmul"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = json.loads(out.read_text())["rows"]
    names = [r["name"] for r in rows]
    assert all(r["status"] != "FAIL" for r in rows)
    for expected in ("rows softmax (looped)", "scatter index_add (atomics)", "matmul + bias + relu epilogue",
                     "W1 pointwise: correct", "W2 layernorm: correct", "W3 softmax: correct"):
        assert expected in names
    assert sum(r["status"] == "ok" for r in rows) >= 18
    assert "section" in text and "0 failed" in text  # the one table at the end


def test_failed_graph_capture_falls_back_to_launching(tmp_path):
    class NoGraphs(GraphMemory):
        def capture(self, fn):
            raise CudaDriverError("cuStreamBeginCapture_v2 failed: "
                                  "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (900)")

    tp = TritonProgram(_two_kernel_program(), source_dir=tmp_path, memory=NoGraphs(), graphs=True)
    tp.run([np.ones(12, np.float32)])
    with pytest.warns(UserWarning, match="capture failed"):
        (y,) = tp.run([np.full(12, 2, np.float32)])
    np.testing.assert_array_equal(y, np.full(12, 6.0))
    assert tp.graphs is False and tp.graph is None


@pytest.mark.parametrize("spec", [
    launch.LaunchSpec("p", "pointwise", (), numel=67_108_864),
    launch.LaunchSpec("p", "pointwise", (), numel=100),
    launch.LaunchSpec("r", "rows", (), numel=32768, rnumel=4096, persistent=True),
    launch.LaunchSpec("r", "rows", (), numel=3, rnumel=33, persistent=True),
    launch.LaunchSpec("r", "rows", (), numel=1, rnumel=100_000, persistent=False),
    launch.LaunchSpec("m", "matmul", (), numel=1, mnk=(4096, 4096, 4096)),
    launch.LaunchSpec("m", "matmul", (), numel=4, mnk=(6, 3, 5)),
    launch.LaunchSpec("m", "matmul", (), numel=1, mnk=(64, 10, 128), dot=False),
], ids=lambda s: f"{s.kind}-{s.numel}-{s.rnumel}-{s.mnk}")
@pytest.mark.parametrize("interpret", [True, False])
def test_configs_fit_their_launch(spec, interpret):
    def pow2(v):
        return v > 0 and v & (v - 1) == 0

    configs = launch.configs(spec, interpret, max_rblock=4096)
    assert configs and len(set(configs)) == len(configs)
    assert len(configs) == 1 if interpret or spec.kind == "matmul" and not spec.dot else True
    for c in configs:
        p = dict(c.params)
        assert all(pow2(v) for v in p.values()) and pow2(c.num_warps) and c.num_warps <= 16
        grid = launch.grid(spec, c)
        if spec.kind == "pointwise":
            assert p["XBLOCK"] <= max(1024, 1 << (spec.numel - 1).bit_length())
            assert grid[0] * p["XBLOCK"] >= spec.numel
        elif spec.kind == "rows":
            assert p["XBLOCK"] <= max(1, 1 << (spec.numel - 1).bit_length())
            assert (p["RBLOCK"] >= spec.rnumel) == spec.persistent  # persistent: the row in one block
            assert p["XBLOCK"] * p["RBLOCK"] <= 8192 * (2 if spec.persistent else 1)
        else:
            assert min(p["BLOCK_M"], p["BLOCK_N"], p["BLOCK_K"]) >= 16  # tl.dot's minimum
            assert grid[1] == spec.numel


# ---------------------------------------------------------------- a fake libcuda.so, through real ctypes
FAKE_LIBCUDA_C = r"""
#include <stdlib.h>
#include <string.h>
typedef int CUresult;
typedef unsigned long long CUdeviceptr;
static int inited, launches;
static size_t used;
CUresult cuInit(unsigned int f) { inited = 1; return 0; }
CUresult cuDeviceGetCount(int *n) { if (!inited) return 3; *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int i) { if (i != 0) return 101; *d = 0; return 0; }
CUresult cuDeviceGetName(char *name, int len, int d) { strncpy(name, "Fake GPU (C)", len); return 0; }
CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
    *v = attr == 75 ? 9 : attr == 16 ? 132 : 0; return 0;
}
CUresult cuDeviceTotalMem_v2(size_t *b, int d) { *b = (size_t)80 << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { *c = (void *)0x1234; return 0; }
CUresult cuCtxSetCurrent(void *c) { return c == (void *)0x1234 ? 0 : 201; }
CUresult cuStreamCreate(void **s, unsigned int flags) { *s = (void *)(0x5000 + (size_t)flags); return 0; }
CUresult cuStreamSynchronize(void *s) { return s == (void *)0x5001 ? 0 : 400; }
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
    void *m = n > ((size_t)1 << 40) ? 0 : malloc(n);
    if (!m) return 2;
    *p = (CUdeviceptr)m; used += n; return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)p); return 0; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *t = (size_t)80 << 30; *f = *t - used; return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) {
    memcpy((void *)d, s, n); return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) {
    memcpy(d, (void *)s, n); return 0;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void *st) {
    memcpy((void *)d, (void *)s, n); return 0;
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void *st) {
    memset((void *)d, v, n); return 0;
}
CUresult cuEventCreate(void **e, unsigned int f) { *e = malloc(8); return 0; }
CUresult cuEventRecord(void *e, void *s) { return 0; }
CUresult cuEventSynchronize(void *e) { return 0; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) { *ms = 1.5f; return 0; }
CUresult cuEventDestroy_v2(void *e) { free(e); return 0; }
CUresult cuStreamBeginCapture_v2(void *s, int mode) { return mode == 2 ? 0 : 1; }
CUresult cuStreamEndCapture(void *s, void **g) { *g = (void *)0x6000; return 0; }
CUresult cuGraphInstantiateWithFlags(void **e, void *g, unsigned long long f) {
    *e = (void *)0x7000; return 0;
}
CUresult cuGraphLaunch(void *e, void *s) { launches++; return e == (void *)0x7000 ? 0 : 400; }
CUresult cuGraphExecDestroy(void *e) { return 0; }
CUresult cuGraphDestroy(void *g) { return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) {
    *s = r == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR_FAKE"; return 0;
}
int fake_graph_launches(void) { return launches; }
"""


def test_runtime_through_real_ctypes_on_a_fake_libcuda(tmp_path, monkeypatch):
    """The bindings' C signatures on a real shared library: 64-bit device pointers, byref
    outputs, strings, floats. Device memory is host memory here, so data round-trips."""
    import shutil
    import subprocess
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler")
    src, lib_path = tmp_path / "fake_cuda.c", tmp_path / "libfakecuda.so"
    src.write_text(FAKE_LIBCUDA_C)
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(lib_path), str(src)], check=True)
    monkeypatch.setattr(cuda, "_driver", None)
    monkeypatch.setenv("TRACECC_LIBCUDA", str(lib_path))
    assert cuda.is_available() and cuda.device_count() == 1
    dev = cuda.CudaDevice(0)
    assert (dev.name, dev.capability, dev.multiprocessors, dev.total_memory) == ("Fake GPU (C)", (9, 0), 132,
                                                                                80 << 30)
    assert dev.stream == 0x5001  # created non-blocking; synchronize() passes it back intact
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    a = dev.upload(x)
    assert a.ptr > 2 ** 32  # a 64-bit address survives c_uint64
    b = dev.alloc(x.nbytes)
    dev.copy(b, a)
    np.testing.assert_array_equal(dev.copy_to_host(b, np.empty(1000, np.float32)), x)
    dev.fill_bytes(b, 0)
    assert not dev.copy_to_host(b, np.empty(1000, np.float32)).any()
    assert dev.mem_get_info()[0] == (80 << 30) - 2 * 4096
    assert dev.time_ms(lambda: None, repeat=3) == pytest.approx(0.5)
    graph = dev.capture(lambda: None)
    graph.replay()
    graph.replay()
    assert dev.driver.lib.fake_graph_launches() == 2
    graph.close()
    with pytest.raises(CudaOutOfMemoryError, match="CUDA_ERROR_OUT_OF_MEMORY"):
        dev.alloc(1 << 41)
    with pytest.raises(CudaDriverError, match=r"cuStreamSynchronize failed: CUDA_ERROR_FAKE \(400\)"):
        dev.driver.call("stream_synchronize", 0x5000)
    a.free(), b.free()
    dev.empty_cache()
    assert dev.memory_reserved() == 0 and dev.max_memory_allocated() == 2 * 4096


def test_device_arguments_are_typed_by_dtype_name():
    """What Triton's launcher makes of a DeviceArg is what offline compiles are given."""
    import triton

    from tracecc.codegen.triton.scalar import SIGNATURE
    from tracecc.runtime import dtypes

    class Buf:
        ptr = 0x7F0000001000

    for d in dtypes.ALL_DTYPES:
        assert triton.runtime.jit.mangle_type(launch.DeviceArg(Buf(), d)) == "*" + SIGNATURE[d.name]
