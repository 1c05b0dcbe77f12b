"""Thin input module: the frames of one video from where they live, as an evaluation ``FrameSpec``.

Sources (:func:`read_frames`):

* an mp4 (or any video PyAV decodes): ``num_frames`` uniform frames, qwen-vl-utils' rule (``round_full``, as the
  eval's ``mp4_uniform``);
* a posevlm frame folder (what ``posevlm sample`` writes) or its ``selected_frames.json``: the listed frames in
  manifest order, with the manifest's cameras when it has them (``FrameSpec.w2c_opencv``, ``K_pixels``,
  ``image_hw``);
* a folder of image frames (``*.png``, ``*.jpg``, ...) without a manifest: every frame, sorted by the number in its name
  (the fork's inference on a frames folder);
* frames in memory: a list of PIL images or (H, W, 3) uint8 arrays, an (S, H, W, 3) uint8 array, or an
  (S, 3, H, W) tensor (uint8, or float in [0, 1]); frame ids 0..S-1.

File reading happens here (and in the eval frame sources it calls); ``posevlm.models`` keeps only arrays and
tensors, and ``posevlm.models.spatial_mllm.answer`` reads paths through this module, imported on first use (as
``posevlm.models.pose_inputs`` does with :mod:`posevlm.pose_io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from posevlm.errors import InputFileError, ShapeError
from posevlm.eval.frames import FrameSpec, folder_manifest, mp4_uniform
from posevlm.sampling.manifest import MANIFEST_NAME, read_manifest
from posevlm.scenes.frames import IMAGE_SUFFIXES, numeric_frame_id, sorted_numerically

__all__ = ["read_frames", "frames_array"]


def frames_array(frames: Any) -> np.ndarray:
    """(S, H, W, 3) uint8 RGB of in-memory frames (see the module docstring for the accepted forms).

    Raises:
        ShapeError: not RGB frames of one size (names what arrived).
    """
    import torch

    if isinstance(frames, torch.Tensor):
        x = frames.detach().cpu()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ShapeError(f"a frames tensor must be (S, 3, H, W); got {tuple(x.shape)}", name="frames",
                             shape=tuple(x.shape))
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().numpy()
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        items = list(frames)
    elif isinstance(frames, (list, tuple)):
        items = list(frames)
    else:
        raise ShapeError(f"frames must be a list of PIL images / (H, W, 3) uint8 arrays, an (S, H, W, 3) array, an "
                         f"(S, 3, H, W) tensor, or a path; got {type(frames).__name__}", name="frames")
    if not items:
        raise ShapeError("frames is empty; pass at least one frame", name="frames")
    arrays = [np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in items]
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] != 3:
        raise ShapeError(f"frames must be RGB (H, W, 3) images of one size; got shapes {shapes[:4]}", name="frames")
    if any(a.dtype != np.uint8 for a in arrays):
        raise ShapeError(f"frame arrays must be uint8 (0..255); got {sorted({str(a.dtype) for a in arrays})}",
                         name="frames")
    return np.stack(arrays)


def _image_folder(folder: Path) -> FrameSpec:
    from PIL import Image

    files = sorted_numerically(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputFileError(f"{folder} holds no {MANIFEST_NAME} and no {'/'.join(IMAGE_SUFFIXES)} frames; pass a "
                             "frame folder, a video file or the frames themselves", path=folder)
    frames = []
    for path in files:
        with Image.open(path) as im:
            frames.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    ids = np.asarray([numeric_frame_id(p) for p in files], dtype=np.int64)
    return FrameSpec(ids, frames_array(frames), None, None, None, {"source": "image_folder", "path": str(folder)})


def read_frames(source: Any, *, num_frames: int = 16) -> FrameSpec:
    """The frames of ``source`` (module docstring) as a ``FrameSpec`` (frames (S, H, W, 3) uint8, frame ids,
    fps and length when known, cameras when a manifest carries them).

    Args:
        num_frames: frames taken from a video file (qwen-vl-utils rounds it to even); ignored otherwise.
    Raises:
        InputFileError / posevlm.eval.errors.SampleError subclasses: missing or unreadable files (name the path
        and the fix). ShapeError: in-memory frames of the wrong form.
    """
    if isinstance(source, FrameSpec):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.name == MANIFEST_NAME and path.is_file():
            path = path.parent
        if path.is_dir():
            if (path / MANIFEST_NAME).is_file():
                doc = read_manifest(path)
                n = len(doc.get("selected") or doc.get("selected_frames") or [])
                return folder_manifest(path, max(n, 1))
            return _image_folder(path)
        if not path.exists():
            raise InputFileError(f"{path} does not exist; pass a video file, a frame folder (with or without "
                                 f"{MANIFEST_NAME}) or the frames themselves", path=path)
        return mp4_uniform(path, num_frames)
    frames = frames_array(source)
    ids = np.arange(frames.shape[0], dtype=np.int64)
    return FrameSpec(ids, frames, None, None, None, {"source": "memory"})
