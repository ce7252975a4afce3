"""Loss functions as decompositions: log_softmax + gather for the classification losses,
plain pointwise math and a reduction for the rest. Semantics follow torch.nn.functional,
including ignore_index, class weights, label smoothing and the three reductions."""

from __future__ import annotations

from .. import _functions as T
from .._composite import composite
from .._tensor import Tensor
from ..runtime import dtypes
from ..runtime.errors import DTypeError, InvalidArgumentError, ShapeError


def _reduction(size_average, reduce, reduction: str) -> str:
    """The legacy size_average/reduce flags, mapped to a reduction as PyTorch does."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else ("mean" if size_average else "sum")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return T.mean(loss)
    if reduction == "sum":
        return T.sum(loss)
    if reduction == "none":
        return loss
    raise InvalidArgumentError(f"{reduction!r} is not a valid value for reduction",
                               hint="use 'mean', 'sum' or 'none'")


def _class_view(weight: Tensor, ndim: int, class_dim: int) -> Tensor:
    """Per-class (C,) weights shaped to broadcast along the class dimension."""
    return T.reshape(weight, tuple(-1 if d == class_dim else 1 for d in range(ndim)))


@composite("nll_loss")
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """-input[n, target[n]] * weight[target[n]]; 'mean' divides by the summed weights of the
    targets that are not ignore_index."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.dtype.category != dtypes.INT:
        raise DTypeError(f"nll_loss: target must hold class indices (an integer tensor), got "
                         f"{target.dtype}", hint="for class probabilities use cross_entropy")
    unbatched = input.ndim == 1
    if unbatched:
        input, target = T.unsqueeze(input, 0), T.unsqueeze(target, 0)
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if input.ndim < 2 or tuple(target.shape) != expected:
        raise ShapeError(f"nll_loss: target of shape {list(target.shape)} does not fit input of "
                         f"shape {list(input.shape)} (expected target shape {list(expected)})")
    ignored = T.eq(target, ignore_index)
    safe = T.where(ignored, 0, target)  # gather needs a valid class even where ignored
    picked = T.squeeze(T.gather(input, 1, T.unsqueeze(safe, 1)), 1)
    w = T.cast(T.logical_not(ignored), input.dtype)
    if weight is not None:
        if tuple(weight.shape) != (input.shape[1],):
            raise ShapeError(f"nll_loss: weight of shape {list(weight.shape)} should have one "
                             f"entry per class ({input.shape[1]})")
        class_w = T.reshape(T.index_select(weight, 0, T.reshape(safe, (-1,))), tuple(safe.shape))
        w = T.mul(w, class_w)
    loss = T.neg(T.mul(picked, w))
    if reduction == "mean":
        return T.div(T.sum(loss), T.sum(w))
    if unbatched and reduction == "none":
        return T.squeeze(loss, 0)
    return _reduce(loss, reduction)


