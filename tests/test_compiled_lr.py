"""The learning rate is a graph input of a compiled training step: schedulers and manual
changes of param_groups[i]["lr"] run the same graph (no recompile), and every step leaves
exactly what eager mode leaves. Other hyperparameters are baked in and guarded."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton (cuda test)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tracecc as tc  # noqa: E402
import tracecc.nn as nn  # noqa: E402
import tracecc.nn.functional as F  # noqa: E402
import tracecc.optim as optim  # noqa: E402
from tracecc.optim import lr_scheduler  # noqa: E402

from train_steps import train_step  # noqa: E402

# the traced graph as it is, on the interpreter: bit-for-bit eager results
REF = dict(backend="interpreter", options={"passes": []})


def _model():
    tc.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 5))


def _pair(make_opt):
    """(model, opt) twice, identical: one for eager, one for compiled."""
    out = []
    for _ in range(2):
        model = _model()
        out.append((model, make_opt(model)))
    return out


def _batches(n, seed=1):
    rng = np.random.default_rng(seed)
    return [(tc.tensor(rng.standard_normal((8, 12)).astype(np.float32)),
             tc.tensor(rng.integers(0, 5, 8))) for _ in range(n)]


def _check(eager, comp, what, exact=True):
    def same(a, b, name):
        if exact:
            assert np.array_equal(a, b), f"{what}: {name}"
        else:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=f"{what}: {name}")

    (m0, o0), (m1, o1) = eager, comp
    for (name, p0), p1 in zip(m0.named_parameters(), m1.parameters()):
        same(p0.detach().numpy(), p1.detach().numpy(), name)
        same(p0.grad.numpy(), p1.grad.numpy(), name + ".grad")
    for p0, p1 in zip(m0.parameters(), m1.parameters()):
        s0, s1 = o0.state[p0], o1.state[p1]
        assert sorted(s0) == sorted(s1), what
        for k in s0:
            same(np.asarray(s0[k].numpy()), np.asarray(s1[k].numpy()), f"state {k}")
    assert [g["lr"] for g in o0.param_groups] == [g["lr"] for g in o1.param_groups], what


def _run(make_opt, make_sched=None, n=12, change=None, per_step=False, backend=REF):
    """n steps eager and compiled; the scheduler steps per epoch of 3 steps (or every step);
    change(i, opt) edits param_groups by hand. Returns the compiled function."""
    eager, comp = _pair(make_opt)
    scheds = [make_sched(o) for _, o in (eager, comp)] if make_sched else []
    ref = train_step(*eager)
    step = tc.compile(train_step(*comp), **backend)
    exact = backend is REF
    for i, (x, y) in enumerate(_batches(n)):
        if change is not None:
            for _, o in (eager, comp):
                change(i, o)
        l0, l1 = ref(x, y), step(x, y)
        if exact:
            assert l0.item() == l1.item(), f"step {i}: loss"
        _check(eager, comp, f"step {i}", exact)
        if scheds and (per_step or i % 3 == 2):
            for s in scheds:
                s.step()
    return step, comp[1]


SGD_MOMENTUM = lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9)  # noqa: E731
SGD_NESTEROV_WD = lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9,  # noqa: E731
                                      nesterov=True, weight_decay=1e-2)
ADAM = lambda m: optim.Adam(m.parameters(), lr=3e-3, weight_decay=1e-3)  # noqa: E731
ADAMW = lambda m: optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.1, amsgrad=True)  # noqa: E731
OPTIMIZERS = {"sgd": lambda m: optim.SGD(m.parameters(), lr=0.1), "sgd_momentum": SGD_MOMENTUM,
              "sgd_nesterov_wd": SGD_NESTEROV_WD, "adam": ADAM, "adamw": ADAMW}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_step_lr_runs_one_graph_and_matches_eager_exactly(name):
    step, opt = _run(OPTIMIZERS[name], lambda o: lr_scheduler.StepLR(o, step_size=1, gamma=0.7))
    assert opt.param_groups[0]["lr"] != opt.param_groups[0]["initial_lr"]  # it did change
    # plain SGD: the first call (every .grad None) is a graph of its own; with state, that
    # call creates the state and runs once on the interpreter instead
    assert len(step._entries) == (2 if name == "sgd" else 1)
    graph = step.graphs[-1]
    hyper = [v for v in graph.inputs if v.role == "hyper"]
    assert len(hyper) == 1 and hyper[0].type.dtype.name == "float64" and hyper[0].type.shape == ()
    # no constant holds the learning rate (or its negation) any more
    lr = opt.param_groups[0]["initial_lr"]
    assert not any(n.op == "full" and n.params.get("value") in (lr, -lr) for n in graph.nodes)


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_per_step_schedules_run_one_graph(name):
    for make in (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=1e-4),
                 lambda o: lr_scheduler.LambdaLR(o, lambda k: min(1.0, (k + 1) / 5) / math.sqrt(k + 1))):
        step, _ = _run(OPTIMIZERS[name], make, per_step=True)
        assert len(step._entries) == 1


def test_manual_lr_changes_and_two_groups():
    """Each group's lr is its own input; lr may be set to anything (an int, 0) by hand."""
    def make(m):
        first, second = m[0], m[2]
        return optim.Adam([{"params": first.parameters()},
                           {"params": second.parameters(), "lr": 1e-2}], lr=1e-3)

    def change(i, opt):
        g0, g1 = opt.param_groups
        g0["lr"] = [1e-3, 0.0, 1, 2.5e-4][i % 4]
        g1["lr"] = 1e-2 / (i + 1)

    step, _ = _run(make, change=change)
    assert len(step._entries) == 1
    names = [v.name for v in step.graphs[-1].inputs if v.role == "hyper"]
    assert len(names) == 2 and all(n.endswith(".lr") for n in names)


