"""Eager ops on cuda tensors: one primitive call = one single-op graph = Triton kernel(s).

A call `prim(*arrays, **params)` on CudaArrays becomes a graph whose inputs are the arrays'
buffers in their own (root) shapes, followed by each array's chain of view primitives and
then the op, so views are index arithmetic inside the kernel, never copies. The graph is
scheduled and lowered like any compiled graph (passes/schedule.py, lower.py), and the
loaded kernels are cached by (op, params, and per input: buffer shape, dtype, view chain),
which is what the generated code depends on. A launch binds the inputs' own buffers and a
fresh output buffer from the device's caching allocator.

View primitives (reshape, permute, expand, slice) make no kernel: the result shares the
buffer (CudaArray.view), except a reshape that strides cannot express, which copies as
numpy's does. On the emulated test device (TRACECC_CUDA_EMULATE=1) kernels run under
Triton's interpreter on the host buffers behind the emulated pointers.

An op the scheduler cannot lower yet runs on the host (download, numpy kernel, upload),
with a warning naming it once per process: slow, never silent.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...passes.ir import Graph
from ...passes.kernel_emit import _name as buffer_name
from ...passes.schedule import schedule
from ...runtime import cuda, eager
from ...runtime.dtypes import get_dtype
from ...runtime.registry import TensorType
from . import launch
from .lower import Options, lower_program, without_dead_stores

VIEW_PRIMS = frozenset({"reshape", "permute", "expand", "slice"})
_KERNELS: dict = {}  # cache key -> OpKernel
HOST_FALLBACKS: set = set()  # ops that ran on the host, for tests and the docs


class OpKernel:
    """The Triton launches of one single-op Program, with their configs chosen once (the
    first candidate: the interpreter's is sized for few programs, the GPU's is the common
    best; eager ops are not autotuned)."""

    def __init__(self, program, interpret: bool):
        self.program = program = without_dead_stores(program)
        self.interpret = interpret
        self.kernels = lower_program(program, Options())
        self.launches = []
        for kernel in self.kernels:
            module = launch.load_module(kernel, interpret)
            for spec in kernel.launches:
                if launch.is_empty(spec):
                    continue
                config = launch.configs(spec, interpret)[0]
                fn = getattr(module, spec.fn)[launch.grid(spec, config)]
                self.launches.append((fn, spec.buffers, config.kwargs()))

    @property
    def source(self) -> str:
        return "\n\n".join(k.source for k in self.kernels)

    def __call__(self, args: dict) -> None:
        if self.interpret:  # masked-off lanes compute too (log(0), 0/0): not errors
            with np.errstate(all="ignore"):
                for fn, names, kwargs in self.launches:
                    fn(*[args[n] for n in names], **kwargs)
        else:
            for fn, names, kwargs in self.launches:
                fn(*[args[n] for n in names], **kwargs)


def single_op_graph(prim, arrays, params) -> Graph:
    """inputs (buffers in their root shapes) -> each input's view chain -> prim -> output."""
    g = Graph(f"eager_{prim.name}")
    values = []
    for i, a in enumerate(arrays):
        v = g.add_input(TensorType(a.root_shape, get_dtype(a.dtype)), f"in{i}")
        for name, p in a.chain:
            p = dict(p)
            v = g.add_node(name, [v], p, _meta(name, v.type, p))
        values.append(v)
    out = g.add_node(prim.name, values, dict(params), prim.meta(*[v.type for v in values], **params))
    g.set_outputs([out])
    return g


def _meta(name, t, params):
    from ...runtime.registry import PRIMITIVES
    return PRIMITIVES[name].meta(t, **params)


def _key(prim, arrays, params):
    try:
        p = cuda._freeze(params)
        hash(p)
    except TypeError:
        p = repr(sorted(params.items()))
    return (prim.name, p, tuple((a.root_shape, a.dtype.str, a.chain) for a in arrays))


def kernel_for(prim, arrays, params) -> OpKernel:
    key = _key(prim, arrays, params)
    k = _KERNELS.get(key)
    if k is None:
        device = arrays[0].device
        if not device.emulated:
            launch.install_triton_hooks(device)
        graph = single_op_graph(prim, arrays, params)
        program, _ = schedule(graph, fuse=True, name=f"eager_{prim.name}")
        k = _KERNELS[key] = OpKernel(program, interpret=device.emulated)
        # what each call needs, worked out once: the key fixes shapes, dtypes and views
        k.input_names = [buffer_name(v) for v in graph.inputs]
        k.input_dtypes = [get_dtype(a.dtype) for a in arrays]
        out = prim.meta(*[TensorType(a.shape, get_dtype(a.dtype)) for a in arrays], **params)
        k.out_name, k.out_dtype, k.out_shape = program.outputs[0], out.dtype.np, tuple(out.shape)
        k.made = [(name, b.numel, b.dtype) for name, b in k.program.buffers.items()
                  if name not in k.input_names]
    return k


def run(prim, arrays, params):
    """The eager kernel of `prim` on CudaArrays (all on one device): a CudaArray."""
    if prim.name in VIEW_PRIMS:
        view = cuda.view_of(arrays[0], prim.name, params)
        if view is not None:
            return view
    device = arrays[0].device
    try:
        kernel = kernel_for(prim, arrays, params)
    except NotImplementedError as e:
        return _on_host(prim, arrays, params, e)
    if kernel.out_name in kernel.input_names:  # the op is its input unchanged (no kernel): copy it
        return run(_copy_prim(), [arrays[kernel.input_names.index(kernel.out_name)]], {})
    args = {name: launch.buffer_arg(device, a.buffer, dtype)
            for name, a, dtype in zip(kernel.input_names, arrays, kernel.input_dtypes)}
    made = {}  # (held until the launch: an argument need not keep its buffer alive)
    for name, numel, dtype in kernel.made:
        made[name] = device.alloc(max(numel * dtype.itemsize, 1))
        args[name] = launch.buffer_arg(device, made[name], dtype)
    kernel(args)
    return cuda.CudaArray(made[kernel.out_name], device, kernel.out_dtype, kernel.out_shape)


def _copy_prim():
    from ...runtime.registry import PRIMITIVES
    return PRIMITIVES["copy"]


def _on_host(prim, arrays, params, why):
    if prim.name not in HOST_FALLBACKS:
        HOST_FALLBACKS.add(prim.name)
        warnings.warn(f"cuda: {prim.name} has no Triton lowering yet ({why}); it runs on the "
                      f"host, copying its inputs and result", stacklevel=4)
    out = eager.run(prim, [a.numpy() for a in arrays], params)
    return cuda.CudaArray.from_numpy(arrays[0].device, out)


cuda.set_op_runner(run)
