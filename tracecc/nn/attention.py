"""MultiheadAttention, PyTorch's layer: packed q/k/v input projection (xavier_uniform_,
zero bias) and an output projection (a Linear with zero bias)."""

from __future__ import annotations

from .. import _functions as T
from ..creation import empty
from ..runtime.errors import InvalidArgumentError
from . import init
from ._attention import multi_head_attention_forward
from .linear import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise InvalidArgumentError(f"MultiheadAttention: embed_dim ({embed_dim}) must be "
                                       f"divisible by num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn or kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise InvalidArgumentError("MultiheadAttention: add_bias_kv, add_zero_attn and "
                                       "kdim/vdim different from embed_dim are not supported")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, dtype=dtype, device=device))
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, device=device)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        """(L, N, E) inputs, or (N, L, E) with batch_first, or unbatched (L, E).
        Returns (output, attention weights averaged over heads or None)."""
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (T.unsqueeze(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = T.unsqueeze(key_padding_mask, 0)
        elif not self.batch_first:
            query, key, value = (T.transpose(t, 0, 1) for t in (query, key, value))
        out, weights = multi_head_attention_forward(
            query, key, value, self.num_heads, self.in_proj_weight, self.in_proj_bias,
            self.out_proj.weight, self.out_proj.bias, key_padding_mask, need_weights, attn_mask,
            average_attn_weights, is_causal, self.dropout, self.training)
        if unbatched:
            out = T.squeeze(out, 0)
            weights = T.squeeze(weights, 0) if weights is not None else None
        elif not self.batch_first:
            out = T.transpose(out, 0, 1)
        return out, weights
