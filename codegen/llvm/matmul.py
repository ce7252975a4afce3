"""float32 matmul for generated code: BLAS sgemm (numpy's bundled OpenBLAS) or a generated
register-tiled kernel, then a fused epilogue (bias, activation, residual, scale).

    spec = MatmulSpec(M, N, K, a_strides=(K, 1), b_strides=(1, K))   # x @ W.T (nn.Linear)
    emit_matmul(builder, spec, a_ptr, b_ptr, c_ptr, epilogue=bias_act(bias_ptr, "relu"))

Strides are in elements; C is row-major with row stride `c_rs`. An operand needs one unit
stride (either layout: a transposed view is a BLAS transpose flag, not a copy).

Which one: `choose(spec)`: BLAS whenever it is found. benchmarks/llvm_micro.py --matmul
measured both at the MNIST MLP shapes in isolation (docs/cpu-backend.md): OpenBLAS wins from
about 0.5M multiply-adds up (1.3-5x at 128x512x784, where the generated kernel, which does
not pack, misses cache), the generated kernel below about 0.4M (1.1-1.8x at 64x10x64,
10x64x64, ...) where the BLAS call's fixed cost dominates. But inside the whole MNIST step,
timed interleaved in one process, BLAS for every product ran as fast (batch 64: 432-540 us
against 446-584 us; batch 512: equal) and compiled 100-300 ms sooner, because the generated
kernels are most of the step's LLVM work. The generated kernel serves machines where no
BLAS is found, and float64.

OpenBLAS runs its own threads (numpy's setting: OPENBLAS_NUM_THREADS). On a 2-vCPU machine
whose other core is busy they stall badly (a 512x784x128 product took 16 ms instead of
1.4 ms in one measured run); `set_blas_threads(1)` makes them predictable, for numpy too.

The BLAS is found in the process (numpy has loaded it): the library whose path contains
"openblas" in /proc/self/maps, symbol `scipy_cblas_sgemm64_` (ILP64, what numpy's wheels
ship), `cblas_sgemm64_` or `cblas_sgemm`. Generated code calls it as `tracecc_cblas_sgemm`,
which jit registers on demand, so cached objects stay valid across processes.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from ...runtime.errors import CodegenError
from . import jit

F32, I32, I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
SYMBOL = "tracecc_cblas_sgemm"
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@dataclass(frozen=True)
class Blas:
    path: str
    symbol: str
    ilp64: bool  # 64-bit integer arguments
    address: int


_blas: Blas | None | bool = False  # False: not looked for yet


def find_blas() -> Blas | None:
    """numpy's BLAS (sgemm through its CBLAS interface), or None if there is none to use."""
    global _blas
    if _blas is not False:
        return _blas
    _blas = None
    if os.environ.get("TRACECC_NO_BLAS"):
        return None
    import numpy  # noqa: F401  (loads the library)

    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "openblas" in os.path.basename(p).lower() and p not in paths:
                    paths.append(p)
    except OSError:
        pass
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym, ilp64 in (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True), ("cblas_sgemm", False)):
            try:
                fn = getattr(lib, sym)
            except AttributeError:
                continue
            _blas = Blas(path, sym, ilp64, ctypes.cast(fn, ctypes.c_void_p).value)
            return _blas
    return None


def set_blas_threads(n: int) -> bool:
    """Set the BLAS's thread count (process-wide: numpy's matmul uses the same library)."""
    b = find_blas()
    if b is None:
        return False
    lib = ctypes.CDLL(b.path)
    for sym in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
        fn = getattr(lib, sym, None)
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn(n)
            return True
    return False


def ensure_blas() -> Blas:
    b = find_blas()
    if b is None:
        raise CodegenError("no BLAS found in this process", hint="use the generated kernel (strategy='tiled')")
    jit.register_symbol(SYMBOL, b.address)
    return b


jit.register_provider(SYMBOL, lambda: ensure_blas() and None)


@dataclass(frozen=True)
class MatmulSpec:
    """C[M, N] = alpha * A[M, K] @ B[K, N] (+ beta * C); strides in elements."""

    M: int
    N: int
    K: int
    a_strides: tuple[int, int]
    b_strides: tuple[int, int]
    c_rs: int | None = None  # C row stride, default N
    alpha: float = 1.0
    beta: float = 0.0

    @property
    def ldc(self) -> int:
        return self.c_rs if self.c_rs is not None else self.N

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K


# An epilogue turns the product's value at (row, col) into what is stored: called with
# (builder, value, row i64, col i64) and returns the new value.
Epilogue = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value], ir.Value]