@pytest.mark.parametrize("key, value, name", [("momentum", 0.5, "sgd_momentum"),
                                              ("weight_decay", 0.0, "sgd_nesterov_wd"),
                                              ("betas", (0.8, 0.99), "adam"),
                                              ("weight_decay", 0.3, "adamw")])
def test_other_hyperparameters_still_recompile(key, value, name):
    def change(i, opt):
        opt.param_groups[0]["lr"] *= 0.9
        if i == 6:
            opt.param_groups[0][key] = value

    step, _ = _run(OPTIMIZERS[name], change=change, n=9)
    assert len(step._entries) == 2


def _stepping_scheduler(model, opt, sched):
    def train_step(x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()

    return train_step


def _default_args(model, opt, sched):
    # model and opt reached only through defaults: the pre-scan does not find them
    def train_step(x, y, model=model, opt=opt, sched=sched):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()

    return train_step


@pytest.mark.parametrize("make_fn", [_stepping_scheduler, _default_args])
def test_scheduler_inside_the_compiled_step_is_not_cached(make_fn):
    """A schedule stepped inside the function changes the lr after the update read it: the
    graph would fetch the new value, so such calls are not cached (and still match eager)."""
    eager, comp = _pair(SGD_MOMENTUM)
    ref, fn = (make_fn(m, o, lr_scheduler.StepLR(o, step_size=1, gamma=0.5)) for m, o in (eager, comp))
    step = tc.compile(fn, **REF, recompile_limit=3)
    for i, (x, y) in enumerate(_batches(6)):
        ref(x, y)
        step(x, y)
        _check(eager, comp, f"step {i}")
    assert not step._entries


def test_eager_step_reads_the_python_float():
    model = _model()
    opt = SGD_MOMENTUM(model)
    assert opt._lr(0) == 0.1 and type(opt._lr(0)) is float


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_default_backend_one_graph_close_to_eager(name):
    step, _ = _run(OPTIMIZERS[name], lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5),
                   n=8, per_step=True, backend={})
    assert len(step._entries) == 1


def test_lr_schedule_on_emulated_cuda_with_graph_replay(monkeypatch):
    """On cuda tensors the lr is uploaded when it changes, into the buffer a replayed CUDA
    graph reads (the emulated device: host memory, kernels under Triton's interpreter)."""
    pytest.importorskip("triton")
    from tracecc.runtime import cuda as rcuda

    monkeypatch.setenv(rcuda.EMULATE_ENV, "1")
    monkeypatch.delenv("TRACECC_CUDA_GRAPHS", raising=False)
    lib = rcuda.get_device().driver.lib
    runs = []
    for device in ("cuda", "cpu"):
        model = _model().to(device)
        opt = SGD_NESTEROV_WD(model)
        sched = lr_scheduler.CosineAnnealingLR(opt, T_max=5)
        step = train_step(model, opt)
        if device == "cuda":
            step = tc.compile(step)
        replays = lib.replays
        for x, y in _batches(7):
            step(x.to(device), y.to(device))
            sched.step()
        runs.append((model, step, lib.replays - replays))
    (model, step, replays), (ref, _, _) = runs
    assert len(step._entries) == 1 and replays >= 3
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_an_lr_read_by_user_code_stays_guarded():
    """A step that computes with group["lr"] itself bakes the value into its graph: changing
    the lr must then recompile, not run the stale graph."""
    def make():
        w = tc.tensor(np.ones(3, np.float32), requires_grad=True)
        opt = tc.optim.SGD([w], lr=0.1)

        def step():
            opt.zero_grad()
            loss = (w * w).sum()
            loss.backward()
            opt.step()  # reads the lr as a graph input
            with tc.no_grad():  # the user's own decay reads it from Python
                w.mul_(1 - 0.1 * opt.param_groups[0]["lr"])
            return loss
        return w, opt, step

    w_e, opt_e, eager = make()
    w_c, opt_c, step = make()
    step = tc.compile(step, backend="interpreter", options={"passes": []})
    for i in range(4):
        if i == 2:
            opt_e.param_groups[0]["lr"] = opt_c.param_groups[0]["lr"] = 0.05
        assert step().item() == eager().item()
    np.testing.assert_array_equal(w_c.detach().numpy(), w_e.detach().numpy())
    # (the first call's .grad None is a guard of its own: one graph before the lr change)
    assert len(step._entries) == 3
