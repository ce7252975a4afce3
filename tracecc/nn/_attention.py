"""Attention as decompositions: softmax(q k^T * scale + mask) v, and the multi-head layer's
projections and head reshapes around it."""

from __future__ import annotations

import math

from .. import _functions as T
from .._tensor import Tensor
from ..runtime import dtypes
from ..runtime.errors import InvalidArgumentError, ShapeError


def _causal_keep(length: int, source: int) -> Tensor:
    """(L, S) bool: query i may attend to keys 0..i (top-left aligned, as PyTorch)."""
    rows = T.reshape(T.arange_(length), (length, 1))
    cols = T.reshape(T.arange_(source), (1, source))
    return T.le(cols, rows)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    A bool attn_mask marks the pairs that take part (True = attend); a float one is added."""
    from .functional import dropout

    length, source = query.shape[-2], key.shape[-2]
    if key.shape[-1] != query.shape[-1] or value.shape[-2] != source:
        raise ShapeError(f"scaled_dot_product_attention: query {list(query.shape)}, key "
                         f"{list(key.shape)} and value {list(value.shape)} do not fit together")
    if enable_gqa and key.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        repeats = query.shape[-3] // key.shape[-3]
        key, value = (_repeat_heads(t, repeats) for t in (key, value))
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = T.mul(T.matmul(query, T.transpose(key, -2, -1)), scale)
    if is_causal:
        if attn_mask is not None:
            raise InvalidArgumentError("scaled_dot_product_attention: pass either attn_mask or "
                                       "is_causal=True, not both")
        scores = T.where(_causal_keep(length, source), scores, float("-inf"))
    elif attn_mask is not None:
        if attn_mask.dtype is dtypes.bool_:
            scores = T.where(attn_mask, scores, float("-inf"))
        else:
            scores = T.add(scores, attn_mask)
    weights = T.softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return T.matmul(weights, value)


def _repeat_heads(t: Tensor, repeats: int) -> Tensor:
    """(..., Hk, S, E) -> (..., Hk*repeats, S, E), each head repeated in place (GQA)."""
    shape = tuple(t.shape)
    grown = T.expand(T.unsqueeze(t, -3), shape[:-2] + (repeats,) + shape[-2:])
    return T.reshape(grown, shape[:-3] + (shape[-3] * repeats,) + shape[-2:])


def _additive_mask(mask: Tensor, dtype) -> Tensor:
    """MultiheadAttention's masks: bool True means "do not attend" -> -inf; floats are added."""
    if mask.dtype is dtypes.bool_:
        return T.where(mask, float("-inf"), T.full_((), 0.0, dtype))
    return T.cast(mask, dtype)


def multi_head_attention_forward(query: Tensor, key: Tensor, value: Tensor, num_heads: int,
                                 in_proj_weight: Tensor, in_proj_bias: Tensor | None,
                                 out_proj_weight: Tensor, out_proj_bias: Tensor | None,
                                 key_padding_mask: Tensor | None = None, need_weights: bool = True,
                                 attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                                 is_causal: bool = False, dropout_p: float = 0.0,
                                 training: bool = True):
    """Batch-first (N, L, E) inputs. Returns (output (N, L, E), weights or None); weights are
    (N, L, S) averaged over heads, or (N, H, L, S)."""
    from .functional import dropout, linear

    n, length, embed = query.shape
    source = key.shape[1]
    if embed % num_heads:
        raise ShapeError(f"multi_head_attention: embed_dim {embed} is not divisible by "
                         f"num_heads {num_heads}")
    head = embed // num_heads
    w_q, w_k, w_v = T.chunk(in_proj_weight, 3)
    b_q, b_k, b_v = T.chunk(in_proj_bias, 3) if in_proj_bias is not None else (None, None, None)

    def heads(x, w, b, size):  # (N, size, E) -> (N, H, size, head)
        return T.transpose(T.reshape(linear(x, w, b), (n, size, num_heads, head)), 1, 2)

    q, k, v = heads(query, w_q, b_q, length), heads(key, w_k, b_k, source), heads(value, w_v, b_v, source)
    scores = T.matmul(T.mul(q, 1.0 / math.sqrt(head)), T.transpose(k, -2, -1))  # (N, H, L, S)
    if attn_mask is not None:
        mask = _additive_mask(attn_mask, scores.dtype)
        if mask.ndim == 3:  # (N*H, L, S)
            mask = T.reshape(mask, (n, num_heads, length, source))
        scores = T.add(scores, mask)
    elif is_causal:
        scores = T.where(_causal_keep(length, source), scores, float("-inf"))
    if key_padding_mask is not None:
        pad = _additive_mask(key_padding_mask, scores.dtype)
        scores = T.add(scores, T.reshape(pad, (n, 1, 1, source)))
    weights = T.softmax(scores, -1)
    if dropout_p > 0.0 and training:
        weights = dropout(weights, dropout_p, training=True)
    out = T.reshape(T.transpose(T.matmul(weights, v), 1, 2), (n, length, embed))
    out = linear(out, out_proj_weight, out_proj_bias)
    if not need_weights:
        return out, None
    return out, (T.mean(weights, 1) if average_attn_weights else weights)
