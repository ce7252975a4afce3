"""The benchmark harness, for correctness only, at tiny sizes (no timing assertions)."""

import json

import numpy as np
import pytest

import tracecc
from tracecc.bench import cli, report
from tracecc.bench.frameworks import NumpyEnv, TorchEnv, TraceccEnv, make_envs
from tracecc.bench.harness import compare, run_case, run_suite
from tracecc.bench.workloads import make_cases, select

# compiled variants: with a stand-in compile below (the real backends have their own tests)
TINY = dict(size="tiny", repeat=3, warmup=1, peers=False, backends=[])


def _by_variant(case_result):
    return {r.variant: r for r in case_result.results}


@pytest.fixture(scope="module")
def tiny_results():
    return run_suite(**TINY)


def test_every_workload_runs_and_checks_at_tiny_size(tiny_results):
    assert [cr.id for cr in tiny_results] == ["W1", "W2", "W3", "W4/b4", "W4/b16", "W5"]
    for cr in tiny_results:
        rs = _by_variant(cr)
        for name in ("numpy", "tracecc eager"):
            r = rs[name]
            assert r.status == "ok", (cr.id, name, r.reason)
            assert len(r.samples_s) == 3 and r.median_s > 0 and r.first_call_s > 0
            assert r.max_err is not None and r.max_err <= cr.tol
        assert rs["tracecc eager"].vs_eager == 1.0
        if cr.workload in ("W1", "W2", "W3"):
            assert cr.copy_bandwidth > 0 and cr.floor_s > 0 and rs["numpy"].x_floor > 0
        else:
            assert cr.flops > 0 and rs["numpy"].gflops > 0
        assert rs["numpy"].peak_bytes is not None


def test_reference_really_differs_from_a_perturbed_result():
    ref = [np.ones((3, 4))]
    assert compare([np.ones((3, 4), np.float32)], ref, 1e-4) == (0.0, "")
    err, why = compare([np.full((3, 4), 1.01, np.float32)], ref, 1e-4)
    assert why and err == pytest.approx(0.01, rel=1e-3)
    assert "shape" in compare([np.ones((4, 3))], ref, 1e-4)[1]
    assert "nan" in compare([np.full((3, 4), np.nan)], ref, 1e-4)[1]
    assert "returned 2 values" in compare([ref[0], ref[0]], ref, 1e-4)[1]


class WrongEnv(NumpyEnv):
    """The numpy variant, but its results come back off by 1% from the n-th check on."""

    def __init__(self, name, wrong_from=0):
        super().__init__()
        self.name, self.wrong_from, self.reads = name, wrong_from, 0

    def to_numpy(self, value):
        self.reads += 1
        a = np.array(value, copy=True)
        return a * 1.01 if self.reads > self.wrong_from else a


class RaisingEnv(NumpyEnv):
    name = "raises"

    def unavailable(self):
        return None

    def sync(self, out):
        raise RuntimeError("kernel exploded\nsecond line")


class AbsentEnv(NumpyEnv):
    name = "absent peer"

    def unavailable(self):
        return "not installed here"


@pytest.mark.parametrize("case_id", ["W1", "W4/b4", "W5"])
def test_wrong_results_are_failures_not_times(case_id):
    case = select(make_cases("cpu", "tiny"), [case_id])[0]
    envs = [NumpyEnv(), WrongEnv("wrong at once"), RaisingEnv(), AbsentEnv()]
    # wrong only from the last check on (the first call is right): caught after the timing
    n_values = 1 if case.workload in ("W1",) else (7 if case.workload == "W4" else 13)
    envs.append(WrongEnv("wrong later", wrong_from=n_values))
    cr = run_case(case, envs, repeat=2, warmup=1, copy_bytes=1 << 16)
    rs = _by_variant(cr)
    assert rs["numpy"].status == "ok"
    for name in ("wrong at once", "wrong later"):
        r = rs[name]
        assert r.status == "FAIL" and r.median_s is None and r.samples_s == [] and r.vs_eager is None
    assert rs["wrong at once"].reason.startswith("first call")
    assert rs["wrong later"].reason.startswith("call 4")  # 1 first + 1 warm-up + 2 timed
    assert rs["raises"].status == "error" and rs["raises"].reason == "RuntimeError: kernel exploded"
    assert rs["absent peer"].status == "absent" and rs["absent peer"].reason == "not installed here"
    table = report.case_table(cr)
    assert "FAIL: first call" in table and "absent: not installed here" in table


