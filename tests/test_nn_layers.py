"""nn layers and nn.functional against numpy references (always) and PyTorch (when installed):
values, gradients, default initialisation statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.nn.functional as F
from tracecc.runtime.errors import InvalidArgumentError, ShapeError

try:
    import torch
except ImportError:  # the suite never needs PyTorch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

RNG = np.random.default_rng(0)


def arr(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def t(a, grad=False):
    return tc.tensor(a, requires_grad=grad)


def close(x, y, atol=1e-5, rtol=1e-5):
    x = x.detach().numpy() if isinstance(x, tc.Tensor) else x
    y = y.detach().numpy() if torch is not None and isinstance(y, torch.Tensor) else y
    np.testing.assert_allclose(x, y, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- numpy references
def conv2d_ref(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oc, oh, ow), np.float64)
    per = oc // groups
    for o in range(oc):
        g = o // per
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride[0]:i * stride[0] + dilation[0] * (kh - 1) + 1:dilation[0],
                           j * stride[1]:j * stride[1] + dilation[1] * (kw - 1) + 1:dilation[1]]
                out[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3))
    return out + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def pool_ref(x, k, s, p, reduce, pad_value):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = reduce(xp[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return out


def numeric_grad(fn, x: np.ndarray, eps=1e-6):
    """Central differences of the scalar fn at float64 x."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = fn(x)
        flat[i] = old - eps
        lo = fn(x)
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g


# ---------------------------------------------------------------- linear & init
def test_linear_matches_numpy_and_has_gradients():
    layer = nn.Linear(5, 3)
    x = arr(4, 5)
    out = layer(t(x))
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    close(out, x @ w.T + b)
    out.sum().backward()
    close(layer.weight.grad, np.ones((4, 3)).T @ x)
    close(layer.bias.grad, np.full(3, 4.0))
    assert nn.Linear(5, 3, bias=False).bias is None


def test_default_init_statistics_follow_pytorch():
    tc.manual_seed(0)
    fan_in = 400
    layer = nn.Linear(fan_in, 300)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) reduces to this
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.var() - bound**2 / 3) < 0.03 * bound**2 / 3
    assert abs(w.mean()) < 0.01 * bound
    assert np.abs(b).max() <= bound and b.std() > 0.4 * bound

    conv = nn.Conv2d(16, 32, 3)
    cb = 1 / math.sqrt(16 * 9)
    cw = conv.weight.detach().numpy()
    assert np.abs(cw).max() <= cb and abs(cw.var() - cb**2 / 3) < 0.1 * cb**2 / 3
    assert np.abs(conv.bias.detach().numpy()).max() <= cb

    emb = nn.Embedding(1000, 64).weight.detach().numpy()
    assert abs(emb.mean()) < 0.02 and abs(emb.std() - 1) < 0.02

    for norm in (nn.LayerNorm(7), nn.BatchNorm2d(7), nn.GroupNorm(7, 7)):
        assert (norm.weight.detach().numpy() == 1).all() and (norm.bias.detach().numpy() == 0).all()
    bn = nn.BatchNorm1d(4)
    assert (bn.running_mean.numpy() == 0).all() and (bn.running_var.numpy() == 1).all()
    assert bn.num_batches_tracked.dtype is tc.int64

    mha = nn.MultiheadAttention(16, 4)
    xb = math.sqrt(6 / (16 + 48))  # xavier_uniform_ on (3E, E)
    assert np.abs(mha.in_proj_weight.detach().numpy()).max() <= xb
    assert (mha.in_proj_bias.detach().numpy() == 0).all() and (mha.out_proj.bias.detach().numpy() == 0).all()


@needs_torch
def test_init_statistics_match_torch_distribution():
    """Same distribution family and bounds as torch's own default init (streams differ)."""
    torch.manual_seed(0)
    ours = nn.Linear(256, 512).weight.detach().numpy()
    theirs = torch.nn.Linear(256, 512).weight.detach().numpy()
    assert abs(np.abs(ours).max() - np.abs(theirs).max()) < 1e-3
    assert abs(ours.std() - theirs.std()) < 0.02 * theirs.std()


