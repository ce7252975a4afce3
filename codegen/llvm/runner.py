"""Compile a kernel-IR Program with LLVM and run it on numpy buffers with one native call."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import sys
from pathlib import Path

import numpy as np

from ...passes.kernel_ir import Program
from . import jit
from ...passes.kernel_ir import format_program
from ...passes.memory import plan
from .. import cache as _cache
from .lower import estimated_work_ns, lower_program
from .mathlib import MathLib


@functools.lru_cache(maxsize=None)
def _fingerprint() -> str:
    """Hash of the code generator's source: a changed lowering never reuses old objects."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# A chunk of a split kernel holds at least this much estimated work: the pool cuts a job into
# up to CHUNKS_PER_THREAD chunks per thread, and a small kernel's chunks stay big enough that
# claiming them costs nothing beside their work.
CHUNK_WORK_NS = 10_000


def _split(kernel):
    """Grain for the thread pool, or None to run the kernel on the calling thread."""
    from .parallel import worth_splitting
    work = estimated_work_ns(kernel)
    if not worth_splitting(work) or kernel.outer[0].size < 2:
        return None
    if kernel.matmul is not None and len(kernel.outer) == 2:
        return None  # the product goes to BLAS as a whole (it has its own threads)
    return max(1, -(-kernel.outer[0].size * CHUNK_WORK_NS // int(work)))


def kernel_flops(k) -> int:
    """Floating-point operations of one run of k: 2*M*N*K for a matmul, else one per op
    per iteration."""
    from ...passes.kernel_ir import Op, walk_kernel

    outer = 1
    for v in k.outer:
        outer *= v.size
    if k.matmul is not None:
        return 2 * outer * k.matmul.k.size
    ops = sum(1 for e in walk_kernel(k) if isinstance(e, Op))
    inner = sum(max(1, _prod(v.size for v in p.loops)) for p in k.phases) or 1
    return outer * inner * ops


def _prod(it) -> int:
    n = 1
    for x in it:
        n *= x
    return n


class CompiledProgram:
    """A Program compiled to native code. Temporaries are allocated once and reused;
    outputs are fresh arrays each call, so results handed out are never overwritten."""

    def __init__(self, program: Program, *, threads: bool = True, cache: bool = False,
                 keep_ir: bool = False, writes: dict[str, str] | None = None):
        """writes: output buffer -> input buffer it replaces (graph writes), for in-place updates."""
        self.program = program
        self.threads = threads
        self.memory = plan(program, writes)
        self._llvm_ir = None
        self.compiled = self._compile(cache, keep_ir)
        self.entry = self.compiled.cfunc("entry", None, ctypes.c_void_p)
        self.names = list(program.buffers)
        self.slot = {n: i for i, n in enumerate(self.names)}
        # temporaries share one arena, placed by the memory plan
        self.arena = np.zeros(max(self.memory.arena_bytes, 1), np.uint8)
        self.pointers = (ctypes.c_void_p * len(self.names))()
        for n, b in program.buffers.items():
            if b.role in ("temp", "constant"):
                offset = self.memory.offsets.get(n)
                if offset is None:  # never touched by a kernel: still give it memory
                    offset = 0
                self.pointers[self.slot[n]] = self.arena.ctypes.data + offset
        self.pointers_address = ctypes.addressof(self.pointers)
        self.recycled: dict[str, list[np.ndarray]] = {}
        self.recycled_address: dict[int, int] = {}  # id of a pooled output -> its data pointer
        # per-call plan, computed once
        p = program
        self.input_slots = [(self.slot[n], p.buffers[n].dtype.np) for n in p.inputs]
        self.last_inputs: list = [None] * len(p.inputs)
        self.converted: list = [None] * len(p.inputs)
        self.bound: list = [None] * len(self.names)  # the array each slot points into
        index_of = {n: i for i, n in enumerate(p.inputs)}
        self.output_plan = []
        for name in dict.fromkeys(p.outputs):
            if name in self.memory.inplace:
                self.output_plan.append((name, self.slot[name], index_of[self.memory.inplace[name]], False))
            elif name in index_of:  # an output that is also an input starts from its values
                self.output_plan.append((name, self.slot[name], index_of[name], True))
            else:
                self.output_plan.append((name, self.slot[name], None, False))
        seen: set = set()
        self.repeated = []
        for k, name in enumerate(p.outputs):
            if name in seen:
                self.repeated.append(k)
            seen.add(name)

    def _lower(self) -> str:
        module = jit.new_module(self.program.name)
        lower_program(self.program, MathLib(module), module, split=_split if self.threads else None)
        return str(module)

    @property
    def llvm_ir(self) -> str:
        """The generated LLVM IR (built on demand: a cache hit never lowers the program)."""
        if self._llvm_ir is None:
            self._llvm_ir = self._lower()
        return self._llvm_ir

    def _compile(self, cache: bool, keep_ir: bool):
        """The cache is keyed by the kernel program itself (plus the code generator's own
        source), so a hit skips lowering and LLVM alike: ~5 ms instead of ~130 ms for the
        MNIST step's 15 kernels."""
        if not (cache and _cache.enabled()) or keep_ir:
            return jit.compile_module(self.llvm_ir, self.program.name, keep_ir=keep_ir)
        from .parallel import num_threads

        # which kernels are split over the pool is decided while lowering: part of the key
        split = self.threads and num_threads() > 1
        key = _cache.make_key(format_program(self.program) + f"|split={split}",
                              f"{jit.host_target().key()}|O3|unroll{int(jit.UNROLL)}|{_fingerprint()}")
        obj = _cache.load(key)
        if obj is not None:
            compiled = jit.load_object(obj, self.program.name)
            compiled.from_cache = True
            return compiled
        compiled = jit.compile_module(self.llvm_ir, self.program.name)
        _cache.store(key, compiled.object_bytes)
        return compiled

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """inputs in Program.inputs order; returns arrays in Program.outputs order (flat).

        The hot path of every compiled call: a pointer is recomputed only for an array that
        is not the one this slot held last time (parameters and recycled outputs are the
        same arrays call after call; reading .ctypes.data costs ~2 us)."""
        ptrs, bound = self.pointers, self.bound
        used = []
        for i, (a, (s, np_dtype)) in enumerate(zip(inputs, self.input_slots)):
            if a is not self.last_inputs[i]:
                self.last_inputs[i] = a
                if a.dtype != np_dtype or not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a, dtype=np_dtype)
                self.converted[i] = a
                if bound[s] is not a:
                    bound[s] = a
                    ptrs[s] = a.ctypes.data
            used.append(self.converted[i])
        outs = {}
        for name, s, source, copy in self.output_plan:
            if name in outs:
                continue
            if source is not None:  # in place: the input's own array (if it may be written)
                a = used[source]
                if copy or not a.flags.writeable:
                    a = a.copy() if copy else self._output_buffer(name)
            else:
                a = self._output_buffer(name)
            outs[name] = a
            if bound[s] is not a:
                bound[s] = a
                ptrs[s] = self.recycled_address.get(id(a)) or a.ctypes.data
        self.entry(self.pointers_address)
        results = [outs[name] for name in self.program.outputs]
        for k in self.repeated:  # the same buffer twice (output and write): hand out copies
            results[k] = results[k].copy()
        return results

    def _safe_inputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs for an extra (timing) run: copies of those updated in place, so their
        update is not applied twice; the others as they are (a copy's fresh pages would
        distort the timing)."""
        targets = set(self.memory.inplace.values())
        return [np.array(a, copy=True) if name in targets else a
                for name, a in zip(self.program.inputs, inputs)]

    def kernel_times(self) -> dict[str, float] | None:
        """Seconds the native code takes for all kernels as they really run (threads
        included), timed on copies of the last call's inputs; None before any call.
        A step's time minus this is the per-call overhead (guards, Python, copies)."""
        import time

        if not self.converted or any(a is None for a in self.converted):
            return None
        self.run(self._safe_inputs(self.converted))  # sets the pointers
        times = []
        for _ in range(5):
            t = time.perf_counter()
            self.entry(self.pointers_address)
            times.append(time.perf_counter() - t)
        return {"all kernels": sorted(times)[2]}

    def profile(self, inputs: list[np.ndarray], repeat: int = 20) -> list[dict]:
        """Time each kernel on its own (median of `repeat` calls, single-threaded), with the
        bytes it moves and its GFLOP/s: what TRACECC_LOGS=perf prints."""
        import time

        from .lower import shared_functions

        self.run(self._safe_inputs(inputs))  # sets the buffer pointers
        functions = shared_functions(self.program)
        rows = []
        for k in self.program.kernels:
            function, names = functions[k.name]  # names: the kernel's own pointer table
            fn = self.compiled.cfunc(function, None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
            args = (ctypes.c_void_p * max(len(names), 1))(*[self.pointers[self.slot[n]] for n in names])
            n = k.outer[0].size if k.outer else 1
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                fn(ctypes.addressof(args), 0, n)
                times.append(time.perf_counter() - t)
            seconds = sorted(times)[len(times) // 2]
            moved = sum(self.program.buffers[b].numel * self.program.buffers[b].dtype.itemsize
                        for b in set(k.reads()) | set(k.writes()))
            flops = kernel_flops(k)
            rows.append({"kernel": k.name, "ms": seconds * 1e3, "GB/s": moved / seconds / 1e9,
                         "GFLOP/s": flops / seconds / 1e9, "bytes": moved, "flops": flops})
        return rows

    def _output_buffer(self, name: str) -> np.ndarray:
        """An array this output was returned in before that nobody holds any more (fresh
        pages cost more than the kernel: 32 MB into a new array ~5.4 ms against ~3.1 ms
        into a reused one); else a new one. Two per output, because a training step's
        previous gradients are still in .grad when the next step's are computed."""
        pool = self.recycled.setdefault(name, [])
        for old in pool:
            # references: the pool's, getrefcount's argument, and the loop variable
            if sys.getrefcount(old) <= 3:
                return old
        b = self.program.buffers[name]
        new = np.empty(b.numel, b.dtype.np)
        if len(pool) >= 2:
            del self.recycled_address[id(pool.pop(0))]
        pool.append(new)
        # the pool keeps it alive, so its id is its own: reading .ctypes.data costs ~2 us,
        # and outputs alternate between two arrays call after call
        self.recycled_address[id(new)] = new.ctypes.data
        return new

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.run([inputs[n] for n in self.program.inputs])
        return dict(zip(self.program.outputs, results))
