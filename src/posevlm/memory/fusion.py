"""Semantic-geometric cross-attention fusion (VLM², models spec §5.2).

Notation: n visual tokens of one step, m key / value tokens (n geometry tokens, + 1 pooled view token with
viewpoint alignment), 8DD the merged geometry row width (2 frames x 2 x 2 patches of the spatial encoder), D width,
h heads.

The step's position-aware visual tokens query its (aligned) geometry tokens::

    G   = geometry_proj(RMSNorm(merged))                                  # (n, 8DD) -> (n, D)
    H_t = X + o_proj(MHA(q_proj(RMSNorm(X)), k_proj(RMSNorm(KV)), v_proj(RMSNorm(KV))))
    H_t = H_t + ffn(RMSNorm(H_t))                                          # only with mlp_ratio > 0

Attention stays inside a step (one tubelet's n queries over its own m keys), so the cost per step is fixed; all
steps of all streams run in one batched ``scaled_dot_product_attention``. ``zero_init``: ``o_proj`` and the
FFN's last layer start at zero (H_t = X).
"""

from __future__ import annotations

from torch import Tensor, nn
import torch.nn.functional as F

from posevlm.errors import ConfigError, ShapeError

__all__ = ["CrossAttentionFusion"]


def _linear(d_in: int, d_out: int, *, zero: bool = False) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)
    return layer


class CrossAttentionFusion(nn.Module):
    """Visual queries, (aligned) geometry keys / values, residual; plus the geometry projection 8DD -> D.

    Keys: ``geometry_norm.weight``, ``geometry_proj``, ``query_norm.weight``, ``kv_norm.weight``, ``q_proj``,
    ``k_proj``, ``v_proj``, ``o_proj`` (each ``.{weight,bias}``); with an FFN ``ffn_norm.weight``,
    ``ffn.{0,2}.{weight,bias}``.
    """

    def __init__(self, dim: int, merged_dim: int, num_heads: int, *, mlp_ratio: int = 0, zero_init: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"num_heads={num_heads} does not divide dim={dim}", field="num_heads", value=num_heads)
        self.dim, self.merged_dim, self.num_heads = dim, merged_dim, num_heads
        self.geometry_norm = nn.RMSNorm(merged_dim, eps=1e-6)
        self.geometry_proj = _linear(merged_dim, dim)
        self.query_norm = nn.RMSNorm(dim, eps=1e-6)
        self.kv_norm = nn.RMSNorm(dim, eps=1e-6)
        self.q_proj, self.k_proj, self.v_proj = (_linear(dim, dim) for _ in range(3))
        self.o_proj = _linear(dim, dim, zero=zero_init)
        self.ffn = None
        if mlp_ratio:
            self.ffn_norm = nn.RMSNorm(dim, eps=1e-6)
            self.ffn = nn.Sequential(_linear(dim, mlp_ratio * dim), nn.GELU(),
                                     _linear(mlp_ratio * dim, dim, zero=zero_init))

    def geometry_tokens(self, merged: Tensor) -> Tensor:
        """G: (..., n, 8DD) merged spatial rows -> (..., n, D)."""
        if merged.shape[-1] != self.merged_dim:
            raise ShapeError(f"merged geometry rows must be (..., n, 8DD={self.merged_dim}); got {tuple(merged.shape)}",
                             name="geometry", shape=tuple(merged.shape))
        return self.geometry_proj(self.geometry_norm(merged.to(self.geometry_proj.weight.dtype)))

    def forward(self, tokens: Tensor, keys: Tensor) -> Tensor:
        """tokens (B, n, D) queries, keys (B, m, D) keys / values of the same steps -> (B, n, D) in tokens' dtype."""
        if tokens.dim() != 3 or keys.dim() != 3 or tokens.shape[0] != keys.shape[0] \
                or tokens.shape[-1] != self.dim or keys.shape[-1] != self.dim:
            raise ShapeError(f"fusion needs tokens (B, n, D={self.dim}) and keys (B, m, D); got {tuple(tokens.shape)} "
                             f"and {tuple(keys.shape)}", name="keys", shape=tuple(keys.shape))
        x = tokens.to(self.q_proj.weight.dtype)
        kv = self.kv_norm(keys.to(x.dtype))

        def heads(t: Tensor) -> Tensor:  # (B, L, D) -> (B, h, L, D / h)
            return t.view(t.shape[0], t.shape[1], self.num_heads, -1).transpose(1, 2)

        attn = F.scaled_dot_product_attention(heads(self.q_proj(self.query_norm(x))), heads(self.k_proj(kv)),
                                              heads(self.v_proj(kv)))
        h = x + self.o_proj(attn.transpose(1, 2).reshape(x.shape))
        if self.ffn is not None:
            h = h + self.ffn(self.ffn_norm(h))
        return h.to(tokens.dtype)
