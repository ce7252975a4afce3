"""One-shot check of the Triton backend on an NVIDIA GPU: every kernel kind against numpy,
then W1-W3 (../shared/BENCHMARKS.md, GPU sizes) timed against the device's copy
bandwidth, launch overhead with and without CUDA graphs, fused matmul throughput, the
W4 step's device time, and the whole W4 step compiled on cuda tensors (wall time per
call, CUDA graphs on and off). Prints one table; exits 1 if any result is wrong.

    python benchmarks/gpu_check.py                 # NVIDIA GPU + triton (no torch), < 5 min
    python benchmarks/gpu_check.py --dry-run       # no GPU: Triton's interpreter, tiny sizes
    python benchmarks/gpu_check.py --json out.json # also keep the rows as JSON

Each workload runs through the real front end: tracecc.compile(fn) with a backend that
lowers the scheduled kernels to Triton and keeps the TritonProgram, so the timed kernels
are exactly the ones compile() runs. Times are medians of CUDA-event measurements of the
kernels alone (inputs already on the device). A dry run exercises every code path; its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

import numpy as np

BUDGET_S = 270  # stop starting new sections after this, to stay under 5 minutes
PEERS_TIMEOUT_S = 180  # gpu_peers.py (PyTorch, torch.compile) after that


def use_checkout_if_not_installed() -> None:
    """On a bare GPU machine tracecc is not installed: import it from this checkout, mapping
    tracecc.runtime/.passes/.codegen to the top-level folders as pyproject's package-dir does."""
    import importlib.abc
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("tracecc") is not None:
        return
    root = Path(__file__).resolve().parent.parent
    folders = {"tracecc": "tracecc", "tracecc.runtime": "runtime", "tracecc.passes": "passes",
               "tracecc.codegen": "codegen"}

    class CheckoutFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name not in folders:
                return None
            folder = root / folders[name]
            return importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])

    sys.meta_path.insert(0, CheckoutFinder())


def keep_torch_out() -> None:
    """Triton 3.6 imports torch for its driver whenever it can (codegen-facts §2.2), and the
    GPU image has torch: block it, so this process runs tracecc's own torch-free driver (as
    a user without torch would); gpu_peers.py times PyTorch in another process. Triton 3.9
    uses torch only if it is already imported, and blocking it there breaks its specializer."""
    from importlib.metadata import version
    if tuple(int(p) for p in version("triton").split(".")[:2]) < (3, 9):
        sys.modules.setdefault("torch", None)


