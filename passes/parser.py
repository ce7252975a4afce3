"""Reads the text printed by printer.py back into a Graph (print -> parse -> print is exact).

Blank lines and `#` comment lines inside the body are ignored, so hand-written graphs in
tests can be annotated; comment lines before `graph` are kept as the graph's notes.
Errors are IRParseError (TC120) naming the line.
"""

from __future__ import annotations

import re

from ..runtime.device import Device, cpu
from ..runtime.dtypes import get_dtype
from ..runtime.errors import IRParseError
from ..runtime.registry import TensorType
from .ir import ROLES, Graph, KernelGroup, Value
from .printer import LONG_DTYPES

_NAME = r"[A-Za-z0-9_.]+"
_TYPE = re.compile(r"^(?P<dt>[a-z0-9]+)\[(?P<shape>[0-9, ]*)\](?:@(?P<dev>[a-z]+(?::\d+)?))?$")
_NODE = re.compile(rf"^%(?P<out>{_NAME})\s*=\s*(?P<op>[A-Za-z_][A-Za-z0-9_]*)\((?P<args>.*)\)\s*:\s*"
                   rf"(?P<type>\S+)(?:\s+#\s*(?P<comment>.*))?$")
_KERNEL = re.compile(r"^kernel\s+(?P<name>\S+)\s+\[(?P<info>[^\]]*)\]\s*=\s*\{(?P<members>[^}]*)\}"
                     r"(?:\s+#\s*why:\s*(?P<why>.*))?$")
_REGION = re.compile(r"^(?P<loc>.*?)\s*\((?P<region>[A-Za-z0-9_.#:-]+)\)$")
_INPUT = re.compile(rf"^%(?P<name>{_NAME})\s*:\s*(?P<type>\S+)(?:\s+(?P<role>[a-z_]+))?$")


class _Error(Exception):
    pass


def parse_type(text: str) -> tuple[TensorType, Device]:
    m = _TYPE.match(text.strip())
    if not m or m["dt"] not in LONG_DTYPES:
        raise _Error(f"bad type {text!r} (expected e.g. f32[64,128] or i64[])")
    shape = tuple(int(d) for d in m["shape"].replace(" ", "").split(",") if d)
    device = Device(m["dev"]) if m["dev"] else cpu
    return TensorType(shape, get_dtype(LONG_DTYPES[m["dt"]])), device


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    tail = text[start:]
    if tail.strip() or parts:
        parts.append(tail)
    return [p.strip() for p in parts]


# ---------------------------------------------------------------- literals
_TOKEN = re.compile(r"\s*(?:(?P<num>-?(?:inf|nan|\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?))"
                    r"|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[()\[\],]))")


def parse_literal(text: str):
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _Error(f"bad literal {text!r} at {text[pos:]!r}")
        tokens.append(m)
        pos = m.end()
    value, i = _literal(tokens, 0, text)
    if i != len(tokens):
        raise _Error(f"bad literal {text!r}: unexpected {tokens[i].group().strip()!r}")
    return value


def _literal(tokens, i, text):
    if i >= len(tokens):
        raise _Error(f"bad literal {text!r}: ended early")
    tok = tokens[i]
    if tok["num"] is not None:
        s = tok["num"]
        if s.lstrip("-") in ("inf", "nan"):
            return float(s), i + 1
        return (float(s) if any(c in s for c in ".e") else int(s)), i + 1
    if tok["str"] is not None:
        import ast
        return ast.literal_eval(tok["str"]), i + 1
    if tok["word"] is not None:
        w = tok["word"]
        if w in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[w], i + 1
        if w in LONG_DTYPES:
            return get_dtype(LONG_DTYPES[w]), i + 1
        raise _Error(f"bad literal {text!r}: unknown word {w!r}")
    p = tok["punct"]
    if p in "([":
        close = ")" if p == "(" else "]"
        items, i, trailing_comma = [], i + 1, False
        while True:
            if i < len(tokens) and tokens[i]["punct"] == close:
                i += 1
                break
            item, i = _literal(tokens, i, text)
            items.append(item)
            trailing_comma = False
            if i < len(tokens) and tokens[i]["punct"] == ",":
                i += 1
                trailing_comma = True
            elif not (i < len(tokens) and tokens[i]["punct"] == close):
                raise _Error(f"bad literal {text!r}: expected ',' or {close!r}")
        if p == "(" and len(items) == 1 and not trailing_comma:
            return items[0], i  # parenthesised expression, not a tuple
        return (tuple(items) if p == "(" else items), i
    raise _Error(f"bad literal {text!r}: unexpected {p!r}")


