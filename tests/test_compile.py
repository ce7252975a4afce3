"""tracecc.compile: the ways to call it, what a graph captures (arguments, lifted tensors,
constants, random draws, in-place updates, nested outputs), compiled backward graphs,
fallbacks and their messages, explain(), logs and dumps, and the backend registry."""

from __future__ import annotations

import collections
import inspect

import numpy as np
import pytest

import tracecc as tc
import tracecc.nn as nn
from tracecc.codegen.backends import BACKENDS, get_backend, register_backend
from tracecc.passes.interpret import compile_graph
from tracecc.passes.parser import parse_graph
from tracecc.passes.verify import verify

REF = dict(backend="interpreter", options={"passes": []})


@pytest.fixture(autouse=True)
def _verify_every_pass(monkeypatch):
    monkeypatch.setenv("TRACECC_VERIFY", "1")
    monkeypatch.delenv("TRACECC_LOGS", raising=False)
    monkeypatch.delenv("TRACECC_DUMP_DIR", raising=False)


def _eq(a, b):
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def _line_of(fn, text):
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


# ---------------------------------------------------------------- ways to compile
def test_decorator_forms_and_function_attributes():
    @tc.compile
    def f(x):
        """doc"""
        return x * 2

    @tc.compile(**REF)
    def g(x):
        return x + 1

    x = tc.randn(3)
    _eq(f(x), x * 2)
    _eq(g(x), x + 1)
    assert f.__name__ == "f" and f.__doc__ == "doc" and tc.compile(f) is f
    assert tc.compile(lambda x: x, disable=True)(x) is x


def test_compile_model_and_module_compile_in_place():
    tc.manual_seed(0)
    lin = nn.Linear(4, 3)
    x = tc.randn(2, 4)
    expected = lin(x)
    compiled = tc.compile(lin, **REF)
    _eq(compiled(x), expected)
    assert compiled.weight is lin.weight and compiled.training
    assert [v.name for v in compiled.graphs[0].inputs] == ["input", "weight", "bias"]
    lin.compile(**REF)
    _eq(lin(x), expected)
    assert lin._compiled_call.traces == 1
    lin(x)
    assert lin._compiled_call.traces == 1


def test_compile_on_a_method_binds_per_instance():
    class Scaler:
        def __init__(self, k):
            self.k = tc.tensor(float(k))

        @tc.compile(**REF)
        def __call__(self, x):
            return x * self.k

    x = tc.ones(2)
    _eq(Scaler(2)(x), x * 2)
    _eq(Scaler(5)(x), x * 5)


def test_nested_outputs_kwargs_and_python_values():
    Pair = collections.namedtuple("Pair", "a b")

    @tc.compile(**REF)
    def f(x, *, scale=1.0, tag="t"):
        return {"sum": x.sum() * scale, "parts": [x, Pair(x + 1, x - 1)], "tag": tag, "n": 3}

    x = tc.randn(4)
    out = f(x, scale=2.0)
    _eq(out["sum"], x.sum() * 2.0)
    assert isinstance(out["parts"][1], Pair) and out["tag"] == "t" and out["n"] == 3
    _eq(out["parts"][1].b, x - 1)
    f(x, scale=3.0)
    assert f.traces == 2  # a Python scalar argument is part of the key


# ---------------------------------------------------------------- what a graph captures
def test_closure_tensors_are_lifted_not_baked():
    w = tc.ones(3)

    @tc.compile(**REF)
    def f(x):
        return x * w

    x = tc.randn(3)
    _eq(f(x), x)
    w.mul_(2)  # changed between calls, in place: the graph reads the new value
    _eq(f(x), x * 2)
    assert f.traces == 1 and f.graphs[0].inputs[1].role == "tensor"


def test_modules_and_optimizers_given_as_default_arguments_are_found():
    model = nn.Linear(4, 3)
    opt = tc.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y, model=model, opt=opt):  # a common way to bind them
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    compiled = tc.compile(step, **REF)
    x, y = tc.randn(8, 4), tc.randn(8, 3)
    eager_model = nn.Linear(4, 3)
    eager_model.load_state_dict(model.state_dict())
    eager_opt = tc.optim.SGD(eager_model.parameters(), lr=0.1)
    for _ in range(5):
        _eq(compiled(x, y), step(x, y, eager_model, eager_opt))
    # traced without grads, then with them; the parameters are named, not anonymous
    assert compiled.traces == 2 and not compiled.fallbacks
    assert [i.name for i in compiled.graphs[-1].inputs if i.role == "param"] == ["weight", "bias"]
    _eq(model.weight, eager_model.weight)


