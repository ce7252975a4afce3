"""The tracer: runs a Python function on symbolic tensors and records one Graph.

While tracing, `tracecc._tensor._tracer` is a Tracer and every op reaches `Tracer.apply`
(see _tensor.apply). A traced tensor's payload is a `Sym`: a box holding the graph Value
that currently stands for its storage. Tensors that share storage (`.data`, `.detach()`,
a Parameter and the tensor it wraps) share the box, so an in-place update through one is
seen through all, as in eager mode.

- Tensors the function reads that are not symbolic yet (arguments, parameters, buffers,
  optimizer state, `.grad`, closure tensors) are *lifted*: they become graph inputs, keyed by
  the identity of their numpy payload, and their payload is swapped for the input's Sym
  for the rest of the trace (and swapped back after).
- In-place updates are functionalised: the target's box gets the new value; views of it
  are recomputed; an update through a view (reshape, permute, slice) is scattered into its
  base. After the trace, every lifted input whose box changed becomes a write.
- Code that needs a concrete value (`.item()`, `bool(t)`, `.numpy()`) either raises TC101
  (fullgraph=True) or *materialises*: the graph so far runs on the real inputs, every live
  symbolic tensor gets its real payload, and the rest of the function runs eagerly.
- Random numbers drawn with tracecc.random inside the trace become `random` inputs that
  each compiled call draws from the same generator, in the same order, before it runs.
"""

from __future__ import annotations

import gc
import os
import re
import weakref
from math import prod

import numpy as np

from . import _grad_mode, _tensor as _tensor_mod
from .passes.autograd import differentiate
from .passes.bind import gradient_flow
from .passes.decompose import expand_composites
from .passes.interpret import interpret
from .passes.ir import Graph, Value
from .runtime.cuda import CudaArray
from .runtime.errors import DataDependentError, UnsupportedError, user_location
from .runtime import dtypes
from .runtime.registry import PRIMITIVES, TensorType
from ._tensor import Tensor, VIEW_PRIMS, _make
from .autograd import Node as AutogradNode, retains_grad


class Sym:
    """A symbolic payload: shape and dtype known, data not. `value` is the graph Value that
    currently holds this storage's contents (it changes on in-place updates)."""

    __slots__ = ("value", "view_of", "lifted", "__weakref__")

    def __init__(self, value: Value, view_of=None, lifted=None):
        self.value = value
        self.view_of = view_of  # (parent Sym, primitive, params) for views
        self.lifted = lifted  # the Lifted record when this is a lifted tensor's storage

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.type.shape

    @property
    def ndim(self) -> int:
        return len(self.value.type.shape)

    @property
    def size(self) -> int:
        return prod(self.value.type.shape)

    @property
    def dtype(self):
        return self.value.type.dtype.np

    def copy(self) -> "Sym":
        """A snapshot (as ndarray.copy()): a new storage holding the current value, which
        later in-place updates of this one do not change. No node: values are immutable."""
        tracer = _tensor_mod._tracer
        return tracer._sym(self.value) if tracer is not None else Sym(self.value)

    def __repr__(self) -> str:
        return f"%{self.value.name}: {self.value.type}"


class Lifted:
    """A tensor storage read by the traced function and made a graph input."""

    __slots__ = ("array", "sym", "input", "source", "tensors", "requires_grad")

    def __init__(self, array, sym, input, source):
        self.array = array  # the real payload (held: its id is the key)
        self.sym = sym
        self.input = input
        self.source = source  # how a compiled call fetches it: ("arg", i) | ("tensor", T) | ...
        self.tensors: list = []  # weakrefs to the tensors whose payload was swapped
        self.requires_grad = None


def short_location() -> str:
    """The user's file:line, relative to the working directory when inside it."""
    loc = user_location()
    path, _, line = loc.rpartition(":")
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            path = rel
    except ValueError:
        pass
    return f"{path}:{line}"


