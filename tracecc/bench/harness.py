"""Run the variants of each case side by side, in one process, and check every result.

For one case: build every variant once; time its first call (which compiles) and check
that result against the float64 numpy reference; for compiled variants build a second
instance and time its first call too (the compile cache is warm by then: the cache-hit
time); warm up; then time `repeat` rounds, each calling every variant once, round-robin,
starting from a different variant each round; check the last result of every variant
again. A result off the reference is a FAIL and gets no time; an exception is an error
with its reason. W1-W3 also time a large array copy in the same rounds: the copy
bandwidth gives the memory-bandwidth floor. Afterwards, untimed: peak memory of one step
(tracemalloc) and, where a compiled function exposes its kernels' times, the per-call
overhead.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from .frameworks import Env, first_line
from .workloads import Case


@dataclass
class Result:
    """One variant on one case. status: ok | FAIL | error | absent."""

    variant: str
    framework: str
    status: str = "ok"
    reason: str = ""
    samples_s: list = field(default_factory=list)
    first_call_s: float | None = None
    cache_hit_s: float | None = None
    max_err: float | None = None  # worst max|result - reference| / max|reference| over the checks
    peak_bytes: int | None = None  # allocated during one step, tracemalloc
    kernel_s: float | None = None  # sum of the compiled step's kernel times, median
    # derived (filled by summarize)
    median_s: float | None = None
    p25_s: float | None = None
    p75_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    vs_eager: float | None = None  # tracecc eager time / this time: > 1 is faster than eager
    x_floor: float | None = None  # this time / the bandwidth floor
    gflops: float | None = None
    overhead_s: float | None = None  # warm step time - kernel time (medians)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class CaseResult:
    id: str
    workload: str
    title: str
    shape: str
    device: str
    stateful: bool
    tol: float
    bytes_moved: int | None
    flops: int | None
    results: list
    copy_bytes: int | None = None
    copy_bandwidth: float | None = None  # bytes/s, read + write
    floor_s: float | None = None


class Progress:
    """One status line on stderr, rewritten in place on a terminal; phase lines otherwise."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def say(self, msg: str, transient: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + msg)
        elif not transient:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ------------------------------------------------------------------ checking
def _copy_data(data: dict, dtype=None) -> dict:
    out = {}
    for k, a in data.items():
        out[k] = a.astype(dtype) if dtype is not None and a.dtype.kind == "f" else a.copy()
    return out


class Reference:
    """The numpy implementation run in float64 from the same data; for a stateful case it
    steps along so that `at(n)` is the state after n steps."""

    def __init__(self, case: Case, data: dict):
        from .frameworks import NumpyEnv

        self.step = case.impls["numpy"](case.dims, _copy_data(data, np.float64), NumpyEnv())
        self.stateful = case.stateful
        self.calls = 0
        self.values = None

    def at(self, n: int) -> list:
        target = n if self.stateful else 1
        if self.calls > target:
            raise RuntimeError("the reference cannot step back")
        while self.calls < target:
            self.values = [np.array(v, copy=True) for v in self.step()]
            self.calls += 1
        return self.values


def compare(values: list, expected: list, tol: float) -> tuple[float, str]:
    """(error, why it is wrong or ''): error is the worst max|a - r| / max|r| over the arrays."""
    if len(values) != len(expected):
        return float("inf"), f"returned {len(values)} values, expected {len(expected)}"
    worst = 0.0
    for i, (a, r) in enumerate(zip(values, expected)):
        a = np.asarray(a)
        if a.shape != r.shape:
            return float("inf"), f"value {i}: shape {a.shape}, expected {r.shape}"
        if not np.all(np.isfinite(a)):
            return float("inf"), f"value {i}: has nan or inf"
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        err = float(np.max(np.abs(a.astype(np.float64) - r))) if r.size else 0.0
        err = err / scale if scale > 0 else err
        worst = max(worst, err)
        if err > tol:
            return err, f"value {i}: max error {err:.2g} x max|ref| (tolerance {tol:g})"
    return worst, ""


# ------------------------------------------------------------------ running
@contextlib.contextmanager
def watchdog(seconds: float | None):
    """A call that never returns (a deadlocked native thread pool, say) cannot be interrupted
    from Python: after `seconds`, print every thread's stack to stderr and exit (status 1)."""
    armed = False
    if seconds:
        try:  # to the process's own stderr: sys.stderr may be a capture without a file descriptor
            faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
            armed = True
        except (AttributeError, OSError, ValueError):  # no usable stderr: run without a watchdog
            pass
    try:
        yield
    finally:
        if armed:
            faulthandler.cancel_dump_traceback_later()


