"""Rematerialisation on W5's GPT block: bytes the forward saves for the backward, peak
traced memory and step time, with and without remat (compile option remat=True).

W5 itself calls backward inside the compiled function (one joint graph, no split), so here
the block's forward is compiled alone and W5's loss (the mean of its output) is taken and
backwarded eagerly: the front end traces the backward too and splits it off
(passes/partition.py), which is where remat acts. Peak memory: tracemalloc does not see the
LLVM backend's arenas, so the report gives the memory plans' arena sizes next to the saved
bytes (what stays alive from the forward until the backward runs).

    .venv/bin/python benchmarks/remat_w5.py [--size cpu|tiny] [--backend llvm] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tracecc
from tracecc.bench.workloads import GPT_PARAMS, SIZES, _w5_data, tc_gpt_block
from tracecc.passes.remat import nbytes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="cpu", choices=("cpu", "tiny"))
    ap.add_argument("--backend", default="llvm")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    dims = SIZES[args.size]["W5"]
    d = _w5_data(dims)(np.random.default_rng(0))
    params = [tracecc.tensor(d[k], requires_grad=True) for k in GPT_PARAMS]
    T = dims["T"]
    future = tracecc.tensor(np.triu(np.ones((T, T), bool), 1))
    x = tracecc.tensor(d["x"])
    fn = tc_gpt_block(dims, params, future)
    variants = {r: tracecc.compile(fn, backend=args.backend, options={"remat": r}) for r in (False, True)}

    def step(f):
        for p in params:
            p.grad = None
        loss = f(x).mean()
        loss.backward()
        return [loss.detach().numpy()] + [p.grad.numpy() for p in params]

    want = step(fn)  # eager
    print(f"W5 GPT block {dims}, forward compiled ({args.backend}), backward of its graph eagerly")
    rows = {}
    for remat, f in variants.items():
        got = step(f)  # compiles
        err = max(float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30)) for g, w in zip(got, want))
        (entry,) = f._entries
        fwd, bwd = entry.final
        saved = fwd.outputs[entry.aot.n_fwd_outputs:]
        inputs = set(fwd.inputs)
        recomputed = sum(1 for n in bwd.nodes if n.region == "recompute")
        arenas = [getattr(getattr(r, "compiled", None), "memory", None)
                  for r in (entry.runner, entry.aot.backward_runner)]
        rows[remat] = {"saved": len(saved), "saved_bytes": sum(nbytes(v) for v in saved),
                       "intermediate_bytes": sum(nbytes(v) for v in saved if v not in inputs),
                       "recomputed_nodes": recomputed, "max_rel_err": err, "times": [],
                       "arenas": [a.arena_bytes if a is not None else 0 for a in arenas]}
    for _ in range(3):  # warm up both
        for f in variants.values():
            step(f)
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        for remat, f in variants.items():
            t0 = time.perf_counter()
            step(f)
            rows[remat]["times"].append(time.perf_counter() - t0)
    for remat, r in rows.items():
        t = sorted(r["times"])
        print(f"remat={'on ' if remat else 'off'}: saved {r['saved']} values, "
              f"{r['saved_bytes'] / 1e6:.2f} MB ({r['intermediate_bytes'] / 1e6:.2f} MB not forward "
              f"inputs); {r['recomputed_nodes']} nodes recomputed; arenas forward/backward "
              f"{r['arenas'][0] / 1e6:.1f}/{r['arenas'][1] / 1e6:.1f} MB; step median {statistics.median(t) * 1e3:.2f} ms "
              f"(min {t[0] * 1e3:.2f}); max rel err vs eager {r['max_rel_err']:.1e}")


if __name__ == "__main__":
    main()
