"""The IR as text: stable, readable, diffable, and parsed back exactly by parser.py.

    # pass traced: 1.2 ms
    graph step(%x: f32[64,784], %fc1.weight: f32[128,784] param) {
      %0 = permute(%fc1.weight, dims=(1, 0)) : f32[784,128]  # mlp.py:12
      %1 = matmul(%x, %0) : f32[64,128]  # mlp.py:12
      kernel k0 [matmul, 8192 elems] = {permute %0, matmul %1}  # why: epilogue
      return (loss=%1) ; writes %fc1.weight <- %9
    }

Inputs show their role unless it is `arg`; a signature longer than one line is printed one
input per line. Nodes end with `# file:line`, and `(region)` when recorded in one (backward).
"""

from __future__ import annotations

import math

from ..runtime.dtypes import DType
from .ir import Graph, KernelGroup, Node, Value

SHORT_DTYPES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64",
                "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "uint8": "u8",
                "bool": "b8"}
LONG_DTYPES = {v: k for k, v in SHORT_DTYPES.items()}

_MAX_SIGNATURE = 100  # characters; longer signatures go one input per line


def format_type(value: Value) -> str:
    t = value.type
    text = f"{SHORT_DTYPES[t.dtype.name]}[{','.join(map(str, t.shape))}]"
    if value.device.type != "cpu":
        text += f"@{value.device}"
    return text


def format_literal(x) -> str:
    """Params as literals the parser reads back: numbers, bools, None, strings, dtypes,
    tuples and lists of those."""
    if isinstance(x, DType):
        return SHORT_DTYPES[x.name]
    if isinstance(x, bool) or x is None:
        return repr(x)
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy scalars
        x = x.item()
    if isinstance(x, bool):
        return repr(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return repr(x)
    if isinstance(x, str):
        return repr(x)
    if isinstance(x, tuple):
        inner = ", ".join(format_literal(e) for e in x)
        return f"({inner},)" if len(x) == 1 else f"({inner})"
    if isinstance(x, list):
        return "[" + ", ".join(format_literal(e) for e in x) + "]"
    raise TypeError(f"cannot print parameter value {x!r} of type {type(x).__name__}")


def format_input(v: Value) -> str:
    text = f"%{v.name}: {format_type(v)}"
    return text if v.role in (None, "arg") else f"{text} {v.role}"


def format_node(n: Node) -> str:
    args = [f"%{v.name}" for v in n.inputs]
    args += [f"{k}={format_literal(v)}" for k, v in n.params.items()]
    text = f"%{n.out.name} = {n.op}({', '.join(args)}) : {format_type(n.out)}"
    comment = n.loc
    if n.region:
        comment = f"{comment} ({n.region})" if comment else f"({n.region})"
    return f"{text}  # {comment}" if comment else text


def format_kernel(k: KernelGroup, producers: dict) -> str:
    members = ", ".join(f"{producers[m].op if m in producers else 'input'} %{m.name}"
                        for m in k.members)
    text = f"kernel {k.name} [{k.info}] = {{{members}}}"
    return f"{text}  # why: {k.why}" if k.why else text


def format_return(g: Graph) -> list[str]:
    """`return (...) ; writes ...` on one line, or one item per line when that is too long."""
    outs = [f"{label}=%{v.name}" if label else f"%{v.name}"
            for v, label in zip(g.outputs, g.output_labels or [None] * len(g.outputs))]
    writes = [f"%{a.name} <- %{b.name}" for a, b in g.writes]
    line = f"return ({', '.join(outs)})" + (" ; writes " + ", ".join(writes) if writes else "")
    if len(line) <= _MAX_SIGNATURE:
        return [line]
    lines = ["return (", *(f"    {o}," for o in outs), ")" + (" ; writes" if writes else "")]
    lines += [f"    {w}," for w in writes]
    return lines


def format_graph(g: Graph) -> str:
    lines = [f"# {note}" for note in g.notes]
    inputs = [format_input(v) for v in g.inputs]
    header = f"graph {g.name}({', '.join(inputs)}) {{"
    if len(header) <= _MAX_SIGNATURE:
        lines.append(header)
    else:
        lines.append(f"graph {g.name}(")
        lines.extend(f"    {text}," for text in inputs)
        lines.append(") {")
    producers = {n.out: n for n in g.nodes}
    for n in g.nodes:
        lines.append("  " + format_node(n))
    for k in g.kernels:
        lines.append("  " + format_kernel(k, producers))
    lines.extend("  " + line for line in format_return(g))
    lines.append("}")
    return "\n".join(lines) + "\n"
