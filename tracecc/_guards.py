"""Guards: what a compiled graph assumed, and the cheap check that it still holds.

A call's *key* covers its arguments (tensor shapes, dtypes, requires_grad, aliasing;
Python scalars and strings by value; other objects by identity) and the grad mode. An
entry found by key then checks what the trace read from outside its arguments: lifted
tensors (same storage, shape, dtype, requires_grad), whether each relevant `.grad` is
None, module training flags, and optimizer hyperparameters and scalar state.

The *world* is what a pre-scan of the function finds before tracing: modules, optimizers
and tensors reachable from its arguments, `self`, closure and the globals it names. It
gives lifted inputs readable names (`fc1.weight`, `fc1.weight.grad`,
`fc1.weight.exp_avg`) and says where each compiled call fetches them.
"""

from __future__ import annotations

import types

import numpy as np

from ._tensor import Tensor
from .runtime.cuda import CudaArray
from .runtime.device import Device
from .runtime.dtypes import DType

_SCALARS = (int, float, bool, str, type(None), complex, bytes)


# ---------------------------------------------------------------- pytrees
class Spec:
    """The structure of a (nested) value with its tensors taken out."""

    __slots__ = ("kind", "data", "children")

    def __init__(self, kind, data=None, children=()):
        self.kind = kind  # "tensor" | "const" | "list" | "tuple" | "namedtuple" | "dict"
        self.data = data
        self.children = children

    def build(self, leaves):
        it = iter(leaves)
        return self._build(it)

    def _build(self, it):
        k = self.kind
        if k == "tensor":
            return next(it)
        if k == "const":
            return self.data
        items = [c._build(it) for c in self.children]
        if k == "list":
            return items
        if k == "tuple":
            return tuple(items)
        if k == "namedtuple":
            return self.data(*items)
        return dict(zip(self.data, items))


def flatten(tree, leaves: list, path: str = "", paths: list | None = None) -> Spec:
    if isinstance(tree, Tensor):
        leaves.append(tree)
        if paths is not None:
            paths.append(path)
        return Spec("tensor")
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        return Spec("namedtuple", type(tree),
                    [flatten(v, leaves, _join(path, f), paths) for f, v in zip(tree._fields, tree)])
    if isinstance(tree, (list, tuple)):
        return Spec(type(tree).__name__ if type(tree) in (list, tuple) else "tuple", None,
                    [flatten(v, leaves, _join(path, str(i)), paths) for i, v in enumerate(tree)])
    if isinstance(tree, dict):
        keys = list(tree)
        return Spec("dict", keys, [flatten(tree[k], leaves, _join(path, str(k)), paths)
                                   for k in keys])
    return Spec("const", tree)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


# ---------------------------------------------------------------- argument keys
def arg_key(args, kwargs, grad_enabled: bool):
    """(key, tensors, objects): a hashable key of everything a trace specialises on in the
    arguments, the argument tensors in order, and the non-scalar objects (held by entries
    so identity keys stay valid)."""
    parts = [grad_enabled]
    tensors: list = []
    objects: list = []
    for a in args:
        if type(a) is Tensor:  # the common case, inline: this runs on every compiled call
            tensors.append(a)
            parts.append((a._data.shape, a._dtype.name, a.requires_grad, type(a._data)))
        else:
            _key(a, parts, tensors, objects)
    if kwargs:
        for k in sorted(kwargs):
            parts.append(k)
            _key(kwargs[k], parts, tensors, objects)
    n = len(tensors)
    if n > 1 and (tensors[0]._data is tensors[1]._data if n == 2
                  else len({id(t._data) for t in tensors}) != n):
        ids = [id(t._data) for t in tensors]
        parts.append(("alias", tuple(ids.index(i) for i in ids)))
    return tuple(parts), tensors, objects