def test_init_functions():
    w = tc.empty(200, 300)
    nn.init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6 / 500)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.98 * bound
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 200)) < 0.03 * math.sqrt(2 / 200)
    nn.init.xavier_normal_(w)
    assert abs(w.numpy().std() - math.sqrt(2 / 500)) < 0.03 * math.sqrt(2 / 500)
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.numpy()).max() <= 0.5
    nn.init.constant_(w, 3.0)
    assert (w.numpy() == 3).all()
    nn.init.zeros_(w), nn.init.ones_(w)
    assert (w.numpy() == 1).all()
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ShapeError):
        nn.init.xavier_uniform_(tc.empty(5))
    p = nn.Parameter(tc.zeros(3, 4))
    nn.init.uniform_(p, -1, 1)  # works on a leaf that requires grad, records nothing
    assert p.grad_fn is None and p.requires_grad


# ---------------------------------------------------------------- convolution
CONV_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=1, padding=2, dilation=2, groups=1),
    dict(stride=(2, 1), padding=(1, 0), dilation=1, groups=2),
    dict(stride=1, padding=1, dilation=1, groups=4),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_direct_loops(case):
    x, w, b = arr(2, 4, 7, 6), arr(4, 4 // case["groups"], 3, 3), arr(4)
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    ref = conv2d_ref(x.astype(np.float64), w, b, pair(case["stride"]), pair(case["padding"]),
                     pair(case["dilation"]), case["groups"])
    close(F.conv2d(t(x), t(w), t(b), **case), ref, atol=1e-4)


def test_conv2d_gradients_by_central_differences():
    x, w = RNG.standard_normal((1, 2, 5, 5)), RNG.standard_normal((3, 2, 3, 3))
    weights = RNG.standard_normal((1, 3, 3, 3))
    xt, wt = t(x, True), t(w, True)
    (F.conv2d(xt, wt, stride=2, padding=1) * t(weights)).sum().backward()

    def loss_x(xv):
        return (conv2d_ref(xv, w, None, (2, 2), (1, 1), (1, 1), 1) * weights).sum()

    def loss_w(wv):
        return (conv2d_ref(x, wv, None, (2, 2), (1, 1), (1, 1), 1) * weights).sum()

    close(xt.grad, numeric_grad(loss_x, x.copy()), atol=1e-6)
    close(wt.grad, numeric_grad(loss_w, w.copy()), atol=1e-6)


@needs_torch
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_module_matches_torch(padding_mode):
    ours = nn.Conv2d(4, 6, 3, stride=1, padding=1, groups=2, padding_mode=padding_mode)
    theirs = torch.nn.Conv2d(4, 6, 3, stride=1, padding=1, groups=2, padding_mode=padding_mode)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.detach().numpy()))
        theirs.bias.copy_(torch.from_numpy(ours.bias.detach().numpy()))
    x = arr(2, 4, 6, 5)
    xt, xr = t(x, True), torch.tensor(x, requires_grad=True)
    out, ref = ours(xt), theirs(xr)
    close(out, ref, atol=1e-5)
    g = arr(*ref.shape)
    out.backward(t(g))
    ref.backward(torch.from_numpy(g))
    close(xt.grad, xr.grad, atol=1e-4)
    close(ours.weight.grad, theirs.weight.grad, atol=1e-4)
    close(ours.bias.grad, theirs.bias.grad, atol=1e-4)


