"""A small, safe wrapper around llvmlite's MCJIT: IR in, callable native code out.

The pitfalls it hides (see shared/notes/codegen-facts.md, section 3):
- `llvm.initialize()` is deprecated and raises; only the native target and asm printer
  are initialised, once.
- MCJIT takes ownership of its TargetMachine. Reusing a TargetMachine after its engine
  died aborted the process, so every compile makes a fresh one and hands it to exactly
  one engine.
- Code is generated once, as an object file (`emit_object`), and that object is loaded
  into the engine. The same bytes go to the on-disk cache, and reloading them later costs
  about 1 ms instead of a full compile.
- An external symbol MCJIT cannot resolve is a fatal LLVM error that kills the process.
  Undefined symbols are read from the object first: runtime symbols tracecc provides
  (the parallel-for pool, BLAS) are registered on demand, and anything still missing is
  a CodegenError.
- Functions are bound with ctypes.CFUNCTYPE, which releases the GIL during the call.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import llvmlite
from llvmlite import binding as llvm
from llvmlite import ir

from ...runtime.errors import CodegenError
from .. import cache as _cache

_init_lock = threading.Lock()
# llvmlite parses into LLVM's global context and releases the GIL in its calls: two Python
# threads compiling at once would race inside LLVM, so compiles and loads take turns.
_llvm_lock = threading.RLock()
_initialized = False


def initialize() -> None:
    """Initialise LLVM's native target once (never `llvm.initialize()`: it raises)."""
    global _initialized
    if not _initialized:
        with _init_lock:
            if not _initialized:
                llvm.initialize_native_target()
                llvm.initialize_native_asmprinter()
                _initialized = True


@dataclass(frozen=True)
class HostTarget:
    """What code is generated for; part of every compile-cache key."""

    triple: str
    cpu: str
    features: str
    data_layout: str
    llvmlite_version: str = llvmlite.__version__

    def key(self) -> str:
        return f"{self.triple}|{self.cpu}|{self.features}|llvmlite-{self.llvmlite_version}"

    @property
    def has_fma(self) -> bool:
        return "+fma" in self.features.split(",")

    @property
    def vector_bits(self) -> int:
        feats = self.features.split(",")
        if "+avx512f" in feats:
            return 512
        if "+avx" in feats:
            return 256
        return 128


@lru_cache(maxsize=None)
def host_target() -> HostTarget:
    initialize()
    tm = create_target_machine()
    return HostTarget(tm.triple, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(),
                      str(tm.target_data))


def create_target_machine(opt: int = 3) -> llvm.TargetMachine:
    """A fresh host TargetMachine. Give each one to at most one engine, never reuse it after."""
    initialize()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=opt, jit=True)


def new_module(name: str = "tracecc") -> ir.Module:
    """An empty llvmlite IR module with the host triple and data layout already set."""
    t = host_target()
    m = ir.Module(name=name)
    m.triple = t.triple
    m.data_layout = t.data_layout
    return m


# ------------------------------------------------------------------ runtime symbols
# name -> function that makes the symbol resolvable (calls llvm.add_symbol). Modules that
# provide runtime functions for generated code (parallel.py, matmul.py) register here.
_PROVIDERS: dict[str, Callable[[], None]] = {}
_REGISTERED: dict[str, int] = {}


def register_symbol(name: str, address: int) -> None:
    """Make `name` resolve to `address` in every module compiled or loaded afterwards."""
    llvm.add_symbol(name, address)
    _REGISTERED[name] = address


def register_provider(name: str, provide: Callable[[], None]) -> None:
    """`provide()` is called the first time a module needs symbol `name`."""
    _PROVIDERS[name] = provide


_PROVIDER_MODULES = ("parallel", "matmul")


def _load_providers() -> None:
    # Imported lazily: they import this module, and register their symbols when imported.
    import importlib

    for mod in _PROVIDER_MODULES:
        importlib.import_module(f"{__package__}.{mod}")


