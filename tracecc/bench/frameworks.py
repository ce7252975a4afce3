"""The frameworks a workload runs on, each behind the same small interface (an "env").

A workload is written once per framework (see workloads.py) against an env that knows how
to put a numpy array on the device, how to wrap the step (identity, tracecc.compile,
torch.compile, jax.jit), how to wait for the device, and how to read a result back as
numpy. Peers are imported lazily: a missing PyTorch or JAX makes its variants absent,
never an error.
"""

from __future__ import annotations

import inspect

import numpy as np


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class Env:
    framework = ""  # which implementation of a workload to use: numpy | tracecc | torch | jax
    name = ""  # the variant's name in the table
    compiled = False  # has a first-call compile and a cache-hit time worth reporting
    traced_memory = False  # its allocations are numpy's, so tracemalloc sees them

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.wrapped = []  # the compiled functions made by wrap(), for the kernel-time hook

    def unavailable(self) -> str | None:
        """None when this variant can run here, else the reason it cannot."""
        return None

    def tensor(self, a: np.ndarray, requires_grad: bool = False):
        raise NotImplementedError

    def wrap(self, fn):
        return fn

    def sync(self, out) -> None:
        """Wait until the values in out are computed (asynchronous devices)."""

    def to_numpy(self, value) -> np.ndarray:
        raise NotImplementedError


class NumpyEnv(Env):
    framework = name = "numpy"
    traced_memory = True

    def unavailable(self):
        return None if self.device == "cpu" else "numpy runs on the cpu (it is only the reference here)"

    def tensor(self, a, requires_grad=False):
        return a.copy()

    def to_numpy(self, value):
        return np.array(value, copy=True)


class TraceccEnv(Env):
    """tracecc eager, or compiled with one backend (backend=None: compile's default)."""

    framework = "tracecc"
    traced_memory = True

    def __init__(self, device="cpu", compiled=False, backend=None):
        super().__init__(device)
        self.compiled = compiled
        self.backend = backend
        if not compiled:
            self.name = "tracecc eager"
        else:
            self.name = "tracecc compiled" + (f" ({backend})" if backend else "")

    def unavailable(self):
        import tracecc

        try:
            tracecc.as_tensor(np.zeros(1, np.float32), device=self.device)
        except Exception as e:  # noqa: BLE001  (any reason is reported, not raised)
            return "tracecc: " + first_line(e)
        if self.compiled and getattr(tracecc, "compile", None) is None:
            return "tracecc.compile is not built yet"
        return None

    def tensor(self, a, requires_grad=False):
        import tracecc

        t = tracecc.as_tensor(a.copy(), device=self.device)
        return t.requires_grad_() if requires_grad else t

    def wrap(self, fn):
        if not self.compiled:
            return fn
        import tracecc

        kwargs = {}
        params = inspect.signature(tracecc.compile).parameters
        if self.backend is not None:
            kwargs["backend"] = self.backend
        if "fullgraph" in params:
            # A silent fall back to eager would be timed as "compiled": make it an error instead.
            kwargs["fullgraph"] = True
        compiled = tracecc.compile(fn, **kwargs)
        self.wrapped.append(compiled)
        return compiled

    def to_numpy(self, value):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        return np.array(value.numpy(), copy=True)


def tracecc_backends() -> list[str | None]:
    """The backends tracecc.compile offers, from tracecc.list_backends() or compile.backends
    when one exists, else from the codegen registry: those available with a priority >= 0,
    lowest first (a negative priority marks a test-only backend such as triton_interpret:
    it runs only when named with --backend). [None] (compile's default) when none of these
    answers; [] when compile is not built."""
    import tracecc

    compile_fn = getattr(tracecc, "compile", None)
    if compile_fn is None:
        return []
    for source in (getattr(tracecc, "list_backends", None), getattr(compile_fn, "backends", None)):
        if source is not None:
            names = list(source() if callable(source) else source)
            if names:
                return names
    try:
        from tracecc.codegen import backends as registry

        registry.get_backend("auto")  # imports every backend module that can load
        ready = sorted((b for b in registry.BACKENDS.values() if b.priority >= 0 and b.available()),
                       key=lambda b: b.priority)
        if ready:
            return [b.name for b in ready]
    except Exception:  # noqa: BLE001  (no registry, or a broken one: use compile's default)
        pass
    return [None]


