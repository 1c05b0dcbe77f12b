"""VGGT on tiny random configs: layers asked for (and only those), the first-frame camera slot, cameras that
decode to rotations and positive focals, DPT outputs, float32 = float64, input validation, dtype policy."""

from __future__ import annotations

import copy

import pytest
import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.profiling import LiveTensorBytes
from posevlm.spatial.vggt import VGGT, VGGTConfig, decode_pose_encoding
from posevlm.spatial.weights import apply_dtype_policy


def _model(seed: int = 0, **overrides) -> VGGT:
    """Tiny random VGGT whose camera / register slots differ clearly (the default init makes them ~1e-6)."""
    torch.manual_seed(seed)
    model = VGGT(VGGTConfig.tiny(**overrides)).eval()
    with torch.no_grad():
        model.aggregator.camera_token.normal_()
        model.aggregator.register_token.normal_()
    return model


def _frames(B: int = 1, S: int = 4, H: int = 28, W: int = 42, seed: int = 1) -> torch.Tensor:
    return torch.rand(B, S, 3, H, W, generator=torch.Generator().manual_seed(seed))


# ---- layers ------------------------------------------------------------------------------------------------
def test_aggregate_returns_exactly_the_requested_layers_with_their_shapes():
    model = _model(depth=4)
    images = _frames(B=2, S=3, H=28, W=42)  # grid 2 x 3 -> P = 6, N = 11
    out = model.aggregate(images, layers=(-1, 1, 3, 1))
    assert out.layers == (3, 1) and set(out.tokens) == {1, 3}
    for tokens in out.tokens.values():
        assert tokens.shape == (2, 3, 5 + 6, 64)
    assert out.patch_start_idx == 5 and out.grid_hw == (2, 3) and out.image_hw == (28, 42)
    torch.testing.assert_close(out[-1], out.tokens[3])
    with pytest.raises(ConfigError, match="not requested"):
        out[0]


def test_a_layer_does_not_depend_on_which_other_layers_are_requested():
    model = _model(depth=3)
    images = _frames()
    alone = model.aggregate(images, layers=1).tokens[1]
    together = model.aggregate(images, layers=(0, 1, 2)).tokens[1]
    assert torch.equal(alone, together)


def test_rounds_after_the_deepest_requested_layer_do_not_run():
    model = _model(depth=4)
    calls = []
    for i, block in enumerate(model.aggregator.global_blocks):
        block.register_forward_hook(lambda module, args, output, i=i: calls.append(i))
    model.aggregate(_frames(), layers=(1,))
    assert calls == [0, 1]


def test_asking_for_the_last_layer_keeps_one_layer_of_activations_not_all():
    model = _model(depth=6)
    images = _frames(B=1, S=4, H=56, W=56)
    layer_bytes = 1 * 4 * (5 + 16) * 64 * 4
    peaks = {}
    for name, layers in (("last", (-1,)), ("all", tuple(range(6)))):
        with torch.no_grad(), LiveTensorBytes() as meter:
            out = model.aggregate(images, layers=layers)
            del out
        peaks[name] = meter.peak
    # storing all 6 layers costs 5 more layer tensors at the peak; returning only the last one does not
    assert peaks["all"] - peaks["last"] >= 0.9 * 5 * layer_bytes, peaks


# ---- first frame is the reference ------------------------------------------------------------------------
def test_permuting_frames_after_the_first_permutes_their_outputs_and_leaves_frame_0_unchanged():
    model = _model(depth=2)
    images = _frames(S=5)
    perm = [0, 3, 1, 4, 2]
    with torch.no_grad():
        base = model(images, heads=("camera",), layers=(0, 1))
        moved = model(images[:, perm], heads=("camera",), layers=(0, 1))
    for layer in (0, 1):
        torch.testing.assert_close(moved.aggregated.tokens[layer], base.aggregated.tokens[layer][:, perm])
    torch.testing.assert_close(moved.pose_enc, base.pose_enc[:, perm])


def test_the_first_frame_uses_camera_slot_0_so_swapping_it_changes_the_outputs():
    model = _model(depth=2)
    images = _frames(S=4)
    swap = [1, 0, 2, 3]
    with torch.no_grad():
        base = model(images, heads=("camera",), layers=(1,))
        swapped = model(images[:, swap], heads=("camera",), layers=(1,))
    gap = (swapped.aggregated.tokens[1] - base.aggregated.tokens[1][:, swap]).abs().amax()
    assert gap > 1e-2  # not equivariant: slot 0 follows the position, not the frame
    # and slot 0 is what the first frame gets: copy slot 1 into slot 0 and the model becomes equivariant
    with torch.no_grad():
        model.aggregator.camera_token[:, 0] = model.aggregator.camera_token[:, 1]
        model.aggregator.register_token[:, 0] = model.aggregator.register_token[:, 1]
        a = model(images, heads=(), layers=(1,)).aggregated.tokens[1]
        b = model(images[:, swap], heads=(), layers=(1,)).aggregated.tokens[1]
    torch.testing.assert_close(b, a[:, swap])


