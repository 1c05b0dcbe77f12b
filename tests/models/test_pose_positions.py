"""enable_pose_positions on tiny random Qwen2.5-VL / Qwen3-VL checkpoints (transformers 5.23, CPU, float32)."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError, ShapeError
from posevlm.models import (
    CONFIG_KEY,
    PoseRotaryEmbedding,
    enable_pose_positions,
    load_pose_model,
    pose_positions_config,
)
from posevlm.positions import POSITION_MODES, PositionSpec, position_spec

from models_tiny_batches import SAMPLES, _rot, inputs, make_batch, tiny_models, trajectory  # noqa: E402,F401

PTHW = PositionSpec(pose="scalar", pose_axis="extra", next_segment="max_plus_one")
QWEN3_PHW = PositionSpec(layout="qwen3", pose="scalar", pose_axis="replace_t")
STOCK3 = PositionSpec(layout="qwen3")
NEW_TOKENS = 4


def test_transformers_version_pinned():
    assert transformers.__version__ == "5.23.0"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"qwen2_5": tiny_models.save_tiny_qwen2_5_vl(root / "qwen2_5"),
            "qwen3": tiny_models.save_tiny_qwen3_vl(root / "qwen3")}


@pytest.fixture(scope="module")
def stock(checkpoints):
    return {
        "qwen2_5": transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
            checkpoints["qwen2_5"], dtype=torch.float32).eval(),
        "qwen3": transformers.Qwen3VLForConditionalGeneration.from_pretrained(
            checkpoints["qwen3"], dtype=torch.float32).eval(),
    }


def enabled(stock_model, spec, **kw):
    return enable_pose_positions(copy.deepcopy(stock_model), spec, **kw)


@torch.no_grad()
def logits(model, kwargs, **extra):
    return model(**kwargs, **extra).logits


# (1) stock spec == untouched model -------------------------------------------------------------------------
@pytest.mark.parametrize("family,spec", [("qwen2_5", PositionSpec()), ("qwen3", STOCK3)])
def test_stock_spec_reproduces_untouched_model(stock, family, spec):
    base = stock[family]
    kwargs, _ = inputs(base, family)
    ref = logits(base, kwargs)
    model = enabled(base, spec)
    assert isinstance(model.model.language_model.rotary_emb, PoseRotaryEmbedding)
    out = logits(model, kwargs)
    valid = kwargs["attention_mask"].bool()
    torch.testing.assert_close(out[valid], ref[valid], atol=1e-6, rtol=0)
    # generate (stock 4-row path vs ours) gives the same tokens
    ref_gen = base.generate(**kwargs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    out_gen = model.generate(**kwargs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    assert torch.equal(ref_gen, out_gen)


# (2) cached decode == uncached == one full forward --------------------------------------------------------
MODES = {f"{layout}-{mode}{'-legacy' if legacy else ''}": (layout, position_spec(mode, layout, legacy=legacy))
         for layout in ("qwen2_5", "qwen3") for mode in POSITION_MODES for legacy in (False, True)
         if not (layout == "qwen3" and mode not in ("thw", "phw")) and (not legacy or mode == "pthw")}


@pytest.mark.parametrize("family,spec", list(MODES.values()), ids=list(MODES))
@torch.no_grad()
def test_cached_decode_matches_full_forward(stock, family, spec):
    model = enabled(stock[family], spec)
    kwargs, cams = inputs(model, family)
    extra = {"w2c_opencv": cams} if spec.pose == "scalar" else {}
    if spec.temporal == "frame_ids":
        extra["frame_ids"] = [torch.arange(len(c)) * 7 + 3 for c in cams]
    gen = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
    cached = model.generate(**kwargs, **extra, **gen, use_cache=True, output_logits=True,
                            return_dict_in_generate=True)
    uncached = model.generate(**kwargs, **extra, **gen, use_cache=False)
    assert torch.equal(cached.sequences, uncached)
    length = kwargs["input_ids"].shape[1]
    seq = cached.sequences
    assert seq.shape[1] == length + NEW_TOKENS
    full_mask = torch.cat([kwargs["attention_mask"], torch.ones(2, NEW_TOKENS, dtype=torch.long)], 1)
    full_mm = torch.cat([kwargs["mm_token_type_ids"], torch.zeros(2, NEW_TOKENS, dtype=torch.long)], 1)
    full = model(**{**kwargs, "input_ids": seq, "attention_mask": full_mask, "mm_token_type_ids": full_mm},
                 **extra).logits
    step_logits = torch.stack(cached.logits, 1)  # (B, k, V): logits that chose tokens 1..k
    torch.testing.assert_close(step_logits, full[:, length - 1: length + NEW_TOKENS - 1], atol=1e-5, rtol=1e-5)

    # manual prefill + cached decode through forward (position_ids=None, stored rope_deltas)
    out = model(**kwargs, **extra, use_cache=True)
    cache, manual = out.past_key_values, [out.logits[:, -1]]
    for k in range(NEW_TOKENS - 1):
        step = model(input_ids=seq[:, length + k: length + k + 1], attention_mask=full_mask[:, : length + k + 1],
                     past_key_values=cache, use_cache=True)
        cache = step.past_key_values
        manual.append(step.logits[:, -1])
    torch.testing.assert_close(torch.stack(manual, 1), full[:, length - 1: length + NEW_TOKENS - 1], atol=1e-5,
                               rtol=1e-5)


# (3) config round trip -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,spec", [("qwen2_5", PTHW), ("qwen3", QWEN3_PHW)])
def test_spec_survives_save_and_load(stock, family, spec, tmp_path):
    model = enabled(stock[family], spec)
    kwargs, cams = inputs(model, family)
    ref = logits(model, kwargs, w2c_opencv=cams)
    model.save_pretrained(tmp_path)
    loaded = load_pose_model(tmp_path, dtype=torch.float32).eval()
    stored = pose_positions_config(loaded)
    assert PositionSpec.from_dict(stored["spec"]) == spec
    assert stored["slot_axis"] == pose_positions_config(model)["slot_axis"]
    assert loaded.posevlm_position_spec == spec
    torch.testing.assert_close(logits(loaded, kwargs, w2c_opencv=cams), ref, atol=1e-6, rtol=0)
    # plain from_pretrained keeps the dict; enable_pose_positions(model) picks it up
    plain = type(model).from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert getattr(plain.config, CONFIG_KEY)["spec"] == spec.to_dict()
    assert not isinstance(plain.model.language_model.rotary_emb, PoseRotaryEmbedding)
    enable_pose_positions(plain)
    torch.testing.assert_close(logits(plain, kwargs, w2c_opencv=cams), ref, atol=1e-6, rtol=0)


def test_checkpoint_without_spec_stays_stock(checkpoints, stock):
    base = stock["qwen2_5"]
    loaded = load_pose_model(checkpoints["qwen2_5"], dtype=torch.float32).eval()
    assert pose_positions_config(loaded) is None
    assert type(loaded.model.language_model.rotary_emb) is type(base.model.language_model.rotary_emb)
    assert "forward" not in vars(loaded.model)
    assert "_prepare_position_ids_for_generation" not in vars(loaded)
    kwargs, _ = inputs(base, "qwen2_5")
    assert torch.equal(logits(loaded, kwargs), logits(base, kwargs))


def test_pthw_slot_map_default_and_custom(stock):
    model = enabled(stock["qwen2_5"], PTHW)
    rotary = model.model.language_model.rotary_emb.rotary
    assert rotary.axis_counts() == [1, 1, 3, 3]  # tiny mrope [2, 3, 3]: P takes half of T's slots
    custom = enabled(stock["qwen2_5"], PTHW, slot_axis=[1, 0, 2, 2, 3, 3, 3, 2])
    assert custom.model.language_model.rotary_emb.rotary.slot_axis.tolist() == [1, 0, 2, 2, 3, 3, 3, 2]
    kwargs, cams = inputs(model, "qwen2_5")
    assert not torch.allclose(logits(model, kwargs, w2c_opencv=cams), logits(custom, kwargs, w2c_opencv=cams))
    with pytest.raises(ConfigError):
        enabled(stock["qwen2_5"], PTHW, slot_axis=[0, 0, 1, 1, 2, 2, 2, 2])  # P-T-H-W needs all 4 axes
    with pytest.raises(ConfigError):
        enabled(stock["qwen2_5"], QWEN3_PHW)  # qwen3 layout on a Qwen2.5 model


@torch.no_grad()
def test_four_row_transformers_tensor_is_rejected_by_pthw(stock):
    model = enabled(stock["qwen2_5"], PTHW)
    kwargs, cams = inputs(model, "qwen2_5")
    ids = kwargs["input_ids"]
    four = torch.arange(ids.shape[1]).expand(4, ids.shape[0], -1)
    with pytest.raises(ShapeError):
        model(**kwargs, position_ids=four)
    with pytest.raises(ShapeError):  # pose spec without cameras
        model(**kwargs)
    # the explicit convention: 5 rows [text; P; T; H; W] as built for generate() give the same logits
    model_kwargs = {k: v for k, v in kwargs.items() if k != "input_ids"}
    rows = model._prepare_position_ids_for_generation(ids, {**model_kwargs, "w2c_opencv": cams})
    assert rows.shape == (5, *ids.shape) and rows.dtype == torch.float32
    torch.testing.assert_close(model(**kwargs, position_ids=rows).logits,
                               model(**kwargs, w2c_opencv=cams).logits, atol=0, rtol=0)


@torch.no_grad()
def test_enable_again_replaces_previous_spec(stock):
    base = stock["qwen2_5"]
    kwargs, _ = inputs(base, "qwen2_5")
    model = enabled(base, PTHW)
    enable_pose_positions(model, PositionSpec())
    assert model.model.language_model.rotary_emb.axes == ("T", "H", "W")
    assert pose_positions_config(model)["spec"] == PositionSpec().to_dict()
    valid = kwargs["attention_mask"].bool()
    torch.testing.assert_close(logits(model, kwargs)[valid], logits(base, kwargs)[valid], atol=1e-6, rtol=0)


# (4) the pose path is live; P is invariant to a global rigid transform ------------------------------------
@pytest.mark.parametrize("family,spec", [("qwen2_5", PTHW), ("qwen3", QWEN3_PHW)])
@torch.no_grad()
def test_pose_changes_outputs_and_is_rigid_invariant(stock, family, spec):
    base = stock[family]
    model = enabled(base, spec)
    kwargs, cams = inputs(model, family)
    ref = logits(base, kwargs)
    out = logits(model, kwargs, w2c_opencv=cams)
    valid = kwargs["attention_mask"].bool()
    assert (out[valid] - ref[valid]).abs().max() > 1e-3
    # a static camera (P = 0 everywhere) gives other outputs than the moving one (hard reset: P in [0, S-1])
    static = [trajectory(c.shape[0], 0, static=True) for c in cams]
    out_static = logits(model, kwargs, w2c_opencv=static)
    assert (out_static[valid] - out[valid]).abs().max() > 1e-3
    # ... already on the video tokens themselves (causal: only the P row of the rotary differs there, the
    # next-segment shift of later text cannot reach them), so the P row really drives the rotation
    video = kwargs["mm_token_type_ids"] == 2
    assert (out_static[video] - out[video]).abs().max() > 1e-4
    # global rigid transform of the world: w2c' = w2c @ G^-1
    g = torch.eye(4, dtype=torch.float64)
    g[:3, :3] = _rot([0.3, -0.5, 0.8], 1.1)
    g[:3, 3] = torch.tensor([2.0, -1.0, 0.5])
    g_inv = torch.linalg.inv(g)
    moved = [(c.double() @ g_inv).float() for c in cams]
    torch.testing.assert_close(logits(model, kwargs, w2c_opencv=moved), out, atol=1e-6, rtol=0)


@torch.no_grad()
def test_deepcopy_of_enabled_model_is_independent(stock):
    model = enabled(stock["qwen2_5"], PTHW)
    kwargs, cams = inputs(model, "qwen2_5")
    ref = logits(model, kwargs, w2c_opencv=cams)
    twin = copy.deepcopy(model)
    assert twin.forward.__self__ is twin and twin.model.forward.__self__ is twin.model
    enable_pose_positions(model, PositionSpec())  # re-configure the original only
    torch.testing.assert_close(logits(twin, kwargs, w2c_opencv=cams), ref, atol=0, rtol=0)
    assert twin.model.rope_deltas is not None and model.model.rope_deltas is None
