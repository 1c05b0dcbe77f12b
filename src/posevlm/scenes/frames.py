"""Lazy per-frame stores: RGB, depth and instance images addressed by frame id.

A store maps the frame ids of a scene to arrays; nothing is decoded until asked for. Three kinds:
``ImageFolderStore`` (one image file per frame, numeric id order), ``VideoStore`` (an mp4 decoded
with PyAV) and ``ArrayStore`` (arrays in memory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from posevlm.errors import InputFileError

__all__ = [
    "FrameStore",
    "ImageFolderStore",
    "ArrayStore",
    "numeric_frame_id",
    "image_hw_of",
    "sorted_numerically",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ImageKind = Literal["rgb", "depth", "instance"]
_NUMBER = re.compile(r"(\d+)")


@runtime_checkable
class FrameStore(Protocol):
    """Frames addressed by integer frame id.

    ``frame_ids``: (S,) int64, ascending. ``read(id)`` returns one array; ``read_many(ids)`` a stacked
    (N, ...) array in the order asked for (ids may repeat).
    """

    frame_ids: np.ndarray

    def read(self, frame_id: int) -> np.ndarray: ...

    def read_many(self, frame_ids: Sequence[int]) -> np.ndarray: ...


def numeric_frame_id(path: str | Path) -> int:
    """The last run of digits in a file name without its image suffix: ``frame_10070.png`` -> 10070.

    Loaders whose names carry timestamps (ARKitScenes) parse their own names instead."""
    stem = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    numbers = _NUMBER.findall(stem)
    if not numbers:
        raise InputFileError(
            f"cannot read a frame number from file name {Path(path).name!r}; name frames like frame_000123.png",
            path=path,
        )
    return int(numbers[-1])


def sorted_numerically(paths: Iterable[str | Path]) -> list[Path]:
    """Sort frame files by their numeric id (frame_1008 before frame_10070), ties by name."""
    return sorted((Path(p) for p in paths), key=lambda p: (numeric_frame_id(p), p.name))


def image_hw_of(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file read from its header (no decoding)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read image {path} ({exc}); re-export or re-download this frame.", path=path) from exc
    return int(h), int(w)


def _check_ids(store_ids: np.ndarray, frame_ids: Sequence[int], where: str) -> np.ndarray:
    ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    missing = np.setdiff1d(ids, store_ids)
    if missing.size:
        raise KeyError(
            f"{where}: frame id(s) {missing[:8].tolist()} not available; valid ids run "
            f"{int(store_ids[0])}..{int(store_ids[-1])} ({store_ids.size} frames)"
        )
    return ids


class ImageFolderStore:
    """One image file per frame.

    Args:
        paths_by_id: mapping frame id -> image file.
        kind: ``"rgb"`` (uint8 (H, W, 3)), ``"depth"`` (float32 (H, W) metres, 0 = invalid; integer
            files are divided by ``depth_scale``, e.g. 1000 for millimetres) or ``"instance"``
            (int32 (H, W)).
    """

    def __init__(self, paths_by_id: dict[int, Path], kind: ImageKind = "rgb", *, depth_scale: float = 1000.0):
        if not paths_by_id:
            raise InputFileError("an image folder store needs at least one frame")
        self.kind = kind
        self.depth_scale = float(depth_scale)
        self._paths = {int(k): Path(v) for k, v in paths_by_id.items()}
        self.frame_ids = np.array(sorted(self._paths), dtype=np.int64)

    @classmethod
    def from_folder(cls, folder: str | Path, kind: ImageKind = "rgb", **kw) -> "ImageFolderStore":
        """All images in ``folder``, keyed by the number in each file name (numeric, not lexicographic)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputFileError(f"frame folder {folder} does not exist", path=folder)
        files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise InputFileError(
                f"frame folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images", path=folder
            )
        by_id: dict[int, Path] = {}
        for p in sorted_numerically(files):
            fid = numeric_frame_id(p)
            if fid in by_id:
                raise InputFileError(
                    f"frame folder {folder}: {by_id[fid].name} and {p.name} share frame number {fid}", path=folder
                )
            by_id[fid] = p
        return cls(by_id, kind, **kw)

    def path(self, frame_id: int) -> Path:
        _check_ids(self.frame_ids, [frame_id], "ImageFolderStore")
        return self._paths[int(frame_id)]

    def read(self, frame_id: int) -> np.ndarray:
        path = self.path(frame_id)
        try:
            with Image.open(path) as im:
                if self.kind == "rgb":
                    return np.asarray(im.convert("RGB"))
                arr = np.asarray(im)
        except (OSError, ValueError) as exc:
            raise InputFileError(f"cannot read image {path}: {exc}. Re-export or remove this frame.", path=path) from exc
        if self.kind == "depth":
            if arr.dtype.kind in "iu":
                return arr.astype(np.float32) / self.depth_scale
            return arr.astype(np.float32)
        return arr.astype(np.int32)

    def read_many(self, frame_ids: Sequence[int]) -> np.ndarray:
        ids = _check_ids(self.frame_ids, frame_ids, "ImageFolderStore")
        return np.stack([self.read(int(i)) for i in ids])


class ArrayStore:
    """Frames held in memory: ``array`` (S, ...) aligned with ``frame_ids`` (S,)."""

    def __init__(self, array: np.ndarray, frame_ids: Sequence[int]):
        self.array = np.asarray(array)
        ids = np.asarray(frame_ids, dtype=np.int64)
        if ids.shape != (self.array.shape[0],):
            raise InputFileError(f"{self.array.shape[0]} frames but {ids.size} frame ids")
        order = np.argsort(ids, kind="stable")
        self.array, self.frame_ids = self.array[order], ids[order]

    def read(self, frame_id: int) -> np.ndarray:
        return self.read_many([frame_id])[0]

    def read_many(self, frame_ids: Sequence[int]) -> np.ndarray:
        ids = _check_ids(self.frame_ids, frame_ids, "ArrayStore")
        return self.array[np.searchsorted(self.frame_ids, ids)]
