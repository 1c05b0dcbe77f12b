"""ScanNet++ DSLR scenes (nerfstudio export) -> ``Scene`` with ``w2c_opencv`` cameras.

On-disk layout (``<scene>`` is the 10-character scene id; it becomes ``Scene.name``)::

    <scene>/dslr/nerfstudio/transforms_undistorted.json   (or transforms.json)
    <scene>/dslr/resized_undistorted_images/DSC01234.JPG  undistorted, downsampled
    <scene>/dslr/undistorted_images/DSC01234.JPG          undistorted, full size
    <scene>/dslr/resized_images/DSC01234.JPG              original (distorted), downsampled

JSON fields used: ``fl_x, fl_y, cx, cy, w, h, camera_model`` (shared intrinsics, in pixels of a w x h
image; a frame may override any of them), ``frames`` and optionally ``test_frames``: lists of
``{file_path, transform_matrix, is_bad?}`` where ``transform_matrix`` is a 4x4 camera-to-world with
OpenGL/nerfstudio camera axes (x right, y up, z backward). ``test_frames`` are merged with ``frames``
and their ids listed in ``metadata["test_frame_ids"]``.

Conversion: ``c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)``, ``w2c_opencv = inverse(c2w_opencv)``
(``Cameras.from_c2w_opengl``, all frames at once). The json's (w, h) describe the full-size images; the
actual image size is read from an image file and K is rescaled with ``intrinsics_resize`` when they
differ (resized folders). Frame id = the number in the DSC file name. DSLR stills have no frame rate:
``fps`` and ``timestamps_s`` are None. Lens distortion is not modelled: with a non-PINHOLE
``camera_model`` or the distorted ``resized_images`` K is a pinhole approximation (warned, recorded).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from posevlm.errors import ConfigError, ConventionError, InputFileError
from posevlm.geometry import Cameras, K_from_params, intrinsics_resize, rotation_rigidity_error
from posevlm.scenes.frames import ImageFolderStore, image_hw_of, numeric_frame_id
from posevlm.scenes.scene import Scene

__all__ = ["load_scannetpp", "detect_scannetpp"]

ImagesChoice = Literal["auto", "resized_undistorted", "undistorted", "resized"]
_JSON_NAMES = ("transforms_undistorted.json", "transforms.json")
_IMAGE_DIRS = {
    "resized_undistorted": "resized_undistorted_images",
    "undistorted": "undistorted_images",
    "resized": "resized_images",
}
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def detect_scannetpp(path: str | Path) -> bool:
    """True if ``path`` (scene dir, ``dslr`` dir or the json) resolves to a ScanNet++ DSLR export:
    a transforms json under ``dslr/nerfstudio/`` next to one of the DSLR image folders."""
    try:
        json_path = _find_json(Path(path))
        dslr = _dslr_dir(json_path)
        return any((dslr / d).is_dir() for d in _IMAGE_DIRS.values())
    except (InputFileError, OSError):
        return False


def load_scannetpp(path: str | Path, *, images: ImagesChoice = "auto", skip_bad: bool = False) -> Scene:
    """Load a ScanNet++ DSLR nerfstudio export as a ``Scene`` in the library convention.

    Args:
        path: the scene dir, its ``dslr`` dir, or the transforms json itself
            (``transforms_undistorted.json`` is preferred over ``transforms.json``).
        images: image folder under ``dslr/``. ``"auto"`` takes the first that exists of
            ``resized_undistorted_images``, ``undistorted_images``, ``resized_images``.
        skip_bad: drop frames flagged ``is_bad`` (recorded in ``provenance["dropped_bad_frame_ids"]``);
            otherwise they are kept and listed in ``metadata["bad_frame_ids"]``.

    Returns:
        Scene with ``frame_ids`` (S,) DSC numbers ascending (train and test frames merged),
        ``cameras`` (``w2c_opencv`` (S, 4, 4), ``K_pixels`` (S, 3, 3) for the actual image size),
        ``fps = None``, no depth.

    Raises:
        InputFileError: no/unreadable json, missing fields, missing image files or folder, duplicate
            frame numbers, malformed ``transform_matrix``, an image aspect ratio that contradicts the json.
        ConventionError: non-rigid or non-finite ``transform_matrix``.
        ConfigError: an unknown ``images`` value.
    """
    _check_images_choice(images)
    json_path = _find_json(Path(path))
    dslr = _dslr_dir(json_path)
    doc = _read_json(json_path)
    image_dir = _image_dir(dslr, images)
    entries = _read_entries(doc, json_path)
    keep = _kept_positions(entries, skip_bad, json_path)
    frame_ids, c2w = entries.ids[keep], _as_4x4(entries.c2w_opengl[keep])
    _check_rigid(c2w, [entries.names[i] for i in keep], json_path)
    paths = _image_paths(entries, keep, image_dir, json_path)
    K, image_hw, k_note = _intrinsics(entries.params[keep], paths[int(frame_ids[0])], image_dir, json_path)
    camera_model, lens_note = _lens_model(doc, image_dir, json_path)
    return Scene(
        name=_scene_name(dslr),
        frame_ids=frame_ids,
        rgb=ImageFolderStore(paths, "rgb"),
        cameras=Cameras.from_c2w_opengl(c2w, K, image_hw, source=str(json_path)),
        fps=None,
        metadata=_metadata(entries, frame_ids, camera_model),
        provenance=_provenance(path, json_path, image_dir, skip_bad, entries, k_note, lens_note),
    )


# -- steps of load_scannetpp --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entries:
    """The json's frames, ``frames`` then ``test_frames``, in file order. N entries."""

    names: list[str]  # image file names
    ids: np.ndarray  # (N,) int64 DSC numbers, unique
    is_test: np.ndarray  # (N,) bool
    is_bad: np.ndarray  # (N,) bool
    c2w_opengl: np.ndarray  # (N, 4, 4) or (N, 3, 4) float64 transform_matrix
    params: np.ndarray  # (N, 6) float64 fl_x fl_y cx cy w h (per-frame values override the top level)


