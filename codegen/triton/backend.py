"""Run a kernel-IR Program as Triton kernels, and the "triton" backend for compile().

A TritonProgram is called one of two ways (one program, one way):

- `run(arrays)`: host arrays in and out. The program owns one buffer per Program buffer,
  allocated once (numpy arrays under the interpreter, device memory on a GPU); a call
  copies the inputs in and the outputs out into fresh arrays.
- `run_device(arrays)`: cuda arrays (runtime/cuda.py CudaArray) in and out, on a GPU or
  the emulated test device. Kernels read the callers' device buffers where they are;
  outputs go into fresh buffers from the caching allocator, so results handed out are
  never overwritten by a later call; a write that the memory plan (passes/memory.py)
  proves safe is done in place, by the kernel that computes it, into the written
  tensor's own buffer (a parameter update is neither copied nor leaves the device).
  Only host inputs cross over: constants once, cpu tensors and random numbers per call.

Either way every kernel is launched in order from a prebuilt plan; the first call picks
the configs (autotuning on a GPU).

CUDA graphs (device memory; TRACECC_CUDA_GRAPHS=0 or graphs=False turns them off): the
second call captures the launch sequence and later calls replay it, one driver call per
step (codegen-facts §5). A graph bakes in addresses, so at capture the inputs whose
buffers did not move since the previous call (parameters, optimizer state) are bound
directly and the others (the batch) get a buffer of the program's, which each call fills
by a device-to-device copy; outputs are the program's buffers, copied into fresh ones
after each replay. When a directly bound input moves (a parameter replaced), the graph is
captured again; after RECAPTURE_LIMIT moves the program launches kernels one by one.
"""

from __future__ import annotations

import os
import time
import warnings
from functools import partial

import numpy as np

from ...passes.kernel_ir import Program, format_program
from ...passes.memory import plan as memory_plan
from ...passes.pipeline import NullSink
from ...runtime.cuda import CudaArray, run_op
from ...runtime.dtypes import get_dtype
from ...runtime.errors import TraceccError
from ..backends import register_backend
from . import launch
from .launch import Autotuner, NPTensor
from .lower import Options, lower_program, without_dead_stores

RECAPTURE_LIMIT = 3