def test_rebinding_a_global_or_closure_tensor_recompiles():
    w = tc.ones(3)

    @tc.compile(**REF)
    def f(x):
        return x * w

    x = tc.randn(3)
    f(x)
    w = tc.full((3,), 3.0)  # noqa: F841  (a new object under the same name)
    _eq(f(x), x * 3)
    assert f.traces == 2


def test_in_place_updates_of_arguments_and_lifted_tensors_are_written_back():
    state = tc.zeros(3)

    @tc.compile(**REF)
    def f(x):
        x.add_(1)
        state.add_(x)
        x[0] = 10.0
        return x.sum()

    x = tc.ones(3)
    s = f(x)
    np.testing.assert_array_equal(x.numpy(), [10, 2, 2])
    np.testing.assert_array_equal(state.numpy(), [2, 2, 2])
    assert s.item() == 14
    f(x)  # x was [10, 2, 2]: now [11, 3, 3], then x[0] = 10
    np.testing.assert_array_equal(state.numpy(), [13, 5, 5])
    np.testing.assert_array_equal(x.numpy(), [10, 3, 3])
    graph = f.graphs[0]
    assert [(a.name, a.role) for a, _ in graph.writes] == [("x", "arg"), ("state", "tensor")]


def test_data_aliases_share_one_input():
    p = tc.randn(4)

    @tc.compile(**REF)
    def f():
        p.data.mul_(2)  # through .data: the same storage as p
        return p * 1

    before = p.numpy().copy()
    out = f()
    np.testing.assert_array_equal(p.numpy(), before * 2)
    _eq(out, p)
    assert len(f.graphs[0].inputs) == 1


def test_tensors_made_from_data_inside_are_constants():
    @tc.compile(**REF)
    def f(x):
        return x * tc.tensor([1.0, 2.0, 3.0]) + tc.arange(3)

    x = tc.ones(3)
    for _ in range(3):
        np.testing.assert_array_equal(f(x).numpy(), [1, 3, 5])
    inputs = f.graphs[0].inputs
    assert f.traces == 1 and [v.role for v in inputs] == ["arg", "const"] and inputs[1].name == "c0"


def test_updates_to_a_tensor_made_inside_do_not_carry_over_to_the_next_call():
    @tc.compile(**REF)
    def f(x):
        t = tc.tensor([1.0, 2.0])
        t.add_(x)
        return t * 1

    for _ in range(3):
        np.testing.assert_array_equal(f(tc.ones(2)).numpy(), [2, 3])
    assert not f.graphs[0].writes


def test_random_numbers_are_drawn_per_call_like_eager():
    def f(x):
        return x + tc.rand(3) + tc.randn(3)

    cf = tc.compile(f, **REF)
    x = tc.zeros(3)
    tc.manual_seed(7)
    e1, e2 = f(x), f(x)
    tc.manual_seed(7)
    c1, c2 = cf(x), cf(x)
    _eq(c1, e1)
    _eq(c2, e2)
    assert not np.array_equal(c1.numpy(), c2.numpy())
    assert [v.role for v in cf.graphs[0].inputs] == ["arg", "random", "random"]


def test_nested_compiled_functions_inline():
    inner = tc.compile(lambda x: x.exp(), **REF)

    @tc.compile(**REF)
    def outer(x):
        return inner(x) + 1

    x = tc.randn(3)
    _eq(outer(x), x.exp() + 1)
    assert inner.traces == 0 and [n.op for n in outer.graphs[0].nodes] == ["exp", "full", "add"]


