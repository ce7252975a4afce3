"""Compile a kernel-IR Program with LLVM and run it on numpy buffers with one native call."""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from ...passes.kernel_ir import Program
from . import jit
from ...passes.memory import plan
from .lower import estimated_work_ns, lower_program
from .mathlib import MathLib


def _split(kernel):
    """Grain for the thread pool, or None to run the kernel on the calling thread."""
    from .parallel import worth_splitting
    if not worth_splitting(estimated_work_ns(kernel)) or kernel.outer[0].size < 2:
        return None
    if kernel.matmul is not None and len(kernel.outer) == 2:
        return None  # the product goes to BLAS as a whole (it has its own threads)
    return 1


class CompiledProgram:
    """A Program compiled to native code. Temporaries are allocated once and reused;
    outputs are fresh arrays each call, so results handed out are never overwritten."""

    def __init__(self, program: Program, *, threads: bool = True, cache: bool = False,
                 keep_ir: bool = False, writes: dict[str, str] | None = None):
        """writes: output buffer -> input buffer it replaces (graph writes), for in-place updates."""
        self.program = program
        self.memory = plan(program, writes)
        module = jit.new_module(program.name)
        lower_program(program, MathLib(module), module, split=_split if threads else None)
        self.llvm_ir = str(module)
        self.compiled = jit.compile_module(module, program.name, cache=cache, keep_ir=keep_ir)
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
        self.recycled: dict[str, np.ndarray] = {}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """inputs in Program.inputs order; returns arrays in Program.outputs order (flat)."""
        p, slot, ptrs = self.program, self.slot, self.pointers
        keep = []
        writable = {}
        for name, a in zip(p.inputs, inputs):
            b = p.buffers[name]
            if a.dtype != b.dtype.np or not a.flags.c_contiguous:
                a = np.ascontiguousarray(a, dtype=b.dtype.np)
            keep.append(a)
            writable[name] = a.flags.writeable
            ptrs[slot[name]] = a.ctypes.data
        outs = {}
        given = dict(zip(p.inputs, keep))
        inplace = self.memory.inplace
        for name in p.outputs:
            if name not in outs:
                if name in inplace and writable[inplace[name]]:
                    outs[name] = given[inplace[name]]  # the update goes into the input's own array
                elif name in given:  # an output that is also an input starts from its values
                    outs[name] = given[name].copy()
                else:
                    outs[name] = self._output_buffer(name)
                ptrs[slot[name]] = outs[name].ctypes.data
        self.entry(self.pointers_address)
        seen = set()
        results = []
        for name in p.outputs:  # the same buffer twice (output and write): hand out copies
            results.append(outs[name] if name not in seen else outs[name].copy())
            seen.add(name)
        return results

    def _output_buffer(self, name: str) -> np.ndarray:
        """The array this output was returned in last time, if nobody holds it any more
        (fresh pages cost more than the kernel: 32 MB into a new array ~5.4 ms against
        ~3.1 ms into a reused one); else a new one."""
        old = self.recycled.get(name)
        # references: the dict's, getrefcount's argument, and `old` itself
        if old is not None and sys.getrefcount(old) <= 3:
            return old
        b = self.program.buffers[name]
        new = np.empty(b.numel, b.dtype.np)
        self.recycled[name] = new
        return new

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.run([inputs[n] for n in self.program.inputs])
        return dict(zip(self.program.outputs, results))
