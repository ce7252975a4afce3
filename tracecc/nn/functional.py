"""tracecc.nn.functional: the stateless layers, as torch.nn.functional.

Every function here is a composite: a short decomposition into tracecc ops (and so into
the registry's primitives), which the compiler traces through like any other code. None
of them touches a tensor's numpy payload. Convolution, pooling and padding live in
_windows.py, losses in _losses.py, attention in _attention.py; all are re-exported here.
"""

from __future__ import annotations

import math

from .. import _functions as T
from .. import _grad_mode
from .. import random as _random
from .._composite import composite
from .._tensor import Tensor
from ..runtime import dtypes
from ..runtime.errors import DTypeError, InvalidArgumentError, ShapeError
from ._attention import multi_head_attention_forward, scaled_dot_product_attention  # noqa: F401
from ._losses import (  # noqa: F401
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, huber_loss, kl_div,
    l1_loss, mse_loss, nll_loss, smooth_l1_loss,
)
from ._windows import (  # noqa: F401
    adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d, conv_transpose2d, max_pool2d, max_unpool2d,
    pad, unfold,
)


# ---------------------------------------------------------------- linear / embedding
@composite("linear")
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias."""
    out = T.matmul(input, T.t(weight))
    return out if bias is None else T.add(out, bias)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm=None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of weight picked by the integer indices in input: shape input.shape + (dim,)."""
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise InvalidArgumentError("embedding: max_norm, scale_grad_by_freq and sparse are not "
                                   "supported yet")
    if input.dtype.category != dtypes.INT:
        raise DTypeError(f"embedding: indices must be an integer tensor, got {input.dtype}",
                         hint="convert with .long()")
    flat = T.reshape(input, (-1,))
    rows = T.index_select(weight, 0, flat)
    out = T.reshape(rows, tuple(input.shape) + (weight.shape[1],))
    if padding_idx is not None and out.requires_grad:
        # Same values, but no gradient flows into the padding row (as in PyTorch).
        if padding_idx < 0:
            padding_idx += weight.shape[0]
        keep = T.unsqueeze(T.ne(input, padding_idx), -1)
        out = T.where(keep, out, out.detach())
    return out


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape tensor.shape + (num_classes,) with a 1 at each index."""
    if tensor.dtype.category != dtypes.INT:
        raise DTypeError(f"one_hot is only applicable to index tensors, got {tensor.dtype}")
    if num_classes == -1:
        num_classes = int(T.amax(tensor).item()) + 1 if tensor.numel() else 0  # data-dependent shape
    classes = T.arange_(num_classes, tensor.dtype)
    return T.cast(T.eq(T.unsqueeze(tensor, -1), classes), dtypes.int64)


# ---------------------------------------------------------------- activations
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu_() if inplace else T.relu(input)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    out = T.clamp(input, min_val, max_val)
    return input.copy_(out) if inplace else out


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    out = T.where(T.gt(input, 0), input, T.mul(input, negative_slope))
    return input.copy_(out) if inplace else out


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    out = T.where(T.gt(input, 0), input, T.mul(T.expm1(input), alpha))
    return input.copy_(out) if inplace else out


@composite("gelu")
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) with the exact erf form, or PyTorch's tanh approximation."""
    if approximate == "none":
        return T.mul(T.mul(input, 0.5), T.add(T.erf(T.mul(input, 1 / math.sqrt(2.0))), 1.0))
    if approximate == "tanh":
        # x/2 * (1 + tanh(z)) written as x * sigmoid(2z), the same function: one exp per
        # element instead of tanh's expm1 and division (the compiled W1 workload ran 2x
        # faster), and 2z = x * (c + c*0.044715*x^2): one multiply fewer than x^3's
        c = 2.0 * math.sqrt(2.0 / math.pi)
        inner = T.mul(input, T.add(T.mul(T.mul(input, input), c * 0.044715), c))
        return T.mul(input, T.sigmoid(inner))
    raise InvalidArgumentError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@composite("silu")
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    out = T.mul(input, T.sigmoid(input))
    return input.copy_(out) if inplace else out


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    out = T.mul(input, T.tanh(softplus(input)))
    return input.copy_(out) if inplace else out


