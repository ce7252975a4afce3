"""The IR on its own: text round trips, parse and verify errors, the interpreter, the pass
manager, the networkx/DOT views and the forward/backward partition."""

import numpy as np
import pytest

from tracecc.passes.interpret import compile_graph, interpret, random_inputs
from tracecc.passes.ir import Graph, KernelGroup, dead_code_elimination
from tracecc.passes.nx import to_dot, to_networkx
from tracecc.passes.parser import parse_graph, parse_literal
from tracecc.passes.partition import split_joint
from tracecc.passes.pipeline import Pass, run_passes
from tracecc.passes.printer import format_literal
from tracecc.passes.verify import verify
from tracecc.runtime.dtypes import float32, int64
from tracecc.runtime.errors import IRParseError, IRVerifyError
from tracecc.runtime.registry import TensorType

MLP = """\
# pass traced: 1.0 ms
graph mlp(%x: f32[4,3], %y: i64[4], %w: f32[2,3] param, %b: f32[2] param) {
  %0 = permute(%w, dims=(1, 0)) : f32[3,2]  # mlp.py:10
  %1 = matmul(%x, %0) : f32[4,2]  # mlp.py:10
  %2 = add(%1, %b) : f32[4,2]  # mlp.py:10
  %3 = relu(%2) : f32[4,2]  # mlp.py:11
  %4 = reshape(%y, shape=(4, 1)) : i64[4,1]  # mlp.py:12
  %5 = gather(%3, %4, axis=1) : f32[4,1]  # mlp.py:12
  %6 = sum(%5, axes=(0, 1), keepdim=False) : f32[]  # mlp.py:12
  %7 = full(shape=(), value=-inf, dtype=f32) : f32[]  # mlp.py:13 (backward)
  %8 = maximum(%6, %7) : f32[]  # mlp.py:13 (backward)
  %9 = full(shape=(), value=0.5, dtype=f32) : f32[]
  %10 = mul(%b, %9) : f32[2]  # mlp.py:14
  kernel k0 [pointwise, 8 elems] = {add %2, relu %3}  # why: same iteration space
  return (loss=%8, %3) ; writes %b <- %10
}
"""


def test_round_trip_is_exact():
    g = parse_graph(MLP)
    assert str(g) == MLP
    assert str(parse_graph(str(g))) == MLP
    verify(g)
    assert [v.role for v in g.inputs] == ["arg", "arg", "param", "param"]
    assert g.nodes[7].region == "backward" and g.nodes[7].loc == "mlp.py:13"
    assert g.nodes[9].loc == "" and g.output_labels == ["loss", None]
    assert g.kernels[0].name == "k0" and [m.name for m in g.kernels[0].members] == ["2", "3"]


def test_long_signature_and_return_print_one_item_per_line_and_parse_back():
    g = Graph("wide")
    xs = [g.add_input(TensorType((64, 784), float32), f"layer{i}.weight", "param") for i in range(6)]
    outs = [g.add_node("neg", [x], {}, x.type, "w.py:1") for x in xs]
    g.set_outputs(outs, [f"out{i}" for i in range(6)])
    for x, o in zip(xs, outs):
        g.add_write(x, o)
    text = str(g)
    assert "\n    %layer0.weight: f32[64,784] param,\n" in text
    assert "\n  ) ; writes\n      %layer0.weight <- %0,\n" in text
    assert str(parse_graph(text)) == text


@pytest.mark.parametrize("value", [0, -3, 1.5, 1e-08, 0.1, float("inf"), float("-inf"), True, None,
                                   (), (1,), (0, 2), [1, 2], "same", float32, int64, ((1, 2), (3,))])
def test_literals_round_trip(value):
    text = format_literal(value)
    back = parse_literal(text)
    assert back == value and type(back) is type(value)


def test_nan_literal():
    assert np.isnan(parse_literal(format_literal(float("nan"))))