class TorchEnv(Env):
    framework = "torch"

    def __init__(self, device="cpu", compiled=False):
        super().__init__(device)
        self.compiled = compiled
        self.name = "torch.compile" if compiled else "torch eager"

    def unavailable(self):
        try:
            import torch
        except ImportError:
            return "torch is not installed"
        if self.device == "cuda" and not torch.cuda.is_available():
            return "torch has no CUDA device here"
        if self.compiled and not hasattr(torch, "compile"):
            return "this torch has no torch.compile"
        return None

    @property
    def torch(self):
        import torch

        return torch

    def tensor(self, a, requires_grad=False):
        t = self.torch.from_numpy(a.copy()).to(self.device)
        return t.requires_grad_() if requires_grad else t

    def wrap(self, fn):
        if not self.compiled:
            return fn
        compiled = self.torch.compile(fn)
        self.wrapped.append(compiled)
        return compiled

    def sync(self, out):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def to_numpy(self, value):
        return np.array(value.detach().cpu().numpy(), copy=True)


class JaxEnv(Env):
    framework = "jax"
    name = "jax.jit"
    compiled = True

    def unavailable(self):
        try:
            import jax
        except ImportError:
            return "jax is not installed"
        try:
            jax.devices("gpu" if self.device == "cuda" else "cpu")
        except RuntimeError:
            return f"jax has no {self.device} device here"
        return None

    @property
    def jax(self):
        import jax

        # The reference is float32/float64 numpy; JAX's default TF32-like matmuls on a GPU
        # would fail the check, so ask it for full float32 precision.
        jax.config.update("jax_default_matmul_precision", "highest")
        return jax

    def tensor(self, a, requires_grad=False):
        jax = self.jax
        dev = jax.devices("gpu" if self.device == "cuda" else "cpu")[0]
        return jax.device_put(a.copy(), dev)

    def wrap(self, fn, **kwargs):
        compiled = self.jax.jit(fn, **kwargs)
        self.wrapped.append(compiled)
        return compiled

    def sync(self, out):
        self.jax.block_until_ready(out)

    def to_numpy(self, value):
        return np.array(value, copy=True)


def make_envs(device: str, backends=None, peers: bool = True) -> list[Env]:
    """Every variant, in table order. backends: the tracecc.compile backends to run (None:
    discover them; an empty list: no compiled variant)."""
    envs: list[Env] = [NumpyEnv(device), TraceccEnv(device)]
    names = tracecc_backends() if backends is None else list(backends)
    if backends is None and not names:
        envs.append(TraceccEnv(device, compiled=True))  # reported absent, with the reason
    for name in names:
        envs.append(TraceccEnv(device, compiled=True, backend=name))
    if peers:
        envs += [TorchEnv(device), TorchEnv(device, compiled=True), JaxEnv(device)]
    return envs


# ------------------------------------------------------------------ threads
_OPENBLAS_PREFIXES = ("scipy_openblas_", "openblas_")
_OPENBLAS_SUFFIXES = ("64_", "")


def _openblas_function(verb: str):
    """numpy's OpenBLAS `<verb>_num_threads` through ctypes (as threadpoolctl finds it), or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix in _OPENBLAS_PREFIXES:
            for suffix in _OPENBLAS_SUFFIXES:
                fn = getattr(lib, f"{prefix}{verb}_num_threads{suffix}", None)
                if fn is not None:
                    return fn
    return None


def threads_in_use(peers: bool) -> dict:
    out = {}
    get = _openblas_function("get")
    if get is not None:
        out["numpy (OpenBLAS)"] = int(get())
    if peers:
        try:
            import torch

            out["torch"] = torch.get_num_threads()
        except ImportError:
            pass
    return out


def set_threads(n: int, peers: bool) -> dict:
    """Limit numpy's BLAS (so tracecc eager too) and torch to n threads; what was set.
    Best effort: OpenBLAS lowered at run time still waits on its worker threads (whole
    scheduler ticks on a busy machine), so `tracecc bench --threads` also sets the
    environment and restarts. JAX's XLA pool is fixed when jax starts."""
    set_blas = _openblas_function("set")
    if set_blas is not None:
        set_blas(n)
    if peers:
        try:
            import torch

            torch.set_num_threads(n)
        except ImportError:
            pass
    return threads_in_use(peers)
