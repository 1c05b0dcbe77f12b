"""Geodesic ALiBi: an additive attention bias from pairwise camera pose distances (positions.md §4).

Shape notation: B batch, C cameras, H heads, Lq / Lk query / key tokens.

    bias_h(i, j) = -slope_h * D(c(i), c(j)),   D(a, b) = sqrt(theta_ab^2 + lam^2 * |c_a - c_b|^2 / scale^2)

with theta the geodesic rotation angle (atan2-stable), c the camera centres and scale the translation
normalisation of :func:`posevlm.attention.attention_cameras`. 0 for pairs involving a text token (-1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import normalize_translation_scale, pairwise_pose_distances, reference_index
from posevlm.geometry.trajectory import Reference

__all__ = ["pose_distance_table", "pose_distance_bias", "alibi_slopes", "pose_distance_score_mod"]


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
    table = torch.sqrt(theta * theta + (lam * dist) ** 2)
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
