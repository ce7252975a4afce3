"""The pass manager: an ordered list of named passes, each a function Graph -> Graph.

Each pass is timed, leaves a provenance note on the graph ("pass simplify: 0.4 ms"), is
verified after it runs (always in tests, and whenever TRACECC_VERIFY=1), and is reported
to a log sink as a stage, which prints it (TRACECC_LOGS=passes) and writes it to the dump
directory (TRACECC_DUMP_DIR). passes/ never imports the front end: the sink is passed in.

Later passes register themselves by appending to PASSES:

    from tracecc.passes.pipeline import PASSES, Pass
    PASSES.append(Pass("simplify", simplify))
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .ir import Graph, dead_code_elimination
from .verify import verify


@dataclass
class Pass:
    name: str
    run: Callable[[Graph], Graph]
    enabled: Callable[[], bool] = lambda: True  # e.g. TRACECC_FUSION=0 turns fusion off
    kind: str = "passes"  # which TRACECC_LOGS kind prints its output ("fusion" for fusion)
    joint: bool = False  # runs on the whole traced program, before forward/backward split
    required: bool = False  # the graph cannot run without it: never deselected


# In order; the traced graph enters the first. Every primitive is pure, so dropping nodes
# that reach no output or write is always legal.
PASSES: list[Pass] = []


def _register_builtin_passes() -> None:
    from .autograd import autograd
    from .decompose import decompose
    from .simplify import simplify
    PASSES.append(Pass("decompose", decompose, joint=True, required=True))
    PASSES.append(Pass("autograd", autograd, joint=True, required=True))
    PASSES.append(Pass("dce", dead_code_elimination))
    PASSES.append(Pass("simplify", simplify))


_register_builtin_passes()


class LogSink(Protocol):
    """Where stages and messages go: the front end's tracecc/_logging.py implements it."""

    def enabled(self, kind: str) -> bool: ...

    def emit(self, kind: str, message: str) -> None: ...

    def stage(self, name: str, graph: Graph | None = None, text: str | None = None,
              suffix: str = ".ir", kind: str = "passes") -> None: ...


class NullSink:
    def enabled(self, kind: str) -> bool:
        return False

    def emit(self, kind: str, message: str) -> None:
        pass

    def stage(self, name, graph=None, text=None, suffix=".ir", kind="passes") -> None:
        pass


def verify_enabled() -> bool:
    return os.environ.get("TRACECC_VERIFY", "") not in ("", "0")


def select_passes(names: list[str] | None = None) -> list[Pass]:
    """The pipeline, or only the passes named (plus the required ones), in pipeline order."""
    if names is None:
        return list(PASSES)
    known = [p.name for p in PASSES]
    unknown = [n for n in names if n not in known]
    if unknown:
        from ..runtime.errors import InvalidArgumentError
        raise InvalidArgumentError(f"compile: unknown pass(es) {unknown}",
                                   hint=f"passes in the pipeline: {', '.join(known)}")
    return [p for p in PASSES if p.name in names or p.required]


def run_passes(graph: Graph, passes: list[Pass] | None = None, *, log: LogSink | None = None,
               verify_each: bool | None = None) -> Graph:
    """Run `passes` (default: PASSES) over graph, verifying, timing and logging each."""
    log = log or NullSink()
    check = verify_enabled() if verify_each is None else verify_each
    for p in PASSES if passes is None else passes:
        if not p.enabled():
            continue
        t0 = time.perf_counter()
        graph = p.run(graph)
        ms = (time.perf_counter() - t0) * 1e3
        graph.notes.append(f"pass {p.name}: {ms:.1f} ms")
        if check:
            verify(graph)
        log.stage(p.name, graph, kind=p.kind)
    return graph
