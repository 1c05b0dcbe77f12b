"""SpatialMLLM on tiny random Qwen2.5-VL / Qwen3-VL + tiny VGGT (CPU, float32; models spec §6.2)."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError, ShapeError  # noqa: E402
from posevlm.models import enable_pose_positions  # noqa: E402
from posevlm.models.camera_attention import CameraAttentionSpec  # noqa: E402
from posevlm.models.spatial_mllm import SpatialMLLM, merge_spatial_tokens_reference  # noqa: E402
from posevlm.positions import position_spec  # noqa: E402
from posevlm.positions.plan import pad_to_tubelets  # noqa: E402
from posevlm.spatial import decode_pose_encoding  # noqa: E402

from models_tiny_batches import trajectory  # noqa: E402
from spatial_mllm_tiny import (  # noqa: E402
    SAMPLES_QWEN2_5, SAMPLES_QWEN3, Recorder, count_calls, make_batch, tiny_vggt,
)  # fmt: skip

NEW_TOKENS = 4


def spatial(bases, family="qwen2_5", *, vggt=None, **kw) -> SpatialMLLM:
    """A fresh Spatial-MLLM over copies of the shared tiny bases (connector seed 0)."""
    kw.setdefault("seed", 0)
    return SpatialMLLM.compose(copy.deepcopy(bases[family]), vggt if vggt is not None else tiny_vggt(), **kw)


def batch(model, family="qwen2_5", seed=0):
    samples = SAMPLES_QWEN2_5 if family == "qwen2_5" else SAMPLES_QWEN3
    return make_batch(model.config if not isinstance(model, SpatialMLLM) else model.qwen.config, samples,
                      family=family, seed=seed)


@torch.no_grad()
def embeds_and_logits(model, kwargs, **extra):
    """(inputs_embeds the text decoder received, logits)."""
    text_model = (model.qwen if isinstance(model, SpatialMLLM) else model).model.language_model
    rec = Recorder(text_model)
    try:
        out = model(**kwargs, **extra)
    finally:
        rec.remove()
    return rec.calls[0]["inputs_embeds"], out.logits


def reference_geo(model: SpatialMLLM, frames, grid_row):
    """The connector term of one video computed independently: VGGT aggregate -> index-by-index merge -> MLP."""
    t = int(grid_row[0])
    x = pad_to_tubelets(frames, t, "frames")
    tokens = model.spatial_encoder.aggregate(x[None], layers=(-1,))[-1][0, :, 5:]
    merged = merge_spatial_tokens_reference(tokens, grid_row)
    return model.connector.mlp(model.connector.ln_q(merged))


# ---- shapes and bookkeeping -------------------------------------------------------------------------------------
@torch.no_grad()
def test_tiny_spec_shapes(bases):
    """4 frames of 56x84 -> grid (2, 4, 6) -> 12 merged tokens of 8 x 64 = 512; cameras for the frames VGGT saw."""
    model = spatial(bases, positions="pthw")
    state = model.encode_spatial([torch.rand(4, 3, 56, 84)], torch.tensor([[2, 4, 6]]))
    assert state.tokens[0].shape == (12, 512)
    assert state.w2c_opencv[0].shape == (4, 4, 4) and state.K_pixels[0].shape == (4, 3, 3)
    assert state.image_hw[0].tolist() == [56, 84]
    assert model.config.connector.merged_dim == 512 and model.config.spatial_config.token_dim == 64


@torch.no_grad()
def test_token_bookkeeping_mismatches_raise_clear_errors(bases):
    model = spatial(bases)
    kwargs, frames = batch(model)
    with pytest.raises(ShapeError, match="video_tchw is required"):
        model(**kwargs)
    with pytest.raises(ShapeError, match=r"video_tchw has 2 videos but video_grid_thw has 3"):
        model(**kwargs, video_tchw=frames[:2])
    wrong_s = list(frames)
    wrong_s[0] = torch.rand(6, 3, 56, 84)
    with pytest.raises(ShapeError, match=r"video_tchw\[0\] has 6 frames but the video grid has T=2"):
        model(**kwargs, video_tchw=wrong_s)
    wrong_hw = list(frames)
    wrong_hw[1] = torch.rand(3, 3, 56, 84)
    with pytest.raises(ShapeError, match=r"video_tchw\[1\] is 56x84 but .* made from 56x56 frames"):
        model(**kwargs, video_tchw=wrong_hw)
    fewer_pads = dict(kwargs)
    ids = kwargs["input_ids"].clone()
    ids[0, (ids[0] == model.qwen.config.video_token_id).nonzero()[0]] = 50
    fewer_pads["input_ids"] = ids
    with pytest.raises(ShapeError, match="video pad tokens but video_grid_thw"):
        model(**fewer_pads, video_tchw=frames)
    with pytest.raises(ShapeError, match="calling model.qwen directly"):
        model.qwen(**kwargs)
    with pytest.raises(ConfigError, match="stock positions and no camera attention"):
        model(**kwargs, video_tchw=frames, w2c_opencv=[torch.eye(4).repeat(4, 1, 1)] * 3)


@torch.no_grad()
def test_odd_frame_count_repeats_the_last_frame(bases):
    model = spatial(bases)
    kwargs, frames = batch(model)
    assert frames[1].shape[0] == 3
    padded = [frames[0], torch.cat([frames[1], frames[1][-1:]]), frames[2]]
    assert torch.equal(model(**kwargs, video_tchw=frames).logits, model(**kwargs, video_tchw=padded).logits)
    uint8 = [(f * 255).round().to(torch.uint8) for f in frames]
    assert torch.allclose(model(**kwargs, video_tchw=[u.float() / 255 for u in uint8]).logits,
                          model(**kwargs, video_tchw=uint8).logits)


# ---- fusion: exactly the expected tokens change --------------------------------------------------------------------
@torch.no_grad()
def test_use_visual_use_geo_change_exactly_the_video_pads(bases):
    model = spatial(bases)
    kwargs, frames = batch(model)
    stock_embeds, _ = embeds_and_logits(bases["qwen2_5"], kwargs)
    fused, _ = embeds_and_logits(model, kwargs, video_tchw=frames)
    video = kwargs["input_ids"] == model.qwen.config.video_token_id
    assert torch.equal(fused[~video], stock_embeds[~video])  # text and padding untouched
    geo = torch.cat([reference_geo(model, f, g) for f, g in zip(frames, kwargs["video_grid_thw"].tolist())])
    torch.testing.assert_close(fused[video], stock_embeds[video] + geo, atol=1e-5, rtol=1e-5)
    assert geo.abs().max() > 1e-3

    geo_only, _ = embeds_and_logits(model.set_fusion(use_visual=False), kwargs, video_tchw=frames)
    assert torch.equal(geo_only[~video], stock_embeds[~video])
    torch.testing.assert_close(geo_only[video], geo, atol=1e-5, rtol=1e-5)
    calls = count_calls(model.spatial_encoder.aggregator)
    visual_only, logits = embeds_and_logits(model.set_fusion(use_visual=True, use_geo=False), kwargs, video_tchw=frames)
    assert torch.equal(visual_only, stock_embeds)
    skipped, skip_logits = embeds_and_logits(model.set_fusion(use_geo=True, skip=True), kwargs)
    assert torch.equal(skipped, stock_embeds) and torch.equal(skip_logits, logits)
    assert calls == [0]  # visual-only and skip never run VGGT (no cameras needed either)


# ---- generation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
@torch.no_grad()
def test_cached_generate_equals_a_full_forward_and_encodes_once(bases, family):
    """Left-padded batch, two videos in sample 0: greedy cached generation = argmax of one full forward over prompt +
    generated tokens, with the same logits; the vision tower runs once per prompt batch and VGGT once per group of
    equal-shape videos (3 videos, 2 shapes), never in decode steps."""
    kw = {"positions": "pthw"} if family == "qwen2_5" else {"positions": "phw", "connector": "add"}
    model = spatial(bases, family, **kw)
    kwargs, frames = batch(model, family)
    vggt_calls = count_calls(model.spatial_encoder.aggregator)
    vision_calls = count_calls(model.qwen.model.visual)
    out = model.generate(**kwargs, video_tchw=frames, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                         do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert vggt_calls == [2] and vision_calls == [1]
    length = kwargs["input_ids"].shape[1]
    seq = out.sequences
    full_kwargs = dict(kwargs, input_ids=seq,
                       attention_mask=torch.cat([kwargs["attention_mask"],
                                                 torch.ones(seq.shape[0], NEW_TOKENS, dtype=torch.long)], 1),
                       mm_token_type_ids=torch.cat([kwargs["mm_token_type_ids"],
                                                    torch.zeros(seq.shape[0], NEW_TOKENS, dtype=torch.long)], 1))
    full = model(**full_kwargs, video_tchw=frames).logits
    steps = full[:, length - 1: length + NEW_TOKENS - 1]
    assert torch.equal(steps.argmax(-1), seq[:, length:])
    torch.testing.assert_close(torch.stack(out.logits, 1), steps, atol=1e-5, rtol=1e-5)
    no_cache = model.generate(**kwargs, video_tchw=frames, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                              do_sample=False, use_cache=False)
    assert torch.equal(no_cache, seq)


@torch.no_grad()
def test_manual_prefill_then_decode_equals_the_full_forward(bases):
    model = spatial(bases, positions="pthw")
    kwargs, frames = batch(model)
    vggt_calls = count_calls(model.spatial_encoder.aggregator)
    prefill = model(**kwargs, video_tchw=frames, use_cache=True)
    nxt = prefill.logits[:, -1].argmax(-1, keepdim=True)
    mask = torch.cat([kwargs["attention_mask"], torch.ones_like(nxt)], 1)
    step = model(input_ids=nxt, attention_mask=mask, past_key_values=prefill.past_key_values, use_cache=True)
    assert vggt_calls == [2]  # prefill only: one batch per video shape
    full = model(**dict(kwargs, input_ids=torch.cat([kwargs["input_ids"], nxt], 1), attention_mask=mask,
                        mm_token_type_ids=torch.cat([kwargs["mm_token_type_ids"], torch.zeros_like(nxt)], 1)),
                 video_tchw=frames).logits
    torch.testing.assert_close(step.logits[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)


# ---- positions and cameras -----------------------------------------------------------------------------------------
@torch.no_grad()
def test_thw_positions_equal_transformers_get_rope_index(bases):
    stock_positions = spatial(bases)
    model = spatial(bases, positions="thw")
    kwargs, frames = batch(model)
    rec = Recorder(model.qwen.model.language_model)
    logits = model(**kwargs, video_tchw=frames).logits
    rec.remove()
    rows = rec.calls[0]["position_ids"]
    ref, _ = bases["qwen2_5"].model.get_rope_index(
        kwargs["input_ids"], kwargs["mm_token_type_ids"], video_grid_thw=kwargs["video_grid_thw"],
        second_per_grid_ts=kwargs["second_per_grid_ts"], attention_mask=kwargs["attention_mask"])
    valid = kwargs["attention_mask"].bool()
    assert rows.shape[0] == 4 and torch.equal(rows[1:][:, valid].long(), ref[:, valid])
    torch.testing.assert_close(logits[valid], stock_positions(**kwargs, video_tchw=frames).logits[valid],
                               atol=1e-6, rtol=0)


def _zero_camera_head(vggt):
    """Every frame gets the camera head's prior (identity rotation, zero translation, one field of view)."""
    with torch.no_grad():
        vggt.camera_head.pose_branch.fc2.weight.zero_()
    return vggt


