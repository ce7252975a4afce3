"""The benchmark harness behind `tracecc bench` (see docs/benchmarks.md).

workloads.py: W1-W5 of shared/BENCHMARKS.md, once per framework; frameworks.py: the
variants (numpy, tracecc eager/compiled, torch, jax) behind one interface; harness.py:
interleaved timing and the correctness checks; report.py: Markdown, JSON, PNG; cli.py: the
command.
"""

from .harness import CaseResult, Result, run_case, run_suite  # noqa: F401
from .workloads import make_cases  # noqa: F401
