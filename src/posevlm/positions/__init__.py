"""Position-id builders (mRoPE variants, pose index P), multi-axis rotary tables and MixedRoPE3D (point tokens).

Never imports transformers."""

from posevlm.positions.plan import (
    PositionPlan,
    build_position_plan,
    merge_tubelet_scalars,
    pose_rows_per_tubelet,
)
from posevlm.positions.presets import (
    POSITION_MODES,
    PositionPreset,
    parse_spec_overrides,
    position_presets,
    position_spec,
    resolve_position_spec,
    spec_needs,
)
from posevlm.positions.rope3d import (
    MixedRoPE3D,
    MixedRoPE3DConfig,
    RotaryTables,
    normalize_point_coords,
    rope3d_config,
    rope3d_layout,
    rope3d_presets,
)
from posevlm.positions.rotary import (
    MultiAxisRotary,
    apply_rotary,
    chunked_slot_axis,
    interleaved_qwen3_slot_axis,
    mixed_axis_angles,
    rotary_tables,
)
from posevlm.positions.spec import PositionSpec
from posevlm.positions.token_map import (
    IMAGE,
    PAD,
    TEXT,
    VIDEO,
    ExtraVideoTokens,
    TokenMap,
    build_token_map,
    locate_extra_video_tokens,
)

__all__ = [
    "TokenMap", "build_token_map", "TEXT", "IMAGE", "VIDEO", "PAD", "ExtraVideoTokens", "locate_extra_video_tokens",
    "PositionSpec", "PositionPlan", "build_position_plan", "merge_tubelet_scalars", "pose_rows_per_tubelet",
    "POSITION_MODES", "PositionPreset", "position_presets", "position_spec", "parse_spec_overrides", "resolve_position_spec", "spec_needs",
    "MultiAxisRotary", "chunked_slot_axis", "interleaved_qwen3_slot_axis", "mixed_axis_angles", "rotary_tables",
    "apply_rotary",
    "MixedRoPE3D", "MixedRoPE3DConfig", "RotaryTables", "rope3d_layout", "rope3d_presets", "rope3d_config",
    "normalize_point_coords",
]