def _key(x, parts, tensors, objects):
    if isinstance(x, Tensor):
        tensors.append(x)
        parts.append((x._data.shape, x._dtype.name, x.requires_grad, type(x._data)))  # cpu/cuda
    elif isinstance(x, _SCALARS):
        parts.append((type(x), x if x == x else "nan"))
    elif isinstance(x, (list, tuple)):
        parts.append((type(x), len(x)))
        for v in x:
            _key(v, parts, tensors, objects)
    elif isinstance(x, dict):
        parts.append((dict, tuple(x)))
        for v in x.values():
            _key(v, parts, tensors, objects)
    elif isinstance(x, (DType, Device)):
        parts.append(str(x))
    else:
        objects.append(x)
        parts.append((type(x), id(x)))


def describe_args(args, kwargs, names: list[str], grad_enabled: bool) -> list[tuple[str, object]]:
    """The key as (field, value) pairs, to say which one changed on a recompile."""
    out = [("grad mode", "enabled" if grad_enabled else "disabled")]
    items = list(zip(names, args)) + sorted(kwargs.items())
    for name, value in items:
        _describe(name, value, out)
    return out


def _describe(name, x, out):
    if isinstance(x, Tensor):
        out.append((f"{name}.shape", list(x.shape)))
        out.append((f"{name}.dtype", x.dtype))
        out.append((f"{name}.requires_grad", x.requires_grad))
    elif isinstance(x, (list, tuple)) and not isinstance(x, str):
        out.append((f"{name} (length)", len(x)))
        for i, v in enumerate(x):
            _describe(f"{name}[{i}]", v, out)
    elif isinstance(x, dict):
        out.append((f"{name} (keys)", list(x)))
        for k, v in x.items():
            _describe(f"{name}[{k!r}]", v, out)
    elif isinstance(x, _SCALARS + (DType, Device)):
        out.append((name, x))
    else:
        out.append((f"{name} (identity)", f"{type(x).__name__} at {id(x):#x}"))


def first_difference(old: list, new: list) -> str:
    old_d = dict(old)
    for field, value in new:
        if field not in old_d:
            return f"{field} is new ({value!r})"
        if old_d[field] != value:
            if field.endswith(" (identity)"):
                return f"{field[:-11]} is another object than when traced"
            return f"{field} changed: {old_d[field]!r} -> {value!r}"
    for field, value in old:
        if field not in dict(new):
            return f"{field} is gone"
    return "argument aliasing changed"


# ---------------------------------------------------------------- the world around a function
def _is_module(x) -> bool:
    return hasattr(x, "named_parameters") and hasattr(x, "training") and hasattr(x, "named_modules")


def _is_optimizer(x) -> bool:
    return isinstance(getattr(x, "param_groups", None), list) and hasattr(x, "state")


