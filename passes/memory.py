"""Memory planning for a kernel program: buffer lifetimes, reuse, in-place updates.

- Temporaries live from the first kernel that writes them to the last kernel that reads
  them; temporaries whose lifetimes do not overlap share memory in one arena (first fit,
  largest first), so peak memory is the live set, not the sum of all temporaries.
- A functionalised write (`writes %w <- %w_new`) is done in place when that is legal: the
  new value is stored by one kernel, which reads the old value only at the element it
  overwrites, and no later kernel reads the old value. The parameter's own array then
  receives the update and no copy is made afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kernel_ir import Load, Program, all_stores, walk_kernel

ALIGN = 64


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # temp buffer -> byte offset in the arena
    arena_bytes: int = 0
    temp_bytes: int = 0  # what the temporaries would take without reuse
    inplace: dict[str, str] = field(default_factory=dict)  # output buffer -> input buffer it reuses

    def summary(self) -> str:
        saved = self.temp_bytes - self.arena_bytes
        return (f"temporaries {self.temp_bytes / 1e6:.2f} MB -> arena {self.arena_bytes / 1e6:.2f} MB"
                f" (saved {saved / 1e6:.2f} MB); {len(self.inplace)} in-place updates")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def lifetimes(p: Program) -> dict[str, tuple[int, int]]:
    """buffer -> (first kernel index touching it, last kernel index touching it)."""
    span: dict[str, tuple[int, int]] = {}
    for i, k in enumerate(p.kernels):
        touched = {e.buffer for e in walk_kernel(k) if isinstance(e, Load)}
        touched |= {s.buffer for s in all_stores(k)}
        if k.matmul is not None and k.matmul.out is not None:
            touched.add(k.matmul.out)
        for name in touched:
            lo, hi = span.get(name, (i, i))
            span[name] = (min(lo, i), max(hi, i))
    return span


def plan(p: Program, writes: dict[str, str] | None = None) -> MemoryPlan:
    """writes: output buffer -> the input buffer it is the new value of (from graph writes)."""
    result = MemoryPlan()
    span = lifetimes(p)
    temps = [name for name, b in p.buffers.items() if b.role == "temp" and name in span]
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    for name in sorted(temps, key=lambda n: -p.buffers[n].numel * p.buffers[n].dtype.itemsize):
        size = _align(max(p.buffers[name].numel * p.buffers[name].dtype.itemsize, 1))
        first, last = span[name]
        result.temp_bytes += size
        busy = sorted((o, s) for o, s, f, l_ in placed if not (l_ < first or f > last))
        offset = 0
        for o, s in busy:  # first gap that fits
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        result.offsets[name] = offset
        result.arena_bytes = max(result.arena_bytes, offset + size)
    writers: dict[str, list[int]] = {}  # buffer -> the kernels that store into it
    for i, k in enumerate(p.kernels):
        for name in {s.buffer for s in all_stores(k)}:
            writers.setdefault(name, []).append(i)
    for out, inp in (writes or {}).items():
        if _inplace_legal(p, out, inp, span, writers.get(out, [])):
            result.inplace[out] = inp
    return result


def _inplace_legal(p: Program, out: str, inp: str, span, writers: list[int]) -> bool:
    if p.outputs.count(out) != 1 or inp not in p.inputs or inp in p.outputs:
        return False
    if p.buffers[out].numel != p.buffers[inp].numel or p.buffers[out].dtype is not p.buffers[inp].dtype:
        return False
    if len(writers) != 1:
        return False
    (w,) = writers
    if span.get(inp, (w, w))[1] > w:  # a later kernel still reads the old value
        return False
    k = p.kernels[w]
    stores = [s for s in all_stores(k) if s.buffer == out]
    if len(stores) != 1 or stores[0].accumulate:
        return False
    # inside the writing kernel, the old value is read only at the element being written
    for e in walk_kernel(k):
        if isinstance(e, Load) and e.buffer == inp and e.index != stores[0].index:
            return False
    if k.matmul is not None and inp in (k.matmul.a.buffer, k.matmul.b.buffer):
        return False
    return True