@pytest.mark.parametrize("text, message", [
    ("nothing here", "expected `graph name"),
    ("graph g(%x: f32[2]) {\n  %0 = neg(%q) : f32[2]\n  return (%0)\n}", "%q is not defined"),
    ("graph g(%x: f32[2]) {\n  %0 = neg(%x) : q32[2]\n  return (%0)\n}", "bad type"),
    ("graph g(%x: f32[2]) {\n  %0 = neg(%x) : f32[2]\n  %0 = neg(%x) : f32[2]\n  return (%0)\n}",
     "defined twice"),
    ("graph g(%x: f32[2]) {\n  %0 = neg(%x) : f32[2]\n}", "without a `return"),
    ("graph g(%x: f32[2]) {\n  %0 = sum(%x, axes=(0,, keepdim=False) : f32[]\n  return (%0)\n}",
     "bad literal"),
    ("graph g(%x: f32[2] weird) {\n  return (%x)\n}", "unknown role"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(IRParseError) as e:
        parse_graph(text)
    assert e.value.code == "TC120" and message in str(e.value)
    if "line" in str(e.value):
        assert "<ir text>:" in e.value.location


@pytest.mark.parametrize("text, message", [
    ("graph g(%x: f32[2,3]) {\n  %0 = sum(%x, axes=(1,), keepdim=False) : f32[3]  # a.py:7\n"
     "  return (%0)\n}", "declared type f32[3] but the meta rule gives f32[2]"),
    ("graph g(%x: f32[2,3], %y: f32[4]) {\n  %0 = add(%x, %y) : f32[2,3]\n  return (%0)\n}",
     "meta rule rejects"),
    ("graph g(%x: f32[2]) {\n  %0 = frobnicate(%x) : f32[2]\n  return (%0)\n}", "unknown op"),
    ("graph g(%x: f32[2]) {\n  %0 = sum(%x, axes=(0,), keepdim=False) : f32[]\n"
     "  return (%0) ; writes %x <- %0\n}", "type f32[] differs"),
    ("graph g(%x: f32[2]) {\n  %0 = neg(%x) : f32[2]\n  return (%0) ; writes %0 <- %0\n}",
     "not a graph input"),
])
def test_verifier_errors(text, message):
    g = parse_graph(text)
    with pytest.raises(IRVerifyError) as e:
        verify(g)
    assert e.value.code == "TC121" and message in str(e.value)


def test_verifier_catches_use_before_definition_and_points_at_the_node():
    g = parse_graph("graph g(%x: f32[2]) {\n  %0 = neg(%x) : f32[2]  # u.py:3\n"
                    "  %1 = exp(%0) : f32[2]  # u.py:4\n  return (%1)\n}")
    g.nodes.reverse()
    with pytest.raises(IRVerifyError) as e:
        verify(g)
    assert "before it is defined" in str(e.value) and e.value.location == "u.py:4"


def test_interpreter_matches_numpy_and_compiled_runner():
    g = parse_graph(MLP)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0])
    w = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    loss, h, new_b = interpret(g, [x, y, w, b])
    ref_h = np.maximum(x @ w.T + b, 0)
    np.testing.assert_allclose(h, ref_h, rtol=1e-6)
    np.testing.assert_allclose(loss, ref_h[np.arange(4), y].sum(), rtol=1e-6)
    np.testing.assert_array_equal(new_b, b * np.float32(0.5))
    for a, c in zip(compile_graph(g)([x, y, w, b]), [loss, h, new_b]):
        np.testing.assert_array_equal(a, c)


def test_random_inputs_have_the_graph_types():
    g = parse_graph(MLP)
    arrays = random_inputs(g, seed=3)
    assert [a.shape for a in arrays] == [(4, 3), (4,), (2, 3), (2,)]
    assert arrays[1].dtype == np.int64 and set(arrays[1]) <= {0, 1}


def test_dead_code_elimination_keeps_outputs_writes_and_kernel_members():
    g = parse_graph(MLP)
    g.kernels = []
    g.set_outputs([g.nodes[6].out], ["loss"])  # %6 only; %7, %8 become dead
    dead_code_elimination(g)
    assert [n.out.name for n in g.nodes] == ["0", "1", "2", "3", "4", "5", "6", "9", "10"]
    verify(g)


def test_pass_manager_times_verifies_and_reports_each_pass():
    seen = []

    class Sink:
        def enabled(self, kind):
            return True

        def emit(self, kind, message):
            pass

        def stage(self, name, graph=None, text=None, suffix=".ir", kind="passes"):
            seen.append((name, kind, str(graph)))

    def drop_kernels(g):
        g.kernels = []
        return g

    def break_types(g):
        g.nodes[0].out.type = TensorType((9,), float32)
        return g

    g = run_passes(parse_graph(MLP), [Pass("drop_kernels", drop_kernels), Pass("dce", dead_code_elimination),
                                      Pass("off", break_types, enabled=lambda: False)],
                   log=Sink(), verify_each=True)
    assert [s[0] for s in seen] == ["drop_kernels", "dce"]
    assert g.notes[-2].startswith("pass drop_kernels: ") and g.notes[-1].endswith(" ms")
    assert seen[1][2].splitlines()[2].startswith("# pass dce: ")
    with pytest.raises(IRVerifyError):
        run_passes(parse_graph(MLP), [Pass("break", break_types)], verify_each=True)


def test_networkx_view_and_dot_with_kernel_clusters():
    g = parse_graph(MLP)
    nxg = to_networkx(g)
    assert nxg.number_of_nodes() == len(g.inputs) + len(g.nodes)
    relu = g.nodes[3].out
    assert nxg.nodes[relu]["op"] == "relu" and nxg.nodes[relu]["kernel"] == "k0"
    assert set(nxg.predecessors(relu)) == {g.nodes[2].out}
    dot = to_dot(g)
    assert dot.startswith('digraph "mlp" {') and 'subgraph "cluster_k0"' in dot
    assert "writes" in dot and "loss" in dot
    assert '[label="relu\\n%3: f32[4,2]\\nmlp.py:11", fillcolor=white]' in dot  # DOT line breaks


def test_split_joint_into_forward_and_backward():
    joint = parse_graph("""graph f(%x: f32[3], %w: f32[3] param, %grad_out0: f32[3] grad_out) {
  %0 = mul(%x, %w) : f32[3]
  %1 = exp(%0) : f32[3]
  %2 = mul(%grad_out0, %1) : f32[3]  # (backward)
  %3 = mul(%2, %x) : f32[3]  # (backward)
  return (%1)
}""")
    fwd, bwd, saved = split_joint(joint, 1, [joint.nodes[3].out])
    verify(fwd)
    verify(bwd)
    assert [v.name for v in saved] == ["1", "x"]
    assert [n.op for n in fwd.nodes] == ["mul", "exp"] and len(fwd.outputs) == 3
    assert [v.role for v in bwd.inputs] == ["saved", "saved", "grad_out"]
    x, w, g = (np.array([0.5, 1.0, -1.0], np.float32) for _ in range(3))
    y, s1, sx = interpret(fwd, [x, w])
    (gw,) = interpret(bwd, [s1, sx, g])
    np.testing.assert_allclose(gw, g * np.exp(x * w) * x, rtol=1e-6)


def test_kernel_group_printing_names_member_ops():
    g = parse_graph(MLP)
    g.kernels = [KernelGroup("k9", "reduction, 4 rows", [g.nodes[5].out, g.nodes[6].out], "")]
    assert "  kernel k9 [reduction, 4 rows] = {gather %5, sum %6}\n" in str(g)
    assert str(parse_graph(str(g))) == str(g)
