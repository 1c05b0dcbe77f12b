"""Geodesic ALiBi: an additive attention bias from pairwise camera pose distances (positions.md §4).

Shape notation: B batch, C cameras, H heads (Hkv key/value heads), Lq / Lk query / key tokens, D head dim,
E = C rounded up to a multiple of 8 (the extra head dims of the factored form).

    bias_h(i, j) = -slope_h * D(c(i), c(j)),   D(a, b) = sqrt(theta_ab^2 + lam^2 * |c_a - c_b|^2 / scale^2)

with theta the geodesic rotation angle (atan2-stable), c the camera centres and scale the translation
normalisation of :func:`posevlm.attention.attention_cameras`. 0 for pairs involving a text token (-1).

Two exact ways to apply it:

* dense (the reference): :func:`pose_distance_bias` materialises (B, H, Lq, Lk), added as a float mask; an
  arbitrary mask costs B·H·Lq·Lk memory and disables SDPA's causal fast path (≈ 2× a causal prefill);
* factored (the fast path): the bias matrix of one head is ``onehot(c(i)) · T[:, c(j)]``, a product of an
  (Lq, C) and a (C, Lk) matrix. Appending ``slope_h · onehot(c(i))`` to every query and ``-T[:, c(j)] / scale``
  to every key (zeros for text tokens, zeros in v) makes ``scale · q'·k'`` = ``scale · q·k + bias`` exactly,
  so any unmodified attention kernel (causal fast path, GQA, padding masks, autograd) applies the bias at the
  price of E more head dims (:func:`pose_bias_query_dims`, :func:`pose_bias_key_dims`, :func:`biased_sdpa`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import normalize_translation_scale, pairwise_pose_distances, reference_index
from posevlm.geometry.trajectory import Reference, combined_pose_distance

__all__ = [
    "pose_distance_table", "pose_distance_bias", "alibi_slopes", "pose_distance_score_mod",
    "bias_dims_width", "pose_bias_query_dims", "pose_bias_key_dims", "append_bias_dims", "biased_sdpa",
]  # fmt: skip

#: The factored bias pads its C extra head dims to a multiple of this (kernel alignment; zeros are exact).
BIAS_DIMS_MULTIPLE = 8


def pose_distance_table(
    w2c_opencv: Tensor,
    *,
    lam: float = 1.0,
    translation_norm: Literal["max", "median", "mean", "none"] = "max",
    reference: Reference = "first",
) -> Tensor:
    """(B, C, C) pairwise pose distance, symmetric with an exact zero diagonal, SE(3)-invariant.

    Args:
        w2c_opencv: (B, C, 4, 4) (any leading dims) world-to-camera, OpenCV axes; float64 kept, else float32.
        lam: weight of the (normalised) centre distance against the angle in radians.
        translation_norm, reference: as in :func:`attention_cameras` (scale = max/median/mean distance of
            camera centres to the reference camera; ``none`` = world units).

    Differentiable w.r.t. ``w2c_opencv`` with finite gradients (0 at the D = 0 kinks: the diagonal, equal poses).
    """
    if translation_norm not in ("max", "median", "mean", "none"):
        raise ConfigError(f"translation_norm must be max, median, mean or none; got {translation_norm!r}",
                          field="translation_norm", value=translation_norm)
    dtype = torch.float64 if w2c_opencv.dtype == torch.float64 else torch.float32
    w2c = w2c_opencv.to(dtype)
    ref = reference_index(w2c, reference)
    _, scale = normalize_translation_scale(w2c, translation_norm, reference=ref)  # (B,), 1 if static / none
    dist, theta = pairwise_pose_distances(w2c)  # already invariant to the world frame: no re-referencing
    dist = dist / scale[..., None, None]
    table = combined_pose_distance(theta, dist, lam)  # finite gradients on the diagonal (D = 0)
    table = 0.5 * (table + table.transpose(-1, -2))
    eye = torch.eye(table.shape[-1], dtype=torch.bool, device=table.device)
    return table.masked_fill(eye, 0.0)


def alibi_slopes(num_heads: int) -> Tensor:
    """(H,) float32 ALiBi slopes: geometric sequence 2^(-8 i / n) for n a power of two, interleaved
    extension for other head counts (Press et al.)."""
    if num_heads < 1:
        raise ConfigError(f"num_heads must be >= 1; got {num_heads}", field="num_heads", value=num_heads)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(closest)
    if closest != num_heads:
        slopes += power_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def _check(table: Tensor, camera_index_q: Tensor, camera_index_k: Tensor, slopes: Tensor) -> None:
    if table.dim() != 3 or table.shape[-1] != table.shape[-2]:
        raise ShapeError(f"table must be (B, C, C); got {tuple(table.shape)}", name="table", shape=tuple(table.shape))
    for name, ci in (("camera_index_q", camera_index_q), ("camera_index_k", camera_index_k)):
        if ci.dim() != 2 or ci.dtype != torch.long:
            raise ShapeError(f"{name} must be (B, L) int64; got {tuple(ci.shape)} {ci.dtype}", name=name,
                             shape=tuple(ci.shape))
    if slopes.dim() != 1:
        raise ShapeError(f"slopes must be (H,); got {tuple(slopes.shape)}", name="slopes", shape=tuple(slopes.shape))


def pose_distance_bias(table: Tensor, camera_index_q: Tensor, camera_index_k: Tensor, slopes: Tensor) -> Tensor:
    """Dense additive bias (B, H, Lq, Lk) = -slope_h * table[b, c(i), c(j)], 0 where either token is text.

    Args:
        table: (B, C, C) from :func:`pose_distance_table`.
        camera_index_q: (B, Lq) int64, -1 = text. camera_index_k: (B, Lk) int64, -1 = text.
        slopes: (H,) per-head slopes (e.g. :func:`alibi_slopes`, or learned and initialised at 0).
    Returns:
        (B, H, Lq, Lk) in ``table``'s dtype; add it to the logits (an SDPA float ``attn_mask``).
    """
    _check(table, camera_index_q, camera_index_k, slopes)
    b, c = table.shape[0], table.shape[-1]
    iq, ik = camera_index_q.clamp(min=0), camera_index_k.clamp(min=0)
    rows = torch.gather(table, 1, iq[..., None].expand(b, iq.shape[1], c))  # (B, Lq, C)
    pair = torch.gather(rows, 2, ik[:, None, :].expand(b, iq.shape[1], ik.shape[1]))  # (B, Lq, Lk)
    valid = (camera_index_q[:, :, None] >= 0) & (camera_index_k[:, None, :] >= 0)
    pair = torch.where(valid, pair, torch.zeros((), dtype=pair.dtype, device=pair.device))
    return -slopes.to(pair.dtype)[None, :, None, None] * pair[:, None]


def pose_distance_score_mod(
    table: Tensor, camera_index_q: Tensor, camera_index_k: Tensor, slopes: Tensor
) -> Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]:
    """A FlexAttention ``score_mod(score, b, h, q_idx, kv_idx)`` adding the same bias as
    :func:`pose_distance_bias` without materialising (B, H, Lq, Lk)."""
    _check(table, camera_index_q, camera_index_k, slopes)
    iq, ik = camera_index_q.clamp(min=0), camera_index_k.clamp(min=0)
    vq, vk = camera_index_q >= 0, camera_index_k >= 0

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        d = table[b, iq[b, q_idx], ik[b, kv_idx]]
        bias = torch.where(vq[b, q_idx] & vk[b, kv_idx], -slopes[h] * d, torch.zeros_like(d))
        return score + bias.to(score.dtype)

    return score_mod


# ------------------------------------------------------------------------- factored form (the fast path)
def bias_dims_width(num_cameras: int) -> int:
    """E: the number of extra head dims for ``num_cameras`` cameras (a multiple of 8, at least 8)."""
    return max(1, -(-int(num_cameras) // BIAS_DIMS_MULTIPLE)) * BIAS_DIMS_MULTIPLE


def pose_bias_query_dims(camera_index_q: Tensor, slopes: Tensor, width: int, *, dtype: torch.dtype | None = None
                         ) -> Tensor:
    """(B, H, Lq, E) extra query dims: ``slope_h`` at dim ``c(i)``, 0 elsewhere and for text tokens (-1).

    Args:
        camera_index_q: (B, Lq) int64 camera of each query token, -1 = text; values < E.
        slopes: (H,) per-head slopes (autograd flows to them). width: E (:func:`bias_dims_width`).
        dtype: output dtype (default: the slopes' dtype).
    """
    dtype = slopes.dtype if dtype is None else dtype
    hot = F.one_hot(camera_index_q.clamp(min=0), width).to(dtype)  # (B, Lq, E)
    hot = hot * (camera_index_q >= 0)[..., None].to(dtype)
    return hot[:, None] * slopes.to(dtype)[None, :, None, None]


def pose_bias_key_dims(table: Tensor, camera_index_k: Tensor, width: int, *, scale: float,
                       dtype: torch.dtype | None = None) -> Tensor:
    """(B, 1, Lk, E) extra key dims: ``-table[b, :, c(j)] / scale`` (zero-padded to E), 0 for text tokens.

    Args:
        table: (B, C, C) from :func:`pose_distance_table` (C <= E). camera_index_k: (B, Lk) int64, -1 = text.
        scale: the attention's logit scale (SDPA ``scale``; the kernel multiplies it back).
        dtype: output dtype (default: the table's dtype).
    """
    dtype = table.dtype if dtype is None else dtype
    b, c = table.shape[0], table.shape[-1]
    cols = torch.gather(table, 2, camera_index_k.clamp(min=0)[:, None, :].expand(b, c, -1))  # (B, C, Lk)
    cols = cols.transpose(1, 2) * (camera_index_k >= 0)[..., None].to(table.dtype)  # (B, Lk, C)
    cols = F.pad(cols * (-1.0 / scale), (0, width - c))
    return cols.to(dtype)[:, None]


def append_bias_dims(q: Tensor, k: Tensor, v: Tensor, q_dims: Tensor, k_dims: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate the extra dims: q (B, H, Lq, D) -> (B, H, Lq, D + E); k (B, Hkv, Lk, D) -> (..., D + E) with
    ``k_dims`` (B, 1, Lk, E) broadcast over the KV heads; v zero-padded to D + E (kernels want equal head dims;
    the output's last E dims are then 0: slice ``[..., :D]``)."""
    k_dims = k_dims.to(k.dtype).expand(k.shape[0], k.shape[1], k.shape[2], k_dims.shape[-1])
    return (torch.cat([q, q_dims.to(q.dtype)], -1), torch.cat([k, k_dims], -1),
            F.pad(v, (0, q_dims.shape[-1])))


def biased_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    table: Tensor,
    camera_index_q: Tensor,
    camera_index_k: Tensor,
    slopes: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """``F.scaled_dot_product_attention`` plus the pose-distance bias in factored form (no (Lq, Lk) bias).

    Equals ``F.scaled_dot_product_attention(q, k, v, attn_mask=pose_distance_bias(...) (+ mask))`` to rounding,
    forward and backward (q, k, v, slopes, table).

    Args:
        q: (B, H, Lq, D); k, v: (B, Hkv, Lk, D). table: (B, C, C). camera_index_q: (B, Lq), camera_index_k:
            (B, Lk) int64, -1 = text. slopes: (H,).
        attn_mask, is_causal, enable_gqa: passed to SDPA unchanged (the causal fast path stays available).
        scale: logit scale, default 1/sqrt(D) (of the original head dim).
    Returns:
        (B, H, Lq, D).
    """
    _check(table, camera_index_q, camera_index_k, slopes)
    d = q.shape[-1]
    scale = d**-0.5 if scale is None else scale
    width = bias_dims_width(table.shape[-1])
    q2, k2, v2 = append_bias_dims(q, k, v, pose_bias_query_dims(camera_index_q, slopes, width, dtype=q.dtype),
                                  pose_bias_key_dims(table, camera_index_k, width, scale=scale, dtype=k.dtype))
    out = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=attn_mask, is_causal=is_causal, scale=scale,
                                         enable_gqa=enable_gqa)
    return out[..., :d]
