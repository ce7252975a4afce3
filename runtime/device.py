"""Devices. "cpu" holds numpy arrays; "cuda" (through the CUDA driver) comes with the GPU backend."""

from __future__ import annotations

from .errors import DeviceError


class Device:
    __slots__ = ("type", "index")
    _cache: dict = {}

    def __new__(cls, spec="cpu", index: int | None = None):
        if isinstance(spec, Device):
            return spec
        spec = str(spec)
        kind, _, num = spec.partition(":")
        if num:
            index = int(num)
        if kind not in ("cpu", "cuda"):
            raise DeviceError(f"unknown device {spec!r}", hint="use 'cpu' or 'cuda[:N]'")
        key = (kind, index if kind == "cuda" else None)
        dev = cls._cache.get(key)
        if dev is None:
            dev = object.__new__(cls)
            dev.type, dev.index = key
            cls._cache[key] = dev
        return dev

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        try:
            return self is Device(other)
        except Exception:
            return False

    def __hash__(self) -> int:
        return hash((self.type, self.index))


cpu = Device("cpu")


def check_device(device) -> Device:
    """The device a tensor would live on: cpu, or cuda:N (index resolved) when a CUDA device,
    or the emulated test device (TRACECC_CUDA_EMULATE=1), is there."""
    dev = Device(device) if device is not None else cpu
    if dev.type == "cuda":
        from . import cuda
        count = cuda.device_count()
        index = dev.index or 0
        if count == 0:
            raise DeviceError(
                f"device {dev} is not available: no CUDA GPU is visible",
                hint="tracecc.cuda.is_available() says whether one is; tests without a GPU "
                     "can set TRACECC_CUDA_EMULATE=1 for the emulated (slow) test device")
        if index >= count:
            raise DeviceError(f"device {dev} is not available: {count} CUDA device(s)",
                              hint="use an index below tracecc.cuda.device_count()")
        return Device("cuda", index)
    return dev


def of_array(data) -> Device:
    """The device an eager payload lives on (numpy arrays: cpu)."""
    from .cuda import CudaArray
    return Device("cuda", data.device.index) if type(data) is CudaArray else cpu
