"""repro.py for a dump directory: rebuilds a graph from its IR text and runs it."""

from __future__ import annotations

_TEMPLATE = '''"""Repro for compiled function {name}: rebuilds its graph from the IR text below and runs
it on random inputs of the same shapes through the reference interpreter.

    python repro.py                      # interpreter only
    python repro.py --backend llvm       # also run a backend and compare with the interpreter
"""
import argparse

import numpy as np

from tracecc.passes.interpret import interpret, random_inputs
from tracecc.passes.parser import parse_graph
from tracecc.passes.verify import verify

IR = {ir!r}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="a registered backend to compare")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    graph = verify(parse_graph(IR))
    inputs = random_inputs(graph, args.seed)
    expected = interpret(graph, [a.copy() for a in inputs])
    for v, a in zip(graph.roots(), expected):
        print(f"%{{v.name}}: {{a.dtype}}{{list(a.shape)}}", "mean", float(np.mean(a)) if a.size else 0)
    if args.backend:
        from tracecc.codegen.backends import get_backend
        runner = get_backend(args.backend).compile(graph, None)
        got = runner([a.copy() for a in inputs])
        for v, e, g in zip(graph.roots(), expected, got):
            ok = np.allclose(np.asarray(g, np.float64), np.asarray(e, np.float64), rtol=1e-4,
                             atol=1e-5, equal_nan=True)
            print(f"%{{v.name}}: {{'ok' if ok else 'MISMATCH'}}")


if __name__ == "__main__":
    main()
'''


def repro_script(graph, name: str) -> str:
    return _TEMPLATE.format(name=name, ir=str(graph))
