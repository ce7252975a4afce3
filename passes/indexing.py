"""Index algebra: how movement ops become index arithmetic inside fused kernels.

A Comp is one integer index component: const + sum(coeff * ((var // div) % mod)), plus
data-dependent terms (coeff * an integer Expr). Each movement op maps the index
components of its output to those of its input (permute reorders, expand zeroes,
slice scales and shifts, reshape re-linearises with floor-division and modulo), so a
chain of views collapses into one Index into the underlying buffer. Division and modulo
are simplified when the terms' ranges allow (a merged-then-split reshape is exact
affine again); when they cannot be expressed, the caller materialises the input instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from .kernel_ir import Index, LoopVar, Term


@dataclass(frozen=True)
class Comp:
    const: int = 0
    terms: tuple[Term, ...] = ()  # var terms (stride = coefficient) and expr terms

    @staticmethod
    def of(var: LoopVar) -> "Comp":
        return Comp(0, (Term(1, var),))

    def __add__(self, other: "Comp") -> "Comp":
        return _normalize(self.const + other.const, self.terms + other.terms)

    def scale(self, k: int) -> "Comp":
        return _normalize(self.const * k, tuple(_with_stride(t, t.stride * k) for t in self.terms))

    def shift(self, c: int) -> "Comp":
        return Comp(self.const + c, self.terms)

    def bounds(self) -> tuple[int, int] | None:
        """Inclusive (min, max) over all loop values; None when data-dependent."""
        lo = hi = self.const
        for t in self.terms:
            if t.expr is not None:
                return None
            top = _term_range(t) - 1
            lo, hi = lo + min(0, t.stride * top), hi + max(0, t.stride * top)
        return lo, hi

    def divmod(self, div: int, mod: int) -> "Comp | None":
        """(self // div) % mod as a Comp, or None when that cannot be expressed exactly.
        mod=0 means no modulo."""
        b = self.bounds()
        if b is None or b[0] < 0:
            return None
        if div == 1:
            return self if mod == 0 else self.modulo(mod)
        if self.const == 0 and len(self.terms) == 1 and self.terms[0].stride == 1:
            return _divmod_single(self.terms[0], div, mod)
        # digits: terms whose coefficient is a multiple of div go to the quotient; the rest
        # must stay below div together, so they only form the remainder, which // drops
        high, low_max = [], 0
        for t in self.terms:
            if t.stride % div == 0:
                high.append(_with_stride(t, t.stride // div))
            else:
                low_max += t.stride * (_term_range(t) - 1)
        if self.const % div or low_max + self.const % div >= div:
            return None
        quotient = _normalize(self.const // div, tuple(high))
        return quotient if mod == 0 else quotient.modulo(mod)

    def modulo(self, mod: int) -> "Comp | None":
        """self % mod: terms that are multiples of mod vanish; what remains must stay in
        [0, mod) (or be one plain variable, which gets a modulo term)."""
        rest = Comp(self.const % mod, tuple(t for t in self.terms if t.stride % mod))
        b = rest.bounds()
        if b is not None and 0 <= b[0] and b[1] < mod:
            return rest
        if rest.const == 0 and len(rest.terms) == 1 and rest.terms[0].stride == 1:
            return _divmod_single(rest.terms[0], 1, mod)
        return None

    def to_index(self) -> Index:
        return Index(self.const, self.terms)


def _term_range(t: Term) -> int:
    """Number of distinct values ((var // div) % mod) takes."""
    n = -(-t.var.size // t.div)
    return min(n, t.mod) if t.mod else n


def _with_stride(t: Term, stride: int) -> Term:
    return Term(stride, t.var, t.div, t.mod, t.expr)


def _divmod_single(t: Term, div: int, mod: int) -> Comp | None:
    """((var // d) % m) // div % mod for a unit-stride term."""
    if t.expr is not None:
        return None
    if t.mod == 0:
        new = Term(1, t.var, t.div * div, mod)
    elif t.mod % div == 0:
        inner_mod = t.mod // div
        if mod and inner_mod % mod and mod < inner_mod:
            return None
        new = Term(1, t.var, t.div * div, mod if mod and mod < inner_mod else inner_mod)
    else:
        return None
    if new.mod and new.mod >= -(-new.var.size // new.div):
        new = Term(1, new.var, new.div, 0)  # the modulo never wraps: drop it
    return Comp(0, (new,))


def _normalize(const: int, terms) -> Comp:
    merged: dict = {}
    order = []
    for t in terms:
        key = (t.var, t.div, t.mod) if t.expr is None else ("expr", id(t.expr))
        if key not in merged:
            order.append(key)
            merged[key] = t
        else:
            merged[key] = _with_stride(t, merged[key].stride + t.stride)
    return Comp(const, tuple(merged[k] for k in order if merged[k].stride != 0))


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def linearize(comps, shape) -> Comp:
    """The flat offset of a multi-index into a contiguous buffer of this shape."""
    total = Comp()
    for c, s in zip(comps, contiguous_strides(shape)):
        total = total + c.scale(s)
    return total


# ---------------------------------------------------------------- movement ops
def permute_back(out_comps, dims):
    """Input comps of permute(x, dims) read at out_comps."""
    inp = [None] * len(dims)
    for i, d in enumerate(dims):
        inp[d] = out_comps[i]
    return inp


def expand_back(out_comps, in_shape, out_shape):
    lead = len(out_shape) - len(in_shape)
    return [Comp() if d == 1 and out_shape[lead + i] != 1 else out_comps[lead + i]
            for i, d in enumerate(in_shape)]


def slice_back(out_comps, starts, steps):
    return [c.scale(s).shift(a) for c, a, s in zip(out_comps, starts, steps)]


def reshape_back(out_comps, in_shape, out_shape):
    """Input comps of reshape(x) read at out_comps, or None when not expressible."""
    flat = linearize(out_comps, out_shape)
    result = []
    for d, s in zip(in_shape, contiguous_strides(in_shape)):
        c = Comp() if d == 1 else flat.divmod(s, d)
        if c is None:
            return None
        result.append(c)
    return result
