"""ARKitScenes raw / 3DOD scans -> ``Scene`` with ``w2c_opencv`` cameras.

On-disk layout (``<video_id>`` becomes ``Scene.name``)::

    <video_id>/<video_id>_frames/lowres_wide/<video_id>_<timestamp>.png        RGB (e.g. 256x192)
    <video_id>/<video_id>_frames/lowres_depth/<video_id>_<timestamp>.png       uint16 millimetres
    <video_id>/<video_id>_frames/lowres_wide_intrinsics/<video_id>_<t>.pincam  "width height fx fy cx cy"
    <video_id>/<video_id>_frames/lowres_wide.traj    lines "timestamp rx ry rz tx ty tz"

Timestamps are seconds (e.g. ``4120.250``); intrinsics file names may differ from the frame's by ~1 ms.

Pose convention of ``lowres_wide.traj`` (what we found, and where):
    * apple/ARKitScenes ``DATA.md``: column 1 timestamp, columns 2-4 "rotation (axis-angle representation
      in radians)", columns 5-7 translation in metres. The direction is not stated there.
    * apple/ARKitScenes ``threedod/benchmark_scripts/utils/tenFpsDataLoader.py``, ``TrajStringToMatrix``:
      names the parsed parts ``r_w_to_p = cv2.Rodrigues(angle_axis)`` and ``t_w_to_p`` (world -> camera),
      builds ``extrinsics = [R | t]`` and returns ``Rt = np.linalg.inv(extrinsics)`` as the frame "pose",
      which ``generate_point`` documents as "transfer from camera to world" and applies to points
      back-projected with ``inv(K) @ [u d, v d, d]``: pixel v grows downwards, depth along +z, i.e. OpenCV
      camera axes (x right, y down, z forward).
    * nerfstudio ``nerfstudio/data/dataparsers/arkitscenes_dataparser.py`` copies that function, then flips
      columns 1-2 (``frame_pose[0:3, 1:3] *= -1``) to get its OpenGL camera-to-world: consistent with the
      inverted traj being camera-to-world with OpenCV axes.
    So each .traj line is a **world-to-camera** transform with **OpenCV camera axes**: the library
    convention already. Conversion: ``R = Rodrigues(rx, ry, rz)`` (``axis_angle_to_matrix``, same
    formula as cv2.Rodrigues), ``w2c_opencv = [[R, t], [0, 0, 0, 1]]``; no inversion and no axis flip.

Frames are matched to poses (and to .pincam files) by nearest timestamp, vectorised. A frame with no
pose within ``max_time_gap_s`` is dropped and recorded in provenance. ``frame_ids`` are the positions
0..N-1 of *all* ``lowres_wide`` frames in timestamp order (names carry timestamps, not numbers), so an
id always names the same file whatever ``max_time_gap_s`` is; dropped frames leave gaps.
``timestamps_s`` holds the seconds of the kept frames; ``fps = 1 / median(diff(timestamps))`` over all
frames. Depth is optional (the raw release does not guarantee every asset per timestamp): frames
without a depth file are listed in ``provenance["frames_without_depth"]``. With depth,
:func:`posevlm.scenes.pose_check.check_pose_direction` warns if the trajectory looks inverted
(``pose_convention="c2w_opencv"`` reads a trajectory written camera-to-world).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from posevlm.errors import ConfigError, InputFileError
from posevlm.geometry import Cameras, K_from_params, axis_angle_to_matrix, c2w_to_w2c, intrinsics_resize, se3_from_Rt
from posevlm.scenes.frames import ImageFolderStore, image_hw_of
from posevlm.scenes.pose_check import check_pose_direction
from posevlm.scenes.scene import Scene

__all__ = ["load_arkitscenes", "detect_arkitscenes"]

_STAMPED = re.compile(r"^(?P<video>.+)_(?P<ts>\d+(?:\.\d+)?)$")
_TRAJ = "lowres_wide.traj"


def detect_arkitscenes(path: str | Path) -> bool:
    """True if ``path`` is ``<video_id>/`` (holding ``<video_id>_frames/``) or that ``_frames`` folder,
    with ``lowres_wide/`` and ``lowres_wide.traj``."""
    try:
        frames = _frames_dir(Path(path))
        return (frames / "lowres_wide").is_dir() and (frames / _TRAJ).is_file()
    except (InputFileError, OSError):
        return False


def load_arkitscenes(path: str | Path, *, max_time_gap_s: float = 0.05,
                     pose_convention: Literal["w2c_opencv", "c2w_opencv"] = "w2c_opencv") -> Scene:
    """Load an ARKitScenes ``lowres_wide`` sequence as a ``Scene`` in the library convention.

    Args:
        path: ``<video_id>/`` or ``<video_id>/<video_id>_frames/``.
        max_time_gap_s: largest |frame time - pose time| (and |frame time - intrinsics time|) accepted.
        pose_convention: what each ``.traj`` line holds: ``"w2c_opencv"`` (ARKitScenes, the default) or
            ``"c2w_opencv"`` (a trajectory re-written camera-to-world; the pose check's warning suggests it).

    Returns:
        Scene with ``frame_ids`` (S,) positions in timestamp order, ``timestamps_s`` (S,),
        ``cameras`` (``w2c_opencv`` (S, 4, 4), per-frame ``K_pixels`` (S, 3, 3), ``image_hw`` read
        from a colour image), ``depth`` in metres (or None), ``fps`` from the median frame interval.

    Raises:
        InputFileError: missing folders/files, unparsable names, .traj or .pincam, frames without
            intrinsics, or fewer than half of the frames matched to a pose.
        ConfigError: ``max_time_gap_s`` not a positive number, an unknown ``pose_convention``.

    Warns:
        ConventionWarning: implausible intrinsics; a trajectory that looks inverted (scans with depth).
    """
    _check_options(max_time_gap_s, pose_convention)
    frames_dir = _frames_dir(Path(path))
    frames = _match_poses(frames_dir, max_time_gap_s)
    w2c = _w2c_from_traj(frames.pose_rows, pose_convention)
    K, image_hw, k_note = _intrinsics(frames_dir, frames, max_time_gap_s)
    cameras = Cameras.create(w2c, K, image_hw, source=str(frames.traj_path),
                             intrinsics_source=str(frames_dir / "lowres_wide_intrinsics"))
    depth, no_depth = _depth_store(frames_dir, frames)
    scene = Scene(
        name=frames_dir.resolve().name.removesuffix("_frames"),
        frame_ids=frames.frame_ids,
        rgb=ImageFolderStore({int(i): f for i, f in zip(frames.frame_ids, frames.kept_files)}, "rgb"),
        cameras=cameras,
        fps=_fps(frames.all_timestamps_s),
        timestamps_s=frames.timestamps_s,
        depth=depth,
        provenance=_provenance(path, frames, pose_convention, max_time_gap_s, k_note, depth, no_depth),
    )
    _warn_if_inverted(scene, frames.traj_path, pose_convention)
    return scene


# -- steps of load_arkitscenes ------------------------------------------------------------------------
@dataclass(frozen=True)
class _MatchedFrames:
    """Every ``lowres_wide`` frame in timestamp order (id = position), and the ones with a pose in reach."""

    all_files: list[Path]  # (N,) timestamp order
    all_timestamps_s: np.ndarray  # (N,) seconds
    matched: np.ndarray  # (N,) bool: a .traj pose within max_time_gap_s
    pose_gap: np.ndarray  # (N,) |frame time - nearest pose time|
    pose_rows: np.ndarray  # (S, 7) ``t rx ry rz tx ty tz`` of the matched frames
    traj_path: Path

    @property
    def frame_ids(self) -> np.ndarray:
        """(S,) int64 ids (positions in timestamp order) of the matched frames."""
        return np.flatnonzero(self.matched).astype(np.int64)

    @property
    def kept_files(self) -> list[Path]:
        return [self.all_files[i] for i in self.frame_ids]

    @property
    def timestamps_s(self) -> np.ndarray:
        return self.all_timestamps_s[self.matched]


def _check_options(max_time_gap_s: float, pose_convention: str) -> None:
    if pose_convention not in ("w2c_opencv", "c2w_opencv"):
        raise ConfigError(
            f"pose_convention={pose_convention!r} is not one of 'w2c_opencv', 'c2w_opencv'.",
            field="pose_convention",
            value=pose_convention,
        )
    is_number = isinstance(max_time_gap_s, (int, float)) and math.isfinite(max_time_gap_s)
    if not (is_number and max_time_gap_s > 0):
        raise ConfigError(
            f"max_time_gap_s must be a positive number of seconds; got {max_time_gap_s!r}.",
            field="max_time_gap_s",
            value=max_time_gap_s,
        )


def _match_poses(frames_dir: Path, max_time_gap_s: float) -> _MatchedFrames:
    """The colour frames sorted by timestamp, each matched to its nearest ``.traj`` pose; fewer than half
    matched is an error (a trajectory of another video)."""
    color_dir = frames_dir / "lowres_wide"
    color_files, ts_all = _stamped_files(color_dir, ".png")
    order = np.argsort(ts_all, kind="stable")
    color_files, ts_all = [color_files[i] for i in order], ts_all[order]
    traj_path = frames_dir / _TRAJ
    traj = _read_traj(traj_path)  # (P, 7) sorted by time
    pose_pos, pose_gap = _nearest(traj[:, 0], ts_all)
    matched = pose_gap <= max_time_gap_s
    if matched.sum() * 2 < ts_all.size or not matched.any():
        raise InputFileError(
            f"only {int(matched.sum())} of {ts_all.size} frames in {color_dir} have a pose within "
            f"max_time_gap_s={max_time_gap_s:g} s in {traj_path} (median gap {np.median(pose_gap):.3g} s; "
            f"traj covers {traj[0, 0]:.3f}..{traj[-1, 0]:.3f} s, "
            f"frames {ts_all[0]:.3f}..{ts_all[-1]:.3f} s). "
            "Check the .traj belongs to this video, or raise max_time_gap_s.",
            path=traj_path,
        )
    return _MatchedFrames(color_files, ts_all, matched, pose_gap, traj[pose_pos[matched]], traj_path)


def _w2c_from_traj(rows: np.ndarray, pose_convention: str) -> torch.Tensor:
    """(S, 4, 4) w2c_opencv of ``.traj`` rows: ``[Rodrigues(rx, ry, rz) | t]``, inverted if the trajectory
    was written camera-to-world."""
    rotation = axis_angle_to_matrix(torch.from_numpy(rows[:, 1:4]))  # (S, 3, 3) world -> camera
    w2c = se3_from_Rt(rotation, torch.from_numpy(rows[:, 4:7]))  # (S, 4, 4)
    return c2w_to_w2c(w2c) if pose_convention == "c2w_opencv" else w2c


def _intrinsics(frames_dir: Path, frames: _MatchedFrames,
                max_time_gap_s: float) -> tuple[torch.Tensor, tuple[int, int], str | None]:
    """Per-frame K (S, 3, 3) from the nearest ``.pincam``, in pixels of the colour images, their (H, W) and
    a conversion note when K was rescaled from the ``.pincam`` size."""
    kept_files = frames.kept_files
    pincam = _read_pincams(frames_dir / "lowres_wide_intrinsics")  # (Q, 7): t w h fx fy cx cy, sorted
    k_pos, k_gap = _nearest(pincam[:, 0], frames.timestamps_s)
    no_k = np.flatnonzero(k_gap > max_time_gap_s)
    if no_k.size:
        names = [kept_files[i].name for i in no_k[:5]]
        raise InputFileError(
            f"{frames_dir / 'lowres_wide_intrinsics'} has no .pincam within {max_time_gap_s:g} s of frame(s) "
            f"{names}. Re-download the lowres_wide_intrinsics asset of this video.",
            path=frames_dir / "lowres_wide_intrinsics",
        )
    cam = torch.from_numpy(pincam[k_pos])
    K = K_from_params(cam[:, 3], cam[:, 4], cam[:, 5], cam[:, 6])
    pincam_hw = cam[:, [2, 1]]  # (S, 2) (h, w)
    image_hw = image_hw_of(kept_files[0])
    if not bool((pincam_hw != torch.tensor(image_hw, dtype=pincam_hw.dtype)).any()):
        return K, image_hw, None
    scale = torch.tensor(image_hw, dtype=pincam_hw.dtype) / pincam_hw
    if bool(((scale[:, 0] - scale[:, 1]).abs() > 0.02 * scale.amax(1)).any()):
        raise InputFileError(
            f"{kept_files[0]} is {image_hw[1]}x{image_hw[0]} but its .pincam says "
            f"{int(pincam_hw[0, 1])}x{int(pincam_hw[0, 0])} (different aspect ratio): the intrinsics do "
            "not describe these images. Re-download lowres_wide_intrinsics for this video.",
            path=kept_files[0],
        )
    K = intrinsics_resize(K, pincam_hw, torch.tensor(image_hw))
    note = f"K_pixels rescaled from the .pincam size to {image_hw} read from {kept_files[0].name}"
    return K, image_hw, note


def _depth_store(frames_dir: Path, frames: _MatchedFrames) -> tuple[ImageFolderStore | None, list[int]]:
    """``lowres_depth`` of the kept frames (None without the folder or any file) and the ids lacking one."""
    depth_dir = frames_dir / "lowres_depth"
    if not depth_dir.is_dir():
        return None, []
    by_id = {int(i): depth_dir / f.name for i, f in zip(frames.frame_ids, frames.kept_files)}
    no_depth = [i for i, p in by_id.items() if not p.is_file()]
    present = {i: p for i, p in by_id.items() if p.is_file()}
    return (ImageFolderStore(present, "depth", depth_scale=1000.0) if present else None), no_depth


def _fps(all_timestamps_s: np.ndarray) -> float | None:
    """1 / median frame interval over all frames, or None if it is not positive."""
    diffs = np.diff(all_timestamps_s)
    return float(1.0 / np.median(diffs)) if diffs.size and np.median(diffs) > 0 else None


def _provenance(path: str | Path, frames: _MatchedFrames, pose_convention: str, max_time_gap_s: float,
                k_note: str | None, depth: ImageFolderStore | None, no_depth: list[int]) -> dict:
    """What was read, converted, assumed and dropped."""
    conversions = ["R = Rodrigues(rx, ry, rz); w2c_opencv = [R | t] (.traj is world-to-camera, OpenCV axes)"
                   if pose_convention == "w2c_opencv" else
                   "R = Rodrigues(rx, ry, rz); w2c_opencv = inverse([R | t]) (pose_convention='c2w_opencv')"]
    if k_note is not None:
        conversions.append(k_note)
    dropped = ~frames.matched
    return {
        "loader": "arkitscenes",
        "source": str(path),
        "source_convention": "w2c_opencv as axis-angle + translation: lowres_wide.traj lines "
        "'timestamp rx ry rz tx ty tz', world-to-camera, OpenCV camera axes, metres "
        "(apple/ARKitScenes tenFpsDataLoader.TrajStringToMatrix)",
        "conversions": conversions,
        "assumptions": [
            "frame_ids = position in timestamp order among all lowres_wide frames",
            "fps = 1 / median timestamp difference of all lowres_wide frames",
        ],
        "traj": str(frames.traj_path),
        "pose_convention": pose_convention,
        "max_time_gap_s": float(max_time_gap_s),
        "max_matched_pose_gap_s": float(frames.pose_gap[frames.matched].max()),
        "dropped_unmatched_frame_ids": np.flatnonzero(dropped).tolist(),
        "dropped_unmatched_timestamps_s": frames.all_timestamps_s[dropped].tolist(),
        "frames_without_depth": no_depth,
        "depth_scale": 1000.0 if depth is not None else None,
        "num_frames_found": int(frames.all_timestamps_s.size),
    }


def _warn_if_inverted(scene: Scene, traj_path: Path, pose_convention: str) -> None:
    """Scans with depth: warn (naming ``pose_convention=``) if the trajectory looks inverted."""
    other = "c2w_opencv" if pose_convention == "w2c_opencv" else "w2c_opencv"
    check_pose_direction(scene, pose_file=traj_path, fix=(
        f"If {_TRAJ} was written {'camera-to-world' if other == 'c2w_opencv' else 'world-to-camera'}, pass "
        f"pose_convention='{other}' to load_arkitscenes (ARKitScenes itself writes world-to-camera)."))


# -- pure helper ---------------------------------------------------------------------------------------
def _nearest(sorted_times: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query time, the position of the nearest of ``sorted_times`` (P,) and |gap| (N,)."""
    hi = np.clip(np.searchsorted(sorted_times, query), 0, sorted_times.size - 1)
    lo = np.clip(hi - 1, 0, sorted_times.size - 1)
    pick = np.where(np.abs(sorted_times[hi] - query) < np.abs(sorted_times[lo] - query), hi, lo)
    return pick, np.abs(sorted_times[pick] - query)


# -- thin file helpers ---------------------------------------------------------------------------------
def _frames_dir(path: Path) -> Path:
    if (path / "lowres_wide").is_dir() or (path / _TRAJ).is_file():
        return path
    candidate = path / f"{path.name}_frames"
    if candidate.is_dir():
        return candidate
    raise InputFileError(
        f"{path} is not an ARKitScenes scan: expected {candidate.name}/ inside it, or lowres_wide/ and "
        f"{_TRAJ} directly. Pass <video_id>/ or <video_id>/<video_id>_frames/.",
        path=path,
    )


def _stamped_files(folder: Path, suffix: str) -> tuple[list[Path], np.ndarray]:
    """Files ``<video_id>_<timestamp><suffix>`` in ``folder`` and their timestamps (seconds)."""
    if not folder.is_dir():
        raise InputFileError(f"ARKitScenes folder {folder} does not exist; download that asset.", path=folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() == suffix]
    if not files:
        raise InputFileError(f"{folder} holds no {suffix} files; download that asset.", path=folder)
    stamps = []
    for p in files:
        m = _STAMPED.match(p.name[: -len(suffix)])
        if m is None:
            raise InputFileError(
                f"cannot read a timestamp from {p}; ARKitScenes names look like <video_id>_<seconds>{suffix} "
                f"(e.g. 41069021_4120.250{suffix}). Remove or rename this file.",
                path=p,
            )
        stamps.append(float(m["ts"]))
    return files, np.asarray(stamps, dtype=np.float64)


def _read_traj(path: Path) -> np.ndarray:
    """(P, 7) rows ``t rx ry rz tx ty tz`` sorted by time; errors name the line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"cannot read ARKitScenes trajectory {path} ({exc}); download it.", path=path
        ) from exc
    rows = []
    for n, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [float(v) for v in tokens]
        except ValueError:
            values = []
        if len(values) != 7 or not all(map(math.isfinite, values)):
            raise InputFileError(
                f"{path} line {n}: expected 7 finite numbers 'timestamp rx ry rz tx ty tz'; "
                f"got {line.strip()[:80]!r}. Re-download the trajectory or delete that line.",
                path=path,
            )
        rows.append(values)
    if not rows:
        raise InputFileError(f"{path} holds no poses; re-download the trajectory.", path=path)
    traj = np.asarray(rows, dtype=np.float64)
    return traj[np.argsort(traj[:, 0], kind="stable")]


def _read_pincams(folder: Path) -> np.ndarray:
    """(Q, 7) rows ``t w h fx fy cx cy`` sorted by time, one per .pincam file."""
    files, stamps = _stamped_files(folder, ".pincam")
    rows = []
    for p, t in zip(files, stamps):
        try:
            values = [float(v) for v in p.read_text().split()]
        except (OSError, UnicodeDecodeError, ValueError):
            values = []
        if len(values) != 6 or not all(map(math.isfinite, values)) or min(values) <= 0:
            raise InputFileError(
                f"{p} must hold 6 positive numbers 'width height fx fy cx cy'. "
                "Re-download lowres_wide_intrinsics.",
                path=p,
            )
        rows.append([t, *values])
    table = np.asarray(rows, dtype=np.float64)
    return table[np.argsort(table[:, 0], kind="stable")]


