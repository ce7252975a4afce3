"""The `tracecc` command (also `python -m tracecc`): dump, show, draw and run compiled graphs.

    tracecc dump train.py --epochs 1        run a script with dumping on, list what it wrote
    tracecc show tracecc_dump --stage dce   print a stage of every dumped function
    tracecc graph step_0/000_traced.ir -o step.svg   draw a graph (DOT always; SVG/PNG via Graphviz)
    tracecc run step_0/003_dce.ir           run a dumped graph on random inputs
    tracecc cache info|clear                the on-disk cache of compiled code
    tracecc bench                           the benchmark suite (when installed)
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DUMP_DIR = "tracecc_dump"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracecc", description="Inspect what tracecc.compile makes of your code: dump every "
        "stage of every compiled function, print a stage, draw a graph, run a dumped graph.",
        epilog="Environment: TRACECC_LOGS=graph,passes,fusion,code,guards,recompiles,cache,perf "
               "prints stages while a program runs; TRACECC_DUMP_DIR=dir writes them to files.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("dump", help="run a Python script with dumping on and list what it wrote",
                       description="Run SCRIPT (with its arguments) with TRACECC_DUMP_DIR set, "
                       "then list the files each compiled function wrote: one numbered file "
                       "per stage (000_traced.ir, 001_<pass>.ir, ...), guards.txt and repro.py.")
    d.add_argument("--dir", default=DEFAULT_DUMP_DIR, help=f"where to write (default {DEFAULT_DUMP_DIR})")
    d.add_argument("--logs", default=None, help="also print these kinds (TRACECC_LOGS), e.g. graph")
    d.add_argument("--asm", action="store_true",
                   help="also write the llvm backend's assembly (TRACECC_DUMP_ASM=1)")
    d.add_argument("script", help="the Python script to run")
    d.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    d.set_defaults(func=cmd_dump)

    s = sub.add_parser("show", help="print a stage from a dump directory",
                       description="Print one stage of every function dumped in DIR (a dump "
                       "directory or one function's directory), or a single file.")
    s.add_argument("path", metavar="DIR", help="dump directory, function directory or file")
    s.add_argument("--stage", default="traced",
                   help="stage name (traced, forward, backward, a pass name, ...), 'last', or "
                        "'list' to list the stages (default traced)")
    s.add_argument("--fn", default=None, help="only functions whose directory starts with this")
    s.set_defaults(func=cmd_show)

    g = sub.add_parser("graph", help="draw a graph (.ir file) as DOT, SVG or PNG",
                       description="Draw FILE (IR text, or a function's dump directory: its last "
                       "stage) as a graph: values as boxes, inputs as ellipses, fused kernels as "
                       "clusters. DOT is written directly; SVG and PNG need Graphviz's `dot`.")
    g.add_argument("file", metavar="FILE.ir")
    g.add_argument("-o", "--output", required=True, help="out.dot, out.svg or out.png")
    g.add_argument("--params", action="store_true", help="show node parameters")
    g.set_defaults(func=cmd_graph)

    r = sub.add_parser("run", help="run a dumped graph on random inputs",
                       description="Parse and verify FILE.ir, make random inputs of its types "
                       "(floats ~ N(0,1), integers in {0,1}), run it and summarise the results.")
    r.add_argument("file", metavar="FILE.ir")
    r.add_argument("--backend", default="interpreter", help="backend to run it with "
                   "(default interpreter; 'auto' picks the best available)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--repeat", type=int, default=1, help="run this many times and report the best time")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("cache", help="show or clear the on-disk cache of compiled code",
                       description="Compiled LLVM objects are cached on disk (TRACECC_CACHE_DIR, "
                       "else $XDG_CACHE_HOME/tracecc or ~/.cache/tracecc), keyed by the IR, the "
                       "CPU and the tracecc/llvmlite versions. `info` shows where and how much; "
                       "`clear` deletes every entry (only files the cache wrote).")
    c.add_argument("action", choices=["info", "clear"])
    c.set_defaults(func=cmd_cache)

    try:
        from .bench import cli as bench_cli
    except ImportError:
        bench_cli = None
    if bench_cli is not None:
        bench_cli.add_parser(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    args.argv = argv[1:]
    try:
        return args.func(args) or 0
    except Exception as e:  # a clear one-line message, not a traceback, for bad input files
        from .runtime.errors import TraceccError
        if isinstance(e, TraceccError) or isinstance(e, (OSError, ValueError)):
            print(f"tracecc {args.command}: {e}", file=sys.stderr)
            return 1
        raise


# ---------------------------------------------------------------- cache
def cmd_cache(args) -> int:
    from .codegen import cache

    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.info()['dir']}")
        return 0
    info = cache.info()
    print(f"dir      {info['dir']}\nenabled  {info['enabled']}\nentries  {info['entries']}\n"
          f"bytes    {info['bytes']} (limit {info['max_bytes']}: TRACECC_CACHE_MAX_MB; the least "
          f"recently used go first)")
    return 0


# ---------------------------------------------------------------- dump
def cmd_dump(args) -> int:
    out = Path(args.dir)
    before = set(out.rglob("*")) if out.exists() else set()
    os.environ["TRACECC_DUMP_DIR"] = str(out)
    if args.logs:
        os.environ["TRACECC_LOGS"] = args.logs
    if args.asm:
        os.environ["TRACECC_DUMP_ASM"] = "1"
    script = Path(args.script)
    if not script.exists():
        print(f"tracecc dump: no such script: {script}", file=sys.stderr)
        return 2
    argv, path = sys.argv, list(sys.path)
    sys.argv = [str(script)] + list(args.args)
    sys.path.insert(0, str(script.resolve().parent))
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.path[:] = argv, path
    new = sorted(p for p in (set(out.rglob("*")) if out.exists() else set()) - before if p.is_file())
    if not new:
        print(f"tracecc dump: {script} compiled nothing (no @tracecc.compile function ran)",
              file=sys.stderr)
        return code or 1
    by_dir: dict[Path, list[Path]] = {}
    for p in new:
        by_dir.setdefault(p.parent, []).append(p)
    print(f"\ntracecc dump: {len(by_dir)} compiled graph(s) written to {out}/", file=sys.stderr)
    for d, files in by_dir.items():
        print(f"  {d}/", file=sys.stderr)
        for f in files:
            print(f"    {f.name}", file=sys.stderr)
    print(f"next: tracecc show {out}   |   tracecc graph {files[0]} -o graph.svg", file=sys.stderr)
    return code


# ---------------------------------------------------------------- show
def _function_dirs(path: Path, prefix: str | None) -> list[Path]:
    if any(path.glob("*.ir")):
        dirs = [path]
    else:
        dirs = sorted(d for d in path.iterdir() if d.is_dir() and any(d.glob("*.ir")))
    if prefix:
        dirs = [d for d in dirs if d.name.startswith(prefix)]
    return dirs


def _stage_name(f: Path) -> str:
    stem = f.name.split(".", 1)[0]
    return stem.split("_", 1)[1] if "_" in stem and stem[:3].isdigit() else stem


def _pick(d: Path, stage: str) -> list[Path]:
    files = sorted(f for f in d.iterdir() if f.is_file() and f.name[:3].isdigit())
    if stage == "last":
        irs = [f for f in files if f.suffix == ".ir"]
        return irs[-1:]
    exact = [f for f in files if _stage_name(f) == stage]
    return exact or [f for f in files if stage in f.name]


def cmd_show(args) -> int:
    path = Path(args.path)
    if path.is_file():
        print(path.read_text(), end="")
        return 0
    if not path.is_dir():
        print(f"tracecc show: no such directory: {path}", file=sys.stderr)
        return 2
    dirs = _function_dirs(path, args.fn)
    if not dirs:
        print(f"tracecc show: no dumped graphs under {path} (expected NNN_stage.ir files)",
              file=sys.stderr)
        return 1
    status = 0
    for d in dirs:
        if args.stage == "list":
            print(f"{d}:")
            for f in sorted(d.iterdir()):
                print(f"  {f.name}  ({f.stat().st_size} bytes)")
            continue
        chosen = _pick(d, args.stage)
        if not chosen:
            stages = sorted({_stage_name(f) for f in d.iterdir() if f.name[:3].isdigit()})
            print(f"tracecc show: {d} has no stage {args.stage!r}; stages: {', '.join(stages)}",
                  file=sys.stderr)
            status = 1
            continue
        for f in chosen:
            print(f"==> {f} <==")
            print(f.read_text(), end="\n" if len(dirs) > 1 else "")
    return status


# ---------------------------------------------------------------- graph
def _load_graph(file: str):
    from .passes.parser import parse_graph
    path = Path(file)
    if path.is_dir():
        irs = sorted(path.glob("*.ir"))
        if not irs:
            raise ValueError(f"{path} holds no .ir files")
        path = irs[-1]
    return parse_graph(path.read_text()), path


def cmd_graph(args) -> int:
    from .passes.nx import to_dot
    graph, _ = _load_graph(args.file)
    dot_text = to_dot(graph, show_params=args.params)
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt == "dot" or fmt == "gv":
        out.write_text(dot_text)
        print(f"wrote {out} ({len(graph.nodes)} nodes)")
        return 0
    if fmt not in ("svg", "png", "pdf"):
        print(f"tracecc graph: unknown output format {out.suffix!r}; use .dot, .svg or .png",
              file=sys.stderr)
        return 2
    dot_file = out.with_suffix(".dot")
    dot_file.write_text(dot_text)
    exe = shutil.which("dot")
    if exe is None:
        print(f"tracecc graph: Graphviz's `dot` program is not installed, so {out} was not drawn; "
              f"wrote the DOT source to {dot_file} instead (install graphviz, e.g. "
              f"`apt install graphviz`, then run: dot -T{fmt} {dot_file} -o {out})", file=sys.stderr)
        return 1
    subprocess.run([exe, f"-T{fmt}", str(dot_file), "-o", str(out)], check=True)
    print(f"wrote {out} ({len(graph.nodes)} nodes) and {dot_file}")
    return 0


# ---------------------------------------------------------------- run
def cmd_run(args) -> int:
    import numpy as np

    from .codegen.backends import get_backend
    from .passes.interpret import random_inputs
    from .passes.pipeline import run_passes, select_passes
    from .passes.verify import verify
    graph, path = _load_graph(args.file)
    verify(graph)
    # a traced stage may hold composites and gradient requests: expand them first
    graph = run_passes(graph, select_passes([]))
    inputs = random_inputs(graph, args.seed)
    runner = get_backend(args.backend).compile(graph, None)
    best = float("inf")
    for _ in range(max(1, args.repeat)):
        fresh = [a.copy() for a in inputs]
        t0 = time.perf_counter()
        results = runner(fresh)
        best = min(best, time.perf_counter() - t0)
    print(f"{path}: graph {graph.name}, {len(graph.inputs)} inputs, {len(graph.nodes)} nodes, "
          f"backend {args.backend}, {best * 1e3:.3f} ms")
    labels = list(graph.output_labels) + [f"writes {a.name}" for a, _ in graph.writes]
    for v, label, a in zip(graph.roots(), labels, results):
        a = np.asarray(a)
        stats = ""
        if a.size and a.dtype.kind in "fiub":
            f = a.astype(np.float64)
            stats = f"  min {f.min():.4g}  mean {f.mean():.4g}  max {f.max():.4g}"
        print(f"  %{v.name}{' (' + label + ')' if label else ''}: {a.dtype}{list(a.shape)}{stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