class _Live:
    """A variant being timed."""

    def __init__(self, env: Env, result: Result, step):
        self.env, self.result, self.step = env, result, step
        self.last = None
        self.compiled_fn = env.wrapped[0] if env.wrapped else None


def _timed_call(env: Env, step):
    t0 = time.perf_counter()
    out = step()
    env.sync(out)
    return out, time.perf_counter() - t0


def _check(live_or_env, out, ref_values, tol, result: Result, when: str) -> bool:
    env = live_or_env
    try:
        values = [env.to_numpy(v) for v in out]
    except Exception as e:  # noqa: BLE001
        result.status, result.reason = "error", f"{when}: reading the result: {first_line(e)}"
        return False
    err, why = compare(values, ref_values, tol)
    result.max_err = err if result.max_err is None else max(result.max_err, err)
    if why:
        result.status, result.reason = "FAIL", f"{when}: {why}"
        result.samples_s = []
        return False
    return True


def _copy_probe(device: str, nbytes: int):
    """A step that copies nbytes into a reused buffer, or None where it can't run."""
    n = nbytes // 4
    if device == "cpu":
        src = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
        dst = np.empty_like(src)
        return lambda: np.copyto(dst, src), (lambda out: None)
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        src = torch.randn(n, device="cuda")
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), (lambda out: torch.cuda.synchronize())
    except ImportError:
        return None


