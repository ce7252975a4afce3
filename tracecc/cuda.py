"""tracecc.cuda: the CUDA device, as torch.cuda.

    tracecc.cuda.is_available(), device_count(), synchronize(), memory_allocated(),
    max_memory_allocated(), memory_reserved(), reset_peak_memory_stats(), empty_cache(),
    get_device_name(), is_emulated()

Tensors move with `t.to("cuda")`, `t.cuda()`, `t.cpu()`, `device=` on creation functions
and `Module.to(device)`; eager ops on cuda tensors run as single-op Triton kernels
(codegen/triton/eager.py). Without a GPU, TRACECC_CUDA_EMULATE=1 gives an emulated test
device (host memory, Triton interpreter): `is_available()` is True then and
`get_device_name()` says it is the emulation. Nothing is emulated without that variable.
See docs/gpu-backend.md.
"""

from __future__ import annotations

from . import _grad_mode
from . import _tensor as _tensor_mod
from .runtime import cuda as _cuda
from .runtime.device import check_device
from .runtime.registry import Primitive

__all__ = ["is_available", "device_count", "synchronize", "memory_allocated",
           "max_memory_allocated", "memory_reserved", "reset_peak_memory_stats", "empty_cache",
           "get_device_name", "current_device", "is_emulated"]


def is_available() -> bool:
    """A CUDA GPU is usable (or the emulated test device is switched on)."""
    return _cuda.is_available()


def is_emulated() -> bool:
    """Is the cuda device the emulated test device (TRACECC_CUDA_EMULATE=1)?"""
    return _cuda.emulated()


def device_count() -> int:
    return _cuda.device_count()


def current_device() -> int:
    return 0


def _device(device=None) -> _cuda.CudaDevice:
    dev = check_device("cuda" if device is None else device)
    if dev.type != "cuda":
        raise ValueError(f"expected a cuda device, got {dev}")
    return _cuda.get_device(dev.index)


def get_device_name(device=None) -> str:
    return _device(device).name


def synchronize(device=None) -> None:
    """Wait for every kernel and copy queued on the device."""
    _device(device).synchronize()


def memory_allocated(device=None) -> int:
    """Bytes held by live cuda tensors (rounded to the allocator's block sizes)."""
    return _device(device).memory_allocated()


def max_memory_allocated(device=None) -> int:
    return _device(device).max_memory_allocated()


def memory_reserved(device=None) -> int:
    """Bytes taken from the driver: allocated plus cached free blocks."""
    return _device(device).memory_reserved()


def reset_peak_memory_stats(device=None) -> None:
    _device(device).reset_peak_memory_stats()


def empty_cache() -> None:
    """Give cached free blocks back to the driver (memory_reserved() drops)."""
    if is_available():
        _device().empty_cache()


# ---------------------------------------------------------------- moving tensors
def _to_vjp(c, g):
    return (to_device(g, c.params["source"]),)


# Not a registry primitive (graphs have no device moves yet): an autograd node only, so a
# gradient flows back to the device the tensor came from.
_TO_DEVICE = Primitive("to_device", "movement", None, None, _to_vjp, saves=())


def to_device(t, device):
    """t on `device` (a copy; t itself when it is there already), differentiable."""
    dev = check_device(device)
    data = t._data
    if _tensor_mod._tracer is not None or t.device == dev:
        return t  # while tracing, payloads are symbolic: the compiled call keeps devices
    if dev.type == "cuda":
        from .codegen.triton import eager  # noqa: F401  (installs the cuda kernels)
        if type(data) is _cuda.CudaArray:  # cuda:i -> cuda:j goes through the host
            data = data.numpy()
        new = _cuda.CudaArray.from_numpy(_cuda.get_device(dev.index), data)
    else:
        new = data.numpy()
    out = _tensor_mod._make(new, t._dtype)
    if _grad_mode._enabled and t.requires_grad:
        from .autograd import Node
        out.requires_grad = True
        out.grad_fn = Node(_TO_DEVICE, (t,), {"source": t.device, "device": dev}, (True,), out)
    return out

