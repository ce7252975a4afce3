"""Capturing one call of a function as a graph, and running a captured graph (an Entry).

`capture` traces the call, decides whether the graph can be reused (cached) for later
calls, and either builds an Entry (which then runs this very call) or, when it cannot be
reused, *materialises* the trace: runs it once on the interpreter and makes every tensor
the function left behind real. Either way the call's effects are exactly eager mode's.

A graph cannot be reused when symbolic tensors escape into Python state the graph does not
describe (optimizer state created on the first step, a tensor cached on a module), or when
the trace changed tensor attributes it cannot replay. The next call simply traces again
(by then the state exists and is lifted like any other tensor).
"""

from __future__ import annotations

import time

import numpy as np

from . import _grad_mode
from . import _tensor as _tensor_mod
from ._guards import Spec, describe_python_state, first_difference, flatten, python_state
from ._tensor import _make
from ._trace import Sym, Tracer, apply_writes
from .autograd import Node as AutogradNode
from .autograd import run_backward
from .optim.optimizer import ParamGroup
from .codegen.backends import get_backend
from .passes.partition import split_joint
from .passes.pipeline import run_passes, select_passes, verify_enabled
from .passes.verify import verify
from .runtime.cuda import CudaArray
from .runtime.errors import AutogradError
from .runtime.registry import Primitive

# how a compiled call fetches each graph input
ARG, TENSOR, GRAD, RANDOM, CONST, HYPER = range(6)
_KIND = {"arg": ARG, "tensor": TENSOR, "grad": GRAD, "random": RANDOM, "const": CONST}


class Captured:
    """What capture() returns: an Entry to cache and run, or the finished eager result."""

    def __init__(self, entry=None, result=None, reason: str | None = None, graph=None):
        self.entry = entry
        self.result = result
        self.reason = reason  # why the call was not (or not reusably) compiled
        self.graph = graph


def capture(cf, args, kwargs, tensors, arg_paths, world) -> Captured:
    """Trace one call of cf._fn. `tensors` are the argument tensors in key order."""
    tracer = Tracer(cf.__name__, world, cf.fullgraph)
    for _, opt in world.optimizers:
        for group in opt.param_groups:
            if isinstance(group, ParamGroup):
                group.lr_read = False
    for i, (t, path) in enumerate(zip(tensors, arg_paths)):
        if isinstance(t._data, Sym):
            continue  # the same tensor passed twice: already lifted
        if id(t._data) in tracer.lifted:
            tracer.lift(t)  # the same storage passed twice: one input
        else:
            tracer.lift(t, role="arg", name=path, source=("arg", i))
    for t in world.tensors.values():
        tracer.grad_snapshot.setdefault(id(t), (t, t.grad))
    tracer.python_before = describe_python_state(world.modules, world.optimizers, world.roots)
    t0 = time.perf_counter()
    _tensor_mod._tracer = tracer
    try:
        result = cf._fn(*args, **kwargs)
    except BaseException:
        _abandon(tracer)
        raise
    finally:
        _tensor_mod._tracer = None
    trace_ms = (time.perf_counter() - t0) * 1e3
    if tracer.materialized:
        return Captured(result=result, reason=f"needed a concrete value: {tracer.broken}",
                        graph=tracer.graph)
    try:
        return _finish(cf, tracer, result, tensors, world, trace_ms)
    except BaseException:
        _abandon(tracer)
        raise


def _abandon(tracer: Tracer) -> None:
    """After an error inside a trace, leave what eager mode would have left at that point."""
    if tracer.materialized:
        return
    try:
        tracer.materialize()
    except Exception:
        tracer.restore(tracer.live_tensors())


