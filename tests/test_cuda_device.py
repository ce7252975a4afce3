"""The cuda device in the front end, on the emulated test device (TRACECC_CUDA_EMULATE=1:
host memory behind a stand-in libcuda, kernels under Triton's interpreter). There is no
GPU here: these tests prove the cuda code paths (moves, single-op Triton kernels, views,
autograd, modules, compile routing, memory accounting) give the cpu's results; the real-GPU
check is benchmarks/gpu_check.py. Shapes are tiny: every eager op is an interpreted kernel."""

import gc
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tracecc.runtime import cuda as rcuda  # noqa: E402
from tracecc.runtime.errors import DeviceError  # noqa: E402

import tracecc as tc  # noqa: E402

pytest.importorskip("triton")
F = tc.nn.functional


@pytest.fixture(autouse=True, scope="module")
def emulated():
    old = os.environ.get(rcuda.EMULATE_ENV)
    os.environ[rcuda.EMULATE_ENV] = "1"
    yield
    if old is None:
        os.environ.pop(rcuda.EMULATE_ENV, None)
    else:
        os.environ[rcuda.EMULATE_ENV] = old


def same(a, b, tol=1e-5):
    assert a.device.type == "cuda" and b.device.type == "cpu"
    np.testing.assert_allclose(a.cpu().numpy().astype(np.float64), b.numpy().astype(np.float64),
                               rtol=tol, atol=tol)


def pair(*shape, seed=0):
    x = tc.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return x.cuda(), x


def test_availability_needs_a_gpu_or_the_switch(monkeypatch):
    assert tc.cuda.is_available() and tc.cuda.is_emulated() and tc.cuda.device_count() == 1
    assert "emulated" in tc.cuda.get_device_name()
    monkeypatch.delenv(rcuda.EMULATE_ENV)
    monkeypatch.setenv("TRACECC_LIBCUDA", "/nonexistent/libcuda.so.1")
    monkeypatch.setattr(rcuda, "_driver", None)
    assert tc.cuda.is_available() is False and not tc.cuda.is_emulated()
    with pytest.raises(DeviceError, match="TRACECC_CUDA_EMULATE"):
        tc.zeros(2, device="cuda")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int64", "int32",
                                   "uint8", "bool"])
def test_to_and_back_keeps_values_and_dtype(dtype):
    x = tc.tensor(np.arange(-3, 9).reshape(3, 4) * 0.75).to(getattr(tc, dtype if dtype != "bool" else "bool"))
    c = x.to("cuda")
    assert c.is_cuda and c.device == tc.device("cuda:0") and c.dtype is x.dtype
    assert str(c.device) == "cuda:0" and "device='cuda:0'" in repr(c)
    back = c.cpu()
    assert back.device.type == "cpu" and back.dtype is x.dtype
    assert np.array_equal(back.numpy(), x.numpy())
    assert c.tolist() == x.tolist() and c[1, 2].item() == x[1, 2].item()
    # to(device, dtype) casts and moves at once; to(dtype) on cuda stays there
    y = x.to("cuda", tc.float64)
    assert y.is_cuda and y.dtype is tc.float64
    assert np.array_equal(y.to(tc.float32).cpu().numpy(), x.to(tc.float32).numpy())


def test_creation_with_device():
    assert tc.zeros(2, 3, device="cuda").cpu().tolist() == [[0.0] * 3] * 2
    assert tc.ones(4, device="cuda", dtype=tc.int64).cpu().tolist() == [1] * 4
    assert tc.full((2,), 7.5, device="cuda").cpu().tolist() == [7.5, 7.5]
    assert tc.arange(5, device="cuda").cpu().tolist() == [0, 1, 2, 3, 4]
    assert tc.tensor([[1, 2]], device="cuda").is_cuda and tc.empty(3, device="cuda").is_cuda
    assert tc.eye(2, device="cuda").cpu().tolist() == [[1.0, 0.0], [0.0, 1.0]]
    tc.manual_seed(3)
    a = tc.randn(2, 3, device="cuda", requires_grad=True)
    tc.manual_seed(3)
    b = tc.randn(2, 3)
    assert a.is_leaf and a.requires_grad and np.array_equal(a.detach().cpu().numpy(), b.numpy())
    like = tc.zeros_like(a)  # *_like follow their input's device, as in PyTorch
    assert like.is_cuda and a.new_ones(2).is_cuda and tc.randn_like(a).is_cuda