class HostMemory:
    """Interpreter buffers: numpy arrays that keep their addresses, like device memory."""

    interpret = True
    graphs = False
    enqueue = None
    name = "triton interpreter (cpu)"

    def alloc(self, buffer) -> NPTensor:
        return NPTensor(np.empty(buffer.numel, buffer.dtype.np), buffer.dtype)

    def upload(self, arg: NPTensor, array: np.ndarray) -> None:
        np.copyto(arg.a, array.reshape(-1))

    def download(self, arg: NPTensor) -> np.ndarray:
        return arg.a.copy()

    def scratch_copy(self, arg: NPTensor) -> NPTensor:
        return NPTensor(arg.a.copy(), arg.dtype)

    def synchronize(self) -> None:
        pass

    def timer(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


class CudaMemory:
    """Device buffers on one GPU (or the emulated test device, whose kernels run under the
    interpreter on the host memory behind its pointers), through runtime/cuda.py."""

    graphs = True

    def __init__(self, device=None):
        from ...runtime import cuda
        self.device = device or cuda.get_device()
        self.name = self.device.name
        self.interpret = self.device.emulated
        # the emulated driver records launches issued while a graph capture is open
        self.enqueue = self.device.driver.lib.launch if self.interpret else None
        if not self.interpret:  # Triton launches on our stream, scratch from our allocator
            launch.install_triton_hooks(self.device)

    def alloc(self, buffer):
        nbytes = max(buffer.numel * buffer.dtype.itemsize, 1)
        return launch.buffer_arg(self.device, self.device.alloc(nbytes), buffer.dtype, hold=True)

    def upload(self, arg, array: np.ndarray) -> None:
        self.device.copy_to_device(arg.buffer, array)

    def scratch_copy(self, arg):
        """A new device buffer holding what arg's holds (freed with the argument)."""
        buf = self.device.alloc(arg.buffer.nbytes)
        self.device.copy(buf, arg.buffer)
        return launch.buffer_arg(self.device, buf, arg.dtype, hold=True)

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


def program_source(kernels, source_dir=None) -> str:
    return "\n\n".join(f"# ---- {launch.kernel_path(k, source_dir).name}\n{k.source}" for k in kernels)


class TritonProgram:
    """A Program lowered to Triton. device: "interpreter", "cuda", or None for cuda when a
    GPU is available, else the interpreter (or pass `memory`). writes: output buffer ->
    the input buffer it is the new value of (in-place candidates for run_device);
    constants: input buffers uploaded only when their host array is another object than
    the last one uploaded (constants: once; an lr: when its value changes)."""

    def __init__(self, program: Program, *, device: str | None = None, options: Options | None = None,
                 source_dir=None, autotune: bool | None = None, graphs: bool | None = None,
                 memory=None, writes: dict | None = None, constants=(), kernels=None):
        if device is None and memory is None:
            device = "cuda" if gpu_available() else "interpreter"
        self.program = program = without_dead_stores(program)
        self.options = options or Options()
        self.memory = memory or (HostMemory() if device == "interpreter" else CudaMemory())
        interpret = self.memory.interpret
        self.kernels = kernels or lower_program(program, self.options)
        self.modules = [launch.load_module(k, interpret, source_dir) for k in self.kernels]
        self.paths = [launch.kernel_path(k, source_dir) for k in self.kernels]
        self.args: dict = {}  # the program's own buffers, allocated on first use
        self.bound: dict = {}  # buffer name -> the argument the plan launches with
        self.inplace = memory_plan(program, writes).inplace if writes else {}
        self.constants, self.uploaded = set(constants), {}
        if autotune is None:
            autotune = not interpret and os.environ.get("TRACECC_AUTOTUNE", "1") != "0"
        self.autotuner = Autotuner(self.memory.timer, device_name=self.memory.name) if autotune else None
        self.graphs = (self.memory.graphs and cuda_graphs_enabled()) if graphs is None else graphs
        self.enqueue = self.memory.enqueue
        self.plan: list | None = None  # (launcher, buffer names, kwargs) per launch, once configs are known
        self.configs: list = []  # (function name, Config) per launch
        self.graph = None
        self.calls = 0
        self.captures = 0
        self.static: dict = {}  # inputs bound directly into the graph -> their pointer then
        self.last_ptrs: dict = {}
        self.aliased: set = set()  # outputs written in place into an input this call

    @property
    def source(self) -> str:
        return program_source(self.kernels, self.paths[0].parent if self.paths else None)

    def _own(self, name: str):
        arg = self.args.get(name)
        if arg is None:
            arg = self.args[name] = self.memory.alloc(self.program.buffers[name])
        return arg

    def _first_launch(self) -> None:
        """Choose each launch's config (timing candidates on a GPU), launch it, bind the plan."""
        plan, bound = [], self.bound
        for kernel, module in zip(self.kernels, self.modules):
            for spec in kernel.launches:
                if launch.is_empty(spec):
                    continue
                fn = getattr(module, spec.fn)
                candidates = launch.configs(spec, self.memory.interpret, self.options.max_rblock)

                def run(config, fn=fn, spec=spec, args=bound):
                    fn[launch.grid(spec, config)](*[args[b] for b in spec.buffers], **config.kwargs())

                config = candidates[0]
                if self.autotuner is not None and len(candidates) > 1 and launch.worth_tuning(spec):
                    config = self._tune(kernel, spec, candidates, run)
                run(config)
                self.configs.append((spec.fn, config))
                plan.append((fn[launch.grid(spec, config)], spec.buffers, config.kwargs()))
        self.plan = plan

    def _tune(self, kernel, spec, candidates, run):
        """Time the candidates. A launch that updates an input in place, accumulates, or
        reads what it writes would change the results if it ran once per candidate: it is
        timed on scratch copies of the buffers it writes instead."""
        safe = spec.rerunnable and not self.aliased.intersection(spec.buffers)
        scratch = {} if safe else {b: self.memory.scratch_copy(self.bound[b]) for b in spec.writes}
        args = {**self.bound, **scratch}
        return self.autotuner.choose(kernel, spec, candidates, lambda config: run(config, args=args))

    def launch(self) -> None:
        """Run every kernel once on the bound buffers as they are (no copies)."""
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
                self.captures += 1
                self.graph.replay()
        else:
            self._launch_plan()
        self.calls += 1

    def _launch_plan(self) -> None:
        bound, enqueue = self.bound, self.enqueue
        for fn, names, kwargs in self.plan:
            args = [bound[n] for n in names]
            if enqueue is None:
                fn(*args, **kwargs)
            else:  # the emulated device: run now, or record into an open graph capture
                enqueue(partial(fn, *args, **kwargs))

    def _drop_graph(self) -> None:
        self.graph.close()
        self.graph = None
        if self.captures > RECAPTURE_LIMIT:
            self.graphs = False

    # ------------------------------------------------------------ host arrays
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """inputs in Program.inputs order; returns flat arrays in Program.outputs order."""
        p = self.program
        if not self.bound:
            self.bound = {name: self._own(name) for name in p.buffers}
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

    # ------------------------------------------------------------ device arrays
    def run_device(self, inputs: list, shapes=None) -> list:
        """inputs in Program.inputs order: CudaArrays on this program's device, or host
        arrays (uploaded); returns CudaArrays in Program.outputs order (shaped as `shapes`,
        else flat). An output written in place is returned as its input's own array."""
        p, dev = self.program, self.memory.device
        direct, own = {}, set()  # inputs read where they are; those that are the caller's own array
        for name, a in zip(p.inputs, inputs):
            want = p.buffers[name].dtype.np
            if type(a) is CudaArray:
                if a.dtype == want and a.is_root:
                    own.add(name)
                else:  # a view or another dtype: a contiguous copy, on the device
                    if a.dtype != want:
                        from ...runtime.registry import PRIMITIVES
                        a = run_op(PRIMITIVES["cast"], [a], {"dtype": get_dtype(want)})
                    a = a.copy()
                direct[name] = a
            elif name not in self.constants or self.uploaded.get(name) is not a:
                self.memory.upload(self._own(name), np.ascontiguousarray(a, want).reshape(-1))
                if name in self.constants:
                    self.uploaded[name] = a
        graphed = self.graphs and self.plan is not None
        if graphed and self.graph is not None and any(
                direct[n].buffer.ptr != ptr for n, ptr in self.static.items()):
            self._drop_graph()  # a directly bound input moved: capture again
            graphed = self.graphs
        if graphed and self.graph is None:  # capturing: bind directly what did not move
            self.static = {n: a.buffer.ptr for n, a in direct.items()
                           if self.last_ptrs.get(n) == a.buffer.ptr}
        bound = {n: self._own(n) for n in p.buffers if n not in p.inputs and n not in p.outputs}
        for name in p.inputs:
            a = direct.get(name)
            if a is None:
                bound[name] = self._own(name)  # uploaded
            elif graphed and name not in self.static:
                bound[name] = self._own(name)
                dev.copy(bound[name].buffer, a.buffer, a.nbytes)
            else:
                bound[name] = launch.buffer_arg(dev, a.buffer, p.buffers[name].dtype)
        outs, self.aliased = {}, set()
        for name in dict.fromkeys(p.outputs):
            if name in p.inputs:
                continue  # an input returned as it is: copied below
            b, src = p.buffers[name], self.inplace.get(name)
            if src in own and (not graphed or src in self.static):
                outs[name] = direct[src]
                bound[name] = bound[src]
                self.aliased.add(name)
            elif graphed:
                bound[name] = self._own(name)
            else:
                outs[name] = CudaArray.empty(dev, (b.numel,), b.dtype.np)
                bound[name] = launch.buffer_arg(dev, outs[name].buffer, b.dtype)
        self.bound = bound
        self.launch()
        self.last_ptrs = {n: a.buffer.ptr for n, a in direct.items()}
        results, seen = [], set()
        for k, name in enumerate(p.outputs):
            b = p.buffers[name]
            shape = tuple(shapes[k]) if shapes is not None else (b.numel,)
            a = outs.get(name)
            if a is None or name in seen:  # the program's own buffer, an input, or a repeat
                src = a if a is not None else direct.get(name)
                buf = src.buffer if src is not None else bound[name].buffer
                a = CudaArray.empty(dev, shape, b.dtype.np)
                dev.copy(a.buffer, buf, a.nbytes)
            elif name not in self.aliased:
                a = CudaArray(a.buffer, dev, a.dtype, shape)
            seen.add(name)
            results.append(a)
        return results


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


class TritonRunner:
    """compile()'s runner for one graph: host arrays run `compiled` (made on first use);
    cuda arrays run a program of their device's, on the device buffers themselves."""

    def __init__(self, graph, program, kernels, device, options):
        self.program, self.kernels, self.device, self.options = program, kernels, device, options
        self.shapes = [tuple(v.type.shape) for v in graph.roots()]
        names = dict(zip(graph.roots(), program.outputs))
        inputs = dict(zip(graph.inputs, program.inputs))
        self.writes = {names[new]: inputs[target] for target, new in graph.writes if new in names}
        # uploaded when the host array changes: constants once, an lr when it changes
        self.constants = {inputs[v] for v in graph.inputs if v.role in ("const", "hyper")}
        self._host = None
        self.on_device: dict = {}  # CudaDevice -> TritonProgram

    @property
    def compiled(self) -> TritonProgram:
        """The program for host arrays."""
        if self._host is None:
            self._host = TritonProgram(self.program, device=self.device, options=self.options,
                                       kernels=self.kernels)
        return self._host

    def device_program(self, device) -> TritonProgram:
        tp = self.on_device.get(device)
        if tp is None:
            tp = self.on_device[device] = TritonProgram(
                self.program, memory=CudaMemory(device), options=self.options, kernels=self.kernels,
                writes=self.writes, constants=self.constants)
        return tp

    def __call__(self, arrays):
        device = next((a.device for a in arrays if type(a) is CudaArray), None)
        if device is not None:
            return self.device_program(device).run_device(arrays, self.shapes)
        return [a.reshape(s) for a, s in zip(self.compiled.run(arrays), self.shapes)]


def compile_triton(graph, log=None, *, device: str | None = None, options: Options | None = None):
    """compile(graph, log) -> runner for the backend registry (host or cuda arrays)."""
    from ...passes.interpret import compile_graph
    from ...passes.schedule import schedule
    from ..llvm.backend import fusion_enabled

    log = log or NullSink()
    t0 = time.perf_counter()
    try:
        program, decisions = schedule(graph, fuse=fusion_enabled(), name=graph.name)
        program = without_dead_stores(program)
        kernels = lower_program(program, options or Options())
    except NotImplementedError as e:
        log.emit("fusion", f"{graph.name}: the triton backend cannot lower this graph yet ({e}); "
                           f"running it on the interpreter")
        return compile_graph(graph)
    for line in decisions:
        log.emit("fusion", line)
    log.stage("kernels", text=format_program(program) + "\n", suffix=".kir", kind="fusion")
    log.stage("triton", text=program_source(kernels), suffix=".py", kind="code")
    log.emit("perf", f"{graph.name}: {len(program.kernels)} kernels lowered to Triton in "
                     f"{(time.perf_counter() - t0) * 1e3:.1f} ms")
    return TritonRunner(graph, program, kernels, device, options)


# Below llvm, so "auto" keeps compiling cpu tensors for the cpu; compile() picks triton for
# cuda tensors itself (tracecc/_compile.py). Host arrays given to it are copied in and out.
register_backend("triton", compile_triton, priority=5, available=gpu_available,
                 doc="fused kernels as generated Triton source on an NVIDIA GPU (driver via ctypes)")
register_backend("triton_interpret", partial(compile_triton, device="interpreter"), priority=-1,
                 available=launch.triton_available,
                 doc="the Triton backend's kernels under Triton's CPU interpreter (slow; for tests)")
