"""`tracecc bench` (mounted by tracecc/cli.py through add_parser/run) and `python -m tracecc.bench`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

# Read once, when numpy / torch load their BLAS and OpenMP runtimes.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_MARK = "TRACECC_BENCH_THREADS"

DESCRIPTION = ("Time the workloads W1-W5 (shared/BENCHMARKS.md) side by side in one process: numpy, "
               "tracecc eager, tracecc compiled (each backend), and torch eager / torch.compile / "
               "jax.jit where installed. Every result is checked against numpy first. Exit status 1 "
               "when any result is wrong (or on --timeout).")


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                   help="W1..W5, a case such as W4/b64, or a title such as softmax (default: all)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda uses the GPU sizes of BENCHMARKS.md")
    p.add_argument("--size", choices=("default", "tiny"), default="default",
                   help="tiny: seconds-long smoke run at small sizes (what the tests use)")
    p.add_argument("--repeat", type=int, default=20, help="timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--backend", action="append", dest="backends", metavar="NAME",
                   help="tracecc.compile backend to run (repeatable; default: every one it lists)")
    p.add_argument("--no-peers", action="store_true", help="skip torch and jax")
    p.add_argument("--threads", type=int, metavar="N",
                   help="run numpy's BLAS, torch (and with N=1 jax) on N threads; restarts the process "
                        "with OPENBLAS_NUM_THREADS etc. set (default: as they start)")
    p.add_argument("--timeout", type=float, default=900, metavar="S",
                   help="when one build + first call, or one round, takes over S seconds (a hang), "
                        "print every thread's stack and exit with status 1 (default 900; 0: never)")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    p.add_argument("--json", metavar="PATH", help="write every number, samples included, as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of speedups (needs matplotlib)")
    p.add_argument("--markdown", metavar="PATH", help="also write the Markdown report to PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display on stderr")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """For tracecc/cli.py: `add_parser(sub)` then dispatch `bench` to `run(args)`."""
    p = subparsers.add_parser("bench", help="benchmark eager vs compiled vs peers", description=DESCRIPTION)
    configure(p)
    p.set_defaults(func=run)
    return p


def _notes() -> list[str]:
    from .workloads import _tracecc_function

    notes = ["torch's W5 uses F.scaled_dot_product_attention(is_causal=True), as a torch user writes it; "
             "jax runs with jax_default_matmul_precision='highest'."]
    composed = [n for n in ("gelu", "layer_norm", "cross_entropy") if _tracecc_function(n) is None]
    if composed:
        notes.append(f"tracecc variants compose {', '.join(composed)} from tracecc ops in the bench "
                     f"(tracecc.nn.functional does not provide them yet).")
    return notes


def thread_environment(n: int) -> dict:
    """The environment variables that pin every library to n threads from its start."""
    env = {name: str(n) for name in THREAD_VARIABLES}
    env[_MARK] = str(n)
    if n == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def _restart_with_threads(n: int, argv: list) -> None:
    """OpenBLAS reads its thread count when numpy loads, and lowering it later (ctypes) still
    leaves its waits on worker threads, which cost whole scheduler ticks on a busy machine:
    so start again with the variables set. Returns only when they already are."""
    if os.environ.get(_MARK) == str(n):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tracecc.bench", *argv],
              dict(os.environ, **thread_environment(n)))


def run(args) -> int:
    from . import report
    from .frameworks import threads_in_use
    from .harness import Progress, run_suite

    if args.repeat < 1 or args.warmup < 0:
        print("tracecc bench: --repeat must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print("tracecc bench: --threads must be >= 1", file=sys.stderr)
            return 2
        argv = getattr(args, "argv", None)
        if argv is None:  # mounted as `tracecc bench ...`
            argv = sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else sys.argv[1:]
        _restart_with_threads(args.threads, argv)
    progress = Progress(enabled=not args.quiet)
    try:
        results = run_suite(args.workloads, device=args.device, size=args.size, repeat=args.repeat,
                            warmup=args.warmup, seed=args.seed, backends=args.backends,
                            peers=not args.no_peers, progress=progress, measure_memory=not args.no_memory,
                            threads=args.threads, timeout=args.timeout or None)
    except ValueError as e:
        progress.done()
        print(f"tracecc bench: {e}", file=sys.stderr)
        return 2
    progress.done()
    meta = {"machine": report.machine_info(args.device), "size": args.size, "repeat": args.repeat,
            "warmup": args.warmup, "seed": args.seed, "memory_method": report.MEMORY_METHOD,
            "threads": threads_in_use(not args.no_peers),
            "command": "tracecc bench " + shlex.join(getattr(args, "argv", []) or []), "notes": _notes()}
    text = report.markdown(results, meta)
    sys.stdout.write(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        report.write_json(args.json, results, meta)
    if args.plot:
        report.plot(args.plot, results, meta)
    wrong = [f"{cr.id} {r.variant}" for cr in results for r in cr.results if r.status == "FAIL"]
    if wrong:
        print(f"tracecc bench: wrong results: {', '.join(wrong)}", file=sys.stderr)
    return 1 if wrong else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = configure(argparse.ArgumentParser(prog="tracecc bench", description=DESCRIPTION))
    args = parser.parse_args(argv)
    args.argv = argv
    return run(args)