# ---- camera head ---------------------------------------------------------------------------------------------
def test_camera_head_decodes_to_rotations_and_positive_focal_lengths():
    model = _model(depth=2)
    images = _frames(B=2, S=3, H=42, W=56)
    with torch.no_grad():
        pred = model(images, heads=("camera",))
    assert pred.pose_enc.shape == (2, 3, 9) and len(pred.pose_enc_list) == 4
    assert torch.equal(pred.pose_enc_list[-1], pred.pose_enc)
    w2c, K = pred.cameras()
    R = w2c[..., :3, :3].double()
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2, 3, dtype=R.dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(w2c[..., :3, 3], pred.pose_enc[..., :3])
    fov_h, fov_w = pred.pose_enc[..., 7], pred.pose_enc[..., 8]
    assert bool(((fov_h > 0) & (fov_h < torch.pi) & (fov_w > 0) & (fov_w < torch.pi)).all())
    torch.testing.assert_close(K[..., 1, 1], 21 / torch.tan(fov_h / 2))  # (H / 2) / tan(fov_h / 2), H = 42
    torch.testing.assert_close(K[..., 0, 0], 28 / torch.tan(fov_w / 2))
    assert bool((K[..., 0, 0] > 0).all() and torch.isfinite(K).all())
    torch.testing.assert_close(K[..., 0, 2], torch.full((2, 3), 28.0))
    torch.testing.assert_close(K[..., 1, 2], torch.full((2, 3), 21.0))


def test_field_of_view_activation_is_relu_and_quaternion_is_not_normalised():
    model = _model(depth=2)
    with torch.no_grad():  # push the raw field of view negative: the output must clamp at 0
        model.camera_head.pose_branch.fc2.bias[7:] = -5.0
        model.camera_head.pose_branch.fc2.bias[3:7] = 3.0
        pred = model(_frames(), heads=("camera",))
    assert bool((pred.pose_enc[..., 7:] == 0).all())
    assert bool((pred.pose_enc[..., 3:7].norm(dim=-1) > 2).all())


def test_decode_pose_encoding_of_a_known_camera():
    enc = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0, 2 * torch.atan(torch.tensor(0.5)).item(),
                        2 * torch.atan(torch.tensor(0.25)).item()])
    w2c, K = decode_pose_encoding(enc.to(torch.bfloat16), (100, 200))
    assert w2c.dtype == torch.float32
    torch.testing.assert_close(K, torch.tensor([[400.0, 0, 100], [0, 100.0, 50], [0, 0, 1]]), atol=2.0, rtol=0.02)


# ---- DPT heads -----------------------------------------------------------------------------------------------
def test_dpt_heads_shapes_and_positive_depth_and_confidence():
    model = _model(depth=2)
    images = _frames(B=2, S=3, H=42, W=56)
    with torch.no_grad():
        pred = model(images)
    assert pred.depth.shape == (2, 3, 42, 56, 1) and pred.depth_conf.shape == (2, 3, 42, 56)
    assert pred.world_points.shape == (2, 3, 42, 56, 3) and pred.world_points_conf.shape == (2, 3, 42, 56)
    assert bool((pred.depth > 0).all() and (pred.depth_conf > 1).all() and (pred.world_points_conf > 1).all())
    assert bool(torch.isfinite(pred.world_points).all())
    assert set(pred.to_dict()) == {"pose_enc", "pose_enc_list", "depth", "depth_conf", "world_points",
                                   "world_points_conf"}


def test_dpt_frame_chunks_do_not_change_the_result():
    model = _model(depth=2)
    images = _frames(S=5)
    with torch.no_grad():
        whole = model(images, heads=("depth", "point"), frames_chunk=None)
        chunked = model(images, heads=("depth", "point"), frames_chunk=2)
    torch.testing.assert_close(chunked.depth, whole.depth)
    torch.testing.assert_close(chunked.world_points, whole.world_points)


def test_heads_run_only_when_asked_and_must_be_built():
    model = _model(depth=2, heads=("camera",))
    pred = model.predict(_frames())
    assert pred.depth is None and pred.world_points is None and pred.pose_enc is not None
    with pytest.raises(ConfigError, match=r"\['depth'\] were not built"):
        model.predict(_frames(), heads=("camera", "depth"))
    with pytest.raises(ConfigError, match="unknown"):
        model.predict(_frames(), heads=("track",))


def test_only_the_dpt_layers_are_computed_for_the_dpt_heads():
    model = _model(depth=4, dpt_layers=(0, 1, 1, 2), heads=("depth",))
    calls = []
    for i, block in enumerate(model.aggregator.global_blocks):
        block.register_forward_hook(lambda module, args, output, i=i: calls.append(i))
    model.predict(_frames())
    assert calls == [0, 1, 2]  # the 4th round is not needed by the depth head


