"""`tracecc cache info|clear` on a private cache directory, and the fused graph dump."""

import subprocess
import sys

import tracecc as tc


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "tracecc", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cache_info_and_clear(tmp_path, monkeypatch):
    import os
    env = dict(os.environ, TRACECC_CACHE_DIR=str(tmp_path))
    code = "import tracecc as tc; f = tc.compile(lambda x: x * 3 + 1, backend='llvm'); f(tc.ones(5))"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    info = _cli("cache", "info", env=env)
    assert info.returncode == 0 and str(tmp_path) in info.stdout
    entries = int(info.stdout.split("entries")[1].split()[0])
    assert entries >= 1
    cleared = _cli("cache", "clear", env=env)
    assert cleared.returncode == 0 and f"removed {entries}" in cleared.stdout
    assert "entries  0" in _cli("cache", "info", env=env).stdout


def test_fused_stage_lists_kernels_with_members(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACECC_DUMP_DIR", str(tmp_path))
    f = tc.compile(lambda x: tc.softmax(x * 2, 1), backend="llvm")
    f(tc.randn(4, 8))
    fused = next(tmp_path.rglob("*fused.ir")).read_text()
    kernel_lines = [line for line in fused.splitlines() if line.strip().startswith("kernel ")]
    assert len(kernel_lines) == 1 and "exp" in kernel_lines[0] and "amax" in kernel_lines[0]
    assert next(tmp_path.rglob("*kernels.kir")).read_text().count("\nkernel ") == 1
