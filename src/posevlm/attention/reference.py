"""Slow, obviously-correct oracle for camera attention: explicit D x D matrices, float64, explicit softmax.

For tests only. Shape notation as in :mod:`posevlm.attention.transform`.

For every token i the full block matrix ``Dfull_i`` is the D x D identity with P̃_{c(i)} written on each
4-dim group of the camera dims (identity for text tokens). Then, with ``torch.linalg.inv`` for the inverse
(independent of the closed form used by the fast path):

    q_i <- Dfull_iᵀ q_i,   k_j <- Dfull_j⁻¹ k_j,   v_j <- Dfull_j⁻¹ v_j (not cape),   o_i <- Dfull_i o_i (not cape)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from posevlm.attention.cameras import check_mode

__all__ = ["reference_block_matrices", "reference_logits", "reference_camera_attention"]


def reference_block_matrices(cameras: Tensor, camera_index: Tensor, dims: Sequence[int], head_dim: int) -> Tensor:
    """(B, L, D, D) float64 per-token matrices Dfull_i.

    Args:
        cameras: (B, C, 4, 4) P̃. camera_index: (B, L), -1 = identity. dims: camera dims grouped by 4.
    """
    b, length = camera_index.shape
    cams = cameras.to(torch.float64).expand(b, -1, 4, 4)
    out = torch.eye(head_dim, dtype=torch.float64).repeat(b, length, 1, 1)
    groups = [list(dims[i : i + 4]) for i in range(0, len(dims), 4)]
    for bi in range(b):
        for li in range(length):
            c = int(camera_index[bi, li])
            if c < 0:
                continue
            for g in groups:
                for r in range(4):
                    for s in range(4):
                        out[bi, li, g[r], g[s]] = cams[bi, c, r, s]
    return out


def _transform(x: Tensor, mats: Tensor) -> Tensor:
    """x (B, H, L, D), mats (B, L, D, D) -> mats @ x per token."""
    return torch.einsum("blij,bhlj->bhli", mats, x)


def _prepare(q, k, v, cameras, camera_index, dims, mode, camera_index_k):
    mode_spec = check_mode(mode)
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    d = q.shape[-1]
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    ci_k = camera_index if camera_index_k is None else camera_index_k
    dq = reference_block_matrices(cameras, camera_index, dims, d)
    dk = reference_block_matrices(cameras, ci_k, dims, d)
    dk_inv = torch.linalg.inv(dk)
    q = _transform(q, dq.transpose(-1, -2))
    k = _transform(k, dk_inv)
    if mode_spec.values_and_outputs:
        v = _transform(v, dk_inv)
    return q, k, v, dq


def reference_logits(q, k, v, cameras, camera_index, dims, mode, *, scale=None, camera_index_k=None) -> Tensor:
    """(B, H, Lq, Lk) float64 logits q_iᵀ Dfull_i Dfull_j⁻¹ k_j * scale."""
    q, k, _, _ = _prepare(q, k, v, cameras, camera_index, dims, mode, camera_index_k)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (q @ k.transpose(-1, -2)) * scale


def reference_camera_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cameras: Tensor,
    camera_index: Tensor,
    dims: Sequence[int],
    mode: str,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    camera_index_k: Tensor | None = None,
) -> Tensor:
    """(B, Hq, Lq, D) float64 camera attention with explicit matrices and an explicit softmax.

    Args:
        q: (B, Hq, Lq, D); k, v: (B, Hkv, Lk, D) (KV heads are repeated for GQA).
        cameras: (B, C, 4, 4) P̃. camera_index: (B, Lq) for queries; camera_index_k (B, Lk) for keys
            (defaults to camera_index). attn_mask: bool (True = keep) or float additive, broadcastable to
            (B, H, Lq, Lk). is_causal: top-left aligned causal mask (as SDPA).
    """
    q, k, v, dq = _prepare(q, k, v, cameras, camera_index, dims, mode, camera_index_k)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ k.transpose(-1, -2)) * scale
    lq, lk = logits.shape[-2:]
    if is_causal:
        keep = torch.ones(lq, lk, dtype=torch.bool).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask.to(torch.float64)
    weights = torch.exp(logits - logits.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    o = weights @ v
    if check_mode(mode).values_and_outputs:
        o = _transform(o, dq)
    return o
