"""The op registry: every primitive is complete (kind, meta, eager kernel, VJP where it is
differentiable, valid `saves`), and every primitive is exercised by the op table, forward
or backward, so a new primitive cannot land without values and gradients tested."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tracecc as tc
from tracecc.runtime import eager
from tracecc.runtime.registry import KINDS, PRIMITIVES, Primitive, TensorType, get
from op_cases import CASES
from op_harness import as_tuple, make_inputs

# primitives with no gradient by nature: bool/int results, or piecewise-constant integers
NOT_DIFFERENTIABLE = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
                      "logical_not", "isnan", "argmax", "argmin", "floor_divide", "full", "arange",
                      "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
                      "bitwise_right_shift"}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_is_complete(name):
    prim = get(name)
    assert isinstance(prim, Primitive) and prim.name == name
    assert prim.kind in KINDS
    assert callable(prim.meta) and callable(prim.eager)
    if name not in NOT_DIFFERENTIABLE and prim.kind != "marker":  # markers: see test_autograd_pass
        assert prim.vjp is not None, f"{name} has no VJP rule"
    if prim.kind == "reduction":
        assert prim.reduce is not None and prim.reduce.combine, f"{name} lacks its combine op"
    if prim.saves is not None:
        arity = len(inspect.signature(prim.meta).parameters)
        for s in prim.saves:
            assert s == "out" or (isinstance(s, int) and 0 <= s < arity), f"{name}: bad saves {s!r}"


def test_meta_agrees_with_the_eager_kernel():
    """Meta (what tracing uses) and the kernel (what eager runs) give the same shape and dtype."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    checks = [("add", (a, a[0]), {}), ("sum", (a,), {"axes": (1,), "keepdim": True}),
              ("matmul", (a, a.T.copy()), {}), ("lt", (a, a), {}), ("argmax", (a,), {"axis": 1}),
              ("cast", (a,), {"dtype": tc.int32}), ("permute", (a,), {"dims": (1, 0)}),
              ("slice", (a,), {"starts": (0, 1), "stops": (2, 3), "steps": (1, 2)})]
    for name, arrays, params in checks:
        prim = get(name)
        out = eager.run(prim, list(arrays), params)
        meta = prim.meta(*(TensorType(x.shape, tc.runtime.get_dtype(x.dtype)) for x in arrays), **params)
        assert tuple(out.shape) == tuple(meta.shape) and out.dtype == meta.dtype.np, name


def test_every_primitive_is_covered_by_the_op_table(monkeypatch):
    used = set()
    run = eager.run

    def recording_run(prim, arrays, params):
        used.add(prim.name)
        return run(prim, arrays, params)

    monkeypatch.setattr(eager, "run", recording_run)
    rng = np.random.default_rng(0)
    for case in CASES:
        arrays = _some_inputs(case, rng)
        inputs, _, _ = make_inputs(tc, case, arrays, "contiguous", requires_grad=case.grad)
        outs = [o for o in as_tuple(case.fn(tc, *inputs)) if o.requires_grad]
        if outs:  # the VJP rules bind primitives of their own (slice_scatter, ...)
            tc.autograd.backward([o.sum() for o in outs])
    # markers are compile-only (tests/test_autograd_pass.py); composites run as their
    # decomposition's primitives eagerly (tests/test_decompose.py)
    exempt = {n for n, p in PRIMITIVES.items() if p.kind in ("marker", "composite")}
    missing = set(PRIMITIVES) - used - exempt
    assert not missing, f"primitives with no case in tests/op_cases.py: {sorted(missing)}"


def _some_inputs(case, rng):
    """The largest of a few derandomized hypothesis draws of a case's inputs."""
    drawn = []

    @settings(max_examples=5, database=None, derandomize=True, phases=[Phase.generate])
    @given(st.data())
    def draw(data):
        drawn.append(case.gen(data.draw, rng))

    draw()
    return max(drawn, key=lambda arrays: min(a.size for a in arrays))
