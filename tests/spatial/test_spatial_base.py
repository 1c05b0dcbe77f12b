"""The spatial-encoder interface: registry (lazy vggt entry, entry-point group), load_spatial_encoder, encode's
output (requested layers, special tokens, patch tokens, cameras), layer resolution."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.spatial import SpatialEncoder, SpatialEncoding, load_spatial_encoder, resolve_layers, spatial_encoders
from posevlm.spatial.vggt import VGGT, VGGTConfig


def test_vggt_is_registered_lazily():
    code = ("import sys; from posevlm.spatial import spatial_encoders; print(spatial_encoders.names(), "
            "'posevlm.spatial.vggt' in sys.modules); spatial_encoders.get('vggt'); "
            "print('posevlm.spatial.vggt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["['vggt'] False", "True"]
    assert spatial_encoders.entry_point_group == "posevlm.spatial_encoders"


def test_unknown_encoder_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="Did you mean: vggt"):
        load_spatial_encoder("vgtt")


def test_load_spatial_encoder_builds_vggt_with_the_camera_head_only():
    torch.manual_seed(0)
    encoder = load_spatial_encoder("vggt", config=VGGTConfig.tiny(), device="cpu")
    assert isinstance(encoder, VGGT) and isinstance(encoder, SpatialEncoder)
    assert encoder.depth_head is None and encoder.point_head is None and encoder.camera_head is not None
    assert (encoder.token_dim, encoder.num_layers, encoder.patch_size, encoder.patch_start_idx) == (64, 2, 14, 5)


def test_encode_returns_the_requested_layers_special_tokens_and_cameras():
    torch.manual_seed(0)
    encoder = load_spatial_encoder("vggt", config=VGGTConfig.tiny(depth=3), device="cpu")
    frames = torch.rand(2, 4, 3, 28, 42)
    with torch.no_grad():
        enc = encoder.encode(frames, layers=(-1, 0))
        reference = encoder(frames, heads=("camera",), layers=(0, 2))
    assert isinstance(enc, SpatialEncoding)
    assert enc.layers == (2, 0) and set(enc.tokens) == {0, 2}
    assert enc.tokens[2].shape == (2, 4, 5 + 6, 64)
    assert torch.equal(enc.special_tokens, enc.tokens[0][:, :, :5])  # of the last *requested* layer (0)
    assert enc.patch_tokens().shape == (2, 4, 6, 64) and torch.equal(enc.patch_tokens(2), enc.tokens[2][:, :, 5:])
    assert (enc.patch_start_idx, enc.grid_hw, enc.image_hw) == (5, (2, 3), (28, 42))
    assert enc.pose_encoding == "absT_quaR_FoV" and torch.equal(enc.pose_enc, reference.pose_enc)
    assert torch.equal(enc.tokens[2], reference.aggregated.tokens[2])
    with pytest.raises(ConfigError, match="not requested"):
        enc.patch_tokens(1)


def test_encode_without_pose_skips_the_camera_head():
    torch.manual_seed(0)
    encoder = load_spatial_encoder("vggt", config=VGGTConfig.tiny(), heads=(), device="cpu")
    enc = encoder.encode(torch.rand(1, 2, 3, 28, 28))
    assert enc.pose_enc is None and enc.pose_encoding is None and enc.layers == (1,)


def test_resolve_layers():
    assert resolve_layers((-1, 0, 23, -24), 24) == (23, 0)
    assert resolve_layers(5, 24) == (5,)
    with pytest.raises(ConfigError, match=r"\[24, True\] out of range"):
        resolve_layers((24, True, 3), 24)


def test_posevlm_list_shows_the_spatial_encoders_without_importing_them():
    code = ("import sys; from typer.testing import CliRunner; from posevlm.cli import app; "
            "r = CliRunner().invoke(app, ['list', 'spatial-encoders']); print(r.exit_code); print(r.output); "
            "print('posevlm.spatial.vggt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "0" and lines[-1] == "False"
    assert any(line.strip().startswith("vggt") and "VGGT" in line for line in lines)
