"""Eager reverse-mode autograd, in the spirit of micrograd.

Every op applied to a tensor that requires grad leaves a Node: the primitive, its inputs
and params. `backward` sorts the nodes topologically and sweeps them once in reverse,
calling each primitive's VJP rule from the registry. The rules are written with tracecc
ops, so with `create_graph=True` the gradients themselves have history (double backward),
and while tracing the same sweep records gradient nodes into the graph.
"""

from __future__ import annotations

import weakref

from .runtime.errors import AutogradError, InplaceError
from .runtime.registry import ops
from . import _grad_mode


class Node:
    """One recorded op: what backward needs to call the primitive's VJP rule.

    Acts as the rule's context: `inputs`, `out`, `params`, and `needs` (which inputs
    want a gradient, so rules can skip work nobody uses).
    """

    __slots__ = ("prim", "params", "needs", "next", "_inputs", "_versions", "_out", "_out_saved",
                 "_out_version", "__weakref__")

    def __init__(self, prim, inputs, params, needs, out):
        self.prim = prim
        self.params = params
        self.needs = needs
        # where each input's gradient goes: its own grad_fn, or the leaf itself. Captured
        # now because an in-place op may later give the input a new grad_fn.
        self.next = tuple(
            (t.grad_fn, t if t.grad_fn is None else None) if need else (None, None)
            for t, need in zip(inputs, needs))
        self._inputs = inputs
        self._versions = tuple(t._version[0] for t in inputs)
        self._out = weakref.ref(out)
        self._out_saved = out._alias()  # no history: avoids a reference cycle out <-> node
        self._out_version = out._version[0]

    @property
    def name(self) -> str:
        return "".join(p.capitalize() for p in self.prim.name.split("_")) + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def _check_alive(self):
        if self._inputs is None:
            raise AutogradError(
                f"{self.name}: trying to backward through the graph a second time (its saved "
                f"tensors were freed)", hint="pass retain_graph=True to the first backward()")

    @property
    def inputs(self):
        """The inputs. Those the rule reads values of (prim.saves) must be unmodified since."""
        self._check_alive()
        saves = self.prim.saves
        for i, (t, v) in enumerate(zip(self._inputs, self._versions)):
            if t._version[0] != v and (saves is None or i in saves):
                raise InplaceError(
                    f"{self.name}: a tensor of shape {list(t.shape)} needed for gradient "
                    f"computation was modified by an in-place operation (version {v} -> "
                    f"{t._version[0]})",
                    hint="use the out-of-place op (x = x + 1 instead of x += 1), or .clone() first")
        return self._inputs

    @property
    def out(self):
        self._check_alive()
        live = self._out()
        if live is not None and live.grad_fn is self and live._version[0] == self._out_version:
            return live  # keeps history, so double backward sees through it
        saves = self.prim.saves
        if self._out_saved._version[0] != self._out_version and (saves is None or "out" in saves):
            raise InplaceError(f"{self.name}: its output was modified by an in-place operation")
        return self._out_saved

    def keep_old_value(self, t) -> None:
        """`t`, an input of this node, is about to be overwritten by the in-place op this node
        records (`h.mul_(3)`): the rule keeps a copy of the old value (PyTorch's "original
        self") instead of failing the version check at backward time."""
        saves = self.prim.saves
        if self._inputs is None:
            return
        inputs, versions = list(self._inputs), list(self._versions)
        for i, x in enumerate(inputs):
            if x is t and versions[i] == t._version[0] and (saves is None or i in saves):
                old = t._alias()
                old._data = old._data.copy()  # an ndarray, or a traced value's snapshot
                old._version = [0]
                old.requires_grad, old.grad_fn = t.requires_grad, t.grad_fn
                inputs[i], versions[i] = old, 0
        self._inputs, self._versions = tuple(inputs), tuple(versions)

    def release(self):
        self._inputs = self._out_saved = None


# Non-leaf tensors whose gradient backward() should keep (Tensor.retain_grad), by id. Weak
# values: a tensor that dies leaves by itself. Looked up by the tensor's grad_fn at backward
# time, so after an in-place op the gradient is that of the new value, as in PyTorch.
_retaining: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()


def retain_grad(t) -> None:
    if not t.requires_grad:
        raise AutogradError("retain_grad: can't retain the gradient of a tensor that does not "
                            "require grad", hint="call retain_grad() on a result of ops on "
                                                 "tensors with requires_grad=True")
    if t.grad_fn is not None:  # leaves keep their .grad anyway: a no-op, as in PyTorch
        _retaining[id(t)] = t


def retains_grad(t) -> bool:
    return t.grad_fn is not None and _retaining.get(id(t)) is t


def _retained_by_node() -> dict:
    """id(grad_fn) -> the retaining tensors whose current value that node computes."""
    found: dict = {}
    for t in list(_retaining.values()):
        if t.grad_fn is not None:
            found.setdefault(id(t.grad_fn), []).append(t)
    return found


def _keep_grad(t, g) -> None:
    g = ops.copy(g)  # a fresh buffer, as for leaves
    t.grad = g if t.grad is None else t.grad + g