@torch.no_grad()
def test_prope_with_identity_vggt_cameras_equals_no_camera_attention(bases):
    vggt = _zero_camera_head(tiny_vggt())
    keep = CameraAttentionSpec(mode="prope", rotary_on_camera_dims="keep")
    with_prope = spatial(bases, vggt=copy.deepcopy(vggt), camera_attention=keep)
    plain = spatial(bases, vggt=copy.deepcopy(vggt), positions="thw")
    kwargs, frames = batch(with_prope)
    state = with_prope.encode_spatial(frames, kwargs["video_grid_thw"], cameras=True)
    for w2c in state.w2c_opencv:
        torch.testing.assert_close(w2c, torch.eye(4).expand_as(w2c), atol=1e-6, rtol=0)
    valid = kwargs["attention_mask"].bool()
    torch.testing.assert_close(with_prope(**kwargs, video_tchw=frames).logits[valid],
                               plain(**kwargs, video_tchw=frames).logits[valid], atol=1e-5, rtol=0)
    # the same model fed moving cameras (a manifest's) differs: the camera path is live
    moving = [trajectory(f.shape[0], i) for i, f in enumerate(frames)]
    ks = [s.clone() for s in state.K_pixels]
    moved = with_prope(**kwargs, video_tchw=frames, w2c_opencv=moving, K_pixels=ks, image_hw=list(state.image_hw))
    assert (moved.logits[valid] - plain(**kwargs, video_tchw=frames).logits[valid]).abs().max() > 1e-3


