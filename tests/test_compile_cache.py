"""On-disk compile cache: hit, miss on any key change, corrupt or truncated entries rebuilt
(never loaded), concurrent writers, info/clear, and a broken cache never breaking compiles."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tracecc.codegen import cache
from tracecc.codegen.llvm import jit, matmul
from test_llvm_jit import SIG, X, call, relu_module


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACECC_CACHE_DIR", str(tmp_path / "cc"))
    monkeypatch.delenv("TRACECC_CACHE", raising=False)
    return tmp_path / "cc"


def entry_files(d):
    return sorted((d / "llvm").glob("*.o"))


def compile_relu(name="relu"):
    cm = jit.compile_module(relu_module(name), cache=True)
    assert np.array_equal(call(cm.cfunc(name, *SIG), X), np.maximum(X, 0))
    return cm


def test_miss_then_hit(cache_dir):
    first = compile_relu()
    assert not first.from_cache and len(entry_files(cache_dir)) == 1
    second = compile_relu()
    assert second.from_cache and "optimize" not in second.timings
    assert second.object_bytes == first.object_bytes


def test_miss_when_ir_target_or_version_changes(cache_dir, monkeypatch):
    compile_relu("a")
    assert not compile_relu("b").from_cache  # different IR text
    assert len(entry_files(cache_dir)) == 2
    text = str(relu_module("a"))
    k = cache.make_key(text, "cpu-x")
    assert k != cache.make_key(text, "cpu-y")
    monkeypatch.setattr(cache, "tracecc_version", lambda: "9.9.9")
    assert cache.make_key(text, "cpu-x") != k
    assert not compile_relu("a").from_cache  # same IR, other tracecc version


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "empty", "garbage", "other_key"])
def test_bad_entry_is_detected_deleted_and_rebuilt(cache_dir, damage):
    compile_relu("a")
    (path,) = entry_files(cache_dir)
    data = path.read_bytes()
    if damage == "flip_byte":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x40
        path.write_bytes(bytes(b))
    elif damage == "truncate":
        path.write_bytes(data[: len(data) - 100])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:  # a valid entry written for another key, renamed onto this one
        compile_relu("b")
        other = [p for p in entry_files(cache_dir) if p != path][0]
        os.replace(other, path)
    before = cache.stats["corrupt"]
    cm = compile_relu("a")  # asserts the result is right
    assert not cm.from_cache
    assert cache.stats["corrupt"] == before + 1
    assert compile_relu("a").from_cache  # rebuilt entry is good


def test_decode_rejects_every_truncation():
    blob = cache.encode("ab" * 32, b"\x7fELF" + bytes(range(200)))
    assert cache.decode("ab" * 32, blob) is not None
    assert all(cache.decode("ab" * 32, blob[:n]) is None for n in range(len(blob)))


WRITER = textwrap.dedent("""
    import sys
    from tracecc.codegen import cache
    key, payload = sys.argv[1], bytes(range(256)) * 4000   # ~1 MB: writes are not instant
    for i in range(60):
        assert cache.store(key, payload)
        got = cache.load(key)
        assert got is None or got == payload, "read a wrong or partial entry"
    print("ok")
