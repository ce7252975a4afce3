"""Parameter: a Tensor that a Module registers as learnable when assigned as an attribute."""

from __future__ import annotations

from .._tensor import Tensor
from ..runtime.errors import AutogradError


class Parameter(Tensor):
    """Shares memory with `data` (like torch.nn.Parameter) and requires grad by default.

    A Parameter is always a leaf: ops on it return plain Tensors with history.
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from ..creation import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expected a Tensor, got {type(data).__name__}")
        if requires_grad and not data.dtype.is_floating_point:
            raise AutogradError(f"Parameter: only floating point tensors can require gradients, "
                                f"got {data.dtype}", hint="pass requires_grad=False")
        self = Tensor.__new__(cls)
        self._data = data._data
        self._dtype = data._dtype
        self.grad = None
        self.grad_fn = None
        self._version = data._version  # same memory, same version counter
        self._base = None
        self.requires_grad = bool(requires_grad)
        return self

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # everything happens in __new__ (Tensor.__init__ would copy the data)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        copy = Parameter(self.detach().clone(), self.requires_grad)
        if self.grad is not None:
            copy.grad = self.grad.detach().clone()
        memo[id(self)] = copy
        return copy