class Check:
    def __init__(self, dry_run: bool, has_torch: bool = False):
        self.dry = dry_run
        self.has_torch = has_torch
        self.device = "interpreter" if dry_run else "cuda"
        self.rows: list[dict] = []
        self.failed = False
        self.t0 = time.perf_counter()
        self.captured: list = []
        from tracecc.codegen.backends import register_backend
        from tracecc.codegen.triton.backend import compile_triton

        import tracecc as tc
        self.tc = tc
        self.options = None

        def capture(graph, log=None):
            runner = compile_triton(graph, log, device=self.device, options=self.options)
            self.captured.append(runner)
            return runner

        register_backend("gpu_check", capture, doc="benchmarks/gpu_check.py: triton, program kept")

    # ------------------------------------------------------------ reporting
    def row(self, section, name, value, status="", detail=""):
        self.rows.append(dict(section=section, name=name, value=value, status=status, detail=detail))
        if status == "FAIL":
            self.failed = True
        print(f"  {section:<8} {name:<40} {value:<28} {status:<5} {detail}", flush=True)

    def out_of_time(self) -> bool:
        return time.perf_counter() - self.t0 > BUDGET_S

    def table(self) -> str:
        w = [max(len(str(r[k])) for r in self.rows + [dict(section="section", name="check", value="value",
                                                              status="ok?", detail="detail")])
             for k in ("section", "name", "value", "status")]
        head = f"{'section':<{w[0]}}  {'check':<{w[1]}}  {'value':<{w[2]}}  {'ok?':<{w[3]}}  detail"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['section']:<{w[0]}}  {r['name']:<{w[1]}}  {r['value']:<{w[2]}}  "
                         f"{r['status']:<{w[3]}}  {r['detail']}")
        return "\n".join(lines)

    # ------------------------------------------------------------ helpers
    def compile(self, fn, *arrays, options=None):
        """compile(fn) through the capturing backend; returns (outputs as numpy, program)."""
        tc = self.tc
        self.options = options
        before = len(self.captured)
        out = tc.compile(fn, backend="gpu_check")(*[tc.from_numpy(a) for a in arrays])
        if len(self.captured) == before:
            raise RuntimeError("compile() did not reach the backend")
        runner = self.captured[-1]
        if not hasattr(runner, "compiled"):
            raise RuntimeError("the graph fell back to the interpreter (not lowered to Triton)")
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().numpy() for o in outs], runner.compiled

    def kernel_time_ms(self, tp, repeat: int = 10, trials: int = 5) -> float:
        """Median time of the program's kernels alone (no copies, no graph)."""
        timer = tp.memory.timer
        if self.dry:
            repeat = trials = 1
        tp._launch_plan()
        return statistics.median(timer(lambda: [tp._launch_plan() for _ in range(repeat)]) / repeat
                                 for _ in range(trials))

    def compare(self, section, name, got, want, rtol, atol, tp=None, extra=""):
        """One row: do all outputs match (allclose, NaN where NaN)? err/tol is the worst
        |got - want| / (atol + rtol |want|): below 1 passes."""
        got = got if isinstance(got, (list, tuple)) else [got]
        want = want if isinstance(want, (list, tuple)) else [want]
        ok, err = len(got) == len(want), 0.0
        for g, w in zip(got, want):
            g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
            if g.shape != w.shape:
                ok, err = False, math.inf
                continue
            ok &= bool(np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True))
            both_nan = np.isnan(g) & np.isnan(w)
            ratio = np.where(both_nan, 0.0, np.abs(g - w) / (atol + rtol * np.abs(w)))
            err = max(err, float(np.max(ratio, initial=0.0)) if not np.isnan(ratio).any() else math.inf)
        detail = ""
        if tp is not None:
            detail = f"{len(tp.kernels)} kernels: " + ",".join(sorted({k.kind for k in tp.kernels}))
        self.row(section, name, f"err/tol {err:.2g}", "ok" if ok else "FAIL", (detail + " " + extra).strip())
        return ok

    def guarded(self, section, name, fn):
        if self.out_of_time():
            self.row(section, name, "skipped", "", "time budget")
            return
        try:
            fn()
        except Exception as e:
            self.row(section, name, type(e).__name__, "FAIL", str(e).splitlines()[0][:120])
            if os.environ.get("TRACECC_VERBOSE"):
                traceback.print_exc()


# ---------------------------------------------------------------- sections
def environment(c: Check):
    from tracecc.codegen.triton.launch import require_triton
    triton = require_triton(interpret=c.dry)  # the mode is fixed at triton's first import
    if c.dry:
        c.row("env", "device", "triton interpreter (cpu)", "", f"triton {triton.__version__}")
        return
    from tracecc.runtime import cuda
    dev = cuda.get_device()
    free, total = dev.mem_get_info()
    c.row("env", "device", dev.name[:28], "", f"sm_{dev.capability[0]}{dev.capability[1]}, "
          f"{dev.multiprocessors} SMs, {total / 2**30:.0f} GiB ({free / 2**30:.0f} free), "
          f"triton {triton.__version__}")


