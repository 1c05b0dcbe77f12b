"""Camera-aware attention in pure torch: PRoPE, GTA and CaPE transforms around an unmodified SDPA, and a
geodesic-ALiBi pose-distance bias. Never imports transformers (integrations live in ``posevlm.models``).

Typical forward::

    cams = attention_cameras(w2c_opencv, K_pixels, image_hw, mode="prope")       # (B, C, 4, 4), once
    tf = build_camera_transform(cams, camera_index, CameraDims.from_range(0, 32), "prope")  # once
    o = camera_sdpa(q, k, v, tf, is_causal=True)                                  # every layer

Pose-distance bias: ``biased_sdpa(q, k, v, pose_distance_table(w2c), ci, ci, slopes, is_causal=True)`` (the
bias as extra q/k head dims, exact; ``pose_distance_bias`` is the dense (B, H, L, L) reference).

See ``design.md`` for conventions (text tokens = identity = reference camera).
"""

from posevlm.attention.bias import (
    alibi_slopes,
    append_bias_dims,
    bias_dims_width,
    biased_sdpa,
    pose_bias_key_dims,
    pose_bias_query_dims,
    pose_distance_bias,
    pose_distance_score_mod,
    pose_distance_table,
)
from posevlm.attention.cameras import CameraModeSpec, affine_inverse, attention_cameras, camera_modes
from posevlm.attention.transform import (
    CameraDims,
    CameraTransform,
    build_camera_transform,
    camera_sdpa,
    naive_camera_sdpa,
    rope2d,
)

__all__ = [
    "attention_cameras", "affine_inverse", "CameraModeSpec", "camera_modes",
    "CameraDims", "CameraTransform", "build_camera_transform", "camera_sdpa", "naive_camera_sdpa", "rope2d",
    "pose_distance_table", "pose_distance_bias", "alibi_slopes", "pose_distance_score_mod",
    "bias_dims_width", "pose_bias_query_dims", "pose_bias_key_dims", "append_bias_dims", "biased_sdpa",
]  # fmt: skip
