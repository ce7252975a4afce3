"""nn.ConvTranspose2d, MaxPool2d(return_indices=True) and MaxUnpool2d as modules: weight
layout and initialisation, output_size, errors, unbatched input, a compiled training step
equal to eager, and PyTorch's values when it is installed. (The functional forms' values,
gradients and double backward are in the op table, tests/op_cases.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
import tracecc.nn.functional as F
from tracecc.runtime.errors import InvalidArgumentError, ShapeError

from op_cases import _conv_transpose2d, _max_pool2d_indices

RNG = np.random.default_rng(0)


def test_module_weight_layout_init_and_output_shape():
    tc.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert tuple(layer.weight.shape) == (4, 3, 3, 3) and tuple(layer.bias.shape) == (6,)
    bound = 1 / np.sqrt(3 * 9)  # fan_in of a transposed conv: out/groups * kernel, as PyTorch
    assert np.abs(layer.weight.detach().numpy()).max() <= bound
    assert np.abs(layer.bias.detach().numpy()).max() <= bound
    x = RNG.standard_normal((2, 4, 5, 5)).astype(np.float32)
    out = layer(tc.tensor(x))
    assert tuple(out.shape) == (2, 6, 10, 10)
    ref = _conv_transpose2d(x.astype(np.float64), layer.weight.detach().numpy().astype(np.float64),
                            layer.bias.detach().numpy(), (2, 2), (1, 1), (1, 1), 2, (1, 1))
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    assert "output_padding=(1, 1)" in repr(layer)


def test_output_size_picks_output_padding_and_is_checked():
    layer = nn.ConvTranspose2d(2, 2, 3, stride=2)
    x = tc.randn(1, 2, 4, 4)
    assert tuple(layer(x).shape) == (1, 2, 9, 9)
    assert tuple(layer(x, output_size=[10, 9]).shape) == (1, 2, 10, 9)
    with pytest.raises(InvalidArgumentError, match="valid sizes range from 9 to 10"):
        layer(x, output_size=(11, 9))


def test_unbatched_input_and_no_bias():
    layer = nn.ConvTranspose2d(3, 2, 2, bias=False)
    x = tc.randn(3, 4, 4)
    out = layer(x)
    assert tuple(out.shape) == (2, 5, 5) and layer.bias is None
    np.testing.assert_allclose(out.detach().numpy(), layer(x.unsqueeze(0))[0].detach().numpy())


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=2, output_padding=2), "output_padding"),
    (dict(padding=5), "leaves no output"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(InvalidArgumentError if "output_padding" in message else ShapeError,
                       match=message):
        F.conv_transpose2d(tc.randn(1, 2, 3, 3), tc.randn(2, 2, 3, 3), **kwargs)


def test_channel_mismatch_names_the_shapes():
    with pytest.raises(ShapeError, match=r"\[1, 3, 4, 4\].*\[2, 2, 3, 3\]"):
        F.conv_transpose2d(tc.randn(1, 3, 4, 4), tc.randn(2, 2, 3, 3))
    with pytest.raises(InvalidArgumentError, match="padding_mode"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")


def test_compiled_training_step_equals_eager():
    def make():
        tc.manual_seed(3)
        return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                             nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1))

    x = tc.tensor(RNG.standard_normal((2, 2, 6, 6)).astype(np.float32))

    def step(model, x):
        loss = ((model(x) - x) ** 2).mean()
        loss.backward()
        return loss

    eager_model, compiled_model = make(), make()
    eager = step(eager_model, x)
    compiled = tc.compile(lambda x: step(compiled_model, x), backend="llvm")(x)
    np.testing.assert_allclose(compiled.item(), eager.item(), rtol=1e-5)
    for a, b in zip(eager_model.parameters(), compiled_model.parameters()):
        np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_max_pool_indices_route_the_gradient_and_unpool_inverts():
    x = RNG.standard_normal((1, 2, 4, 4))
    x[0, 0, 0, :2] = 5.0  # a tie: the first maximum's index, and all the gradient goes there
    xt = tc.tensor(x, requires_grad=True)
    values, indices = nn.MaxPool2d(2, return_indices=True)(xt)
    ref_values, ref_indices = _max_pool2d_indices(x, 2, 2, 0)
    assert indices.dtype is tc.int64 and np.array_equal(indices.numpy(), ref_indices)
    np.testing.assert_allclose(values.detach().numpy(), ref_values)
    values.sum().backward()
    grad = xt.grad.numpy()
    assert grad[0, 0, 0, 0] == 1.0 and grad[0, 0, 0, 1] == 0.0 and grad.sum() == values.numel()
    restored = nn.MaxUnpool2d(2)(values, indices)
    kept = np.zeros_like(x)
    np.put_along_axis(kept.reshape(1, 2, 16), ref_indices.reshape(1, 2, 4), ref_values.reshape(1, 2, 4), -1)
    np.testing.assert_allclose(restored.detach().numpy(), kept)
    one = F.max_pool2d(tc.tensor(x[0]), 2, return_indices=True)  # unbatched
    assert tuple(one[1].shape) == (2, 2, 2)


def test_modules_match_torch():
    torch = pytest.importorskip("torch")
    layer = nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                               groups=2, dilation=(1, 2))
    ref = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0),
                                   output_padding=(1, 0), groups=2, dilation=(1, 2))
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.weight.detach().numpy()))
        ref.bias.copy_(torch.tensor(layer.bias.detach().numpy()))
    x = RNG.standard_normal((2, 4, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(tc.tensor(x)).detach().numpy(),
                               ref(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    v, i = nn.MaxPool2d(3, 2, 1, return_indices=True)(tc.tensor(x))
    tv, ti = torch.nn.MaxPool2d(3, 2, 1, return_indices=True)(torch.tensor(x))
    assert np.array_equal(i.numpy(), ti.numpy())
    np.testing.assert_allclose(nn.MaxUnpool2d(3, 2, 1)(v, i, output_size=(5, 4)).numpy(),
                               torch.nn.MaxUnpool2d(3, 2, 1)(tv, ti, output_size=(5, 4)).numpy())
