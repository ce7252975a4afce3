"""dtypes and type promotion (PyTorch's rules), and float16/bfloat16 as storage types:
computed in float32, rounded back to the storage type after every op."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

import tracecc as tc
from tracecc.runtime.errors import DTypeError

ALL = [tc.bool, tc.uint8, tc.int8, tc.int16, tc.int32, tc.int64, tc.float16, tc.bfloat16,
       tc.float32, tc.float64]


def operand(kind, dtype):
    """A tensor with dimensions, a 0-d tensor, or (for kind 'scalar') a Python number."""
    value = True if dtype is tc.bool else 1
    if kind == "dim":
        return tc.tensor([value, value], dtype=dtype)
    return tc.tensor(value, dtype=dtype)


@pytest.mark.parametrize("a,b,expected", [
    (tc.tensor([1, 2]), 2.5, tc.float32),  # int + float scalar -> default float
    (tc.tensor([1, 2], dtype=tc.int32), 7, tc.int32),  # Python ints don't upcast
    (tc.tensor([1.0], dtype=tc.float16), 2.5, tc.float16),  # nor Python floats
    (tc.tensor([True]), True, tc.bool),
    (tc.tensor([True]), 1, tc.int64),
    (tc.tensor([True]), 1.0, tc.float32),
    (tc.tensor([1], dtype=tc.uint8), tc.tensor([1], dtype=tc.int8), tc.int16),
    (tc.tensor([1.0], dtype=tc.float16), tc.tensor([1.0], dtype=tc.bfloat16), tc.float32),
    (tc.tensor([1], dtype=tc.int32), tc.tensor(1), tc.int32),  # 0-d int64 doesn't upcast
    (tc.tensor([1.0]), tc.tensor(1.0, dtype=tc.float64), tc.float32),  # nor 0-d float64
    (tc.tensor([1], dtype=tc.int32), tc.tensor(1.0, dtype=tc.float64), tc.float64),  # higher kind
    (tc.tensor(1, dtype=tc.int32), tc.tensor(1, dtype=tc.int64), tc.int64),  # both 0-d
    (tc.tensor([1.0], dtype=tc.float64), tc.tensor([1.0]), tc.float64),
    (2, tc.tensor([1], dtype=tc.int16), tc.int16),  # reflected operand
])
def test_promotion_examples(a, b, expected):
    assert (a + b).dtype is expected
    assert tc.add(a, b).dtype is expected
    assert (a * b).dtype is expected


def test_true_division_of_integers_is_float():
    assert (tc.tensor([3]) / 2).dtype is tc.float32
    assert (tc.tensor([3]) / tc.tensor([2])).tolist() == [1.5]
    assert (tc.tensor([7]) // 2).dtype is tc.int64 and (tc.tensor([-7]) // 2).tolist() == [-4]
    assert tc.div(tc.tensor([-7]), 2, rounding_mode="trunc").tolist() == [-3]
    assert tc.div(tc.tensor([-7]), 2, rounding_mode="floor").tolist() == [-4]
    assert tc.div(tc.tensor([-7.0]), 2, rounding_mode="trunc").tolist() == [-3.0]


def test_comparisons_give_bool_and_promote_first():
    x = tc.tensor([1, 2, 3])
    assert (x > 1.5).dtype is tc.bool
    assert (x > 1.5).tolist() == [False, True, True]  # 1.5 is not truncated to 1
    assert (x == tc.tensor([1.0, 0.0, 3.0])).tolist() == [True, False, True]


def test_reductions_of_integers_and_bools():
    assert tc.tensor([1, 2], dtype=tc.int32).sum().dtype is tc.int64
    assert tc.tensor([True, True, False]).sum().item() == 2
    assert tc.tensor([2, 3], dtype=tc.int16).prod().dtype is tc.int64
    assert tc.tensor([1, 2], dtype=tc.int32).sum(dtype=tc.float64).dtype is tc.float64
    assert tc.tensor([1, 2], dtype=tc.int32).amax().dtype is tc.int32
    with pytest.raises(DTypeError) as err:
        tc.tensor([1, 2]).mean()
    assert "int64" in str(err.value)
    assert tc.tensor([1, 2]).mean(dtype=tc.float64).item() == 1.5


def test_float_only_functions_turn_integers_into_the_default_float():
    for fn in (tc.exp, tc.sqrt, tc.sigmoid, tc.sin):
        assert fn(tc.tensor([1, 2])).dtype is tc.float32
    assert tc.softmax(tc.tensor([1, 2]), 0).dtype is tc.float32
    assert tc.tensor([1, 2]).float().var().dtype is tc.float32


def test_promote_types_and_dtype_names():
    assert tc.promote_types(tc.int32, tc.float16) is tc.float16
    assert tc.promote_types(tc.bool, tc.uint8) is tc.uint8
    assert tc.promote_types(tc.uint8, tc.int64) is tc.int64
    assert str(tc.float32) == "tracecc.float32" and repr(tc.int64) == "tracecc.int64"
    assert tc.float is tc.float32 and tc.double is tc.float64 and tc.long is tc.int64
    assert tc.half is tc.float16 and tc.int is tc.int32
    assert tc.float64.is_floating_point and not tc.int32.is_floating_point
    assert tc.bfloat16.itemsize == 2 and tc.float64.itemsize == 8


# ---------------------------------------------------------------- storage types
@pytest.mark.parametrize("dtype,np_dtype", [(tc.float16, np.float16), (tc.bfloat16, ml_dtypes.bfloat16)])
def test_storage_types_compute_in_float32_and_round_back(dtype, np_dtype):
    rng = np.random.default_rng(0)
    a = rng.uniform(-2, 2, (4, 5)).astype(np_dtype)
    b = rng.uniform(-2, 2, (5, 3)).astype(np_dtype)
    ta, tb = tc.tensor(a, dtype=dtype), tc.tensor(b, dtype=dtype)
    assert ta.dtype is dtype and ta.numpy().dtype == np_dtype
    f32 = a.astype(np.float32)
    for out, expected in [(ta.exp(), np.exp(f32)), (ta * 3, f32 * 3), (ta + ta, f32 + f32),
                          (tc.relu(ta), np.maximum(f32, 0)), (ta.sum(1), f32.sum(1)),
                          (ta @ tb, f32 @ b.astype(np.float32)), (ta.softmax(-1), None)]:
        assert out.dtype is dtype
        if expected is not None:
            np.testing.assert_array_equal(out.float().numpy(), expected.astype(np_dtype).astype(np.float32))
    assert ta.float().dtype is tc.float32 and (ta.float().numpy() == f32).all()
    assert (ta + tc.ones(1)).dtype is tc.float32  # a float32 tensor outranks storage types
    assert (ta > 0).dtype is tc.bool and ta.long().dtype is tc.int64


def test_storage_type_gradients():
    x = tc.tensor([0.5, 1.5], dtype=tc.bfloat16, requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.dtype is tc.bfloat16
    assert x.grad.float().tolist() == [1.0, 3.0]


# ---------------------------------------------------------------- against PyTorch
KINDS = ("dim", "zero")
SCALARS = (True, 3, 2.5)


def _torch_operand(torch, kind, dtype):
    t = operand(kind, dtype)
    return torch.tensor(t.float().tolist() if dtype.is_floating_point else t.tolist(),
                        dtype=getattr(torch, dtype.name))


@pytest.mark.parametrize("op", ["add", "mul", "div", "where", "maximum", "lt"])
def test_promotion_matches_torch_for_every_pair(op):
    torch = pytest.importorskip("torch")

    def call(m, a, b):
        if op == "where":
            return m.where(m.tensor([True, False]), a, b)
        if op == "lt":
            return a < b  # the operator, so a Python number may come first
        return getattr(m, op)(a, b)

    mismatches = []
    for (da, ka), (db, kb) in itertools.product(itertools.product(ALL, KINDS), repeat=2):
        ours = call(tc, operand(ka, da), operand(kb, db))
        theirs = call(torch, _torch_operand(torch, ka, da), _torch_operand(torch, kb, db))
        if ours.dtype.name != str(theirs.dtype).split(".")[1]:
            mismatches.append((da, ka, db, kb, ours.dtype, theirs.dtype))
    for da, ka in itertools.product(ALL, KINDS):
        for s in SCALARS:
            if op == "maximum":
                continue  # torch.maximum takes no Python numbers
            ours_t, theirs_t = operand(ka, da), _torch_operand(torch, ka, da)
            for ours, theirs in [(call(tc, ours_t, s), call(torch, theirs_t, s)),
                                 (call(tc, s, ours_t), call(torch, s, theirs_t))]:
                if ours.dtype.name != str(theirs.dtype).split(".")[1]:
                    mismatches.append((da, ka, repr(s), ours.dtype, theirs.dtype))
    assert not mismatches, f"{len(mismatches)} mismatches, e.g. {mismatches[:5]}"


def test_the_plain_promotion_path_agrees_with_the_general_rule():
    """promote() skips result_type when every tensor has one dtype (with Python numbers only
    beside a floating one): over every pair, the result is what result_type says."""
    from tracecc._functions import promote
    from tracecc.runtime.dtypes import result_type

    def general(ops):
        dims = [o.dtype for o in ops if isinstance(o, tc.Tensor) and o.ndim]
        zeros = [o.dtype for o in ops if isinstance(o, tc.Tensor) and not o.ndim]
        return result_type(dims, zeros, [o for o in ops if not isinstance(o, tc.Tensor)])

    for a, b in itertools.product(ALL, ALL):
        for ka, kb in itertools.product(("dim", "zero"), ("dim", "zero", "scalar")):
            ops = [operand(ka, a), True if kb == "scalar" and b is tc.bool else
                   (1.5 if b.is_floating_point else 2) if kb == "scalar" else operand(kb, b)]
            got = promote("add", *ops)
            assert {t.dtype for t in got} == {general(ops)}, (ka, a, kb, b)
