"""Bitwise ops and the & | ^ ~ << >> operators: PyTorch's dtype rules (results pinned here,
and checked against torch when it is installed), clear errors on floating inputs, shifts
out of range as PyTorch defines them, in-place forms, and compiled code equal to eager
for every integer width."""

from __future__ import annotations

import numpy as np
import pytest

import tracecc as tc
from tracecc.runtime.errors import DTypeError


def _operands(m):
    return dict(b=m.tensor([True, False, True]), i=m.tensor([3, 5, -6]),
                i32=m.tensor([3, 5, -6], dtype=m.int32), u8=m.tensor([1, 200, 255], dtype=m.uint8),
                f=m.tensor([1.0, 2.0, 3.0]))


# expression -> (result dtype, values) as PyTorch 2.13 gives them
PROMOTION = {
    "b & b": ("bool", [True, False, True]),
    "b | True": ("bool", [True, True, True]),
    "b & 3": ("int64", [1, 0, 1]),
    "b ^ i32": ("int32", [2, 5, -5]),
    "i32 & i": ("int64", [3, 5, -6]),
    "i32 | 8": ("int32", [11, 13, -6]),
    "3 & i": ("int64", [3, 1, 2]),
    "~b": ("bool", [False, True, False]),
    "~i32": ("int32", [-4, -6, 5]),
    "~u8": ("uint8", [254, 55, 0]),
    "b << 1": ("int64", [2, 0, 2]),
    "1 << i32": ("int32", [8, 32, 0]),
    "i32 >> 1": ("int32", [1, 2, -3]),
    "u8 >> 3": ("uint8", [0, 25, 31]),
    "i << i32": ("int64", [24, 160, 0]),
}


@pytest.mark.parametrize("expr", PROMOTION)
def test_result_dtypes_and_values_follow_pytorch(expr):
    dtype, values = PROMOTION[expr]
    out = eval(expr, {}, _operands(tc))
    assert out.dtype is getattr(tc, dtype) and out.tolist() == values


@pytest.mark.parametrize("expr", PROMOTION)
def test_same_as_torch(expr):
    torch = pytest.importorskip("torch")
    ours, theirs = eval(expr, {}, _operands(tc)), eval(expr, {}, _operands(torch))
    assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1]
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("fn, op, names", [
    (lambda o: o["f"] & o["i"], "bitwise_and", ["float32", "int64"]),
    (lambda o: o["i"] | 1.5, "bitwise_or", ["int64", "Python float"]),
    (lambda o: tc.bitwise_xor(o["i32"], o["f"]), "bitwise_xor", ["int32", "float32"]),
    (lambda o: ~o["f"], "bitwise_not", ["float32"]),
    (lambda o: o["f"] << 1, "bitwise_left_shift", ["float32"]),
    (lambda o: o["b"] >> o["b"], "bitwise_right_shift", ["bool"]),
], ids=["f&i", "i|1.5", "xor(i32,f)", "~f", "f<<1", "b>>b"])
def test_floating_and_bool_shift_inputs_are_refused_naming_op_and_dtypes(fn, op, names):
    with pytest.raises(DTypeError) as err:
        fn(_operands(tc))
    text = str(err.value)
    assert op in text and all(n in text for n in names), text
    assert "test_bitwise.py" in text  # the user's line


def test_the_primitive_itself_refuses_floats():
    """Calling the primitive directly (as VJP rules and passes do) checks dtypes too."""
    from tracecc.runtime.registry import TensorType, get
    with pytest.raises(DTypeError, match="bitwise_left_shift: expected integer"):
        get("bitwise_left_shift").meta(TensorType((2,), tc.bool), TensorType((2,), tc.bool))
    with pytest.raises(DTypeError, match="bitwise_not"):
        get("bitwise_not").meta(TensorType((2,), tc.float64))


SHIFTS = [-1, 0, 3, 7, 8, 9, 31, 32, 63, 64, 65]


def _shift_expected(x: int, s: int, bits: int, signed: bool, left: bool) -> int:
    if not 0 <= s < bits:
        return 0 if left or not signed or x >= 0 else -1
    v = ((x << s) if left else (x >> s)) % 2 ** bits
    return v - 2 ** bits if signed and v >= 2 ** (bits - 1) else v


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "int64"])
def test_shifts_out_of_range_eager_and_compiled(dtype):
    """An amount < 0 or >= the width: 0 for <<, the sign fill for >> (C leaves it undefined)."""
    np_dtype = np.dtype(dtype)
    bits, signed = np_dtype.itemsize * 8, np_dtype.kind == "i"
    xs = [-128, -3, 5, 127] if signed else [0, 3, 200, 255]
    a = np.repeat(np.array(xs, np_dtype), len(SHIFTS))
    s = np.tile(np.array(SHIFTS), len(xs)).astype(np_dtype)  # -1 wraps to 255 for uint8
    left = [_shift_expected(int(x), int(k), bits, signed, True) for x, k in zip(a, s)]
    right = [_shift_expected(int(x), int(k), bits, signed, False) for x, k in zip(a, s)]

    def both(x, k):
        return x << k, x >> k

    ta, ts = tc.tensor(a), tc.tensor(s)
    for fn in (both, tc.compile(both, backend="llvm")):
        lo, hi = fn(ta, ts)
        assert lo.dtype.name == dtype and lo.tolist() == left and hi.tolist() == right


def test_compiled_bitwise_mix_matches_eager_on_bool_and_int():
    def fn(a, b, m):
        return ((a & b) | (~a ^ (b >> 2))) & 0x3F, (m & (a > 0)) | ~m

    rng = np.random.default_rng(0)
    a = tc.tensor(rng.integers(-100, 100, (5, 7)), dtype=tc.int32)
    b = tc.tensor(rng.integers(-100, 100, (7,)), dtype=tc.int32)
    m = tc.tensor(rng.random((5, 7)) < 0.5)
    eager = fn(a, b, m)
    compiled = tc.compile(fn, backend="llvm")(a, b, m)
    for e, c in zip(eager, compiled):
        assert e.dtype is c.dtype and np.array_equal(e.numpy(), c.numpy())


def test_in_place_forms():
    x = tc.tensor([12, 10, -1], dtype=tc.int32)
    y = x
    x &= 6
    x |= tc.tensor([1, 0, 0], dtype=tc.int32)
    x ^= 3
    x <<= 2
    x >>= 1
    assert x is y and x.dtype is tc.int32 and x.tolist() == [12, 2, 10]
    z = tc.tensor([5, 6])
    assert z.bitwise_not_() is z and z.tolist() == [-6, -7]
    with pytest.raises(DTypeError):  # the result (int64) cannot be stored in a bool tensor
        tc.tensor([True]).bitwise_or_(2)


def test_bitwise_ops_have_no_gradient_and_need_none():
    out = tc.tensor([1, 2]) & 3
    assert not out.requires_grad and out.grad_fn is None
