"""A whole compiled training step on cuda tensors, on the emulated test device
(TRACECC_CUDA_EMULATE=1: host memory behind a stand-in libcuda, kernels under Triton's
interpreter). No GPU here: these tests prove the plumbing (lifting cuda parameters, state
and grads; kernels on the device buffers; in-place updates; no host copies in a steady
step; CUDA-graph capture and replay as the emulated driver records it) and that the
results equal the cpu's. Shapes are tiny: every kernel runs in the interpreter."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tracecc.runtime import cuda as rcuda  # noqa: E402
from tracecc.runtime.errors import CudaDriverError  # noqa: E402

import tracecc as tc  # noqa: E402

from train_steps import train_step  # noqa: E402

pytest.importorskip("triton")
STEPS = 4
X = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
Y = np.array([0, 2, 1, 1])


@pytest.fixture(autouse=True, scope="module")
def emulated():
    old = {k: os.environ.get(k) for k in (rcuda.EMULATE_ENV, "TRACECC_CUDA_GRAPHS")}
    os.environ[rcuda.EMULATE_ENV] = "1"
    os.environ.pop("TRACECC_CUDA_GRAPHS", None)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def lib():
    return rcuda.get_device().driver.lib


def setup(device, opt_name, compiled=True):
    tc.manual_seed(0)
    model = tc.nn.Sequential(tc.nn.Linear(6, 8), tc.nn.ReLU(), tc.nn.Linear(8, 3)).to(device)
    if opt_name == "sgd":
        opt = tc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = tc.optim.Adam(model.parameters(), lr=0.01)

    step = train_step(model, opt)
    return model, opt, (tc.compile(step) if compiled else step)


def host(t):
    return t.detach().cpu().numpy()


def snapshot(model, opt):
    """Parameters, grads and every optimizer state tensor, as host arrays."""
    out = []
    for p in model.parameters():
        out += [host(p), host(p.grad)]
        out += [host(v) if isinstance(v, tc.Tensor) else v for _, v in sorted(opt.state[p].items())]
    return out


def train(device, opt_name, compiled=True, steps=STEPS, per_step=None):
    model, opt, step = setup(device, opt_name, compiled)
    x, y = tc.tensor(X).to(device), tc.tensor(Y).to(device)
    losses = []
    for i in range(steps):
        loss = step(x, y)
        if per_step is not None:
            per_step(i, loss, model, step)
        losses.append(loss)
    return model, opt, step, losses


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_compiled_step_on_cuda_equals_compiled_and_eager_on_cpu(opt_name):
    ptrs = {}

    def check(i, loss, model, step):
        assert loss.is_cuda and loss.shape == () and loss.requires_grad
        if i == 1:  # from the first compiled call on, parameters are updated where they are
            ptrs.update({id(p): p.data_ptr() for p in model.parameters()})

    model, opt, step, losses = train("cuda", opt_name, per_step=check)
    runs = {"cuda": (model, opt, losses)}
    for name, compiled in (("cpu compiled", True), ("cpu eager", False)):
        m, o, _, ls = train("cpu", opt_name, compiled)
        runs[name] = (m, o, ls)
    assert step.traces == 2 and step._entries[-1].backend == "triton_interpret"
    assert all(p.is_cuda and p.grad.is_cuda for p in model.parameters())
    assert all(v.is_cuda for s in opt.state.values() for v in s.values())  # Adam's step too
    assert {id(p): p.data_ptr() for p in model.parameters()} == ptrs
    got = snapshot(model, opt)
    for name in ("cpu compiled", "cpu eager"):
        m, o, ls = runs[name]
        np.testing.assert_allclose([float(v) for v in losses], [float(v) for v in ls], rtol=1e-5)
        want = snapshot(m, o)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("graphs", ["1", "0"])
def test_steady_state_step_makes_no_host_copies(graphs, monkeypatch):
    monkeypatch.setenv("TRACECC_CUDA_GRAPHS", graphs)
    counts = []

    def count(i, loss, model, step):
        counts.append(dict(lib().copies))

    replays = lib().replays
    model, opt, step, losses = train("cuda", "adam", steps=6, per_step=count)
    steady = [{k: b[k] - a[k] for k in a} for a, b in zip(counts[2:], counts[3:])]
    assert all(c["htod"] == 0 and c["dtoh"] == 0 for c in steady), steady
    if graphs == "0":  # kernels write the outputs' fresh buffers and the parameters in place
        assert all(c["dtod"] == 0 for c in steady), steady
        assert lib().replays == replays
    else:  # the loss and four grads are copied out of the graph's buffers, on the device
        assert all(c["dtod"] == 5 for c in steady), steady
        assert lib().replays == replays + 4  # captured on the third call, replayed from then on
    before = lib().copies["dtoh"]
    losses[-1].item()  # what the user asks for does copy
    assert lib().copies["dtoh"] == before + 1


def test_graph_captured_once_replayed_outputs_never_overwritten():
    held = []

    def keep(i, loss, model, step):
        w = model[0].weight
        held.append((loss, w.grad, float(loss), host(w.grad)))

    model, opt, step, losses = train("cuda", "sgd", steps=5, per_step=keep)
    program = step._entries[-1].runner.device_program(rcuda.get_device())
    assert program.graphs and program.captures == 1 and program.calls == 4
    assert program.static  # parameters and state are bound into the graph directly
    for loss, grad, loss_then, grad_then in held:  # results of earlier calls kept their values
        assert float(loss) == loss_then
        np.testing.assert_array_equal(host(grad), grad_then)
    assert len({v for _, _, v, _ in held}) == 5  # and the steps did differ


def test_moved_inputs_are_copied_in_or_recaptured():
    cpu_model, cpu_opt, cpu_step = setup("cpu", "sgd")
    model, opt, step = setup("cuda", "sgd")
    rng = np.random.default_rng(1)
    for i in range(5):
        xb = rng.standard_normal((4, 6)).astype(np.float32)  # a new batch tensor every call
        if i == 3:  # and a parameter replaced after the capture
            for m in (model, cpu_model):
                m[2].bias.data = m[2].bias.detach().clone()
        want = cpu_step(tc.tensor(xb), tc.tensor(Y))
        got = step(tc.tensor(xb).cuda(), tc.tensor(Y).cuda())
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    program = step._entries[-1].runner.device_program(rcuda.get_device())
    assert "x" not in program.static and program.captures == 2
    for p, q in zip(model.parameters(), cpu_model.parameters()):
        np.testing.assert_allclose(host(p), host(q), rtol=1e-5, atol=1e-6)


def test_constants_made_inside_are_uploaded_once():
    f = tc.compile(lambda x: x * tc.tensor([1.0, 2.0, 3.0]) + 1)
    x = tc.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]).cuda()
    for i in range(3):
        before = dict(lib().copies)
        out = f(x)
        if i:
            assert lib().copies["htod"] == before["htod"]
    assert out.is_cuda and out.cpu().tolist() == [[2.0, 3.0, 4.0], [1.5, 2.0, 2.5]]


def test_emulated_capture_records_and_replays():
    dev = rcuda.get_device()
    a = rcuda.CudaArray.from_numpy(dev, np.arange(4.0))
    b = rcuda.CudaArray.from_numpy(dev, np.zeros(4))
    graph = dev.capture(lambda: dev.copy(b.buffer, a.buffer))
    assert b.numpy().tolist() == [0.0] * 4  # recorded, not run
    graph.replay()
    assert b.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    dev.copy_to_device(a.buffer, np.full(4, 7.0))
    graph.replay()  # a replay reads the buffers as they are now
    assert b.numpy().tolist() == [7.0] * 4
    graph.close()
    with pytest.raises(CudaDriverError, match="cuStreamSynchronize"):
        dev.capture(dev.synchronize)  # waiting inside a capture is an error, as on the driver
    assert lib().recording is None


def test_compiled_forward_on_cuda_backward_outside():
    grads = []
    for device, compile_ in (("cuda", True), ("cpu", False)):
        tc.manual_seed(0)
        model = tc.nn.Sequential(tc.nn.Linear(6, 8), tc.nn.ReLU(), tc.nn.Linear(8, 3)).to(device)
        fwd = tc.compile(model) if compile_ else model
        out = fwd(tc.tensor(X).to(device))
        assert out.device.type == device and out.requires_grad
        (out * tc.tensor([1.0, -2.0, 0.5]).to(device)).sum().backward()
        grads.append([host(p.grad) for p in model.parameters()])
    for g, w in zip(*grads):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
