"""Shared fixtures for the selector tests: smooth camera trajectories and a small synthetic scan
whose rendered depth is back-projected into realistic point maps with VGGT-like confidences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posevlm.geometry import axis_angle_to_matrix, se3_from_Rt, se3_inverse, transform_points, w2c_to_c2w


def smooth_w2c(seed: int, n: int, step: float = 0.08) -> torch.Tensor:
    """(n, 4, 4) float64 w2c of a smooth random walk (rotation vector and centre random walks)."""
    g = np.random.default_rng(seed)
    rotvec = np.cumsum(g.normal(scale=step, size=(n, 3)), axis=0)
    centers = np.cumsum(g.normal(scale=step, size=(n, 3)), axis=0)
    c2w = se3_from_Rt(axis_angle_to_matrix(torch.from_numpy(rotvec)), torch.from_numpy(centers))
    return se3_inverse(c2w)


def back_project(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(P, H, W) z-depth -> (P, H, W, 3) world points, pixel centres at (u + 0.5, v + 0.5)."""
    p, h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w] + 0.5
    out = np.empty((p, h, w, 3), dtype=dtype)
    for f in range(p):
        d = depth[f].astype(np.float64)
        cam = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d], -1).reshape(-1, 3)
        world = transform_points(w2c_to_c2w(torch.from_numpy(w2c[f])), torch.from_numpy(cam)).numpy()
        out[f] = world.reshape(h, w, 3)
    return out


@pytest.fixture(scope="session")
def make_w2c():
    """``make_w2c(seed, n, step=0.08)``: a smooth random-walk trajectory (see ``smooth_w2c``)."""
    return smooth_w2c


@pytest.fixture(scope="session")
def synthetic_pool() -> dict:
    """A 24-frame pool of a synthetic room at 48x64: w2c, K, depth, float32 world points, confidences."""
    from posevlm.scenes.synthetic import SynthConfig, generate_layout, generate_trajectory, render, synthetic_intrinsics

    rng = np.random.default_rng(np.random.SeedSequence([3, 0]))
    layout = generate_layout(rng)
    w2c_all = generate_trajectory(layout, rng, num_frames=600)
    w2c = w2c_all[np.linspace(0, 599, 24).astype(np.int64)]
    hw = (48, 64)
    K = synthetic_intrinsics(SynthConfig(image_hw=hw))
    depth = render(layout, w2c, K, hw).depth
    noise = np.random.default_rng(7).normal(size=depth.shape)
    confidence = (1.0 + np.exp(-0.3 * depth + noise)).astype(np.float32)  # VGGT-like: >= 1, lower far away
    return {"w2c": w2c, "K": K, "depth": depth, "world": back_project(depth, K, w2c, np.float32),
            "confidence": confidence}


class ArrayPool:
    """A ``PoolView`` over arrays, as the sampling runner presents a pool to registered selectors."""

    def __init__(self, n: int, w2c_opencv=None, voxel_builder=None):
        self.frame_ids = np.arange(n, dtype=np.int64) * 3
        self.w2c_opencv = w2c_opencv
        self._voxel_builder = voxel_builder
        self.voxel_params: list[dict] = []

    def voxels(self, params):
        self.voxel_params.append(dict(params))
        return self._voxel_builder(params)


@pytest.fixture(scope="session")
def array_pool():
    """``array_pool(n, w2c_opencv=None, voxel_builder=None)``: a ``PoolView`` for the registered selectors."""
    return ArrayPool