# ---------------------------------------------------------------- graphs
def parse_graph(text: str) -> Graph:
    """Parse one graph. Raises IRParseError with the line number and text."""
    lines = text.splitlines()
    notes, i = [], 0
    while i < len(lines) and not lines[i].strip().startswith("graph "):
        s = lines[i].strip()
        if s.startswith("#"):
            notes.append(s[2:] if s.startswith("# ") else s[1:])
        elif s:
            _fail(i, lines[i], "expected `graph name(...) {`")
        i += 1
    if i == len(lines):
        raise IRParseError("no `graph name(...) {` line found", hint="is this a tracecc IR file?",
                           location="<ir text>")
    # the header may span several lines: join until the line ending in "{"
    start = i
    header = lines[i].strip()
    while not header.endswith("{"):
        i += 1
        if i == len(lines):
            _fail(start, lines[start], "graph header never ends with `{`")
        header += " " + lines[i].strip()
    m = re.match(rf"^graph\s+(?P<name>[A-Za-z0-9_.]+)\s*\((?P<inputs>.*)\)\s*\{{$", header)
    if not m:
        _fail(start, lines[start], "expected `graph name(%x: f32[...], ...) {`")
    g = Graph(m["name"])
    g.notes = notes
    env: dict[str, Value] = {}
    for item in split_top_level(m["inputs"]):
        if not item:
            continue
        im = _INPUT.match(item)
        if not im:
            _fail(start, lines[start], f"bad input {item!r} (expected `%name: f32[2,3] [role]`)")
        if im["role"] and im["role"] not in ROLES:
            _fail(start, lines[start], f"unknown role {im['role']!r}; known: {', '.join(ROLES)}")
        try:
            type_, device = parse_type(im["type"])
        except _Error as e:
            _fail(start, lines[start], str(e))
        if im["name"] in env:
            _fail(start, lines[start], f"input %{im['name']} defined twice")
        env[im["name"]] = g.add_input(type_, im["name"], im["role"] or "arg", device)
    i += 1
    returned = False
    for j in range(i, len(lines)):
        s = lines[j].strip()
        if not s or (s.startswith("#") and not returned):
            continue
        if s == "}":
            if not returned:
                _fail(j, lines[j], "graph ends without a `return (...)` line")
            rest = [x for x in lines[j + 1:] if x.strip()]
            if rest:
                _fail(j + 1, rest[0], "text after the end of the graph")
            break
        if returned:
            continue  # the rest of a multi-line return, already parsed
        try:
            if s.startswith("return"):
                # a long return spans lines up to the closing brace of the graph
                end = next((k for k in range(j, len(lines)) if lines[k].strip() == "}"), len(lines))
                _parse_return(g, " ".join(x.strip() for x in lines[j:end]), env)
                returned = True
            elif s.startswith("kernel "):
                _parse_kernel(g, s, env)
            else:
                _parse_node(g, s, env)
        except _Error as e:
            _fail(j, lines[j], str(e))
    else:
        _fail(len(lines) - 1, lines[-1] if lines else "", "missing closing `}`")
    g._adopt_names()
    return g


def _use(env, name, what):
    if name not in env:
        raise _Error(f"{what} %{name} is not defined before this line")
    return env[name]


def _parse_node(g: Graph, s: str, env) -> None:
    m = _NODE.match(s)
    if not m:
        raise _Error("expected `%name = op(%a, key=value, ...) : f32[...]  # file:line`")
    if m["out"] in env:
        raise _Error(f"%{m['out']} is defined twice (values are SSA)")
    inputs, params = [], {}
    for arg in split_top_level(m["args"]):
        if arg.startswith("%"):
            if params:
                raise _Error("value arguments must come before key=value params")
            inputs.append(_use(env, arg[1:], "argument"))
        else:
            key, eq, lit = arg.partition("=")
            if not eq or not key.strip().isidentifier():
                raise _Error(f"bad argument {arg!r} (expected %value or key=literal)")
            params[key.strip()] = parse_literal(lit)
    type_, device = parse_type(m["type"])
    loc, region = (m["comment"] or "").strip(), None
    rm = _REGION.match(loc)
    if rm:
        loc, region = rm["loc"], rm["region"]
    elif loc.startswith("(") and loc.endswith(")"):
        loc, region = "", loc[1:-1]
    out = g.add_node(m["op"], inputs, params, type_, loc, region, name=m["out"], device=device)
    if out.name != m["out"]:
        raise _Error(f"%{m['out']} clashes with an existing name")
    env[out.name] = out


def _parse_kernel(g: Graph, s: str, env) -> None:
    m = _KERNEL.match(s)
    if not m:
        raise _Error("expected `kernel name [info] = {op %v, ...}  # why: ...`")
    members = []
    for item in split_top_level(m["members"]):
        parts = item.split()
        if len(parts) != 2 or not parts[1].startswith("%"):
            raise _Error(f"bad kernel member {item!r} (expected `op %value`)")
        members.append(_use(env, parts[1][1:], "kernel member"))
    g.kernels.append(KernelGroup(m["name"], m["info"], members, (m["why"] or "").strip()))


def _parse_return(g: Graph, s: str, env) -> None:
    m = re.match(r"^return\s*\((?P<outs>.*?)\)\s*(?:;\s*writes\s+(?P<writes>.*))?$", s)
    if not m:
        raise _Error("expected `return (%a, label=%b) ; writes %x <- %y, ...`")
    values, labels = [], []
    for item in filter(None, split_top_level(m["outs"])):
        label, eq, ref = item.rpartition("=")
        ref = ref.strip()
        if not ref.startswith("%"):
            raise _Error(f"bad output {item!r}")
        values.append(_use(env, ref[1:], "output"))
        labels.append(label.strip() if eq else None)
    g.set_outputs(values, labels)
    if m["writes"]:
        for item in filter(None, split_top_level(m["writes"])):
            target, arrow, new = item.partition("<-")
            target, new = target.strip(), new.strip()
            if not arrow or not target.startswith("%") or not new.startswith("%"):
                raise _Error(f"bad write {item!r} (expected `%input <- %value`)")
            g.add_write(_use(env, target[1:], "write target"), _use(env, new[1:], "written value"))


def _fail(index: int, line: str, message: str):
    raise IRParseError(f"line {index + 1}: {message}\n    {line.strip()}",
                       hint="see docs/ir.md for the text format", location=f"<ir text>:{index + 1}")
