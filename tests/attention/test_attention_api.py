"""Public names of posevlm.attention are deliberate; the package never imports transformers."""

import pytest
import subprocess
import sys

import posevlm.attention

ATTENTION = {
    "CameraModeSpec", "camera_modes",
    "attention_cameras", "affine_inverse", "CameraDims", "CameraTransform", "build_camera_transform", "camera_sdpa",
    "naive_camera_sdpa", "rope2d", "pose_distance_table", "pose_distance_bias", "alibi_slopes",
    "pose_distance_score_mod", "bias_dims_width", "pose_bias_query_dims", "pose_bias_key_dims", "append_bias_dims",
    "biased_sdpa",
}


def test_attention_public_names():
    assert set(posevlm.attention.__all__) == ATTENTION
    assert all(hasattr(posevlm.attention, name) for name in ATTENTION)


@pytest.mark.slow
def test_attention_does_not_import_transformers():
    code = "import sys, posevlm.attention; print('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
