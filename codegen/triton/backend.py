"""Run a kernel-IR Program as Triton kernels, and the "triton" backend for compile().

A TritonProgram owns one buffer per Program buffer, allocated once, so every kernel
argument keeps its address from call to call: numpy arrays under the interpreter, device
buffers from runtime/cuda.py's caching allocator on a GPU. A call copies the inputs in,
launches every kernel in order from a prebuilt plan (the first call chooses configs,
autotuning on a GPU), and copies the outputs out into fresh arrays, so results handed
to the caller are never overwritten by a later call.

On a GPU the second call captures the whole launch sequence into a CUDA graph and later
calls replay it: one driver call instead of one Python launch per kernel (codegen-facts
§5). TRACECC_CUDA_GRAPHS=0 turns that off.
"""

from __future__ import annotations

import os
import time
import warnings
from functools import partial

import numpy as np

from ...passes.kernel_ir import Program, format_program
from ...passes.pipeline import NullSink
from ...runtime.cuda import CudaArray
from ...runtime.errors import TraceccError
from ..backends import register_backend
from . import launch
from .launch import Autotuner, NPTensor
from .lower import Options, lower_program, without_dead_stores


class HostMemory:
    """Interpreter buffers: numpy arrays that keep their addresses, like device memory."""

    interpret = True
    name = "triton interpreter (cpu)"

    def alloc(self, buffer) -> NPTensor:
        return NPTensor(np.empty(buffer.numel, buffer.dtype.np), buffer.dtype)

    def upload(self, arg: NPTensor, array: np.ndarray) -> None:
        np.copyto(arg.a, array.reshape(-1))

    def download(self, arg: NPTensor) -> np.ndarray:
        return arg.a.copy()

    def synchronize(self) -> None:
        pass

    def timer(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


class CudaMemory:
    """Device buffers on one GPU, through runtime/cuda.py; Triton launches on its stream."""

    interpret = False

    def __init__(self, device=None):
        from ...runtime import cuda
        self.device = device or cuda.get_device()
        self.name = self.device.name
        launch.install_triton_hooks(self.device)

    def alloc(self, buffer):
        return launch.DeviceArg(self.device.alloc(max(buffer.numel * buffer.dtype.itemsize, 1)),
                                buffer.dtype)

    def upload(self, arg, array: np.ndarray) -> None:
        self.device.copy_to_device(arg.buffer, array)

    def download(self, arg) -> np.ndarray:
        out = np.empty(arg.buffer.nbytes // arg.dtype.itemsize, arg.dtype.np)
        self.device.copy_to_host(arg.buffer, out)
        return out

    def synchronize(self) -> None:
        self.device.synchronize()

    def timer(self, fn) -> float:
        """GPU ms per call of fn; short kernels are repeated to about 2 ms of work."""
        ms = self.device.time_ms(fn)
        if ms < 1.0:
            ms = self.device.time_ms(fn, repeat=min(50, int(2.0 / max(ms, 0.04)) + 1))
        return ms


def cuda_graphs_enabled() -> bool:
    return os.environ.get("TRACECC_CUDA_GRAPHS", "1") not in ("0", "false", "off")


class TritonProgram:
    """A Program lowered to Triton. device: "interpreter", "cuda", or None for cuda when a
    GPU is available, else the interpreter."""

    def __init__(self, program: Program, *, device: str | None = None, options: Options | None = None,
                 source_dir=None, autotune: bool | None = None, graphs: bool | None = None,
                 memory=None):
        if device is None:
            device = "cuda" if gpu_available() else "interpreter"
        self.program = program = without_dead_stores(program)
        self.options = options or Options()
        self.memory = memory or (HostMemory() if device == "interpreter" else CudaMemory())
        interpret = self.memory.interpret
        self.kernels = lower_program(program, self.options)
        self.modules = [launch.load_module(k, interpret, source_dir) for k in self.kernels]
        self.paths = [launch.kernel_path(k, source_dir) for k in self.kernels]
        self.args = {name: self.memory.alloc(b) for name, b in program.buffers.items()}
        if autotune is None:
            autotune = not interpret and os.environ.get("TRACECC_AUTOTUNE", "1") != "0"
        self.autotuner = Autotuner(self.memory.timer, device_name=self.memory.name) if autotune else None
        self.graphs = (not interpret and cuda_graphs_enabled()) if graphs is None else graphs
        self.plan: list | None = None  # one bound launch per kernel launch, once configs are known
        self.configs: list = []  # (function name, Config) per launch
        self.graph = None
        self.calls = 0

    @property
    def source(self) -> str:
        return "\n\n".join(f"# ---- {p.name}\n{k.source}" for k, p in zip(self.kernels, self.paths))

    def _first_launch(self) -> None:
        """Choose each launch's config (timing candidates on a GPU), launch it, bind the plan."""
        plan = []
        for kernel, module in zip(self.kernels, self.modules):
            for spec in kernel.launches:
                if launch.is_empty(spec):
                    continue
                fn = getattr(module, spec.fn)
                args = [self.args[b] for b in spec.buffers]
                candidates = launch.configs(spec, self.memory.interpret, self.options.max_rblock)

                def run(config, fn=fn, spec=spec, args=args):
                    fn[launch.grid(spec, config)](*args, **config.kwargs())

                config = candidates[0]
                if self.autotuner is not None and spec.rerunnable:
                    config = self.autotuner.choose(kernel, spec, candidates, run)
                run(config)
                self.configs.append((spec.fn, config))
                plan.append(partial(fn[launch.grid(spec, config)], *args, **config.kwargs()))
        self.plan = plan

    def launch(self) -> None:
        """Run every kernel once on the buffers as they are (no copies)."""
        if self.memory.interpret:  # masked-off lanes compute too (log(0), 0/0): not errors
            with np.errstate(all="ignore"):
                return self._launch()
        return self._launch()

    def _launch(self) -> None:
        if self.plan is None:
            self._first_launch()
        elif self.graph is not None:
            self.graph.replay()
        elif self.graphs and self.calls >= 1:
            try:
                self.graph = self.memory.device.capture(self._launch_plan)
            except TraceccError as e:  # e.g. a driver without graph support: launch directly
                warnings.warn(f"CUDA graph capture failed, launching kernels one by one: {e}")
                self.graphs = False
                self._launch_plan()
            else:
                self.graph.replay()
        else:
            self._launch_plan()
        self.calls += 1

    def _launch_plan(self) -> None:
        for call in self.plan:
            call()

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """inputs in Program.inputs order; returns flat arrays in Program.outputs order."""
        p = self.program
        for name, a in zip(p.inputs, inputs):
            b = p.buffers[name]
            a = np.asarray(a)
            if a.dtype != b.dtype.np or not a.flags.c_contiguous:
                a = np.ascontiguousarray(a, dtype=b.dtype.np)
            self.memory.upload(self.args[name], a)
        self.launch()
        return [self.memory.download(self.args[name]) for name in p.outputs]

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.run([inputs[n] for n in self.program.inputs])
        return dict(zip(self.program.outputs, results))


# ---------------------------------------------------------------- availability and the backend
_gpu_available: bool | None = None


def gpu_available() -> bool:
    """triton importable, libcuda loadable, and at least one device. Cached."""
    global _gpu_available
    if _gpu_available is None:
        try:
            from ...runtime import cuda  # the emulated test device is no GPU
            _gpu_available = not cuda.emulated() and cuda.is_available() and launch.triton_available()
        except Exception:
            _gpu_available = False
    return _gpu_available


def compile_triton(graph, log=None, *, device: str | None = None, options: Options | None = None):
    """compile(graph, log) -> runner for the backend registry (host arrays in and out)."""
    from ...passes.interpret import compile_graph
    from ...passes.schedule import schedule
    from ..llvm.backend import fusion_enabled

    log = log or NullSink()
    t0 = time.perf_counter()
    try:
        program, decisions = schedule(graph, fuse=fusion_enabled(), name=graph.name)
        compiled = TritonProgram(program, device=device, options=options)
    except NotImplementedError as e:
        log.emit("fusion", f"{graph.name}: the triton backend cannot lower this graph yet ({e}); "
                           f"running it on the interpreter")
        return compile_graph(graph)
    for line in decisions:
        log.emit("fusion", line)
    log.stage("kernels", text=format_program(program) + "\n", suffix=".kir", kind="fusion")
    log.stage("triton", text=compiled.source, suffix=".py", kind="code")
    log.emit("perf", f"{graph.name}: {len(program.kernels)} kernels lowered to Triton in "
                     f"{(time.perf_counter() - t0) * 1e3:.1f} ms")
    shapes = [tuple(v.type.shape) for v in graph.roots()]
    run = compiled.run

    def runner(arrays):
        # cuda tensors' arrays come in and go out through the host for now (one copy each)
        device = next((a.device for a in arrays if type(a) is CudaArray), None)
        if device is not None:
            arrays = [a.numpy() if type(a) is CudaArray else a for a in arrays]
        outs = [a.reshape(s) for a, s in zip(run(arrays), shapes)]
        if device is not None:
            outs = [CudaArray.from_numpy(device, a) for a in outs]
        return outs

    runner.program = program
    runner.compiled = compiled
    return runner


# Below llvm: tensors live on the cpu until cuda tensors exist, so "auto" keeps compiling for
# the cpu; backend="triton" runs a graph on the GPU, copying host arrays in and out per call.
register_backend("triton", compile_triton, priority=5, available=gpu_available,
                 doc="fused kernels as generated Triton source on an NVIDIA GPU (driver via ctypes)")
register_backend("triton_interpret", partial(compile_triton, device="interpreter"), priority=-1,
                 available=launch.triton_available,
                 doc="the Triton backend's kernels under Triton's CPU interpreter (slow; for tests)")
