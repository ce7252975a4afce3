"""Loading generated kernels, choosing their launch configs, and the argument adapters.

- Kernel modules are written to real files and imported (codegen-facts §1.5: Triton reads
  a kernel's source back with `inspect`; exec'd source is rejected on the GPU and silently
  skips the interpreter's AST rewrite). The backend (interpreter or GPU) is fixed when
  `@triton.jit` runs, so a module is imported once per mode, under the matching knob.
- Under the interpreter, kernel arguments are `NPTensor`s: a numpy array plus the nine
  no-op methods of the torch storage protocol the interpreter calls (§1.3), and a tracecc
  DType, whose hash is its name's (§1.5: Triton caches pointer types by dtype hash).
  `libdevice` cannot run there, so interpreted modules get numpy versions of the few
  functions the generated code calls.
- Configs: a short list of candidates per launch (block sizes, warps, stages). The
  interpreter takes the first, sized to run few programs; on a GPU the Autotuner times
  the candidates of every launch that can safely run twice and keeps the fastest, on disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...runtime.dtypes import get_dtype
from ...runtime.errors import CodegenError
from .lower import LaunchSpec, TritonKernel


def triton_available() -> bool:
    """Is the triton package installed? (Does not import it: see require_triton.)"""
    return importlib.util.find_spec("triton") is not None


def _interpret_env() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0", "false", "False")


def require_triton(interpret: bool):
    """Import triton for the interpreter or for the GPU.

    That choice is made once per process, when triton is first imported: with
    TRITON_INTERPRET=1 Triton's own library functions (tl.sum, tl.sigmoid, ...) become
    interpreted functions, and then nothing compiles for a GPU; without it, interpreted
    kernels cannot call them. So the interpreter sets the variable if triton is not loaded
    yet, and a process already committed to the other mode gets a clear error."""
    from ...runtime.errors import TritonUnavailableError
    if "triton" not in sys.modules:
        if not triton_available():
            raise TritonUnavailableError("the Triton backend needs the `triton` package",
                                         hint="pip install 'tracecc[gpu]' (triton>=3.9)")
        if interpret:
            os.environ["TRITON_INTERPRET"] = "1"
        elif _interpret_env():
            raise TritonUnavailableError("TRITON_INTERPRET is set, so triton cannot compile for the GPU",
                                         hint="unset TRITON_INTERPRET for GPU runs")
    import triton
    from triton.runtime.interpreter import InterpretedFunction

    loaded_interpreted = isinstance(triton.language.standard.sum, InterpretedFunction)
    if loaded_interpreted != interpret:
        want, have = ("interpreter", "GPU") if interpret else ("GPU", "interpreter")
        raise TritonUnavailableError(
            f"triton was imported for the {have} in this process; the {want} needs its own process",
            hint="set TRITON_INTERPRET=1 before anything imports triton for interpreter runs "
                 "(tests), and leave it unset for GPU runs")
    return triton


# ---------------------------------------------------------------- argument adapters
class NPTensor:
    """A numpy buffer as a Triton interpreter argument (codegen-facts §1.3).

    The interpreter reads `data_ptr()` and `dtype` (typed by str(), cached by hash) and
    calls the torch storage protocol to copy arguments to and from the host; memory is
    already on the host, so every one of those is the identity."""

    __slots__ = ("a", "dtype")

    def __init__(self, a: np.ndarray, dtype=None):
        self.a = a
        self.dtype = dtype or get_dtype(a.dtype)

    def data_ptr(self) -> int:
        return self.a.ctypes.data

    def untyped_storage(self):
        return self

    def cpu(self):
        return self

    def new_empty(self, *args, **kwargs):
        return self

    def set_(self, *args):
        return self

    def storage_offset(self) -> int:
        return 0

    def size(self):
        return self.a.shape

    def stride(self):
        return self.a.strides

    def copy_(self, other):
        return self


class DeviceArg:
    """A device buffer as a Triton GPU argument: the launcher reads data_ptr() and dtype."""

    __slots__ = ("buffer", "dtype")

    def __init__(self, buffer, dtype):
        self.buffer, self.dtype = buffer, dtype

    def data_ptr(self) -> int:
        return self.buffer.ptr


class EmulatedArg(NPTensor):
    """A buffer of the emulated test device as an interpreter argument: the host memory
    behind its pointer (runtime/cuda.py EmulatedLib), plus the DeviceBuffer itself."""

    __slots__ = ("buffer",)

    def __init__(self, buffer, dtype, host: np.ndarray):
        super().__init__(host.view(dtype.np), dtype)
        self.buffer = buffer


def buffer_arg(device, buffer, dtype, hold: bool = False):
    """The kernel argument for a DeviceBuffer of `device` holding `dtype` (a tracecc DType).
    On the emulated device only `hold=True` keeps the DeviceBuffer in the argument: the
    interpreter can keep the last launch's arguments alive a while, and a buffer they held
    would not go back to the allocator until then."""
    if device.emulated:
        host = device.driver.lib.array(buffer.ptr)
        return EmulatedArg(buffer, dtype, host) if hold else NPTensor(host.view(dtype.np), dtype)
    return DeviceArg(buffer, dtype)


def _interpreter_libdevice():
    """numpy stand-ins for the libdevice functions generated code calls (interpreter only)."""
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    def elementwise(fn):
        def apply(*args):
            x = args[0]
            with np.errstate(all="ignore"):
                data = np.asarray(fn(*[a.handle.data for a in args])).astype(x.handle.data.dtype)
            return tl.tensor(TensorHandle(data, x.handle.dtype.scalar), x.type)

        return apply

    return types.SimpleNamespace(tanh=elementwise(np.tanh), log1p=elementwise(np.log1p),
                                 expm1=elementwise(np.expm1), rint=elementwise(np.rint),
                                 pow=elementwise(np.power))


_patched_bf16 = False


def _round_bf16_in_interpreter() -> None:
    """The interpreter truncates float32 -> bfloat16 (triton 3.9, interpreter.py cast_impl);
    the GPU rounds to nearest even (cvt.rn.bf16.f32). Round in the interpreter too, so
    interpreted results are the ones the GPU computes."""
    global _patched_bf16
    if _patched_bf16:
        return
    import ml_dtypes
    import triton.language as tl
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = src.data.astype(ml_dtypes.bfloat16).view(np.uint16)
            return interpreter.TensorHandle(bits, dst_type.scalar)
        return original(self, src, dst_type)

    interpreter.InterpreterBuilder.cast_impl = cast_impl
    _patched_bf16 = True


# ---------------------------------------------------------------- modules
_MODULES: dict = {}


def source_dir() -> Path:
    """Where generated kernel files live: $TRACECC_CACHE_DIR/triton (see codegen/cache.py)."""
    from ..cache import cache_dir
    return cache_dir() / "triton"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def kernel_path(kernel: TritonKernel, directory: Path | None = None) -> Path:
    digest = hashlib.sha256(kernel.source.encode()).hexdigest()[:16]
    return Path(directory or source_dir()) / f"triton_{kernel.name}_{digest}.py"


def load_module(kernel: TritonKernel, interpret: bool, directory: Path | None = None):
    """Write the kernel's source to a file (once) and import it for the interpreter or the GPU."""
    triton = require_triton(interpret)
    path = kernel_path(kernel, directory)
    key = (str(path), interpret)
    module = _MODULES.get(key)
    if module is not None:
        return module
    if not path.exists() or path.read_text() != kernel.source:
        _write_atomic(path, kernel.source)
    name = f"tracecc_triton_{path.stem}_{'interp' if interpret else 'gpu'}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        runtime_knobs = getattr(getattr(triton, "knobs", None), "runtime", None)
        if runtime_knobs is None or not hasattr(runtime_knobs, "scope"):
            spec.loader.exec_module(module)  # older triton: TRITON_INTERPRET alone decides
        else:
            with runtime_knobs.scope():
                runtime_knobs.interpret = interpret  # @triton.jit reads it when it runs
                spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise CodegenError(f"generated Triton source for kernel {kernel.name} failed to import: {e}",
                           hint=f"the source is in {path}") from e
    if interpret:
        module.libdevice = _interpreter_libdevice()
        _round_bf16_in_interpreter()
    _MODULES[key] = module
    return module


