"""Geometry models run on pool frames to get cameras and point maps when a scan has no ground truth.

Both adapters return the keyword arguments of :func:`posevlm.scenes.save_predictions`, so a model
runs once per scan and its output is reused from the predictions npz afterwards.

- ``vggt``: facebook/VGGT-1B through posevlm's own implementation (:mod:`posevlm.spatial.vggt`; no external
  package). Preprocessing follows the reference sampler: portrait frames turned clockwise, width 518,
  height ``round(h * 518 / w / 14) * 14``, centre crop to 518 if taller; outputs decoded from the
  9-number pose encoding (w2c, OpenCV) with the preprocessed size. Long clips run in chunks (the
  anchor rule of :func:`predict_vggt_chunked`).
- ``da3``: Depth-Anything-3 (``pip install depth-anything-3``); ``Prediction.extrinsics`` are w2c
  (the package re-references them with ``ex @ inv(ex[0])``), intrinsics refer to
  ``processed_images``; world points are back-projected from its depth.

Model weights come from the Hugging Face hub id or a local directory; set ``HF_HUB_OFFLINE=1`` to
use the local cache only.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from PIL import Image

from posevlm.errors import ConfigError
from posevlm.geometry.depth import backproject_depth

__all__ = ["GEOMETRY_MODELS", "vggt_preprocess", "predict_vggt_chunked", "load_vggt_predictor", "predict_geometry"]

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


@functools.lru_cache(maxsize=1)
def load_vggt_predictor(weights: str, device: str, dtype: str | None):
    """The VGGT model (all heads) for ``weights`` (a hub id, a directory or a ``.safetensors`` file), loaded once
    per process and reused for every scene."""
    from posevlm.spatial import load_vggt

    return load_vggt(weights, device=device, dtype=None if dtype is None else getattr(torch, dtype))


def _anchor_scale(depth_ref: torch.Tensor, conf_ref: torch.Tensor, depth: torch.Tensor, conf: torch.Tensor) -> float:
    """Scale taking a chunk's depth of the anchor frame onto the first chunk's: the median ratio over pixels
    whose confidence is at least the median in both predictions (and whose depths are positive)."""
    keep = (conf_ref >= conf_ref.median()) & (conf >= conf.median()) & (depth_ref > 0) & (depth > 0)
    if not bool(keep.any()):
        raise ConfigError("cannot align chunks: the anchor frame has no confident depth in both predictions; use "
                          "a larger --chunk (or fewer frames)", field="chunk")
    return float((depth_ref[keep] / depth[keep]).median())


def predict_vggt_chunked(model, images: torch.Tensor, *, chunk: int = 48,
                         precision: str = "auto") -> dict[str, Any]:
    """VGGT on (P, 3, H, W) frames in [0, 1], ``chunk`` frames per forward at most.

    Chunk rule: frames 0..chunk-1 run together; every later chunk runs as [frame 0] + its next chunk - 1 frames.
    VGGT makes the first frame of a forward its world frame, so every chunk's cameras and points are in frame 0's
    camera coordinates; only the scale differs (VGGT normalises each forward's scene). Chunk k is scaled by
    ``s_k`` = the median ratio of frame 0's depth in the first chunk to frame 0's depth in chunk k (pixels with
    at least median confidence in both): translations, depths and points are multiplied by ``s_k``; the
    anchor's repeated outputs are dropped. One chunk (P <= chunk) is one plain forward.

    Returns:
        ``w2c_opencv`` (P, 4, 4), ``K_pixels`` (P, 3, 3) in pixels of (H, W), ``depth`` / ``depth_conf`` (P, H, W),
        ``world_points`` (P, H, W, 3), ``world_points_conf`` (P, H, W) as float32 numpy arrays, and
        ``chunks``: the frame positions and scale of every chunk.
    """
    if chunk < 2:
        raise ConfigError(f"chunk must be >= 2 frames; got {chunk}", field="chunk", value=chunk)
    n = images.shape[0]
    device = next(model.parameters()).device
    groups = [list(range(min(chunk, n)))]
    rest = list(range(len(groups[0]), n))
    groups += [[0, *rest[i:i + chunk - 1]] for i in range(0, len(rest), chunk - 1)]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("w2c", "K", "depth", "depth_conf", "points", "points_conf")}
    ref = None
    chunks = []
    for g, frames in enumerate(groups):
        pred = model.predict(images[frames].to(device)[None], precision=precision)
        w2c, K = (t[0].float().cpu() for t in pred.cameras())
        depth, dconf = pred.depth[0, ..., 0].float().cpu(), pred.depth_conf[0].float().cpu()
        points, pconf = pred.world_points[0].float().cpu(), pred.world_points_conf[0].float().cpu()
        scale = 1.0
        if g == 0:
            ref = (depth[0], dconf[0])
        else:
            scale = _anchor_scale(ref[0], ref[1], depth[0], dconf[0])
            w2c, K, depth, dconf, points, pconf = (t[1:] for t in (w2c, K, depth, dconf, points, pconf))
            w2c[:, :3, 3] *= scale
            depth, points = depth * scale, points * scale
        for key, value in zip(parts, (w2c, K, depth, dconf, points, pconf)):
            parts[key].append(value)
        chunks.append({"frames": [f for f in frames if g == 0 or f != 0], "scale": scale})
    cat = {k: torch.cat(v).numpy() for k, v in parts.items()}
    return {"w2c_opencv": cat["w2c"].astype(np.float64), "K_pixels": cat["K"].astype(np.float64),
            "depth": cat["depth"], "depth_conf": cat["depth_conf"], "world_points": cat["points"],
            "world_points_conf": cat["points_conf"], "chunks": chunks}


def _predict_vggt(frames: np.ndarray, model_id: str, device: torch.device, *, chunk: int = 48,
                  image_width: int = 518, dtype: str | None = None) -> dict[str, Any]:
    images, ops = vggt_preprocess(frames, width=image_width)
    model = load_vggt_predictor(str(model_id), str(device), dtype)
    out = predict_vggt_chunked(model, images, chunk=chunk)
    h, w = images.shape[-2:]
    return {
        "w2c_opencv": out["w2c_opencv"],
        "K_pixels": out["K_pixels"],
        "image_hw": (h, w),
        "world_points": out["world_points"].astype(np.float16),
        "world_points_conf": out["world_points_conf"].astype(np.float16),
        "depth": out["depth"].astype(np.float16),
        "depth_conf": out["depth_conf"].astype(np.float16),
        "preprocess": ops,
        "meta": {"model": "vggt", "weights": str(model_id), "config": model.config.to_dict(),
                 "world_frame": "first frame camera", "scale": "normalized", "chunk": chunk,
                 "chunks": out["chunks"], "image_width": image_width},
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


def predict_geometry(name: str, frames: np.ndarray, *, model_id: str | None = None, device: str | None = None,
                     **options: Any) -> dict[str, Any]:
    """Run geometry model ``name`` (vggt | da3) on (P, H, W, 3) uint8 frames; returns
    ``save_predictions`` keyword arguments (without ``frame_ids``). ``options`` (vggt): ``chunk`` (frames per
    forward, default 48), ``image_width`` (default 518, a multiple of 14), ``dtype`` (aggregator storage dtype)."""
    if name not in GEOMETRY_MODELS:
        raise ConfigError(f"unknown geometry model {name!r}; choose {', '.join(GEOMETRY_MODELS)}", field="geometry")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ConfigError(f"frames must be (P, H, W, 3) uint8; got {frames.shape}", field="frames")
    if name == "vggt":
        out = _predict_vggt(frames, model_id or GEOMETRY_MODELS[name], _device(device), **options)
    else:
        if options:
            raise ConfigError(f"geometry 'da3' takes no options; got {sorted(options)}", field="geometry")
        out = _predict_da3(frames, model_id or GEOMETRY_MODELS[name], _device(device))
    out["source_image_hw"] = tuple(int(v) for v in frames.shape[1:3])
    return out
