"""Micro-benchmarks for the CPU backend's building blocks, side by side, medians.

    python benchmarks/llvm_micro.py --math       # mathlib vs numpy on 16M float32
    python benchmarks/llvm_micro.py --ulp        # max ulp error over ALL 2**32 float32 inputs (long)
    python benchmarks/llvm_micro.py --ulp --stride 17   # every 17th bit pattern (253M inputs)
    python benchmarks/llvm_micro.py --parallel   # pool vs Python threads vs serial, by size
    python benchmarks/llvm_micro.py --matmul     # BLAS call vs generated kernel vs numpy, MLP shapes
    python benchmarks/llvm_micro.py --compile    # compile time per stage, cache reload
    python benchmarks/llvm_micro.py --fit        # refit the erf/tanh polynomials of mathlib.py
    python benchmarks/llvm_micro.py --w1         # W1's loop: code variants, paired, compute only

Numbers measured on the project machine are in docs/cpu-backend.md. Timings on a shared
2-vCPU VM are noisy (about +-15%): compare within one run only.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import sys
import tempfile
import threading
import time

import numpy as np
from llvmlite import ir

from tracecc.codegen.llvm import jit, matmul, parallel
from tracecc.codegen.llvm.mathlib import MathLib, emit_unary_kernel

F32, I64 = ir.FloatType(), ir.IntType(64)
P32 = F32.as_pointer()
VP, I64C = ctypes.c_void_p, ctypes.c_int64


def median_us(fn, reps=21, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e6


# ------------------------------------------------------------------ math
MATH = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos"]
ONLY_32 = ("erf", "sin", "cos")


def math_kernels(bits=32):
    m = jit.new_module("math_bench")
    ml = MathLib(m)
    names = [nm for nm in MATH if bits == 32 or nm not in ONLY_32]
    for nm in names:
        emit_unary_kernel(m, f"k_{nm}", ml.get(nm, bits))
    cm = jit.compile_module(m)
    return cm, {nm: cm.cfunc(f"k_{nm}", None, VP, VP, I64C) for nm in names}


def bench_math(n=1 << 24):
    _, ks = math_kernels()
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, n).astype(np.float32)
    xpos = np.abs(x)
    y = np.empty_like(x)
    ref = {
        "exp": lambda a: np.exp(a, out=y), "expm1": lambda a: np.expm1(a, out=y),
        "log": lambda a: np.log(a, out=y), "log1p": lambda a: np.log1p(a, out=y),
        "tanh": lambda a: np.tanh(a, out=y),
        "sigmoid": lambda a: (np.negative(a, out=y), np.exp(y, out=y), np.add(y, 1, out=y),
                              np.reciprocal(y, out=y)),
        "erf": None, "sin": lambda a: np.sin(a, out=y), "cos": lambda a: np.cos(a, out=y),
    }
    copy = median_us(lambda: np.copyto(y, x), 9)
    print(f"16M float32, single thread, median of 9 (np.copyto: {copy / 1e3:.2f} ms)")
    print(f"{'fn':8s} {'tracecc':>10s} {'numpy':>10s} {'numpy/tracecc':>14s}")
    for nm in MATH:
        a = xpos if nm in ("log", "log1p") else x
        t1 = median_us(lambda: ks[nm](a.ctypes.data, y.ctypes.data, n), 9)
        t2 = median_us(lambda: ref[nm](a), 9) if ref[nm] else float("nan")
        print(f"{nm:8s} {t1 / 1e3:8.2f}ms {t2 / 1e3:8.2f}ms {t2 / t1:14.2f}")


def bench_ulp(names=None, stride=1, chunk=1 << 24):
    """Every `stride`-th float32 bit pattern (stride 1: all 2**32), reference in float64
    (math.erf for erf, |x| < 4.5 only: beyond it erf is +-1 and the tests check that)."""
    _, ks = math_kernels()
    erf = np.frompyfunc(math.erf, 1, 1)
    refs = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "erf": lambda v: erf(v).astype(np.float64),
            "sin": np.sin, "cos": np.cos}
    for nm in names or MATH:
        worst, at, nan_bad, t0 = 0.0, None, 0, time.time()
        for start in range(0, 2**32, chunk * stride):
            x = np.arange(start, min(start + chunk * stride, 2**32), stride, dtype=np.int64)
            x = x.astype(np.uint32).view(np.float32)
            if nm == "erf":
                x = x[np.abs(x) < 4.5]  # beyond, erf is +-1 exactly (checked by the tests)
                if x.size == 0:
                    continue
            y = np.empty_like(x)
            ks[nm](x.ctypes.data, y.ctypes.data, x.size)
            with np.errstate(all="ignore"):
                ref = refs[nm](x.astype(np.float64))
            nan_bad += int(np.count_nonzero(np.isnan(ref) != np.isnan(y)))
            ok = ~np.isnan(ref)
            y64 = y[ok].astype(np.float64)
            y64[np.isinf(y64)] = np.sign(y64[np.isinf(y64)]) * 2.0**128
            r = np.clip(ref[ok], -2.0**128, 2.0**128)
            _, e = np.frexp(np.abs(r))
            err = np.abs(y64 - r) / np.ldexp(1.0, np.maximum(e - 1, -126) - 23)
            if err.size == 0:  # e.g. log of a chunk of negative numbers: all NaN, checked above
                continue
            i = int(np.argmax(err))
            if err[i] > worst:
                worst, at = float(err[i]), float(x[ok][i])
        print(f"{nm:8s} max {worst:.3f} ulp at x={at!r}; NaN mismatches {nan_bad}; {time.time() - t0:.0f} s",
              flush=True)


# ------------------------------------------------------------------ parallel
def ew_module():
    """body(ctx, s, e): y = max(x*2+1, 0) (memory-bound), body_exp: y = exp(x) (compute);
    run*(ctx, n, grain) = parallel_for(body*, ...)."""
    m = jit.new_module("par_bench")
    ml = MathLib(m)
    for name, op in (("ew", None), ("exp", ml.get("exp", 32))):
        body = ir.Function(m, parallel.BODY_TYPE, f"body_{name}")
        ctx, s, e = body.args
        b = ir.IRBuilder(body.append_basic_block("entry"))
        args = b.bitcast(ctx, P32.as_pointer())
        x, y = (b.load(b.gep(args, [I64(k)])) for k in (0, 1))
        loop, done = body.append_basic_block("loop"), body.append_basic_block("done")
        entry = b.block
        b.cbranch(b.icmp_signed("<", s, e), loop, done)
        b.position_at_end(loop)
        i = b.phi(I64)
        i.add_incoming(s, entry)
        v = b.load(b.gep(x, [i]))
        if op is None:
            v = b.fadd(b.fmul(v, F32(2)), F32(1))
            v = b.select(b.fcmp_ordered(">", v, F32(0)), v, F32(0))
        else:
            v = b.call(op, [v])
        b.store(v, b.gep(y, [i]))
        i2 = b.add(i, I64(1))
        i.add_incoming(i2, loop)
        b.cbranch(b.icmp_signed("<", i2, e), loop, done)
        b.position_at_end(done)
        b.ret_void()
        run = ir.Function(m, ir.FunctionType(ir.VoidType(), [parallel.PTR, I64, I64]), f"run_{name}")
        b = ir.IRBuilder(run.append_basic_block("entry"))
        parallel.emit_parallel_for(b, body, run.args[0], I64(0), run.args[1], run.args[2])
        b.ret_void()
    return jit.compile_module(m)


class PyPool:
    """The alternative: Python threads calling the kernel's (start, end) entry via ctypes."""

    def __init__(self, n):
        self.n, self.jobs, self.done = n, [], threading.Semaphore(0)
        self.go = [threading.Semaphore(0) for _ in range(n - 1)]
        for k in range(n - 1):
            threading.Thread(target=self._work, args=(k,), daemon=True).start()

    def _work(self, k):
        while True:
            self.go[k].acquire()
            fn, args = self.jobs[k + 1]
            fn(*args)
            self.done.release()

    def run(self, fn, ctx, n, grain=64):
        step = -(-n // self.n)
        step = -(-step // grain) * grain
        self.jobs = [(fn, (ctx, k * step, min(n, (k + 1) * step))) for k in range(self.n)]
        for g in self.go:
            g.release()
        fn(*self.jobs[0][1])
        for _ in self.go:
            self.done.acquire()


def bench_parallel():
    cm = ew_module()
    parallel.ensure_runtime()
    nt = parallel.pool_threads()
    pypool = PyPool(nt)
    print(f"threads: {nt}; median us; speedup vs serial in ()")
    print(f"{'kernel':6s} {'n':>9s} {'serial':>10s} {'IR pool':>16s} {'Python pool':>16s}")
    for name in ("ew", "exp"):
        body = cm.cfunc(f"body_{name}", None, VP, I64C, I64C)
        run = cm.cfunc(f"run_{name}", None, VP, I64C, I64C)
        for n in (1 << 12, 1 << 14, 1 << 16, 1 << 17, 1 << 18, 1 << 20, 1 << 22, 1 << 24):
            x = np.random.rand(n).astype(np.float32)
            y = np.empty_like(x)
            ctx = (ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
            a = ctypes.addressof(ctx)
            reps = 201 if n <= 1 << 18 else 21
            t_s = median_us(lambda: body(a, 0, n), reps)
            t_p = median_us(lambda: run(a, n, 64), reps)
            t_py = median_us(lambda: pypool.run(body, a, n), reps)
            print(f"{name:6s} {n:9d} {t_s:10.1f} {t_p:9.1f} ({t_s / t_p:4.2f}) {t_py:9.1f} ({t_s / t_py:4.2f})",
                  flush=True)


# ------------------------------------------------------------------ matmul
def mm_fn(spec, strategy, epilogue):
    m = jit.new_module("mm_bench")
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [P32] * 4), "mm")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    epi = matmul.bias_act(fn.args[3], "relu") if epilogue else None
    matmul.emit_matmul(b, spec, *fn.args[:3], epi, strategy)
    b.ret_void()
    return jit.compile_module(m).cfunc("mm", None, VP, VP, VP, VP)


def bench_matmul():
    rng = np.random.default_rng(0)
    print("median us; 'np+epi' = np.matmul(out=) then in-place bias add and relu; tiled needs B rows")
    print(f"{'product':34s} {'np':>8s} {'np+epi':>8s} {'blas+epi':>9s} {'tiled+epi':>9s}  winner")
    for batch in (64, 512):
        shapes = []
        for i, o in ((784, 128), (128, 64), (64, 10)):
            shapes.append((f"fwd x[{batch},{i}] @ W[{o},{i}].T", (batch, i), (o, i), False, True, True))
        for i, o in ((128, 64), (64, 10)):  # dX = dY @ W
            shapes.append((f"dX dY[{batch},{o}] @ W[{o},{i}]", (batch, o), (o, i), False, False, False))
        for i, o in ((784, 128), (128, 64), (64, 10)):  # dW = dY.T @ X
            shapes.append((f"dW dY[{batch},{o}].T @ X[{batch},{i}]", (batch, o), (batch, i), True, False, False))
        for label, ash, bsh, ta, tb, epi in shapes:
            A = rng.standard_normal(ash, dtype=np.float32)
            B = rng.standard_normal(bsh, dtype=np.float32)
            Av, Bv = (A.T if ta else A), (B.T if tb else B)
            M, K = Av.shape
            N = Bv.shape[1]
            C = np.empty((M, N), np.float32)
            bias = rng.standard_normal(N, dtype=np.float32)
            spec = matmul.MatmulSpec(M, N, K, (Av.strides[0] // 4, Av.strides[1] // 4),
                                     (Bv.strides[0] // 4, Bv.strides[1] // 4))
            ptrs = (A.ctypes.data, B.ctypes.data, C.ctypes.data, bias.ctypes.data)

            def np_epi():
                np.matmul(Av, Bv, out=C)
                if epi:
                    np.add(C, bias, out=C)
                    np.maximum(C, 0, out=C)

            t_np = median_us(lambda: np.matmul(Av, Bv, out=C), 101)
            t_npe = median_us(np_epi, 101)
            f = mm_fn(spec, "blas", epi)
            t_blas = median_us(lambda: f(*ptrs), 101)
            ref = Av @ Bv
            if epi:
                ref = np.maximum(ref + bias, 0)
            assert np.allclose(C, ref, rtol=1e-4, atol=1e-3)
            t_tiled = float("nan")
            if not tb:
                g = mm_fn(spec, "tiled", epi)
                t_tiled = median_us(lambda: g(*ptrs), 101)
                assert np.allclose(C, ref, rtol=1e-4, atol=1e-3)
            best = min(("blas", t_blas), ("tiled", t_tiled), key=lambda p: p[1] if p[1] == p[1] else 1e99)[0]
            print(f"{label:34s} {t_np:8.1f} {t_npe:8.1f} {t_blas:9.1f} {t_tiled:9.1f}  {best}"
                  f"  [{M}x{K}x{N}, choose()={matmul.choose(spec)}]", flush=True)


# ------------------------------------------------------------------ compile
def bench_compile():
    m = jit.new_module("compile_bench")
    ml = MathLib(m)
    for nm in ("exp", "tanh", "log", "sigmoid"):
        emit_unary_kernel(m, f"k_{nm}", ml.get(nm, 32))
    text = str(m)
    with tempfile.TemporaryDirectory() as d:
        os.environ["TRACECC_CACHE_DIR"] = d
        cold = [jit.compile_module(text, "b", cache=True) for _ in range(1)][0]
        hits = [jit.compile_module(text, "b", cache=True) for _ in range(5)]
        fresh = [jit.compile_module(text, "b") for _ in range(5)]
    med = {k: float(np.median([c.timings.get(k, 0) for c in fresh])) for k in fresh[0].timings}
    print("module with 4 math kernels; ms per stage (median of 5 uncached compiles):")
    print("  " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()) + f"; total {sum(med.values()):.1f}")
    print(f"  first compile with cache store: {cold.total_ms():.1f} ms; "
          f"cache hit (lookup + load): {np.median([c.total_ms() for c in hits]):.2f} ms; "
          f"object {len(cold.object_bytes)} bytes; all hits: {all(c.from_cache for c in hits)}")


# ------------------------------------------------------------------ W1 variants
def _w1_program(n):
    import tracecc
    from tracecc.bench.workloads import _tc_gelu_tanh

    gelu = _tc_gelu_tanh()
    cf = tracecc.compile(lambda x, w, b: gelu(x * w + b) * tracecc.sigmoid(x))
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    args = [x, np.array([0.7], np.float32), np.array([0.1], np.float32)]
    cf(*(tracecc.tensor(a.reshape(()) if a.size == 1 else a) for a in args))
    return cf._entries[0].runner.compiled.program, args


def _contracted(table):
    """float add/sub/mul emitters that allow FMA contraction (`contract` on each)."""
    from tracecc.codegen.llvm.scalar import is_float

    def wrap(op, plain):
        def emit(b, ctx, args, in_dtypes, out, params):
            if is_float(in_dtypes[0]):
                return getattr(b, op)(*args, flags=("contract",))
            return plain(b, ctx, args, in_dtypes, out, params)
        return emit
    return {name: wrap(op, table[name]) for name, op in (("add", "fadd"), ("sub", "fsub"), ("mul", "fmul"))}


def bench_w1(n=32768, rounds=30, inner=100):
    """W1's kernel on an L2-resident array, one thread: compute only, no memory traffic.
    Each variant is compiled from the same kernel program; rounds interleave them, and each
    is reported as its time over the default's in the same round (median and IQR of those
    ratios): the machine's drift cancels, where back-to-back medians moved +-10%."""
    from unittest import mock

    from tracecc.codegen.llvm import lower, scalar
    from tracecc.codegen.llvm.runner import CompiledProgram

    program, args = _w1_program(n)
    plain_interleave = lower._interleave
    variants = {
        "default": mock.patch.object(lower, "_interleave", plain_interleave),
        "default again (noise)": mock.patch.object(lower, "_interleave", plain_interleave),
        **{f"interleave {c}": mock.patch.object(lower, "_interleave",
                                               lambda k, c=c: c if plain_interleave(k) else 0)
           for c in (1, 4)},
        "fma contraction": mock.patch.dict(scalar.EMITTERS, _contracted(scalar.EMITTERS)),
    }
    compiled = {}
    for name, patch in variants.items():
        with patch:
            compiled[name] = CompiledProgram(program, threads=False)
        compiled[name].run(args)  # binds the buffers
    samples = {name: [] for name in compiled}
    for _ in range(rounds):
        for name, cp in compiled.items():
            t = time.perf_counter()
            for _ in range(inner):
                cp.entry(cp.pointers_address)
            samples[name].append((time.perf_counter() - t) / inner / n * 1e9)
    base = np.array(samples["default"])
    print(f"W1, {n} float32, one thread; ns per element, and time / default's in the same round:")
    for name, v in samples.items():
        r = np.array(v) / base
        print(f"  {name:24s} {np.median(v):6.3f} ns   {np.median(r):.3f} "
              f"(IQR {np.percentile(r, 25):.3f}-{np.percentile(r, 75):.3f})")


# ------------------------------------------------------------------ fitting
def fit(f, lo, hi, powers, var, npts=2000, rel=True, iters=30, weight=None):
    """Near-minimax fit by Lawson's algorithm (iteratively reweighted least squares).
    The error minimised is (P - f) / |f| (rel), P - f, or (P - f) * weight(x) when given.
    Returns the coefficients as float32 (highest power first) and the fit's max error."""
    import mpmath

    mpmath.mp.dps = 40
    k = np.arange(npts)
    a = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / npts)
    y = np.array([float(f(mpmath.mpf(float(t)))) for t in a])
    basis = np.stack([var(a) ** p for p in powers], 1)
    wt = weight(a) if weight else 1 / np.abs(y) if rel else np.ones(npts)
    w = np.ones(npts)
    for _ in range(iters):
        scale = np.sqrt(w) * wt
        c, *_ = np.linalg.lstsq(basis * scale[:, None], y * scale, rcond=None)
        e = (basis @ c - y) * wt
        w = w * np.abs(e)
        w /= w.sum()
    return [float(np.float32(v)) for v in c[::-1]], float(np.max(np.abs(e)))


def run_fit():
    import mpmath

    half_ln2 = math.log(2) / 2 * 1.0001
    print("exp, float32: exp(r) = 1 + r + r^2*P(r) on |r| <= ln2/2 (error of the whole, relative):",
          fit(lambda r: (mpmath.exp(r) - 1 - r) / (r * r), -half_ln2, half_ln2, range(5), lambda r: r,
              npts=3000, iters=40, weight=lambda r: r * r / np.exp(r)))

    print("erf small, erf(a)/a = P(a^2) on [0, 0.875]:",
          fit(lambda a: mpmath.erf(a) / a, 1e-6, 0.875, range(6), lambda a: a * a))
    print("erfc tail, erfc(a)*exp(a^2) = Q(1/(1+a)) on [0.875, 4]:",
          fit(lambda a: mpmath.erfc(a) * mpmath.exp(a * a), 0.875, 4.0, range(9), lambda a: 1 / (1 + a)))
    print("tanh small, (tanh(a)/a - 1)/a^2 = P(a^2) on [0, 0.55] (absolute):",
          fit(lambda a: (mpmath.tanh(a) / a - 1) / (a * a), 1e-4, 0.55, range(5), lambda a: a * a, rel=False))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("math", "ulp", "parallel", "matmul", "compile", "fit", "w1"):
        p.add_argument(f"--{flag}", action="store_true")
    p.add_argument("--names", help="comma-separated functions for --ulp")
    p.add_argument("--stride", type=int, default=1, help="--ulp: every stride-th bit pattern")
    args = p.parse_args(argv)
    chosen = [f for f in ("compile", "math", "parallel", "matmul", "ulp", "fit", "w1") if getattr(args, f)]
    if not chosen:
        chosen = ["compile", "math", "parallel", "matmul"]
    print(f"host: {jit.host_target().cpu}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    for c in chosen:
        print(f"\n== {c}")
        if c == "ulp":
            bench_ulp(args.names.split(",") if args.names else None, args.stride)
        elif c == "fit":
            run_fit()
        else:
            globals()[f"bench_{c}"]()


if __name__ == "__main__":
    main()