def bias_act(bias=None, activation: str | None = None, residual=None, residual_rs: int = 0,
             scale: float | None = None, mathlib=None) -> Epilogue:
    """v -> act(v * scale + bias[col] + residual[row, col]); activation: relu, sigmoid, tanh, gelu."""

    def epi(b: ir.IRBuilder, v, row, col):
        if scale is not None:
            v = b.fmul(v, F32(scale))
        if bias is not None:
            v = b.fadd(v, b.load(b.gep(bias, [col], inbounds=True)))
        if residual is not None:
            v = b.fadd(v, b.load(b.gep(residual, [b.add(b.mul(row, I64(residual_rs)), col)], inbounds=True)))
        if activation == "relu":
            v = b.select(b.fcmp_ordered("<", v, F32(0)), F32(0), v)  # ordered: NaN stays NaN
        elif activation in ("sigmoid", "tanh"):
            v = b.call(mathlib(activation, F32), [v])
        elif activation == "gelu":  # exact gelu: x/2 * (1 + erf(x/sqrt 2))
            e = b.call(mathlib("erf", F32), [b.fmul(v, F32(0.7071067811865476))])
            v = b.fmul(b.fmul(v, F32(0.5)), b.fadd(F32(1.0), e))
        elif activation is not None:
            raise CodegenError(f"unknown epilogue activation {activation!r}")
        return v

    return epi


def _layout(strides, rows, cols, name):
    """(transpose flag, leading dimension) for BLAS, from element strides."""
    rs, cs = strides
    if cs == 1 and (rs >= max(1, cols) or rows <= 1):
        return NO_TRANS, max(rs, cols, 1)
    if rs == 1 and (cs >= max(1, rows) or cols <= 1):
        return TRANS, max(cs, rows, 1)
    raise CodegenError(f"matmul operand {name} with strides {strides} has no unit-stride dimension",
                       hint="make it contiguous (a copy kernel) before the matmul")


def choose(spec: MatmulSpec) -> str:
    """'blas' or 'tiled', by the measured rule (module docstring)."""
    return "tiled" if find_blas() is None else "blas"


def emit_matmul(b: ir.IRBuilder, spec: MatmulSpec, a, bmat, c, epilogue: Epilogue | None = None,
                strategy: str = "auto") -> str:
    """Emit C = A @ B followed by the epilogue over C. Returns the strategy used."""
    if strategy == "auto":
        strategy = choose(spec)
    if strategy == "blas":
        emit_sgemm_call(b, spec, a, bmat, c)
    elif strategy == "tiled":
        emit_tiled(b, spec, a, bmat, c)
    else:
        raise CodegenError(f"unknown matmul strategy {strategy!r}")
    if epilogue is not None:
        emit_epilogue(b, spec, c, epilogue)
    return strategy


def emit_sgemm_call(b: ir.IRBuilder, spec: MatmulSpec, a, bmat, c) -> None:
    """A call to numpy's sgemm, with transpose flags and leading dimensions from the strides."""
    blas = ensure_blas()
    it = I64 if blas.ilp64 else I32
    ta, lda = _layout(spec.a_strides, spec.M, spec.K, "A")
    tb, ldb = _layout(spec.b_strides, spec.K, spec.N, "B")
    ptr = F32.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [I32, I32, I32, it, it, it, F32, ptr, it, ptr, it, F32, ptr, it])
    fn = b.module.globals.get(SYMBOL) or ir.Function(b.module, fnty, SYMBOL)
    b.call(fn, [I32(ROW_MAJOR), I32(ta), I32(tb), it(spec.M), it(spec.N), it(spec.K), F32(spec.alpha),
                b.bitcast(a, ptr), it(lda), b.bitcast(bmat, ptr), it(ldb), F32(spec.beta),
                b.bitcast(c, ptr), it(max(spec.ldc, 1))])


def _for(b: ir.IRBuilder, start, stop, step, name, emit):
    """for (i = start; i < stop; i += step) emit(i): a phi loop with constant bounds."""
    fn = b.function
    pre = b.block
    body, done = fn.append_basic_block(f"{name}.body"), fn.append_basic_block(f"{name}.done")
    b.cbranch(b.icmp_signed("<", I64(start), I64(stop)), body, done)
    b.position_at_end(body)
    i = b.phi(I64, name)
    i.add_incoming(I64(start), pre)
    emit(i)
    nxt = b.add(i, I64(step))
    i.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_signed("<", nxt, I64(stop)), body, done)
    b.position_at_end(done)


def emit_epilogue(b: ir.IRBuilder, spec: MatmulSpec, c, epilogue: Epilogue) -> None:
    """C[i, j] = epilogue(C[i, j], i, j): rows outside, columns inside (vectorised)."""
    def row(i):
        base = b.gep(c, [b.mul(i, I64(spec.ldc))], inbounds=True)

        def col(j):
            p = b.gep(base, [j], inbounds=True)
            b.store(epilogue(b, b.load(p), i, j), p)

        _for(b, 0, spec.N, 1, "epi.j", col)

    _for(b, 0, spec.M, 1, "epi.i", row)


# ------------------------------------------------------------------ generated kernel
def _fma_vec(module, vt):
    name = f"llvm.fma.v{vt.count}f32"
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(vt, [vt, vt, vt]), name)