def test_wart_dpt_residual_skip_carries_relu_of_the_input():
    """The reference's in-place ReLU rectifies the residual unit's input before the skip is added; the released
    DPT weights were trained that way, so the skip here is relu(x), not x."""
    from posevlm.spatial.vggt import _ResidualConvUnit

    unit = _ResidualConvUnit(4)
    with torch.no_grad():
        unit.conv2.weight.zero_()
        unit.conv2.bias.zero_()
    x = torch.randn(1, 4, 3, 3)
    assert bool((x < 0).any())
    torch.testing.assert_close(unit(x), torch.relu(x))


# ---- numerics ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch_embed", ["conv", "dinov2"])
def test_float32_agrees_with_float64(patch_embed):
    model = _model(depth=2, patch_embed=patch_embed)
    model64 = copy.deepcopy(model).double()
    images = _frames(B=1, S=3, H=42, W=70)
    with torch.no_grad():
        a = model(images, layers=(0, 1))
        b = model64(images.double(), layers=(0, 1))
    assert b.aggregated.tokens[1].dtype == torch.float64
    for x, y in ((a.aggregated.tokens[0], b.aggregated.tokens[0]), (a.aggregated.tokens[1], b.aggregated.tokens[1]),
                 (a.pose_enc, b.pose_enc), (a.depth, b.depth), (a.world_points, b.world_points)):
        torch.testing.assert_close(x.double(), y, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_on_cpu_runs_the_heads_in_float32():
    model = _model(depth=2)
    images = _frames()
    with torch.no_grad():
        ref = model(images, heads=("camera", "depth"))
        low = model(images, heads=("camera", "depth"), precision="bf16")
    assert low.pose_enc.dtype == torch.float32 and low.depth.dtype == torch.float32
    torch.testing.assert_close(low.pose_enc, ref.pose_enc, atol=0.05, rtol=0.05)


def test_bf16_storage_keeps_heads_in_float32_and_runs():
    model = apply_dtype_policy(_model(depth=2), torch.bfloat16, keep_fp32=("camera_head", "depth_head", "point_head"))
    assert model.aggregator.frame_blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert model.aggregator.camera_token.dtype == torch.bfloat16
    assert model.camera_head.embed_pose.weight.dtype == torch.float32
    assert model.depth_head.projects[0].weight.dtype == torch.float32
    pred = model.predict(_frames(), precision="fp32")
    assert pred.pose_enc.dtype == torch.float32 and bool(torch.isfinite(pred.depth).all())


def test_default_init_decodes_to_finite_cameras():
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).eval()
    w2c, K = model.predict(_frames()).cameras()
    assert bool(torch.isfinite(w2c).all() and torch.isfinite(K).all() and (K[..., 0, 0] > 0).all())


# ---- boundary checks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("images, match", [
    (torch.rand(4, 3, 28, 28), r"\(B, S, 3, H, W\).*images\[None\]"),
    (torch.rand(1, 2, 3, 30, 28), r"multiples of the patch size 14.*\(28, 28\)"),
    (torch.randint(0, 255, (1, 2, 3, 28, 28), dtype=torch.uint8), r"float\(\) / 255"),
    (torch.rand(1, 2, 3, 28, 28) * 255, r"\[0, 1\].*Divide"),
    (torch.rand(1, 0, 3, 28, 28), r"holds no frames"),
])
def test_bad_images_are_refused_with_the_fix(images, match):
    with pytest.raises(ShapeError, match=match):
        _model().aggregate(images)


def test_layers_out_of_range_are_named():
    with pytest.raises(ConfigError, match=r"\[2, -3\] out of range.*-2\.\.1"):
        _model().aggregate(_frames(), layers=(0, 2, -3))


def test_single_frame_clips_work():
    pred = _model().predict(_frames(S=1))
    assert pred.pose_enc.shape == (1, 1, 9) and pred.depth.shape == (1, 1, 28, 42, 1)


# ---- config ------------------------------------------------------------------------------------------------
def test_config_round_trips_through_json_and_reports_every_problem():
    import json

    cfg = VGGTConfig.tiny(heads=("camera",))
    assert VGGTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError) as err:
        VGGTConfig.tiny(patch_embed="vit", heads=("camera", "track"), dpt_layers=(0, 1, 2, 9), embed_dim=30)
    message = str(err.value)
    for part in ("patch_embed='vit'", "heads=['camera', 'track']", "dpt_layers=[0, 1, 2, 9]", "embed_dim=30"):
        assert part in message
    with pytest.raises(ConfigError, match="unknown VGGTConfig keys"):
        VGGTConfig.from_dict({"width": 3})


def test_vggt_1b_preset_numbers():
    cfg = VGGTConfig.vggt_1b()
    assert (cfg.img_size, cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads) == (518, 14, 1024, 24, 16)
    assert (cfg.patch_start_idx, cfg.token_dim, cfg.rope_freq, cfg.init_values) == (5, 2048, 100.0, 0.01)
    assert cfg.dpt_out_channels == (256, 512, 1024, 1024) and cfg.dpt_layers == (4, 11, 17, 23)
    assert (cfg.camera_trunk_depth, cfg.camera_num_heads, cfg.camera_iterations) == (4, 16, 4)
