"""Optimizer: parameter groups, per-parameter state, zero_grad and state_dict, as torch.optim.

State lives in tensors (momentum buffers, Adam's moments, even the step count), and
subclasses update parameters and state with in-place tensor ops under no_grad. That is
what lets @tracecc.compile lift the state into a traced training step and write it back.
"""

from __future__ import annotations

import copy
import functools
from collections import defaultdict
from typing import Any, Callable, Iterable

from .. import _grad_mode, _tensor as _tensor_mod
from .._tensor import Tensor
from ..runtime.errors import InvalidArgumentError, StateDictError


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _check_positive(name: str, value, allow_zero: bool = True) -> None:
    if isinstance(value, Tensor):
        return
    if value < 0 or (not allow_zero and value == 0):
        raise InvalidArgumentError(f"Invalid {name} value: {value}")


class ParamGroup(dict):
    """A param_groups entry. Inside a compiled function the optimizer reads "lr" as a graph
    input (Optimizer._lr), which is not guarded; a read from Python (user code computing
    with the lr) is noted here, so that a graph that baked that value in keeps a guard on
    it instead of going silently stale."""

    lr_read = False

    def __getitem__(self, key):
        if key == "lr" and _tensor_mod._tracer is not None:
            self.lr_read = True
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        return self[key] if key in self else default


class Optimizer:
    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        groups = list(params)
        if not groups:
            raise InvalidArgumentError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        group = ParamGroup(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise InvalidArgumentError("can't optimize a non-leaf Tensor",
                                           hint="optimize the leaf tensors (parameters) instead")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise InvalidArgumentError(f"parameter group didn't specify a value of required "
                                           f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise InvalidArgumentError("some parameters appear in more than one parameter group")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise InvalidArgumentError("a parameter group contains the same parameter twice")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        from ..autograd import zero_grads
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure: Callable | None = None):
        raise NotImplementedError

    def _lr(self, index: int):
        """param_groups[index]["lr"] for step(): the Python number in eager mode; inside a
        compiled function a 0-d float64 graph input that each compiled call reads from the
        group, so an lr schedule does not recompile. Updates written with it compute what
        they compute with the float (float64 ops round as Python's, casts as constants)."""
        lr = dict.__getitem__(self.param_groups[index], "lr")  # (not a Python read: see ParamGroup)
        tracer = _tensor_mod._tracer
        if tracer is None or type(lr) not in (float, int):
            return lr
        return tracer.hyper_input(self, index, "lr", lr)

    def _run_closure(self, closure):
        if closure is None:
            return None
        with _grad_mode.enable_grad():
            return closure()

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> dict:
        """{'state': {index: {name: tensor}}, 'param_groups': [{..., 'params': [index...]}]},
        parameters numbered in group order as PyTorch does."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        saved_groups = state_dict.get("param_groups")
        if saved_groups is None or "state" not in state_dict:
            raise StateDictError("optimizer state_dict must have 'state' and 'param_groups'")
        if len(saved_groups) != len(self.param_groups):
            raise StateDictError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                                 f"this optimizer has {len(self.param_groups)}")
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(mine["params"]) != len(saved["params"]):
                raise StateDictError(f"loaded state dict contains a parameter group {i} of "
                                     f"{len(saved['params'])} parameters that doesn't match the "
                                     f"size of optimizer's group ({len(mine['params'])})")
        by_index = {}
        for mine, saved in zip(self.param_groups, saved_groups):
            by_index.update(zip(saved["params"], mine["params"]))
        self.state = defaultdict(dict)
        for key, values in state_dict["state"].items():
            param = by_index.get(int(key))
            if param is None:
                continue
            self.state[param] = {name: self._cast_state(param, name, v) for name, v in values.items()}
        for mine, saved in zip(self.param_groups, saved_groups):
            for name, value in saved.items():
                if name != "params":
                    mine[name] = copy.deepcopy(value)

    @staticmethod
    def _cast_state(param: Tensor, name: str, value):
        """A private copy of a state tensor; floating state takes the parameter's dtype (the
        step count keeps its own, as PyTorch)."""
        if not isinstance(value, Tensor):
            return copy.deepcopy(value)
        value = value.detach()
        if value.dtype.is_floating_point and name != "step":
            value = value.to(param.dtype)
        return value.clone()

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"


def _use_grad(step):
    """step() runs without recording history (but a closure may record)."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        with _grad_mode.no_grad():
            return step(self, *args, **kwargs)

    return wrapper