# ---------------------------------------------------------------- configs
@dataclass(frozen=True)
class Config:
    params: tuple  # sorted (constexpr name, value) pairs
    num_warps: int = 4
    num_stages: int = 1

    def kwargs(self) -> dict:
        # FMA contraction stated explicitly: Triton 3.9 warns that its default will change
        return dict(self.params, num_warps=self.num_warps, num_stages=self.num_stages,
                    enable_fp_fusion=True)

    def __str__(self) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{ps}, warps={self.num_warps}, stages={self.num_stages}"

    def to_json(self) -> dict:
        return {"params": dict(self.params), "num_warps": self.num_warps, "num_stages": self.num_stages}

    @staticmethod
    def from_json(d: dict) -> "Config":
        return Config(tuple(sorted(d["params"].items())), d["num_warps"], d["num_stages"])


def _cfg(num_warps=4, num_stages=1, **params) -> Config:
    return Config(tuple(sorted(params.items())), num_warps, num_stages)


def _pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _warps(elements: int, lo: int = 1, hi: int = 16) -> int:
    return max(lo, min(hi, _pow2_floor(max(elements // 256, 1))))


def configs(spec: LaunchSpec, interpret: bool, max_rblock: int = 4096) -> list[Config]:
    """Candidate configs for one launch, the preferred one first. Interpreter configs
    minimise the number of programs (each costs ~0.6 ms, codegen-facts §1.4)."""
    if spec.kind == "pointwise":
        top = _pow2(spec.numel)
        if interpret:
            return [_cfg(XBLOCK=min(top, 1024))]
        out = [_cfg(w, XBLOCK=b) for b, w in ((1024, 4), (2048, 8), (4096, 8), (512, 4)) if b <= top]
        return out or [_cfg(_warps(top, hi=4), XBLOCK=top)]
    if spec.kind == "rows":
        rows = _pow2(spec.numel)
        if spec.persistent:
            rb = _pow2(spec.rnumel)
            if interpret:
                return [_cfg(XBLOCK=min(rows, max(1, 1024 // rb)), RBLOCK=rb)]
            out = []
            for target in (2048, 4096, 1024, 8192):
                xb = min(rows, max(1, target // rb))
                c = _cfg(_warps(xb * rb, lo=2), XBLOCK=xb, RBLOCK=rb)
                if c not in out:
                    out.append(c)
            if rb >= 2048:  # one long row per program: fewer warps keep more rows in flight
                out += [_cfg(8, XBLOCK=1, RBLOCK=rb), _cfg(4, XBLOCK=1, RBLOCK=rb)]
            return list(dict.fromkeys(out))
        cap = min(_pow2_floor(max_rblock), _pow2_floor(max(spec.rnumel - 1, 1)))
        if interpret:
            return [_cfg(XBLOCK=min(rows, max(1, 1024 // cap)), RBLOCK=cap)]
        out = [_cfg(w, XBLOCK=min(rows, x), RBLOCK=min(r, cap)) for x, r, w in
               ((1, 2048, 8), (1, 1024, 4), (2, 1024, 8), (4, 512, 8))]
        return list(dict.fromkeys(out))
    if spec.kind == "matmul":
        M, N, K = spec.mnk
        if not spec.dot:
            return [_cfg(4, BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=8)]
        bm, bn, bk = (min(max(16, _pow2(d)), 64) for d in (M, N, K))
        if interpret:
            return [_cfg(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8)]
        out = []
        for m, n, k, w, s in ((128, 128, 32, 8, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4),
                              (64, 64, 32, 4, 4), (64, 64, 64, 4, 3), (32, 64, 32, 4, 4),
                              (16, 64, 64, 4, 3)):
            c = _cfg(w, s, BLOCK_M=min(m, max(16, _pow2(M))), BLOCK_N=min(n, max(16, _pow2(N))),
                     BLOCK_K=min(k, max(16, _pow2(K))), GROUP_M=8)
            if c not in out:
                out.append(c)
        return out
    raise ValueError(f"unknown launch kind {spec.kind!r}")


def grid(spec: LaunchSpec, config: Config) -> tuple:
    p = dict(config.params)
    if spec.kind == "pointwise":
        return (math.ceil(spec.numel / p["XBLOCK"]),)
    if spec.kind == "rows":
        return (math.ceil(spec.numel / p["XBLOCK"]),)
    M, N, _ = spec.mnk
    return (math.ceil(M / p["BLOCK_M"]) * math.ceil(N / p["BLOCK_N"]), spec.numel)


def is_empty(spec: LaunchSpec) -> bool:
    """Launches with nothing to compute (zero-size tensors) are skipped."""
    if spec.kind == "matmul":
        return spec.numel == 0 or spec.mnk[0] == 0 or spec.mnk[1] == 0
    return spec.numel == 0


# ---------------------------------------------------------------- autotuning
# Each candidate costs a Triton compile (0.2-1 s) on the first call, and a launch this
# small runs in a few microseconds whatever its config: it takes the first candidate.
TUNE_MIN_ELEMENTS = 1 << 20  # pointwise elements, or rows x row length
TUNE_MIN_MACS = 1 << 24  # matmul multiply-adds


def worth_tuning(spec: LaunchSpec) -> bool:
    if spec.kind == "matmul":
        return spec.numel * math.prod(spec.mnk) >= TUNE_MIN_MACS
    return spec.numel * max(spec.rnumel, 1) >= TUNE_MIN_ELEMENTS


class Autotuner:
    """Times each candidate config of a launch once and remembers the fastest on disk.

    `timer(fn) -> ms` measures one call of fn (CUDA events on a GPU). Results are keyed by
    the kernel source, the launch, and the device, in one JSON file."""

    def __init__(self, timer, path: Path | None = None, device_name: str = ""):
        self.timer, self.device_name = timer, device_name
        self.path = Path(path) if path is not None else source_dir() / "autotune.json"
        self.tuned: list[tuple[str, Config, dict]] = []  # (launch, best, {config: ms}) this run

    def key(self, kernel: TritonKernel, spec: LaunchSpec) -> str:
        import triton
        text = f"{kernel.source}\n{spec.fn}\n{self.device_name}\n{triton.__version__}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, key: str, config: Config) -> None:
        entries = self._load()
        entries[key] = config.to_json()
        try:
            _write_atomic(self.path, json.dumps(entries, indent=1, sort_keys=True))
        except OSError:
            pass  # tuning again next time is the only cost

    def choose(self, kernel: TritonKernel, spec: LaunchSpec, candidates: list[Config], run) -> Config:
        """run(config) launches the kernel once with that config."""
        if len(candidates) == 1:
            return candidates[0]
        key = self.key(kernel, spec)
        known = self._load().get(key)
        if known is not None:
            config = Config.from_json(known)
            if config in candidates:
                return config
        timings = {}
        for c in candidates:
            try:
                run(c)  # compile and warm up outside the timing
                timings[c] = self.timer(lambda c=c: run(c))
            except Exception as e:  # e.g. out of shared memory for this block size
                timings[c] = math.inf
                if os.environ.get("TRACECC_VERBOSE", "") not in ("", "0"):
                    print(f"autotune {spec.fn} {c}: {e}", file=sys.stderr)
        best = min(candidates, key=lambda c: timings[c])
        if math.isinf(timings[best]):
            raise CodegenError(f"every config of Triton kernel {spec.fn} failed to run")
        self.tuned.append((spec.fn, best, timings))
        self._save(key, best)
        return best


def compile_offline(kernel: TritonKernel, spec: LaunchSpec, config: Config, arch: int = 90,
                    directory: Path | None = None):
    """Compile one launch for an NVIDIA GPU of compute capability `arch` without one
    (codegen-facts §2.6): the returned kernel's .asm holds ttir, ttgir, llir, ptx, cubin."""
    triton = require_triton(interpret=False)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(load_module(kernel, interpret=False, directory=directory), spec.fn)
    params = dict(config.params)
    types_ = dict(spec.signature, **{name: "constexpr" for name in params})
    signature = {name: types_[name] for name in fn.arg_names}  # in parameter order
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages, "enable_fp_fusion": True}
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False  # TRITON_INTERPRET=1 would route codegen to the interpreter
        return triton.compile(ASTSource(fn, signature, params), target=GPUTarget("cuda", arch, 32),
                              options=options)


# ---------------------------------------------------------------- GPU hooks
_hooked = None


def install_triton_hooks(device) -> None:
    """Make Triton launch on the device's stream and take scratch memory from its allocator.

    Triton 3.9 without torch launches on stream 0 (codegen-facts §2.4); our copies, events
    and graph captures use one non-blocking stream, so every launch must go there too.
    Triton 3.6 without torch has no active driver at all (§2.2): then a CudaDriver that
    needs no torch is made active, as measured on the H200."""
    global _hooked
    if _hooked is device:
        return
    triton = require_triton(interpret=False)
    try:
        drv = triton.runtime.driver.active
    except RuntimeError:  # "0 active drivers": triton 3.6 without torch
        from triton.backends.nvidia import driver as nvidia

        capability = device.capability

        class TorchFreeCudaDriver(nvidia.CudaDriver):
            def __init__(self):
                self.utils = nvidia.CudaUtils()
                self.launcher_cls = nvidia.CudaLauncher
                self.get_current_device = lambda: device.index
                self.set_current_device = lambda index: None
                self.get_device_capability = lambda index=None: capability

        drv = TorchFreeCudaDriver()
        triton.runtime.driver.set_active(drv)
    drv.get_current_stream = lambda index=None: device.stream
    if hasattr(triton, "set_allocator"):
        triton.set_allocator(lambda size, alignment, stream: device.alloc(max(size, 1)))
    _hooked = device