@pytest.mark.parametrize("positions,camera", [("pthw", None), ("thw", "prope")])
@torch.no_grad()
def test_cameras_from_vggt_equal_the_same_cameras_given(bases, positions, camera):
    """PTHW positions (or PRoPE, with intrinsics) fed by the model's camera head = the decoded cameras passed
    explicitly; other cameras change the outputs; pose_source='manifest' needs them."""
    model = spatial(bases, positions=positions, camera_attention=camera)
    kwargs, frames = batch(model)
    vggt_logits = model(**kwargs, video_tchw=frames).logits
    w2c, ks, hws = [], [], []
    for f, g in zip(frames, kwargs["video_grid_thw"].tolist()):
        x = pad_to_tubelets(f, g[0], "frames")[None]
        pred = model.spatial_encoder.predict(x, heads=("camera",))
        e, k = decode_pose_encoding(pred.pose_enc, pred.image_hw)
        w2c.append(e[0])
        ks.append(k[0])
        hws.append(torch.tensor(pred.image_hw))
    given = {"w2c_opencv": w2c, "K_pixels": ks, "image_hw": hws} if camera else {"w2c_opencv": w2c}
    torch.testing.assert_close(model(**kwargs, video_tchw=frames, **given).logits, vggt_logits, atol=1e-5, rtol=0)
    other = [trajectory(f.shape[0], 7 + i) for i, f in enumerate(frames)]
    given["w2c_opencv"] = other
    valid = kwargs["attention_mask"].bool()
    assert (model(**kwargs, video_tchw=frames, **given).logits[valid] - vggt_logits[valid]).abs().max() > 1e-3
    model.enable_pose_positions(positions, camera_attention=camera, pose_source="manifest")
    with pytest.raises(ShapeError, match="pose_source='manifest': pass w2c_opencv"):
        model(**kwargs, video_tchw=frames)


