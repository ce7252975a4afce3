"""Errors with a stable code, what went wrong, a hint, and the user's line.

Frames inside tracecc itself are skipped when naming the line, so the message points at
the user's code. Set TRACECC_VERBOSE=1 to keep tracecc's own frames in tracebacks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# Installed, runtime/ lives at tracecc/runtime; in a checkout it sits beside tracecc/.
_INTERNAL = tuple(
    str(_ROOT) + os.sep
    if _ROOT.name == "tracecc"
    else str(_ROOT / d) + os.sep
    for d in ("tracecc", "runtime", "passes", "codegen")
)


def is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL)


def user_frame(skip_internal: bool = True):
    """The innermost stack frame that belongs to the user's code (not tracecc's)."""
    frame = sys._getframe(1)
    while frame is not None and skip_internal and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_location() -> str:
    frame = user_frame()
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class TraceccError(Exception):
    """Base error. `code` is stable (documented in docs/errors.md); `hint` says what to do."""

    code = "TC000"

    def __init__(self, message: str, hint: str | None = None, location: str | None = None):
        self.message = message
        self.hint = hint
        self.location = location if location is not None else user_location()
        text = f"[{self.code}] {message}"
        if hint:
            text += f"\n  hint: {hint}"
        text += f"\n  at: {self.location}"
        super().__init__(text)


class ShapeError(TraceccError, ValueError):
    code = "TC001"


class DTypeError(TraceccError, TypeError):
    code = "TC002"


class DeviceError(TraceccError, RuntimeError):
    code = "TC003"


class AutogradError(TraceccError, RuntimeError):
    code = "TC010"


class InplaceError(AutogradError):
    code = "TC011"


class IndexError_(TraceccError, IndexError):
    code = "TC004"


# nn / optim / data / serialization (TC06x)
class StateDictError(TraceccError, RuntimeError):
    """load_state_dict: missing, unexpected or mis-shaped entries."""
    code = "TC060"


class SerializationError(TraceccError, ValueError):
    """tracecc.save/load: an unsupported object, or a truncated or tampered file."""
    code = "TC061"


class DatasetError(TraceccError, RuntimeError):
    """A dataset's files are missing, corrupt, or could not be downloaded."""
    code = "TC062"


class InvalidArgumentError(TraceccError, ValueError):
    """A bad hyperparameter or option (learning rate, reduction, padding mode, ...)."""
    code = "TC063"


class DataLoaderError(TraceccError, RuntimeError):
    """A DataLoader worker process died, or no batch came within the DataLoader's timeout."""
    code = "TC064"


class CodegenError(TraceccError, RuntimeError):
    """Generated code failed to parse, verify, compile or link (a tracecc bug, not the user's)."""
    code = "TC201"


class CacheError(TraceccError, RuntimeError):
    """The on-disk compile cache could not be used (bad directory, permissions)."""
    code = "TC202"


ERROR_CLASSES = [ShapeError, DTypeError, DeviceError, IndexError_, AutogradError, InplaceError]
ERROR_CLASSES += [StateDictError, SerializationError, DatasetError, InvalidArgumentError]
ERROR_CLASSES += [CodegenError, CacheError]


# compile(): tracing, guards and the IR (TC10x, TC12x)
class DataDependentError(TraceccError, RuntimeError):
    """Code under compile needs a tensor's concrete value (.item(), bool(t), .numpy())."""
    code = "TC101"


class UnsupportedError(TraceccError, RuntimeError):
    """An op or Python construct the compiler cannot capture in a graph."""
    code = "TC102"


class RecompileError(TraceccError, RuntimeError):
    """A guard failed where the stance forbids recompiling (set_stance("fail_on_recompile"))."""
    code = "TC103"


class IRParseError(TraceccError, ValueError):
    """IR text that does not parse; names the line."""
    code = "TC120"


class IRVerifyError(TraceccError, ValueError):
    """A graph that breaks an IR invariant (types, SSA, dangling uses); names the node."""
    code = "TC121"


ERROR_CLASSES += [DataDependentError, UnsupportedError, RecompileError, IRParseError, IRVerifyError]


# GPU: the CUDA driver and the Triton backend (TC30x)
class CudaUnavailableError(DeviceError):
    """No usable CUDA driver (libcuda) or no NVIDIA device on this machine."""
    code = "TC301"


class CudaDriverError(TraceccError, RuntimeError):
    """A CUDA driver API call failed; names the call and the CUDA error."""
    code = "TC302"


class CudaOutOfMemoryError(CudaDriverError):
    """The device has no memory left for an allocation, even after emptying the cache."""
    code = "TC303"


class TritonUnavailableError(TraceccError, ImportError):
    """The Triton backend was asked for but the `triton` package is not installed."""
    code = "TC304"


ERROR_CLASSES += [CudaUnavailableError, CudaDriverError, CudaOutOfMemoryError, TritonUnavailableError]