def _fake_compile(with_kernel_times=True, broken=False):
    """A stand-in for tracecc.compile: runs the function eagerly, reports two 'kernels'."""
    compiled = []

    def compile(fn, backend=None, fullgraph=False):
        if broken and backend == "broken":
            raise NotImplementedError("backend broken: no lowering for gather")

        class Compiled:
            def __call__(self, *args):
                return fn(*args)

            if with_kernel_times:
                def kernel_times(self):
                    return {"k0": 1e-6, "k1": 2e-6}

        compiled.append((backend, fullgraph))
        return Compiled()

    compile.backends = ["fake", "broken"] if broken else ["fake"]
    return compile, compiled


def test_compiled_backends_are_discovered_timed_and_a_broken_one_reported(monkeypatch):
    fake, calls = _fake_compile(broken=True)
    monkeypatch.setattr(tracecc, "compile", fake, raising=False)
    monkeypatch.delattr(tracecc, "list_backends", raising=False)
    envs = make_envs("cpu", peers=False)
    assert [e.name for e in envs] == ["numpy", "tracecc eager", "tracecc compiled (fake)",
                                      "tracecc compiled (broken)"]
    assert [e.name for e in make_envs("cpu", backends=[], peers=False)] == ["numpy", "tracecc eager"]
    case = select(make_cases("cpu", "tiny"), ["W4/b4"])[0]
    cr = run_case(case, envs, repeat=2, warmup=0)
    rs = _by_variant(cr)
    ok = rs["tracecc compiled (fake)"]
    assert ok.status == "ok" and ok.first_call_s > 0 and ok.cache_hit_s > 0
    assert ok.kernel_s == pytest.approx(3e-6)
    # the overhead is warm calls' median less the kernels' time: here the fake's whole (eager)
    # step, so about the rounds' median less the 3 us it reports
    assert 0 < ok.overhead_s == pytest.approx(ok.median_s - 3e-6, rel=1.0)
    assert ("fake", True) in calls  # fullgraph=True: no silent eager fallback gets timed
    broken = rs["tracecc compiled (broken)"]
    assert broken.status == "error" and "no lowering for gather" in broken.reason
    assert "overhead" in report.case_table(cr)


def test_compiled_variant_is_absent_when_compile_is_not_built(monkeypatch):
    monkeypatch.delattr(tracecc, "compile", raising=False)
    env = [e for e in make_envs("cpu", peers=False) if e.compiled][0]
    assert env.unavailable() == "tracecc.compile is not built yet"
    assert TraceccEnv("cuda").unavailable().startswith("tracecc: DeviceError")


