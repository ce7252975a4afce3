"""nn.Module: registration, traversal, modes, dtype conversion, state_dict, containers, repr."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
from tracecc.runtime.errors import DTypeError, StateDictError, TraceccError

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


class Net(nn.Module):
    """The seed program's network."""

    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = nn.functional.relu(self.fc1(x))
        x = nn.functional.relu(self.fc2(x))
        return self.fc3(x)


class WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(tc.ones(3))
        self.register_buffer("count", tc.zeros(1, dtype=tc.int64))
        self.register_buffer("cache", tc.zeros(3), persistent=False)
        self.bn = nn.BatchNorm1d(3)
        self.plain = 5

    def forward(self, x):
        return self.bn(x * self.scale)


def test_parameters_buffers_and_children_are_registered_in_order():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    assert sum(p.numel() for p in net.parameters()) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert [n for n, _ in net.named_children()] == ["fc1", "fc2", "fc3"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "fc2", "fc3"]
    m = WithBuffers()
    assert [n for n, _ in m.named_buffers()] == ["count", "cache", "bn.running_mean", "bn.running_var",
                                                 "bn.num_batches_tracked"]
    assert m.plain == 5 and "plain" not in dict(m.named_parameters())
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_shared_parameters_are_listed_once_and_reassignment_moves_registries():
    m = nn.Module()
    shared = nn.Linear(2, 2)
    m.a, m.b = shared, shared
    assert len(list(m.parameters())) == 2
    assert [n for n, _ in m.named_modules()] == ["", "a"]
    m.a = nn.Parameter(tc.zeros(1))  # a module slot re-used for a parameter
    assert "a" in m._parameters and "a" not in m._modules
    del m.a
    assert not hasattr(m, "a")
    with pytest.raises(TypeError):
        shared.weight = tc.zeros(2, 2)  # a registered parameter only takes a Parameter or None
    shared.bias = None
    assert [n for n, _ in shared.named_parameters()] == ["weight"]


def test_assigning_before_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Broken()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        Net().nope


def test_forward_and_backward_through_the_seed_network():
    net = Net()
    out = net(tc.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net(tc.randn(2, 784)).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all((p.grad.numpy() == 0).all() for p in net.parameters())


def test_train_eval_propagate_and_apply_visits_every_module():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert m.training and m[1][1].training
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "Dropout", "BatchNorm1d", "Sequential", "Sequential"]
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_to_dtype_keeps_parameter_objects_and_integer_buffers():
    m = WithBuffers()
    params = list(m.parameters())
    m.to(tc.float64)
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    assert all(p.dtype is tc.float64 for p in m.parameters())
    assert m.bn.running_mean.dtype is tc.float64
    assert m.count.dtype is tc.int64 and m.bn.num_batches_tracked.dtype is tc.int64
    m.half()
    assert m.scale.dtype is tc.float16
    m.to("cpu", dtype=tc.bfloat16)
    assert m.scale.dtype is tc.bfloat16
    with pytest.raises(DTypeError):
        m.to(tc.int32)
    with pytest.raises(TraceccError):
        m.to("cuda")


def test_state_dict_round_trip_and_strict_errors():
    a, b = WithBuffers(), WithBuffers()
    with tc.no_grad():
        a.scale.fill_(2.0)
        a.bn.running_mean.fill_(0.5)
    sd = a.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == ["scale", "count", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                        "bn.num_batches_tracked"]  # the non-persistent buffer stays out
    assert not sd["scale"].requires_grad
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(b.scale.detach().numpy(), 2.0)
    np.testing.assert_array_equal(b.bn.running_mean.numpy(), 0.5)
    assert b.scale.requires_grad  # still the same trainable Parameter

    broken = OrderedDict(sd)
    del broken["bn.weight"]
    broken["extra"] = tc.zeros(1)
    broken["scale"] = tc.zeros(4)
    with pytest.raises(StateDictError) as info:
        b.load_state_dict(broken)
    text = str(info.value)
    assert '"bn.weight"' in text and '"extra"' in text and "size mismatch for scale" in text
    assert "WithBuffers" in text
    del broken["scale"]
    result = b.load_state_dict(broken, strict=False)
    assert result.missing_keys == ["scale", "bn.weight"] and result.unexpected_keys == ["extra"]


