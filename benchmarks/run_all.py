"""Run the whole benchmark suite and keep its outputs: Markdown, JSON and the PNG chart.

    .venv/bin/python benchmarks/run_all.py                  # CPU sizes, into benchmarks/results/
    .venv/bin/python benchmarks/run_all.py --device cuda    # GPU sizes (BENCHMARKS.md)
    .venv/bin/python benchmarks/run_all.py --repeat 5 W1 W3 # any `tracecc bench` arguments

The harness itself is tracecc.bench (also `tracecc bench` and `python -m tracecc.bench`).
"""

import argparse
import os
import sys

from tracecc.bench.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                        help="folder for bench-<device>.{md,json,png} (default benchmarks/results)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args, rest = parser.parse_known_args()
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"bench-{args.device}")
    sys.exit(main(["--device", args.device, "--json", stem + ".json", "--markdown", stem + ".md",
                   "--plot", stem + ".png", *rest]))