@needs_torch
def test_conv_same_padding_unbatched_and_conv1d_match_torch():
    x, w = arr(3, 9, 8), arr(5, 3, 4, 3)
    close(F.conv2d(t(x), t(w), padding="same", dilation=2),
          torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same", dilation=2))
    x1, w1 = arr(2, 3, 11), arr(4, 3, 3)
    close(F.conv1d(t(x1), t(w1), stride=2, padding=1),
          torch.nn.functional.conv1d(torch.tensor(x1), torch.tensor(w1), stride=2, padding=1))
    close(F.unfold(t(x[None]), 3, padding=1, stride=2),
          torch.nn.functional.unfold(torch.tensor(x[None]), 3, padding=1, stride=2))


def test_conv2d_shape_errors_name_the_shapes():
    with pytest.raises(ShapeError, match=r"conv2d.*\[2, 3, 5, 5\]"):
        F.conv2d(tc.zeros(2, 3, 5, 5), tc.zeros(4, 2, 3, 3))
    with pytest.raises(ShapeError):
        F.conv2d(tc.zeros(1, 1, 2, 2), tc.zeros(1, 1, 3, 3))


# ---------------------------------------------------------------- pooling
def test_max_and_avg_pool_match_numpy():
    x = arr(2, 3, 8, 8)
    close(F.max_pool2d(t(x), 2), pool_ref(x, 2, 2, 0, np.max, 0))
    close(F.max_pool2d(t(x), 3, stride=2, padding=1), pool_ref(x, 3, 2, 1, np.max, -np.inf))
    close(F.avg_pool2d(t(x), 2), pool_ref(x, 2, 2, 0, np.mean, 0))
    close(F.avg_pool2d(t(x), 3, stride=2, padding=1), pool_ref(x, 3, 2, 1, np.mean, 0))
    close(nn.MaxPool2d(2)(t(x[0])), pool_ref(x[:1], 2, 2, 0, np.max, 0)[0])  # unbatched


def test_max_pool_gradient_goes_to_the_maximum():
    x = t(np.array([[[[1.0, 5.0], [2.0, 3.0]]]], np.float32), True)
    F.max_pool2d(x, 2).sum().backward()
    close(x.grad, np.array([[[[0, 1], [0, 0]]]], np.float32))


def test_adaptive_avg_pool_matches_numpy_windows():
    x = arr(2, 3, 7, 10)
    out = F.adaptive_avg_pool2d(t(x), (3, 4))
    ref = np.zeros((2, 3, 3, 4), np.float32)
    for i in range(3):
        for j in range(4):
            h0, h1 = (i * 7) // 3, -(-(i + 1) * 7 // 3)
            w0, w1 = (j * 10) // 4, -(-(j + 1) * 10 // 4)
            ref[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    close(out, ref)
    close(nn.AdaptiveAvgPool2d(1)(t(x)), x.mean(axis=(2, 3), keepdims=True))
    close(F.adaptive_avg_pool2d(t(x), (None, 5)), x.reshape(2, 3, 7, 5, 2).mean(-1))


@needs_torch
@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                     count_include_pad=False),
                                dict(kernel_size=2, stride=3, ceil_mode=True),
                                dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0))])
def test_pooling_options_match_torch(kw):
    x = arr(2, 2, 7, 9)
    xt, xr = t(x, True), torch.tensor(x, requires_grad=True)
    out, ref = F.avg_pool2d(xt, **kw), torch.nn.functional.avg_pool2d(xr, **kw)
    close(out, ref)
    out.sum().backward(), ref.sum().backward()
    close(xt.grad, xr.grad)
    kw_max = {k: v for k, v in kw.items() if k != "count_include_pad"}
    close(F.max_pool2d(t(x), **kw_max), torch.nn.functional.max_pool2d(torch.tensor(x), **kw_max))
    close(F.adaptive_avg_pool2d(t(x), (4, 5)),
          torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), (4, 5)))


def test_max_pool_dilation_and_ceil_shapes():
    x = tc.randn(1, 1, 10, 10)
    assert F.max_pool2d(x, 3, stride=2, dilation=2).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x, 3, stride=2, ceil_mode=True).shape == (1, 1, 5, 5)
    with pytest.raises(InvalidArgumentError):
        F.max_pool2d(x, 2, padding=2)


# ---------------------------------------------------------------- normalisation
def test_batchnorm_training_and_eval_follow_the_formulas():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    x = arr(4, 3, 5, 5) * 2 + 1
    out = bn(t(x))
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    close(out, (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5), atol=1e-4)
    n = 4 * 5 * 5
    close(bn.running_mean, 0.2 * mean)
    close(bn.running_var, 0.8 + 0.2 * var * n / (n - 1))
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    x2 = arr(2, 3, 5, 5)
    rm, rv = bn.running_mean.numpy().reshape(1, 3, 1, 1), bn.running_var.numpy().reshape(1, 3, 1, 1)
    close(bn(t(x2)), (x2 - rm) / np.sqrt(rv + 1e-5), atol=1e-5)
    assert bn.num_batches_tracked.item() == 1  # eval leaves the statistics alone


def test_batchnorm_cumulative_average_and_no_tracking():
    bn = nn.BatchNorm1d(2, momentum=None)
    a, b = arr(8, 2), arr(8, 2) + 3
    bn(t(a)), bn(t(b))
    close(bn.running_mean, (a.mean(0) + b.mean(0)) / 2)
    free = nn.BatchNorm1d(2, track_running_stats=False).eval()
    close(free(t(a)), (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5), atol=1e-4)
    assert "running_mean" not in free.state_dict()
    with pytest.raises(ShapeError):
        nn.BatchNorm1d(2)(tc.zeros(1, 2))  # one value per channel can't be normalised