def _check_images_choice(images: str) -> None:
    if images not in ("auto", *_IMAGE_DIRS):
        raise ConfigError(
            f"images={images!r} is not one of 'auto', {', '.join(map(repr, _IMAGE_DIRS))}.",
            field="images",
            value=images,
        )


def _read_entries(doc: dict, json_path: Path) -> _Entries:
    """Parse every frame entry (name, DSC number, flags, matrix, intrinsics); ids must be unique and the
    matrices 4x4 (or 3x4) numbers."""
    frames = [(f, False) for f in _frame_list(doc, "frames", json_path, required=True)]
    frames += [(f, True) for f in _frame_list(doc, "test_frames", json_path, required=False)]
    names, ids, is_test, is_bad, matrices, params = [], [], [], [], [], []
    for k, (frame, test) in enumerate(frames):
        where = f"{json_path}: {'test_frames' if test else 'frames'} entry {k}"
        name, frame_id = _entry_name_and_id(frame, where, json_path)
        names.append(name)
        ids.append(frame_id)
        is_test.append(test)
        is_bad.append(bool(frame.get("is_bad", False)))
        matrices.append(frame["transform_matrix"])
        params.append(_entry_intrinsics(frame, doc, where, json_path))
    ids_arr = np.asarray(ids, dtype=np.int64)
    _check_unique_ids(names, ids_arr, json_path)
    return _Entries(names, ids_arr, np.asarray(is_test, dtype=bool), np.asarray(is_bad, dtype=bool),
                    _transform_matrices(matrices, json_path), np.asarray(params, dtype=np.float64))


def _entry_name_and_id(frame: object, where: str, json_path: Path) -> tuple[str, int]:
    if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
        raise InputFileError(f"{where} needs 'file_path' and 'transform_matrix'. Re-export the json.",
                             path=json_path)
    name = Path(str(frame["file_path"])).name
    try:
        return name, numeric_frame_id(name)
    except InputFileError as exc:
        raise InputFileError(
            f"{where}: file_path {name!r} carries no frame number (expected DSC<number>.JPG). Fix the entry.",
            path=json_path,
        ) from exc


def _entry_intrinsics(frame: dict, doc: dict, where: str, json_path: Path) -> list[float]:
    """``fl_x, fl_y, cx, cy, w, h`` of one frame: its own values, else the json's top-level ones."""
    try:
        return [float(frame.get(key, doc[key])) for key in _INTRINSIC_KEYS]
    except KeyError as exc:
        raise InputFileError(
            f"{where}: intrinsics field {exc.args[0]!r} is missing (need {', '.join(_INTRINSIC_KEYS)} "
            "at the top level or per frame). Re-export the json with the ScanNet++ toolkit.",
            path=json_path,
        ) from exc
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{where}: intrinsics are not numbers ({exc}).", path=json_path) from exc


def _check_unique_ids(names: list[str], ids: np.ndarray, json_path: Path) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = [n for n, i in zip(names, ids.tolist()) if i in set(uniq[counts > 1].tolist())]
        raise InputFileError(
            f"{json_path}: frames {dup[:6]} share a DSC number; frame ids must be unique. "
            "Remove the duplicates.",
            path=json_path,
        )


