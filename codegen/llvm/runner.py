"""Compile a kernel-IR Program with LLVM and run it on numpy buffers with one native call."""

from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import binding as llvm

from ...passes.kernel_ir import Program
from .lower import lower_program

_initialized = False


def _init():
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def compile_ir(text: str):
    """IR text -> (engine, target machine). One TargetMachine per engine: MCJIT owns it."""
    _init()
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                      features=llvm.get_host_cpu_features().flatten(),
                                      opt=3, jit=True)
    mod = llvm.parse_assembly(text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    return engine, mod


_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # CFUNCTYPE releases the GIL during the call


class CompiledProgram:
    """A Program compiled to native code. Temporaries are allocated once and reused;
    outputs are fresh arrays each call, so results handed out are never overwritten."""

    def __init__(self, program: Program, mathlib=None):
        self.program = program
        module = lower_program(program, mathlib)
        self.llvm_ir = str(module)
        self.engine, self.optimized = compile_ir(self.llvm_ir)
        self.entry = _ENTRY(self.engine.get_function_address("entry"))
        self.names = list(program.buffers)
        self.temps = {n: np.zeros(b.numel, b.dtype.np) for n, b in program.buffers.items()
                      if b.role in ("temp", "constant")}
        self.pointers = (ctypes.c_void_p * len(self.names))()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {}
        for i, name in enumerate(self.names):
            b = self.program.buffers[name]
            if name in inputs:
                a = np.ascontiguousarray(inputs[name], dtype=b.dtype.np)
            elif name in self.temps:
                a = self.temps[name]
            else:
                a = np.zeros(b.numel, b.dtype.np)
            arrays[name] = a
            self.pointers[i] = a.ctypes.data
        self.entry(ctypes.addressof(self.pointers))
        return {name: arrays[name].reshape(-1) for name in self.program.outputs}
