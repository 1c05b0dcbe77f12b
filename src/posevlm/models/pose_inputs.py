"""The per-video pose inputs of a pose-aware model (cameras and frame ids) from the places they live.

One video's inputs are a :class:`PoseInputs`: ``frame_ids`` (S,) source frame ids and ``w2c_opencv``
(S, 4, 4) world-to-camera, OpenCV axes, one per frame *in the order the frames are given to the
processor*, optionally ``K_pixels`` (S, 3, 3) with the ``image_hw`` (S, 2) they refer to. Sources:

* a sampling manifest (``selected_frames.json`` schema 2, ``selected[].w2c_opencv``): :func:`from_manifest`;
* a scene with cameras (ground truth): :func:`from_scene`;
* a geometry-predictions npz (VGGT / DA3, cameras re-expressed for the source frames): :func:`from_predictions`;
* an evaluation ``FrameSpec`` (frames loaded from a manifest): :func:`from_frame_spec`.

:func:`model_kwargs` stacks several videos into the extra keyword arguments of ``forward`` / ``generate``
of a model prepared with :func:`posevlm.models.enable_pose_positions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import InputFileError, ShapeError
from posevlm.geometry import validate_w2c

__all__ = ["PoseInputs", "from_manifest", "from_scene", "from_predictions", "from_frame_spec", "model_kwargs"]


@dataclass(frozen=True)
class PoseInputs:
    """Cameras of one video's frames, in processor order. S frames.

    Attributes:
        frame_ids: (S,) int64 source frame ids.
        w2c_opencv: (S, 4, 4) float64 world-to-camera, OpenCV axes.
        K_pixels: (S, 3, 3) float64 intrinsics in pixels of ``image_hw``, or None.
        image_hw: (S, 2) int64 (H, W) the intrinsics refer to, or None.
        source: where the cameras came from (a path or a description).
    """

    frame_ids: Tensor
    w2c_opencv: Tensor
    K_pixels: Tensor | None = None
    image_hw: Tensor | None = None
    source: str = ""

    def __post_init__(self) -> None:
        s = self.frame_ids.shape[0]
        if self.frame_ids.ndim != 1:
            raise ShapeError(f"frame_ids must be (S,); got {tuple(self.frame_ids.shape)}", name="frame_ids",
                             shape=tuple(self.frame_ids.shape))
        if self.w2c_opencv.shape != (s, 4, 4):
            raise ShapeError(f"w2c_opencv must be ({s}, 4, 4) to match {s} frame ids; got "
                             f"{tuple(self.w2c_opencv.shape)} (source: {self.source})", name="w2c_opencv",
                             shape=tuple(self.w2c_opencv.shape))
        if self.K_pixels is not None and self.K_pixels.shape != (s, 3, 3):
            raise ShapeError(f"K_pixels must be ({s}, 3, 3); got {tuple(self.K_pixels.shape)}", name="K_pixels",
                             shape=tuple(self.K_pixels.shape))
        validate_w2c(self.w2c_opencv, source=f"w2c_opencv of {self.source or 'pose inputs'}")

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])


def _make(frame_ids, w2c, K, hw, source: str) -> PoseInputs:
    as64 = lambda x, dt: None if x is None else torch.as_tensor(np.asarray(x), dtype=dt)  # noqa: E731
    return PoseInputs(as64(frame_ids, torch.int64).reshape(-1), as64(w2c, torch.float64), as64(K, torch.float64),
                      as64(hw, torch.int64), source)


def from_manifest(manifest: str | Path | Mapping[str, Any]) -> PoseInputs:
    """Cameras of a schema-2 sampling manifest (a path to ``selected_frames.json``, its folder, or the
    parsed dict). Legacy manifests carry no cameras: InputFileError says how to get them."""
    from posevlm.sampling.manifest import read_manifest

    doc = read_manifest(manifest) if not isinstance(manifest, Mapping) else dict(manifest)
    where = str(manifest) if not isinstance(manifest, Mapping) else f"manifest of {doc.get('scene_name', '?')}"
    selected = doc.get("selected")
    if not isinstance(selected, list) or not selected or any(s.get("w2c_opencv") is None for s in selected):
        raise InputFileError(f"{where} carries no per-frame cameras (selected[].w2c_opencv); it is a legacy or "
                             "camera-less manifest. Re-run `posevlm sample` on a scene with poses or with "
                             "--geometry predictions, or pass cameras from the scene / predictions file",
                             path=where)
    pick = lambda k: [s.get(k) for s in selected]  # noqa: E731
    has_k = all(v is not None for v in pick("K_pixels"))
    return _make(pick("frame_id"), pick("w2c_opencv"), pick("K_pixels") if has_k else None,
                 pick("image_hw") if has_k else None, where)


def from_scene(scene, frame_ids: Sequence[int]) -> PoseInputs:
    """Ground-truth cameras of ``frame_ids`` (in that order) of a ``posevlm.scenes.Scene``."""
    if scene.cameras is None:
        raise InputFileError(f"scene {scene.name!r} has no cameras; load it with a pose file or use "
                             "geometry predictions", path=getattr(scene, "root", scene.name))
    cams = scene.cameras_for(frame_ids)
    return _make(frame_ids, cams.w2c_opencv, cams.K_pixels, cams.image_hw, f"scene {scene.name}")


def from_predictions(predictions, frame_ids: Sequence[int] | None = None) -> PoseInputs:
    """Cameras of a geometry-predictions npz (path or ``GeometryPredictions``), for ``frame_ids`` (default:
    every predicted frame). Intrinsics are re-expressed for the source frames when the file records
    ``source_image_hw``, else they refer to the geometry model's input size (``image_hw`` says which)."""
    from posevlm.scenes.predictions import load_predictions

    preds = load_predictions(predictions) if isinstance(predictions, (str, Path)) else predictions
    cams = preds.cameras_in_source_frame() if preds.source_image_hw is not None else preds.cameras
    ids = np.asarray(preds.frame_ids, dtype=np.int64)
    if frame_ids is None:
        pos = np.arange(ids.size)
    else:
        order = np.argsort(ids, kind="stable")
        want = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        found = np.searchsorted(ids[order], want).clip(max=max(ids.size - 1, 0))
        missing = want[ids[order][found] != want] if ids.size else want
        if missing.size:
            raise InputFileError(f"predictions {preds.path} have no camera for frame id(s) "
                                 f"{missing[:8].tolist()}; run the geometry model on these frames",
                                 path=preds.path)
        pos = order[found]
    return _make(ids[pos], cams.w2c_opencv[pos], cams.K_pixels[pos], cams.image_hw[pos],
                 str(preds.path or "predictions"))


