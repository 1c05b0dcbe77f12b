"""Is a scan's pose file stored in the direction its loader assumes? A cheap check for scans with depth.

Loaders with a pose file and depth (ScanNet, ARKitScenes, the native layout) call
:func:`check_pose_direction` once the ``Scene`` is built (geometry predictions with depth maps call
:func:`check_pose_direction_maps`): it reads ``POSE_CHECK_FRAMES`` depth maps spread
over the scan, back-projects about ``POSE_CHECK_POINTS`` strided pixels of each and scores how well they
agree across frames with the poses as given and inverted
(:func:`posevlm.geometry.depth.pose_direction_evidence`). When the inverted reading is clearly the
consistent one it warns ``ConventionWarning`` naming the pose file and the loader option that fixes it.
The record is stored in ``scene.provenance["pose_direction_check"]`` (``posevlm info`` prints it).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posevlm.errors import ConventionWarning
from posevlm.geometry.depth import pose_direction_evidence
from posevlm.geometry.intrinsics import intrinsics_resize
from posevlm.scenes.scene import Scene

__all__ = ["check_pose_direction", "check_pose_direction_maps", "POSE_CHECK_FRAMES", "POSE_CHECK_POINTS"]

#: Depth frames read by the check (evenly spread over the frames that have depth).
POSE_CHECK_FRAMES = 6
#: Back-projected points per frame (the pixel stride is chosen to give about this many).
POSE_CHECK_POINTS = 1000


def check_pose_direction(scene: Scene, *, pose_file: str | Path, fix: str,
                         num_frames: int = POSE_CHECK_FRAMES) -> dict[str, Any] | None:
    """Score the scene's poses as given and inverted on a few depth frames; warn if they look inverted.

    Args:
        scene: a scene with ``cameras`` and ``depth`` (otherwise nothing is checked). Depth intrinsics
            are ``metadata["depth_K_pixels"]`` when present, else the colour K rescaled to the depth size.
        pose_file: the file the poses came from, named in the warning.
        fix: what to do if the poses are inverted (the loader option), appended to the warning.
        num_frames: depth frames to read, evenly spread over the frames that have depth.
    Returns:
        JSON-serialisable record (agreement both ways, points compared, frame ids used,
        ``inverted_likely``), also stored in ``scene.provenance["pose_direction_check"]``; None without
        cameras or with depth for fewer than two frames.
    """
    if scene.cameras is None or scene.depth is None:
        return None
    ids = np.intersect1d(scene.frame_ids, scene.depth.frame_ids)
    if ids.size < 2:
        return None
    ids = ids[_spread(ids.size, num_frames)]
    depth = scene.depth.read_many(ids)  # (N, H, W) metres
    cams = scene.cameras_for(ids)
    K_depth = scene.metadata.get("depth_K_pixels") if isinstance(scene.metadata, dict) else None
    if K_depth is not None:
        K = np.broadcast_to(np.asarray(K_depth, dtype=np.float64), (ids.size, 3, 3))
    else:
        K = intrinsics_resize(cams.K_pixels, cams.image_hw, depth.shape[1:]).numpy()
    record = _check(depth, K, cams.w2c_opencv.numpy(), ids, pose_file, fix)
    scene.provenance["pose_direction_check"] = record
    return record


def check_pose_direction_maps(depth: np.ndarray, K_pixels: np.ndarray, w2c_opencv: np.ndarray,
                              image_hw: tuple[int, int], frame_ids: np.ndarray, *, pose_file: str | Path,
                              fix: str, num_frames: int = POSE_CHECK_FRAMES) -> dict[str, Any] | None:
    """The same check on depth maps held in memory (geometry predictions).

    ``depth`` (S, h, w) metres, ``K_pixels`` (S, 3, 3) for ``image_hw`` (rescaled to (h, w) here),
    ``w2c_opencv`` (S, 4, 4), ``frame_ids`` (S,). Returns the record, or None for fewer than two frames.
    """
    if len(depth) < 2:
        return None
    pick = _spread(len(depth), num_frames)
    K = intrinsics_resize(torch.as_tensor(np.asarray(K_pixels)[pick], dtype=torch.float64), image_hw,
                          depth.shape[1:]).numpy()
    return _check(np.asarray(depth)[pick], K, np.asarray(w2c_opencv)[pick], np.asarray(frame_ids)[pick],
                  pose_file, fix)


def _spread(n: int, k: int) -> np.ndarray:
    """Up to ``k`` positions evenly spread over 0..n-1."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _check(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, frame_ids: np.ndarray, pose_file: str | Path,
           fix: str) -> dict[str, Any]:
    h, w = depth.shape[1:]
    stride = max(1, int(math.sqrt(h * w / POSE_CHECK_POINTS)))
    evidence = pose_direction_evidence(depth, K, w2c, pixel_stride=stride)
    if evidence.inverted_likely:
        warnings.warn(
            f"{pose_file}: the poses look inverted (camera-to-world read as world-to-camera, or the reverse): "
            f"the depth maps of {evidence.num_frames} frames agree across views for "
            f"{evidence.agreement_inverted:.0%} of {evidence.compared_inverted} points with the poses inverted, "
            f"but only {evidence.agreement_as_given:.0%} of {evidence.compared_as_given} as given. {fix}",
            ConventionWarning,
            stacklevel=4,
        )
    return {**evidence.to_dict(), "frame_ids": [int(i) for i in frame_ids], "pose_file": str(pose_file)}
