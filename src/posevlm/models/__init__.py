"""Model integrations (transformers 5.x): pose-aware positions on stock Qwen2.5-VL / Qwen3-VL."""

from posevlm.models import pose_inputs
from posevlm.models.pose_inputs import PoseInputs

from posevlm.models.pose_positions import (
    CONFIG_KEY,
    PoseRotaryEmbedding,
    enable_pose_positions,
    load_learned_slopes,
    load_pose_model,
    pose_positions_config,
)

__all__ = ["pose_inputs", "PoseInputs", "CONFIG_KEY", "PoseRotaryEmbedding", "enable_pose_positions", "load_learned_slopes", "load_pose_model",
           "pose_positions_config"]