@composite("cross_entropy")
def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dimension (1, or 0 for unbatched input) then nll_loss; a
    floating-point target holds class probabilities instead of indices."""
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise InvalidArgumentError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, "
                                   f"got {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_dim]
    logp = T.log_softmax(input, class_dim)
    if target.dtype.is_floating_point:
        return _cross_entropy_probs(logp, target, weight, reduction, label_smoothing, class_dim)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return nll
    # PyTorch: (1 - eps) * nll + eps / C * (the loss against a uniform target)
    weighted = logp if weight is None else T.mul(logp, _class_view(weight, logp.ndim, class_dim))
    ignored = T.eq(target, ignore_index)
    smooth = T.where(ignored, 0.0, T.neg(T.sum(weighted, class_dim)))
    if reduction == "mean":
        valid = T.logical_not(ignored)
        if weight is None:
            denom = T.sum(T.cast(valid, logp.dtype))
        else:
            target_w = T.index_select(weight, 0, T.reshape(T.where(ignored, 0, target), (-1,)))
            denom = T.sum(T.mul(target_w, T.cast(T.reshape(valid, (-1,)), logp.dtype)))
        smooth = T.div(T.sum(smooth), denom)
    else:
        smooth = _reduce(smooth, reduction)
    return T.add(T.mul(nll, 1.0 - label_smoothing), T.mul(smooth, label_smoothing / n_classes))


def _cross_entropy_probs(logp, target, weight, reduction, label_smoothing, class_dim):
    if tuple(target.shape) != tuple(logp.shape):
        raise ShapeError(f"cross_entropy: a probability target must have the input's shape "
                         f"{list(logp.shape)}, got {list(target.shape)}")
    n_classes = logp.shape[class_dim]
    if label_smoothing > 0:
        target = T.add(T.mul(target, 1.0 - label_smoothing), label_smoothing / n_classes)
    terms = T.mul(logp, target)
    if weight is not None:
        terms = T.mul(terms, _class_view(weight, logp.ndim, class_dim))
    loss = T.neg(T.sum(terms, class_dim))
    if reduction == "mean":
        return T.div(T.sum(loss), max(1, logp.numel() // n_classes))
    return _reduce(loss, reduction)


def _check_same_shape(op, input, target):
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(f"{op}: target size {list(target.shape)} must be the same as input size "
                         f"{list(input.shape)}")


@composite("mse_loss")
def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
             reduction: str = "mean") -> Tensor:
    diff = T.sub(input, target)
    return _reduce(T.mul(diff, diff), _reduction(size_average, reduce, reduction))


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
            reduction: str = "mean") -> Tensor:
    return _reduce(T.abs(T.sub(input, target)), _reduction(size_average, reduce, reduction))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    diff = T.abs(T.sub(input, target))
    if beta == 0.0:
        loss = diff
    else:
        loss = T.where(T.lt(diff, beta), T.div(T.mul(T.mul(diff, diff), 0.5), beta),
                       T.sub(diff, 0.5 * beta))
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    diff = T.abs(T.sub(input, target))
    loss = T.where(T.lt(diff, delta), T.mul(T.mul(diff, diff), 0.5),
                   T.mul(T.sub(diff, 0.5 * delta), delta))
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """target * (log target - input), input being log-probabilities; 0 where target is 0."""
    reduction = _reduction(size_average, reduce, reduction)
    if log_target:
        loss = T.mul(T.exp(target), T.sub(target, input))
    else:
        safe_log = T.log(T.where(T.gt(target, 0), target, 1.0))
        loss = T.mul(target, T.sub(safe_log, input))
    if reduction == "batchmean":
        return T.div(T.sum(loss), input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """-(t log x + (1 - t) log(1 - x)), each log clamped at -100 as PyTorch does."""
    _check_same_shape("binary_cross_entropy", input, target)
    log_x = T.clamp(T.log(input), min=-100.0)
    log_1mx = T.clamp(T.log(T.sub(1.0, input)), min=-100.0)
    loss = T.neg(T.add(T.mul(target, log_x), T.mul(T.sub(1.0, target), log_1mx)))
    if weight is not None:
        loss = T.mul(loss, weight)
    return _reduce(loss, _reduction(size_average, reduce, reduction))


@composite("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """BCE on sigmoid(input), computed stably from the logits (log-sum-exp form)."""
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    max_val = T.clamp(T.neg(input), min=0.0)
    # log(1 + exp(-x)) = max_val + log(exp(-max_val) + exp(-x - max_val)), never overflowing
    log_term = T.add(T.log(T.add(T.exp(T.neg(max_val)), T.exp(T.sub(T.neg(input), max_val)))), max_val)
    if pos_weight is not None:
        log_term = T.mul(T.add(T.mul(T.sub(pos_weight, 1.0), target), 1.0), log_term)
    loss = T.add(T.mul(T.sub(1.0, target), input), log_term)
    if weight is not None:
        loss = T.mul(loss, weight)
    return _reduce(loss, _reduction(size_average, reduce, reduction))