@torch.no_grad()
def test_positions_without_connector_or_camera_head_are_refused(bases):
    with pytest.raises(ConfigError, match="no camera head"):
        spatial(bases, vggt=tiny_vggt(heads=()), positions="pthw")
    model = spatial(bases, vggt=tiny_vggt(heads=()), positions="pthw", pose_source="manifest")
    kwargs, frames = batch(model)
    cams = [trajectory(f.shape[0], i) for i, f in enumerate(frames)]
    assert model(**kwargs, video_tchw=frames, w2c_opencv=cams).logits.isfinite().all()


# ---- Qwen3-VL ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def test_qwen3_pose_only_keeps_stock_tokens_and_takes_vggt_cameras(bases):
    """The fork's Qwen3-VL variant: no connector, VGGT cameras feed PHW; the frames (16-px grid) are resampled to
    the same grid in 14-px VGGT patches."""
    model = spatial(bases, "qwen3", positions="phw")
    assert model.connector is None and model.config.model_type == "spatial-mllm-qwen3"
    kwargs, frames = batch(model, "qwen3")
    state = model.encode_spatial(frames, kwargs["video_grid_thw"])
    assert state.tokens is None and [hw.tolist() for hw in state.image_hw] == [[56, 84], [56, 56], [56, 84]]
    embeds, logits = embeds_and_logits(model, kwargs, video_tchw=frames)
    stock_embeds, _ = embeds_and_logits(bases["qwen3"], kwargs)
    assert torch.equal(embeds, stock_embeds)
    reference = enable_pose_positions(copy.deepcopy(bases["qwen3"]), position_spec("phw", "qwen3"))
    torch.testing.assert_close(reference(**kwargs, w2c_opencv=list(state.w2c_opencv)).logits, logits,
                               atol=1e-6, rtol=0)


@torch.no_grad()
def test_qwen3_fused_adds_the_connector_to_the_main_visual_tokens(bases):
    model = spatial(bases, "qwen3", connector="add")
    kwargs, frames = batch(model, "qwen3")
    fused, _ = embeds_and_logits(model, kwargs, video_tchw=frames)
    stock_embeds, _ = embeds_and_logits(bases["qwen3"], kwargs)
    video = kwargs["input_ids"] == model.qwen.config.video_token_id
    resized = [torch.nn.functional.interpolate(f, size=(g[1] * 14, g[2] * 14), mode="bilinear", antialias=True,
                                               align_corners=False).clamp(0, 1)
               for f, g in zip(frames, kwargs["video_grid_thw"].tolist())]
    geo = torch.cat([reference_geo(model, f, g) for f, g in zip(resized, kwargs["video_grid_thw"].tolist())])
    assert torch.equal(fused[~video], stock_embeds[~video])
    torch.testing.assert_close(fused[video], stock_embeds[video] + geo, atol=1e-5, rtol=1e-5)