class World:
    """Tensors, modules and optimizers a function can reach, with names, roles, sources."""

    def __init__(self):
        self.by_array: dict[int, tuple[str, str, tuple]] = {}
        self.tensors: dict[int, Tensor] = {}  # id -> tensor, every tensor found
        self.tensor_names: dict[int, str] = {}
        self.modules: list = []
        self.optimizers: list = []
        self.roots: list = []  # (name, dict or cell, key, object) for globals/closure variables
        self._seen: set[int] = set()
        self._names: set[str] = set()
        self._anon = 0

    def _name(self, name: str) -> str:
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in name) or "t"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def add_tensor(self, t: Tensor, name: str, role: str, source=None) -> None:
        if id(t) in self.tensors or not isinstance(t._data, (np.ndarray, CudaArray)):
            return
        self.tensors[id(t)] = t
        if id(t._data) not in self.by_array:
            name = self._name(name)
            self.tensor_names[id(t)] = name
            self.by_array[id(t._data)] = (name, role, source or ("tensor", t))
        else:
            self.tensor_names[id(t)] = self.by_array[id(t._data)][0]

    def describe(self, arr, t: Tensor):
        """(name, role, source) of a storage the trace lifts."""
        hit = self.by_array.get(id(arr))
        if hit is not None:
            return hit
        # not found by the scan: a tensor read from elsewhere, or made inside the function
        # from data (a constant). Which one is decided after the trace (_capture._sources).
        self._anon += 1
        return self._name(f"t{self._anon - 1}"), "tensor", ("tensor", None)

    def add_grads(self) -> None:
        """Name the current .grad of every tensor found: a trace may read it."""
        for t in list(self.tensors.values()):
            g = t.grad
            if isinstance(g, Tensor) and id(g._data) not in self.by_array:
                name = self._name(f"{self.tensor_names.get(id(t), 'tensor')}.grad")
                self.by_array[id(g._data)] = (name, "grad", ("grad", t))

    # ------------------------------------------------------------ scanning
    def scan(self, name: str, obj, depth: int = 0) -> None:
        if id(obj) in self._seen or depth > 3 or isinstance(obj, _SCALARS):
            return
        self._seen.add(id(obj))
        if isinstance(obj, Tensor):
            self.add_tensor(obj, name, "tensor")
        elif _is_module(obj):
            prefix = "" if not self.modules else f"{name}."
            for path, m in obj.named_modules():
                if all(m is not x for _, x in self.modules):
                    self.modules.append((prefix + path if path else (name or "model"), m))
            def full(path):  # "0.weight" reads like a field of %0: say "model.0.weight"
                path = prefix + path
                return f"{name or 'model'}.{path}" if path[:1].isdigit() else path

            for pname, p in obj.named_parameters():
                self.add_tensor(p, full(pname), "param")
            for bname, b in obj.named_buffers():
                self.add_tensor(b, full(bname), "buffer")
        elif _is_optimizer(obj):
            self.optimizers.append((name or "optimizer", obj))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj[:64]):
                self.scan(f"{name}.{i}", v, depth + 1)
        elif isinstance(obj, dict):
            for i, (k, v) in enumerate(obj.items()):
                if i == 64:
                    break
                self.scan(f"{name}.{k}", v, depth + 1)
        elif isinstance(obj, (types.FunctionType, types.MethodType)):
            self.scan_function(obj, depth + 1)
        elif (depth <= 1 and hasattr(obj, "__dict__") and not isinstance(obj, type)
              and not isinstance(obj, types.ModuleType)):
            for k, v in list(vars(obj).items())[:64]:
                if not k.startswith("__"):
                    self.scan(f"{name}.{k}" if name else k, v, depth + 1)

    def scan_function(self, fn, depth: int = 0) -> None:
        if isinstance(fn, types.MethodType):
            self.scan("self", fn.__self__, depth)
            fn = fn.__func__
        code = getattr(fn, "__code__", None)
        if code is None or depth > 3:
            return
        for var, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # empty cell
                continue
            self._root(var, cell, None, value)
            self.scan(var, value, depth)
        # `def step(x, model=model, opt=opt)` binds state as default arguments
        defaults = fn.__defaults__ or ()
        names = code.co_varnames[code.co_argcount - len(defaults):code.co_argcount]
        for var, value in [*zip(names, defaults), *(fn.__kwdefaults__ or {}).items()]:
            self.scan(var, value, depth)
        g = getattr(fn, "__globals__", {})
        for var in _global_names(code):
            if var in g and not isinstance(g[var], (types.ModuleType, type)):
                self._root(var, g, var, g[var])
                self.scan(var, g[var], depth)

    def _root(self, name, holder, key, value) -> None:
        """A closure variable or global naming a tensor, module or optimizer: a compiled call
        checks it still names the same object (rebinding it means new state to lift)."""
        if isinstance(value, Tensor) or _is_module(value) or _is_optimizer(value):
            if all(value is not r[3] for r in self.roots):
                self.roots.append((name, holder, key, value))

    def finish(self) -> None:
        """Optimizers last, so their parameters already have module names."""
        for oname, opt in self.optimizers:
            for gi, group in enumerate(opt.param_groups):
                for pi, p in enumerate(group.get("params", ())):
                    if isinstance(p, Tensor):
                        self.add_tensor(p, f"{oname}.param{gi}_{pi}", "param")
            for p, state in list(opt.state.items()):
                pname = self.tensor_names.get(id(p), f"{oname}.state")
                if isinstance(state, dict):
                    for k, v in state.items():
                        if isinstance(v, Tensor):
                            self.add_tensor(v, f"{pname}.{k}", "state")
        self.add_grads()

    # ------------------------------------------------------------ guards on Python state
    def python_state(self):
        return python_state(self.modules, self.optimizers, self.roots)


