"""Public names of posevlm.positions are deliberate; positions never imports transformers."""

import pytest
import subprocess
import sys

import posevlm.positions
from layering import IMPORT_ALL, forbidden_static_imports, matching, modules_loaded_by

POSITIONS = {
    "TokenMap", "build_token_map", "TEXT", "IMAGE", "VIDEO", "PAD", "ExtraVideoTokens", "locate_extra_video_tokens",
    "PositionSpec", "PositionPlan",
    "build_position_plan", "merge_tubelet_scalars", "pose_rows_per_tubelet", "MultiAxisRotary",
    "chunked_slot_axis", "interleaved_qwen3_slot_axis", "POSITION_MODES", "PositionPreset", "position_presets",
    "position_spec", "parse_spec_overrides",
    "resolve_position_spec", "spec_needs", "mixed_axis_angles", "rotary_tables", "apply_rotary", "MixedRoPE3D",
    "MixedRoPE3DConfig", "RotaryTables", "rope3d_layout", "rope3d_presets", "rope3d_config", "normalize_point_coords",
}


def test_positions_public_names():
    assert set(posevlm.positions.__all__) == POSITIONS
    assert all(hasattr(posevlm.positions, name) for name in POSITIONS)


@pytest.mark.slow
def test_positions_does_not_import_transformers():
    code = "import sys, posevlm.positions; print('transformers' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = run.stdout.strip()
    assert out == "False"


#: What a leaf must not import: the packages above it, and transformers.
NOT_BELOW_POSITIONS = ("posevlm.eval", "posevlm.scenes", "posevlm.models", "posevlm.sampling", "posevlm.cli",
                       "posevlm.pose_io", "transformers")


def test_positions_is_a_leaf_in_every_import_statement():
    """Lazy, function-level imports included: the inspector's size rules come from posevlm.qwen_vision, its
    cameras from the caller (no eval backend, no synthetic-scene generator)."""
    assert forbidden_static_imports("posevlm.positions", NOT_BELOW_POSITIONS) == {}


@pytest.mark.slow
def test_positions_is_a_leaf_at_run_time():
    """Every module of posevlm.positions imported and the inspector run through both size rules and both
    layouts with a pose mode: nothing above positions gets loaded."""
    code = IMPORT_ALL.format(package="posevlm.positions") + """
import torch
from posevlm.positions.inspect import inspect_positions
w2c = torch.eye(4, dtype=torch.float64).repeat(16, 1, 1)
w2c[:, 0, 3] = -torch.arange(16, dtype=torch.float64)
for rule in ("round", "qwen_vl_utils"):
    inspect_positions(mode="pthw", w2c_opencv=w2c, size_rule=rule, size_wh=(160, 120))
inspect_positions(mode="phw", layout="qwen3", w2c_opencv=w2c)
"""
    assert matching(modules_loaded_by(code), NOT_BELOW_POSITIONS) == []
