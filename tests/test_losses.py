"""Losses against numpy references (always) and PyTorch (when installed), values and grads."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.nn.functional as F
from tracecc.runtime.errors import DTypeError, IndexError_, InvalidArgumentError, ShapeError

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

RNG = np.random.default_rng(1)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(x, y, atol=1e-5):
    x = x.detach().numpy() if isinstance(x, tc.Tensor) else x
    y = y.detach().numpy() if torch is not None and isinstance(y, torch.Tensor) else y
    np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5)


def log_softmax_ref(x, axis=1):
    m = x.max(axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis, keepdims=True))


def cross_entropy_ref(x, y, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    """Straight from the definition, for (N, C) logits and class indices."""
    n, c = x.shape
    logp = log_softmax_ref(x.astype(np.float64))
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    losses, denom = np.zeros(n), 0.0
    for i in range(n):
        if y[i] == ignore_index:
            continue
        target = np.full(c, smoothing / c)
        target[y[i]] += 1 - smoothing
        # PyTorch weights the true-class term by w[y] and each smoothing term by w[class]
        nll = -logp[i, y[i]] * w[y[i]]
        smooth = -(logp[i] * w).sum() / c
        losses[i] = (1 - smoothing) * nll + smoothing * smooth
        denom += w[y[i]]
    if reduction == "none":
        return losses
    return losses.sum() / denom if reduction == "mean" else losses.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_reference(reduction, smoothing, weighted):
    x, y = arr(6, 5), np.array([0, 4, 2, -100, 1, 4])
    weight = np.abs(arr(5)) + 0.1 if weighted else None
    out = F.cross_entropy(tc.tensor(x), tc.tensor(y), weight=tc.tensor(weight) if weighted else None,
                          reduction=reduction, label_smoothing=smoothing)
    close(out, cross_entropy_ref(x, y, weight, -100, reduction, smoothing))


def test_cross_entropy_loss_module_gradient_by_central_differences():
    x, y = RNG.standard_normal((4, 3)), np.array([2, 0, 1, 1])
    xt = tc.tensor(x, requires_grad=True)
    nn.CrossEntropyLoss(label_smoothing=0.1)(xt, tc.tensor(y)).backward()
    eps, num = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += eps
        lo[i] -= eps
        up, down = cross_entropy_ref(hi, y, smoothing=0.1), cross_entropy_ref(lo, y, smoothing=0.1)
        num[i] = (up - down) / (2 * eps)
    close(xt.grad, num, atol=1e-7)


def test_cross_entropy_spatial_probabilities_and_unbatched():
    x, y = arr(2, 4, 3, 3), RNG.integers(0, 4, (2, 3, 3))
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, 4)
    close(F.cross_entropy(tc.tensor(x), tc.tensor(y)), cross_entropy_ref(flat_x, y.reshape(-1)))
    probs = np.abs(arr(3, 4))
    probs /= probs.sum(1, keepdims=True)
    logits = arr(3, 4)
    close(F.cross_entropy(tc.tensor(logits), tc.tensor(probs)),
          -(log_softmax_ref(logits) * probs).sum(1).mean())
    close(F.cross_entropy(tc.tensor(logits[0]), tc.tensor(2)), -log_softmax_ref(logits[0], 0)[2])


def test_all_ignored_mean_is_nan_like_pytorch():
    out = F.cross_entropy(tc.zeros(2, 3), tc.tensor([-100, -100]))
    assert np.isnan(out.item())


def test_nll_loss_and_errors():
    logp = log_softmax_ref(arr(4, 3))
    y = np.array([0, 2, 1, 1])
    close(F.nll_loss(tc.tensor(logp), tc.tensor(y)), -logp[np.arange(4), y].mean())
    close(nn.NLLLoss(reduction="sum", ignore_index=1)(tc.tensor(logp), tc.tensor(y)),
          -(logp[0, 0] + logp[1, 2]))
    with pytest.raises(DTypeError):
        F.nll_loss(tc.tensor(logp), tc.tensor(y.astype(np.float32)))
    with pytest.raises(ShapeError, match=r"\[3\]"):
        F.nll_loss(tc.tensor(logp), tc.tensor(y[:3]))
    with pytest.raises(IndexError_):
        F.cross_entropy(tc.tensor(logp), tc.tensor([0, 1, 2, 3]))  # class 3 of 3
    with pytest.raises(InvalidArgumentError, match="reduction"):
        F.mse_loss(tc.zeros(2), tc.zeros(2), reduction="avg")


def test_regression_losses_match_numpy():
    a, b = arr(5, 3), arr(5, 3)
    d = a - b
    close(nn.MSELoss()(tc.tensor(a), tc.tensor(b)), (d**2).mean())
    close(nn.MSELoss(reduction="sum")(tc.tensor(a), tc.tensor(b)), (d**2).sum(), atol=1e-4)
    close(nn.L1Loss(reduction="none")(tc.tensor(a), tc.tensor(b)), np.abs(d))
    ad = np.abs(d)
    close(nn.SmoothL1Loss(beta=0.5)(tc.tensor(a), tc.tensor(b)),
          np.where(ad < 0.5, 0.5 * ad**2 / 0.5, ad - 0.25).mean())
    close(nn.HuberLoss(delta=0.5)(tc.tensor(a), tc.tensor(b)),
          np.where(ad < 0.5, 0.5 * ad**2, 0.5 * (ad - 0.25)).mean())
    p = np.abs(arr(4, 3))
    p /= p.sum(1, keepdims=True)
    logq = log_softmax_ref(arr(4, 3))
    close(nn.KLDivLoss(reduction="batchmean")(tc.tensor(logq), tc.tensor(p)),
          (p * (np.log(p) - logq)).sum() / 4)


def test_binary_cross_entropy_losses_match_numpy_and_stay_finite():
    x = arr(10) * 4
    y = (RNG.random(10) > 0.5).astype(np.float32)
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    bce = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    close(nn.BCELoss()(tc.tensor(s.astype(np.float32)), tc.tensor(y)), bce.mean(), atol=1e-4)
    close(nn.BCEWithLogitsLoss()(tc.tensor(x), tc.tensor(y)), bce.mean())
    pw = np.float32(3.0)
    weighted = -(pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    close(nn.BCEWithLogitsLoss(pos_weight=tc.tensor([pw]))(tc.tensor(x), tc.tensor(y)), weighted.mean())
    w = np.abs(arr(10))
    close(F.binary_cross_entropy(tc.tensor(s.astype(np.float32)), tc.tensor(y), weight=tc.tensor(w),
                                 reduction="sum"), (bce * w).sum(), atol=1e-4)
    # extreme logits: the log-sum-exp form neither overflows nor loses the loss
    big = F.binary_cross_entropy_with_logits(tc.tensor([1000.0, -1000.0]), tc.tensor([0.0, 1.0]),
                                             reduction="none")
    close(big, [1000.0, 1000.0])
    # probabilities of exactly 0 and 1: each log is clamped at -100, as PyTorch
    close(F.binary_cross_entropy(tc.tensor([0.0, 1.0]), tc.tensor([1.0, 0.0]), reduction="none"),
          [100.0, 100.0])
    with pytest.raises(ShapeError):
        F.binary_cross_entropy(tc.zeros(3), tc.zeros(3, 1))


@needs_torch
@pytest.mark.parametrize("name,kwargs", [
    ("cross_entropy", dict(label_smoothing=0.1, ignore_index=2)),
    ("cross_entropy", dict(reduction="sum")),
    ("nll_loss", dict(reduction="none")),
    ("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", dict(beta=0.3)), ("huber_loss", dict(delta=2.0)),
    ("binary_cross_entropy_with_logits", dict(pos_weight=None)), ("binary_cross_entropy", {}),
    ("kl_div", dict(reduction="batchmean", log_target=True)),
])
def test_losses_match_torch_with_gradients(name, kwargs):
    x = arr(6, 4)
    if name in ("cross_entropy", "nll_loss"):
        target = RNG.integers(0, 4, 6)
        weight = np.abs(arr(4)) + 0.5
        kwargs = dict(kwargs, weight=weight)
    elif name == "binary_cross_entropy":
        x = 1 / (1 + np.exp(-x))
        target = (RNG.random((6, 4)) > 0.5).astype(np.float32)
    else:
        target = arr(6, 4)
    ours_kw = {k: tc.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    theirs_kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    xt, xr = tc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = getattr(F, name)(xt, tc.tensor(target), **ours_kw)
    ref = getattr(torch.nn.functional, name)(xr, torch.tensor(target), **theirs_kw)
    close(out, ref)
    out.sum().backward(), ref.sum().backward()
    close(xt.grad, xr.grad)