def _state_items(modules, optimizers, roots, lifted=frozenset()):
    """(field, value) pairs a trace baked in: module training flags and which parameter and
    buffer objects they hold; optimizer hyperparameters, parameter lists, scalar state and
    state tensor objects; whether the globals/closure variables still name the same objects.
    `lifted`: (id(optimizer), group index, key) of hyperparameters that are graph inputs
    (the lr): a compiled call fetches them, so they are not guarded."""
    for path, m in modules:
        yield f"{path}.training", m.training
        yield f"{path} parameters (identity)", tuple(map(id, getattr(m, "_parameters", {}).values()))
        yield f"{path} buffers (identity)", tuple(map(id, getattr(m, "_buffers", {}).values()))
    for oname, opt in optimizers:
        for gi, group in enumerate(opt.param_groups):
            for k, v in group.items():
                if k == "params":
                    yield f"{oname}.param_groups[{gi}] params (identity)", tuple(map(id, v))
                elif isinstance(v, _SCALARS + (tuple,)) and (id(opt), gi, k) not in lifted:
                    yield f"{oname}.param_groups[{gi}][{k!r}]", v
        yield f"{oname}.state (entries)", len(opt.state)
        for si, state in enumerate(opt.state.values()):
            if isinstance(state, dict):
                for k, v in state.items():
                    if isinstance(v, Tensor):
                        yield f"{oname}.state[{si}][{k!r}] (identity)", id(v)
                    elif isinstance(v, _SCALARS):
                        yield f"{oname}.state[{si}][{k!r}]", v
    for name, holder, key, obj in roots:
        current = holder.get(key) if isinstance(holder, dict) else _cell(holder)
        yield f"{name} (identity)", current is obj


def _cell(cell):
    try:
        return cell.cell_contents
    except ValueError:
        return None


def python_state(modules, optimizers, roots=(), lifted=frozenset()) -> tuple:
    """The values of _state_items, without the names: this runs on every compiled call."""
    vals = []
    add = vals.append
    for _, m in modules:
        add(m.training)
        add(tuple(map(id, getattr(m, "_parameters", {}).values())))
        add(tuple(map(id, getattr(m, "_buffers", {}).values())))
    for _, opt in optimizers:
        for gi, group in enumerate(opt.param_groups):
            for k, v in group.items():
                if k == "params":
                    add(tuple(map(id, v)))
                elif isinstance(v, _SCALARS + (tuple,)) and not (lifted and (id(opt), gi, k) in lifted):
                    add(v)
        add(len(opt.state))
        for state in opt.state.values():
            if isinstance(state, dict):
                for v in state.values():
                    if isinstance(v, Tensor):
                        add(id(v))
                    elif isinstance(v, _SCALARS):
                        add(v)
    for _, holder, key, obj in roots:
        add((holder.get(key) if isinstance(holder, dict) else _cell(holder)) is obj)
    return tuple(vals)


def describe_python_state(modules, optimizers, roots=(), lifted=frozenset()) -> list[tuple[str, object]]:
    return list(_state_items(modules, optimizers, roots, lifted))


def _global_names(code) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += [n for n in _global_names(const) if n not in names]
    return names