class Tracer:
    records_composites = True  # a composite call becomes one node (tracecc/_composite.py)

    def __init__(self, name: str, world, fullgraph: bool = True):
        self.graph = Graph(re.sub(r"[^A-Za-z0-9_.]", "", name) or "fn")  # "<lambda>" -> "lambda"
        self.world = world  # what the pre-scan found: names, roles and sources of tensors
        self.fullgraph = fullgraph
        self.lifted: dict[int, Lifted] = {}
        self.syms: list[weakref.ref] = []
        self.tensors: list[weakref.ref] = []  # every tensor made during the trace
        self.views: dict[int, list] = {}  # id(parent Sym) -> [(weakref(view Sym), prim, params)]
        self.random: list[tuple[Value, object]] = []  # (input, draw) in trace order
        self.hypers: list[tuple] = []  # (input, optimizer, group index, key, value read)
        self.cut: list[tuple[Tensor, object]] = []  # lifted non-leaves: (tensor, grad_fn)
        self.grad_snapshot: dict[int, tuple[Tensor, object]] = {}  # id(t) -> (t, t.grad at entry)
        self.broken: str | None = None  # why the trace stopped and the call went eager
        self.materialized = False
        self.backward_calls = 0
        # Values that may carry a gradient (a tensor holding them requires grad). Where eager
        # autograd would not record a use of one (no_grad, .detach()), the use reads
        # stop_gradient(value) instead, so the autograd pass can trust the graph alone.
        self.differentiable: set[Value] = set()
        self.stopped: dict[Value, Value] = {}
        self.requests = 0  # backward()/grad() calls: one `request` id each

    # ------------------------------------------------------------ symbolic values
    def _sym(self, value: Value, view_of=None, lifted=None) -> Sym:
        s = Sym(value, view_of, lifted)
        self.syms.append(weakref.ref(s))
        return s

    def lift(self, t: Tensor, role: str | None = None, name: str | None = None, source=None) -> Sym:
        """Make t's storage a graph input (once per storage) and swap t's payload for its Sym."""
        arr = t._data
        lf = self.lifted.get(id(arr))
        if lf is None:
            if role is None:
                name, role, source = self.world.describe(arr, t)
            v = self.graph.add_input(TensorType(tuple(arr.shape), t._dtype), name, role)
            lf = Lifted(arr, None, v, source)
            lf.sym = self._sym(v, lifted=lf)
            lf.requires_grad = t.requires_grad
            self.lifted[id(arr)] = lf
        if t.requires_grad:
            self.differentiable.add(lf.sym.value)
        if id(t) not in self.grad_snapshot:
            self.grad_snapshot[id(t)] = (t, t.grad)
        if t.grad_fn is not None:
            # a compiled function's autograd graph starts at its inputs (see docs/compile.md)
            self.cut.append((t, t.grad_fn))
            t.grad_fn = None
        t._data = lf.sym
        lf.tensors.append(weakref.ref(t))
        return lf.sym

    def value_of(self, t) -> Value:
        data = t._data
        if type(data) is Sym:
            return data.value
        if not isinstance(data, (np.ndarray, CudaArray)):
            raise UnsupportedError(f"a tensor with a {type(data).__name__} payload reached a "
                                   f"compiled function")
        return self.lift(t).value

    def record(self, prim, values: list[Value], params: dict, out_type=None) -> Value:
        if out_type is None:
            out_type = prim.meta(*[v.type for v in values], **params)
        return self.graph.add_node(prim.name, values, params, out_type, short_location())

    # ------------------------------------------------------------ the protocol of _tensor.py
    def apply(self, prim, args, params) -> Tensor:
        values = [self.value_of(a) for a in args]
        # meta once (a composite's meta runs its decomposition); stop_gradient keeps types
        out_type = prim.meta(*[v.type for v in values], **params)
        flows = gradient_flow(prim, args, values, out_type, self.differentiable, self.stop_gradient)
        out_value = self.record(prim, values, params, out_type)
        if flows:
            self.differentiable.add(out_value)
        if prim.name in VIEW_PRIMS:
            src = args[0]
            sym = self._sym(out_value, view_of=(src._data, prim, params))
            self.views.setdefault(id(src._data), []).append((weakref.ref(sym), prim, params))
            out = _make(sym, out_value.type.dtype)
            out._version = src._version
            out._base = src if src._base is None else src._base
            return out
        return _make(self._sym(out_value), out_value.type.dtype)

    def stop_gradient(self, v: Value) -> Value:
        s = self.stopped.get(v)
        if s is None:
            s = self.stopped[v] = self.record(PRIMITIVES["stop_gradient"], [v], {})
        return s

    def new_leaf(self, t: Tensor) -> None:
        """t.requires_grad_() inside the trace: t becomes a leaf. Gradients must not flow
        from it into what computed it, so its storage now holds stop_gradient(value)."""
        sym = t._data if type(t._data) is Sym else self.lift(t)
        if sym.value not in self.differentiable:
            sym.value = self.stop_gradient(sym.value)
            self.differentiable.add(sym.value)

    def inplace(self, target: Tensor, result: Tensor) -> None:
        new = self.value_of(result)
        if target.requires_grad:  # a leaf updated under no_grad is still a leaf
            self.differentiable.add(new)
        sym = target._data if type(target._data) is Sym else self.lift(target)
        self._write(sym, new)

    def _write(self, sym: Sym, new: Value) -> None:
        if sym.view_of is not None:
            parent, prim, params = sym.view_of
            self._write(parent, self._scatter_into(parent, prim, params, new))
            return
        sym.value = new
        self._refresh_views(sym)

    def _scatter_into(self, parent: Sym, prim, params, new: Value) -> Value:
        """The base's new value after writing `new` through the view prim(base, **params)."""
        P = PRIMITIVES
        if prim.name == "reshape":
            return self.record(P["reshape"], [new], {"shape": tuple(parent.shape)})
        if prim.name == "permute":
            dims = params["dims"]
            inverse = tuple(sorted(range(len(dims)), key=lambda i: dims[i]))
            return self.record(P["permute"], [new], {"dims": inverse})
        if prim.name == "slice":
            return self.record(P["slice_scatter"], [parent.value, new], dict(params))
        raise UnsupportedError(f"in-place update of a tensor made by {prim.name} (its elements "
                               f"share memory)", hint="call .clone() first")

    def _refresh_views(self, sym: Sym) -> None:
        """Views of a storage see its in-place updates: recompute the live ones."""
        for ref, prim, params in self.views.get(id(sym), ()):
            view = ref()
            if view is not None and view.view_of[0] is sym:
                view.value = self.record(prim, [sym.value], params)
                self._refresh_views(view)

    def needs_value(self, t: Tensor, what: str):
        loc = user_location()
        if self.fullgraph:
            raise DataDependentError(
                f"{what} needs the value of a tensor inside compiled function "
                f"{self.graph.name}, where tensors are symbolic (shape {list(t.shape)}, "
                f"{t.dtype})",
                hint="keep data-dependent Python (.item(), if tensor:, .numpy()) outside the "
                     "compiled function, use tracecc.where for branches, or pass "
                     "fullgraph=False to run such calls eagerly", location=loc)
        self.broken = f"{what} at {loc}"
        self.materialize()
        return t._data

    def random_input(self, shape, dtype, draw) -> Tensor:
        """A tensor of random numbers: a graph input that each compiled call draws anew by
        calling draw() (numpy array of that shape and dtype) with the caller's generator."""
        v = self.graph.add_input(TensorType(tuple(shape), dtype), f"rand{len(self.random)}",
                                 "random")
        self.random.append((v, draw))
        return _make(self._sym(v), dtype)

    def hyper_input(self, optimizer, index: int, key: str, value) -> Tensor:
        """A hyperparameter (an optimizer group's lr) as a 0-d float64 input: each compiled
        call fetches float(optimizer.param_groups[index][key]), so changing it needs no new
        graph. float64 holds the Python float exactly, and float64 ops round as Python's do."""
        hit = next((h for h in reversed(self.hypers)
                    if h[1] is optimizer and h[2] == index and h[3] == key), None)
        if hit is None or hit[4] != value:  # changed inside the function: a new input
            oname = next((n for n, o in self.world.optimizers if o is optimizer), "optimizer")
            v = self.graph.add_input(TensorType((), dtypes.float64),
                                     f"{oname}.param_groups.{index}.{key}", "hyper")
            hit = (v, optimizer, index, key, value)
            self.hypers.append(hit)
        return _make(self._sym(hit[0]), dtypes.float64)

    def backward(self, roots, seeds, create_graph: bool, capture=None) -> list | None:
        """backward() (or autograd.grad(), with `capture`) inside the trace. Decides, as
        eager autograd does, which tensors receive a gradient: the leaves that require grad
        (or the `capture` tensors) that the roots reach through recorded uses. Records one
        `grad` node for each; the autograd pass builds the gradients from the VJP rules.
        Accumulates into .grad, or returns the gradients (None where not reached)."""
        self.backward_calls += 1
        request, self.requests = self.requests, self.requests + 1
        operands = [self.value_of(t) for t in roots] + [self.value_of(g) for g in seeds]
        params = {"request": request, "n_roots": len(roots), "create_graph": create_graph}
        reached = self._reached(operands[:len(roots)])

        def grad_of(t):
            v = self.value_of(t)
            if v not in reached:
                return None
            out = self.graph.add_node("grad", operands + [v], params, v.type, short_location(),
                                      "backward")
            g = _make(self._sym(out), t.dtype)
            if create_graph:  # the gradient has history: differentiable again
                g.requires_grad = True
                g.grad_fn = AutogradNode(PRIMITIVES["grad"], tuple(roots) + tuple(seeds) + (t,),
                                         params, (True,) * (len(operands) + 1), g)
                self.differentiable.add(out)
            return g

        if capture is not None:
            return [grad_of(t) for t in capture]
        with _grad_mode.set_grad_enabled(create_graph):
            for leaf in self._leaves(reached):
                g = grad_of(leaf)
                leaf.grad = g if leaf.grad is None else leaf.grad + g
        return None

    def _reached(self, roots) -> set[Value]:
        """Values whose gradient the roots' backward would compute: walk back from the roots
        through recorded uses (nodes with a VJP, values that may carry a gradient)."""
        def recorded(v, n):
            if n.prim.vjp is None and not (n.op == "grad" and n.params["create_graph"]):
                return ()
            return [x for x in n.inputs if x in self.differentiable]

        return set(self.graph.upstream(roots, recorded))

    def _leaves(self, reached) -> list[Tensor]:
        """The tensors backward() gives a .grad: leaves that require grad, and tensors
        that called retain_grad(), whose values the roots reach."""
        leaves, seen = [], set()
        for t in self.live_tensors():
            if ((t.requires_grad and t.grad_fn is None) or retains_grad(t)) \
                    and t._data.value in reached and id(t) not in seen:
                seen.add(id(t))
                leaves.append(t)
        return leaves

    # ------------------------------------------------------------ after the trace
    def input_arrays(self, random_arrays=None) -> list:
        """The real arrays of the graph's inputs (random ones drawn now unless given)."""
        by_input = {lf.input: lf.array for lf in self.lifted.values()}
        drawn = dict(zip((v for v, _ in self.random), random_arrays)) if random_arrays else {}
        for v, draw in self.random:
            if v not in drawn:
                drawn[v] = draw()
        by_input.update(drawn)
        for v, _, _, _, value in self.hypers:  # the values this trace read
            by_input[v] = np.array(float(value))
        return [by_input[v] for v in self.graph.inputs]

    def made(self, t: Tensor) -> None:
        """_tensor._make reports every tensor created while tracing."""
        self.tensors.append(weakref.ref(t))

    def live_tensors(self, collect: bool = False) -> list[Tensor]:
        """Every tensor still alive whose payload is one of this trace's Syms (made during
        the trace, or lifted and swapped). collect=True first frees cyclic garbage."""
        if collect:
            gc.collect()
        seen, live = set(), []
        refs = self.tensors + [r for lf in self.lifted.values() for r in lf.tensors]
        for ref in refs:
            t = ref()
            if t is not None and id(t) not in seen and type(t._data) is Sym:
                seen.add(id(t))
                live.append(t)
        return live

    def writes(self) -> list[tuple[Lifted, Value]]:
        return [(lf, lf.sym.value) for lf in self.lifted.values() if lf.sym.value is not lf.input]

    def restore(self, tensors=None) -> None:
        """Give lifted tensors their real payloads back and undo the autograd cut."""
        for lf in self.lifted.values():
            for ref in lf.tensors:
                t = ref()
                if t is not None and t._data is lf.sym:
                    t._data = lf.array
        for t in tensors or ():
            if type(t._data) is Sym and t._data.lifted is not None:
                t._data = t._data.lifted.array
        for t, grad_fn in self.cut:
            if t.grad_fn is None:
                t.grad_fn = grad_fn
        self.cut = []

    def materialize(self, random_arrays=None) -> None:
        """Run the graph so far on the real inputs and make every live symbolic tensor real:
        lifted tensors get their payload back with writes applied, the others their value.
        Afterwards the program continues eagerly (the tracer is switched off)."""
        _tensor_mod._tracer = None
        self.materialized = True
        env: dict = {}
        # the passes the graph cannot run without: composites and gradient requests expand
        replaced = expand_composites(self.graph)
        _, markers = differentiate(self.graph)
        arrays = self.input_arrays(random_arrays)
        # a graph on cuda tensors runs this once on the host; what it makes goes to the device
        device = next((a.device for a in arrays if type(a) is CudaArray), None)
        if device is not None:
            arrays = [a.numpy() if type(a) is CudaArray else a for a in arrays]
        interpret(self.graph, arrays, env=env)
        for old, new in list(markers.items()) + list(replaced.items()):
            env[old] = env[markers.get(new, new)]
        apply_writes([(lf.array, env[v]) for lf, v in self.writes()])
        tensors = self.live_tensors()
        self.restore(tensors)
        inputs = set(self.graph.inputs)
        moved: dict = {}  # host array -> its copy on the device (tensors sharing it share that)
        for t in tensors:
            if type(t._data) is Sym:
                v = t._data.value
                t._data = np.array(env[v]) if v in inputs else env[v]
                if device is not None:
                    t._data = CudaArray.from_numpy(device, t._data)
            elif device is not None and type(t._data) is np.ndarray and any(r() is t for r in self.tensors):
                # made inside from data and updated (Adam's step count): to the graph's device
                t._data = moved.get(id(t._data)) or moved.setdefault(
                    id(t._data), CudaArray.from_numpy(device, t._data))


def apply_writes(pairs) -> None:
    """Copy new values into their targets' arrays. A value that may alias another target
    (a view, or another input's array) is copied first, so the order does not matter."""
    targets = [a for a, _ in pairs]
    ids = {id(a) for a in targets}
    staged = []
    for target, new in pairs:
        if new is target:
            continue
        if new.base is not None or id(new) in ids:
            new = new.copy()  # (a CudaArray copies on its device)
        staged.append((target, new))
    for target, new in staged:
        np.copyto(target, new, casting="unsafe")
