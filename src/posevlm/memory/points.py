"""Sources of 3D for coordinate injection: point maps in the first frame's world frame, pooled to token grids.

Notation: S frames of one video (2T after padding an odd count by repeating the last frame), (H, W) a point or
depth map, (mh, mw) the merged token grid of the video (n = mh * mw tokens per tubelet), T tubelets.

**The first frame's world frame** is the camera frame of the video's first frame (OpenCV axes: x right, y down,
z forward; origin at its camera centre): VGGT's ``world_points`` are expressed in it by construction, and
ground-truth depth + cameras are brought into it here by re-referencing ``w2c_opencv`` to the first frame
(:func:`posevlm.geometry.rereference`). Scale is the source's (metres for scans, VGGT's normalised scale for
its predictions); the VLM² stage divides coordinates by the first step's mean point distance
(``coordinate_scale="first_frame"``), so both kinds look alike to the model.

Readers that open scans or predictions files live in :mod:`posevlm.point_io`; everything here is tensors in,
tensors out.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from posevlm.errors import ShapeError
from posevlm.geometry import extrinsics_intrinsics_to_pose_encoding, intrinsics_resize, rereference

__all__ = ["point_maps_from_depth", "points_in_first_frame", "pool_point_maps", "pose_encoding_in_first_frame",
           "first_step_scale"]


def _w2c(w2c_opencv: Tensor, frames: int) -> Tensor:
    w2c = torch.as_tensor(w2c_opencv)
    if w2c.shape != (frames, 4, 4):
        raise ShapeError(f"w2c_opencv must be ({frames}, 4, 4) world-to-camera (OpenCV axes), one per frame; got "
                         f"{tuple(w2c.shape)}", name="w2c_opencv", shape=tuple(w2c.shape))
    return w2c


def point_maps_from_depth(depth: Tensor, K_pixels: Tensor, w2c_opencv: Tensor, *,
                          image_hw: Sequence[int] | Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Back-project z-depth into the first frame's world frame, all frames in one vectorised pass.

    Args:
        depth: (S, H, W) z-depth along each camera's optical axis; <= 0 or non-finite = no measurement.
        K_pixels: (S, 3, 3) or (3, 3) intrinsics in pixels of ``image_hw``; pixel centres at (u + 0.5, v + 0.5).
        w2c_opencv: (S, 4, 4) world-to-camera, OpenCV axes, in any world frame (re-referenced to frame 0 here).
        image_hw: (H, W) ``K_pixels`` refers to (e.g. the colour image when the depth is smaller); None: the depth
            size.
    Returns:
        (points (S, H, W, 3) in the first frame's camera coordinates, zero where invalid; valid (S, H, W) bool),
        in the dtype of ``depth`` promoted to at least float32.
    Raises:
        ShapeError: inconsistent shapes (names the argument).
    """
    depth = torch.as_tensor(depth)
    if depth.dim() != 3:
        raise ShapeError(f"depth must be (S, H, W); got {tuple(depth.shape)}", name="depth", shape=tuple(depth.shape))
    s, h, w = depth.shape
    dtype = torch.promote_types(depth.dtype, torch.float32)
    K = torch.as_tensor(K_pixels).to(device=depth.device, dtype=torch.float64)
    if K.shape == (3, 3):
        K = K.expand(s, 3, 3)
    if K.shape != (s, 3, 3):
        raise ShapeError(f"K_pixels must be (3, 3) or ({s}, 3, 3); got {tuple(K.shape)}", name="K_pixels",
                         shape=tuple(K.shape))
    if image_hw is not None:
        K = intrinsics_resize(K, image_hw, (h, w))
    w2c = rereference(_w2c(w2c_opencv, s).to(device=depth.device, dtype=torch.float64), "first")
    z = depth.to(torch.float64)
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros_like(z))
    v = torch.arange(h, device=depth.device, dtype=torch.float64) + 0.5
    u = torch.arange(w, device=depth.device, dtype=torch.float64) + 0.5
    x = (u[None, None, :] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None] * z
    y = (v[None, :, None] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None] * z
    cam = torch.stack([x, y, z], dim=-1).reshape(s, h * w, 3)
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    world = torch.matmul(cam - t[:, None, :], R)  # R^T (cam - t) as row vectors
    world = torch.where(valid.reshape(s, h * w, 1), world, torch.zeros_like(world))
    return world.reshape(s, h, w, 3).to(dtype), valid