def test_cli_writes_json_markdown_and_plot(tmp_path, capsys, monkeypatch):
    out_json, out_md, out_png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    monkeypatch.delattr(tracecc, "compile", raising=False)  # its row: absent, with the reason
    rc = cli.main(["W1", "softmax", "W4/b4", "--size", "tiny", "--repeat", "2", "--warmup", "0",
                   "--no-peers", "-q", "--json", str(out_json), "--markdown", str(out_md),
                   "--plot", str(out_png)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert stdout == out_md.read_text()
    data = json.loads(out_json.read_text())
    assert data["meta"]["size"] == "tiny" and data["meta"]["repeat"] == 2
    assert data["meta"]["machine"]["cores"] >= 1 and data["meta"]["machine"]["versions"]["numpy"]
    assert [c["id"] for c in data["cases"]] == ["W1", "W3", "W4/b4"]
    w1 = data["cases"][0]
    assert w1["bytes_moved"] == 2 * 4 * 1003 and w1["floor_s"] > 0
    numpy_row = w1["results"][0]
    for key in ("variant", "status", "median_s", "p25_s", "p75_s", "min_s", "max_s", "samples_s",
                "first_call_s", "vs_eager", "x_floor", "peak_bytes", "max_err"):
        assert key in numpy_row
    assert numpy_row["variant"] == "numpy" and len(numpy_row["samples_s"]) == 2
    assert w1["results"][2]["status"] == "absent" and "not built" in w1["results"][2]["reason"]
    assert data["cases"][2]["flops"] > 0 and data["cases"][2]["results"][0]["gflops"] > 0
    # the markdown: a summary table and one table per case, every row with as many cells as its header
    assert "### Summary" in stdout and "### W4/b4 MLP step: batch 4, cpu" in stdout
    tables = [block.splitlines() for block in stdout.split("\n\n") if block.startswith("|")]
    assert len(tables) == 4
    for rows in tables:
        assert len({row.count("|") for row in rows}) == 1 and set(rows[1]) <= {"|", "-"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_an_unknown_workload(capsys):
    assert cli.main(["W9", "--size", "tiny", "-q"]) == 2
    assert "unknown workload w9" in capsys.readouterr().err


def test_cli_mounts_as_a_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="tracecc")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "W2", "--repeat", "5", "--json", "x.json"])
    assert args.func is cli.run and args.workloads == ["W2"] and args.repeat == 5


@pytest.mark.parametrize("case_id", ["W1", "W2", "W3", "W4/b4", "W5"])
def test_torch_implementations_match_the_reference(case_id):
    pytest.importorskip("torch")
    case = select(make_cases("cpu", "tiny"), [case_id])[0]
    cr = run_case(case, [NumpyEnv(), TorchEnv()], repeat=1, warmup=0)
    r = _by_variant(cr)["torch eager"]
    assert r.status == "ok", r.reason


def test_threads_can_be_limited_and_are_reported():
    from tracecc.bench.frameworks import set_threads, threads_in_use

    before = threads_in_use(peers=False)
    if "numpy (OpenBLAS)" not in before:
        pytest.skip("numpy is not linked to OpenBLAS here")
    try:
        assert set_threads(1, peers=False)["numpy (OpenBLAS)"] == 1
    finally:
        set_threads(before["numpy (OpenBLAS)"], peers=False)
    assert threads_in_use(peers=False) == before


def test_backends_come_from_the_codegen_registry_without_test_only_ones(monkeypatch):
    from tracecc.bench.frameworks import tracecc_backends
    from tracecc.codegen import backends as registry

    monkeypatch.setattr(tracecc, "compile", lambda fn, **kwargs: fn, raising=False)
    monkeypatch.delattr(tracecc, "list_backends", raising=False)
    fake = {name: registry.Backend(name, None, priority, available)
            for name, priority, available in (("fast", 10, lambda: True), ("for_tests", -1, lambda: True),
                                              ("reference", 0, lambda: True), ("gpu", 20, lambda: False))}
    monkeypatch.setattr(registry, "BACKENDS", fake)
    monkeypatch.setattr(registry, "get_backend", lambda name="auto": None)
    assert tracecc_backends() == ["reference", "fast"]
    assert [e.name for e in make_envs("cpu", backends=["for_tests"], peers=False)][-1] == \
        "tracecc compiled (for_tests)"


def test_thread_environment_pins_every_library():
    env = cli.thread_environment(1)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert "XLA_FLAGS" not in cli.thread_environment(2)


def test_a_hung_call_ends_the_run_with_every_stack_printed():
    import subprocess
    import sys

    code = "import time\nfrom tracecc.bench.harness import watchdog\nwith watchdog(0.5):\n    time.sleep(30)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "time.sleep" not in proc.stdout and "Thread" in proc.stderr
    with __import__("tracecc.bench.harness", fromlist=["watchdog"]).watchdog(None):
        pass  # no timeout: nothing armed
