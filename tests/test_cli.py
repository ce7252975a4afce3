"""The tracecc command end to end: dump a tiny script, show its stages, draw and run a graph.
A few runs go through a real subprocess (`python -m tracecc`); the rest call main()."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracecc.cli import main
from tracecc.passes.parser import parse_graph

SCRIPT = textwrap.dedent("""\
    import sys
    import tracecc as tc

    w = tc.randn(3, 2)

    @tc.compile(backend="interpreter")
    def step(x):
        return (x @ w).relu().sum()

    print("result", step(tc.randn(4, 3)).item() >= 0, sys.argv[1:])
""")


def _run(*args, cwd):
    env = dict(os.environ)
    env.pop("TRACECC_DUMP_DIR", None)
    env.pop("TRACECC_LOGS", None)
    return subprocess.run([sys.executable, "-m", "tracecc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    """`tracecc dump script.py a b` once: the dump directory the other tests read."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "script.py").write_text(SCRIPT)
    r = _run("dump", "--dir", "out", "script.py", "a", "--b", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "result True ['a', '--b']" in r.stdout
    assert "1 compiled graph(s) written to out/" in r.stderr and "000_traced.ir" in r.stderr
    return tmp


def test_help_everywhere():
    r = _run("--help", cwd=".")
    assert r.returncode == 0 and all(c in r.stdout for c in ("dump", "show", "graph", "run"))
    for command in ("dump", "show", "graph", "run"):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0


def test_dump_writes_stages_guards_and_repro(dumped):
    fn_dir = dumped / "out" / "step_0"
    names = sorted(p.name for p in fn_dir.iterdir())
    assert names[0] == "000_traced.ir" and "guards.txt" in names and "repro.py" in names
    r = subprocess.run([sys.executable, "repro.py"], cwd=fn_dir, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("%"), r.stderr


def test_show_prints_a_stage_and_lists_stages(dumped, capsys):
    assert main(["show", str(dumped / "out")]) == 0
    out = capsys.readouterr().out
    assert "000_traced.ir" in out and "graph step(%x: f32[4,3], %w: f32[3,2] tensor) {" in out
    assert main(["show", str(dumped / "out"), "--stage", "list"]) == 0
    assert "guards.txt" in capsys.readouterr().out
    assert main(["show", str(dumped / "out"), "--stage", "last"]) == 0
    last = capsys.readouterr().out
    assert "# pass " in last
    assert main(["show", str(dumped / "out"), "--stage", "nosuchstage"]) == 1
    assert "stages: " in capsys.readouterr().err


def test_graph_writes_dot_and_explains_missing_graphviz(dumped, tmp_path, capsys):
    ir = dumped / "out" / "step_0" / "000_traced.ir"
    assert main(["graph", str(ir), "-o", str(tmp_path / "g.dot")]) == 0
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith('digraph "step"') and "matmul" in dot and "->" in dot
    code = main(["graph", str(dumped / "out" / "step_0"), "-o", str(tmp_path / "g.svg")])
    if shutil.which("dot"):
        assert code == 0 and (tmp_path / "g.svg").exists()
    else:
        assert code == 1 and "Graphviz" in capsys.readouterr().err
        assert (tmp_path / "g.dot").exists()


def test_run_a_dumped_graph(dumped):
    ir = dumped / "out" / "step_0" / "000_traced.ir"
    r = _run("run", str(ir), "--repeat", "2", cwd=dumped)
    assert r.returncode == 0, r.stderr
    assert "graph step, 2 inputs, 3 nodes, backend interpreter" in r.stdout
    assert "(out): float32[]" in r.stdout


def test_bad_ir_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.ir"
    bad.write_text("graph g(%x: f32[2]) {\n  %0 = neg(%y) : f32[2]\n  return (%0)\n}\n")
    assert main(["run", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "TC120" in err and "line 2" in err and "%y is not defined" in err


def test_dump_of_a_script_that_compiles_nothing(tmp_path, capsys):
    (tmp_path / "plain.py").write_text("print('hello')\n")
    assert main(["dump", "--dir", str(tmp_path / "out"), str(tmp_path / "plain.py")]) == 1
    assert "compiled nothing" in capsys.readouterr().err


def test_dump_asm_writes_the_llvm_assembly(tmp_path):
    (tmp_path / "llvm.py").write_text(SCRIPT.replace('backend="interpreter"', 'backend="llvm"'))
    r = _run("dump", "--asm", "--dir", "out", "llvm.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    asm = next((tmp_path / "out" / "step_0").glob("*_asm.s")).read_text()
    assert "# kernel " in asm and "\t.globl\t" in asm


def test_graph_with_kernel_clusters(tmp_path):
    ir = tmp_path / "k.ir"
    ir.write_text(textwrap.dedent("""\
        graph k(%x: f32[4]) {
          %0 = exp(%x) : f32[4]
          %1 = neg(%0) : f32[4]
          kernel k0 [pointwise, 4 elems] = {exp %0, neg %1}
          return (%1)
        }
    """))
    parse_graph(ir.read_text())
    assert main(["graph", str(ir), "-o", str(tmp_path / "k.dot")]) == 0
    assert 'subgraph "cluster_k0"' in (tmp_path / "k.dot").read_text()


def test_bench_is_mounted_when_present():
    try:
        import tracecc.bench.cli  # noqa: F401
    except ImportError:
        pytest.skip("tracecc.bench not installed")
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    assert Path(sys.executable).exists()


def test_run_expands_composites_and_gradient_requests(tmp_path, capsys):
    """A traced training step holds composites and `grad` requests: `run` expands them."""
    ir = tmp_path / "step.ir"
    ir.write_text("""graph step(%x: f32[4,3], %w: f32[2,3] param, %y: i64[4]) {
  %0 = linear(%x, %w, bias=None) : f32[4,2]
  %1 = cross_entropy(%0, %y, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction='mean', label_smoothing=0.0) : f32[]
  %2 = full(shape=(), value=1, dtype=f32) : f32[]
  %3 = grad(%1, %2, %w, request=0, n_roots=1, create_graph=False) : f32[2,3]
  return (loss=%1, w.grad=%3)
}
""")
    assert main(["run", str(ir)]) == 0
    out = capsys.readouterr().out
    assert "(loss): float32[]" in out and "(w.grad): float32[2, 3]" in out