def emit_tiled(b: ir.IRBuilder, spec: MatmulSpec, a, bmat, c, mr: int = 4, vectors: int = 2) -> None:
    """A register-tiled kernel: mr rows x (vectors * W) columns of C live in vector registers
    while k runs; each step broadcasts A[i, k] and multiplies a row of B. B needs unit column
    stride (b_strides[1] == 1); A may have any strides (A^T for dW = dY^T @ X is fine).
    Static shapes: tails are separate tiles, partial column vectors are built lane by lane."""
    if spec.b_strides[1] != 1:
        raise CodegenError("the tiled matmul needs B with unit column stride", hint="use strategy='blas'")
    if spec.beta != 0.0:
        raise CodegenError("the tiled matmul does not accumulate into C (beta must be 0)")
    width = max(4, jit.host_target().vector_bits // 32)
    vt = ir.VectorType(F32, width)
    fma = _fma_vec(b.module, vt)
    ptr = F32.as_pointer()
    a, bmat, c = b.bitcast(a, ptr), b.bitcast(bmat, ptr), b.bitcast(c, ptr)
    (a_rs, a_cs), b_rs, ldc = spec.a_strides, spec.b_strides[0], spec.ldc
    zero = ir.Constant(vt, None)
    nr = vectors * width

    def load_b(k, j0, lanes):
        rowp = b.gep(bmat, [b.add(b.mul(k, I64(b_rs)), j0)], inbounds=True)
        if lanes == width:
            return b.load(b.bitcast(rowp, vt.as_pointer()), align=4)
        v = zero
        for t in range(lanes):
            v = b.insert_element(v, b.load(b.gep(rowp, [I64(t)], inbounds=True)), I32(t))
        return v

    def store_c(i, j0, v, lanes):
        p = b.gep(c, [b.add(b.mul(i, I64(ldc)), j0)], inbounds=True)
        if lanes == width:
            b.store(v, b.bitcast(p, vt.as_pointer()), align=4)
        else:
            for t in range(lanes):
                b.store(b.extract_element(v, I32(t)), b.gep(p, [I64(t)], inbounds=True))

    def tile(i0, rows, j0, lane_counts):
        """C[i0:i0+rows, j0:...] over all k; lane_counts: lanes per column vector."""
        fn = b.function
        pre = b.block
        body, done = fn.append_basic_block("k.body"), fn.append_basic_block("k.done")
        b.branch(body)
        b.position_at_end(body)
        k = b.phi(I64, "k")
        k.add_incoming(I64(0), pre)
        accs = [[b.phi(vt) for _ in lane_counts] for _ in range(rows)]
        for row in accs:
            for acc in row:
                acc.add_incoming(zero, pre)
        bv = [load_b(k, b.add(j0, I64(v * width)), n) for v, n in enumerate(lane_counts)]
        new = []
        for r in range(rows):
            ai = b.add(b.mul(b.add(i0, I64(r)), I64(a_rs)), b.mul(k, I64(a_cs)))
            s = b.load(b.gep(a, [ai], inbounds=True))
            sv = b.shuffle_vector(b.insert_element(zero, s, I32(0)), zero, ir.Constant(ir.VectorType(I32, width), [0] * width))
            new.append([b.call(fma, [sv, bv[v], accs[r][v]]) for v in range(len(lane_counts))])
        k2 = b.add(k, I64(1))
        k.add_incoming(k2, body)
        for r in range(rows):
            for v in range(len(lane_counts)):
                accs[r][v].add_incoming(new[r][v], body)
        b.cbranch(b.icmp_signed("<", k2, I64(spec.K)), body, done)
        b.position_at_end(done)
        for r in range(rows):
            for v, n in enumerate(lane_counts):
                out = new[r][v] if spec.K > 0 else zero
                if spec.alpha != 1.0:
                    out = b.fmul(out, ir.Constant(vt, [spec.alpha] * width))
                store_c(b.add(i0, I64(r)), b.add(j0, I64(v * width)), out, n)

    if spec.K == 0:  # C = 0
        def zrow(i):
            _for(b, 0, spec.N, 1, "z.j", lambda j: b.store(F32(0), b.gep(c, [b.add(b.mul(i, I64(ldc)), j)])))
        _for(b, 0, spec.M, 1, "z.i", zrow)
        return

    full_cols = spec.N - spec.N % nr
    col_tail = spec.N % nr
    tail_lanes = [min(width, col_tail - v * width) for v in range((col_tail + width - 1) // width)]
    full_rows = spec.M - spec.M % mr
    row_tail = spec.M % mr

    def col_block(j0, lanes):
        if full_rows:
            _for(b, 0, full_rows, mr, "ti", lambda i0: tile(i0, mr, j0, lanes))
        if row_tail:
            tile(I64(full_rows), row_tail, j0, lanes)

    if full_cols:
        _for(b, 0, full_cols, nr, "tj", lambda j0: col_block(j0, [width] * vectors))
    if col_tail:
        col_block(I64(full_cols), tail_lanes)
