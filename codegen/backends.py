"""The backend registry: name -> compile(graph, log) -> runner.

A runner takes a list of numpy arrays (one per graph input, in order) and returns a list
of arrays: the graph's outputs, then the new values of its writes (as passes/interpret.py).
A runner may write a new value straight into its input's array and return that very array
(the caller then skips the copy).

"interpreter" (the registry's eager kernels, node by node) always exists; other backends
register themselves when their module is imported, e.g. in codegen/llvm/__init__.py:

    from tracecc.codegen.backends import register_backend
    register_backend("llvm", compile_llvm, priority=10)

`get_backend("auto")` imports the known backend modules and picks the available one with
the highest priority.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..passes.interpret import compile_graph
from ..runtime.errors import InvalidArgumentError


@dataclass
class Backend:
    name: str
    compile: Callable  # (graph, log) -> runner
    priority: int = 0
    available: Callable[[], bool] = lambda: True
    doc: str = ""


BACKENDS: dict[str, Backend] = {}
# modules that register a backend when imported (tried by get_backend)
KNOWN_MODULES = {"llvm": "tracecc.codegen.llvm", "triton": "tracecc.codegen.triton"}


def register_backend(name: str, compile: Callable, *, priority: int = 0,
                     available: Callable[[], bool] = lambda: True, doc: str = "") -> Backend:
    backend = Backend(name, compile, priority, available, doc)
    BACKENDS[name] = backend
    return backend


def _import_known() -> None:
    for name, module in KNOWN_MODULES.items():
        if name not in BACKENDS:
            try:
                importlib.import_module(module)
            except Exception:  # a backend that cannot load is simply not available
                pass


def get_backend(name: str = "auto") -> Backend:
    if name not in BACKENDS:
        _import_known()
    if name == "auto":
        ready = [b for b in BACKENDS.values() if b.available()]
        return max(ready, key=lambda b: b.priority)
    backend = BACKENDS.get(name)
    if backend is None or not backend.available():
        known = ", ".join(["auto"] + sorted(BACKENDS))
        raise InvalidArgumentError(f"compile: backend {name!r} is not available",
                                   hint=f"available backends: {known}")
    return backend


register_backend("interpreter", lambda graph, log=None: compile_graph(graph), priority=0,
                 doc="the reference interpreter: the registry's eager kernels, node by node")