@composite("softplus")
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear above threshold (for stability, as PyTorch)."""
    scaled = T.mul(input, beta)
    soft = T.div(T.log1p(T.exp(T.minimum(scaled, threshold))), beta)
    return T.where(T.gt(scaled, threshold), input, soft)


def logsigmoid(input: Tensor) -> Tensor:
    return T.neg(softplus(T.neg(input)))


def sigmoid(input: Tensor) -> Tensor:
    return T.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return T.tanh(input)


def _softmax_dim(ndim: int) -> int:
    # PyTorch's legacy choice when dim is not given
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return T.softmax(input, _softmax_dim(input.ndim) if dim is None else dim, dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return softmax(T.neg(input), dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return T.log_softmax(input, _softmax_dim(input.ndim) if dim is None else dim, dtype)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input / max(||input||_p over dim, eps)."""
    return T.div(input, T.clamp(T.norm(input, p, dim, keepdim=True), min=eps))


# ---------------------------------------------------------------- dropout
def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not
    training. The mask is drawn from tracecc.random's default generator."""
    if not 0.0 <= p <= 1.0:
        raise InvalidArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = T.mul(input, 0.0)
    else:
        keep = T.ge(_random.rand(tuple(input.shape), dtype=input.dtype), p)
        out = T.mul(T.mul(input, T.cast(keep, input.dtype)), 1.0 / (1.0 - p))
    return input.copy_(out) if inplace else out


# ---------------------------------------------------------------- normalisation
def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """A per-channel (C,) tensor shaped to broadcast against (N, C, ...) input."""
    return T.reshape(t, (1, t.shape[0]) + (1,) * (ndim - 2))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float | Tensor = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise over every dimension but 1 (channels). In training, batch statistics are
    used and the running ones updated in place (unbiased variance, as PyTorch). momentum may
    be a 0-d tensor (BatchNorm's cumulative average keeps it one, so tracing needs no .item())."""
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expected at least 2-d input (N, C, ...), got shape "
                         f"{list(input.shape)}")
    axes = (0,) + tuple(range(2, input.ndim))
    count = input.numel() // input.shape[1]
    if training:
        if count <= 1:
            raise ShapeError(f"Expected more than 1 value per channel when training, got input "
                             f"size {list(input.shape)}")
        mean = T.mean(input, axes)
        var = T.var(input, axes, correction=0)
        if running_mean is not None and running_var is not None:
            with _grad_mode.no_grad():
                running_mean.mul_(1 - momentum).add_(T.mul(mean.detach(), momentum))
                unbiased = T.mul(var.detach(), count / (count - 1))
                running_var.mul_(1 - momentum).add_(T.mul(unbiased, momentum))
    else:
        if running_mean is None or running_var is None:
            raise InvalidArgumentError("batch_norm: running_mean and running_var are needed when "
                                       "training=False")
        mean, var = running_mean, running_var
    out = T.mul(T.sub(input, _channel_view(mean, input.ndim)),
                _channel_view(T.rsqrt(T.add(var, eps)), input.ndim))
    if weight is not None:
        out = T.mul(out, _channel_view(weight, input.ndim))
    if bias is not None:
        out = T.add(out, _channel_view(bias, input.ndim))
    return out


@composite("layer_norm")
def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last len(normalized_shape) dimensions."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape:
        raise ShapeError(f"layer_norm: normalized_shape {list(shape)} does not match the last "
                         f"dimensions of input of shape {list(input.shape)}")
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    mean = T.mean(input, axes, keepdim=True)
    centered = T.sub(input, mean)
    var = T.mean(T.mul(centered, centered), axes, keepdim=True)
    out = T.mul(centered, T.rsqrt(T.add(var, eps)))
    if weight is not None:
        out = T.mul(out, weight)
    if bias is not None:
        out = T.add(out, bias)
    return out


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    n, c = input.shape[0], input.shape[1]
    if c % num_groups:
        raise ShapeError(f"group_norm: {c} channels are not divisible into {num_groups} groups")
    grouped = T.reshape(input, (n, num_groups, -1))
    mean = T.mean(grouped, 2, keepdim=True)
    var = T.var(grouped, 2, keepdim=True, correction=0)
    out = T.reshape(T.mul(T.sub(grouped, mean), T.rsqrt(T.add(var, eps))), tuple(input.shape))
    if weight is not None:
        out = T.mul(out, _channel_view(weight, input.ndim))
    if bias is not None:
        out = T.add(out, _channel_view(bias, input.ndim))
    return out
