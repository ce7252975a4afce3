"""jit: compile, bind, reload from object bytes, and fail with CodegenError instead of aborting."""

import ctypes
import gc

import numpy as np
import pytest
from llvmlite import ir

from tracecc.codegen.llvm import jit
from tracecc.runtime.errors import CodegenError

F32, I64 = ir.FloatType(), ir.IntType(64)
SIG = (None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def relu_module(name="relu", callee=None):
    """`void relu(float* x, float* y, i64 n)`: y = max(x, 0) (or callee(x) when given)."""
    m = jit.new_module(name)
    p = F32.as_pointer()
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [p, p, I64]), name)
    x, y, n = fn.args
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, I64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(I64(0), entry)
    v = b.load(b.gep(x, [i]))
    if callee is None:
        r = b.select(b.fcmp_ordered(">", v, F32(0)), v, F32(0))
    else:
        f = ir.Function(m, ir.FunctionType(F32, [F32]), callee)
        r = b.call(f, [v])
    b.store(r, b.gep(y, [i]))
    i2 = b.add(i, I64(1))
    i.add_incoming(i2, loop)
    b.cbranch(b.icmp_signed("<", i2, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return m


def call(fn, x):
    y = np.empty_like(x)
    fn(x.ctypes.data, y.ctypes.data, x.size)
    return y


X = np.linspace(-3, 3, 1001).astype(np.float32)


def test_compile_call_and_stage_timings():
    cm = jit.compile_module(relu_module(), keep_ir=True, want_asm=True)
    assert np.array_equal(call(cm.cfunc("relu", *SIG), X), np.maximum(X, 0))
    assert {"parse", "verify", "optimize", "codegen", "load"} <= set(cm.timings)
    assert all(v >= 0 for v in cm.timings.values())
    width = jit.host_target().vector_bits // 32
    assert f"<{width} x float>" in cm.optimized_ir  # the loop was vectorised
    assert "relu:" in cm.asm
    assert cm.object_bytes[:4] == b"\x7fELF"


def test_reload_from_object_bytes_outlives_the_original():
    cm = jit.compile_module(relu_module())
    obj = cm.object_bytes
    del cm
    gc.collect()
    again = jit.load_object(obj, "relu")
    assert np.array_equal(call(again.cfunc("relu", *SIG), X), np.maximum(X, 0))


def test_bound_function_keeps_its_code_alive():
    fn = jit.compile_module(relu_module()).cfunc("relu", *SIG)
    gc.collect()
    assert np.array_equal(call(fn, X), np.maximum(X, 0))


def test_many_engines_created_and_dropped():
    # Reusing a TargetMachine after its engine died aborted the process (codegen-facts §3.7).
    for k in range(12):
        cm = jit.compile_module(relu_module(f"relu{k}"))
        assert call(cm.cfunc(f"relu{k}", *SIG), X)[-1] == 3.0
        del cm
        gc.collect()


def test_bad_ir_is_a_codegen_error():
    with pytest.raises(CodegenError) as e:
        jit.compile_module("define void @f() {\n  ret i32 0\n}\n")
    assert e.value.code == "TC201"
    with pytest.raises(CodegenError, match="verification"):
        jit.compile_module("define i32 @f() {\nentry:\n  br label %entry\n  ret i32 0\n}\n"
                           "define void @g() {\n  %x = add i32 %y, 1\n  %y = add i32 %x, 1\n  ret void\n}\n")


def test_unresolvable_symbol_is_an_error_not_an_abort():
    with pytest.raises(CodegenError, match="tracecc_no_such_function"):
        jit.compile_module(relu_module("u", callee="tracecc_no_such_function"))


def test_libm_and_registered_symbols_resolve():
    cm = jit.compile_module(relu_module("e", callee="expf"))
    assert "expf" in jit.undefined_symbols(cm.object_bytes)
    assert np.allclose(call(cm.cfunc("e", *SIG), X), np.exp(X), rtol=1e-6)

    neg = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_float)(lambda v: -2 * v)
    jit.register_symbol("tracecc_test_neg2", ctypes.cast(neg, ctypes.c_void_p).value)
    cm2 = jit.compile_module(relu_module("n", callee="tracecc_test_neg2"))
    assert np.array_equal(call(cm2.cfunc("n", *SIG), X[:7]), -2 * X[:7])


def test_missing_symbol_lookup_raises():
    cm = jit.compile_module(relu_module())
    with pytest.raises(CodegenError, match="nope"):
        cm.address("nope")


def test_undefined_symbols_of_a_non_elf_blob_is_empty():
    assert jit.undefined_symbols(b"not an object") == []


def test_new_module_has_host_triple_and_layout():
    m = jit.new_module("x")
    t = jit.host_target()
    assert m.triple == t.triple and m.data_layout == t.data_layout
    assert t.cpu and "|" in t.key()


def test_threads_compiling_at_once():
    import threading

    out = {}

    def work(k):
        cm = jit.compile_module(relu_module(f"t{k}"))
        out[k] = bool(np.array_equal(call(cm.cfunc(f"t{k}", *SIG), X), np.maximum(X, 0)))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == {k: True for k in range(4)}
