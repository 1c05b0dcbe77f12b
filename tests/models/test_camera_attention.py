"""Camera attention (PRoPE / GTA / CaPE) and the pose-distance bias inside tiny Qwen2.5-VL / Qwen3-VL models
(transformers 5.23, CPU, float32): identity cameras, world-frame and scale invariance, cached decode, eager vs
sdpa, GQA, save / load of the spec and of learned slopes."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from models_tiny_batches import _rot, make_batch, tiny_models, trajectory  # noqa: E402
from strategies import random_w2c  # noqa: E402

from posevlm.errors import ConfigError, ShapeError  # noqa: E402
from posevlm.models import enable_pose_positions, load_pose_model, pose_positions_config  # noqa: E402
from posevlm.attention import pose_distance_table  # noqa: E402
from posevlm.models.camera_attention import (  # noqa: E402
    SLOPES_NAME,
    CameraAttentionSpec,
    CameraContext,
    patch_attention_layer,
)
from posevlm.positions import MultiAxisRotary, position_spec  # noqa: E402

NEW_TOKENS = 3
# 8 query heads; Qwen2.5 head_dim 8 with mRoPE [2, 1, 1] (T: 2 slots = 4 dims, one camera group); Qwen3
# head_dim 16 with interleaved [4, 2, 2] (T: slots 0, 3, 6, 7 = 8 dims, two groups)
TEXT = {"qwen2_5": {"num_attention_heads": 8, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                                  "mrope_section": [2, 1, 1]}},
        "qwen3": {"num_attention_heads": 8, "head_dim": 16, "rope_parameters": {
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}}}
SAMPLES = {"qwen2_5": [(5, (2, 4, 4), 4), (2, (3, 4, 6), 2)], "qwen3": [(5, (2, 4, 4), 4), (2, (3, 4, 6), 3)]}
MODES = ("prope", "gta", "cape")


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    root = tmp_path_factory.mktemp("camattn")
    out = {}
    for family, save, cls in (("qwen2_5", tiny_models.save_tiny_qwen2_5_vl, "Qwen2_5_VLForConditionalGeneration"),
                              ("qwen3", tiny_models.save_tiny_qwen3_vl, "Qwen3VLForConditionalGeneration")):
        for kv in (2, 4):
            path = save(root / f"{family}-{kv}", seed=3, num_key_value_heads=kv, **TEXT[family])
            model = getattr(transformers, cls).from_pretrained(path, dtype=torch.float32,
                                                               attn_implementation="sdpa").eval()
            out[family, kv] = model
    return out


def batch(model, family, seed=0):
    kwargs, frames = make_batch(model, family, SAMPLES[family], seed)
    cams = [trajectory(s, 5 + i).to(torch.float64) for i, s in enumerate(frames)]
    ks = [torch.tensor([[60.0, 0, 33], [0, 55.0, 23], [0, 0, 1]]).repeat(s, 1, 1) + 0.5 * i
          for i, s in enumerate(frames)]
    hw = [torch.tensor([48, 64]) for _ in frames]
    return kwargs, cams, ks, hw


def extra_inputs(cams, ks, hw, w2c=None):
    return {"w2c_opencv": [c.to(torch.float32) for c in (w2c or cams)], "K_pixels": ks, "image_hw": hw}


def enabled(model, family, camera=None, **kw):
    return enable_pose_positions(copy.deepcopy(model), position_spec("thw", family), camera_attention=camera, **kw)


@torch.no_grad()
def logits(model, kwargs, extra):
    return model(**kwargs, **extra).logits


def rigid(w2c_list, seed=0):
    g = torch.eye(4, dtype=torch.float64)
    g[:3, :3] = _rot([0.3, -0.5, 0.8], 1.1 + seed)
    g[:3, 3] = torch.tensor([2.0, -1.0, 0.5]) * (seed + 1)
    return [c @ torch.linalg.inv(g) for c in w2c_list]


# (1) identity cameras ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
@pytest.mark.parametrize("mode", MODES)
def test_identity_cameras_are_a_no_op(stock, family, mode):
    """With identity cameras the camera block is the identity: the model equals the same positions with the
    camera dims unrotated ("off", the default) and the untouched stock model ("keep")."""
    base = stock[family, 2]
    kwargs, cams, ks, hw = batch(base, family)
    eye = [torch.eye(4, dtype=torch.float64).repeat(len(c), 1, 1) for c in cams]
    same_k = [k[:1].expand_as(k).clone() for k in ks]
    extra = extra_inputs(eye, same_k, hw)

    off = enabled(base, family, CameraAttentionSpec(mode=mode))
    masked = pose_positions_config(off)["slot_axis"]
    rotary_off = [-1 if a == 0 else a for a in masked]  # axis 0 = T: the camera dims
    positions_only = enable_pose_positions(copy.deepcopy(base), position_spec("thw", family), slot_axis=rotary_off)
    torch.testing.assert_close(logits(off, kwargs, extra), logits(positions_only, kwargs, {}), atol=1e-5, rtol=0)
    keep = enabled(base, family, CameraAttentionSpec(mode=mode, rotary_on_camera_dims="keep"))
    torch.testing.assert_close(logits(keep, kwargs, extra), logits(base, kwargs, {}), atol=1e-5, rtol=0)
    # and real cameras do change the outputs
    assert (logits(off, kwargs, extra_inputs(cams, ks, hw)) - logits(off, kwargs, extra)).abs().max() > 1e-3


# (2) invariances ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
@pytest.mark.parametrize("mode", MODES)
def test_world_frame_and_scale_do_not_matter_but_the_convention_does(stock, family, mode):
    base = stock[family, 2]
    kwargs, cams, ks, hw = batch(base, family)
    model = enabled(base, family, CameraAttentionSpec(mode=mode, bias="alibi"))
    ref = logits(model, kwargs, extra_inputs(cams, ks, hw))
    moved = logits(model, kwargs, extra_inputs(cams, ks, hw, w2c=rigid(cams)))
    torch.testing.assert_close(moved, ref, atol=2e-4, rtol=1e-4)
    scaled = [c.clone() for c in cams]
    for c in scaled:
        c[:, :3, 3] *= 2.5
    torch.testing.assert_close(logits(model, kwargs, extra_inputs(cams, ks, hw, w2c=scaled)), ref, atol=2e-4,
                               rtol=1e-4)
    # c2w handed over as w2c: the encoding changes, and stops being invariant to the world frame
    c2w = [torch.linalg.inv(c) for c in cams]
    wrong = logits(model, kwargs, extra_inputs(cams, ks, hw, w2c=c2w))
    wrong_moved = logits(model, kwargs, extra_inputs(cams, ks, hw, w2c=[torch.linalg.inv(c) for c in rigid(cams)]))
    assert (wrong - ref).abs().max() > 1e-3 and (wrong_moved - wrong).abs().max() > 1e-3


def test_without_normalisation_scale_changes_the_encoding(stock):
    base = stock["qwen2_5", 2]
    kwargs, cams, ks, hw = batch(base, "qwen2_5")
    model = enabled(base, "qwen2_5", CameraAttentionSpec(mode="gta", translation_norm="none"))
    scaled = [c.clone() for c in cams]
    for c in scaled:
        c[:, :3, 3] *= 2.5
    ref = logits(model, kwargs, extra_inputs(cams, ks, hw))
    assert (logits(model, kwargs, extra_inputs(cams, ks, hw, w2c=scaled)) - ref).abs().max() > 1e-3


# (3) decode = full forward, generate, backends, GQA -------------------------------------------------------------
CASES = {f"{f}-{m}-kv{kv}": (f, CameraAttentionSpec(mode=m), kv) for f in ("qwen2_5", "qwen3") for m in MODES
         for kv in (2, 4) if kv == 2 or m == "prope"}
CASES.update({f"{f}-gta-learned-bias": (f, CameraAttentionSpec(mode="gta", bias="learned"), 2)
              for f in ("qwen2_5", "qwen3")})
CASES["qwen2_5-bias-only-alibi"] = ("qwen2_5", CameraAttentionSpec(mode="none", bias="alibi"), 4)


@pytest.mark.parametrize("family,camera,kv", list(CASES.values()), ids=list(CASES))
@torch.no_grad()
def test_generate_and_cached_decode_equal_one_full_forward(stock, family, camera, kv):
    base = stock[family, kv]
    model = enabled(base, family, camera)
    if camera.bias == "learned":  # slopes start at 0; make them matter
        for layer in model.model.language_model.layers:
            getattr(layer.self_attn, SLOPES_NAME).copy_(torch.linspace(0.2, 1.5, 8))
    kwargs, cams, ks, hw = batch(model, family)
    extra = extra_inputs(cams, ks, hw)
    gen = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
    cached = model.generate(**kwargs, **extra, **gen, output_logits=True, return_dict_in_generate=True)
    length = kwargs["input_ids"].shape[1]
    seq = cached.sequences
    full_mask = torch.cat([kwargs["attention_mask"], torch.ones(2, NEW_TOKENS, dtype=torch.long)], 1)
    full_mm = torch.cat([kwargs["mm_token_type_ids"], torch.zeros(2, NEW_TOKENS, dtype=torch.long)], 1)
    full_kwargs = {**kwargs, "input_ids": seq, "attention_mask": full_mask, "mm_token_type_ids": full_mm}
    full = model(**full_kwargs, **extra).logits
    torch.testing.assert_close(torch.stack(cached.logits, 1), full[:, length - 1: length + NEW_TOKENS - 1],
                               atol=2e-5, rtol=2e-5)
    # eager attention gives the same outputs as sdpa
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    valid = full_mask.bool()  # padded positions attend to nothing; backends fill them differently
    torch.testing.assert_close(eager(**full_kwargs, **extra).logits[valid], full[valid], atol=2e-5, rtol=2e-5)


# (4) the bias ------------------------------------------------------------------------------------------------
def test_zero_slopes_reproduce_the_model_without_bias(stock):
    base = stock["qwen3", 2]
    kwargs, cams, ks, hw = batch(base, "qwen3")
    extra = extra_inputs(cams, ks, hw)
    plain = enabled(base, "qwen3", CameraAttentionSpec(mode="gta"))
    learned = enabled(base, "qwen3", CameraAttentionSpec(mode="gta", bias="learned"))
    assert all(not getattr(lay.self_attn, SLOPES_NAME).detach().any() for lay in learned.model.language_model.layers)
    valid = kwargs["attention_mask"].bool()  # padded positions attend to nothing; the float mask fills them differently
    torch.testing.assert_close(logits(learned, kwargs, extra)[valid], logits(plain, kwargs, extra)[valid], atol=1e-6,
                               rtol=0)
    alibi = enabled(base, "qwen3", CameraAttentionSpec(mode="gta", bias="alibi"))
    assert (logits(alibi, kwargs, extra) - logits(plain, kwargs, extra)).abs().max() > 1e-4


def two_videos_in_a_row(model, family, seed=0):
    """Left-padded batch of 2 rows; row 0 holds two videos (cross-video pairs get no bias), row 1 one video."""
    samples = [(4, (2, 4, 4), 2), (3, (3, 4, 6), 3), (5, (2, 4, 6), 1)]
    kwargs, frames = make_batch(model, family, samples, seed)
    ids, mm, mask = kwargs["input_ids"], kwargs["mm_token_type_ids"], kwargs["attention_mask"].bool()
    rows = [(torch.cat([ids[0][mask[0]], ids[1][mask[1]]]), torch.cat([mm[0][mask[0]], mm[1][mask[1]]])),
            (ids[2][mask[2]], mm[2][mask[2]])]
    length = max(len(r) for r, _ in rows)
    pad = model.config.text_config.pad_token_id
    left = lambda t, fill: torch.cat([torch.full((length - len(t),), fill, dtype=t.dtype), t])  # noqa: E731
    kwargs.update(input_ids=torch.stack([left(r, pad) for r, _ in rows]),
                  mm_token_type_ids=torch.stack([left(t, 0) for _, t in rows]),
                  attention_mask=torch.stack([left(torch.ones(len(r), dtype=torch.long), 0) for r, _ in rows]))
    if family == "qwen2_5":
        kwargs["second_per_grid_ts"] = torch.tensor([1.0, 2.0, 1.0])
    cams = [trajectory(s, 5 + i).to(torch.float64) for i, s in enumerate(frames)]
    ks = [torch.tensor([[60.0, 0, 33], [0, 55.0, 23], [0, 0, 1]]).repeat(s, 1, 1) + 0.5 * i
          for i, s in enumerate(frames)]
    return kwargs, cams, ks, [torch.tensor([48, 64]) for _ in frames]


def set_slopes(model, lo=0.3, hi=2.0):
    for i, layer in enumerate(model.model.language_model.layers):
        with torch.no_grad():
            getattr(layer.self_attn, SLOPES_NAME).copy_(torch.linspace(lo, hi, 8) + 0.1 * i)


@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kv", [2, 4])
def test_factored_bias_equals_the_dense_reference(stock, family, attn, kv):
    """The factored bias (extra q/k head dims, no L x L tensor) gives the dense (B, H, L, L) float-mask reference's
    logits and gradients (learned slopes, q_proj, the cameras' w2c entries): left padding, GQA, two videos in one
    row, camera transform on (in place on q/k/v, with cameras that need gradients)."""
    base = copy.deepcopy(stock[family, kv])
    base.set_attn_implementation(attn)
    kwargs, cams, ks, hw = two_videos_in_a_row(base, family)
    valid = kwargs["attention_mask"].bool()
    results = {}
    for impl in ("dense", "factored"):
        model = enabled(base, family, CameraAttentionSpec(mode="prope", bias="learned", bias_impl=impl)).train()
        set_slopes(model)
        w2c = [c.to(torch.float32).requires_grad_(True) for c in cams]
        out = model(**kwargs, w2c_opencv=w2c, K_pixels=ks, image_hw=hw).logits
        out[valid].logsumexp(-1).mean().backward()
        layers = model.model.language_model.layers
        results[impl] = (out[valid].detach(), [getattr(lay.self_attn, SLOPES_NAME).grad for lay in layers],
                         [lay.self_attn.q_proj.weight.grad for lay in layers] + [c.grad for c in w2c])
    (out_d, slopes_d, rest_d), (out_f, slopes_f, rest_f) = results["dense"], results["factored"]
    torch.testing.assert_close(out_f, out_d, atol=1e-5, rtol=1e-5)
    for a, b in zip(slopes_f + rest_f, slopes_d + rest_d):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert all(g.abs().min() > 0 for g in slopes_d) and all(g.abs().max() > 0 for g in rest_d[-3:])
    extra = extra_inputs(cams, ks, hw)
    plain = enabled(base, family, CameraAttentionSpec(mode="prope")).eval()
    with torch.no_grad():
        assert (plain(**kwargs, **extra).logits[valid] - out_f).abs().max() > 1e-3


def test_row_tables_keep_each_rows_cameras_and_zero_across_videos():
    """The (N, N) table of all the batch's cameras -> one (C, C) table per row with row-local camera ids; pairs
    of different videos stay 0 (block diagonal), cameras of other rows do not leak in."""
    from posevlm.models.camera_attention import _row_tables

    full = torch.block_diag(torch.full((2, 2), 1.0), torch.full((3, 3), 2.0), torch.full((1, 1), 3.0))  # 3 videos
    full = full - torch.diag(full.diagonal())
    ci = torch.tensor([[-1, 0, 1, -1, 2, 3, 4], [-1, -1, -1, -1, 5, 5, -1], [-1] * 7])  # row 0: videos 0 and 1
    table, local = _row_tables(full, ci)
    assert table.shape == (3, 5, 5) and torch.equal(local[0], torch.tensor([-1, 0, 1, -1, 2, 3, 4]))
    assert torch.equal(local[1], torch.tensor([-1, -1, -1, -1, 0, 0, -1])) and (local[2] == -1).all()
    torch.testing.assert_close(table[0], full[:5, :5])
    assert (table[0, :2, 2:] == 0).all() and (table[1] == 0).all() and (table[2] == 0).all()


def _tiny_layer(bias="learned"):
    from transformers import Qwen2_5_VLTextConfig
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as modeling

    from posevlm.models.families import model_families

    family = model_families.get("qwen2_5_vl")
    cfg = Qwen2_5_VLTextConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=1,
                               rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    layer = modeling.Qwen2_5_VLAttention(cfg, layer_idx=0).eval()
    patch_attention_layer(layer, family, bias=bias, num_heads=4)
    if bias == "learned":
        with torch.no_grad():
            getattr(layer, SLOPES_NAME).copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
    return layer


def test_biased_prefill_keeps_the_causal_fast_path(monkeypatch):
    """With the bias, SDPA still gets no mask and is_causal=True (its causal fast path) and 8 more q/k/v head dims
    (5 cameras rounded up); the dense reference passes a (B, H, L, L) float mask; both give the same output.
    Text before, one video of 3 + 2 cameras (two videos), text after, like a real prompt."""
    layer = _tiny_layer()
    length = 30
    ci = torch.tensor([[-1] * 4 + [0] * 6 + [1] * 6 + [2] * 4 + [3] * 3 + [4] * 3 + [-1] * 4])
    table = torch.block_diag(pose_distance_table(random_w2c(0, 3).float()[None])[0],
                             pose_distance_table(random_w2c(1, 2).float()[None])[0])[None]
    x = torch.randn(1, length, 64, generator=torch.Generator().manual_seed(0))
    pos = torch.arange(length, dtype=torch.float32)[None, None].expand(3, 1, -1)
    inv_freq = 1.0 / (1e4 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
    pe = MultiAxisRotary(inv_freq, [-1] * 2 + [1] * 3 + [2] * 3)(pos)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, is_causal=False, **kw):
        calls.append((q.shape[-1], k.shape[-1], v.shape[-1], attn_mask, is_causal))
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    with torch.no_grad():
        outs = {impl: layer(hidden_states=x, attention_mask=None, position_embeddings=pe,
                            posevlm_camera=CameraContext(None, table, ci, impl))[0] for impl in ("factored", "dense")}
    (qd, kd, vd, mask, causal), dense_call = calls
    assert (qd, kd, vd, mask, causal) == (24, 24, 24, None, True)
    assert dense_call[3] is not None and dense_call[3].shape == (1, 4, length, length) and not dense_call[4]
    torch.testing.assert_close(outs["factored"], outs["dense"], atol=1e-5, rtol=1e-5)


# (5) config round trip, errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
def test_spec_and_learned_slopes_survive_save_and_load(stock, family, tmp_path):
    model = enabled(stock[family, 2], family, CameraAttentionSpec(mode="prope", bias="learned", reference="medoid"))
    for i, layer in enumerate(model.model.language_model.layers):
        with torch.no_grad():
            getattr(layer.self_attn, SLOPES_NAME).copy_(torch.arange(8.0) * 0.1 + i)
    kwargs, cams, ks, hw = batch(model, family)
    extra = extra_inputs(cams, ks, hw)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_pose_model(tmp_path / "ckpt", dtype=torch.float32).eval()
    stored = pose_positions_config(loaded)["camera_attention"]
    assert stored["mode"] == "prope" and stored["reference"] == "medoid" and stored["bias"] == "learned"
    for a, b in zip(model.model.language_model.layers, loaded.model.language_model.layers):
        assert torch.equal(getattr(a.self_attn, SLOPES_NAME), getattr(b.self_attn, SLOPES_NAME))
    torch.testing.assert_close(logits(loaded, kwargs, extra), logits(model, kwargs, extra), atol=1e-5, rtol=0)
    # enabling again without camera attention restores the stock attention
    plain = enable_pose_positions(loaded, position_spec("thw", family))
    assert not hasattr(plain.model.language_model.layers[0].self_attn, SLOPES_NAME)
    torch.testing.assert_close(logits(plain, kwargs, {}), logits(stock[family, 2], kwargs, {}), atol=1e-5, rtol=0)


def test_bad_camera_inputs_say_what_is_missing(stock):
    base = stock["qwen2_5", 2]
    kwargs, cams, ks, hw = batch(base, "qwen2_5")
    prope = enabled(base, "qwen2_5", CameraAttentionSpec(mode="prope"))
    with pytest.raises(ShapeError, match="K_pixels"):
        logits(prope, kwargs, {"w2c_opencv": cams})
    with pytest.raises(ShapeError, match="w2c_opencv"):
        logits(prope, kwargs, {})
    with pytest.raises(ShapeError, match="frames"):
        logits(prope, kwargs, extra_inputs([c[:1] for c in cams], ks, hw))
    with pytest.raises(ConfigError, match="no T axis"):  # PHW: P took T's slots; the camera dims must be explicit
        enable_pose_positions(copy.deepcopy(base), position_spec("phw"), camera_attention=CameraAttentionSpec())
    phw = enable_pose_positions(copy.deepcopy(base), position_spec("phw"),
                                camera_attention=CameraAttentionSpec(dims=(0, 1, 4, 5), rotary_on_camera_dims="keep"))
    assert logits(phw, kwargs, extra_inputs(cams, ks, hw)).isfinite().all()
    with pytest.raises(ConfigError, match="mode="):
        CameraAttentionSpec(mode="rope")
    with pytest.raises(ConfigError, match="multiple of 4"):
        CameraAttentionSpec(dims=(0, 1, 2))


def test_backward_reaches_the_weights_and_the_learned_slopes(stock):
    """Training through camera attention: the in-place transforms keep autograd valid, and the bias slopes
    (initialised at 0) receive gradients."""
    base = stock["qwen2_5", 2]
    model = enabled(base, "qwen2_5", CameraAttentionSpec(mode="prope", bias="learned")).train()
    kwargs, cams, ks, hw = batch(model, "qwen2_5")
    out = model(**kwargs, **extra_inputs(cams, ks, hw))
    valid = kwargs["attention_mask"].bool()
    out.logits[valid].logsumexp(-1).mean().backward()
    slopes = [getattr(layer.self_attn, SLOPES_NAME).grad for layer in model.model.language_model.layers]
    assert all(g is not None and g.isfinite().all() and g.abs().sum() > 0 for g in slopes)
    q_grad = model.model.language_model.layers[0].self_attn.q_proj.weight.grad
    assert q_grad is not None and q_grad.isfinite().all()


@torch.no_grad()
def test_expanded_generation_uses_the_cameras_of_each_prompt(stock):
    """num_return_sequences / beams repeat every prompt: each copy gets its prompt's cameras (top-k 1
    sampling is greedy, so every copy must equal the plain greedy answer)."""
    model = enabled(stock["qwen3", 2], "qwen3", CameraAttentionSpec(mode="prope", bias="alibi"))
    kwargs, cams, ks, hw = batch(model, "qwen3")
    extra = extra_inputs(cams, ks, hw)
    gen = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    greedy = model.generate(**kwargs, **extra, **gen, do_sample=False)
    copies = model.generate(**kwargs, **extra, **gen, do_sample=True, top_k=1, num_return_sequences=2)
    assert torch.equal(copies[0::2], greedy) and torch.equal(copies[1::2], greedy)
    beams = model.generate(**kwargs, **extra, **gen, num_beams=2, num_return_sequences=2, do_sample=False)
    assert beams.shape == (4, greedy.shape[1])


def test_pose_inputs_are_never_silently_ignored(stock):
    import warnings

    base = stock["qwen2_5", 2]
    kwargs, cams, ks, hw = batch(base, "qwen2_5")
    model = enable_pose_positions(copy.deepcopy(base), position_spec("phw"))
    embeds = {k: v for k, v in kwargs.items() if k != "input_ids"}
    embeds["inputs_embeds"] = model.get_input_embeddings()(kwargs["input_ids"])
    with pytest.raises(ShapeError, match="need input_ids at prefill"):
        logits(model, embeds, {"w2c_opencv": cams})
    stock_rows = base.model.get_rope_index(kwargs["input_ids"], mm_token_type_ids=kwargs["mm_token_type_ids"],
                                           video_grid_thw=kwargs["video_grid_thw"],
                                           second_per_grid_ts=kwargs["second_per_grid_ts"],
                                           attention_mask=kwargs["attention_mask"])[0]
    with pytest.warns(UserWarning, match="ignores w2c_opencv"):
        logits(model, {**kwargs, "position_ids": stock_rows}, {"w2c_opencv": cams})
    with warnings.catch_warnings():  # the rows posevlm builds itself (generate, whatever its mode) never warn
        warnings.filterwarnings("error", message=".*ignores w2c_opencv.*")
        fresh = enable_pose_positions(copy.deepcopy(base), position_spec("phw"))
        gen = {"max_new_tokens": 2, "w2c_opencv": cams}
        greedy = fresh.generate(**kwargs, **gen, do_sample=False)
        assert torch.equal(fresh.generate(**kwargs, **gen, do_sample=False, use_cache=False), greedy)
        copies = fresh.generate(**kwargs, **gen, do_sample=True, top_k=1, num_return_sequences=2)
        assert torch.equal(copies[0::2], greedy) and torch.equal(copies[1::2], greedy)
        fresh.generate(**kwargs, **gen, num_beams=2, do_sample=False)
    with pytest.raises(ShapeError, match="need input_ids in generate"):
        fresh.generate(**embeds, w2c_opencv=cams, max_new_tokens=2)


@torch.no_grad()
def test_uncached_generation_and_stacked_inputs_with_camera_attention(stock):
    """use_cache=False re-runs prompt + generated tokens every step (the generated ones without a camera);
    stacked per-video tensors repeated by generate() for num_return_sequences are taken once per video;
    chunked prefill is refused with a message that says so."""
    model = enabled(stock["qwen2_5", 2], "qwen2_5", CameraAttentionSpec(mode="prope", bias="alibi"))
    kwargs, cams, ks, hw = batch(model, "qwen2_5")
    gen = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    cached = model.generate(**kwargs, **extra_inputs(cams, ks, hw), **gen, do_sample=False)
    uncached = model.generate(**kwargs, **extra_inputs(cams, ks, hw), **gen, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    # two videos with the same frame count, passed as stacked (N_vid, S, ...) tensors
    kw2, frames = make_batch(model, "qwen2_5", [(5, (2, 4, 4), 4), (2, (2, 4, 6), 2)], 1)
    w2c = torch.stack([trajectory(s, 9 + i) for i, s in enumerate(frames)])
    stacked = {"w2c_opencv": w2c, "K_pixels": torch.stack(ks[:1] * 2)[:, :4], "image_hw": torch.stack(hw)}
    listed = {k: list(v.unbind(0)) for k, v in stacked.items()}
    greedy = model.generate(**kw2, **listed, **gen, do_sample=False)
    copies = model.generate(**kw2, **stacked, **gen, do_sample=True, top_k=1, num_return_sequences=2)
    assert torch.equal(copies[0::2], greedy) and torch.equal(copies[1::2], greedy)
    with pytest.raises(ShapeError, match="whole prompt in one call"):
        model.generate(**kwargs, **extra_inputs(cams, ks, hw), **gen, prefill_chunk_size=8)


def test_camera_overrides_are_typed_and_validated():
    from posevlm.models.camera_attention import parse_camera_overrides

    over = parse_camera_overrides(["rotary_on_camera_dims=keep", "dims=0,1,2,3", "bias_lam=0.5"])
    assert over == {"rotary_on_camera_dims": "keep", "dims": (0, 1, 2, 3), "bias_lam": 0.5}
    for bad, match in (("reference=middle", "reference"), ("mode=gta", "KEY=VALUE"), ("bias_lam=x", "number"),
                       ("dims=0,1,2", "multiple of 4"), ("bias=none", "own flags"), ("dims=0,1,x,3", "integers")):
        with pytest.raises(ConfigError, match=match):
            parse_camera_overrides([bad])
