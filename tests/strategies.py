"""Hypothesis strategies shared by the tests: random rotations, rigid transforms, intrinsics."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from posevlm.geometry import quat_xyzw_to_matrix, se3_from_Rt

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def random_rotations(seed: int, n: int) -> torch.Tensor:
    """(n, 3, 3) float64 rotations, uniform on SO(3)."""
    g = np.random.default_rng(seed)
    q = g.normal(size=(n, 4))
    return quat_xyzw_to_matrix(torch.from_numpy(q / np.linalg.norm(q, axis=1, keepdims=True)))


def random_w2c(seed: int, n: int, scale: float = 3.0) -> torch.Tensor:
    """(n, 4, 4) float64 random rigid world-to-camera transforms."""
    g = np.random.default_rng(seed + 1)
    return se3_from_Rt(random_rotations(seed, n), torch.from_numpy(g.normal(scale=scale, size=(n, 3))))


def random_K(seed: int, n: int, hw: tuple[int, int]) -> torch.Tensor:
    g = np.random.default_rng(seed + 2)
    h, w = hw
    f = g.uniform(0.5, 2.0, size=(n, 2)) * max(h, w)
    c = g.uniform(0.3, 0.7, size=(n, 2)) * np.array([w, h])
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = torch.from_numpy(f[:, 0]), torch.from_numpy(f[:, 1])
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = torch.from_numpy(c[:, 0]), torch.from_numpy(c[:, 1]), 1.0
    return K
