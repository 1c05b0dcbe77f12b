"""Public names of posevlm.attention are deliberate; the package never imports transformers."""

import pytest
import subprocess
import sys

import posevlm.attention
from layering import IMPORT_ALL, forbidden_static_imports, matching, modules_loaded_by

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


#: What a leaf must not import: the packages above it, and transformers.
NOT_BELOW_ATTENTION = ("posevlm.eval", "posevlm.scenes", "posevlm.models", "posevlm.sampling", "posevlm.cli",
                       "posevlm.pose_io", "transformers")


def test_attention_is_a_leaf_in_every_import_statement():
    assert forbidden_static_imports("posevlm.attention", NOT_BELOW_ATTENTION) == {}


@pytest.mark.slow
def test_attention_is_a_leaf_at_run_time():
    assert matching(modules_loaded_by(IMPORT_ALL.format(package="posevlm.attention")), NOT_BELOW_ATTENTION) == []
