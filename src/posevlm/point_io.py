"""Thin input module: read a video's point maps (VLM²'s coordinate injection) from where they live, in the first
listed frame's world frame, as :class:`PointInputs`.

Sources, each for the frames in the order they are given to the processor (the first one defines the world):

* a scene with depth and cameras (ground-truth scans, synthetic scenes): :func:`from_scene`;
* a geometry-predictions npz (VGGT / Depth-Anything-3 / SLAM): its ``world_points``, else its ``depth`` with its
  cameras: :func:`from_predictions`.

File and frame reading happens here and in the readers it calls (``posevlm.scenes``); the geometry is
:mod:`posevlm.memory.points` (tensors only). :func:`model_kwargs` turns one :class:`PointInputs` per video into the
``point_maps`` / ``point_valid`` keyword arguments of :class:`posevlm.models.vlm2.VLM2`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import InputFileError
from posevlm.memory.points import point_maps_from_depth, points_in_first_frame
from posevlm.scenes.predictions import load_predictions

__all__ = ["PointInputs", "from_scene", "from_predictions", "model_kwargs"]


@dataclass(frozen=True)
class PointInputs:
    """One video's point maps.

    Fields:
        frame_ids: (S,) int64 the frames, in processor order.
        point_maps: (S, H, W, 3) float32 points in the first frame's camera coordinates (OpenCV axes), zero where
            invalid. point_valid: (S, H, W) bool.
        scale: ``metric`` (scans) or the source's (``normalized`` for VGGT predictions).
        source: where they came from (for error messages and provenance).
    """

    frame_ids: np.ndarray
    point_maps: Tensor
    point_valid: Tensor
    scale: str
    source: str


def _positions(ids: np.ndarray, frame_ids: Sequence[int] | None, where: str, path) -> np.ndarray:
    if frame_ids is None:
        return np.arange(ids.size)
    order = np.argsort(ids, kind="stable")
    want = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    found = np.searchsorted(ids[order], want).clip(max=max(ids.size - 1, 0))
    missing = want[ids[order][found] != want] if ids.size else want
    if missing.size:
        raise InputFileError(f"{where} has no frame id(s) {missing[:8].tolist()}; run the geometry model on these "
                             "frames or pick frames it covers", path=path)
    return order[found]


def from_scene(scene, frame_ids: Sequence[int]) -> PointInputs:
    """Point maps of ``frame_ids`` (in that order) of a ``posevlm.scenes.Scene`` from its depth and cameras
    (metric; the depth's own resolution, intrinsics resized from the colour image)."""
    if scene.depth is None or scene.cameras is None:
        what = "depth" if scene.depth is None else "cameras"
        raise InputFileError(f"scene {scene.name!r} has no {what}; point maps need depth + cameras (or use VGGT's "
                             "point head: point_source='vggt')", path=getattr(scene, "root", scene.name))
    ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    cams = scene.cameras_for(ids)
    depth = torch.from_numpy(np.asarray(scene.depth.read_many(ids), dtype=np.float32))
    points, valid = point_maps_from_depth(depth, cams.K_pixels, cams.w2c_opencv, image_hw=cams.image_hw)
    return PointInputs(ids, points.float(), valid, "metric", f"scene {scene.name}")


def from_predictions(predictions, frame_ids: Sequence[int] | None = None) -> PointInputs:
    """Point maps of a geometry-predictions npz (path or ``GeometryPredictions``) for ``frame_ids`` (default: every
    predicted frame): its ``world_points`` (non-finite points invalid) moved into the first listed frame's camera
    frame, else its ``depth`` back-projected with its cameras (intrinsics of ``image_hw`` resized to the maps)."""
    preds = load_predictions(predictions) if isinstance(predictions, (str, Path)) else predictions
    where = f"predictions {preds.path or ''}".strip()
    pos = _positions(np.asarray(preds.frame_ids, dtype=np.int64), frame_ids, where, preds.path)
    cams = preds.cameras
    w2c = cams.w2c_opencv[torch.as_tensor(pos)]
    scale = str(preds.meta.get("scale", "unknown"))
    if "world_points" in preds.maps:
        world = torch.from_numpy(np.asarray(preds.maps["world_points"][pos], dtype=np.float64))
        valid = torch.isfinite(world).all(dim=-1)
        points = points_in_first_frame(torch.where(valid[..., None], world, 0.0), w2c)
        points = torch.where(valid[..., None], points, 0.0)
    elif "depth" in preds.maps:
        depth = np.asarray(preds.maps["depth"][pos], dtype=np.float32)
        depth = depth[..., 0] if depth.ndim == 4 else depth
        points, valid = point_maps_from_depth(torch.from_numpy(depth), cams.K_pixels[torch.as_tensor(pos)], w2c,
                                              image_hw=cams.image_hw[torch.as_tensor(pos)])
    else:
        raise InputFileError(f"{where} holds neither world_points nor depth; save point maps or depth with the "
                             "cameras (posevlm.scenes.save_predictions), or use VGGT's point head", path=preds.path)
    return PointInputs(np.asarray(preds.frame_ids, dtype=np.int64)[pos], points.float(), valid, scale, where)


def model_kwargs(points: Sequence[PointInputs]) -> dict[str, list[Tensor]]:
    """``point_maps`` / ``point_valid`` for :class:`posevlm.models.vlm2.VLM2` ``forward`` / ``generate``: one
    :class:`PointInputs` per video, in ``video_grid_thw`` order."""
    return {"point_maps": [p.point_maps for p in points], "point_valid": [p.point_valid for p in points]}
