"""Geometry models run on pool frames to get cameras and point maps when a scan has no ground truth.

Both adapters return the keyword arguments of :func:`posevlm.scenes.save_predictions`, so a model
runs once per scan and its output is reused from the predictions npz afterwards.

- ``vggt``: facebook/VGGT-1B (``pip install git+https://github.com/facebookresearch/vggt``; not on
  PyPI). Preprocessing follows the reference sampler: portrait frames turned clockwise, width 518,
  height ``round(h * 518 / w / 14) * 14``, centre crop to 518 if taller; outputs decoded from the
  9-number pose encoding (w2c, OpenCV) with the preprocessed size.
- ``da3``: Depth-Anything-3 (``pip install depth-anything-3``); ``Prediction.extrinsics`` are w2c
  (the package re-references them with ``ex @ inv(ex[0])``), intrinsics refer to
  ``processed_images``; world points are back-projected from its depth.

Model weights come from the Hugging Face hub id or a local directory; set ``HF_HUB_OFFLINE=1`` to
use the local cache only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from posevlm.errors import ConfigError
from posevlm.geometry.depth import backproject_depth

__all__ = ["GEOMETRY_MODELS", "vggt_preprocess", "predict_geometry"]

GEOMETRY_MODELS = {"vggt": "facebook/VGGT-1B", "da3": "depth-anything/DA3-LARGE"}


def vggt_preprocess(frames: np.ndarray, width: int = 518) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """(P, H, W, 3) uint8 -> ((P, 3, h, w) float in [0, 1], preprocess ops for the predictions file)."""
    ops: list[dict[str, Any]] = []
    if frames.shape[1] > frames.shape[2]:
        frames = np.rot90(frames, k=-1, axes=(1, 2))
        ops.append({"op": "rotate90", "k": -1})
    h, w = frames.shape[1:3]
    new_h = int(round(h * width / w / 14) * 14)
    resized = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f)).resize((width, new_h), Image.BICUBIC))
                        for f in frames])
    ops.append({"op": "resize", "hw": [new_h, width]})
    if new_h > width:
        top = (new_h - width) // 2
        resized = resized[:, top : top + width]
        ops.append({"op": "crop", "top": top, "left": 0, "hw": [width, width]})
    return torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0, ops


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _predict_vggt(frames: np.ndarray, model_id: str, device: torch.device) -> dict[str, Any]:
    try:
        from vggt.models.vggt import VGGT
    except ImportError as exc:
        raise ConfigError(
            "geometry 'vggt' needs the vggt package: pip install git+https://github.com/facebookresearch/vggt "
            "(or precompute predictions and pass --geometry predictions)", field="geometry") from exc
    images, ops = vggt_preprocess(frames)
    model = VGGT.from_pretrained(model_id).to(device).eval()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=dtype, enabled=device.type == "cuda"):
        out = model(images.to(device))
    h, w = images.shape[-2:]
    return {
        "pose_encoding": out["pose_enc"][0].float().cpu().numpy(),
        "image_hw": (h, w),
        "world_points": out["world_points"][0].float().cpu().numpy().astype(np.float16),
        "world_points_conf": out["world_points_conf"][0].float().cpu().numpy().astype(np.float16),
        "depth": out["depth"][0, ..., 0].float().cpu().numpy().astype(np.float16),
        "preprocess": ops,
        "meta": {"model": model_id, "world_frame": "first frame camera", "scale": "normalized"},
    }


def _predict_da3(frames: np.ndarray, model_id: str, device: torch.device) -> dict[str, Any]:
    try:
        from depth_anything_3.api import DepthAnything3
    except ImportError as exc:
        raise ConfigError("geometry 'da3' needs: pip install depth-anything-3", field="geometry") from exc
    model = DepthAnything3.from_pretrained(model_id).to(device).eval()
    pred = model.inference([np.ascontiguousarray(f) for f in frames], ref_view_strategy="first")
    depth = np.asarray(pred.depth, dtype=np.float32)
    h, w = depth.shape[1:]
    w2c = torch.as_tensor(np.asarray(pred.extrinsics), dtype=torch.float64)
    if w2c.shape[-2:] == (3, 4):
        w2c = torch.cat([w2c, torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(len(w2c), 1, 4)], dim=1)
    K = torch.as_tensor(np.asarray(pred.intrinsics), dtype=torch.float64)
    world = backproject_depth(depth, K.numpy(), w2c.numpy())  # NaN where depth is missing
    valid = np.isfinite(world).all(-1)
    conf = np.asarray(pred.conf if pred.conf is not None else np.ones_like(depth), dtype=np.float32)
    world, conf = np.where(valid[..., None], world, 0.0), np.where(valid, conf, 0.0)  # conf 0 < conf_floor
    return {
        "w2c_opencv": w2c.numpy(),
        "K_pixels": K.numpy(),
        "image_hw": (h, w),
        "world_points": world.astype(np.float16),
        "world_points_conf": conf.astype(np.float16),
        "depth": depth.astype(np.float16),
        "preprocess": [{"op": "resize", "hw": [h, w]}],
        "meta": {"model": model_id, "world_frame": "first frame camera",
                 "scale": "metric" if getattr(pred, "is_metric", 0) else "normalized"},
    }


def predict_geometry(name: str, frames: np.ndarray, *, model_id: str | None = None,
                     device: str | None = None) -> dict[str, Any]:
    """Run geometry model ``name`` (vggt | da3) on (P, H, W, 3) uint8 frames; returns
    ``save_predictions`` keyword arguments (without ``frame_ids``)."""
    if name not in GEOMETRY_MODELS:
        raise ConfigError(f"unknown geometry model {name!r}; choose {', '.join(GEOMETRY_MODELS)}", field="geometry")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ConfigError(f"frames must be (P, H, W, 3) uint8; got {frames.shape}", field="frames")
    run = _predict_vggt if name == "vggt" else _predict_da3
    out = run(frames, model_id or GEOMETRY_MODELS[name], _device(device))
    out["source_image_hw"] = tuple(int(v) for v in frames.shape[1:3])
    return out