def _transform_matrices(matrices: list, json_path: Path) -> np.ndarray:
    """(N, 4, 4) or (N, 3, 4) float64 camera-to-world matrices as written."""
    try:
        c2w = np.asarray(matrices, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFileError(
            f"{json_path}: a transform_matrix is not a 4x4 list of numbers ({exc}). "
            "Fix or remove that frame.",
            path=json_path,
        ) from exc
    if c2w.shape[1:] not in ((4, 4), (3, 4)):
        raise InputFileError(
            f"{json_path}: transform_matrix entries have shape {c2w.shape[1:]}; expected 4x4 "
            "camera-to-world. Re-export the json.",
            path=json_path,
        )
    return c2w


def _kept_positions(entries: _Entries, skip_bad: bool, json_path: Path) -> np.ndarray:
    """Entry positions in ascending DSC order, ``is_bad`` frames left out with ``skip_bad``."""
    order = np.argsort(entries.ids, kind="stable")
    keep = order[~entries.is_bad[order]] if skip_bad else order
    if keep.size == 0:
        raise InputFileError(f"{json_path}: every frame is flagged is_bad; pass skip_bad=False.",
                             path=json_path)
    return keep


def _as_4x4(c2w: np.ndarray) -> np.ndarray:
    """(S, 3, 4) -> (S, 4, 4) with the bottom row [0, 0, 0, 1]; (S, 4, 4) unchanged."""
    if c2w.shape[1:] != (3, 4):
        return c2w
    return np.concatenate([c2w, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (len(c2w), 1, 4))], axis=1)


def _image_paths(entries: _Entries, keep: np.ndarray, image_dir: Path, json_path: Path) -> dict[int, Path]:
    """frame id -> image file in ``image_dir`` for the kept frames; every one must exist."""
    paths = {int(entries.ids[i]): image_dir / entries.names[i] for i in keep}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise InputFileError(
            f"{image_dir} lacks {len(missing)} image(s) listed in {json_path.name}: {missing[:5]}. "
            f"Pass images= another folder ({', '.join(_IMAGE_DIRS)}) or re-download the scene.",
            path=image_dir,
        )
    return paths


def _intrinsics(params: np.ndarray, first: Path, image_dir: Path,
                json_path: Path) -> tuple[torch.Tensor, tuple[int, int], str | None]:
    """K (S, 3, 3) in pixels of the actual images (size read from ``first``), that size, and a conversion
    note when K was rescaled from the json's (w, h); a different aspect ratio is an error."""
    image_hw = image_hw_of(first)
    p = torch.as_tensor(params)  # (S, 6) fx fy cx cy w h
    K = K_from_params(p[:, 0], p[:, 1], p[:, 2], p[:, 3])
    json_hw = p[:, [5, 4]]
    if not bool((json_hw != torch.tensor(image_hw, dtype=json_hw.dtype)).any()):
        return K, image_hw, None
    scale = torch.tensor(image_hw, dtype=json_hw.dtype) / json_hw  # (S, 2) sy, sx
    if bool(((scale[:, 0] - scale[:, 1]).abs() > 0.02 * scale.amax(1)).any()):
        raise InputFileError(
            f"images in {image_dir} are {image_hw[1]}x{image_hw[0]} (from {first.name}) but "
            f"{json_path.name} describes {int(json_hw[0, 1])}x{int(json_hw[0, 0])}: the aspect ratios "
            "differ, so these images do not belong to this json. Pass images= the matching folder or "
            "the matching json.",
            path=first,
        )
    K = intrinsics_resize(K, json_hw, torch.tensor(image_hw))
    return K, image_hw, (
        f"K_pixels rescaled from the json's (h, w) = {tuple(int(v) for v in json_hw[0].tolist())} to the "
        f"image size {image_hw} read from {first.name} (intrinsics_resize)"
    )


def _lens_model(doc: dict, image_dir: Path, json_path: Path) -> tuple[str, str | None]:
    """The json's camera model and, when K is only a pinhole approximation (a distortion model, or the
    distorted ``resized_images``), a note, also given as a warning."""
    camera_model = str(doc.get("camera_model", "PINHOLE"))
    if camera_model == "PINHOLE" and image_dir.name != _IMAGE_DIRS["resized"]:
        return camera_model, None
    note = (
        f"lens distortion ignored: camera_model {camera_model!r} with images from {image_dir.name}; "
        "K is a pinhole approximation (use transforms_undistorted.json with undistorted images for "
        "exact geometry)"
    )
    warnings.warn(f"{json_path}: {note}", stacklevel=3)
    return camera_model, note


