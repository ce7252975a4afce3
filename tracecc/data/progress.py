"""A plain-text progress bar for loops and downloads, with no dependencies.

On a terminal it redraws one line in place; when output goes to a file or a pipe (CI
logs), it prints a line at each 10% instead, so logs stay short and readable.

    for images, labels in progress(train_loader, desc="epoch 1"):
        ...
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO


def _fmt_count(n: float, unit: str) -> str:
    if unit == "B":
        for suffix in ("B", "KB", "MB", "GB"):
            if n < 1024 or suffix == "GB":
                return f"{n:.0f}{suffix}" if suffix == "B" else f"{n:.1f}{suffix}"
            n /= 1024
    return f"{int(n)}"


class Progress:
    """Counts work done out of `total` (None: unknown) and reports it on `file`."""

    width = 30

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it",
                 file: TextIO | None = None, disable: bool = False):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.disable = disable
        self.n = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())
        self._next_tenth = 1
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last_draw >= 0.1 or (self.total and self.n >= self.total):
                self._last_draw = now
                self.file.write("\r" + self.line())
                self.file.flush()
        elif self.total:
            while self._next_tenth <= 10 and self.n * 10 >= self._next_tenth * self.total:
                if self._next_tenth < 10:  # the 100% line is written by close()
                    self.file.write(self.line() + "\n")
                self._next_tenth += 1

    def line(self) -> str:
        elapsed = time.perf_counter() - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        done = _fmt_count(self.n, self.unit)
        speed = f"{_fmt_count(rate, self.unit)}/s" if self.unit == "B" else f"{rate:.1f} {self.unit}/s"
        if self.total:
            frac = min(1.0, self.n / self.total)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            return (f"{head}{frac * 100:3.0f}% [{bar}] {done}/{_fmt_count(self.total, self.unit)} "
                    f"[{elapsed:.1f}s, {speed}]")
        return f"{head}{done} {self.unit} [{elapsed:.1f}s, {speed}]"

    def close(self) -> None:
        if self._closed or self.disable:
            self._closed = True
            return
        self._closed = True
        self.file.write(("\r" if self._tty else "") + self.line() + "\n")
        self.file.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable, desc: str = "", total: int | None = None, unit: str = "it",
             file: TextIO | None = None, disable: bool = False):
    """Yield from iterable while reporting progress (total defaults to len(iterable))."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    bar = Progress(total, desc, unit, file, disable)
    try:
        for item in iterable:
            yield item
            bar.update()
    finally:
        bar.close()