def points_in_first_frame(world_points: Tensor, w2c_opencv: Tensor) -> Tensor:
    """(S, h, w, 3) points in the cameras' world frame -> the first frame's camera coordinates (``w2c_opencv[0]``
    applied), e.g. a predictions file's ``world_points`` saved in a scan's world frame."""
    points = torch.as_tensor(world_points)
    if points.dim() != 4 or points.shape[-1] != 3:
        raise ShapeError(f"world_points must be (S, h, w, 3); got {tuple(points.shape)}", name="world_points",
                         shape=tuple(points.shape))
    first = _w2c(w2c_opencv, points.shape[0])[0].to(device=points.device, dtype=torch.float64)
    out = points.to(torch.float64) @ first[:3, :3].T + first[:3, 3]
    return out.to(torch.promote_types(points.dtype, torch.float32))


def pose_encoding_in_first_frame(w2c_opencv: Tensor, K_pixels: Tensor, image_hw: Sequence[int] | Tensor) -> Tensor:
    """(S, 9) VGGT ``absT_quaR_FoV`` encodings of cameras re-referenced to the first frame (the view input of
    ``view_source="pose_encoding"`` when the cameras come from a scan or manifest rather than VGGT)."""
    w2c = rereference(torch.as_tensor(w2c_opencv).to(torch.float64), "first")
    return extrinsics_intrinsics_to_pose_encoding(w2c, torch.as_tensor(K_pixels).to(torch.float64), image_hw).float()


def pool_point_maps(points: Tensor, valid: Tensor | None, grid_hw: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Per-frame point maps -> one point per merged token of each tubelet: the mean of the valid points of the
    token's cell in both frames of its tubelet (adaptive average pooling, so any (H, W) works).

    Args:
        points: (S, H, W, 3) one video's point maps (first frame's world frame); S = 2T, or 2T - 1 (the last frame
            is repeated, as the processors do). valid: (S, H, W) bool or None (all finite points valid).
        grid_hw: (mh, mw) merged token grid (Qwen2.5-VL: the patch grid / 2).
    Returns:
        (coords (T, mh * mw, 3) in ``[T, mh, mw]`` raster order, zero where invalid; valid (T, mh * mw) bool:
        cells with at least one valid point).
    """
    points = torch.as_tensor(points)
    if points.dim() != 4 or points.shape[-1] != 3:
        raise ShapeError(f"point maps must be (S, H, W, 3); got {tuple(points.shape)}", name="point_maps",
                         shape=tuple(points.shape))
    finite = torch.isfinite(points).all(dim=-1)
    if valid is None:
        valid = finite
    else:
        valid = torch.as_tensor(valid, device=points.device)
        if valid.shape != points.shape[:3]:
            raise ShapeError(f"point_valid must be {tuple(points.shape[:3])} (one flag per point); got "
                             f"{tuple(valid.shape)}", name="point_valid", shape=tuple(valid.shape))
        valid = valid.bool() & finite
    if points.shape[0] % 2:
        points = torch.cat([points, points[-1:]])
        valid = torch.cat([valid, valid[-1:]])
    mh, mw = (int(v) for v in grid_hw)
    dtype = torch.promote_types(points.dtype, torch.float32)
    weight = valid.to(dtype)[:, None]  # (S, 1, H, W)
    summed = torch.where(valid[..., None], points.to(dtype), 0).permute(0, 3, 1, 2)  # (S, 3, H, W)
    num = F.adaptive_avg_pool2d(summed, (mh, mw))  # (S, 3, mh, mw): mean of valid points x fraction valid
    den = F.adaptive_avg_pool2d(weight, (mh, mw))  # (S, 1, mh, mw): fraction valid
    t = points.shape[0] // 2
    num = num.reshape(t, 2, 3, mh, mw).sum(1)
    den = den.reshape(t, 2, 1, mh, mw).sum(1)
    ok = den > 0
    coords = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))
    return coords.permute(0, 2, 3, 1).reshape(t, mh * mw, 3), ok[:, 0].reshape(t, mh * mw)


def first_step_scale(coords: Tensor, valid: Tensor) -> Tensor:
    """The coordinate scale of each stream: the mean distance from the origin (the first camera) of the valid
    points of its first step that has any.

    Args:
        coords: (..., T, n, 3). valid: (..., T, n) bool.
    Returns:
        (...) scale > 0, NaN for a stream without a valid point (or whose points all sit at the origin).
    """
    has = valid.any(dim=-1)  # (..., T)
    first = has.to(torch.long).argmax(dim=-1)  # first step with a valid point (0 if none)
    n = coords.shape[-2]
    c = torch.take_along_dim(coords, first[..., None, None, None].expand(*first.shape, 1, n, 3), dim=-3)[..., 0, :, :]
    m = torch.take_along_dim(valid, first[..., None, None].expand(*first.shape, 1, n), dim=-2)[..., 0, :]
    m = m.to(c.dtype)
    scale = (c.norm(dim=-1) * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1)
    return torch.where(has.any(dim=-1) & (scale > 0), scale, torch.full_like(scale, float("nan")))