def _metadata(entries: _Entries, frame_ids: np.ndarray, camera_model: str) -> dict:
    return {
        "camera_model": camera_model,
        "test_frame_ids": np.sort(np.intersect1d(entries.ids[entries.is_test], frame_ids)),
        "bad_frame_ids": np.sort(np.intersect1d(entries.ids[entries.is_bad], frame_ids)),
    }


def _provenance(path: str | Path, json_path: Path, image_dir: Path, skip_bad: bool, entries: _Entries,
                k_note: str | None, lens_note: str | None) -> dict:
    """What was read, converted, assumed and dropped."""
    conversions = ["c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)", "w2c_opencv = inverse(c2w_opencv)"]
    assumptions = ["fps None: DSLR stills have no frame rate"]
    return {
        "loader": "scannetpp",
        "source": str(path),
        "source_convention": "c2w_opengl: nerfstudio transform_matrix, camera-to-world, OpenGL camera axes "
        "(x right, y up, z backward)",
        "conversions": conversions + ([k_note] if k_note else []),
        "assumptions": assumptions + ([lens_note] if lens_note else []),
        "json": str(json_path),
        "images": str(image_dir),
        "skip_bad": skip_bad,
        "dropped_bad_frame_ids": sorted(entries.ids[entries.is_bad].tolist()) if skip_bad else [],
    }


# -- thin file helpers -------------------------------------------------------------------------------
def _find_json(path: Path) -> Path:
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise InputFileError(
                f"{path} is not a ScanNet++ transforms json; pass the scene folder or the json.", path=path
            )
        return path
    bases = (path / "dslr" / "nerfstudio", path / "nerfstudio", path)
    tried = [base / name for base in bases for name in _JSON_NAMES]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise InputFileError(
        f"no ScanNet++ transforms json under {path}: looked for "
        f"{', '.join(str(t.relative_to(path)) for t in tried)}. "
        "Pass the scene folder, its dslr/ folder or the json itself.",
        path=path,
    )


def _dslr_dir(json_path: Path) -> Path:
    return json_path.parent.parent if json_path.parent.name == "nerfstudio" else json_path.parent


def _scene_name(dslr: Path) -> str:
    dslr = dslr.resolve()
    return dslr.parent.name if dslr.name == "dslr" else dslr.name


def _image_dir(dslr: Path, images: str) -> Path:
    choices = list(_IMAGE_DIRS) if images == "auto" else [images]
    for choice in choices:
        if (dslr / _IMAGE_DIRS[choice]).is_dir():
            return dslr / _IMAGE_DIRS[choice]
    present = [k for k, d in _IMAGE_DIRS.items() if (dslr / d).is_dir()]
    raise InputFileError(
        f"{dslr} has no {' / '.join(_IMAGE_DIRS[c] for c in choices)} folder (images={images!r}). "
        f"Available: {', '.join(present) or 'none'}; pass images= one of those or download the DSLR images.",
        path=dslr,
    )


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"cannot read ScanNet++ transforms json {path} ({exc}). Re-download it or regenerate it with the "
            "ScanNet++ toolkit.",
            path=path,
        ) from exc
    if not isinstance(doc, dict):
        raise InputFileError(
            f"{path} holds a JSON {type(doc).__name__}; expected an object with 'frames'. Re-export it.",
            path=path,
        )
    return doc


def _frame_list(doc: dict, key: str, path: Path, *, required: bool) -> list:
    frames = doc.get(key)
    if frames is None and not required:
        return []
    if not isinstance(frames, list) or (required and not frames):
        raise InputFileError(
            f"{path}: {key!r} must be a non-empty list of frames; got {type(frames).__name__}. Re-export it.",
            path=path,
        )
    return frames


def _check_rigid(c2w: np.ndarray, names: list[str], json_path: Path, tol: float = 1e-4) -> None:
    finite = np.isfinite(c2w).all(axis=(1, 2))
    err = np.full(len(c2w), np.inf)
    err[finite] = rotation_rigidity_error(torch.from_numpy(c2w[finite, :3, :3])).numpy()
    err = np.maximum(err, np.abs(c2w[:, 3, :] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1, initial=0.0))
    bad = [names[i] for i in np.flatnonzero(~(err <= tol))]
    if bad:
        raise ConventionError(
            f"{json_path}: transform_matrix of frame(s) {bad[:5]} is not a finite rigid transform (tolerance "
            f"{tol:g}). Fix those entries or remove the frames from the json."
        )


