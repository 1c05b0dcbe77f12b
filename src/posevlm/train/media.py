"""Thin input module: a record's media path -> decoded frames (a ``posevlm.eval.frames.FrameSpec``) or an image.

A video path is one of three sources, told apart on disk:

* a video file (``.mp4``, ``.mkv``, ...): ``num_frames`` uniform frames, the eval's ``round_full`` rule by
  default (``posevlm.eval.frames.Mp4Uniform``: ``round(linspace(0, T-1, N))`` after rounding N to even, as
  qwen-vl-utils reads an mp4);
* a folder with ``selected_frames.json`` (what ``posevlm sample`` writes): the manifest's frames in its order,
  with one camera per frame (``w2c_opencv``, ``K_pixels``, ``image_hw``) when the manifest has them
  (``posevlm.eval.frames.FolderManifest``; ``num_frames`` is the expected count, ``manifest_policy`` says what
  a different count does) -- so a selection strategy and its cameras travel into training;
* any other folder of images: ``num_frames`` uniform frames (the same rule) of the images sorted by the number
  in their names (:class:`ImageFolderUniform` over ``posevlm.scenes.ImageFolderStore``); frame ids are those
  numbers, the fps is unknown.

Decoding is the eval's and the scenes' code (one copy); failures are ``posevlm.eval.errors.SampleError``
(``missing_input``, ``decode_error``, ``frame_count_mismatch``) for the dataset's bad-sample rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.errors import DecodeError, MissingInputError
from posevlm.eval.frames import (
    COUNT_POLICIES, UNIFORM_RULES, CountPolicy, FolderManifest, FrameSpec, Mp4Uniform, UniformRule, uniform_frame_ids,
)  # fmt: skip
from posevlm.qwen_vision import qwen_nframes
from posevlm.sampling.manifest import MANIFEST_NAME

__all__ = ["FrameConfig", "ImageFolderUniform", "VideoRequest", "video_request", "load_video", "load_image",
           "resolve_media"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


@dataclass(frozen=True)
class FrameConfig:
    """How many frames a training video gives and how they are chosen.

    ``num_frames``: frames per mp4 / frame folder (``round_full`` rounds it to even), and the expected
    count of a manifest folder. ``rule``: the uniform rule of ``posevlm.eval.frames``. ``manifest_policy``:
    ``fail_sample`` (the manifest must list exactly ``num_frames``), ``allow_fewer`` or ``pad_repeat_last``.
    """

    num_frames: int = 16
    rule: UniformRule = "round_full"
    manifest_policy: CountPolicy = "fail_sample"

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            problems.append(f"num_frames={self.num_frames!r} (an int >= 1)")
        if self.rule not in UNIFORM_RULES:
            problems.append(f"rule={self.rule!r} (allowed: {', '.join(UNIFORM_RULES)})")
        if self.manifest_policy not in COUNT_POLICIES:
            problems.append(f"manifest_policy={self.manifest_policy!r} (allowed: {', '.join(COUNT_POLICIES)})")
        if problems:
            raise ConfigError("invalid FrameConfig: " + "; ".join(problems), field="frames")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageFolderUniform:
    """``n`` uniform frames (``rule``) of a folder of numbered images; ids are the numbers in the names."""

    path: str
    n: int
    rule: UniformRule = "round_full"
    source: str = field(default="image_folder_uniform", init=False)

    @property
    def n_used(self) -> int:
        return qwen_nframes(self.n) if self.rule == "round_full" else self.n

    def load(self) -> FrameSpec:
        from posevlm.scenes import ImageFolderStore

        try:
            store = ImageFolderStore.from_folder(self.path)
        except InputFileError as exc:
            raise MissingInputError(f"{exc}; expected a folder of numbered images (frame_000123.png)",
                                    input=self.path) from exc
        positions = uniform_frame_ids(int(store.frame_ids.size), self.n_used, self.rule)
        ids = store.frame_ids[positions]
        try:
            frames = store.read_many(ids)
        except (InputFileError, ValueError) as exc:  # unreadable file, or frames of different sizes
            raise DecodeError(f"frame folder {self.path}: {exc}", input=self.path) from exc
        return FrameSpec(ids, frames, None, None, int(store.frame_ids.size),
                         {**asdict(self), "n_used": self.n_used, "decoder": "pillow"})


VideoRequest = Union[Mp4Uniform, FolderManifest, ImageFolderUniform]


def resolve_media(media_root: str | Path, path: str) -> Path:
    """A record's media path resolved against the dataset's media root (absolute paths stay)."""
    return Path(media_root) / path


def video_request(path: str | Path, config: FrameConfig) -> VideoRequest:
    """The frame request of a video path (see the module docstring). Raises ``MissingInputError``."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return Mp4Uniform(str(path), config.num_frames, config.rule)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return FolderManifest(str(path), config.num_frames, config.manifest_policy)
        return ImageFolderUniform(str(path), config.num_frames, config.rule)
    what = "is not a video file" if path.exists() else "does not exist"
    raise MissingInputError(f"video {path} {what}; a record's video is a {'/'.join(VIDEO_SUFFIXES)} file, a folder "
                            f"with {MANIFEST_NAME} (posevlm sample) or a folder of numbered images; check the "
                            "dataset's media root", input=path)


def load_video(path: str | Path, config: FrameConfig) -> FrameSpec:
    """Decoded frames (and cameras, from a manifest) of one video path."""
    return video_request(path, config).load()


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file. Raises ``MissingInputError`` / ``DecodeError``."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"image {path} does not exist; check the dataset's media root", input=path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DecodeError(f"cannot read image {path} ({exc}); re-export it", input=path) from exc
