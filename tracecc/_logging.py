"""Logs and dumps: the one place every stage of the compiler reports to.

TRACECC_LOGS=graph,passes,fusion,code,guards,recompiles,cache,perf (or `all`) prints the
named kinds to stderr. TRACECC_DUMP_DIR=dir writes one numbered file per stage for each
traced graph, in dir/<function>_<n>/ (000_traced.ir, 001_<pass>.ir, ..., code files,
guards.txt, repro.py; TRACECC_DUMP_ASM=1 adds the llvm backend's assembly). passes/ and
codegen/ do not import this module: the front end hands them a `Sink` (the LogSink
protocol of passes/pipeline.py) for each graph it compiles.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

KINDS = ("graph", "passes", "fusion", "code", "guards", "recompiles", "cache", "perf")
_warned: set[str] = set()


def enabled_kinds() -> set[str]:
    spec = os.environ.get("TRACECC_LOGS", "")
    kinds = {k.strip() for k in spec.split(",") if k.strip()}
    return set(KINDS) if "all" in kinds else kinds


def enabled(kind: str) -> bool:
    return kind in enabled_kinds()


def log(kind: str, message: str) -> None:
    if enabled(kind):
        print(f"[tracecc {kind}] {message}", file=sys.stderr, flush=True)


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"[tracecc warning] {message}", file=sys.stderr, flush=True)


def dump_root() -> Path | None:
    d = os.environ.get("TRACECC_DUMP_DIR")
    return Path(d) if d else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "fn"


class Sink:
    """Receives the stages of one compiled graph: prints the enabled kinds, writes dumps."""

    def __init__(self, fn_name: str):
        self.fn_name = fn_name
        self.kinds = enabled_kinds()
        self.index = 0
        self.files: list[Path] = []
        self.dir: Path | None = None
        root = dump_root()
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            n = 0
            while (root / f"{_safe(fn_name)}_{n}").exists():
                n += 1
            self.dir = root / f"{_safe(fn_name)}_{n}"
            self.dir.mkdir()

    def enabled(self, kind: str) -> bool:
        return kind in self.kinds

    def emit(self, kind: str, message: str) -> None:
        if kind in self.kinds:
            print(f"[tracecc {kind}] {self.fn_name}: {message}", file=sys.stderr, flush=True)

    def stage(self, name: str, graph=None, text: str | None = None, suffix: str = ".ir",
              kind: str = "passes") -> None:
        """One stage: a graph (printed as IR) or text (generated code, kernel lists)."""
        if text is None:
            text = str(graph)
        if kind in self.kinds:
            print(f"[tracecc {kind}] {self.fn_name}: stage {name}\n{text}", file=sys.stderr,
                  flush=True)
        if self.dir is not None:
            path = self.dir / f"{self.index:03d}_{_safe(name)}{suffix}"
            path.write_text(text)
            self.files.append(path)
        self.index += 1

    def file(self, name: str, text: str) -> None:
        """An unnumbered file in the dump directory (guards.txt, repro.py)."""
        if self.dir is not None:
            path = self.dir / name
            path.write_text(text)
            self.files.append(path)
