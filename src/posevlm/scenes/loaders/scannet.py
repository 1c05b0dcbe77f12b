"""ScanNet scenes exported by SensReader -> ``Scene`` with ``w2c_opencv`` cameras.

On-disk layout of one scene folder (named like ``scene0000_00``; that name becomes ``Scene.name``)::

    color/<n>.jpg                 colour frames (some exports write <n>.png); n = capture frame number,
                                  not zero padded, so frames are ordered numerically (1008 before 10070)
    depth/<n>.png                 uint16 millimetres, 0 = invalid (usually 640x480)
    pose/<n>.txt                  4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward),
                                  metres, whitespace separated; tracking failures are written as all -inf
    intrinsic/intrinsic_color.txt 4x4 (top-left 3x3 = K) of the 1296x968 colour camera
    intrinsic/intrinsic_depth.txt 4x4 for the depth images (kept in ``metadata``)
    intrinsic/extrinsic_color.txt, extrinsic_depth.txt   4x4, identity in ScanNet v2 (kept in ``metadata``)

The ``scannet_frames_25k`` subset uses the same folders with zero-padded names (``color/000100.jpg``) and
keeps ``intrinsics_color.txt`` / ``intrinsics_depth.txt`` in the scene folder instead of ``intrinsic/``;
its colour frames are resized to 640x480 while ``intrinsics_color.txt`` still describes 1296x968.

Conversion: ``w2c_opencv = inverse(c2w_opencv)`` for all frames at once. The colour image size is read
from an actual colour file (the export does not store it). ``intrinsic_color.txt`` describes ScanNet's
1296x968 colour camera; when the colour files have another size the loader decides which size the file
describes by its principal point (the size whose centre is nearer) and, for 1296x968 intrinsics, rescales
them to the files (``intrinsics_resize``: fx, cx by W'/1296, fy, cy by H'/968) if the aspect ratio
matches, recording it in ``metadata["intrinsic_color_image_hw"]`` and ``provenance``; a different
aspect ratio (a crop) is refused. With depth, :func:`posevlm.scenes.pose_check.check_pose_direction`
warns if the pose files look like world-to-camera. ScanNet does not store a frame rate: ``fps = 30`` is
the capture rate of the Structure sensor, recorded as an assumption in ``provenance``. ``frame_ids``
are the ScanNet frame numbers; ``timestamps_s`` is left None.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from posevlm.errors import ConfigError, ConventionError, InputFileError
from posevlm.geometry import Cameras, intrinsics_resize, rotation_rigidity_error
from posevlm.geometry.cameras import validate_intrinsics
from posevlm.scenes.frames import ImageFolderStore, image_hw_of
from posevlm.scenes.pose_check import check_pose_direction
from posevlm.scenes.scene import Scene

__all__ = ["load_scannet", "detect_scannet", "SCANNET_FPS", "SCANNET_COLOR_HW"]

#: ScanNet capture rate (frames per second); not stored in the export.
SCANNET_FPS = 30.0
#: (H, W) of ScanNet's colour camera, the image ``intrinsic_color.txt`` describes.
SCANNET_COLOR_HW = (968, 1296)
_ASPECT_TOL = 0.02  # relative difference of the x and y scale factors accepted as "same aspect ratio"


def detect_scannet(path: str | Path) -> bool:
    """True if ``path`` is a ScanNet scene folder: ``color/`` and ``pose/`` with ``intrinsic/`` (SensReader
    export) or ``intrinsics_color.txt`` (``scannet_frames_25k``)."""
    try:
        root = Path(path)
        has_intrinsics = (root / "intrinsic").is_dir() or (root / "intrinsics_color.txt").is_file()
        return (root / "color").is_dir() and (root / "pose").is_dir() and has_intrinsics
    except OSError:
        return False


def _intrinsics_file(root: Path, name: str) -> Path:
    """``intrinsic/intrinsic_<name>.txt`` (SensReader export), else ``intrinsics_<name>.txt`` (25k subset)."""
    export = root / "intrinsic" / f"intrinsic_{name}.txt"
    subset = root / f"intrinsics_{name}.txt"
    return subset if not export.is_file() and subset.is_file() else export


def load_scannet(
    path: str | Path,
    *,
    on_invalid_pose: Literal["error", "drop"] = "error",
    rigid_tol: float = 1e-4,
    on_non_rigid: Literal["error", "reorthonormalize"] = "error",
    pose_convention: Literal["c2w_opencv", "w2c_opencv"] = "c2w_opencv",
) -> Scene:
    """Load a ScanNet SensReader export as a ``Scene`` in the library convention.

    Args:
        path: the scene folder holding ``color/``, ``depth/``, ``pose/`` and ``intrinsic/`` (or, for
            ``scannet_frames_25k``, ``intrinsics_color.txt``).
        on_invalid_pose: ``"error"`` raises ``InputFileError`` naming pose files with NaN/inf entries
            (ScanNet writes all ``-inf`` when tracking failed); ``"drop"`` skips those frames and records
            their ids in ``provenance["dropped_invalid_pose_frame_ids"]``.
        rigid_tol: tolerance of the rigidity check on each pose (``|R^T R - I|``, ``|det R - 1|``,
            bottom row).
        on_non_rigid: ``"error"`` raises ``ConventionError`` naming the non-rigid pose files;
            ``"reorthonormalize"`` projects their rotations onto SO(3) with a warning.
        pose_convention: what ``pose/<n>.txt`` holds: ``"c2w_opencv"`` (SensReader, the default) or
            ``"w2c_opencv"`` (some third-party exports; the pose check's warning suggests it).

    Returns:
        Scene with ``frame_ids`` (S,) ScanNet frame numbers, ``cameras`` (``w2c_opencv`` (S, 4, 4),
        ``K_pixels`` (S, 3, 3) in pixels of the colour files, ``image_hw`` of the colour images),
        ``depth`` in metres (if ``depth/`` exists), ``fps = 30``. ``metadata`` holds
        ``intrinsic_color_image_hw`` (2,) (the size ``intrinsic_color.txt`` describes), and when present
        ``depth_K_pixels`` (3, 3), ``depth_image_hw`` (2,), ``extrinsic_color``/``extrinsic_depth`` (4, 4).

    Raises:
        InputFileError: missing folder or intrinsics, unreadable pose file, pose and colour frames that
            do not match one to one, invalid poses with ``on_invalid_pose="error"``, 1296x968 colour
            intrinsics with colour files of another aspect ratio.
        ConventionError: non-rigid poses with ``on_non_rigid="error"``; intrinsics that cannot describe
            the colour images (principal point outside them, ...).
        ConfigError: an unknown option value.

    Warns:
        ConventionWarning: implausible intrinsics; pose files that look like the other direction.
    """
    _check_choice("on_invalid_pose", on_invalid_pose, ("error", "drop"))
    _check_choice("on_non_rigid", on_non_rigid, ("error", "reorthonormalize"))
    _check_choice("pose_convention", pose_convention, ("c2w_opencv", "w2c_opencv"))
    root = _scene_folder(path)
    rgb_all = ImageFolderStore.from_folder(root / "color", "rgb")
    poses = _read_poses(root, rgb_all.frame_ids, on_invalid_pose)
    non_rigid = _check_rigidity(root, poses, rigid_tol, on_non_rigid)
    colour = _read_colour_intrinsics(root, rgb_all.path(int(poses.frame_ids[0])))
    build = Cameras.from_c2w_opencv if pose_convention == "c2w_opencv" else Cameras.create
    cameras = build(poses.matrices, colour.K_pixels, colour.image_hw, source=str(root / "pose"),
                    intrinsics_source=str(colour.file), rigid_tol=rigid_tol, on_invalid=on_non_rigid)
    rgb = ImageFolderStore({int(i): rgb_all.path(int(i)) for i in poses.frame_ids}, "rgb")
    depth = _depth_store(root, poses.frame_ids)
    scene = Scene(
        name=root.resolve().name,
        frame_ids=poses.frame_ids,
        rgb=rgb,
        cameras=cameras,
        fps=SCANNET_FPS,
        depth=depth,
        metadata=_metadata(root, colour, depth, poses.frame_ids),
        provenance=_provenance(root, pose_convention, on_invalid_pose, poses, colour, non_rigid, depth),
    )
    _warn_if_inverted(scene, root, pose_convention)
    return scene


# -- steps of load_scannet ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Poses:
    """``pose/<n>.txt`` matched one to one to the colour frames, invalid (-inf/NaN) poses dropped."""

    files: dict[int, Path]  # frame number -> pose file, for every colour frame
    found_ids: np.ndarray  # (N,) every colour frame number, numeric order
    frame_ids: np.ndarray  # (S,) the frames kept
    matrices: np.ndarray  # (S, 4, 4) float64 as written (pose_convention; c2w_opencv for SensReader)
    invalid_ids: np.ndarray  # frame numbers dropped for -inf/NaN poses


@dataclass(frozen=True)
class _ColourIntrinsics:
    """Colour K in pixels of the colour files, the size those files have and the size the K file describes."""

    K_pixels: np.ndarray  # (3, 3)
    image_hw: tuple[int, int]  # of the colour files
    described_hw: tuple[int, int]  # the (H, W) the intrinsics file describes
    file: Path
    image_file: Path  # the colour file the size was read from


def _scene_folder(path: str | Path) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(
            f"ScanNet scene folder {root} does not exist. Pass the folder SensReader exported "
            "(it holds color/, depth/, pose/ and intrinsic/).",
            path=root,
        )
    return root


def _read_poses(root: Path, found_ids: np.ndarray, on_invalid_pose: str) -> _Poses:
    """Every colour frame's pose file, read and stacked; -inf/NaN poses raise or are dropped."""
    pose_files = _pose_files(root / "pose", found_ids)
    poses = np.stack([_read_matrix(pose_files[int(i)], "pose file") for i in found_ids])
    finite = np.isfinite(poses).all(axis=(1, 2))
    invalid_ids = found_ids[~finite]
    if invalid_ids.size and on_invalid_pose == "error":
        names = [f"pose/{pose_files[int(i)].name}" for i in invalid_ids]
        raise InputFileError(
            f"ScanNet scene {root}: {len(names)} pose file(s) contain -inf/NaN (tracking failures): "
            f"{_preview(names)}. Pass on_invalid_pose='drop' to skip those frames (their ids are recorded "
            "in scene.provenance['dropped_invalid_pose_frame_ids']).",
            path=pose_files[int(invalid_ids[0])],
        )
    if not finite.any():
        raise InputFileError(
            f"ScanNet scene {root}: every pose in pose/ is invalid (-inf/NaN); nothing to load.",
            path=root / "pose",
        )
    return _Poses(pose_files, found_ids, found_ids[finite], poses[finite], invalid_ids)


def _check_rigidity(root: Path, poses: _Poses, rigid_tol: float, on_non_rigid: str) -> np.ndarray:
    """Positions of the non-rigid poses (re-orthonormalised later by ``Cameras``); an error by default."""
    non_rigid = _non_rigid_positions(poses.matrices, rigid_tol)
    if non_rigid.size and on_non_rigid == "error":
        names = [f"pose/{poses.files[int(poses.frame_ids[p])].name}" for p in non_rigid]
        raise ConventionError(
            f"ScanNet scene {root}: pose file(s) {_preview(names)} are not rigid transforms beyond "
            f"rigid_tol={rigid_tol:g} (rotation not orthonormal or bottom row not [0, 0, 0, 1]). Pass "
            "on_non_rigid='reorthonormalize' to project onto SO(3), raise rigid_tol, or re-export the poses."
        )
    return non_rigid


def _read_colour_intrinsics(root: Path, first_color: Path) -> _ColourIntrinsics:
    """The colour K file, read and expressed in pixels of the colour files (their size read from
    ``first_color``)."""
    color_file = _intrinsics_file(root, "color")
    color_hw = image_hw_of(first_color)
    K, described_hw = _color_intrinsics(_read_matrix(color_file, "colour intrinsics")[:3, :3], color_hw,
                                        color_file, first_color)
    return _ColourIntrinsics(K, color_hw, described_hw, color_file, first_color)


def _depth_store(root: Path, frame_ids: np.ndarray) -> ImageFolderStore | None:
    """``depth/<n>.png`` (millimetres) of the kept frames, or None without ``depth/``; every kept frame
    needs one."""
    depth_dir = root / "depth"
    if not depth_dir.is_dir():
        return None
    depth_all = ImageFolderStore.from_folder(depth_dir, "depth", depth_scale=1000.0)
    missing = np.setdiff1d(frame_ids, depth_all.frame_ids)
    if missing.size:
        raise InputFileError(
            f"ScanNet scene {root}: depth/ lacks frame(s) {_preview(missing.tolist())} that color/ has. "
            "Re-export depth with SensReader, or move depth/ away to load without depth.",
            path=depth_dir,
        )
    return ImageFolderStore({int(i): depth_all.path(int(i)) for i in frame_ids}, "depth", depth_scale=1000.0)


def _metadata(root: Path, colour: _ColourIntrinsics, depth: ImageFolderStore | None,
              frame_ids: np.ndarray) -> dict:
    """The colour K file's size, the depth image size, depth K and the extrinsics files when present."""
    metadata: dict = {"intrinsic_color_image_hw": np.array(colour.described_hw, dtype=np.int64)}
    if depth is not None:
        metadata["depth_image_hw"] = np.array(image_hw_of(depth.path(int(frame_ids[0]))), dtype=np.int64)
    for name, key in (("intrinsic_depth", "depth_K_pixels"), ("extrinsic_color", "extrinsic_color"),
                      ("extrinsic_depth", "extrinsic_depth")):
        file = _intrinsics_file(root, "depth") if key == "depth_K_pixels" else root / "intrinsic" / f"{name}.txt"
        if file.is_file():
            m = _read_matrix(file, name.replace("_", " "))
            metadata[key] = m[:3, :3] if key == "depth_K_pixels" else m
    if "depth_K_pixels" in metadata and "depth_image_hw" in metadata:
        validate_intrinsics(torch.from_numpy(metadata["depth_K_pixels"]), tuple(metadata["depth_image_hw"]),
                            source=str(_intrinsics_file(root, "depth")))
    return metadata


def _provenance(root: Path, pose_convention: str, on_invalid_pose: str, poses: _Poses,
                colour: _ColourIntrinsics, non_rigid: np.ndarray, depth: ImageFolderStore | None) -> dict:
    """What was read, converted and assumed."""
    conversions = (["w2c_opencv = inverse(c2w_opencv) (closed form, all frames at once)"]
                   if pose_convention == "c2w_opencv" else ["none: pose/<n>.txt read as w2c_opencv (pose_convention)"])
    k_hw, color_hw = colour.described_hw, colour.image_hw
    if tuple(k_hw) != tuple(color_hw):
        conversions.append(
            f"K_pixels rescaled from {colour.file.name}'s {k_hw[1]}x{k_hw[0]} (ScanNet colour camera) to the "
            f"{color_hw[1]}x{color_hw[0]} colour files (intrinsics_resize: fx, cx x {color_hw[1] / k_hw[1]:.6g}; "
            f"fy, cy x {color_hw[0] / k_hw[0]:.6g})"
        )
    if non_rigid.size:
        conversions.append(f"re-orthonormalised rotations of frame ids {poses.frame_ids[non_rigid].tolist()}")
    return {
        "loader": "scannet",
        "source": str(root),
        "source_convention": f"{pose_convention}: pose/<n>.txt is 4x4 "
        f"{'camera-to-world' if pose_convention == 'c2w_opencv' else 'world-to-camera'}, OpenCV camera axes, metres",
        "conversions": conversions,
        "assumptions": [
            f"fps = {SCANNET_FPS:g}: ScanNet capture rate (the export does not store it)",
            "pose/*.txt and intrinsic_color.txt describe the colour camera; extrinsic_color.txt not applied",
        ],
        "intrinsics": str(colour.file),
        "image_hw_from": str(colour.image_file),
        "depth_scale": 1000.0 if depth is not None else None,
        "on_invalid_pose": on_invalid_pose,
        "dropped_invalid_pose_frame_ids": poses.invalid_ids.tolist(),
        "num_frames_found": int(poses.found_ids.size),
    }


def _warn_if_inverted(scene: Scene, root: Path, pose_convention: str) -> None:
    """Scans with depth: warn (naming ``pose_convention=``) if the poses look stored the other way round."""
    other = "w2c_opencv" if pose_convention == "c2w_opencv" else "c2w_opencv"
    check_pose_direction(scene, pose_file=root / "pose", fix=(
        f"If pose/<n>.txt holds {'world-to-camera' if other == 'w2c_opencv' else 'camera-to-world'} matrices, "
        f"pass pose_convention='{other}' to load_scannet (SensReader itself writes camera-to-world)."))


def _centre_offset(K: np.ndarray, image_hw: tuple[int, int]) -> float:
    """Largest of |cx / W - 0.5|, |cy / H - 0.5|: how far K's principal point is from the image centre."""
    return max(abs(K[0, 2] / image_hw[1] - 0.5), abs(K[1, 2] / image_hw[0] - 0.5))


def _color_intrinsics(K: np.ndarray, color_hw: tuple[int, int], k_file: Path,
                      image_file: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """Colour K in pixels of the colour files, and the (H, W) the file describes.

    The file describes the colour files when they are 1296x968 or when its principal point is nearer
    their centre than the centre of 1296x968 (re-exports that wrote matching intrinsics); otherwise it
    describes ScanNet's 1296x968 camera and is rescaled to the files, which must keep the aspect ratio.
    """
    if tuple(color_hw) == SCANNET_COLOR_HW or _centre_offset(K, color_hw) <= _centre_offset(K, SCANNET_COLOR_HW):
        return K, tuple(color_hw)
    sy, sx = color_hw[0] / SCANNET_COLOR_HW[0], color_hw[1] / SCANNET_COLOR_HW[1]
    if abs(sx - sy) > _ASPECT_TOL * max(sx, sy):
        raise InputFileError(
            f"{k_file} describes ScanNet's {SCANNET_COLOR_HW[1]}x{SCANNET_COLOR_HW[0]} colour camera (principal "
            f"point ({K[0, 2]:g}, {K[1, 2]:g})) but the colour frames are {color_hw[1]}x{color_hw[0]} (read from "
            f"{image_file.name}), a different aspect ratio (cropped?), so the intrinsics cannot be rescaled. "
            f"Write {k_file.name} for the {color_hw[1]}x{color_hw[0]} frames (scale for the resize, shift cx, cy "
            "by the crop offset), or use the full-size colour frames.",
            path=k_file,
        )
    resized = intrinsics_resize(torch.from_numpy(K), SCANNET_COLOR_HW, color_hw).numpy()
    return resized, SCANNET_COLOR_HW


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


