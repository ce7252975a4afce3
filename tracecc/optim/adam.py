"""Adam and AdamW (torch.optim.Adam / AdamW, with amsgrad).

The step count is a tensor, and the bias corrections are computed from it with tensor
ops: a compiled training step then needs no recompilation as the step count grows.
"""

from __future__ import annotations

from .. import _functions as T
from ..creation import tensor, zeros_like
from ..runtime import dtypes
from ..runtime.errors import InvalidArgumentError
from .optimizer import Optimizer, _check_positive, _use_grad


class Adam(Optimizer):
    _decoupled = False  # AdamW: weight decay scales the parameter, not the gradient

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False):
        _check_positive("learning rate", lr)
        _check_positive("epsilon", eps)
        _check_positive("weight_decay", weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise InvalidArgumentError(f"Invalid beta parameter at index {i}: {beta}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _init_state(self, p, amsgrad: bool) -> dict:
        state = self.state[p]
        state["step"] = tensor(0.0, dtype=dtypes.float32)
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)
        if amsgrad:
            state["max_exp_avg_sq"] = zeros_like(p)
        return state

    @_use_grad
    def step(self, closure=None):
        loss = self._run_closure(closure)
        for gi, group in enumerate(self.param_groups):
            lr, (beta1, beta2), eps, wd = self._lr(gi), group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = T.neg(p.grad) if group["maximize"] else p.grad
                state = self.state[p] if self.state[p] else self._init_state(p, group["amsgrad"])
                step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
                step.add_(1)
                if wd != 0:
                    if self._decoupled:
                        p.mul_(1 - lr * wd)
                    else:
                        grad = T.add(grad, p, alpha=wd)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                # 1 - beta**step cancels badly in float32 (1 - 0.999 loses 4 digits): in float64
                step64 = T.cast(step, dtypes.float64)
                bias_correction1 = T.sub(1, T.pow(beta1, step64))
                bias_correction2_sqrt = T.sqrt(T.sub(1, T.pow(beta2, step64)))
                second = exp_avg_sq
                if group["amsgrad"]:
                    second = state["max_exp_avg_sq"].maximum_(exp_avg_sq)
                denom = T.add(T.div(T.sqrt(second), bias_correction2_sqrt), eps)
                step_size = T.div(lr, bias_correction1)
                p.sub_(T.mul(T.div(exp_avg, denom), step_size))
        return loss


class AdamW(Adam):
    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