@needs_torch
def test_batchnorm_and_layernorm_match_torch_with_gradients():
    x = arr(6, 4, 3, 3)
    for ours, theirs in ((nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)),
                         (nn.LayerNorm([3, 3]), torch.nn.LayerNorm([3, 3])),
                         (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4))):
        xt, xr = t(x, True), torch.tensor(x, requires_grad=True)
        g = arr(*x.shape)
        out, ref = ours(xt), theirs(xr)
        close(out, ref, atol=1e-5)
        out.backward(t(g)), ref.backward(torch.from_numpy(g))
        close(xt.grad, xr.grad, atol=1e-4)
        close(ours.weight.grad, theirs.weight.grad, atol=1e-4)
        for name, buf in theirs.named_buffers():
            close(getattr(ours, name), buf.numpy(), atol=1e-6)


def test_layer_norm_matches_numpy():
    x = arr(3, 4, 5)
    ln = nn.LayerNorm(5)
    with tc.no_grad():
        ln.weight.copy_(tc.tensor(arr(5)))
        ln.bias.copy_(tc.tensor(arr(5)))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    close(ln(t(x)), (x - mean) / np.sqrt(var + 1e-5) * ln.weight.detach().numpy()
          + ln.bias.detach().numpy(), atol=1e-5)
    with pytest.raises(ShapeError):
        F.layer_norm(t(x), (4,))


# ---------------------------------------------------------------- activations
def test_activations_match_numpy():
    x = arr(50) * 3
    erf = np.vectorize(math.erf)
    sig = 1 / (1 + np.exp(-x))
    cases = {
        nn.ReLU(): np.maximum(x, 0),
        nn.GELU(): 0.5 * x * (1 + erf(x / math.sqrt(2))),
        nn.GELU("tanh"): 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        nn.SiLU(): x * sig,
        nn.Sigmoid(): sig,
        nn.Tanh(): np.tanh(x),
        nn.LeakyReLU(0.1): np.where(x > 0, x, 0.1 * x),
        nn.ELU(): np.where(x > 0, x, np.expm1(x)),
        nn.ReLU6(): np.clip(x, 0, 6),
        nn.Softplus(): np.log1p(np.exp(x)),
        nn.Mish(): x * np.tanh(np.log1p(np.exp(x))),
        nn.Identity(): x,
    }
    for layer, ref in cases.items():
        close(layer(t(x)), ref, atol=1e-5)
    m = arr(4, 6)
    e = np.exp(m - m.max(1, keepdims=True))
    close(nn.Softmax(dim=1)(t(m)), e / e.sum(1, keepdims=True))
    close(nn.LogSoftmax(dim=1)(t(m)), np.log(e / e.sum(1, keepdims=True)), atol=1e-5)
    with pytest.raises(InvalidArgumentError):
        F.gelu(t(x), approximate="fast")


@needs_torch
def test_activation_gradients_match_torch():
    x = arr(40) * 3
    for name, kwargs in [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}),
                         ("softplus", {}), ("elu", {}), ("leaky_relu", {}), ("mish", {})]:
        xt, xr = t(x, True), torch.tensor(x, requires_grad=True)
        getattr(F, name)(xt, **kwargs).sum().backward()
        getattr(torch.nn.functional, name)(xr, **kwargs).sum().backward()
        close(xt.grad, xr.grad, atol=1e-5)


def test_inplace_relu_writes_its_input():
    x = t(np.array([-1.0, 2.0], np.float32))
    nn.ReLU(inplace=True)(x)
    close(x, [0.0, 2.0])


# ---------------------------------------------------------------- dropout
def test_dropout_masks_scales_and_respects_mode():
    x = tc.ones(200, 100)
    drop = nn.Dropout(0.3)
    tc.manual_seed(1)
    out = drop(x).numpy()
    zero = (out == 0).mean()
    assert 0.28 < zero < 0.32
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    tc.manual_seed(1)
    np.testing.assert_array_equal(drop(x).numpy(), out)  # the generator decides the mask
    drop.eval()
    assert drop(x) is x
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    with pytest.raises(InvalidArgumentError):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_the_same_mask():
    x = tc.ones(1000, requires_grad=True)
    out = F.dropout(x, 0.5)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), out.detach().numpy())


# ---------------------------------------------------------------- embedding, one_hot, pad
def test_embedding_lookup_and_padding_gradient():
    emb = nn.Embedding(10, 4, padding_idx=0)
    assert (emb.weight.detach().numpy()[0] == 0).all()
    idx = tc.tensor([[0, 3, 3], [9, 0, 1]])
    out = emb(idx)
    assert out.shape == (2, 3, 4)
    close(out, emb.weight.detach().numpy()[idx.numpy()])
    out.sum().backward()
    g = emb.weight.grad.numpy()
    assert (g[0] == 0).all() and (g[3] == 2).all() and (g[9] == 1).all() and (g[5] == 0).all()
    pre = nn.Embedding.from_pretrained(tc.eye(3))
    assert not pre.weight.requires_grad
    close(pre(tc.tensor([2])), [[0, 0, 1]])