def test_load_state_dict_converts_dtype_and_assign_replaces():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict({k: v.double() for k, v in a.state_dict().items()})
    assert b.weight.dtype is tc.float32
    np.testing.assert_array_equal(b.weight.detach().numpy(), a.weight.detach().numpy())
    b.load_state_dict({k: v.double() for k, v in a.state_dict().items()}, assign=True)
    assert b.weight.dtype is tc.float64 and isinstance(b.weight, nn.Parameter)


@needs_torch
def test_state_dict_keys_and_repr_match_torch():
    def build(lib):
        return lib.Sequential(
            lib.Conv2d(1, 4, 3, padding=1, bias=False), lib.BatchNorm2d(4), lib.ReLU(),
            lib.MaxPool2d(2), lib.AvgPool2d(2), lib.AdaptiveAvgPool2d(1), lib.Flatten(),
            lib.Linear(4, 2), lib.LayerNorm(2, bias=False), lib.Embedding(3, 2, padding_idx=0),
            lib.Dropout(), lib.GELU(), lib.Softmax(1), lib.GroupNorm(2, 4),
            lib.BatchNorm1d(3, affine=False), lib.LayerNorm([2, 3], elementwise_affine=False),
            lib.Conv2d(2, 2, 3, stride=2, dilation=2, groups=2))

    ours, theirs = build(nn), build(torch.nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(28 * 28, 128)
            self.fc2 = torch.nn.Linear(128, 64)
            self.fc3 = torch.nn.Linear(64, 10)

    assert repr(Net()) == repr(TorchNet()).replace("TorchNet", "Net")


def test_containers():
    seq = nn.Sequential(OrderedDict([("first", nn.Linear(2, 3)), ("act", nn.ReLU())]))
    assert seq.first is seq[0] and len(seq) == 2 and isinstance(seq[-1], nn.ReLU)
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    seq.append(nn.Linear(3, 1))
    assert seq(tc.randn(5, 2)).shape == (5, 1)
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 4))
    layers.insert(0, nn.Identity())
    assert len(layers) == 5 and isinstance(layers[0], nn.Identity)
    del layers[0]
    assert [n for n, _ in layers.named_children()] == ["0", "1", "2", "3"]
    assert len(list(layers.parameters())) == 8
    heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 1)})
    assert list(heads) == ["a", "b"] and "a" in heads
    assert [n for n, _ in heads.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    plist = nn.ParameterList([tc.zeros(2), nn.Parameter(tc.ones(1))])
    assert len(list(plist.parameters())) == 2 and isinstance(plist[0], nn.Parameter)
    pdict = nn.ParameterDict({"w": tc.zeros(2)})
    assert "w" in pdict and pdict["w"].requires_grad
    with pytest.raises(IndexError):
        seq[5]


def test_forward_hooks_and_handles():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0)
    out = lin(tc.ones(1, 2))
    assert calls == ["pre"] and (out.detach().numpy() == 0).all()
    h1.remove(), h2.remove()
    assert (lin(tc.ones(1, 2)).detach().numpy() != 0).any() and calls == ["pre"]


def test_parameter_shares_memory_and_deepcopy_is_independent():
    data = tc.zeros(3)
    p = nn.Parameter(data)
    with tc.no_grad():
        p.add_(1)
    np.testing.assert_array_equal(data.numpy(), 1)  # same memory, as torch.nn.Parameter
    assert p.is_leaf and repr(p).startswith("Parameter containing:")
    assert not nn.Parameter(tc.zeros(1), requires_grad=False).requires_grad
    with pytest.raises(TraceccError):
        nn.Parameter(tc.zeros(2, dtype=tc.int64))
    net = Net()
    clone = copy.deepcopy(net)
    with tc.no_grad():
        clone.fc1.weight.zero_()
    assert (net.fc1.weight.detach().numpy() != 0).any()
    assert isinstance(clone.fc1.weight, nn.Parameter)


def test_get_submodule_and_parameter():
    m = nn.Sequential(nn.Sequential(nn.Linear(1, 1)))
    assert m.get_submodule("0.0") is m[0][0]
    assert m.get_parameter("0.0.bias") is m[0][0].bias
    with pytest.raises(AttributeError):
        m.get_submodule("0.5")
