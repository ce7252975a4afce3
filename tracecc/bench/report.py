"""What a run prints and writes: Markdown tables, JSON, a PNG bar chart of speedups."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
from importlib import metadata

from .harness import CaseResult

MEMORY_METHOD = ("tracemalloc: bytes allocated through numpy/Python during one steady-state step, "
                 "above what was live before it; torch, jax and backends with their own allocator "
                 "allocate outside its view")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str | None:
    """The commit of the tracecc checkout, '+dirty' when its working tree has changes."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": device,
        "versions": {d: _version(d) for d in ("tracecc", "numpy", "llvmlite", "torch", "jax", "jaxlib")},
        "git": _git_revision(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]  # others' work on a shared machine
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    return info


# ------------------------------------------------------------------ formatting
def fmt_time(s: float | None) -> str:
    if s is None:
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale or unit == "µs":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return ""


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _ratio(x: float | None) -> str:
    return "" if x is None else (f"{x:.2f}×" if x < 10 else f"{x:.1f}×")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table whose columns line up in a terminal too."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def _status_cell(r) -> str:
    if r.status == "ok":
        return f"ok ({r.max_err:.0e})" if r.max_err else "ok (exact)"
    return f"{r.status}: {r.reason}"


def case_table(cr: CaseResult) -> str:
    has_floor, has_flops = cr.floor_s is not None, cr.flops is not None
    has_overhead = any(r.overhead_s is not None for r in cr.results)
    header = ["variant", "median", "IQR", "vs tracecc eager"]
    header += ["× floor"] * has_floor + ["GFLOP/s"] * has_flops + ["overhead"] * has_overhead
    header += ["first call", "cache hit", "peak MiB", "check"]
    rows = []
    for r in cr.results:
        timed = r.median_s is not None
        row = [r.variant, fmt_time(r.median_s),
               f"{100 * (r.p75_s - r.p25_s) / r.median_s:.1f}%" if timed else "",
               _ratio(r.vs_eager)]
        if has_floor:
            row.append(f"{r.x_floor:.3g}" if r.x_floor is not None else "")
        if has_flops:
            row.append(f"{r.gflops:.1f}" if r.gflops is not None else "")
        if has_overhead:
            row.append(fmt_time(r.overhead_s))
        row += [fmt_time(r.first_call_s) if r.ok else "", fmt_time(r.cache_hit_s) if r.ok else "",
                f"{r.peak_bytes / 2**20:.1f}" if r.peak_bytes is not None and r.ok else "",
                _status_cell(r)]
        rows.append(row)
    return _table(header, rows)


def _floor_line(cr: CaseResult) -> str | None:
    if cr.floor_s is None:
        return None
    return (f"Bandwidth floor: {fmt_bytes(cr.bytes_moved)} must move; copy bandwidth "
            f"{fmt_bytes(cr.copy_bandwidth)}/s ({cr.copy_bytes >> 20} MiB copy into a reused buffer, "
            f"read + write, timed in the same rounds) → {fmt_time(cr.floor_s)}.")


def _ratio_lines(cr: CaseResult) -> list[str]:
    """For each tracecc variant that ran: its speedup over every other variant that ran."""
    timed = [r for r in cr.results if r.median_s]
    lines = []
    for r in timed:
        if r.framework != "tracecc":
            continue
        others = [f"{o.variant} {_ratio(o.median_s / r.median_s)}" for o in timed if o is not r]
        if others:
            lines.append(f"Speedup of {r.variant} over: " + ", ".join(others) + ".")
    return lines


def summary_table(case_results: list[CaseResult]) -> str:
    variants = []
    for cr in case_results:
        for r in cr.results:
            if r.variant not in variants:
                variants.append(r.variant)
    rows = []
    for cr in case_results:
        by_name = {r.variant: r for r in cr.results}
        row = [f"{cr.id} {cr.title} ({cr.shape})"]
        for v in variants:
            r = by_name.get(v)
            if r is None or r.status == "absent":
                row.append("—")
            elif r.status != "ok":
                row.append(r.status)
            else:
                row.append(f"{fmt_time(r.median_s)} ({_ratio(r.vs_eager)})" if r.vs_eager
                           else fmt_time(r.median_s))
        rows.append(row)
    return _table(["workload"] + variants, rows)