def _history_tensors(leaves) -> set[int]:
    """ids of the tensors reachable through the outputs' autograd history."""
    seen_nodes, found, stack = set(), set(), [t.grad_fn for t in leaves if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes or not isinstance(node, AutogradNode):
            continue
        seen_nodes.add(id(node))
        for t in (node._inputs or ()):
            found.add(id(t))
        if node._out_saved is not None:
            found.add(id(node._out_saved))
        stack.extend(child for child, _ in node.next)
    return found


def _finish(cf, tracer: Tracer, result, tensors, world, trace_ms) -> Captured:
    graph = tracer.graph
    leaves: list = []
    spec = flatten(result, leaves)
    out_values = [tracer.value_of(t) for t in leaves]

    # .grad effects: compare every known tensor's .grad with the snapshot from the start
    grad_effects, problems = [], []
    for t, before in list(tracer.grad_snapshot.values()):
        after = t.grad
        if after is before:
            continue
        if after is None:
            grad_effects.append((t, None))
        elif type(after._data) is Sym:
            grad_effects.append((t, after))
        else:
            problems.append("a .grad was set to a tensor created from data inside the function")
    for lf in tracer.lifted.values():
        for ref in lf.tensors:
            t = ref()
            if t is not None and lf.requires_grad is not None and t.requires_grad != lf.requires_grad \
                    and t.grad_fn is None:
                problems.append(f"requires_grad of %{lf.input.name} changed inside the function")
                break

    # Python state the graph would not replay (a scheduler changing the lr, a step counter)
    after = describe_python_state(world.modules, world.optimizers, world.roots)
    if after != tracer.python_before:
        problems.append(f"the function changed Python state a graph cannot replay "
                        f"({first_difference(tracer.python_before, after)})")
    # an lr the graph reads as an input, changed after it was read: a compiled call would
    # fetch the new value (also for optimizers the pre-scan did not find)
    for _, opt, index, key, value in tracer.hypers:
        if opt.param_groups[index].get(key) != value:
            problems.append(f"the function changed an optimizer's param_groups[{index}][{key!r}] "
                            f"after reading it")
            break

    # escapes: symbolic tensors still alive that are not outputs, grads or lifted aliases
    keep = {id(t) for t in leaves} | _history_tensors(leaves)
    keep |= {id(g) for _, g in grad_effects if g is not None}
    live = tracer.live_tensors()
    keep |= {id(t._base) for t in live if id(t) in keep and t._base is not None}  # views' bases
    escaped = [t for t in live if id(t) not in keep and t._data.lifted is None]
    if escaped:  # perhaps only cyclic garbage: collect it and look again
        del escaped
        live = tracer.live_tensors(collect=True)
        escaped = [t for t in live if id(t) not in keep and t._data.lifted is None]
    if escaped:
        shapes = ", ".join(f"{t.dtype.name}{list(t.shape)}" for t in escaped[:3])
        problems.append(f"{len(escaped)} symbolic tensor(s) escaped into Python state ({shapes}"
                        f"{', ...' if len(escaped) > 3 else ''}), e.g. optimizer state created "
                        f"on the first step")
    if problems:
        tracer.materialize()
        return Captured(result=result, reason="; ".join(problems) + ": this call ran on the "
                        "interpreter and the next call traces again", graph=graph)

    # a reusable graph: outputs, grad effects, writes
    labels = [f"out.{i}" if len(leaves) > 1 else "out" for i in range(len(leaves))]
    grad_values, effects = [], []
    for t, g in grad_effects:
        name = f"{world.tensor_names.get(id(t)) or _name_of(tracer, t)}.grad"
        if g is None:
            effects.append((t, None, name))
        else:
            effects.append((t, len(out_values) + len(grad_values), name))
            grad_values.append(tracer.value_of(g))
            labels.append(name)
    graph.set_outputs(out_values + grad_values, labels)
    for lf, new in tracer.writes():
        graph.add_write(lf.input, new)

    aot = None
    needs = [t.requires_grad for t in leaves]
    if _grad_mode._enabled and any(needs) and tracer.backward_calls == 0:
        aot = _trace_backward(tracer, leaves, needs, len(graph.outputs))
    # outputs whose history the function's own backward() already consumed (a returned loss)
    spent = needs if tracer.backward_calls and any(needs) else None

    # put the world back as it was: the entry replays the effects on every call
    out_dtypes = [v.type.dtype for v in out_values]
    tracer.restore(live)
    for t, before in tracer.grad_snapshot.values():
        t.grad = before
    tracer.grad_snapshot = {}
    # drop every local reference to traced tensors (loop variables included), so that the
    # tensors the function made from data are gone and _sources can tell they were constants
    del result, leaves, live, escaped, keep, grad_effects
    t = g = before = after = ref = None  # noqa: F841
    sources = _sources(tracer)
    # a constant's storage dies with the call that made it: updates to it are not kept
    graph.writes = [(a, b) for a, b in graph.writes if a.role != "const"]
    graph.notes.insert(0, f"traced {cf.__name__} at {cf._call_site}: {len(graph.nodes)} nodes, "
                          f"{trace_ms:.1f} ms")
    # an lr is unguarded only if nothing but the optimizer's update read it (ParamGroup)
    unguarded = {(id(h[1]), h[2], h[3]) for h in tracer.hypers
                 if not getattr(h[1].param_groups[h[2]], "lr_read", False)}
    entry = Entry(cf.__name__, graph, sources, spec, out_dtypes, effects, aot, world,
                  cf._call_site, unguarded)
    if spent is not None:
        entry.spent = spent
        entry.simple = False
    return Captured(entry=entry, graph=graph)


def _name_of(tracer: Tracer, t) -> str:
    for lf in tracer.lifted.values():
        if any(r() is t for r in lf.tensors):
            return lf.input.name
    return "tensor"


def _sources(tracer: Tracer) -> list:
    """Where each graph input comes from on a call. Anonymous tensors that no longer exist
    after the trace were created inside the function from data: they are constants."""
    by_input = {lf.input: lf for lf in tracer.lifted.values()}
    random = dict(tracer.random)
    hypers = {h[0]: h[1:4] for h in tracer.hypers}
    sources = []
    for v in tracer.graph.inputs:
        if v in random:
            sources.append((RANDOM, random[v]))
            continue
        if v in hypers:
            sources.append((HYPER, _Hyper(*hypers[v])))
            continue
        if v.role == "grad_out":
            continue
        lf = by_input[v]
        kind, obj = lf.source
        if kind == "tensor" and obj is None:
            alive = [t for t in (r() for r in lf.tensors) if t is not None]
            if alive:
                obj = alive[0]
            else:
                kind, obj = "const", lf.array
                v.role = "const"
                tracer.graph.rename(v, f"c{sum(1 for s in sources if s[0] == CONST)}")
        sources.append((_KIND[kind], obj))
    return sources


class _Hyper:
    """Fetches optimizer.param_groups[index][key] (the lr) as a 0-d float64 array: the same
    read-only array while the value stays, so backends see an unchanged input (the LLVM
    runner keeps its pointer, a cuda program uploads it only when it changes)."""

    __slots__ = ("optimizer", "index", "key", "value", "array")

    def __init__(self, optimizer, index: int, key: str):
        self.optimizer, self.index, self.key = optimizer, index, key
        self.value = self.array = None

    def fetch(self) -> np.ndarray:
        value = float(self.optimizer.param_groups[self.index][self.key])
        if value != self.value:
            self.value, self.array = value, np.array(value)
            self.array.flags.writeable = False
        return self.array


# ---------------------------------------------------------------- compiled backward (AOT)
class _AOT:
    """A forward-only function whose outputs require grad: its backward is traced too and
    split off into a graph that the outputs' grad_fn runs (as AOTAutograd does)."""

    def __init__(self, wrt_inputs, grad_mask, needs, n_fwd_outputs):
        self.wrt_inputs = wrt_inputs  # indices of graph inputs that receive gradients
        self.grad_mask = grad_mask  # per wrt input: does the backward produce a gradient
        self.needs = needs  # per user output: does it require grad
        self.n_fwd_outputs = n_fwd_outputs
        self.n_saved = 0
        self.backward_graph = None
        self.backward_runner = None


def _trace_backward(tracer: Tracer, leaves, needs, n_fwd_outputs) -> _AOT:
    """Trace the backward of the outputs into the same graph, with a grad_out input per
    output that requires grad; entry.compile splits the joint graph in two."""
    graph = tracer.graph
    by_input = {lf.input: lf for lf in tracer.lifted.values()}
    wrt_inputs, wrt_tensors = [], []
    for i, v in enumerate(graph.inputs):
        lf = by_input.get(v)
        t = None if lf is None else next(
            (t for t in (r() for r in lf.tensors) if t is not None and t.requires_grad), None)
        if t is not None and t.grad_fn is None:
            wrt_inputs.append(i)
            wrt_tensors.append(t)
    roots = [t for t, need in zip(leaves, needs) if need]
    seeds = []
    for i, t in enumerate(roots):
        v = graph.add_input(t._data.value.type, f"grad_out{i}", "grad_out")
        seeds.append(_make(tracer._sym(v), t.dtype))
    _tensor_mod._tracer = tracer
    try:
        grads = run_backward(roots, seeds, retain_graph=False, create_graph=False,
                             capture=wrt_tensors)
    finally:
        _tensor_mod._tracer = None
    # the gradients are the joint graph's last outputs: the autograd pass replaces them,
    # then entry.compile splits the graph there
    grad_values = [tracer.value_of(g) for g in grads if g is not None]
    graph.set_outputs(graph.outputs + grad_values,
                      graph.output_labels + [f"grad.{i}" for i in range(len(grad_values))])
    return _AOT(wrt_inputs, [g is not None for g in grads], needs, n_fwd_outputs)


def _backward_node(name, runner, saved, grad_mask, seeds_meta, index, wrt, leaf):
    """The grad_fn of compiled output `index`: runs the backward graph with this output's
    gradient (zeros for the other outputs' gradients)."""

    def vjp(ctx, g):
        ctx.inputs  # raises if an input was modified in place since the forward ran
        if _grad_mode._enabled:
            raise AutogradError(f"double backward through compiled function {name} is not "
                                f"supported", hint="call the function eagerly (without compile) "
                                                   "where higher-order gradients are needed")
        data = g._data
        if type(data) is CudaArray:  # seeds on the device of the outputs
            seeds = [(data if data.is_root else data.copy()) if i == index else
                     CudaArray.zeros(data.device, shape, dtype.np) for i, (shape, dtype) in enumerate(seeds_meta)]
        else:
            seeds = [np.require(data, requirements="C") if i == index else np.zeros(shape, dtype.np)
                     for i, (shape, dtype) in enumerate(seeds_meta)]
        grads = iter(runner(list(saved) + seeds))
        return tuple(_make(next(grads)) if has else None for has in grad_mask)

    prim = Primitive(f"compiled_{name}", "matmul", None, None, vjp, saves=None)
    return AutogradNode(prim, tuple(wrt), {}, (True,) * len(wrt), leaf)


def _spent_vjp(ctx, g):
    ctx.inputs  # raises: "backward through the graph a second time", as eager does
    return ()


# ---------------------------------------------------------------- entries
class Entry:
    """One compiled graph and what a call needs to run it: where its inputs come from, the
    guards beyond the argument key, and how results go back (outputs, writes, .grad)."""

    def __init__(self, name, graph, sources, spec: Spec, out_dtypes, grad_effects, aot, world,
                 traced_at: str, lifted=frozenset()):
        self.name = name
        self.graph = graph
        self.sources = sources
        self.spec = spec
        self.out_dtypes = out_dtypes
        self.n_out = len(out_dtypes)
        self.grad_effects = grad_effects  # [(tensor, output index or None: set None, name)]
        self.aot = aot
        self.modules = list(world.modules)
        self.optimizers = list(world.optimizers)
        self.roots = list(world.roots)
        # hyperparameters fetched as inputs (the lr) are not guarded
        self.lifted = frozenset(lifted)
        self.python_state = python_state(self.modules, self.optimizers, self.roots, self.lifted)
        self._python_desc = describe_python_state(self.modules, self.optimizers, self.roots,
                                                  self.lifted)
        self.write_inputs = [graph.inputs.index(a) for a, _ in graph.writes]
        self.traced_at = traced_at
        self.objects: list = []  # identity-keyed argument objects, kept alive with the entry
        self.arg_desc: list = []
        self.runner = None
        self.backend = None
        self.final: list = []
        self.spent = None  # outputs whose graph the function's backward() consumed
        self._world_tensors = list(world.tensors.values())
        self._world_names = dict(world.tensor_names)
        self._spent_prim = Primitive(f"compiled_{name}", "matmul", None, None, _spent_vjp,
                                     saves=None)
        self._build_checks()
        # fast paths for the common cases
        self.arg_only = [obj for _, obj in sources] if all(k == ARG for k, _ in sources) else None
        self.simple = not self.write_inputs and not grad_effects and aot is None
        self.single = spec.kind == "tensor"
        self.unguarded = not (self.tensor_checks or self.grad_checks or self.modules
                              or self.optimizers or self.roots)

    def _build_checks(self):
        """Lifted tensors: same storage (else same shape/dtype), same requires_grad.
        .grad: None exactly when it was at trace time (and its shape, when read)."""
        self.tensor_checks, self.grad_checks = [], []
        for (kind, obj), v in zip(self.sources, self.graph.inputs):
            if kind == TENSOR:
                self.tensor_checks.append([obj, obj._data, v.type.shape, v.type.dtype,
                                           obj.requires_grad, v.name])
            elif kind == GRAD:
                self.grad_checks.append((obj, False, v.type.shape, v.type.dtype, v.name))
        watched = {id(c[0]) for c in self.grad_checks}
        for t, _, name in self.grad_effects:
            if id(t) not in watched:
                watched.add(id(t))
                self.grad_checks.append((t, t.grad is None, None, None, name))
        # code may branch on `p.grad is None` (optimizers skip such parameters)
        for t in self._world_tensors:
            if t.requires_grad and id(t) not in watched:
                watched.add(id(t))
                name = f"{self._world_names.get(id(t), 'tensor')}.grad"
                self.grad_checks.append((t, t.grad is None, None, None, name))

    def failure(self) -> str | None:
        """None when this entry's guards hold; otherwise which guard fails."""
        for check in self.tensor_checks:
            t, last, shape, dtype, rg, name = check
            data = t._data
            if data is not last:
                if type(data) is not type(last) or data.shape != shape or t._dtype is not dtype:
                    return (f"%{name}: now {t.dtype.name}{list(t.shape)}, traced as "
                            f"{dtype.name}{list(shape)}")
                check[1] = data
            if t.requires_grad != rg:
                return f"%{name}.requires_grad changed to {t.requires_grad}"
        for t, was_none, shape, dtype, name in self.grad_checks:
            g = t.grad
            if (g is None) != was_none:
                return (f"{name} is {'None' if g is None else 'a tensor'}, traced with "
                        f"{'None' if was_none else 'a tensor'}")
            if shape is not None and (g._data.shape != shape or g._dtype is not dtype):
                return f"%{name}: now {g.dtype.name}{list(g.shape)}, traced as {dtype.name}{list(shape)}"
        if (self.modules or self.optimizers or self.roots) and \
                python_state(self.modules, self.optimizers, self.roots, self.lifted) != self.python_state:
            return first_difference(self._python_desc, describe_python_state(
                self.modules, self.optimizers, self.roots, self.lifted))
        return None

    def compile(self, backend: str, sink, passes=None, remat=None) -> None:
        """Verify, run the passes (all, or those named), hand the result to the backend
        (forward and backward graphs; remat: min-cut partition, None = TRACECC_REMAT)."""
        check = verify_enabled()
        if check:
            verify(self.graph)
        sink.stage("traced", self.graph, kind="graph")
        be = get_backend(backend)
        selected = select_passes(passes)
        # passes over the whole program (decompose, autograd) run before it is split; on a
        # copy, so that self.graph stays the traced graph (explain, the cli)
        joint = run_passes(self.graph.copy(), [p for p in selected if p.joint], log=sink)
        graphs = [joint]
        if self.aot is not None:
            aot = self.aot
            n = aot.n_fwd_outputs
            fwd, bwd, saved = split_joint(joint, n, joint.outputs[n:], remat)
            sink.emit("passes", fwd.notes[-1])  # saved bytes, with and without remat
            aot.n_saved = len(saved)
            names = [self.graph.inputs[i].name for i, has in zip(aot.wrt_inputs, aot.grad_mask)
                     if has]
            bwd.output_labels = [f"{n}.grad" for n in names]
            for g in (fwd, bwd):
                if check:
                    verify(g)
                sink.stage(g.name.rsplit("_", 1)[-1], g, kind="graph")
            graphs = [fwd, bwd]
        self.final = [run_passes(g, [p for p in selected if not p.joint], log=sink)
                      for g in graphs]
        runners = [be.compile(g, sink) for g in self.final]
        self.runner = runners[0]
        if self.aot is not None:
            self.aot.backward_graph = self.final[1]
            self.aot.backward_runner = runners[1]
        self.backend = be.name

    def run(self, tensors):
        if self.arg_only is not None:
            arrays = [tensors[i]._data for i in self.arg_only]
        else:
            arrays = self._fetch(tensors)
        results = self.runner(arrays)
        if self.simple:  # no writes, no .grad effects, no backward: just wrap the outputs
            if self.single:
                return _make(results[0], self.out_dtypes[0])
            return self.spec.build([_make(results[i], d) for i, d in enumerate(self.out_dtypes)])
        return self._finish_run(tensors, arrays, results)

    def _fetch(self, tensors):
        arrays = []
        for kind, obj in self.sources:
            if kind == ARG:
                arrays.append(tensors[obj]._data)
            elif kind == TENSOR:
                arrays.append(obj._data)
            elif kind == GRAD:
                arrays.append(obj.grad._data)
            elif kind == RANDOM:
                arrays.append(obj())
            elif kind == HYPER:
                arrays.append(obj.fetch())
            else:
                arrays.append(obj)
        return arrays

    def _finish_run(self, tensors, arrays, results):
        if self.write_inputs:
            base = len(results) - len(self.write_inputs)
            apply_writes([(arrays[i], results[base + j]) for j, i in enumerate(self.write_inputs)])
        for t, index, _ in self.grad_effects:
            t.grad = None if index is None else _make(results[index])
        dtypes = self.out_dtypes
        leaves = [_make(results[i], dtypes[i]) for i in range(self.n_out)]
        if self.aot is not None and _grad_mode._enabled:
            self._attach_backward(leaves, results, arrays, tensors)
        elif self.spent is not None:
            for leaf, need in zip(leaves, self.spent):
                if need:  # like eager's: requires grad, but backward() already freed its graph
                    node = AutogradNode(self._spent_prim, (), {}, (), leaf)
                    node.release()
                    leaf.requires_grad, leaf.grad_fn = True, node
        return self.spec.build(leaves)

    def _attach_backward(self, leaves, results, arrays, tensors):
        aot = self.aot
        saved = results[aot.n_fwd_outputs:aot.n_fwd_outputs + aot.n_saved]
        wrt = []
        for i in aot.wrt_inputs:
            kind, obj = self.sources[i]
            wrt.append(tensors[obj] if kind == ARG else obj)
        roots = [leaf for leaf, need in zip(leaves, aot.needs) if need]
        meta = [(leaf._data.shape, leaf.dtype) for leaf in roots]
        for j, leaf in enumerate(roots):
            leaf.requires_grad = True
            leaf.grad_fn = _backward_node(self.name, aot.backward_runner, saved, aot.grad_mask,
                                          meta, j, wrt, leaf)
