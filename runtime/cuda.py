"""The CUDA device through the driver API (libcuda via ctypes): no PyTorch, no CuPy.

Layers, each usable on its own:

- `Driver`: the driver functions tracecc calls, bound with their C signatures; every call
  is checked and a failure raises CudaDriverError naming the call and CUDA's error name.
- `CachingAllocator`: device memory in size-rounded blocks; a freed block goes back to a
  free list for the next allocation of that size, because cuMemAlloc/cuMemFree are slow
  and cuMemFree synchronises the device. All work runs on one stream, so reusing a block
  freed earlier is ordered after the work that used it. Keeps the statistics behind
  memory_allocated() / max_memory_allocated().
- `CudaDevice`: one GPU: the primary context (the one Triton's launcher makes current,
  codegen-facts §2.3), one non-blocking stream, the allocator, host<->device copies,
  events for timing, and CUDA graph capture/replay of everything launched on the stream
  (§5).

- `CudaArray`: what a cuda tensor holds: a DeviceBuffer (shared by views) and the chain of
  view primitives (reshape, permute, expand, slice) that leads from the buffer's own shape
  to this array, with the shape, strides and offset that chain gives.

Nothing here runs at import time beyond defining things: the driver library is loaded on
first use, and a machine without one gets CudaUnavailableError (TC301) with a hint, not an
OSError.

**The emulated device (tests only).** With TRACECC_CUDA_EMULATE=1 the driver is
`EmulatedLib`: a host-memory stand-in for libcuda (allocations are numpy buffers, copies
are memmove, synchronisation does nothing, the allocator's statistics are real) and
kernels run under Triton's interpreter. CUDA graphs are emulated by recording: what is
issued on the stream while a capture is open is recorded, and launching the graph runs the
recording. Copies are counted by direction, so tests can assert what crossed to the host.
It exists so that CI, which has no GPU, can run the cuda code paths; it is never chosen
without that variable, and its device name says what it is.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from ctypes import POINTER, byref, c_char_p, c_float, c_int, c_size_t, c_uint, c_uint64, c_ulonglong, c_void_p

import numpy as np

from .errors import CudaDriverError, CudaOutOfMemoryError, CudaUnavailableError

CU_STREAM_NON_BLOCKING = 1
CU_EVENT_DEFAULT = 0
CU_STREAM_CAPTURE_MODE_RELAXED = 2
ATTR_MULTIPROCESSOR_COUNT = 16
ATTR_CLOCK_RATE = 13
ATTR_MEMORY_CLOCK_RATE = 36
ATTR_GLOBAL_MEMORY_BUS_WIDTH = 37
ATTR_L2_CACHE_SIZE = 38
ATTR_COMPUTE_CAPABILITY_MAJOR = 75
ATTR_COMPUTE_CAPABILITY_MINOR = 76

CUDA_ERROR_OUT_OF_MEMORY = 2
# the common ones, for when cuGetErrorName itself is unavailable
_ERROR_NAMES = {
    0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
    3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE", 201: "CUDA_ERROR_INVALID_CONTEXT", 400: "CUDA_ERROR_INVALID_HANDLE",
    600: "CUDA_ERROR_NOT_READY", 700: "CUDA_ERROR_ILLEGAL_ADDRESS", 719: "CUDA_ERROR_LAUNCH_FAILED",
    900: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", 901: "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
    999: "CUDA_ERROR_UNKNOWN",
}

P = POINTER
# name -> (candidate symbols, newest first; argtypes). All return CUresult (int).
_FUNCTIONS = {
    "init": (["cuInit"], [c_uint]),
    "driver_version": (["cuDriverGetVersion"], [P(c_int)]),
    "device_count": (["cuDeviceGetCount"], [P(c_int)]),
    "device_get": (["cuDeviceGet"], [P(c_int), c_int]),
    "device_name": (["cuDeviceGetName"], [c_char_p, c_int, c_int]),
    "device_attribute": (["cuDeviceGetAttribute"], [P(c_int), c_int, c_int]),
    "device_total_mem": (["cuDeviceTotalMem_v2"], [P(c_size_t), c_int]),
    "primary_ctx_retain": (["cuDevicePrimaryCtxRetain"], [P(c_void_p), c_int]),
    "primary_ctx_release": (["cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"], [c_int]),
    "ctx_set_current": (["cuCtxSetCurrent"], [c_void_p]),
    "stream_create": (["cuStreamCreate"], [P(c_void_p), c_uint]),
    "stream_destroy": (["cuStreamDestroy_v2", "cuStreamDestroy"], [c_void_p]),
    "stream_synchronize": (["cuStreamSynchronize"], [c_void_p]),
    "stream_query": (["cuStreamQuery"], [c_void_p]),
    "mem_alloc": (["cuMemAlloc_v2"], [P(c_uint64), c_size_t]),
    "mem_free": (["cuMemFree_v2"], [c_uint64]),
    "mem_get_info": (["cuMemGetInfo_v2"], [P(c_size_t), P(c_size_t)]),
    "memcpy_htod_async": (["cuMemcpyHtoDAsync_v2"], [c_uint64, c_void_p, c_size_t, c_void_p]),
    "memcpy_dtoh_async": (["cuMemcpyDtoHAsync_v2"], [c_void_p, c_uint64, c_size_t, c_void_p]),
    "memcpy_dtod_async": (["cuMemcpyDtoDAsync_v2"], [c_uint64, c_uint64, c_size_t, c_void_p]),
    "memset_d8_async": (["cuMemsetD8Async"], [c_uint64, ctypes.c_ubyte, c_size_t, c_void_p]),
    "event_create": (["cuEventCreate"], [P(c_void_p), c_uint]),
    "event_record": (["cuEventRecord"], [c_void_p, c_void_p]),
    "event_synchronize": (["cuEventSynchronize"], [c_void_p]),
    "event_elapsed_time": (["cuEventElapsedTime_v2", "cuEventElapsedTime"], [P(c_float), c_void_p, c_void_p]),
    "event_destroy": (["cuEventDestroy_v2", "cuEventDestroy"], [c_void_p]),
    "stream_begin_capture": (["cuStreamBeginCapture_v2"], [c_void_p, c_int]),
    "stream_end_capture": (["cuStreamEndCapture"], [c_void_p, P(c_void_p)]),
    "graph_instantiate": (["cuGraphInstantiateWithFlags"], [P(c_void_p), c_void_p, c_ulonglong]),
    "graph_launch": (["cuGraphLaunch"], [c_void_p, c_void_p]),
    "graph_exec_destroy": (["cuGraphExecDestroy"], [c_void_p]),
    "graph_destroy": (["cuGraphDestroy"], [c_void_p]),
}


EMULATE_ENV = "TRACECC_CUDA_EMULATE"
EMULATED_NAME = "tracecc emulated CUDA device (host memory, Triton interpreter; for tests)"


def emulated() -> bool:
    """Is the test device switched on (TRACECC_CUDA_EMULATE=1)?"""
    return os.environ.get(EMULATE_ENV, "") not in ("", "0", "false", "False", "off")


def _library_names() -> list[str]:
    env = os.environ.get("TRACECC_LIBCUDA")
    return [env] if env else ["libcuda.so.1", "libcuda.so"]


def load_library(names: list[str] | None = None):
    """dlopen libcuda; CudaUnavailableError (TC301) when there is none."""
    names = names or _library_names()
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise CudaUnavailableError("no CUDA driver: could not load " + " or ".join(names),
                               hint="the cuda device needs an NVIDIA GPU with its driver installed "
                                    "(set TRACECC_LIBCUDA to the library's path if it lives elsewhere); "
                                    + "; ".join(errors))


class Driver:
    """The driver API functions tracecc uses, bound with their signatures and checked.

    `lib` is a ctypes library (or any object with those attributes: tests pass a fake)."""

    def __init__(self, lib):
        self.lib = lib
        self.fns = {}
        for name, (symbols, argtypes) in _FUNCTIONS.items():
            for sym in symbols:
                fn = getattr(lib, sym, None)
                if fn is not None:
                    fn.argtypes, fn.restype = argtypes, c_int
                    self.fns[name] = (sym, fn)
                    break
        missing = [_FUNCTIONS[n][0][0] for n in ("init", "mem_alloc", "stream_create") if n not in self.fns]
        if missing:
            raise CudaUnavailableError(f"the CUDA driver library lacks {', '.join(missing)}",
                                       hint="update the NVIDIA driver")
        self._error_name = getattr(lib, "cuGetErrorName", None)
        if self._error_name is not None:
            self._error_name.argtypes, self._error_name.restype = [c_int, P(c_char_p)], c_int

    def error_name(self, rc: int) -> str:
        if self._error_name is not None:
            s = c_char_p()
            if self._error_name(rc, byref(s)) == 0 and s.value:
                return s.value.decode()
        return _ERROR_NAMES.get(rc, f"CUDA error {rc}")

    def call(self, name: str, *args) -> None:
        entry = self.fns.get(name)
        if entry is None:
            raise CudaUnavailableError(f"the CUDA driver library has no {_FUNCTIONS[name][0][0]}",
                                       hint="update the NVIDIA driver")
        sym, fn = entry
        rc = fn(*args)
        if rc != 0:
            err = self.error_name(rc)
            cls = CudaOutOfMemoryError if rc == CUDA_ERROR_OUT_OF_MEMORY else CudaDriverError
            raise cls(f"{sym} failed: {err} ({rc})", hint=_HINTS.get(rc, "see the CUDA driver API docs"))

    # ------------------------------------------------------------ thin wrappers
    def out(self, name: str, ctype, *args):
        """Call a function whose first argument is an output pointer; return its value."""
        v = ctype()
        self.call(name, byref(v), *args)
        return v.value

    def mem_alloc(self, nbytes: int) -> int:
        return self.out("mem_alloc", c_uint64, nbytes)

    def mem_free(self, ptr: int) -> None:
        self.call("mem_free", ptr)


_HINTS = {
    2: "free tensors or call empty_cache(); memory_allocated() shows what tracecc holds",
    100: "no NVIDIA GPU is visible (check CUDA_VISIBLE_DEVICES)",
    700: "a kernel read or wrote out of bounds; rerun with TRACECC_CUDA_GRAPHS=0 to find which",
    999: "the driver is in a bad state; restart the process",
}

_driver: Driver | None = None
_emulated_driver: Driver | None = None


def get_driver() -> Driver:
    """The process-wide driver, loaded and initialised on first use (the emulated one
    while TRACECC_CUDA_EMULATE is set)."""
    global _driver, _emulated_driver
    if emulated():
        if _emulated_driver is None:
            _emulated_driver = Driver(EmulatedLib())
        return _emulated_driver
    if _driver is None:
        d = Driver(load_library())
        d.call("init", 0)
        _driver = d
    return _driver


def is_available() -> bool:
    """A CUDA driver loads and sees at least one device, or the emulated test device is
    switched on (never raises)."""
    try:
        return get_driver().out("device_count", c_int) > 0
    except Exception:
        return False


def device_count() -> int:
    try:
        return get_driver().out("device_count", c_int)
    except Exception:
        return 0


# ---------------------------------------------------------------- memory
def _round_size(nbytes: int) -> int:
    """Blocks of 512 B multiples up to 1 MiB, then multiples of 2 MiB (as PyTorch's pools),
    so similar requests share free blocks without wasting more than a small fraction."""
    nbytes = max(int(nbytes), 1)
    if nbytes <= 1 << 20:
        return (nbytes + 511) // 512 * 512
    return (nbytes + (2 << 20) - 1) // (2 << 20) * (2 << 20)


class DeviceBuffer:
    """A block of device memory: `ptr` (a CUdeviceptr int) and its size. free() gives it
    back to the allocator's cache; so does garbage collection (no driver call there)."""

    __slots__ = ("ptr", "nbytes", "size", "_allocator", "__weakref__")

    def __init__(self, ptr: int, nbytes: int, size: int, allocator):
        self.ptr, self.nbytes, self.size, self._allocator = ptr, nbytes, size, allocator

    def data_ptr(self) -> int:
        return self.ptr

    def free(self) -> None:
        if self._allocator is not None:
            self._allocator._release(self)
            self._allocator = None

    def __del__(self):
        try:
            self.free()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"DeviceBuffer(0x{self.ptr:x}, {self.nbytes} bytes)"


class CachingAllocator:
    """Device memory with a free list per rounded size. `driver` needs mem_alloc(n) -> ptr
    and mem_free(ptr)."""

    def __init__(self, driver):
        self.driver = driver
        self.free_blocks: dict[int, list[int]] = {}
        self.live: dict[int, int] = {}  # ptr -> rounded size
        self.stats = {"allocated": 0, "max_allocated": 0, "reserved": 0, "driver_allocs": 0,
                      "driver_frees": 0, "cache_hits": 0}

    def alloc(self, nbytes: int) -> DeviceBuffer:
        size = _round_size(nbytes)
        blocks = self.free_blocks.get(size)
        if blocks:
            ptr = blocks.pop()
            self.stats["cache_hits"] += 1
        else:
            try:
                ptr = self.driver.mem_alloc(size)
            except CudaOutOfMemoryError:
                self.empty_cache()  # give cached blocks back to the driver and try once more
                try:
                    ptr = self.driver.mem_alloc(size)
                except CudaOutOfMemoryError as e:
                    raise CudaOutOfMemoryError(
                        f"out of device memory allocating {nbytes} bytes "
                        f"({self.stats['allocated']} bytes allocated by tracecc; {e.message})",
                        hint=e.hint) from None
            self.stats["driver_allocs"] += 1
            self.stats["reserved"] += size
        self.live[ptr] = size
        self.stats["allocated"] += size
        self.stats["max_allocated"] = max(self.stats["max_allocated"], self.stats["allocated"])
        return DeviceBuffer(ptr, int(nbytes), size, self)

    def _release(self, buf: DeviceBuffer) -> None:
        size = self.live.pop(buf.ptr, None)
        if size is None:
            raise CudaDriverError(f"free of device pointer 0x{buf.ptr:x} that is not allocated",
                                  hint="a buffer was freed twice")
        self.stats["allocated"] -= size
        self.free_blocks.setdefault(size, []).append(buf.ptr)

    def empty_cache(self) -> None:
        """Return every cached (free) block to the driver."""
        for size, ptrs in self.free_blocks.items():
            for ptr in ptrs:
                self.driver.mem_free(ptr)
                self.stats["driver_frees"] += 1
                self.stats["reserved"] -= size
        self.free_blocks.clear()

    def memory_allocated(self) -> int:
        return self.stats["allocated"]

    def max_memory_allocated(self) -> int:
        return self.stats["max_allocated"]

    def memory_reserved(self) -> int:
        return self.stats["reserved"]

    def reset_peak_memory_stats(self) -> None:
        self.stats["max_allocated"] = self.stats["allocated"]


# ---------------------------------------------------------------- the device
class CudaGraph:
    """An instantiated CUDA graph: replay() launches everything it captured, on the stream."""

    def __init__(self, device: "CudaDevice", graph: int, exec_: int):
        self.device, self.graph, self.exec = device, graph, exec_

    def replay(self) -> None:
        self.device.driver.call("graph_launch", self.exec, self.device.stream)

    def close(self) -> None:
        if self.exec:
            self.device.driver.call("graph_exec_destroy", self.exec)
            self.device.driver.call("graph_destroy", self.graph)
            self.exec = self.graph = 0


CONSTANTS_KEPT = 256  # distinct scalar values a device keeps uploaded


class CudaDevice:
    """One GPU: primary context, one non-blocking stream, a caching allocator."""

    def __init__(self, index: int = 0, driver: Driver | None = None):
        self.driver = d = driver or get_driver()
        count = d.out("device_count", c_int)
        if index >= count:
            raise CudaUnavailableError(f"cuda:{index} does not exist ({count} CUDA device(s))",
                                       hint="use an index below the device count")
        self.index = index
        self.handle = d.out("device_get", c_int, index)
        self.context = d.out("primary_ctx_retain", c_void_p, self.handle)
        d.call("ctx_set_current", self.context)
        self.stream = d.out("stream_create", c_void_p, CU_STREAM_NON_BLOCKING)
        self.allocator = CachingAllocator(d)
        name = ctypes.create_string_buffer(256)
        d.call("device_name", name, 256, self.handle)
        self.name = name.value.decode(errors="replace")
        self.capability = (self.attribute(ATTR_COMPUTE_CAPABILITY_MAJOR),
                           self.attribute(ATTR_COMPUTE_CAPABILITY_MINOR))
        self.multiprocessors = self.attribute(ATTR_MULTIPROCESSOR_COUNT)
        self.total_memory = d.out("device_total_mem", c_size_t, self.handle)
        self.emulated = isinstance(d.lib, EmulatedLib)  # kernels then run under the interpreter
        self._constants: dict = {}  # (dtype, value bytes) -> CudaArray, see constant()

    def attribute(self, attr: int) -> int:
        return self.driver.out("device_attribute", c_int, attr, self.handle)

    def __repr__(self) -> str:
        return f"<cuda:{self.index} {self.name} sm_{self.capability[0]}{self.capability[1]}>"

    # ------------------------------------------------------------ memory
    def alloc(self, nbytes: int) -> DeviceBuffer:
        return self.allocator.alloc(nbytes)

    def constant(self, array: np.ndarray) -> "CudaArray":
        """A 0-d host value joining a cuda op (a Python number, `x * 0.9`), uploaded once
        per distinct value rather than once per op. Only ever read: an op's inputs are
        never written, and an in-place op writes its target tensor's own payload."""
        key = (array.dtype.str, array.tobytes())
        hit = self._constants.get(key)
        if hit is None:
            if len(self._constants) >= CONSTANTS_KEPT:  # the oldest value goes first
                del self._constants[next(iter(self._constants))]
            hit = self._constants[key] = CudaArray.from_numpy(self, array)
        return hit

    def upload(self, array: np.ndarray) -> DeviceBuffer:
        buf = self.alloc(array.nbytes)
        self.copy_to_device(buf, array)
        return buf

    def copy_to_device(self, buf: DeviceBuffer, array: np.ndarray) -> None:
        """Host -> device, ordered on the stream. From pageable memory the driver stages
        the copy, so the array may be reused as soon as this returns."""
        array = np.ascontiguousarray(array)
        if array.nbytes > buf.nbytes:
            raise ValueError(f"copy of {array.nbytes} bytes into a {buf.nbytes}-byte device buffer")
        if array.nbytes:
            self.driver.call("memcpy_htod_async", buf.ptr, array.ctypes.data, array.nbytes, self.stream)

    def copy_to_host(self, buf: DeviceBuffer, out: np.ndarray) -> np.ndarray:
        """Device -> host into `out` (C-contiguous), after everything queued on the stream."""
        if not out.flags.c_contiguous or out.nbytes > buf.nbytes:
            raise ValueError("copy_to_host: out must be C-contiguous and no larger than the buffer")
        if out.nbytes:
            self.driver.call("memcpy_dtoh_async", out.ctypes.data, buf.ptr, out.nbytes, self.stream)
        self.synchronize()
        return out

    def copy(self, dst: DeviceBuffer, src: DeviceBuffer, nbytes: int | None = None) -> None:
        n = min(dst.nbytes, src.nbytes) if nbytes is None else nbytes
        self.driver.call("memcpy_dtod_async", dst.ptr, src.ptr, n, self.stream)

    def fill_bytes(self, buf: DeviceBuffer, value: int = 0) -> None:
        self.driver.call("memset_d8_async", buf.ptr, value, buf.nbytes, self.stream)

    def synchronize(self) -> None:
        self.driver.call("stream_synchronize", self.stream)

    def memory_allocated(self) -> int:
        return self.allocator.memory_allocated()

    def max_memory_allocated(self) -> int:
        return self.allocator.max_memory_allocated()

    def memory_reserved(self) -> int:
        return self.allocator.memory_reserved()

    def reset_peak_memory_stats(self) -> None:
        self.allocator.reset_peak_memory_stats()

    def empty_cache(self) -> None:
        self.synchronize()
        self.allocator.empty_cache()

    def mem_get_info(self) -> tuple[int, int]:
        free, total = c_size_t(), c_size_t()
        self.driver.call("mem_get_info", byref(free), byref(total))
        return free.value, total.value

    # ------------------------------------------------------------ timing
    def event(self) -> int:
        return self.driver.out("event_create", c_void_p, CU_EVENT_DEFAULT)

    def time_ms(self, fn, repeat: int = 1) -> float:
        """GPU time of `repeat` calls of fn (which launches on the stream), per call, in ms."""
        start, end = self.event(), self.event()
        try:
            self.driver.call("event_record", start, self.stream)
            for _ in range(repeat):
                fn()
            self.driver.call("event_record", end, self.stream)
            self.driver.call("event_synchronize", end)
            ms = c_float()
            self.driver.call("event_elapsed_time", byref(ms), start, end)
            return ms.value / repeat
        finally:
            self.driver.call("event_destroy", start)
            self.driver.call("event_destroy", end)

    def host_time_ms(self, fn, repeat: int = 1) -> float:
        """Wall time of `repeat` calls including the final synchronisation, per call."""
        self.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        self.synchronize()
        return (time.perf_counter() - t0) * 1e3 / repeat

    # ------------------------------------------------------------ graphs
    def capture(self, fn) -> CudaGraph:
        """Record everything fn launches on the stream into a CUDA graph (nothing runs yet).

        Kernels must be compiled before (a first eager run), and the buffers they use must
        keep their addresses for as long as the graph is replayed."""
        d = self.driver
        d.call("stream_begin_capture", self.stream, CU_STREAM_CAPTURE_MODE_RELAXED)
        try:
            fn()
        except BaseException:
            g = c_void_p()
            try:
                d.call("stream_end_capture", self.stream, byref(g))
                if g.value:
                    d.call("graph_destroy", g.value)
            except Exception:
                pass
            raise
        g = c_void_p()
        d.call("stream_end_capture", self.stream, byref(g))
        graph = g.value
        exec_ = c_void_p()
        d.call("graph_instantiate", byref(exec_), graph, 0)
        return CudaGraph(self, graph, exec_.value)


_devices: dict[tuple[bool, int], CudaDevice] = {}


def get_device(index: int = 0) -> CudaDevice:
    """The CudaDevice for cuda:index (the emulated one while TRACECC_CUDA_EMULATE is set)."""
    key = (emulated(), index)
    dev = _devices.get(key)
    if dev is None:
        dev = _devices[key] = CudaDevice(index)
    return dev



# ---------------------------------------------------------------- the emulated test device
class EmulatedLib:
    """A host-memory stand-in for libcuda, for tests on machines without a GPU (switched on
    by TRACECC_CUDA_EMULATE=1, never silently). Each cu* symbol is a Python function with
    the driver's calling convention (outputs through byref arguments), so Driver, the
    caching allocator and CudaDevice run unchanged on it. Device pointers are the
    addresses of numpy buffers; `array(ptr)` gives that buffer to the interpreter.

    Graph capture is emulated by recording, not by a driver: between cuStreamBeginCapture
    and cuStreamEndCapture, copies and the kernel launches tracecc issues through
    `launch()` are recorded instead of run, and cuGraphLaunch runs the recording. That
    tests which work is captured and with which buffers, not a real graph's behaviour."""

    def __init__(self, memory: int = 16 << 30):
        self.memory, self.used = memory, 0
        self.blocks: dict[int, np.ndarray] = {}
        self._handles = 0x1000
        # copies done, by direction: tests assert a compiled step makes no host copies
        self.copies = {"htod": 0, "dtoh": 0, "dtod": 0}
        # CUDA graphs, emulated: while a capture is open, copies and kernel launches
        # (launch()) are recorded instead of run; launching the graph runs the recording
        self.recording: list | None = None
        self.graphs: dict[int, list] = {}
        self.replays = 0

        def out(ref, value):
            ref._obj.value = value  # byref(x)._obj is x

        def handle():
            self._handles += 0x10
            return self._handles

        def alloc(ref, size):
            if self.used + size > self.memory:
                return CUDA_ERROR_OUT_OF_MEMORY
            block = np.empty(size, np.uint8)
            self.blocks[block.ctypes.data] = block
            self.used += size
            out(ref, block.ctypes.data)

        def free(ptr):
            self.used -= self.blocks.pop(ptr).nbytes

        def memcpy(kind):
            def fn(dst, src, n, stream):
                def copy():
                    self.copies[kind] += 1
                    ctypes.memmove(dst, src, n)

                self.launch(copy)

            return fn

        def memset(dst, value, n, stream):
            self.launch(lambda: ctypes.memset(dst, value, n))

        def synchronize(stream):
            # as the driver: waiting on a stream that is being captured is an error
            return 900 if self.recording is not None else 0

        def begin_capture(stream, mode):
            if self.recording is not None:
                return 900  # CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: one capture at a time
            self.recording = []

        def end_capture(stream, ref):
            graph = handle()
            self.graphs[graph], self.recording = self.recording or [], None
            out(ref, graph)

        def instantiate(ref, graph, flags):
            exec_ = handle()
            self.graphs[exec_] = list(self.graphs[graph])
            out(ref, exec_)

        def graph_launch(exec_, stream):
            self.replays += 1
            for op in self.graphs[exec_]:
                op()

        def name(buf, n, dev):
            buf.value = EMULATED_NAME.encode()[:n - 1]

        attributes = {ATTR_COMPUTE_CAPABILITY_MAJOR: 9, ATTR_COMPUTE_CAPABILITY_MINOR: 0,
                      ATTR_MULTIPROCESSOR_COUNT: 1}
        impls = {
            "cuInit": lambda flags: 0,
            "cuDriverGetVersion": lambda v: out(v, 0),
            "cuDeviceGetCount": lambda n: out(n, 1),
            "cuDeviceGet": lambda d, i: out(d, i),
            "cuDeviceGetName": name,
            "cuDeviceGetAttribute": lambda v, attr, dev: out(v, attributes.get(attr, 1)),
            "cuDeviceTotalMem_v2": lambda v, dev: out(v, self.memory),
            "cuDevicePrimaryCtxRetain": lambda c, dev: out(c, handle()),
            "cuDevicePrimaryCtxRelease_v2": lambda dev: 0,
            "cuCtxSetCurrent": lambda c: 0,
            "cuStreamCreate": lambda s, flags: out(s, handle()),
            "cuStreamDestroy_v2": lambda s: 0,
            "cuStreamSynchronize": synchronize,
            "cuStreamQuery": lambda s: 0,
            "cuMemAlloc_v2": alloc,
            "cuMemFree_v2": free,
            "cuMemGetInfo_v2": lambda f, t: out(f, self.memory - self.used) or out(t, self.memory),
            "cuMemcpyHtoDAsync_v2": memcpy("htod"),
            "cuMemcpyDtoHAsync_v2": memcpy("dtoh"),
            "cuMemcpyDtoDAsync_v2": memcpy("dtod"),
            "cuMemsetD8Async": memset,
            "cuStreamBeginCapture_v2": begin_capture,
            "cuStreamEndCapture": end_capture,
            "cuGraphInstantiateWithFlags": instantiate,
            "cuGraphLaunch": graph_launch,
            "cuGraphExecDestroy": lambda g: self.graphs.pop(g, None) and None,
            "cuGraphDestroy": lambda g: self.graphs.pop(g, None) and None,
            "cuEventCreate": lambda e, flags: out(e, handle()),
            "cuEventRecord": lambda e, s: 0,
            "cuEventSynchronize": lambda e: 0,
            "cuEventElapsedTime": lambda ms, a, b: out(ms, 0.0),
            "cuEventDestroy_v2": lambda e: 0,
        }
        for sym, impl in impls.items():
            setattr(self, sym, self._wrap(impl))

    @staticmethod
    def _wrap(impl):
        def fn(*args):  # a plain function, so Driver can set argtypes/restype on it
            return impl(*args) or 0
        return fn

    def array(self, ptr: int) -> np.ndarray:
        """The host buffer behind an emulated device pointer."""
        return self.blocks[ptr]

    def launch(self, call) -> None:
        """Run work issued on the stream (an interpreted kernel launch, a copy) now, or
        record it while a capture is open, as the driver records launches into a graph."""
        if self.recording is not None:
            self.recording.append(call)
        else:
            call()


# ---------------------------------------------------------------- cuda tensors' payload
def _contiguous_strides(shape) -> tuple:
    strides, n = [], 1
    for d in reversed(shape):
        strides.append(n)
        n *= d
    return tuple(reversed(strides))


def _view_strides(shape, strides, new_shape):
    """Strides that let `new_shape` view memory laid out as (shape, strides), or None when
    a reshape must copy (PyTorch's computeStride; numpy's no-copy reshape agrees)."""
    if tuple(strides) == _contiguous_strides(shape) or math.prod(shape) == 0:
        return _contiguous_strides(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    base = strides[-1] if strides else 1
    tensor_numel = view_numel = 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_numel * base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                base = strides[d - 1]
                tensor_numel = view_numel = 1
    return tuple(new_strides) if view_d == -1 else None


class CudaArray:
    """A cuda tensor's payload: `buffer` (a DeviceBuffer, shared by views) holds
    `root_shape` contiguous elements of `dtype`; `chain` is the sequence of view primitives
    ((name, params) of reshape/permute/expand/slice) from root_shape to this array.

    Kernels read an array through its chain (the eager cuda path puts those movement ops
    in front of the op, so they become index arithmetic); `strides` and `offset` (in
    elements) are the same view as numbers, for stride(), is_contiguous() and deciding
    whether a reshape can be a view. `dtype` is a numpy dtype, like an ndarray's."""

    __slots__ = ("buffer", "device", "dtype", "root_shape", "chain", "shape", "elem_strides",
                 "offset", "__weakref__")

    def __init__(self, buffer, device, dtype, shape, chain=(), root_shape=None, strides=None,
                 offset=0):
        self.buffer, self.device, self.dtype = buffer, device, np.dtype(dtype)
        self.shape = tuple(shape)
        self.root_shape = self.shape if root_shape is None else tuple(root_shape)
        self.chain = tuple(chain)
        self.elem_strides = _contiguous_strides(self.shape) if strides is None else tuple(strides)
        self.offset = offset

    # ------------------------------------------------------------ making and reading
    @staticmethod
    def empty(device: CudaDevice, shape, dtype) -> "CudaArray":
        dtype = np.dtype(dtype)
        buf = device.alloc(max(math.prod(shape) * dtype.itemsize, 1))
        return CudaArray(buf, device, dtype, shape)

    @staticmethod
    def zeros(device: CudaDevice, shape, dtype) -> "CudaArray":
        out = CudaArray.empty(device, shape, dtype)
        device.fill_bytes(out.buffer, 0)
        return out

    @staticmethod
    def from_numpy(device: CudaDevice, array: np.ndarray) -> "CudaArray":
        array = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        out = CudaArray.empty(device, array.shape, array.dtype)
        device.copy_to_device(out.buffer, array)
        return out

    def numpy(self) -> np.ndarray:
        """A host copy (the whole buffer comes over, then the view is taken on the host)."""
        root = np.empty(self.root_shape, self.dtype)
        self.device.copy_to_host(self.buffer, root.reshape(-1))
        item = self.dtype.itemsize
        flat = root.reshape(-1)
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape,
                                               [s * item for s in self.elem_strides])
        return np.array(view, copy=True)

    def copy(self) -> "CudaArray":
        """A contiguous copy on the device (as ndarray.copy())."""
        if not self.is_root:
            from .registry import PRIMITIVES
            return run_op(PRIMITIVES["copy"], [self], {})
        out = CudaArray.empty(self.device, self.shape, self.dtype)
        self.device.copy(out.buffer, self.buffer, self.nbytes)
        return out

    def __array__(self, dtype=None, copy=None):
        from .errors import DeviceError
        raise DeviceError(f"a cuda:{self.device.index} array cannot be used as a numpy array",
                          hint="copy it to the host first: tensor.cpu()")

    @property
    def is_root(self) -> bool:
        """The whole buffer, contiguous, in its own shape."""
        return not self.chain

    def view(self, name: str, params: dict, out_shape) -> "CudaArray | None":
        """This array seen through one more view primitive, sharing the buffer; None for a
        reshape whose strides cannot describe the result (the caller copies)."""
        shape, strides, offset = self.shape, self.elem_strides, self.offset
        if name == "permute":
            strides = tuple(strides[d] for d in params["dims"])
        elif name == "expand":
            lead = len(out_shape) - len(shape)
            strides = (0,) * lead + tuple(s if d == t else 0 for d, s, t in
                                          zip(shape, strides, out_shape[lead:]))
        elif name == "slice":
            offset += sum(a * s for a, s in zip(params["starts"], strides))
            strides = tuple(s * k for s, k in zip(strides, params["steps"]))
        elif name == "reshape":
            strides = _view_strides(shape, strides, tuple(out_shape))
            if strides is None:
                return None
        else:
            raise ValueError(f"{name} is not a view primitive")
        return CudaArray(self.buffer, self.device, self.dtype, out_shape,
                         self.chain + ((name, _freeze(params)),), self.root_shape, strides, offset)

    def root(self) -> "CudaArray":
        return CudaArray(self.buffer, self.device, self.dtype, self.root_shape)

    # ------------------------------------------------------------ ndarray-like attributes
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def strides(self) -> tuple:
        """In bytes, as numpy's."""
        return tuple(s * self.dtype.itemsize for s in self.elem_strides)

    @property
    def is_contiguous(self) -> bool:
        return all(s == c for s, c, d in zip(self.elem_strides, _contiguous_strides(self.shape),
                                             self.shape) if d != 1)

    @property
    def writeable(self) -> bool:
        """Expanded arrays share memory between elements, so they are read-only (as numpy's
        broadcast views)."""
        return not any(name == "expand" for name, _ in self.chain)

    @property
    def flags(self):
        """The two ndarray flags the front end reads."""
        from types import SimpleNamespace
        return SimpleNamespace(c_contiguous=self.is_contiguous, writeable=self.writeable)

    @property
    def base(self):
        return None if self.is_root else self.root()

    def data_ptr(self) -> int:
        return self.buffer.ptr + self.offset * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"CudaArray({self.dtype}{list(self.shape)} on cuda:{self.device.index})"

    # numpy functions the front end applies to payloads, done on the device
    def __array_function__(self, func, types, args, kwargs):
        if func is np.copyto:  # compiled graphs write new values into their inputs' arrays
            dst, src = args[0], args[1]
            if not isinstance(dst, CudaArray):  # cpu_tensor.copy_(cuda_tensor)
                return np.copyto(dst, src.numpy(), **kwargs)
            write(dst, src if isinstance(src, CudaArray) else CudaArray.from_numpy(dst.device, np.asarray(src, dst.dtype)))
            return None
        if func in (np.may_share_memory, np.shares_memory):
            a, b = args[0], args[1]
            return isinstance(a, CudaArray) and isinstance(b, CudaArray) and a.buffer is b.buffer
        return NotImplemented


def view_of(array: CudaArray, name: str, params: dict) -> CudaArray | None:
    """`array` through the view primitive `name` (its meta rule gives the shape)."""
    from .registry import PRIMITIVES, TensorType
    from .dtypes import get_dtype
    shape = PRIMITIVES[name].meta(TensorType(array.shape, get_dtype(array.dtype)), **params).shape
    return array.view(name, params, tuple(shape))


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


def run_op(prim, arrays, params):
    """Run a primitive on cuda arrays: the eager cuda kernel, installed by the code generator
    (codegen/triton/eager.py; runtime imports nothing from codegen)."""
    if _op_runner is None:
        from ..codegen.triton import eager  # noqa: F401  (installs the runner)
    return _op_runner(prim, arrays, params)


_op_runner = None


def set_op_runner(fn) -> None:
    global _op_runner
    _op_runner = fn


def write(dst: CudaArray, value: CudaArray) -> None:
    """Copy value's elements into dst's memory (dst may be a view: the new contents of its
    root are computed functionally, the way _tensor._write_into does for tensors)."""
    from .registry import PRIMITIVES
    if value.dtype != dst.dtype:
        from .dtypes import get_dtype
        value = run_op(PRIMITIVES["cast"], [value], {"dtype": get_dtype(dst.dtype)})
    if dst.is_root:
        if not value.is_root or value.shape != dst.shape:
            value = run_op(PRIMITIVES["copy"], [value], {})
        dst.device.copy(dst.buffer, value.buffer, dst.nbytes)
        return
    name, params = dst.chain[-1]
    params = dict(params)
    parent = dst.root()
    for step, step_params in dst.chain[:-1]:
        parent = view_of(parent, step, dict(step_params))
    if name == "slice":
        new = run_op(PRIMITIVES["slice_scatter"], [parent, value], params)
    elif name == "reshape":
        new = run_op(PRIMITIVES["reshape"], [value], {"shape": parent.shape})
    elif name == "permute":
        dims = params["dims"]
        new = run_op(PRIMITIVES["permute"], [value], {"dims": tuple(sorted(range(len(dims)), key=dims.__getitem__))})
    else:
        from .errors import InplaceError
        raise InplaceError("in-place update of an expanded tensor: its memory is shared by "
                           "several elements", hint="call .clone() first")
    write(parent, new)