def _peak_bytes(live: _Live) -> int | None:
    if not live.env.traced_memory:
        return None
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = live.step()
        live.env.sync(out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def _kernel_seconds(live: _Live, calls: int = 5) -> tuple[float, float] | None:
    """(median total kernel time per call, per-call overhead), when the compiled function
    reports its kernels' times through `kernel_times()` (a sequence of seconds, or a mapping
    name -> seconds, for its last call). The overhead is the median of `calls` warm steps
    back to back minus the median kernel time, re-timed after them on the last step's
    inputs: Python, guards and dispatch, without the cold caches a step meets in the rounds."""
    hook = getattr(live.compiled_fn, "kernel_times", None)
    if not callable(hook):
        return None
    steps = []
    for _ in range(calls):
        t0 = time.perf_counter()
        live.env.sync(live.step())
        steps.append(time.perf_counter() - t0)
    totals = []
    for _ in range(calls):
        times = hook()
        if times is None:
            return None
        totals.append(float(sum(times.values() if hasattr(times, "values") else times)))
    kernels = float(np.median(totals))
    return kernels, float(np.median(steps)) - kernels


def run_case(case: Case, envs: list[Env], *, device: str = "cpu", repeat: int = 20, warmup: int = 3,
             seed: int = 0, copy_bytes: int | None = None, progress: Progress | None = None,
             measure_memory: bool = True, timeout: float | None = None) -> CaseResult:
    """timeout: seconds one phase (a variant's build and first call, or one round) may take
    before the process dumps its stacks and exits; None: wait forever."""
    progress = progress or Progress(enabled=False)
    label = f"{case.id} {case.title} ({case.shape})"
    data = case.make_data(np.random.default_rng(seed))
    ref = Reference(case, data)
    progress.say(f"{label}: reference", transient=True)
    ref.at(1)

    results, live = [], []
    for env in envs:
        result = Result(env.name, env.framework)
        results.append(result)
        reason = env.unavailable()
        if reason:
            result.status, result.reason = "absent", reason
            continue
        progress.say(f"{label}: first call of {env.name}", transient=True)
        env.wrapped = []
        try:
            with watchdog(timeout):
                step = case.impls[env.framework](case.dims, _copy_data(data), env)
                out, result.first_call_s = _timed_call(env, step)
        except Exception as e:  # noqa: BLE001  (a variant that raises is reported, the run goes on)
            result.status, result.reason = "error", first_line(e)
            continue
        if _check(env, out, ref.at(1), case.tol, result, "first call"):
            live.append(_Live(env, result, step))

    for lv in [lv for lv in live if lv.env.compiled]:
        progress.say(f"{label}: cache-hit call of {lv.env.name}", transient=True)
        env = lv.env
        saved, env.wrapped = env.wrapped, []
        try:
            with watchdog(timeout):
                step2 = case.impls[env.framework](case.dims, _copy_data(data), env)
                out, lv.result.cache_hit_s = _timed_call(env, step2)
            if not _check(env, out, ref.at(1), case.tol, lv.result, "cache-hit call"):
                live.remove(lv)
            del step2, out
        except Exception as e:  # noqa: BLE001
            lv.result.status, lv.result.reason = "error", "cache-hit call: " + first_line(e)
            live.remove(lv)
        env.wrapped = saved

    case_result = CaseResult(case.id, case.workload, case.title, case.shape, device, case.stateful,
                             case.tol, case.bytes_moved, case.flops, results)
    probe = None
    if case.bytes_moved and copy_bytes:
        probe = _copy_probe(device, copy_bytes)
        if probe is not None:
            case_result.copy_bytes = copy_bytes
    probe_samples = []

    total = warmup + repeat if live else 0  # nothing ran right: nothing to time
    for r in range(total):
        if not live:
            break
        timed = r >= warmup
        progress.say(f"{label}: {'round' if timed else 'warm-up'} {r + 1 - warmup * timed}/"
                     f"{repeat if timed else warmup}", transient=True)
        order = live[r % len(live):] + live[:r % len(live)]  # rotate: nobody always goes first
        gc.collect()
        gc.disable()
        with watchdog(timeout):
            try:
                if probe is not None:
                    t0 = time.perf_counter()
                    probe[1](probe[0]())
                    if timed:
                        probe_samples.append(time.perf_counter() - t0)
                for lv in order:
                    try:
                        lv.last, dt = _timed_call(lv.env, lv.step)
                    except Exception as e:  # noqa: BLE001
                        lv.result.status, lv.result.reason = "error", f"call {r + 2}: {first_line(e)}"
                        lv.result.samples_s = []
                        live.remove(lv)
                        continue
                    if timed:
                        lv.result.samples_s.append(dt)
            finally:
                gc.enable()

    for lv in list(live):
        if lv.last is not None and not _check(lv.env, lv.last, ref.at(1 + total), case.tol, lv.result,
                                              f"call {1 + total}"):
            live.remove(lv)
        lv.last = None

    if probe_samples:
        case_result.copy_bandwidth = 2 * copy_bytes / float(np.median(probe_samples))
        case_result.floor_s = case.bytes_moved / case_result.copy_bandwidth

    for lv in live:
        try:
            with watchdog(timeout):
                if measure_memory:
                    progress.say(f"{label}: memory of {lv.env.name}", transient=True)
                    lv.result.peak_bytes = _peak_bytes(lv)
                if lv.env.compiled:
                    lv.result.kernel_s, lv.result.overhead_s = _kernel_seconds(lv) or (None, None)
        except Exception as e:  # noqa: BLE001  (after the timing: a note, not a failure)
            lv.result.reason = f"memory/kernel-time pass: {first_line(e)}"
    summarize(case_result)
    progress.say(f"{label}: done")
    return case_result


def summarize(cr: CaseResult) -> None:
    """Medians, spread, and the ratios against tracecc eager, the floor and the FLOP count."""
    for r in cr.results:
        if r.ok and r.samples_s:
            s = np.asarray(r.samples_s)
            r.median_s = float(np.median(s))
            r.p25_s, r.p75_s = (float(v) for v in np.percentile(s, [25, 75]))
            r.min_s, r.max_s = float(s.min()), float(s.max())
            if cr.floor_s:
                r.x_floor = r.median_s / cr.floor_s
            if cr.flops:
                r.gflops = cr.flops / r.median_s / 1e9
    eager = next((r for r in cr.results if r.variant == "tracecc eager" and r.median_s), None)
    for r in cr.results:
        if eager is not None and r.median_s:
            r.vs_eager = eager.median_s / r.median_s


def run_suite(names=(), *, device: str = "cpu", size: str = "default", repeat: int = 20, warmup: int = 3,
              seed: int = 0, backends=None, peers: bool = True, extra_envs=(), progress=None,
              measure_memory: bool = True, threads: int | None = None,
              timeout: float | None = None) -> list[CaseResult]:
    """Every selected case with every variant (plus extra_envs, e.g. from tests)."""
    from .frameworks import make_envs, set_threads
    from .workloads import SIZES, make_cases, select

    cases = select(make_cases(device, size), names)
    if threads is not None:
        set_threads(threads, peers)
    envs = make_envs(device, backends, peers) + list(extra_envs)
    copy_bytes = SIZES["tiny" if size == "tiny" else device]["copy_bytes"]
    return [run_case(c, envs, device=device, repeat=repeat, warmup=warmup, seed=seed,
                     copy_bytes=copy_bytes, progress=progress, measure_memory=measure_memory,
                     timeout=timeout)
            for c in cases]