def from_frame_spec(spec) -> PoseInputs | None:
    """Cameras of an evaluation ``FrameSpec`` (frames read from a sampling manifest), or None if it has none."""
    if spec.w2c_opencv is None:
        return None
    return _make(spec.frame_ids, spec.w2c_opencv, spec.K_pixels, spec.image_hw,
                 str(spec.provenance.get("manifest_path", spec.provenance.get("source", "frames"))))


def model_kwargs(videos: Sequence[PoseInputs], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> dict[str, list[Tensor]]:
    """``{"w2c_opencv": [(S_i, 4, 4)], "frame_ids": [(S_i,)]}`` (plus ``K_pixels`` / ``image_hw`` when every video
    has intrinsics, for PRoPE) for the videos of a batch in processor order (row-major over samples, then
    videos within a sample), ready for ``model.generate(**inputs, **kw)``."""
    out = {"w2c_opencv": [v.w2c_opencv.to(device=device, dtype=dtype) for v in videos],
           "frame_ids": [v.frame_ids.to(device=device) for v in videos]}
    if videos and all(v.K_pixels is not None and v.image_hw is not None for v in videos):
        out["K_pixels"] = [v.K_pixels.to(device=device, dtype=dtype) for v in videos]
        out["image_hw"] = [v.image_hw.to(device=device) for v in videos]
    return out
