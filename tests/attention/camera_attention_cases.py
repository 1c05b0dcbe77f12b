"""Shared random inputs for the camera-attention tests (not a test module)."""

from __future__ import annotations

import torch
from strategies import random_K, random_rotations, random_w2c

from posevlm.geometry import se3_from_Rt

HW = (48, 64)


def batch_w2c(seed: int, b: int, c: int, scale: float = 3.0) -> torch.Tensor:
    """(b, c, 4, 4) float64 random w2c."""
    return torch.stack([random_w2c(seed + 7 * i, c, scale) for i in range(b)])


def batch_K(seed: int, b: int, c: int) -> torch.Tensor:
    return torch.stack([random_K(seed + 7 * i, c, HW) for i in range(b)])


def random_se3(seed: int, scale: float = 5.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return se3_from_Rt(random_rotations(seed + 11, 1)[0], torch.randn(3, generator=g, dtype=torch.float64) * scale)


def camera_index(seed: int, b: int, length: int, c: int, text: bool = True) -> torch.Tensor:
    """(b, length) int64 in [-1, c) (or [0, c) without text tokens)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1 if text else 0, c, (b, length), generator=g)


def qkv(seed: int, b: int, h: int, length: int, d: int, dtype=torch.float64, h_kv: int | None = None):
    g = torch.Generator().manual_seed(seed)
    h_kv = h if h_kv is None else h_kv
    q = torch.randn(b, h, length, d, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(b, h_kv, length, d, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(b, h_kv, length, d, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v


def pad_affine(top: torch.Tensor) -> torch.Tensor:
    """(..., 3, 4) -> (..., 4, 4) with the exact bottom row [0, 0, 0, 1] (gradchecks perturb only the top rows)."""
    bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=top.dtype)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)
