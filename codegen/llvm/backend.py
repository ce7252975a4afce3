"""The "llvm" backend: graph -> fused kernels (passes/schedule.py) -> one LLVM module.

A compiled graph is one native call per run: `entry(bufs)` runs every kernel in order,
splitting the large ones over the thread pool. Compiled objects go through the on-disk
cache (codegen/cache.py), so a second process skips LLVM entirely. A graph the backend
cannot lower yet runs on the reference interpreter, and the log says why.

Dumps (TRACECC_DUMP_DIR, or TRACECC_LOGS=code): the module's LLVM IR as `NNN_llvm.ll`,
each kernel's function headed by its kernel IR as comments (the traced ops it computes,
with the user's lines); with TRACECC_DUMP_ASM=1 also the assembly, `NNN_asm.s`, headed the
same way (a second code generation, so only when asked).
"""

from __future__ import annotations

import os
import re
import time

from ...passes.interpret import compile_graph
from ...passes.ir import KernelGroup
from ...passes.kernel_ir import format_kernel, format_program
from ...passes.pipeline import NullSink
from ...passes.schedule import schedule
from ..backends import register_backend
from .runner import CompiledProgram


def fusion_enabled() -> bool:
    return os.environ.get("TRACECC_FUSION", "1") != "0"


def _kernel_info(k) -> str:
    elems = 1
    for v in k.outer:
        elems *= v.size
    return f"{k.kind}, {elems} iterations"


def annotate(code: str, program, comment: str, function_start: str) -> str:
    """`code` with each kernel's kernel IR, as `comment` lines, above the line where its
    function starts (`function_start`: a regex whose group 1 is the function's name). A
    function that also runs other kernels (the same code on other buffers) names them."""
    from .lower import shared_functions

    kernels = {k.name: k for k in program.kernels}
    also: dict[str, list[str]] = {}
    for name, (fn, _) in shared_functions(program).items():
        if name != fn:
            also.setdefault(fn, []).append(name)
    start = re.compile(function_start)
    out = []
    for line in code.splitlines():
        m = start.match(line)
        k = kernels.pop(m.group(1), None) if m else None
        if k is not None:
            out += ["", *(f"{comment} {row}" for row in format_kernel(k).splitlines())]
            if k.name in also:
                out.append(f"{comment} also runs (same code, other buffers): {', '.join(also[k.name])}")
        out.append(line)
    return "\n".join(out) + "\n"


def compile_llvm(graph, log=None):
    log = log or NullSink()
    t0 = time.perf_counter()
    try:
        program, decisions = schedule(graph, fuse=fusion_enabled(), name=graph.name)
    except NotImplementedError as e:
        log.emit("fusion", f"{graph.name}: the llvm backend cannot lower this graph yet ({e}); "
                           f"running it on the interpreter")
        return compile_graph(graph)
    t_schedule = (time.perf_counter() - t0) * 1e3
    for line in decisions:
        log.emit("fusion", line)
    graph.kernels = [KernelGroup(k.name, _kernel_info(k), list(k.sources), k.reason)
                     for k in program.kernels]
    log.stage("fused", graph, kind="fusion")  # the graph with its kernels (clusters in `tracecc graph`)
    log.stage("kernels", text=format_program(program) + f"\n# scheduled in {t_schedule:.1f} ms\n",
              suffix=".kir", kind="fusion")
    names = dict(zip(graph.roots(), program.outputs))
    inputs = dict(zip(graph.inputs, program.inputs))
    writes = {names[new]: inputs[target] for target, new in graph.writes if new in names}
    try:
        compiled = CompiledProgram(program, cache=True, writes=writes)
    except NotImplementedError as e:  # an op without an LLVM emitter yet
        log.emit("fusion", f"{graph.name}: the llvm backend cannot lower this graph yet ({e}); "
                           f"running it on the interpreter")
        return compile_graph(graph)
    log.emit("perf", f"{graph.name}: memory plan: {compiled.memory.summary()}")
    if log.enabled("code") or getattr(log, "dir", None) is not None:
        log.stage("llvm", text=annotate(compiled.llvm_ir, program, ";", r'define .*@"([^"]+)"\('),
                  suffix=".ll", kind="code")
        if os.environ.get("TRACECC_DUMP_ASM") == "1":
            from .jit import compile_module
            asm = compile_module(compiled.llvm_ir, program.name, want_asm=True).asm
            log.stage("asm", text=annotate(asm, program, "#", r"\t\.globl\t(\S+)$"),
                      suffix=".s", kind="code")
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in compiled.compiled.timings.items())
    log.emit("perf", f"{graph.name}: {len(program.kernels)} kernels; schedule {t_schedule:.1f} ms; {timings}")
    shapes = [tuple(v.type.shape) for v in graph.roots()]
    run = compiled.run

    profiled = not log.enabled("perf")

    def runner(arrays):
        nonlocal profiled
        if not profiled:  # TRACECC_LOGS=perf: one line per kernel, on the first run
            profiled = True
            for row in compiled.profile(arrays, repeat=5):
                log.emit("perf", f"{row['kernel']}: {row['ms']:.4f} ms, {row['GB/s']:.2f} GB/s, "
                                 f"{row['GFLOP/s']:.2f} GFLOP/s")
        # an in-place update returns the input's own array: keep it (no reshape) so the
        # caller sees it is already written and skips the copy
        return [a if a.shape == s else a.reshape(s) for a, s in zip(run(arrays), shapes)]

    runner.program = program
    runner.compiled = compiled
    runner.kernel_times = compiled.kernel_times
    return runner


register_backend("llvm", compile_llvm, priority=10,
                 doc="fused kernels lowered to LLVM IR (llvmlite), one native call per graph")
