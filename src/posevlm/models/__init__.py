"""Model integrations (transformers 5.x): pose-aware positions on stock Qwen2.5-VL / Qwen3-VL, MixedRoPE3D and the
point-cloud LM on stock Qwen2 / Qwen2.5 / Qwen3 decoders."""

from posevlm.models import pose_inputs
from posevlm.models.pose_inputs import PoseInputs

from posevlm.models.mixed_rope3d import enable_mixed_rope3d, load_mixed_rope3d_model
from posevlm.models.point_lm import PointCloudLM, PointCloudLMConfig
from posevlm.models.pose_positions import (
    CONFIG_KEY,
    PoseRotaryEmbedding,
    enable_pose_positions,
    load_learned_slopes,
    load_pose_model,
    pose_positions_config,
)

__all__ = ["pose_inputs", "PoseInputs", "CONFIG_KEY", "PoseRotaryEmbedding", "enable_pose_positions", "load_learned_slopes", "load_pose_model",
           "pose_positions_config", "enable_mixed_rope3d", "load_mixed_rope3d_model", "PointCloudLM",
           "PointCloudLMConfig"]