def _topological_order(roots):
    """Nodes reachable from roots, each after every node that consumes its output."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.next))]
        while stack:
            node, children = stack[-1]
            for child, _ in children:
                if child is not None and id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(child.next)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def _accumulate(store: dict, key, grad):
    prev = store.get(key)
    store[key] = grad if prev is None else prev + grad


def _root_grads(tensors, grad_tensors):
    roots = []
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise AutogradError(
                f"element of shape {list(t.shape)} does not require grad and has no grad_fn",
                hint="call .requires_grad_() on the leaf tensors you want gradients for")
        if g is None:
            if t.numel() != 1:
                raise AutogradError(
                    f"grad can be implicitly created only for scalar outputs, got shape "
                    f"{list(t.shape)}",
                    hint="pass gradient=... to backward(), or reduce the output first (.sum())")
            g = ops.full(shape=tuple(t.shape), value=1, dtype=t.dtype)
            if t.is_cuda:  # the seed lives where the output does
                g = g.to(t.device)
        elif tuple(g.shape) != tuple(t.shape):
            raise AutogradError(f"gradient has shape {list(g.shape)} but the output has shape "
                                f"{list(t.shape)}")
        roots.append((t, g))
    return roots


def run_backward(tensors, grad_tensors, retain_graph, create_graph, capture=None):
    """The reverse sweep. With `capture` (a list of tensors) gradients are returned for
    those instead of accumulated into leaves' `.grad`. While tracing, the tracer records
    a gradient request instead, which the autograd pass (passes/autograd.py) expands."""
    from . import _tensor
    from ._tensor import as_tensor_list
    tracer = _tensor._tracer
    if tracer is None:
        return _sweep(tensors, grad_tensors, retain_graph, create_graph, capture)
    tensors = as_tensor_list(tensors)
    grad_tensors = as_tensor_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    roots = _root_grads(tensors, grad_tensors)
    recorded = _topological_order([t.grad_fn for t in tensors])
    for node in recorded:
        node._check_alive()  # backward through a released graph fails, as in eager mode
    result = tracer.backward([t for t, _ in roots], [g for _, g in roots], create_graph, capture)
    if not (create_graph if retain_graph is None else retain_graph):
        for node in recorded:
            node.release()
    return result


def _sweep(tensors, grad_tensors, retain_graph, create_graph, capture=None):
    from ._tensor import as_tensor_list

    tensors = as_tensor_list(tensors)
    grad_tensors = as_tensor_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    retain_graph = create_graph if retain_graph is None else retain_graph
    node_grads: dict = {}  # id(node) -> grad of its output
    leaf_grads: dict = {}  # id(leaf) -> grad
    leaves: dict = {}
    captured_nodes = {id(t.grad_fn): t for t in (capture or []) if t.grad_fn is not None}
    captured_grads: dict = {}
    retained = _retained_by_node() if _retaining else {}

    with _grad_mode.set_grad_enabled(create_graph):
        for t, g in _root_grads(tensors, grad_tensors):
            if t.grad_fn is None:
                leaves[id(t)] = t
                _accumulate(leaf_grads, id(t), g)
            else:
                _accumulate(node_grads, id(t.grad_fn), g)
        order = _topological_order([t.grad_fn for t in tensors])
        for node in order:
            g = node_grads.pop(id(node), None)
            if g is None:
                continue
            if id(node) in captured_nodes:
                captured_grads[id(captured_nodes[id(node)])] = g
            for t in retained.get(id(node), ()):
                _keep_grad(t, g)
            grads = node.prim.vjp(node, g)
            for (child, leaf), grad in zip(node.next, grads):
                if grad is None:
                    continue
                if child is not None:
                    _accumulate(node_grads, id(child), grad)
                elif leaf is not None:
                    leaves[id(leaf)] = leaf
                    _accumulate(leaf_grads, id(leaf), grad)
            if not retain_graph:
                node.release()

        if capture is not None:
            captured_grads.update(leaf_grads)
            return [captured_grads.get(id(t)) for t in capture]
        for key, grad in leaf_grads.items():
            leaf = leaves[key]
            grad = ops.copy(grad)  # a fresh buffer: never aliased with another grad or view
            if grad.dtype is not leaf.dtype:
                grad = ops.cast(grad, dtype=leaf.dtype)
            leaf.grad = grad if leaf.grad is None else leaf.grad + grad
    return None


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    run_backward(tensors, grad_tensors, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of outputs with respect to inputs, returned (not accumulated into .grad)."""
    from ._tensor import as_tensor_list

    inputs = as_tensor_list(inputs)
    for t in inputs:
        if not t.requires_grad:
            raise AutogradError(f"grad: an input of shape {list(t.shape)} does not require grad")
    result = run_backward(outputs, grad_outputs, retain_graph, create_graph, capture=inputs)
    for t, g in zip(inputs, result):
        if g is None and not allow_unused:
            raise AutogradError(
                f"grad: an input of shape {list(t.shape)} was not used to compute the outputs",
                hint="pass allow_unused=True to get None for it")
    return tuple(result)


def zero_grads(params, set_to_none: bool = True) -> None:
    """What Module.zero_grad and Optimizer.zero_grad do: drop each .grad, or zero it in
    place (detached first, as PyTorch does)."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad = p.grad.detach()
            p.grad.zero_()
