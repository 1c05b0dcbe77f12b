"""Public names of posevlm.positions are deliberate; positions never imports transformers."""

import pytest
import subprocess
import sys

import posevlm.positions

POSITIONS = {
    "TokenMap", "build_token_map", "TEXT", "IMAGE", "VIDEO", "PAD", "PositionSpec", "PositionPlan",
    "build_position_plan", "merge_tubelet_scalars", "pose_rows_per_tubelet", "MultiAxisRotary",
    "chunked_slot_axis", "interleaved_qwen3_slot_axis", "POSITION_MODES", "PositionPreset", "position_presets",
    "position_spec", "parse_spec_overrides",
    "resolve_position_spec", "spec_needs",
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