def test_numpy_is_an_error_item_and_tolist_work():
    c = tc.tensor([1.5, 2.5], device="cuda")
    with pytest.raises(DeviceError, match=r"numpy\(\).*cuda:0.*\n.*cpu\(\)"):
        c.numpy()
    with pytest.raises(DeviceError):
        np.asarray(c)
    assert c[0].item() == 1.5 and c.tolist() == [1.5, 2.5] and float(c.sum()) == 4.0


def test_pointwise_and_reductions_match_cpu():
    xc, x = pair(3, 5)
    yc, y = pair(5, seed=1)
    same(xc * 2 + yc, x * 2 + y)
    same(tc.where(xc > 0, xc.exp(), -yc), tc.where(x > 0, x.exp(), -y))
    same((xc - 1).abs().sqrt().log1p(), (x - 1).abs().sqrt().log1p())
    same(xc.sum(1), x.sum(1))
    same(xc.amax(0), x.amax(0))
    same(xc.mean(), x.mean())
    same(F.softmax(xc, -1), F.softmax(x, -1))
    same(F.log_softmax(xc, 0), F.log_softmax(x, 0))
    same(xc.argmax(1), x.argmax(1))
    same((xc > 0).sum(), (x > 0).sum())
    same(xc.to(tc.bfloat16) * 3, x.to(tc.bfloat16) * 3, tol=1e-2)


def test_matmul_and_movement_match_cpu():
    xc, x = pair(4, 6)
    wc, w = pair(5, 6, seed=2)
    same(xc @ wc.T, x @ w.T)  # the transpose is a view: index arithmetic in the kernel
    assert wc.T.stride() == (1, 6) and not wc.T.is_contiguous()
    bc, b = pair(2, 3, 4, seed=3)
    same(tc.bmm(bc, bc.transpose(1, 2)), tc.bmm(b, b.transpose(1, 2)))
    same(xc.permute(1, 0).reshape(3, 8), x.permute(1, 0).reshape(3, 8))  # reshape must copy
    same(xc[1:, ::2], x[1:, ::2])
    same(xc.reshape(2, 12)[:, 3:7].unsqueeze(0).expand(3, 2, 4), x.reshape(2, 12)[:, 3:7].unsqueeze(0).expand(3, 2, 4))
    same(tc.cat([xc, xc[:1] * 2]), tc.cat([x, x[:1] * 2]))
    same(tc.stack([xc[0], xc[1]], 1), tc.stack([x[0], x[1]], 1))


def test_indexing_matches_cpu():
    xc, x = pair(4, 5)
    idx = tc.tensor([3, 0, 3])  # a cpu index works on a cuda tensor, as in PyTorch
    same(xc[idx], x[idx])
    same(xc[:, idx.cuda()], x[:, idx])
    same(xc[xc > 0.5], x[x > 0.5])
    same(xc.gather(1, tc.tensor([[0], [4], [2], [1]]).cuda()), x.gather(1, tc.tensor([[0], [4], [2], [1]])))
    xc[1] = 7.0
    x[1] = 7.0
    xc[:, idx] = tc.tensor(-1.0)
    x[:, idx] = tc.tensor(-1.0)
    same(xc, x)


def test_views_share_memory_both_ways():
    xc, x = pair(3, 4)
    row = xc[1]
    row += 1  # writes through the view into xc's buffer
    assert np.allclose(xc.cpu().numpy()[1], x.numpy()[1] + 1)
    xc.mul_(2)  # and the view sees writes to its base
    assert np.allclose(row.cpu().numpy(), (x.numpy()[1] + 1) * 2)
    assert np.allclose(xc.T.contiguous().cpu().numpy(), xc.cpu().numpy().T)
    xc.zero_()
    assert row.cpu().tolist() == [0.0] * 4


def test_autograd_on_cuda_gives_cpu_grads_on_cuda():
    xc, x = pair(3, 4)
    wc, w = pair(4, 5, seed=1)
    for t in (xc, x, wc, w):
        t.requires_grad_()
    for a, b, out in ((xc, wc, []), (x, w, [])):
        h = (a @ b).relu()
        loss = F.log_softmax(h * 0.5, -1)[:, 1:].sum() + (a[0] ** 2).mean()
        loss.backward()
    assert xc.grad.is_cuda and wc.grad.is_cuda
    same(xc.grad, x.grad)
    same(wc.grad, w.grad)
    # a gradient flows back through .cuda() to the cpu leaf
    leaf = tc.tensor([1.0, 2.0], requires_grad=True)
    (leaf.cuda() * 3).sum().backward()
    assert leaf.grad.device.type == "cpu" and leaf.grad.tolist() == [3.0, 3.0]