_process = ctypes.CDLL(None)


def _resolvable(name: str) -> bool:
    if name in _REGISTERED or llvm.address_of_symbol(name):
        return True
    try:
        getattr(_process, name)
        return True
    except AttributeError:
        return False


def resolve_symbols(names) -> None:
    """Make sure every name resolves, or raise CodegenError (MCJIT would abort the process)."""
    missing = [n for n in names if not _resolvable(n)]
    if missing:
        _load_providers()
        for n in missing:
            if n in _PROVIDERS:
                _PROVIDERS[n]()
        missing = [n for n in missing if not _resolvable(n)]
    if missing:
        raise CodegenError(f"generated code needs symbols that cannot be resolved: {missing}",
                           hint="register them with tracecc.codegen.llvm.jit.register_symbol")


def undefined_symbols(obj: bytes) -> list[str]:
    """Undefined global symbols of an ELF64 little-endian object (x86-64/aarch64 Linux).

    Returns [] for other formats (then nothing is checked before loading)."""
    if len(obj) < 64 or obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return []
    try:
        shoff, = struct.unpack_from("<Q", obj, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
        out = []
        for i in range(shnum):
            sh = shoff + i * shentsize
            sh_type, = struct.unpack_from("<I", obj, sh + 4)
            if sh_type != 2:  # SHT_SYMTAB
                continue
            off, size, link, _info, _align, entsize = struct.unpack_from("<QQIIQQ", obj, sh + 0x18)
            stroff, = struct.unpack_from("<Q", obj, shoff + link * shentsize + 0x18)
            for j in range(1, size // entsize):
                name_off, info, _other, shndx = struct.unpack_from("<IBBH", obj, off + j * entsize)
                if shndx == 0 and info >> 4 in (1, 2) and name_off:  # SHN_UNDEF, GLOBAL/WEAK
                    end = obj.index(b"\0", stroff + name_off)
                    out.append(obj[stroff + name_off:end].decode())
        return out
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise CodegenError(f"malformed object file: {e}") from None


# ------------------------------------------------------------------ compiled code
@dataclass
class CompiledModule:
    """Native code for one module, alive as long as this object (or a function bound from it).

    `timings` holds milliseconds per stage: ir_text, parse, verify, optimize, codegen, asm,
    load (engine creation + relocation). `object_bytes` is what the compile cache stores."""

    name: str
    object_bytes: bytes
    engine: llvm.ExecutionEngine = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    optimized_ir: str | None = field(default=None, repr=False)
    asm: str | None = field(default=None, repr=False)
    from_cache: bool = False
    _functions: dict = field(default_factory=dict, repr=False)

    def address(self, symbol: str) -> int:
        addr = self.engine.get_function_address(symbol)
        if not addr:
            raise CodegenError(f"symbol {symbol!r} is not defined in compiled module {self.name!r}")
        return addr

    def cfunc(self, symbol: str, restype, *argtypes):
        """A ctypes CFUNCTYPE bound to `symbol` (releases the GIL while it runs).

        The function object keeps this module (and so its code) alive."""
        key = (symbol, restype, argtypes)
        f = self._functions.get(key)
        if f is None:
            f = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(symbol))
            f._tracecc_module = self  # the engine must outlive the function pointer
            self._functions[key] = f
        return f

    def total_ms(self) -> float:
        return sum(self.timings.values())


# Loop unrolling (on top of vectorisation, which interleaves anyway) tripled the compile
# time of the MNIST training step (0.55 s -> 0.19 s without it, 15 kernels) for no
# measurable speed in our memory-bound kernels; TRACECC_LLVM_UNROLL=1 turns it back on.
UNROLL = os.environ.get("TRACECC_LLVM_UNROLL", "0") == "1"


def optimize(mod: llvm.ModuleRef, tm: llvm.TargetMachine, speed_level: int = 3) -> None:
    """O3 through the new pass manager, with loop and SLP vectorisation (SLP is off by default)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = speed_level > 0
    pto.slp_vectorization = speed_level > 0
    pto.loop_unrolling = UNROLL
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def compile_module(module: ir.Module | str, name: str | None = None, *, speed_level: int = 3,
                   cache: bool = False, keep_ir: bool = False, want_asm: bool = False
                   ) -> CompiledModule:
    """Compile an llvmlite `ir.Module` (or IR text) to native code and load it.

    cache: look the object up in (and store it to) the on-disk cache (codegen/cache.py),
    keyed by the IR text and the target. keep_ir keeps the optimised IR text; want_asm also
    emits assembly text for dumps (a second code generation, so only when asked); both
    bypass a cache hit because a cached entry holds only the object."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    text = str(module) if isinstance(module, ir.Module) else module
    if name is None:
        name = getattr(module, "name", None) or "tracecc"
    timings["ir_text"] = _ms(t)

    key = None
    if cache and _cache.enabled():
        t = time.perf_counter()
        key = _cache.make_key(text, f"{host_target().key()}|O{speed_level}|unroll{int(UNROLL)}")
        obj = None if (keep_ir or want_asm) else _cache.load(key)
        timings["cache_lookup"] = _ms(t)
        if obj is not None:
            cm = load_object(obj, name)
            cm.timings = {**timings, **cm.timings}
            cm.from_cache = True
            return cm

    with _llvm_lock:
        obj, tm, optimized_ir, asm = _generate(text, name, speed_level, key, keep_ir, want_asm, timings)
    # outside the lock: loading may first compile a runtime (parallel.py) under its own lock
    cm = load_object(obj, name, _tm=tm)
    cm.timings = {**timings, **cm.timings}
    cm.optimized_ir, cm.asm = optimized_ir, asm
    return cm


def _generate(text, name, speed_level, key, keep_ir, want_asm, timings):
    """IR text -> (object bytes, its TargetMachine, optimised IR or None, asm or None)."""
    t = time.perf_counter()
    initialize()
    try:
        mod = llvm.parse_assembly(text)
    except RuntimeError as e:
        raise CodegenError(f"LLVM could not parse the generated IR of {name!r}: {e}",
                           hint="dump it with TRACECC_LOGS=code") from None
    timings["parse"] = _ms(t)
    t = time.perf_counter()
    try:
        mod.verify()
    except RuntimeError as e:
        raise CodegenError(f"generated IR of {name!r} failed verification: {e}",
                           hint="dump it with TRACECC_LOGS=code") from None
    timings["verify"] = _ms(t)

    tm = create_target_machine()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    t = time.perf_counter()
    optimize(mod, tm, speed_level)
    timings["optimize"] = _ms(t)
    optimized_ir = str(mod) if keep_ir else None

    t = time.perf_counter()
    obj = tm.emit_object(mod)
    timings["codegen"] = _ms(t)
    if key is not None:
        t = time.perf_counter()
        _cache.store(key, obj)
        timings["cache_store"] = _ms(t)
    asm = None
    if want_asm:
        t = time.perf_counter()
        asm = tm.emit_assembly(mod)
        timings["asm"] = _ms(t)
    return obj, tm, optimized_ir, asm


def load_object(obj: bytes, name: str = "tracecc", *, _tm: llvm.TargetMachine | None = None
                ) -> CompiledModule:
    """Load object bytes (from `CompiledModule.object_bytes` or the cache) into a new engine."""
    t = time.perf_counter()
    resolve_symbols(undefined_symbols(obj))
    with _llvm_lock:
        return _load_locked(obj, name, _tm, t)


def _load_locked(obj, name, _tm, t) -> CompiledModule:
    tm = _tm if _tm is not None else create_target_machine()
    holder = llvm.parse_assembly("")
    holder.triple = tm.triple
    holder.data_layout = str(tm.target_data)
    engine = llvm.create_mcjit_compiler(holder, tm)  # takes ownership of tm
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return CompiledModule(name, obj, engine, {"load": _ms(t)})


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
