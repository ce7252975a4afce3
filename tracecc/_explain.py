"""tracecc.explain(fn, *args, **kwargs): what compile would make of one call.

It compiles a fresh copy of fn with fullgraph=False and calls it once (so the call's side
effects happen, exactly as a normal call's would), then reports the graphs, their node
counts, the reasons for any eager fallback, and the guards that decide reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExplainOutput:
    graphs: list = field(default_factory=list)  # final graphs (forward, backward for AOT)
    traced: list = field(default_factory=list)  # graphs as traced
    op_counts: dict = field(default_factory=dict)
    fallbacks: list = field(default_factory=list)  # why (parts of) the call ran eagerly
    guards: list = field(default_factory=list)
    result: object = None

    @property
    def graph_count(self) -> int:
        return len(self.graphs)

    @property
    def node_count(self) -> int:
        return sum(len(g.nodes) for g in self.graphs)

    def __str__(self) -> str:
        lines = [f"graphs: {self.graph_count}, nodes: {self.node_count}"]
        if self.op_counts:
            lines.append("ops: " + ", ".join(f"{k} {v}" for k, v in self.op_counts.items()))
        if self.fallbacks:
            lines.append("fallbacks:")
            lines += [f"  - {r}" for r in self.fallbacks]
        else:
            lines.append("fallbacks: none (the whole call is one compiled program)")
        if self.guards:
            lines.append("guards:")
            lines += [f"  - {g}" for g in self.guards]
        for g in self.graphs:
            lines.append("")
            lines.append(str(g).rstrip())
        return "\n".join(lines)


def explain(fn, *args, **kwargs) -> ExplainOutput:
    from ._compile import CompiledFunction, guard_lines

    base = fn._fn if isinstance(fn, CompiledFunction) else fn
    backend = fn.backend if isinstance(fn, CompiledFunction) else "auto"
    cf = CompiledFunction(base, backend=backend, fullgraph=False,
                          name=getattr(fn, "__name__", None))
    out = ExplainOutput()
    out.result = cf(*args, **kwargs)
    out.fallbacks = list(cf.fallbacks)
    for entry in cf._entries:
        out.graphs += entry.final
        out.traced.append(entry.graph)
        out.guards += guard_lines(entry)
    counts: dict = {}
    for g in out.graphs:
        for op, n in g.op_counts().items():
            counts[op] = counts.get(op, 0) + n
    out.op_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out