""")


def test_two_processes_writing_the_same_key(cache_dir):
    key = "cd" * 32
    env = {**os.environ, "TRACECC_CACHE_DIR": str(cache_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, key], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    assert cache.load(key) == bytes(range(256)) * 4000
    assert not list((cache_dir / "llvm").glob("*.tmp"))  # no temporary files left behind


def test_info_and_clear_touch_only_cache_entries(cache_dir):
    compile_relu("a")
    compile_relu("b")
    info = cache.info()
    assert info["entries"] == 2 and info["bytes"] > 0 and info["dir"] == str(cache_dir / "llvm")
    keep = cache_dir / "llvm" / "notes.txt"
    keep.write_text("not ours")
    assert cache.clear() == 2
    assert cache.info()["entries"] == 0 and keep.exists()


def test_unusable_cache_dir_warns_and_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TRACECC_CACHE_DIR", str(blocker))
    monkeypatch.setattr(cache, "_warned", False)
    with pytest.warns(RuntimeWarning, match="compile cache"):
        cm = compile_relu()
    assert not cm.from_cache


def test_disabled_by_env(cache_dir, monkeypatch):
    monkeypatch.setenv("TRACECC_CACHE", "0")
    compile_relu()
    assert not compile_relu().from_cache and not entry_files(cache_dir)


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.delenv("TRACECC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "tracecc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "tracecc"


RUNTIME_USER = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from llvmlite import ir
    from tracecc.codegen.llvm import jit, matmul, parallel
    P = ir.FloatType().as_pointer()
    m = jit.new_module("uses_runtime")
    # mm(a, b, c): c = a @ b through whichever strategy; then a parallel_for over rows of c
    body = ir.Function(m, parallel.BODY_TYPE, "double_rows")
    ctx, s, e = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    c = b.bitcast(ctx, P)
    loop, done = body.append_basic_block("loop"), body.append_basic_block("done")
    pre = b.block
    b.cbranch(b.icmp_signed("<", s, e), loop, done)
    b.position_at_end(loop)
    i = b.phi(ir.IntType(64)); i.add_incoming(s, pre)
    p = b.gep(c, [i]); b.store(b.fmul(b.load(p), ir.FloatType()(2.0)), p)
    i2 = b.add(i, ir.IntType(64)(1)); i.add_incoming(i2, loop)
    b.cbranch(b.icmp_signed("<", i2, e), loop, done)
    b.position_at_end(done); b.ret_void()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [P, P, P]), "mm")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    spec = matmul.MatmulSpec(40, 30, 20, (20, 1), (1, 20))
    matmul.emit_matmul(b, spec, *fn.args, strategy=sys.argv[1])
    parallel.emit_parallel_for(b, body, fn.args[2], ir.IntType(64)(0), ir.IntType(64)(1200), ir.IntType(64)(64))
    b.ret_void()
    cm = jit.compile_module(m, cache=True)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 20), dtype=np.float32); B = rng.standard_normal((30, 20), dtype=np.float32)
    C = np.empty((40, 30), np.float32)
    cm.cfunc("mm", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(A.ctypes.data, B.ctypes.data, C.ctypes.data)
    print(cm.from_cache, bool(np.allclose(C, 2 * (A @ B.T), rtol=1e-5, atol=1e-5)))
""")


@pytest.mark.skipif(matmul.find_blas() is None, reason="no BLAS in this process")
def test_cached_object_calling_runtime_symbols_loads_in_a_new_process(cache_dir):
    """The object refers to tracecc_cblas_sgemm and tracecc_parallel_for by name: a fresh
    process that only reloads it must register both before MCJIT links it."""
    env = {**os.environ, "TRACECC_CACHE_DIR": str(cache_dir)}
    outs = [subprocess.run([sys.executable, "-c", RUNTIME_USER, "blas"], env=env, capture_output=True,
                           text=True, timeout=120) for _ in range(2)]
    for o in outs:
        assert o.returncode == 0, o.stderr
    assert [o.stdout.split() for o in outs] == [["False", "True"], ["True", "True"]]


# ---------------------------------------------------------------- size limit
def _stored(n, size=1000):
    keys = [cache.make_key(f"ir {i}", "cpu") for i in range(n)]
    for i, k in enumerate(keys):
        assert cache.store(k, bytes([i]) * size)
        os.utime(cache._path(k), (1000.0 + i, 1000.0 + i))  # stored in this order
    return keys


def test_prune_deletes_the_least_recently_used_first(monkeypatch):
    monkeypatch.setattr(cache, "PRUNE_EVERY", 10**9)  # only the explicit prune below
    keys = _stored(5)
    assert cache.load(keys[0]) is not None  # a hit: now the most recently used
    one = cache._path(keys[0]).stat().st_size
    removed = cache.prune(limit=3 * one)  # down to 80% of it: two entries stay
    assert removed == 3
    assert [cache.load(k) is not None for k in keys] == [True, False, False, False, True]
    assert cache.prune(limit=3 * one) == 0  # under the limit: nothing to do


def test_stores_keep_the_folder_under_the_limit(monkeypatch, cache_dir):
    monkeypatch.setattr(cache, "PRUNE_EVERY", 1)
    monkeypatch.setenv("TRACECC_CACHE_MAX_MB", "0.01")  # 10 KB
    _stored(30)
    total = sum(p.stat().st_size for p in entry_files(cache_dir))
    assert 0 < total <= 10_000
    assert cache.info()["max_bytes"] == 10_000
    monkeypatch.setenv("TRACECC_CACHE_MAX_MB", "lots")
    with pytest.raises(Exception, match="TRACECC_CACHE_MAX_MB"):
        cache.max_bytes()
