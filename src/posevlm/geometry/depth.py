"""Depth maps to world points (numpy): one vectorised pass over all frames."""

from __future__ import annotations

import numpy as np

from posevlm.errors import ShapeError

__all__ = ["backproject_depth"]


def backproject_depth(depth: np.ndarray, K_pixels: np.ndarray, w2c_opencv: np.ndarray, *,
                      pixel_stride: int = 1) -> np.ndarray:
    """World points of every (strided) pixel, one vectorised pass over all frames.

    Args:
        depth: (N, H, W) OpenCV z-depth in metres; <= 0 or non-finite = no measurement.
        K_pixels: (N, 3, 3) intrinsics for (H, W).
        w2c_opencv: (N, 4, 4) world-to-camera, OpenCV axes.
        pixel_stride: use rows and columns 0, s, 2s, ... (pixel centres at index + 0.5).
    Returns:
        (N, h, w, 3) float64 world points, NaN where depth is missing; h = ceil(H / s), w = ceil(W / s).
    Raises:
        ShapeError: inconsistent shapes.
    """
    depth = np.asarray(depth)
    K = np.asarray(K_pixels, dtype=np.float64)
    w2c = np.asarray(w2c_opencv, dtype=np.float64)
    if depth.ndim != 3 or K.shape != (len(depth), 3, 3) or w2c.shape != (len(depth), 4, 4):
        raise ShapeError(f"need depth (N, H, W), K_pixels (N, 3, 3), w2c_opencv (N, 4, 4); got "
                         f"{depth.shape}, {K.shape}, {w2c.shape}.", name="depth", shape=depth.shape)
    s = int(pixel_stride)
    z = depth[:, ::s, ::s].astype(np.float64)
    z = np.where(np.isfinite(z) & (z > 0), z, np.nan)
    v = np.arange(0, depth.shape[1], s) + 0.5
    u = np.arange(0, depth.shape[2], s) + 0.5
    x = (u[None, None, :] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None] * z  # (N, h, w)
    y = (v[None, :, None] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None] * z
    n, h, w = z.shape
    cam = np.stack([x, y, z], -1).reshape(n, h * w, 3)
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    # world = R^T (cam - t), as row vectors: (cam - t) @ R, one batched matmul
    return np.matmul(cam - t[:, None, :], R).reshape(n, h, w, 3)
