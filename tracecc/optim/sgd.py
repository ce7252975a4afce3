"""SGD with momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD)."""

from __future__ import annotations

from .. import _functions as T
from ..runtime.errors import InvalidArgumentError
from .optimizer import Optimizer, _check_positive, _use_grad


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        _check_positive("learning rate", lr)
        _check_positive("momentum", momentum)
        _check_positive("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise InvalidArgumentError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    @_use_grad
    def step(self, closure=None):
        loss = self._run_closure(closure)
        for gi, group in enumerate(self.param_groups):
            lr, momentum, dampening = self._lr(gi), group["momentum"], group["dampening"]
            neg_lr = -lr  # once per group (lr may be a traced tensor: one node)
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = T.neg(p.grad) if group["maximize"] else p.grad
                if group["weight_decay"] != 0:
                    grad = T.add(grad, p, alpha=group["weight_decay"])
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = T.clone(grad).detach()
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                    grad = T.add(grad, buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(T.mul(grad, neg_lr))  # = add_(grad, alpha=-lr); alpha must be a number
        return loss