def _absent_notes(case_results: list[CaseResult]) -> list[str]:
    seen = {}
    for cr in case_results:
        for r in cr.results:
            if r.status == "absent":
                seen.setdefault(r.variant, r.reason)
    return [f"{v}: {why}." for v, why in seen.items()]


def markdown(case_results: list[CaseResult], meta: dict) -> str:
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    out = [
        f"## tracecc bench: {m['device']}, {meta['size']} sizes",
        "",
        f"{m['date']}; {m['cpu']}, {m['cores']} cores" + (f"; GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; Python {m['python']}; {versions}" + (f"; tracecc at {m['git']}" if m.get("git") else "")
        + (f"; load average {m['loadavg'][0]:.2f} at the end" if m.get("loadavg") else "") + ".",
        "Threads: " + (", ".join(f"{k} {v}" for k, v in meta["threads"].items()) or "as started")
        + ". " + f"{meta['repeat']} timed rounds after {meta['warmup']} warm-up rounds, variants interleaved "
        f"round-robin in one process; median and interquartile range (IQR, % of median) of one step. "
        f"'vs tracecc eager' > 1 is faster. Every result is checked against a float64 numpy "
        f"reference in the same run (check: max error / max |reference|).",
        "",
        "### Summary: median step time (speedup vs tracecc eager)",
        "",
        summary_table(case_results),
    ]
    for cr in case_results:
        out += ["", f"### {cr.id} {cr.title}: {cr.shape}, {cr.device}", ""]
        floor = _floor_line(cr)
        if floor:
            out += [floor, ""]
        out.append(case_table(cr))
        ratios = _ratio_lines(cr)
        if ratios:
            out += [""] + ratios
    absent = _absent_notes(case_results)
    out += ["", "Notes:", "",
            "- Variants that could not run here: " + (" ".join(absent) if absent else "none."),
            f"- Peak MiB: {MEMORY_METHOD}.",
            "- First call: build + the first step (it compiles, for compiled variants). Cache hit: the "
            "first step of a second, freshly built instance (its compiled code is cached by then).",
            "- × floor: median / bandwidth floor. GFLOP/s: matmul FLOPs of one step / median. Overhead: "
            "warm steps back to back minus the compiled step's own kernel times (medians), where it "
            "reports them; the cold caches a step meets in the rounds are not in it."]
    out += [f"- {n}" for n in meta.get("notes", ())]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ machines and pictures
def to_json(case_results: list[CaseResult], meta: dict) -> dict:
    return {"meta": meta, "cases": [dataclasses.asdict(cr) for cr in case_results]}


def write_json(path: str, case_results: list[CaseResult], meta: dict) -> None:
    with open(path, "w") as f:
        json.dump(to_json(case_results, meta), f, indent=1)
        f.write("\n")


def plot(path: str, case_results: list[CaseResult], meta: dict) -> None:
    """Grouped bars: each variant's speedup over tracecc eager, per case, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    variants = []
    for cr in case_results:
        for r in cr.results:
            if r.vs_eager and r.variant not in variants:
                variants.append(r.variant)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(case_results)) + 2.5, 4.2))
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        xs, ys = [], []
        for j, cr in enumerate(case_results):
            r = next((r for r in cr.results if r.variant == v and r.vs_eager), None)
            if r is not None:
                xs.append(j - 0.4 + (i + 0.5) * width)
                ys.append(r.vs_eager)
        ax.bar(xs, ys, width, label=v)
    ax.set_yscale("log")
    times = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×")
    ax.yaxis.set_major_formatter(times)
    ax.yaxis.set_minor_formatter(times)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(case_results)))
    ax.set_xticklabels([f"{cr.id}\n{cr.title}" for cr in case_results])
    ax.set_ylabel("speedup vs tracecc eager (log)")
    m = meta["machine"]
    ax.set_title(f"tracecc bench, {m['device']} ({m.get('gpu') or m['cpu']}, {m['date']})", fontsize=9)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