def test_one_hot():
    out = F.one_hot(tc.tensor([0, 2, 1]), 4)
    assert out.dtype is tc.int64
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.int64)[[0, 2, 1]])
    assert F.one_hot(tc.tensor([[1], [4]])).shape == (2, 1, 5)


@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("reflect", "reflect"),
                                          ("replicate", "edge"), ("circular", "wrap")])
def test_pad_modes_match_numpy(mode, np_mode):
    x = arr(2, 3, 4, 5)
    out = F.pad(t(x), (1, 2, 3, 0), mode=mode)
    close(out, np.pad(x, ((0, 0), (0, 0), (3, 0), (1, 2)), mode=np_mode))


def test_pad_constant_value_negative_and_gradient():
    x = t(arr(2, 4), True)
    out = F.pad(x, (1, -1), value=7.0)
    expected = np.concatenate([np.full((2, 1), 7.0, np.float32), x.detach().numpy()[:, :3]], 1)
    close(out, expected)
    out.sum().backward()
    close(x.grad, np.array([[1, 1, 1, 0]] * 2, np.float32))
    with pytest.raises(ShapeError):
        F.pad(x, (1,))


# ---------------------------------------------------------------- attention
def sdpa_ref(q, k, v, mask=None, causal=False):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def test_scaled_dot_product_attention_matches_numpy():
    q, k, v = arr(2, 3, 5, 8), arr(2, 3, 6, 8), arr(2, 3, 6, 4)
    close(F.scaled_dot_product_attention(t(q), t(k), t(v)), sdpa_ref(q, k, v))
    qs = arr(2, 3, 6, 8)
    close(F.scaled_dot_product_attention(t(qs), t(k), t(v), is_causal=True),
          sdpa_ref(qs, k, v, causal=True))
    mask = RNG.random((5, 6)) > 0.3
    mask[:, 0] = True
    close(F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=tc.tensor(mask)),
          sdpa_ref(q, k, v, mask=mask))
    fmask = arr(5, 6)
    close(F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=t(fmask)),
          sdpa_ref(q, k, v, mask=fmask), atol=1e-5)


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_matches_torch(batch_first):
    ours = nn.MultiheadAttention(16, 4, batch_first=batch_first)
    theirs = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first)
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    shape = (2, 5, 16) if batch_first else (5, 2, 16)
    q, kv = arr(*shape), arr(*((2, 7, 16) if batch_first else (7, 2, 16)))
    pad = np.zeros((2, 7), bool)
    pad[1, -2:] = True
    qt, qr = t(q, True), torch.tensor(q, requires_grad=True)
    out, w = ours(qt, t(kv), t(kv), key_padding_mask=tc.tensor(pad))
    ref, rw = theirs(qr, torch.tensor(kv), torch.tensor(kv), key_padding_mask=torch.tensor(pad))
    close(out, ref, atol=1e-5)
    close(w, rw, atol=1e-5)
    out.sum().backward(), ref.sum().backward()
    close(qt.grad, qr.grad, atol=1e-4)
    close(ours.in_proj_weight.grad, theirs.in_proj_weight.grad, atol=1e-4)
    causal = np.triu(np.ones((5, 5), bool), 1)  # MultiheadAttention: True = masked out
    out2, _ = ours(t(q), t(q), t(q), attn_mask=tc.tensor(causal), need_weights=False)
    ref2, _ = theirs(torch.tensor(q), torch.tensor(q), torch.tensor(q), attn_mask=torch.tensor(causal),
                     need_weights=False)
    close(out2, ref2, atol=1e-5)


def test_multihead_attention_self_attention_shapes_and_unbatched():
    mha = nn.MultiheadAttention(8, 2)
    x = tc.randn(4, 3, 8)  # (L, N, E)
    out, w = mha(x, x, x)
    assert out.shape == (4, 3, 8) and w.shape == (3, 4, 4)
    np.testing.assert_allclose(w.detach().numpy().sum(-1), 1, rtol=1e-5)
    single, _ = mha(x[:, 0], x[:, 0], x[:, 0])
    close(single, out.detach().numpy()[:, 0], atol=1e-5)
    with pytest.raises(InvalidArgumentError):
        nn.MultiheadAttention(10, 3)
