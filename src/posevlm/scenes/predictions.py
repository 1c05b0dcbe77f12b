"""Geometry-predictions files: one compact npz per scan holding per-frame cameras (and optionally
point maps) from VGGT, Depth-Anything-3, SLAM or any other source, stored once and reused.

Format ``posevlm.geometry_predictions`` v1 (numpy ``.npz``; documented in docs/formats.md):

===================== ============== =====================================================================
key                   shape / dtype  meaning
===================== ============== =====================================================================
format                () str         ``"posevlm.geometry_predictions"``
schema_version        () int64       1
frame_ids             (S,) int64     frame ids in the source video / scene, ascending
image_hw              (2,) int64     (H, W) of the image the predictions refer to (the model input)
pose_encoding         (S, 9)         VGGT ``absT_quaR_FoV`` (w2c translation, quat_xyzw, fov_h, fov_w) --
w2c_opencv            (S, 4, 4)      -- or explicit world-to-camera (OpenCV axes) ...
K_pixels              (S, 3, 3)      ... with intrinsics in pixels of ``image_hw``
world_points          (S, h, w, 3)   optional point maps in the cameras' world frame
world_points_conf     (S, h, w)      optional confidence of ``world_points``
depth                 (S, h, w)      optional depth (z along the optical axis)
depth_conf            (S, h, w)      optional
source_image_hw       (2,) int64     optional (H, W) of the original frames
preprocess            () str         optional JSON list of ops mapping original -> model input, applied
                                     in order: {"op": "rotate90", "k": int} (counter-clockwise quarter
                                     turns), {"op": "resize", "hw": [H, W]}, {"op": "crop", "top": int,
                                     "left": int, "hw": [H, W]}
meta                  () str         JSON: model id, world frame, scale ("metric" or "normalized"), ...
===================== ============== =====================================================================

Loading a file with ``depth`` runs the pose-direction check (:mod:`posevlm.scenes.pose_check`), which warns
if the cameras look like camera-to-world.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from posevlm.errors import InputFileError, SchemaVersionError
from posevlm.geometry import Cameras, intrinsics_resize, intrinsics_rotate90
from posevlm.geometry.pose_encoding import pose_encoding_to_extrinsics_intrinsics
from posevlm.scenes.pose_check import check_pose_direction_maps
from posevlm.scenes.scene import PointMaps

__all__ = ["PREDICTIONS_FORMAT", "PREDICTIONS_SCHEMA_VERSION", "GeometryPredictions", "save_predictions", "load_predictions"]

PREDICTIONS_FORMAT = "posevlm.geometry_predictions"
PREDICTIONS_SCHEMA_VERSION = 1
_OPTIONAL_MAPS = ("world_points", "world_points_conf", "depth", "depth_conf")


@dataclass(frozen=True)
class GeometryPredictions:
    """Loaded predictions. ``cameras`` refer to the model-input image (``cameras.image_hw``)."""

    frame_ids: np.ndarray
    cameras: Cameras
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    source_image_hw: tuple[int, int] | None = None
    preprocess: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def point_maps(self) -> PointMaps | None:
        if "world_points" not in self.maps:
            return None
        return PointMaps(self.frame_ids, self.maps["world_points"], self.maps.get("world_points_conf"))

    def cameras_in_source_frame(self) -> Cameras:
        """Cameras re-expressed for the original frames by undoing ``preprocess`` (crop, resize, rotate)."""
        if self.source_image_hw is None:
            raise InputFileError(
                "predictions carry no source_image_hw; save them with source_image_hw=(H, W) of the original frames",
                path=self.path,
            )
        w2c, K, hw = self.cameras.w2c_opencv, self.cameras.K_pixels, self.cameras.image_hw[0]
        sizes = _sizes_before_each_op(self.source_image_hw, self.preprocess)
        for op, before_hw in zip(reversed(self.preprocess), reversed(sizes)):
            if op["op"] == "crop":
                K = K.clone()
                K[:, 0, 2] += op["left"]
                K[:, 1, 2] += op["top"]
            elif op["op"] == "resize":
                K = intrinsics_resize(K, hw, before_hw)
            elif op["op"] == "rotate90":
                K, _, rot = intrinsics_rotate90(K, hw, -int(op["k"]))
                lift = torch.eye(4, dtype=w2c.dtype)
                lift[:3, :3] = rot
                w2c = lift @ w2c
            hw = torch.as_tensor(before_hw)
        return Cameras.create(w2c, K, tuple(self.source_image_hw), source=str(self.path or "predictions"))


def _sizes_before_each_op(source_hw: Sequence[int], ops: list[dict[str, Any]]) -> list[tuple[int, int]]:
    sizes, hw = [], (int(source_hw[0]), int(source_hw[1]))
    for op in ops:
        sizes.append(hw)
        kind = op.get("op")
        if kind == "rotate90":
            hw = hw if int(op["k"]) % 2 == 0 else (hw[1], hw[0])
        elif kind in ("resize", "crop"):
            hw = (int(op["hw"][0]), int(op["hw"][1]))
        else:
            raise InputFileError(f"unknown preprocess op {op!r}; expected rotate90, resize or crop")
    return sizes


def save_predictions(
    path: str | Path,
    *,
    frame_ids: Sequence[int],
    image_hw: Sequence[int],
    pose_encoding: np.ndarray | None = None,
    w2c_opencv: np.ndarray | None = None,
    K_pixels: np.ndarray | None = None,
    source_image_hw: Sequence[int] | None = None,
    preprocess: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    **maps: np.ndarray,
) -> Path:
    """Write a predictions npz (compressed). Give ``pose_encoding`` or ``w2c_opencv`` + ``K_pixels``."""
    unknown = set(maps) - set(_OPTIONAL_MAPS)
    if unknown:
        raise ValueError(f"unknown map keys {sorted(unknown)}; allowed: {', '.join(_OPTIONAL_MAPS)}")
    if (pose_encoding is None) == (w2c_opencv is None):
        raise ValueError("give exactly one of pose_encoding or w2c_opencv (+ K_pixels)")
    if w2c_opencv is not None and K_pixels is None:
        raise ValueError("w2c_opencv needs K_pixels (intrinsics in pixels of image_hw)")
    arrays: dict[str, Any] = {
        "format": np.array(PREDICTIONS_FORMAT),
        "schema_version": np.array(PREDICTIONS_SCHEMA_VERSION, dtype=np.int64),
        "frame_ids": np.asarray(frame_ids, dtype=np.int64),
        "image_hw": np.asarray(image_hw, dtype=np.int64),
        "meta": np.array(json.dumps(meta or {})),
        "preprocess": np.array(json.dumps(preprocess or [])),
    }
    if pose_encoding is not None:
        arrays["pose_encoding"] = np.asarray(pose_encoding)
    else:
        arrays["w2c_opencv"] = np.asarray(w2c_opencv)
        arrays["K_pixels"] = np.asarray(K_pixels)
    if source_image_hw is not None:
        arrays["source_image_hw"] = np.asarray(source_image_hw, dtype=np.int64)
    arrays.update({k: np.asarray(v) for k, v in maps.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_predictions(path: str | Path, *, rigid_tol: float = 1e-3) -> GeometryPredictions:
    """Read and validate a predictions npz; every problem names the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"predictions file {path} does not exist", path=path)
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(f"predictions file {path} is not a readable npz ({exc})", path=path) from exc
    fmt = str(data.get("format", ""))
    if fmt != PREDICTIONS_FORMAT:
        raise InputFileError(
            f"{path} is not a posevlm predictions file (format={fmt!r}); write it with "
            "posevlm.scenes.save_predictions()",
            path=path,
        )
    version = int(data.get("schema_version", -1))
    if version > PREDICTIONS_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: predictions schema_version {version} is newer than {PREDICTIONS_SCHEMA_VERSION}; upgrade posevlm"
        )
    for key in ("frame_ids", "image_hw"):
        if key not in data:
            raise InputFileError(f"{path} lacks required key {key!r}", path=path)
    frame_ids = data["frame_ids"].astype(np.int64)
    image_hw = tuple(int(v) for v in data["image_hw"])
    s = frame_ids.shape[0]
    if "pose_encoding" in data:
        enc = torch.as_tensor(data["pose_encoding"]).to(torch.float64)
        if enc.shape != (s, 9):
            raise InputFileError(f"{path}: pose_encoding has shape {tuple(enc.shape)}, expected ({s}, 9)", path=path)
        w2c, K = pose_encoding_to_extrinsics_intrinsics(enc, image_hw)
    elif "w2c_opencv" in data and "K_pixels" in data:
        w2c, K = data["w2c_opencv"], data["K_pixels"]
        if w2c.shape[0] != s or K.shape[0] != s:
            raise InputFileError(
                f"{path}: {w2c.shape[0]} poses / {K.shape[0]} intrinsics for {s} frame ids; they must match",
                path=path,
            )
    else:
        raise InputFileError(f"{path} holds neither pose_encoding nor w2c_opencv + K_pixels", path=path)
    cameras = Cameras.create(w2c, K, image_hw, source=str(path), rigid_tol=rigid_tol, on_invalid="reorthonormalize")
    maps = {k: data[k] for k in _OPTIONAL_MAPS if k in data}
    for key, arr in maps.items():
        if arr.shape[0] != s:
            raise InputFileError(f"{path}: {key} has {arr.shape[0]} frames, expected {s}", path=path)
    try:
        meta = json.loads(str(data.get("meta", "{}")))
        preprocess = json.loads(str(data.get("preprocess", "[]")))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: meta/preprocess is not valid JSON ({exc})", path=path) from exc
    source_hw = tuple(int(v) for v in data["source_image_hw"]) if "source_image_hw" in data else None
    depth = maps.get("depth")
    depth = depth[..., 0] if depth is not None and depth.ndim == 4 and depth.shape[-1] == 1 else depth
    if depth is not None and depth.ndim == 3:  # the pose-direction check (posevlm.scenes.pose_check)
        check_pose_direction_maps(depth.astype(np.float32), cameras.K_pixels.numpy(),
                                  cameras.w2c_opencv.numpy(), image_hw, frame_ids, pose_file=path, fix=(
            "Predictions store world-to-camera poses (w2c_opencv); if these are camera-to-world, save them "
            "again with w2c_opencv=posevlm.geometry.c2w_to_w2c(...)."))
    return GeometryPredictions(frame_ids, cameras, maps, source_hw, preprocess, meta, path)
