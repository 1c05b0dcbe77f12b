"""Spatial encoders behind one interface (pure torch; never imports transformers, models, eval or sampling).

- :mod:`posevlm.spatial.base`: the :class:`SpatialEncoder` protocol, its :class:`SpatialEncoding` output, the
  ``spatial_encoders`` registry (entry-point group ``posevlm.spatial_encoders``) and
  :func:`load_spatial_encoder`.
- :mod:`posevlm.spatial.vggt`: VGGT (aggregator, camera head, DPT depth / point heads) in the released
  facebook/VGGT-1B key layout; :func:`load_vggt`.
- :mod:`posevlm.spatial.weights`: safetensors / hub loading with key reports, saving, dtype policy.
- :mod:`posevlm.spatial.points`: point clouds (SpatialLM ``[N, 9]``) -> voxel tokens: ``voxelize_points``, the
  ``point_encoders`` registry and its built-in ``voxel_mlp`` encoder.

The model and weight modules load on first use of one of their names, so the registry can be read cheaply.
"""

from __future__ import annotations

import importlib
from typing import Any

from posevlm.spatial.base import SpatialEncoder, SpatialEncoding, load_spatial_encoder, resolve_layers, spatial_encoders

_LAZY = {
    "posevlm.spatial.vggt": ("VGGT", "VGGTConfig", "AggregatorOutput", "VGGTPrediction", "decode_pose_encoding",
                             "load_vggt", "save_vggt"),
    "posevlm.spatial.weights": ("CheckpointError", "KeyReport", "resolve_checkpoint", "compare_keys", "load_weights",
                                "save_weights", "resolve_precision", "apply_dtype_policy"),
    "posevlm.spatial.points": ("PointBatch", "voxelize_points", "PointEncoderConfig", "PointEncoder",
                               "VoxelMLPEncoder", "point_encoders", "build_point_encoder"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["SpatialEncoder", "SpatialEncoding", "spatial_encoders", "load_spatial_encoder", "resolve_layers",
           *_WHERE]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'posevlm.spatial' has no attribute {name!r}")