def test_escaping_tensors_are_made_real_and_the_next_call_traces_again():
    class Cache(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.last = None

        def forward(self, x):
            h = self.lin(x)
            if self.last is None:
                self.last = h.detach()  # symbolic tensor escapes into the module, first call only
            return h + self.last

    tc.manual_seed(0)
    ref = Cache()
    tc.manual_seed(0)
    model = Cache()
    step = tc.compile(model, **REF)
    x = tc.randn(2, 3)
    with tc.no_grad():
        for _ in range(3):
            _eq(step(x), ref(x))
    _eq(model.last, ref.last)
    assert isinstance(model.last._data, np.ndarray)
    assert step.traces == 2 and "escaped" in step.fallbacks[0]


def test_python_side_effects_the_graph_cannot_replay_are_not_cached():
    p = nn.Parameter(tc.ones(2))
    opt = tc.optim.SGD([p], lr=1.0)

    @tc.compile(**REF)
    def step():
        opt.param_groups[0]["lr"] *= 0.5  # a schedule inside the step: plain Python state
        p.grad = tc.ones(2)
        opt.step()

    for _ in range(3):
        step()
    np.testing.assert_array_equal(p.detach().numpy(), [1 - 0.5 - 0.25 - 0.125] * 2)
    assert not step._entries and "changed Python state" in step.fallbacks[0]
    assert "param_groups[0]['lr'] changed: 1.0 -> 0.5" in step.fallbacks[0]


# ---------------------------------------------------------------- compiled backward graphs
def test_forward_compile_gets_a_backward_graph():
    tc.manual_seed(0)
    lin_ref, lin = nn.Linear(4, 2), nn.Linear(4, 2)
    lin.load_state_dict(lin_ref.state_dict())
    f = tc.compile(lambda x: (lin(x).tanh() ** 2).sum(dim=1), **REF)
    x_ref, x = tc.randn(3, 4, requires_grad=True), None
    x = x_ref.detach().clone().requires_grad_()
    out_ref, out = (lin_ref(x_ref).tanh() ** 2).sum(dim=1), f(x)
    assert out.requires_grad and "Compiled" in type(out.grad_fn).__name__ + out.grad_fn.name
    out_ref.sum().backward()
    out.sum().backward()
    _eq(x.grad, x_ref.grad)
    _eq(lin.weight.grad, lin_ref.weight.grad)
    fwd, bwd = f.graphs
    assert fwd.name.endswith("_forward") and bwd.name.endswith("_backward")
    assert {v.role for v in bwd.inputs} == {"saved", "grad_out"}
    assert bwd.output_labels == ["x.grad", "weight.grad", "bias.grad"]
    with tc.no_grad():  # no grad needed: another key, a forward-only graph
        assert not f(x).requires_grad
    assert len(f._entries) == 2


def test_double_backward_through_a_compiled_function_is_a_clear_error():
    f = tc.compile(lambda x: (x ** 3).sum(), **REF)
    x = tc.randn(3, requires_grad=True)
    (g,) = tc.autograd.grad(f(x), [x])  # first order: fine
    np.testing.assert_allclose(g.numpy(), 3 * x.detach().numpy() ** 2, rtol=1e-6)
    with pytest.raises(tc.TraceccError, match="double backward"):
        tc.autograd.grad(f(x), [x], create_graph=True)


def test_modifying_an_input_after_the_compiled_forward_is_caught():
    f = tc.compile(lambda x: (x * x).sum(), **REF)
    x = tc.randn(3, requires_grad=True)
    h = x * 1
    out = f(h)
    h.add_(1)
    with pytest.raises(tc.TraceccError, match="modified by an in-place operation"):
        out.backward()


# ---------------------------------------------------------------- fallbacks
def test_data_dependent_python_raises_tc101_at_the_users_line():
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(tc.TraceccError) as e:
        tc.compile(f, **REF)(tc.ones(3))
    assert e.value.code == "TC101" and "bool()" in str(e.value) and "fullgraph=False" in str(e.value)
    assert e.value.location.endswith(f"test_compile.py:{_line_of(f, 'if x.sum()')}")
    frames = [fr for fr in __import__("traceback").extract_tb(e.value.__traceback__)]
    assert all("/tracecc/" not in fr.filename.replace("\\", "/").split("/work/main")[-1][:9]
               for fr in frames)


def test_fullgraph_false_runs_eagerly_with_a_one_line_reason(capsys):
    calls = []

    def f(x):
        calls.append(1)
        y = x * 2
        return y if y.sum().item() > 0 else -y

    cf = tc.compile(f, backend="interpreter", fullgraph=False)
    x = tc.ones(3)
    for _ in range(3):
        _eq(cf(x), x * 2)
    assert len(calls) == 3 and cf.traces == 1  # traced once; that key then runs eagerly
    err = capsys.readouterr().err
    assert err.count("runs eagerly (fullgraph=False)") == 1 and "item()" in err


def test_unsupported_in_place_write_is_tc102():
    @tc.compile(**REF)
    def f(x):
        y = x.expand(2, 3)
        y.add_(1)
        return y

    with pytest.raises(tc.TraceccError) as e:
        f(tc.ones(3))
    assert e.value.code in ("TC102", "TC011")


def test_error_inside_the_trace_leaves_state_as_eager_would():
    state = tc.zeros(2)

    @tc.compile(**REF)
    def f(x):
        state.add_(1)
        return x @ tc.ones(5)  # shape error after the update

    with pytest.raises(tc.TraceccError):
        f(tc.ones(2, 3))
    np.testing.assert_array_equal(state.numpy(), [1, 1])  # the update happened, as in eager
    assert isinstance(state._data, np.ndarray)


# ---------------------------------------------------------------- explain, logs, dumps
def test_explain_reports_graphs_fallbacks_and_guards():
    w = tc.randn(3, 3)

    def f(x):
        return (x @ w).relu()

    out = tc.explain(f, tc.randn(2, 3))
    assert out.graph_count == 1 and out.node_count >= 2 and out.op_counts["matmul"] == 1
    assert not out.fallbacks and any("x.shape" in g for g in out.guards)
    text = str(out)
    assert "graphs: 1" in text and "fallbacks: none" in text and "graph f(" in text
    broken = tc.explain(lambda x: x * x.sum().item(), tc.ones(2))
    assert broken.graph_count == 0 and "item()" in broken.fallbacks[0]


def test_logs_print_the_named_stages(monkeypatch, capsys):
    monkeypatch.setenv("TRACECC_LOGS", "graph,guards")

    @tc.compile(backend="interpreter")
    def f(x):
        return x.exp()

    f(tc.ones(2))
    err = capsys.readouterr().err
    assert "[tracecc graph] f: stage traced" in err and "graph f(%x: f32[2])" in err
    assert "[tracecc guards] f: " in err and "x.shape == [2]" in err
    f(tc.ones(2))
    assert capsys.readouterr().err == ""  # a hit logs nothing


def test_dump_dir_has_numbered_stages_guards_and_a_repro(monkeypatch, tmp_path):
    monkeypatch.setenv("TRACECC_DUMP_DIR", str(tmp_path))

    @tc.compile(backend="interpreter")
    def step(x):
        return (x * 2).sum()

    step(tc.ones(3))
    step(tc.ones(4))
    dirs = sorted(p.name for p in tmp_path.iterdir())
    assert dirs == ["step_0", "step_1"]
    files = sorted(p.name for p in (tmp_path / "step_0").iterdir())
    assert files[0] == "000_traced.ir" and "guards.txt" in files and "repro.py" in files
    assert any(f.startswith("001_") for f in files)
    traced = (tmp_path / "step_0" / "000_traced.ir").read_text()
    g = verify(parse_graph(traced))
    assert g.notes[0].startswith("traced step at ") and "x.shape == [3]" in (
        tmp_path / "step_0" / "guards.txt").read_text()
    namespace = {"__name__": "not_main"}
    exec(compile((tmp_path / "step_0" / "repro.py").read_text(), "repro.py", "exec"), namespace)
    assert verify(parse_graph(namespace["IR"])).name == "step"


def test_llvm_dump_heads_each_kernel_with_its_ops_and_asm_on_request(monkeypatch, tmp_path):
    monkeypatch.setenv("TRACECC_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("TRACECC_DUMP_ASM", "1")

    @tc.compile(backend="llvm")
    def step(x, w):
        return (x @ w).relu().sum()

    step(tc.randn(4, 3), tc.randn(3, 5))
    d = tmp_path / "step_0"
    llvm_ir = next(d.glob("*_llvm.ll")).read_text()
    asm = next(d.glob("*_asm.s")).read_text()
    line = _line_of(step, "x @ w")
    for text, comment, start in ((llvm_ir, ";", "define void @"), (asm, "#", "\t.globl\t")):
        lines = text.splitlines()
        heads = [i for i, s in enumerate(lines) if s.startswith(f"{comment} kernel ")]
        assert heads, text[:500]
        for i in heads:  # the kernel IR comes right before the function it describes
            name = lines[i].split()[2]
            following = next(s for s in lines[i:] if not s.startswith(comment))
            assert following.startswith(start) and name in following
        assert "member: matmul" in text and f"test_compile.py:{line}" in text

# ---------------------------------------------------------------- backends
def test_backend_registry_auto_custom_and_unknown():
    assert get_backend("auto").priority == max(b.priority for b in BACKENDS.values() if b.available())
    calls = []

    def counting(graph, log=None):
        calls.append(graph.name)
        return compile_graph(graph)

    register_backend("counting", counting, priority=-1)
    try:
        f = tc.compile(lambda x: x + 1, backend="counting", options={"passes": []})
        _eq(f(tc.ones(2)), tc.full((2,), 2.0))
        assert calls == ["lambda"]
    finally:
        BACKENDS.pop("counting")
    with pytest.raises(tc.TraceccError, match="backend 'nope' is not available"):
        tc.compile(lambda x: x, backend="nope")(tc.ones(1))


def test_unknown_option_and_pass_names_are_errors():
    with pytest.raises(tc.TraceccError, match="unknown option"):
        tc.compile(lambda x: x, options={"bogus": 1})
    with pytest.raises(tc.TraceccError, match="unknown pass"):
        tc.compile(lambda x: x + 1, options={"passes": ["nope"]})(tc.ones(1))
