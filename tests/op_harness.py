"""Running an OpCase: building inputs in a given dtype and memory layout, comparing results,
and the central-difference gradient that the autograd results are checked against.

The same code builds tracecc and torch tensors (`m` is either module), so a layout that
makes a tracecc view makes the same torch view.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from op_cases import OpCase

LAYOUTS = ("contiguous", "strided", "transposed")


@st.composite
def drawn_inputs(draw, case: OpCase, integer: bool = False):
    """A case's numpy inputs and a layout: hypothesis draws shapes, a seed draws values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = case.gen(draw, rng, integer)
    return arrays, draw(st.sampled_from(LAYOUTS))


def cast_inputs(case: OpCase, arrays, dtype) -> list[np.ndarray]:
    """Data inputs at `dtype`; bool masks and index arrays stay as they are."""
    return [a if k in case.index_args or a.dtype == np.bool_ else a.astype(dtype)
            for k, a in enumerate(arrays)]


def _identity(x):
    return x


def layout_of(a: np.ndarray, layout: str):
    """(base array, view_fn, unview_fn): view_fn(tensor of base) has a's values in the given
    layout, not contiguous; unview_fn maps a gradient of base back to a's shape."""
    if layout == "strided" and a.ndim >= 1 and a.size:
        base = np.repeat(a, 2, axis=-1)  # a in the even columns, copies in the odd ones
        return base, (lambda t: t[..., ::2]), (lambda g: g[..., ::2])
    if layout == "transposed" and a.ndim >= 2 and a.size:
        base = np.ascontiguousarray(np.swapaxes(a, -1, -2))
        return base, (lambda t: t.transpose(-1, -2)), (lambda g: np.swapaxes(g, -1, -2))
    return a, _identity, _identity


def make_inputs(m, case: OpCase, arrays, layout: str, requires_grad: bool = False):
    """Tensors of module m for `arrays`. Returns (inputs passed to fn, leaves, unview fns);
    leaves[k] is None for inputs that get no gradient."""
    inputs, leaves, unviews = [], [], []
    for k, a in enumerate(arrays):
        differentiable = requires_grad and a.dtype.kind == "f" and k not in case.index_args
        base, view, unview = layout_of(a, layout)
        leaf = m.tensor(base, requires_grad=differentiable)
        inputs.append(view(leaf))
        leaves.append(leaf if differentiable else None)
        unviews.append(unview)
    return inputs, leaves, unviews


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def to_numpy(t) -> np.ndarray:
    """A tracecc or torch tensor's values as numpy (storage dtypes widened to float32)."""
    t = t.detach()
    name = str(t.dtype).rsplit(".", 1)[-1]
    if name in ("bfloat16", "float16"):
        t = t.float()
    return np.asarray(t.numpy())


def tolerance(dtype) -> dict:
    return {np.dtype(np.float64): dict(rtol=1e-9, atol=1e-12),
            np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6)}.get(np.dtype(dtype), dict(rtol=0, atol=0))


def assert_same_values(actual, expected, dtype, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        np.testing.assert_allclose(actual, expected, equal_nan=True, err_msg=what,
                                   **tolerance(dtype))


def cotangents(outputs, seed: int = 0) -> list:
    """One random cotangent per floating output (None for integer/bool outputs)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, np.shape(o)) if np.asarray(o).dtype.kind == "f" else None
            for o in outputs]


def numeric_vjp(case: OpCase, arrays, vs, eps: float = 1e-6) -> list:
    """Central differences of sum_i <ref(arrays)_i, v_i> with respect to each floating input."""

    def loss(xs):
        outs = as_tuple(case.ref(*xs))
        return sum(float(np.sum(np.asarray(o, dtype=np.float64) * v))
                   for o, v in zip(outs, vs) if v is not None)

    grads = []
    for k, a in enumerate(arrays):
        if a.dtype.kind != "f" or k in case.index_args:
            grads.append(None)
            continue
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            xs = [x.copy() for x in arrays]
            xs[k][i] = a[i] + eps
            up = loss(xs)
            xs[k][i] = a[i] - eps
            g[i] = (up - loss(xs)) / (2 * eps)
        grads.append(g)
    return grads


def autograd_vjp(m, case: OpCase, arrays, layout: str, vs) -> list:
    """Gradients by m's autograd: backward from every floating output with cotangent v."""
    inputs, leaves, unviews = make_inputs(m, case, arrays, layout, requires_grad=True)
    outs = as_tuple(case.fn(m, *inputs))
    roots = [(o, m.tensor(v)) for o, v in zip(outs, vs) if v is not None and o.requires_grad]
    if roots:
        m.autograd.backward([o for o, _ in roots], [v for _, v in roots])
    grads = []
    for a, leaf, unview in zip(arrays, leaves, unviews):
        if leaf is None:
            grads.append(None)
            continue
        g = np.zeros(leaf.shape) if leaf.grad is None else to_numpy(leaf.grad)
        assert g.dtype == np.float64, f"gradient dtype {g.dtype} for a float64 input"
        assert tuple(g.shape) == tuple(leaf.shape), "gradient shape differs from its leaf's"
        picked = unview(g)
        # the layout's unused copies (strided) must get no gradient at all
        np.testing.assert_allclose(np.abs(picked).sum(), np.abs(g).sum(), rtol=1e-12, atol=0)
        grads.append(picked)
    return grads
