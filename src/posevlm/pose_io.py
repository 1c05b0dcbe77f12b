"""Thin input module: read a video's pose inputs (cameras and frame ids) from where they live, as
:class:`posevlm.models.pose_inputs.PoseInputs`.

Sources, each returning one video's cameras in the order its frames are given to the processor:

* a sampling manifest (``selected_frames.json`` schema 2, ``selected[].w2c_opencv``): :func:`from_manifest`;
* a scene with cameras (ground truth): :func:`from_scene`;
* a geometry-predictions npz (VGGT / DA3, cameras re-expressed for the source frames): :func:`from_predictions`;
* an evaluation ``FrameSpec`` (frames loaded from a manifest): :func:`from_frame_spec`.

File reading happens here and in the readers it calls (``posevlm.sampling.manifest``,
``posevlm.scenes.predictions``); ``posevlm.models`` keeps only the tensors (``PoseInputs``,
``model_kwargs``). The old names ``posevlm.models.pose_inputs.from_manifest`` etc. still resolve to these
functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import InputFileError
from posevlm.models.pose_inputs import PoseInputs
from posevlm.sampling.manifest import read_manifest
from posevlm.scenes.predictions import load_predictions

__all__ = ["from_manifest", "from_scene", "from_predictions", "from_frame_spec"]


def from_manifest(manifest: str | Path | Mapping[str, Any]) -> PoseInputs:
    """Cameras of a schema-2 sampling manifest (a path to ``selected_frames.json``, its folder, or the
    parsed dict). Legacy manifests carry no cameras: InputFileError says how to get them."""
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
    return PoseInputs.from_arrays(pick("frame_id"), pick("w2c_opencv"), pick("K_pixels") if has_k else None,
                                  pick("image_hw") if has_k else None, source=where)


def from_scene(scene, frame_ids: Sequence[int]) -> PoseInputs:
    """Ground-truth cameras of ``frame_ids`` (in that order) of a ``posevlm.scenes.Scene``."""
    if scene.cameras is None:
        raise InputFileError(f"scene {scene.name!r} has no cameras; load it with a pose file or use "
                             "geometry predictions", path=getattr(scene, "root", scene.name))
    cams = scene.cameras_for(frame_ids)
    return PoseInputs.from_arrays(frame_ids, cams.w2c_opencv, cams.K_pixels, cams.image_hw,
                                  source=f"scene {scene.name}")


def from_predictions(predictions, frame_ids: Sequence[int] | None = None) -> PoseInputs:
    """Cameras of a geometry-predictions npz (path or ``GeometryPredictions``), for ``frame_ids`` (default:
    every predicted frame). Intrinsics are re-expressed for the source frames when the file records
    ``source_image_hw``, else they refer to the geometry model's input size (``image_hw`` says which)."""
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
    return PoseInputs.from_arrays(ids[pos], cams.w2c_opencv[pos], cams.K_pixels[pos], cams.image_hw[pos],
                                  source=str(preds.path or "predictions"))


def from_frame_spec(spec) -> PoseInputs | None:
    """Cameras of an evaluation ``FrameSpec`` (frames read from a sampling manifest), or None if it has none."""
    if spec.w2c_opencv is None:
        return None
    return PoseInputs.from_arrays(spec.frame_ids, spec.w2c_opencv, spec.K_pixels, spec.image_hw,
                                  source=str(spec.provenance.get("manifest_path",
                                                                 spec.provenance.get("source", "frames"))))
