"""The native posevlm scene layout (written by ``posevlm synth``, read by :func:`load_native_scene`).

::

    <scene_dir>/
      scene.json            format "posevlm.scene", schema_version, name, fps, image_hw, convention,
                            world (up axis, units), files, metadata (synthetic: room + objects), provenance
      rgb.mp4               H.264 video, frame i = frame id i
      cameras.npz           frame_ids (S,) int64, timestamps_s (S,), w2c_opencv (S, 4, 4) float64,
                            K_pixels (S, 3, 3) float64, image_hw (S, 2) int64
      depth/{id:06d}.png    uint16 millimetres, 0 = no depth (optional)
      instances/{id:06d}.png uint16 instance id, 0 = room structure (optional)

The scene directory is written under a private temporary name and renamed into place when complete,
so a reader never sees half a scene. Loading a scene with depth runs the pose-direction check
(:mod:`posevlm.scenes.pose_check`), which warns if ``cameras.npz`` looks like camera-to-world.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from posevlm.errors import InputFileError, SchemaVersionError
from posevlm.geometry import Cameras
from posevlm.provenance import provenance as _provenance
from posevlm.scenes.frames import ImageFolderStore
from posevlm.scenes.pose_check import check_pose_direction
from posevlm.scenes.scene import Scene
from posevlm.scenes.video import VideoStore, VideoWriter

__all__ = [
    "SCENE_FORMAT",
    "SCENE_SCHEMA_VERSION",
    "SCENE_JSON",
    "RGB_VIDEO",
    "CAMERAS_NPZ",
    "DEPTH_DIR",
    "INSTANCES_DIR",
    "write_native_scene",
    "load_native_scene",
    "detect_native_scene",
]

SCENE_FORMAT = "posevlm.scene"
SCENE_SCHEMA_VERSION = 1
SCENE_JSON = "scene.json"
RGB_VIDEO = "rgb.mp4"
CAMERAS_NPZ = "cameras.npz"
DEPTH_DIR = "depth"
INSTANCES_DIR = "instances"
DEPTH_SCALE = 1000.0  # uint16 millimetres


def _frame_file(folder: Path, frame_id: int) -> Path:
    return folder / f"{frame_id:06d}.png"


def write_native_scene(
    out_dir: str | Path,
    *,
    name: str,
    cameras: Cameras,
    fps: float,
    frames: Iterable[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
    metadata: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    world: dict[str, Any] | None = None,
) -> Path:
    """Stream frames to ``out_dir`` in the native layout, in one pass and atomically.

    ``frames`` yields ``(rgb, depth, instance)`` per frame: (H, W, 3) uint8, (H, W) float metres or
    None, (H, W) ints < 65536 or None (None on the first frame means the scene has no such data).
    Frame ids are 0..S-1 and timestamps ``id / fps``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise InputFileError(f"output scene {out_dir} already exists; remove it or choose another --out", path=out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    has = {DEPTH_DIR: False, INSTANCES_DIR: False}
    try:
        s = len(cameras)
        with VideoWriter(tmp / RGB_VIDEO, fps) as video:
            for i, (rgb, depth, instance) in enumerate(frames):
                video.write(rgb)
                for folder, arr in ((DEPTH_DIR, depth), (INSTANCES_DIR, instance)):
                    if arr is None:
                        continue
                    if i == 0:
                        (tmp / folder).mkdir()
                        has[folder] = True
                    if folder == DEPTH_DIR:
                        arr = np.clip(np.round(np.asarray(arr) * DEPTH_SCALE), 0, 65535)
                    Image.fromarray(np.asarray(arr).astype(np.uint16)).save(_frame_file(tmp / folder, i), compress_level=1)
            if video.count != s:
                raise ValueError(f"{video.count} frames for {s} cameras")
        frame_ids = np.arange(s, dtype=np.int64)
        np.savez(tmp / CAMERAS_NPZ, frame_ids=frame_ids, timestamps_s=frame_ids / float(fps), **cameras.to_numpy())
        h, w = (int(v) for v in cameras.image_hw[0])
        doc = {
            "format": SCENE_FORMAT,
            "schema_version": SCENE_SCHEMA_VERSION,
            "name": name,
            "num_frames": s,
            "fps": float(fps),
            "image_hw": [h, w],
            "convention": "w2c_opencv",
            "world": world or {"up": "+z", "units": "m"},
            "files": {
                "rgb": RGB_VIDEO,
                "cameras": CAMERAS_NPZ,
                "depth": f"{DEPTH_DIR}/{{frame_id:06d}}.png (uint16 mm)" if has[DEPTH_DIR] else None,
                "instances": f"{INSTANCES_DIR}/{{frame_id:06d}}.png (uint16)" if has[INSTANCES_DIR] else None,
            },
            "metadata": metadata or {},
            "provenance": _provenance(**(provenance or {})),
        }
        (tmp / SCENE_JSON).write_text(json.dumps(doc, indent=1))
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def detect_native_scene(path: str | Path) -> bool:
    path = Path(path)
    path = path.parent if path.name == SCENE_JSON else path
    return (path / SCENE_JSON).is_file() and (path / CAMERAS_NPZ).is_file()


def _folder_store(folder: Path, frame_ids: np.ndarray, kind: str) -> ImageFolderStore | None:
    if not folder.is_dir():
        return None
    paths = {int(i): _frame_file(folder, int(i)) for i in frame_ids}
    missing = [i for i, p in paths.items() if not p.is_file()]
    if missing:
        raise InputFileError(f"{folder}: missing {len(missing)} frame file(s), e.g. {paths[missing[0]].name}", path=folder)
    return ImageFolderStore(paths, kind, depth_scale=DEPTH_SCALE)  # type: ignore[arg-type]


_CAMERA_KEYS = ("frame_ids", "w2c_opencv", "K_pixels", "image_hw")


def load_native_scene(path: str | Path) -> Scene:
    """Load a scene directory in the native layout (see module docstring)."""
    path = Path(path)
    path = path.parent if path.name == SCENE_JSON else path
    meta_file = path / SCENE_JSON
    if not meta_file.is_file():
        raise InputFileError(f"{path} is not a posevlm scene: {SCENE_JSON} is missing", path=path)
    try:
        doc = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{meta_file} is not valid JSON ({exc}); regenerate the scene", path=meta_file) from exc
    if doc.get("format") != SCENE_FORMAT:
        raise InputFileError(f"{meta_file}: format is {doc.get('format')!r}, expected {SCENE_FORMAT!r}", path=meta_file)
    if int(doc.get("schema_version", 0)) > SCENE_SCHEMA_VERSION:
        raise SchemaVersionError(f"{meta_file}: schema_version {doc['schema_version']} is newer than this posevlm reads")
    cam_file = path / CAMERAS_NPZ
    try:
        cams = dict(np.load(cam_file, allow_pickle=False))
    except FileNotFoundError:
        raise InputFileError(f"{cam_file} is missing: the scene is incomplete; regenerate it (posevlm synth) or "
                             "write it with posevlm.scenes.write_native_scene", path=cam_file) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{cam_file} is not a readable npz ({type(exc).__name__}: {exc}): the file is damaged; "
                             "regenerate the scene (posevlm synth) or write it again with posevlm.scenes.write_native_scene",
                             path=cam_file) from None
    missing = [k for k in _CAMERA_KEYS if k not in cams]
    if missing:
        raise InputFileError(f"{cam_file} lacks {', '.join(missing)} (has {', '.join(sorted(cams)) or 'nothing'}); "
                             f"it must hold {', '.join(_CAMERA_KEYS)}: write it with posevlm.scenes.write_native_scene",
                             path=cam_file)
    frame_ids = cams["frame_ids"].astype(np.int64)
    cameras = Cameras.create(cams["w2c_opencv"], cams["K_pixels"], cams["image_hw"], source=str(cam_file))
    rgb = VideoStore(path / RGB_VIDEO)
    if rgb.frame_ids.size != frame_ids.size:
        raise InputFileError(
            f"{path / RGB_VIDEO} has {rgb.frame_ids.size} frames but {cam_file} has {frame_ids.size} cameras; "
            "the scene is incomplete, regenerate it",
            path=path,
        )
    scene = Scene(
        name=str(doc.get("name", path.name)),
        frame_ids=frame_ids,
        rgb=rgb,
        cameras=cameras,
        fps=float(doc["fps"]) if doc.get("fps") else None,
        timestamps_s=cams.get("timestamps_s"),
        depth=_folder_store(path / DEPTH_DIR, frame_ids, "depth"),
        instances=_folder_store(path / INSTANCES_DIR, frame_ids, "instance"),
        metadata=doc.get("metadata", {}),
        provenance={"loader": "native", "source": str(path), "source_convention": "w2c_opencv",
                    "conversions": [], "written_by": doc.get("provenance", {})},
    )
    check_pose_direction(scene, pose_file=cam_file, fix=(
        f"{CAMERAS_NPZ} must hold world-to-camera poses (w2c_opencv); if it holds camera-to-world, replace "
        "w2c_opencv with posevlm.geometry.c2w_to_w2c(...) of it and save the file again."))
    return scene
