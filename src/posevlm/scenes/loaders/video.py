"""Video files and frame folders, with an optional pose file.

Pose files:
- a geometry-predictions npz (:mod:`posevlm.scenes.predictions`): the scene keeps only the frames
  the predictions cover, cameras converted to the original frame size when the file records
  its preprocessing;
- a text file with one pose per line (16 numbers row-major 4x4, or 12 numbers 3x4), one line per
  frame, with the convention stated by the caller (``w2c_opencv``, ``c2w_opencv``, ``c2w_opengl``)
  and intrinsics given as ``(fx, fy, cx, cy)`` in pixels of the frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from posevlm.errors import ConfigError, InputFileError
from posevlm.geometry import Cameras, K_from_params
from posevlm.scenes.frames import FrameStore, ImageFolderStore, image_hw_of
from posevlm.scenes.predictions import PREDICTIONS_FORMAT, load_predictions
from posevlm.scenes.scene import Scene
from posevlm.scenes.video import VideoStore

__all__ = ["load_video", "load_frame_folder", "read_pose_text", "VIDEO_SUFFIXES", "PoseConvention"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
PoseConvention = Literal["w2c_opencv", "c2w_opencv", "c2w_opengl"]
_CONVENTIONS = ("w2c_opencv", "c2w_opencv", "c2w_opengl")


def read_pose_text(path: str | Path) -> np.ndarray:
    """(S, 4, 4) float64 from a text file of 16 or 12 numbers per non-empty, non-# line."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        rows = [np.array(ln.replace(",", " ").split(), dtype=np.float64) for ln in lines]
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot parse pose file {path} ({exc}); expected numbers only", path=path) from exc
    widths = {r.size for r in rows}
    if not rows or not widths <= {12, 16} or len(widths) != 1:
        raise InputFileError(
            f"pose file {path}: every line must hold 16 (4x4) or 12 (3x4) numbers; found widths {sorted(widths)}",
            path=path,
        )
    m = np.stack(rows).reshape(len(rows), -1, 4)
    if m.shape[1] == 3:
        m = np.concatenate([m, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(m), 1, 1))], axis=1)
    return m


def _cameras_from_pose_file(
    pose_file: Path,
    store: FrameStore,
    image_hw: tuple[int, int],
    convention: PoseConvention | None,
    intrinsics: Sequence[float] | None,
    on_non_rigid: str,
) -> tuple[np.ndarray, Cameras, dict]:
    if not pose_file.is_file():
        raise InputFileError(f"pose file {pose_file} does not exist", path=pose_file)
    if _is_predictions(pose_file):
        pred = load_predictions(pose_file)
        missing = np.setdiff1d(pred.frame_ids, store.frame_ids)
        if missing.size:
            raise InputFileError(
                f"{pose_file} has poses for frame ids {missing[:8].tolist()} that the video/folder lacks", path=pose_file
            )
        cams = pred.cameras_in_source_frame() if pred.source_image_hw is not None else pred.cameras
        info = {"pose_source": "predictions", "pose_file": str(pose_file), "prediction_meta": pred.meta,
                "cameras_image": "source" if pred.source_image_hw is not None else "model_input"}
        return pred.frame_ids, cams, info
    if convention not in _CONVENTIONS:
        raise ConfigError(
            f"text pose file {pose_file} needs its convention: pass pose_convention= one of {', '.join(_CONVENTIONS)}",
            field="pose_convention",
            value=convention,
        )
    if intrinsics is None or len(intrinsics) != 4:
        raise ConfigError(
            f"poses from {pose_file} need intrinsics: pass intrinsics=(fx, fy, cx, cy) in pixels of the "
            f"{image_hw[1]}x{image_hw[0]} frames",
            field="intrinsics",
            value=intrinsics,
        )
    poses = read_pose_text(pose_file)
    if len(poses) != store.frame_ids.size:
        raise InputFileError(
            f"pose file {pose_file} has {len(poses)} poses but the frames number {store.frame_ids.size}; "
            "give one pose per frame, in frame order",
            path=pose_file,
        )
    K = K_from_params(*intrinsics)
    kw = dict(source=str(pose_file), on_invalid=on_non_rigid)
    build = {"w2c_opencv": Cameras.create, "c2w_opencv": Cameras.from_c2w_opencv, "c2w_opengl": Cameras.from_c2w_opengl}
    cams = build[convention](torch.from_numpy(poses), K, image_hw, **kw)
    return store.frame_ids, cams, {"pose_source": "text", "pose_file": str(pose_file), "source_convention": convention}


def _is_predictions(path: Path) -> bool:
    if path.suffix != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return "format" in data and str(data["format"]) == PREDICTIONS_FORMAT
    except (OSError, ValueError):
        return False


def _build(
    name: str,
    store: FrameStore,
    image_hw: tuple[int, int],
    fps: float | None,
    poses: str | Path | None,
    pose_convention: PoseConvention | None,
    intrinsics: Sequence[float] | None,
    on_non_rigid: str,
    provenance: dict,
) -> Scene:
    frame_ids, cameras = store.frame_ids, None
    if poses is not None:
        frame_ids, cameras, info = _cameras_from_pose_file(
            Path(poses), store, image_hw, pose_convention, intrinsics, on_non_rigid
        )
        provenance.update(info)
    timestamps = frame_ids / fps if fps else None
    return Scene(name=name, frame_ids=frame_ids, rgb=store, cameras=cameras, fps=fps, timestamps_s=timestamps,
                 provenance=provenance)


def load_video(
    path: str | Path,
    *,
    poses: str | Path | None = None,
    pose_convention: PoseConvention | None = None,
    intrinsics: Sequence[float] | None = None,
    name: str | None = None,
    on_non_rigid: Literal["error", "reorthonormalize"] = "error",
) -> Scene:
    """A video file (decoded lazily with PyAV), optionally posed. Frame ids are decode indices."""
    path = Path(path)
    store = VideoStore(path)
    info = store.info()
    return _build(name or path.stem, store, (info["height"], info["width"]), info["fps"], poses, pose_convention,
                  intrinsics, on_non_rigid, {"loader": "video", "source": str(path)})


def load_frame_folder(
    path: str | Path,
    *,
    fps: float | None = None,
    poses: str | Path | None = None,
    pose_convention: PoseConvention | None = None,
    intrinsics: Sequence[float] | None = None,
    name: str | None = None,
    on_non_rigid: Literal["error", "reorthonormalize"] = "error",
) -> Scene:
    """A folder of frame images ordered by the number in each name (frame_1008 before frame_10070)."""
    path = Path(path)
    store = ImageFolderStore.from_folder(path, "rgb")
    return _build(name or path.name, store, image_hw_of(store.path(int(store.frame_ids[0]))), fps, poses, pose_convention,
                  intrinsics, on_non_rigid, {"loader": "frame_folder", "source": str(path)})
