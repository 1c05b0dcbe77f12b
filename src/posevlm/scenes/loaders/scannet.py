"""ScanNet scenes exported by SensReader -> ``Scene`` with ``w2c_opencv`` cameras.

On-disk layout of one scene folder (named like ``scene0000_00``; that name becomes ``Scene.name``)::

    color/<n>.jpg                 colour frames (some exports write <n>.png); n = capture frame number,
                                  not zero padded, so frames are ordered numerically (1008 before 10070)
    depth/<n>.png                 uint16 millimetres, 0 = invalid (usually 640x480)
    pose/<n>.txt                  4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward),
                                  metres, whitespace separated; tracking failures are written as all -inf
    intrinsic/intrinsic_color.txt 4x4 (top-left 3x3 = K) for the colour images
    intrinsic/intrinsic_depth.txt 4x4 for the depth images (kept in ``metadata``)
    intrinsic/extrinsic_color.txt, extrinsic_depth.txt   4x4, identity in ScanNet v2 (kept in ``metadata``)

Conversion: ``w2c_opencv = inverse(c2w_opencv)`` for all frames at once. The colour image size the
intrinsics refer to is read from an actual colour file (the export does not store it). ScanNet does not
store a frame rate: ``fps = 30`` is the capture rate of the Structure sensor, recorded as an assumption in
``provenance``. ``frame_ids`` are the ScanNet frame numbers; ``timestamps_s`` is left None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from posevlm.errors import ConfigError, ConventionError, InputFileError
from posevlm.geometry import Cameras, rotation_rigidity_error
from posevlm.scenes.frames import ImageFolderStore, image_hw_of
from posevlm.scenes.scene import Scene

__all__ = ["load_scannet", "detect_scannet", "SCANNET_FPS"]

#: ScanNet capture rate (frames per second); not stored in the export.
SCANNET_FPS = 30.0


def detect_scannet(path: str | Path) -> bool:
    """True if ``path`` is a ScanNet SensReader scene folder (``color/``, ``pose/`` and ``intrinsic/``)."""
    try:
        root = Path(path)
        return all((root / sub).is_dir() for sub in ("color", "pose", "intrinsic"))
    except OSError:
        return False


def load_scannet(
    path: str | Path,
    *,
    on_invalid_pose: Literal["error", "drop"] = "error",
    rigid_tol: float = 1e-4,
    on_non_rigid: Literal["error", "reorthonormalize"] = "error",
) -> Scene:
    """Load a ScanNet SensReader export as a ``Scene`` in the library convention.

    Args:
        path: the scene folder holding ``color/``, ``depth/``, ``pose/`` and ``intrinsic/``.
        on_invalid_pose: ``"error"`` raises ``InputFileError`` naming pose files with NaN/inf entries
            (ScanNet writes all ``-inf`` when tracking failed); ``"drop"`` skips those frames and records
            their ids in ``provenance["dropped_invalid_pose_frame_ids"]``.
        rigid_tol: tolerance of the rigidity check on each pose (``|R^T R - I|``, ``|det R - 1|``,
            bottom row).
        on_non_rigid: ``"error"`` raises ``ConventionError`` naming the non-rigid pose files;
            ``"reorthonormalize"`` projects their rotations onto SO(3) with a warning.

    Returns:
        Scene with ``frame_ids`` (S,) ScanNet frame numbers, ``cameras`` (``w2c_opencv`` (S, 4, 4),
        ``K_pixels`` (S, 3, 3), ``image_hw`` of the colour images), ``depth`` in metres (if ``depth/``
        exists), ``fps = 30``. ``metadata`` holds ``depth_K_pixels`` (3, 3), ``depth_image_hw`` (2,),
        ``extrinsic_color``/``extrinsic_depth`` (4, 4) when present.

    Raises:
        InputFileError: missing folder or intrinsics, unreadable pose file, pose and colour frames that
            do not match one to one, invalid poses with ``on_invalid_pose="error"``.
        ConventionError: non-rigid poses with ``on_non_rigid="error"``.
        ConfigError: an unknown option value.
    """
    _check_choice("on_invalid_pose", on_invalid_pose, ("error", "drop"))
    _check_choice("on_non_rigid", on_non_rigid, ("error", "reorthonormalize"))
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(
            f"ScanNet scene folder {root} does not exist. Pass the folder SensReader exported "
            "(it holds color/, depth/, pose/ and intrinsic/).",
            path=root,
        )
    rgb_all = ImageFolderStore.from_folder(root / "color", "rgb")
    found_ids = rgb_all.frame_ids
    pose_files = _pose_files(root / "pose", found_ids)
    c2w = np.stack([_read_matrix(pose_files[int(i)], "pose file") for i in found_ids])  # (S, 4, 4)

    finite = np.isfinite(c2w).all(axis=(1, 2))
    invalid_ids = found_ids[~finite]
    if invalid_ids.size and on_invalid_pose == "error":
        names = [f"pose/{pose_files[int(i)].name}" for i in invalid_ids]
        raise InputFileError(
            f"ScanNet scene {root}: {len(names)} pose file(s) contain -inf/NaN (tracking failures): "
            f"{_preview(names)}. Pass on_invalid_pose='drop' to skip those frames (their ids are recorded "
            "in scene.provenance['dropped_invalid_pose_frame_ids']).",
            path=pose_files[int(invalid_ids[0])],
        )
    frame_ids, c2w = found_ids[finite], c2w[finite]
    if frame_ids.size == 0:
        raise InputFileError(
            f"ScanNet scene {root}: every pose in pose/ is invalid (-inf/NaN); nothing to load.",
            path=root / "pose",
        )

    non_rigid = _non_rigid_positions(c2w, rigid_tol)
    if non_rigid.size and on_non_rigid == "error":
        names = [f"pose/{pose_files[int(frame_ids[p])].name}" for p in non_rigid]
        raise ConventionError(
            f"ScanNet scene {root}: pose file(s) {_preview(names)} are not rigid transforms beyond "
            f"rigid_tol={rigid_tol:g} (rotation not orthonormal or bottom row not [0, 0, 0, 1]). Pass "
            "on_non_rigid='reorthonormalize' to project onto SO(3), raise rigid_tol, or re-export the poses."
        )

    intrinsic_dir = root / "intrinsic"
    K_color = _read_matrix(intrinsic_dir / "intrinsic_color.txt", "colour intrinsics")[:3, :3]
    first_color = rgb_all.path(int(frame_ids[0]))
    color_hw = image_hw_of(first_color)
    cameras = Cameras.from_c2w_opencv(
        c2w, K_color, color_hw, source=str(root / "pose"), rigid_tol=rigid_tol, on_invalid=on_non_rigid
    )
    rgb = ImageFolderStore({int(i): rgb_all.path(int(i)) for i in frame_ids}, "rgb")

    metadata: dict = {}
    depth = None
    depth_dir = root / "depth"
    if depth_dir.is_dir():
        depth_all = ImageFolderStore.from_folder(depth_dir, "depth", depth_scale=1000.0)
        missing = np.setdiff1d(frame_ids, depth_all.frame_ids)
        if missing.size:
            raise InputFileError(
                f"ScanNet scene {root}: depth/ lacks frame(s) {_preview(missing.tolist())} that color/ has. "
                "Re-export depth with SensReader, or move depth/ away to load without depth.",
                path=depth_dir,
            )
        depth_paths = {int(i): depth_all.path(int(i)) for i in frame_ids}
        depth = ImageFolderStore(depth_paths, "depth", depth_scale=1000.0)
        metadata["depth_image_hw"] = np.array(image_hw_of(depth.path(int(frame_ids[0]))), dtype=np.int64)
    for name, key in (("intrinsic_depth", "depth_K_pixels"), ("extrinsic_color", "extrinsic_color"),
                      ("extrinsic_depth", "extrinsic_depth")):
        file = intrinsic_dir / f"{name}.txt"
        if file.is_file():
            m = _read_matrix(file, name.replace("_", " "))
            metadata[key] = m[:3, :3] if key == "depth_K_pixels" else m

    conversions = ["w2c_opencv = inverse(c2w_opencv) (closed form, all frames at once)"]
    if non_rigid.size:
        conversions.append(f"re-orthonormalised rotations of frame ids {frame_ids[non_rigid].tolist()}")
    provenance = {
        "loader": "scannet",
        "source": str(root),
        "source_convention": "c2w_opencv: pose/<n>.txt is 4x4 camera-to-world, OpenCV camera axes, metres",
        "conversions": conversions,
        "assumptions": [
            f"fps = {SCANNET_FPS:g}: ScanNet capture rate (the export does not store it)",
            "pose/*.txt and intrinsic_color.txt describe the colour camera; extrinsic_color.txt not applied",
        ],
        "intrinsics": str(intrinsic_dir / "intrinsic_color.txt"),
        "image_hw_from": str(first_color),
        "depth_scale": 1000.0 if depth is not None else None,
        "on_invalid_pose": on_invalid_pose,
        "dropped_invalid_pose_frame_ids": invalid_ids.tolist(),
        "num_frames_found": int(found_ids.size),
    }
    return Scene(
        name=root.resolve().name,
        frame_ids=frame_ids,
        rgb=rgb,
        cameras=cameras,
        fps=SCANNET_FPS,
        depth=depth,
        metadata=metadata,
        provenance=provenance,
    )


# -- thin file helpers -------------------------------------------------------------------------------
def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        options = ", ".join(map(repr, allowed))
        raise ConfigError(f"{field}={value!r} is not one of {options}.", field=field, value=value)


def _preview(items: list, n: int = 5) -> str:
    return ", ".join(map(str, items[:n])) + (f", ... ({len(items)} in total)" if len(items) > n else "")


def _pose_files(pose_dir: Path, frame_ids: np.ndarray) -> dict[int, Path]:
    """``pose/<n>.txt`` by frame number; every colour frame needs exactly one pose and vice versa."""
    if not pose_dir.is_dir():
        raise InputFileError(
            f"ScanNet pose folder {pose_dir} does not exist; re-export the scene with SensReader.",
            path=pose_dir,
        )
    files = {int(p.stem): p for p in pose_dir.iterdir() if p.suffix == ".txt" and p.stem.isdigit()}
    pose_ids = np.array(sorted(files), dtype=np.int64)
    no_pose = np.setdiff1d(frame_ids, pose_ids)
    no_frame = np.setdiff1d(pose_ids, frame_ids)
    if no_pose.size or no_frame.size:
        raise InputFileError(
            f"ScanNet pose folder {pose_dir} holds {pose_ids.size} pose file(s) for {frame_ids.size} colour "
            f"frame(s): colour frames without pose {_preview(no_pose.tolist()) or 'none'}; poses without a "
            f"colour frame {_preview(no_frame.tolist()) or 'none'}. Re-export the scene so color/ and pose/ "
            "match one to one, or remove the unmatched files.",
            path=pose_dir,
        )
    return files


def _read_matrix(path: Path, what: str) -> np.ndarray:
    """A whitespace-separated 4x4 matrix (ScanNet pose / intrinsic / extrinsic file), float64."""
    try:
        values = np.asarray(path.read_text().split(), dtype=np.float64)
    except FileNotFoundError as exc:
        raise InputFileError(
            f"{what} {path} is missing. Re-export the scene with SensReader (it writes intrinsic/, pose/).",
            path=path,
        ) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(
            f"{what} {path} is not a whitespace-separated 4x4 matrix of numbers ({exc}). "
            "Re-export or fix the file.",
            path=path,
        ) from exc
    if values.size != 16:
        raise InputFileError(
            f"{what} {path} holds {values.size} numbers; expected 16 (a 4x4 matrix). "
            "Re-export or fix the file.",
            path=path,
        )
    return values.reshape(4, 4)


def _non_rigid_positions(m: np.ndarray, rigid_tol: float) -> np.ndarray:
    """Positions of (S, 4, 4) transforms with a non-rotation block or a bottom row other than [0, 0, 0, 1]."""
    err = rotation_rigidity_error(torch.from_numpy(m[:, :3, :3])).numpy()
    bottom = np.abs(m[:, 3, :] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    return np.flatnonzero((err > rigid_tol) | (bottom > rigid_tol))