def correctness(c: Check):
    """Every kernel kind through compile(), against eager tracecc (numpy)."""
    tc = c.tc
    F = tc.nn.functional
    from tracecc.codegen.triton.lower import Options
    rng = np.random.default_rng(0)
    small = c.dry
    R, C = (6, 40) if small else (512, 1000)
    looped = Options(max_rblock=16) if small else Options(max_rblock=1024)
    wide = (4, 70) if small else (64, 6000)

    def randn(*shape, dtype=np.float32):
        return np.asarray(rng.standard_normal(shape)).astype(dtype)

    def case(name, fn, arrays, rtol=1e-4, atol=1e-5, options=None):
        def run():
            got, tp = c.compile(fn, *arrays, options=options)
            want = fn(*[tc.from_numpy(a) for a in arrays])
            want = want if isinstance(want, (tuple, list)) else (want,)
            c.compare("correct", name, got, [w.detach().numpy() for w in want], rtol, atol, tp)
        c.guarded("correct", name, run)

    x, w, b = randn(R, C), randn(C), randn(C)
    case("pointwise gelu_tanh(x*w+b)*sigmoid(x)",
         lambda x, w, b: F.gelu(x * w + b, approximate="tanh") * tc.sigmoid(x),
         [randn(R * C), randn(), randn()])
    case("pointwise bf16 in, f32 math, bf16 out", lambda x: tc.exp(x) * 2 - x,
         [randn(R * 8).astype(tc.bfloat16.np)], rtol=2e-2, atol=2e-2)
    case("rows softmax (persistent)", lambda x: tc.softmax(x, -1), [x])
    case("rows softmax (looped)", lambda x: tc.softmax(x, -1), [randn(*wide)], options=looped)
    case("rows layer_norm", lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5), [x, w, b])
    case("rows log_softmax + gather (cross-entropy)",
         lambda x, y: F.cross_entropy(x, y), [x, rng.integers(0, C, R)])
    case("rows argmax / argmin", lambda x: (x.argmax(1), x.argmin(1)), [x])
    case("rows column sum, full sum", lambda x: (x.sum(0), x.sum()), [x], rtol=1e-4, atol=1e-3)
    M, K, N = (20, 24, 12) if small else (512, 768, 384)
    case("matmul + bias + relu epilogue", lambda a, w, b: F.relu(a @ w.T + b),
         [randn(M, K), randn(N, K), randn(N)], rtol=1e-4, atol=1e-4)
    case("matmul batched", lambda a, b: a @ b, [randn(3, M, K), randn(3, K, N)], rtol=1e-4, atol=1e-4)
    case("matmul f16 operands", lambda a, b: a @ b,
         [randn(M, K, dtype=np.float16), randn(K, N, dtype=np.float16)], rtol=2e-2, atol=2e-2)
    case("gather index_select", lambda x, i: x.index_select(0, i) * 2, [x, rng.integers(0, R, R // 2)])
    case("scatter index_add (atomics)", lambda x, i, s: x.index_add(0, i, s),
         [x, rng.integers(0, 4, R), randn(R, C)])
    case("copy cat", lambda a, b: tc.cat([a, b * 2], 1), [x, randn(R, 3)])

    def mlp_step():
        B = 8 if small else 512
        dims = (20, 16, 8, 4) if small else (784, 128, 64, 10)

        def make():
            tc.manual_seed(0)
            nn = tc.nn
            return nn.Sequential(nn.Linear(dims[0], dims[1]), nn.ReLU(), nn.Linear(dims[1], dims[2]),
                                 nn.ReLU(), nn.Linear(dims[2], dims[3]))

        def step(model, opt, x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        eager_m, comp_m = make(), make()
        eager_o = tc.optim.SGD(eager_m.parameters(), lr=0.01)
        comp_o = tc.optim.SGD(comp_m.parameters(), lr=0.01)
        xs, ys = tc.from_numpy(randn(B, dims[0])), tc.from_numpy(rng.integers(0, dims[3], B))
        c.options = None
        cstep = tc.compile(step, backend="gpu_check")
        for _ in range(2):
            step(eager_m, eager_o, xs, ys)
            cstep(comp_m, comp_o, xs, ys)
        tp = c.captured[-1].compiled
        worst = max(float(np.max(np.abs(p.detach().numpy() - q.detach().numpy())))
                    for p, q in zip(eager_m.parameters(), comp_m.parameters()))
        ok = worst < 1e-4
        c.row("correct", "MLP train step (fwd+bwd+SGD), 2 steps", f"max |dparam| {worst:.2g}",
              "ok" if ok else "FAIL",
              f"{len(tp.kernels)} kernels: " + ",".join(sorted({k.kind for k in tp.kernels})))

    c.guarded("correct", "MLP train step", mlp_step)


def copy_bandwidth(c: Check) -> float:
    """GB/s of a large device-to-device copy (read + write bytes), median of trials."""
    if c.dry:
        a = np.ones(8 << 20, np.float32)
        out = np.empty_like(a)
        t = statistics.median(_wall_ms(lambda: np.copyto(out, a)) for _ in range(5))
        gbs = 2 * a.nbytes / t / 1e6
        c.row("bw", "copy bandwidth (numpy, host)", f"{gbs:.0f} GB/s", "", "dry run: host memcpy")
        return gbs
    from tracecc.runtime import cuda
    dev = cuda.get_device()
    nbytes = 1 << 30
    src, dst = dev.alloc(nbytes), dev.alloc(nbytes)
    dev.fill_bytes(src, 1)
    dev.copy(dst, src)
    t = statistics.median(dev.time_ms(lambda: dev.copy(dst, src), repeat=10) for _ in range(5))
    src.free(), dst.free()
    dev.empty_cache()
    gbs = 2 * nbytes / t / 1e6
    c.row("bw", "copy bandwidth (cuMemcpyDtoD, 1 GiB)", f"{gbs:.0f} GB/s", "", f"{t:.3f} ms per copy")
    return gbs


def _wall_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def workloads(c: Check, bandwidth: float):
    """W1-W3 at the GPU sizes (tiny in a dry run): correctness, then kernel time vs the floor."""
    tc = c.tc
    F = tc.nn.functional
    rng = np.random.default_rng(1)
    n1, (r2, c2) = (4096, (16, 64)) if c.dry else (67_108_864, (32768, 4096))
    os.environ["TRACECC_AUTOTUNE"] = "1"

    def gelu_tanh(v):
        return 0.5 * v * (1 + np.tanh(0.7978845608028654 * (v + 0.044715 * v ** 3)))

    def w1():
        x = rng.standard_normal(n1, dtype=np.float32)
        w, b = np.float32(0.8), np.float32(0.1)
        t0 = time.perf_counter()
        (y,), tp = c.compile(lambda x, w, b: F.gelu(x * w + b, approximate="tanh") * tc.sigmoid(x),
                             x, np.array(w), np.array(b))
        first = time.perf_counter() - t0
        ok = c.compare("W1", "W1 pointwise: correct", y, gelu_tanh(x * w + b) * (1 / (1 + np.exp(-x))),
                       1e-4, 1e-5, tp, f"first call {first:.1f} s")
        timed(c, "W1", f"W1 pointwise {n1:,}", tp, 8 * n1, bandwidth, ok)

    def w2():
        x = rng.standard_normal((r2, c2), dtype=np.float32)
        w, b = rng.standard_normal(c2, dtype=np.float32), rng.standard_normal(c2, dtype=np.float32)
        t0 = time.perf_counter()
        (y,), tp = c.compile(lambda x, w, b: F.layer_norm(x, (c2,), w, b, 1e-5), x, w, b)
        first = time.perf_counter() - t0
        mu = x.mean(1, keepdims=True)
        var = ((x - mu) ** 2).mean(1, keepdims=True)
        want = (x - mu) / np.sqrt(var + 1e-5) * w + b
        ok = c.compare("W2", "W2 layernorm: correct", y, want, 1e-4, 1e-4, tp, f"first call {first:.1f} s")
        timed(c, "W2", f"W2 layernorm {r2}x{c2}", tp, 8 * r2 * c2, bandwidth, ok)

    def w3():
        x = rng.standard_normal((r2, c2), dtype=np.float32)
        t0 = time.perf_counter()
        (y,), tp = c.compile(lambda x: tc.softmax(x, -1), x)
        first = time.perf_counter() - t0
        e = np.exp(x - x.max(1, keepdims=True))
        ok = c.compare("W3", "W3 softmax: correct", y, e / e.sum(1, keepdims=True), 1e-4, 1e-6, tp,
                       f"first call {first:.1f} s")
        timed(c, "W3", f"W3 softmax {r2}x{c2}", tp, 8 * r2 * c2, bandwidth, ok)

    for name, fn in (("W1", w1), ("W2", w2), ("W3", w3)):
        c.guarded(name, name, fn)


def timed(c: Check, section, name, tp, nbytes, bandwidth, ok):
    ms = c.kernel_time_ms(tp)
    gbs = nbytes / ms / 1e6
    floor = nbytes / bandwidth / 1e6
    configs = "; ".join(f"{fn.removeprefix('triton_')}: {cfg}" for fn, cfg in tp.configs)
    c.row(section, name, f"{ms:.3f} ms {gbs:.0f} GB/s", "",
          f"{gbs / bandwidth * 100:.0f}% of copy, {ms / floor:.2f}x floor ({floor:.3f} ms); {configs}")


def launch_overhead(c: Check):
    """A dozen small kernels per step (fusion off): Python launches vs one CUDA graph replay."""
    n = 1024 if c.dry else 16384

    def run():
        os.environ["TRACECC_FUSION"] = "0"
        try:
            def chain(x):
                for i in range(6):
                    x = (x + 1.0) * 0.5
                return x
            x = np.random.default_rng(2).standard_normal(n, dtype=np.float32)
            (y,), tp = c.compile(chain, x)
        finally:
            os.environ.pop("TRACECC_FUSION", None)
        want = x
        for _ in range(6):
            want = (want + 1.0) * 0.5
        k = len(tp.plan)
        c.compare("launch", f"{k}-kernel chain (fusion off): correct", y, want, 1e-6, 1e-6, tp)
        reps = 1 if c.dry else 2000
        if c.dry:
            py = _wall_ms(lambda: [tp._launch_plan() for _ in range(reps)]) / reps
            c.row("launch", f"{k} launches from Python", f"{py * 1e3:.0f} us/step", "",
                  "interpreter: no graphs")
            return
        dev = tp.memory.device
        py = dev.host_time_ms(tp._launch_plan, repeat=reps)
        graph = dev.capture(tp._launch_plan)
        try:
            replay = dev.host_time_ms(graph.replay, repeat=reps)
        finally:
            graph.close()
        c.row("launch", f"{k} launches from Python", f"{py * 1e3:.1f} us/step", "",
              f"{py * 1e3 / k:.1f} us per launch (host)")
        c.row("launch", f"{k} launches as one CUDA graph", f"{replay * 1e3:.1f} us/step", "",
              f"{py / replay:.1f}x fewer us than Python launches")

    c.guarded("launch", "launch overhead", run)


def matmul_throughput(c: Check):
    tc = c.tc
    F = tc.nn.functional
    from tracecc.codegen.triton.lower import get_float32_matmul_precision, set_float32_matmul_precision
    n = 64 if c.dry else 4096
    rng = np.random.default_rng(3)
    a, w, b = (rng.standard_normal(s, dtype=np.float32) for s in ((n, n), (n, n), (n,)))
    want = np.maximum(a @ w.T + b, 0)
    old = get_float32_matmul_precision()
    for precision, rtol in (("highest", 1e-4), ("high", 1e-3), ("medium", 2e-2)):
        def run(precision=precision, rtol=rtol):
            set_float32_matmul_precision(precision)
            try:
                (y,), tp = c.compile(lambda a, w, b: F.relu(a @ w.T + b), a, w, b)
            finally:
                set_float32_matmul_precision(old)
            ok = c.compare("matmul", f"mm+bias+relu {n}^3 f32 ({precision}): correct", y, want, rtol,
                           rtol * n ** 0.5, tp)
            ms = c.kernel_time_ms(tp, repeat=3, trials=3)
            tflops = 2 * n ** 3 / ms / 1e9
            cfg = "; ".join(str(cfg) for _, cfg in tp.configs)
            c.row("matmul", f"mm+bias+relu {n}^3 f32 ({precision})", f"{ms:.3f} ms {tflops:.1f} TFLOP/s", "",
                  cfg if ok else "(wrong result: time not meaningful)")
            for _, _, timings in tp.autotuner.tuned if tp.autotuner else ():
                c.row("matmul", f"  {precision}: {len(timings)} configs tuned", "", "", "; ".join(
                    f"{cfg} {ms:.3f} ms" for cfg, ms in sorted(timings.items(), key=lambda t: t[1])))

        c.guarded("matmul", f"matmul {precision}", run)


def kernel_profile(tp) -> list[tuple[str, float, object]]:
    """(kernel function, ms, config) of each launch of the plan, timed alone. Launches that
    update buffers in place apply their update again: for timing only. Events around a
    Python launch: a kernel shorter than the launch itself (~20 us) reads as the launch."""
    out = []
    for (fn, names, kwargs), (name, config) in zip(tp.plan, tp.configs):
        args = [tp.bound[n] for n in names]
        out.append((name, tp.memory.timer(lambda: fn(*args, **kwargs)), config))
    return out


def mlp_step_time(c: Check):
    """W4's step (fwd + bwd + SGD) as compiled kernels replayed from a CUDA graph. Parameters
    stay on the device between replays; host copies are not included (cuda tensors are
    later work), so this is the device-side step time."""
    tc = c.tc
    F = tc.nn.functional
    nn = tc.nn
    for batch in ((64,) if c.dry else (512, 4096)):
        def run(batch=batch):
            tc.manual_seed(0)
            model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                  nn.Linear(64, 10))
            opt = tc.optim.SGD(model.parameters(), lr=0.01)
            rng = np.random.default_rng(4)
            x = tc.from_numpy(rng.standard_normal((batch, 784), dtype=np.float32))
            y = tc.from_numpy(rng.integers(0, 10, batch))

            def step(x, y):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss

            c.options = None
            tc.compile(step, backend="gpu_check")(x, y)
            tp = c.captured[-1].compiled
            if c.dry:
                ms = _wall_ms(tp.launch)
                c.row("W4", f"W4 MLP step batch {batch} (kernels)", f"{ms:.1f} ms", "",
                      f"{len(tp.plan)} launches, interpreter")
            else:
                dev = tp.memory.device
                tp.launch()  # the second launch captures the graph
                graph_ms = dev.host_time_ms(tp.launch, repeat=200)
                py_ms = dev.host_time_ms(tp._launch_plan, repeat=200)
                c.row("W4", f"W4 MLP step batch {batch} (kernels)", f"{graph_ms * 1e3:.0f} us/step", "",
                      f"{len(tp.plan)} launches; graph replay (Python launches: {py_ms * 1e3:.0f} us)")
            slowest = sorted(kernel_profile(tp), key=lambda t: -t[1])[:4]
            c.row("W4", f"W4 batch {batch}: slowest kernels", f"{sum(t[1] for t in slowest) * 1e3:.0f} us", "",
                  "; ".join(f"{name.removeprefix('triton_')} {ms * 1e3:.0f} us ({cfg})" for name, ms, cfg in slowest))

        c.guarded("W4", f"W4 batch {batch}", run)


def compiled_cuda_step(c: Check):
    """W4's whole step compiled on cuda tensors (tracecc.compile with backend "auto": the
    parameters, grads and batch live on the device; kernels read and update them in place):
    three steps against the same steps eager on the cpu, then the wall time per step
    as a user sees it (guards, launches or graph replay, the final synchronize), with CUDA
    graphs on and off. The dry run uses the emulated test device."""
    old = {k: os.environ.get(k) for k in ("TRACECC_CUDA_EMULATE", "TRACECC_CUDA_GRAPHS")}
    if c.dry:
        os.environ["TRACECC_CUDA_EMULATE"] = "1"
    try:
        for batch in ((4,) if c.dry else (512, 4096)):
            for graphs in ("1", "0"):
                os.environ["TRACECC_CUDA_GRAPHS"] = graphs
                c.guarded("W4cuda", f"W4 compiled cuda batch {batch}",
                          lambda batch=batch, graphs=graphs: _compiled_cuda_step(c, batch, graphs == "1"))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _compiled_cuda_step(c: Check, batch: int, graphs: bool):
    tc = c.tc
    F, nn = tc.nn.functional, tc.nn
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    runs = {}
    for device in ("cpu", "cuda"):
        tc.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                              nn.Linear(64, 10)).to(device)
        opt = tc.optim.SGD(model.parameters(), lr=0.01)
        xs, ys = tc.from_numpy(x).to(device), tc.from_numpy(y).to(device)

        def step(x, y, model=model, opt=opt):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        if device == "cuda":
            step = tc.compile(step)
        t0 = time.perf_counter()
        losses = [step(xs, ys)]
        first = time.perf_counter() - t0
        losses += [step(xs, ys) for _ in range(2)]  # on cuda the third call captures the graph
        if device == "cuda" and not all(t.is_cuda for t in [*losses, *model.parameters()]):
            raise RuntimeError("a result left the device")
        runs[device] = [float(v) for v in losses] + [p.detach().cpu().numpy() for p in model.parameters()]
        if device == "cuda":
            mode = "graph replay" if graphs else "kernels launched from Python"
            if c.dry:
                c.row("W4cuda", f"W4 compiled cuda step batch {batch} ({'graphs' if graphs else 'no graphs'})",
                      "n/a", "", f"emulated device: {mode}")
            else:
                dev = tc.runtime.cuda.get_device()
                ms = dev.host_time_ms(lambda: step(xs, ys), repeat=100)
                c.row("W4cuda", f"W4 compiled cuda step batch {batch} ({'graphs' if graphs else 'no graphs'})",
                      f"{ms * 1e3:.0f} us/step", "", f"wall time per call incl. guards; {mode}; "
                      f"first call {first:.1f} s")
    c.compare("W4cuda", f"W4 compiled cuda vs eager cpu, 3 steps, batch {batch}"
              f"{'' if graphs else ' (no graphs)'}", runs["cuda"], runs["cpu"], 1e-4, 1e-5)


def eager_cuda(c: Check):
    """Eager ops on cuda tensors (single-op Triton kernels, codegen/triton/eager.py) against
    numpy, and two eager W4 SGD steps on cuda against the same steps on the cpu. The dry run
    uses the emulated test device (TRACECC_CUDA_EMULATE=1)."""
    tc = c.tc
    F = tc.nn.functional
    nn = tc.nn
    old = os.environ.get("TRACECC_CUDA_EMULATE")
    if c.dry:
        os.environ["TRACECC_CUDA_EMULATE"] = "1"
    try:
        _eager_cuda(c, tc, F, nn)
    finally:
        if old is None:
            os.environ.pop("TRACECC_CUDA_EMULATE", None)
        else:
            os.environ["TRACECC_CUDA_EMULATE"] = old


def _eager_cuda(c: Check, tc, F, nn):
    rng = np.random.default_rng(5)
    R, C = (4, 24) if c.dry else (256, 1000)
    a = rng.standard_normal((R, C), dtype=np.float32)
    b = rng.standard_normal((C // 2, C), dtype=np.float32)
    ops = {
        "x*2+exp(x)": (lambda x, w: x * 2 + tc.exp(x), lambda x, w: x * 2 + np.exp(x)),
        "softmax rows": (lambda x, w: F.softmax(x, -1),
                         lambda x, w: np.exp(x - x.max(-1, keepdims=True))
                         / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)),
        "sum(0)": (lambda x, w: x.sum(0), lambda x, w: x.sum(0)),
        "x @ w.T (view)": (lambda x, w: x @ w.T, lambda x, w: x @ w.T),
        "x[::2, idx]": (lambda x, w: x[::2, tc.tensor([3, 0, 3])], lambda x, w: x[::2][:, [3, 0, 3]]),
    }
    for name, (fn, ref) in ops.items():
        def run(fn=fn, ref=ref):
            got = fn(tc.from_numpy(a).cuda(), tc.from_numpy(b).cuda())
            if not got.is_cuda:
                raise RuntimeError("the result left the device")
            c.compare("eager", f"eager cuda {name}", got.cpu().numpy(), ref(a, b), 1e-4, 1e-4)
        c.guarded("eager", f"eager cuda {name}", run)

    batch = 16 if c.dry else 512

    def w4():
        x = rng.standard_normal((batch, 784), dtype=np.float32)
        y = rng.integers(0, 10, batch)
        params = []
        for device in ("cpu", "cuda"):
            tc.manual_seed(0)
            model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                  nn.Linear(64, 10)).to(device)
            opt = tc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            xs, ys = tc.from_numpy(x).to(device), tc.from_numpy(y).to(device)

            def step():
                opt.zero_grad()
                F.cross_entropy(model(xs), ys).backward()
                opt.step()

            step()
            step()
            params.append([p.detach().cpu().numpy() for p in model.parameters()])
            if device == "cuda" and not c.dry:  # after the comparison's two steps
                dev = tc.runtime.cuda.get_device()
                ms = dev.host_time_ms(step, repeat=20)
                c.row("eager", f"W4 eager step batch {batch} (cuda)", f"{ms:.2f} ms/step", "",
                      "single-op kernels launched from Python")
        c.compare("eager", f"W4 eager SGD steps batch {batch}: cuda vs cpu", params[1], params[0],
                  1e-4, 1e-5)
    c.guarded("eager", f"W4 eager batch {batch}", w4)


def torch_peers(c: Check):
    """PyTorch eager and torch.compile on the same workloads, from gpu_peers.py in its own
    process (importing torch would change Triton's driver here)."""
    import subprocess
    import tempfile
    from pathlib import Path

    if c.dry:
        return
    if not c.has_torch:
        c.row("torch", "PyTorch peers", "not installed", "", "")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peers.json"
        script = Path(__file__).with_name("gpu_peers.py")
        try:
            subprocess.run([sys.executable, str(script), "--json", str(out)], timeout=PEERS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            c.row("torch", "PyTorch peers", "timed out", "", f"after {PEERS_TIMEOUT_S} s")
        if out.exists():
            c.rows.extend(json.loads(out.read_text())["rows"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="no GPU: Triton's interpreter at tiny sizes")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["correct", "eager", "cudastep", "workloads", "launch", "matmul", "w4", "peers"],
                        help="sections to leave out")
    args = parser.parse_args(argv)
    use_checkout_if_not_installed()
    import importlib.util
    has_torch = importlib.util.find_spec("torch") is not None
    if not args.dry_run:
        os.environ.pop("TRITON_INTERPRET", None)
        keep_torch_out()
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    saved = {k: os.environ.get(k) for k in ("TRACECC_AUTOTUNE",)}
    os.environ["TRACECC_AUTOTUNE"] = "0"  # correctness cases take the first config; W1-W3 tune
    c = Check(args.dry_run, has_torch)
    print(f"tracecc gpu_check ({'dry run: interpreter' if args.dry_run else 'cuda'})", flush=True)
    try:
        environment(c)
    except Exception as e:
        c.row("env", "device", type(e).__name__, "FAIL", str(e).splitlines()[0])
        print(c.table())
        return 1
    if "correct" not in args.skip:
        correctness(c)
    if "eager" not in args.skip:
        eager_cuda(c)
    os.environ["TRACECC_AUTOTUNE"] = "1"  # the whole steps are tuned, as a user's would be
    if "cudastep" not in args.skip:
        compiled_cuda_step(c)
    bandwidth = copy_bandwidth(c)
    if "workloads" not in args.skip:
        workloads(c, bandwidth)
    os.environ["TRACECC_AUTOTUNE"] = "0"
    if "launch" not in args.skip:
        launch_overhead(c)
    os.environ["TRACECC_AUTOTUNE"] = "1"
    if "matmul" not in args.skip:
        matmul_throughput(c)
    if "w4" not in args.skip:
        mlp_step_time(c)
    if "peers" not in args.skip:
        torch_peers(c)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    elapsed = time.perf_counter() - c.t0
    print()
    print(c.table())
    wrong = [r for r in c.rows if r["status"] == "FAIL"]
    print(f"\n{len(c.rows)} rows, {len(wrong)} failed, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dry_run": args.dry_run, "elapsed_s": elapsed, "rows": c.rows}, f, indent=1)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
