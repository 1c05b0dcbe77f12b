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
    if images not in ("auto", *_IMAGE_DIRS):
        raise ConfigError(
            f"images={images!r} is not one of 'auto', {', '.join(map(repr, _IMAGE_DIRS))}.",
            field="images",
            value=images,
        )
    json_path = _find_json(Path(path))
    dslr = _dslr_dir(json_path)
    doc = _read_json(json_path)
    image_dir = _image_dir(dslr, images)

    entries = [(f, False) for f in _frame_list(doc, "frames", json_path, required=True)]
    entries += [(f, True) for f in _frame_list(doc, "test_frames", json_path, required=False)]
    names, ids, is_test, is_bad, matrices, params = [], [], [], [], [], []
    for k, (frame, test) in enumerate(entries):
        where = f"{json_path}: {'test_frames' if test else 'frames'} entry {k}"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise InputFileError(
                f"{where} needs 'file_path' and 'transform_matrix'. Re-export the json.", path=json_path
            )
        name = Path(str(frame["file_path"])).name
        try:
            ids.append(numeric_frame_id(name))
        except InputFileError as exc:
            raise InputFileError(
                f"{where}: file_path {name!r} carries no frame number (expected DSC<number>.JPG). "
                "Fix the entry.",
                path=json_path,
            ) from exc
        names.append(name)
        is_test.append(test)
        is_bad.append(bool(frame.get("is_bad", False)))
        matrices.append(frame["transform_matrix"])
        try:
            params.append([float(frame.get(key, doc[key])) for key in _INTRINSIC_KEYS])
        except KeyError as exc:
            raise InputFileError(
                f"{where}: intrinsics field {exc.args[0]!r} is missing (need {', '.join(_INTRINSIC_KEYS)} "
                "at the top level or per frame). Re-export the json with the ScanNet++ toolkit.",
                path=json_path,
            ) from exc
        except (TypeError, ValueError) as exc:
            raise InputFileError(f"{where}: intrinsics are not numbers ({exc}).", path=json_path) from exc

    ids_arr = np.asarray(ids, dtype=np.int64)
    uniq, counts = np.unique(ids_arr, return_counts=True)
    if (counts > 1).any():
        dup = [n for n, i in zip(names, ids) if i in set(uniq[counts > 1].tolist())]
        raise InputFileError(
            f"{json_path}: frames {dup[:6]} share a DSC number; frame ids must be unique. "
            "Remove the duplicates.",
            path=json_path,
        )
    try:
        c2w_all = np.asarray(matrices, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFileError(
            f"{json_path}: a transform_matrix is not a 4x4 list of numbers ({exc}). "
            "Fix or remove that frame.",
            path=json_path,
        ) from exc
    if c2w_all.shape[1:] not in ((4, 4), (3, 4)):
        raise InputFileError(
            f"{json_path}: transform_matrix entries have shape {c2w_all.shape[1:]}; expected 4x4 "
            "camera-to-world. Re-export the json.",
            path=json_path,
        )
    order = np.argsort(ids_arr, kind="stable")
    bad_arr = np.asarray(is_bad)[order]
    keep = order[~bad_arr] if skip_bad else order
    if keep.size == 0:
        raise InputFileError(
            f"{json_path}: every frame is flagged is_bad; pass skip_bad=False.", path=json_path
        )
    frame_ids, c2w = ids_arr[keep], c2w_all[keep]
    if c2w.shape[1:] == (3, 4):
        c2w = np.concatenate([c2w, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (len(keep), 1, 4))], axis=1)
    _check_rigid(c2w, [names[i] for i in keep], json_path)

    paths = {int(ids_arr[i]): image_dir / names[i] for i in keep}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise InputFileError(
            f"{image_dir} lacks {len(missing)} image(s) listed in {json_path.name}: {missing[:5]}. "
            f"Pass images= another folder ({', '.join(_IMAGE_DIRS)}) or re-download the scene.",
            path=image_dir,
        )
    first = paths[int(frame_ids[0])]
    image_hw = image_hw_of(first)
    p = torch.as_tensor(np.asarray(params, dtype=np.float64)[keep])  # (S, 6) fx fy cx cy w h
    K = K_from_params(p[:, 0], p[:, 1], p[:, 2], p[:, 3])
    json_hw = p[:, [5, 4]]
    conversions = ["c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)", "w2c_opencv = inverse(c2w_opencv)"]
    if bool((json_hw != torch.tensor(image_hw, dtype=json_hw.dtype)).any()):
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
        conversions.append(
            f"K_pixels rescaled from the json's (h, w) = {tuple(int(v) for v in json_hw[0].tolist())} to the "
            f"image size {image_hw} read from {first.name} (intrinsics_resize)"
        )
    camera_model = str(doc.get("camera_model", "PINHOLE"))
    assumptions = ["fps None: DSLR stills have no frame rate"]
    if camera_model != "PINHOLE" or image_dir.name == _IMAGE_DIRS["resized"]:
        note = (
            f"lens distortion ignored: camera_model {camera_model!r} with images from {image_dir.name}; "
            "K is a pinhole approximation (use transforms_undistorted.json with undistorted images for "
            "exact geometry)"
        )
        warnings.warn(f"{json_path}: {note}", stacklevel=2)
        assumptions.append(note)

    cameras = Cameras.from_c2w_opengl(c2w, K, image_hw, source=str(json_path))
    test_ids = ids_arr[np.asarray(is_test, dtype=bool)]
    bad_ids = ids_arr[np.asarray(is_bad, dtype=bool)]
    provenance = {
        "loader": "scannetpp",
        "source": str(path),
        "source_convention": "c2w_opengl: nerfstudio transform_matrix, camera-to-world, OpenGL camera axes "
        "(x right, y up, z backward)",
        "conversions": conversions,
        "assumptions": assumptions,
        "json": str(json_path),
        "images": str(image_dir),
        "skip_bad": skip_bad,
        "dropped_bad_frame_ids": sorted(bad_ids.tolist()) if skip_bad else [],
    }
    metadata = {
        "camera_model": camera_model,
        "test_frame_ids": np.sort(np.intersect1d(test_ids, frame_ids)),
        "bad_frame_ids": np.sort(np.intersect1d(bad_ids, frame_ids)),
    }
    return Scene(
        name=_scene_name(dslr),
        frame_ids=frame_ids,
        rgb=ImageFolderStore(paths, "rgb"),
        cameras=cameras,
        fps=None,
        metadata=metadata,
        provenance=provenance,
    )


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