def mlp():
    tc.manual_seed(0)
    return tc.nn.Sequential(tc.nn.Linear(6, 8), tc.nn.ReLU(), tc.nn.Linear(8, 3))


def test_mlp_training_step_on_cuda_equals_cpu():
    cpu_model, gpu_model = mlp(), mlp().cuda()
    assert all(p.is_cuda for p in gpu_model.parameters())
    x = tc.randn(5, 6)
    y = tc.tensor([0, 2, 1, 1, 0])
    for model, xs, ys in ((cpu_model, x, y), (gpu_model, x.cuda(), y.cuda())):
        opt = tc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(model(xs), ys)
            loss.backward()
            opt.step()
        model.loss = loss.item()
    assert abs(cpu_model.loss - gpu_model.loss) < 1e-5
    for p, q in zip(gpu_model.parameters(), cpu_model.parameters()):
        same(p.detach(), q.detach())
        same(p.grad, q.grad)


def test_module_to_moves_parameters_buffers_and_grads():
    m = tc.nn.Sequential(tc.nn.Linear(3, 2), tc.nn.BatchNorm1d(2))
    w = m[0].weight
    m[0].weight.grad = tc.ones(2, 3)
    assert m.to("cuda") is m and m[0].weight is w  # the same Parameter objects
    assert w.is_cuda and w.grad.is_cuda and m[1].running_mean.is_cuda
    assert m[1].num_batches_tracked.is_cuda and m[1].num_batches_tracked.dtype is tc.int64
    out = m(tc.randn(4, 3, device="cuda"))
    assert out.is_cuda and m[1].running_var.is_cuda
    m.to("cuda", tc.float64)
    assert w.is_cuda and w.dtype is tc.float64
    m.cpu()
    assert w.device.type == "cpu" and w.grad.device.type == "cpu" and not m[1].running_mean.is_cuda


def test_mixing_devices_names_the_op_both_devices_and_the_line():
    xc, x = pair(2, 3)
    with pytest.raises(DeviceError) as e:
        xc + x  # noqa: B018
    msg = str(e.value)
    assert e.value.code == "TC003" and "add:" in msg and "cuda:0" in msg and "cpu" in msg
    assert "test_cuda_device.py" in e.value.location
    with pytest.raises(DeviceError, match="matmul"):
        xc @ x.T  # noqa: B018
    same(xc * tc.tensor(2.0), x * 2)  # a 0-d cpu tensor joins a cuda op, as in PyTorch


def test_memory_allocated_goes_up_and_down():
    tc.zeros(1, device="cuda") + 1  # the scalar 1 is uploaded once and kept (see below)
    gc.collect()  # buffers of earlier tests' cyclic garbage would be freed mid-test
    tc.cuda.synchronize()
    base = tc.cuda.memory_allocated()
    a = tc.zeros(1000, device="cuda")
    b = a + 1
    assert tc.cuda.memory_allocated() == base + 2 * 4096  # two 4000-byte blocks, rounded
    assert tc.cuda.max_memory_allocated() >= base + 2 * 4096
    del a, b
    assert tc.cuda.memory_allocated() == base
    reserved = tc.cuda.memory_reserved()
    tc.cuda.empty_cache()
    assert tc.cuda.memory_reserved() < reserved


def test_python_numbers_are_uploaded_once_per_value():
    copies = rcuda.get_device().driver.lib.copies
    xc, x = pair(4, 8)
    xc * 0.25 + 3.5  # noqa: B018  (the first use of each value uploads it)
    before = copies["htod"]
    for _ in range(3):
        same(xc * 0.25 + 3.5, x * 0.25 + 3.5)
    same(xc * tc.tensor(0.25), x * 0.25)  # a 0-d cpu tensor of the same value too
    assert copies["htod"] == before
    xc * 0.75  # noqa: B018  (another value: one upload)
    assert copies["htod"] == before + 1


def test_compile_on_cuda_tensors_uses_the_triton_backend():
    xc, x = pair(4, 8)
    f = tc.compile(lambda t: F.softmax(t * 2, -1).sum(0))
    out = f(xc)
    assert out.is_cuda and f._entries[0].backend == "triton_interpret"
    same(out, F.softmax(x * 2, -1).sum(0))
    cpu_out = f(x)  # a cpu call is another entry (the device is in the cache key)
    assert cpu_out.device.type == "cpu" and f._entries[1].backend != "triton_interpret"
