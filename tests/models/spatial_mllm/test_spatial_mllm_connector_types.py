"""Every connector type through the whole SpatialMLLM (tiny Qwen2.5-VL / Qwen3-VL + tiny VGGT, CPU, float32):
forward, cached generate, what each starts as, and the extra tokens of ``sequence_cat`` (prompt, positions,
camera attention on the 2D tokens only)."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError, ShapeError  # noqa: E402
from posevlm.models import enable_pose_positions  # noqa: E402
from posevlm.models.spatial_mllm import SpatialMLLM, connectors, expand_video_pads  # noqa: E402
from posevlm.positions import position_spec  # noqa: E402

from spatial_mllm_tiny import SAMPLES_QWEN2_5, SAMPLES_QWEN3, Recorder, count_calls, make_batch, tiny_vggt  # noqa: E402

NEW_TOKENS = 3
TYPES = ("add", "v1_0", "channel_cat", "sequence_cat", "cross_attn")


def spatial(bases, family="qwen2_5", connector="add", **kw) -> SpatialMLLM:
    kw.setdefault("seed", 0)
    return SpatialMLLM.compose(copy.deepcopy(bases[family]), tiny_vggt(), connector, **kw)


def batch(model: SpatialMLLM, family: str):
    kwargs, frames = make_batch(model.qwen.config, SAMPLES_QWEN2_5 if family == "qwen2_5" else SAMPLES_QWEN3,
                                family=family)
    return kwargs, model.expand_inputs(kwargs), frames


def livened(model: SpatialMLLM) -> SpatialMLLM:
    """Every connector weight moved off its init (channel_cat's [I, 0] and cross_attn's zero residual branches
    make a fresh connector return the 2D tokens): the 3D path is live in generation tests."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.connector.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def extend(kwargs: dict, seq: torch.Tensor) -> dict:
    """The forward inputs of prompt + generated tokens (text: mask 1, type 0)."""
    n = seq.shape[1] - kwargs["input_ids"].shape[1]
    ones = torch.ones(seq.shape[0], n, dtype=torch.long)
    return dict(kwargs, input_ids=seq, attention_mask=torch.cat([kwargs["attention_mask"], ones], 1),
                mm_token_type_ids=torch.cat([kwargs["mm_token_type_ids"], 0 * ones], 1))


def layout(kwargs: dict, expanded: dict, video_token_id: int, merge: int):
    """Index-by-index reference of where the extra tokens went: per row, (expanded index, original index or None,
    expanded index of the cell's own 2D token for an extra token or None)."""
    counts = [t * (h // merge) * (w // merge) for t, h, w in kwargs["video_grid_thw"].tolist()]
    out, video, k, cells = [], 0, 0, []
    for b in range(expanded["input_ids"].shape[0]):
        originals = kwargs["attention_mask"][b].nonzero().squeeze(-1).tolist()
        row, i = [], 0
        for pos in expanded["attention_mask"][b].nonzero().squeeze(-1).tolist():
            if int(expanded["input_ids"][b, pos]) == video_token_id and k >= counts[video]:
                row.append((pos, None, cells[(k - counts[video]) % counts[video]]))
                k += 1
            else:
                if int(expanded["input_ids"][b, pos]) == video_token_id:
                    cells.append(pos)
                    k += 1
                row.append((pos, originals[i], None))
                i += 1
            if video < len(counts) and k == 2 * counts[video]:
                video, k, cells = video + 1, 0, []
        assert i == len(originals)
        out.append(row)
    return out


# ---- every connector: forward + cached generate ----------------------------------------------------------------
@pytest.mark.parametrize("family,type_", [("qwen2_5", t) for t in TYPES] + [("qwen3", "sequence_cat")])
@torch.no_grad()
def test_every_connector_generates_with_cache_like_a_full_forward(bases, family, type_):
    """Left-padded batch with two videos in sample 0: the connector changes the video tokens (or adds its own),
    cached greedy generation equals the argmax and logits of one full forward over prompt + generated tokens, and
    the vision tower runs once and VGGT once per video shape, never in decode steps."""
    model = livened(spatial(bases, family, type_))
    kwargs, inputs, frames = batch(model, family)
    extra = connectors.get(type_).extra_tokens_per_visual_token
    assert inputs["input_ids"].shape[1] > kwargs["input_ids"].shape[1] if extra else \
        torch.equal(inputs["input_ids"], kwargs["input_ids"])
    rec = Recorder(model.qwen.model.language_model)
    model(**inputs, video_tchw=frames)
    rec.remove()
    stock = Recorder(bases[family].model.language_model)
    bases[family](**kwargs)
    stock.remove()
    video = kwargs["input_ids"] == model.qwen.config.video_token_id
    ours, base = rec.calls[0]["inputs_embeds"], stock.calls[0]["inputs_embeds"]
    if extra:  # the 2D tokens stay, the 3D tokens come as extra tokens
        assert ours.shape[1] == inputs["input_ids"].shape[1]
    else:
        assert torch.equal(ours[~video], base[~video]) and (ours[video] - base[video]).abs().max() > 1e-3
    vggt_calls = count_calls(model.spatial_encoder.aggregator)
    vision_calls = count_calls(model.qwen.model.visual)
    out = model.generate(**inputs, video_tchw=frames, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                         do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert vggt_calls == [2] and vision_calls == [1]
    length = inputs["input_ids"].shape[1]
    full = model(**extend(inputs, out.sequences), video_tchw=frames).logits
    steps = full[:, length - 1: length + NEW_TOKENS - 1]
    assert torch.equal(steps.argmax(-1), out.sequences[:, length:])
    torch.testing.assert_close(torch.stack(out.logits, 1), steps, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("type_", ["channel_cat", "cross_attn"])
@torch.no_grad()
def test_fresh_channel_cat_and_cross_attn_models_are_the_connector_less_model(bases, type_):
    """Identity-initialised connectors start as "visual only": the same logits as the stock Qwen model."""
    model = spatial(bases, connector=type_)
    kwargs, inputs, frames = batch(model, "qwen2_5")
    calls = count_calls(model.spatial_encoder.aggregator)
    logits = model(**inputs, video_tchw=frames).logits
    assert calls == [2]  # the 3D path ran
    assert torch.equal(logits, bases["qwen2_5"](**kwargs).logits)
    assert (livened(model)(**inputs, video_tchw=frames).logits - logits).abs().max() > 1e-4


# ---- sequence_cat: the extra tokens ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
@torch.no_grad()
def test_sequence_cat_prompt_and_embeddings(bases, family):
    """(1 + 1) pads per merged token, the extra ones after each video's own; the 2D tokens are the stock ones and
    the extra tokens are the connector's 3D tokens of the same cells, in order."""
    model = spatial(bases, family, "sequence_cat")
    kwargs, inputs, frames = batch(model, family)
    vid = model.qwen.config.video_token_id
    assert int((inputs["input_ids"] == vid).sum()) == 2 * int((kwargs["input_ids"] == vid).sum())
    assert torch.equal(inputs["mm_token_type_ids"] == 2, inputs["input_ids"] == vid)
    assert torch.equal(inputs["attention_mask"].sum(1) - kwargs["attention_mask"].sum(1),
                       (inputs["input_ids"] == vid).sum(1) - (kwargs["input_ids"] == vid).sum(1))
    with pytest.raises(ShapeError, match="expand the processor's own output"):
        model.expand_inputs(inputs)  # twice
    rec = Recorder(model.qwen.model.language_model)
    model(**inputs, video_tchw=frames)
    rec.remove()
    stock = Recorder(bases[family].model.language_model)
    bases[family](**kwargs)
    stock.remove()
    ours, base = rec.calls[0]["inputs_embeds"], stock.calls[0]["inputs_embeds"]
    state = model.encode_spatial(frames, kwargs["video_grid_thw"])
    geo = [model.connector.project(s) for s in state.tokens]
    geo_by_video = iter(geo)
    current = None
    for b, row in enumerate(layout(kwargs, inputs, vid, 2)):
        for pos, orig, cell in row:
            if orig is not None:
                assert torch.equal(ours[b, pos], base[b, orig])
            else:
                if current is None or j == len(current):
                    current, j = next(geo_by_video), 0
                torch.testing.assert_close(ours[b, pos], current[j], atol=1e-6, rtol=0)
                j += 1


@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
@torch.no_grad()
def test_sequence_cat_positions_put_each_3d_token_at_its_2d_token(bases, family):
    """transformers 5.23's get_rope_index gives a video N positions whatever its pad count, so a prompt with
    extra pads fails there; posevlm's builder (installed for sequence_cat) leaves the extra tokens out and then gives
    each the rows of its cell's 2D token. Text and 2D tokens sit exactly where get_rope_index puts them without the
    extra tokens."""
    model = spatial(bases, family, "sequence_cat")
    kwargs, inputs, frames = batch(model, family)
    spg = {"second_per_grid_ts": kwargs["second_per_grid_ts"]} if family == "qwen2_5" else {}
    stock = bases[family].model
    with pytest.raises(RuntimeError):
        stock.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"],
                             attention_mask=inputs["attention_mask"], **spg)
    ref, _ = stock.get_rope_index(kwargs["input_ids"], kwargs["mm_token_type_ids"],
                                  video_grid_thw=kwargs["video_grid_thw"], attention_mask=kwargs["attention_mask"], **spg)
    rec = Recorder(model.qwen.model.language_model)
    model(**inputs, video_tchw=frames)
    rec.remove()
    rows = rec.calls[0]["position_ids"]
    mask = inputs["attention_mask"]
    assert torch.equal(rows[0].long()[mask.bool()], (mask.cumsum(-1) - 1)[mask.bool()])  # sequence index
    n_extra = 0
    for b, row in enumerate(layout(kwargs, inputs, model.qwen.config.video_token_id, 2)):
        for pos, orig, cell in row:
            if orig is not None:
                assert torch.equal(rows[1:, b, pos].long(), ref[:, b, orig])
            else:
                assert torch.equal(rows[1:, b, pos], rows[1:, b, cell])
                n_extra += 1
    assert n_extra == int((kwargs["input_ids"] == model.qwen.config.video_token_id).sum())


@torch.no_grad()
def test_sequence_cat_camera_attention_transforms_the_2d_tokens_only(bases):
    """PRoPE with VGGT cameras: every 2D token gets the transform it gets without extra tokens (an ``add`` model
    with the same VGGT and prompt), every extra token the identity and no camera (no pose-distance bias)."""
    captured = []

    def capture(module, args, kwargs):
        captured.append(kwargs.get("posevlm_camera"))

    cams = {"mode": "prope", "bias": "alibi"}
    seq = spatial(bases, connector="sequence_cat", camera_attention=cams)
    add = spatial(bases, connector="add", camera_attention=cams)
    kwargs, inputs, frames = batch(seq, "qwen2_5")
    for model, given in ((seq, inputs), (add, kwargs)):
        handle = model.qwen.model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
        model(**given, video_tchw=frames)
        handle.remove()
    ours, ref = captured
    eye = torch.eye(4)
    moved = 0
    for b, row in enumerate(layout(kwargs, inputs, seq.qwen.config.video_token_id, 2)):
        for pos, orig, _ in row:
            for name in ("mat_q", "mat_kv", "mat_o"):
                got = getattr(ours.transform, name)[b, pos]
                if orig is None:
                    assert torch.equal(got, eye)
                else:
                    torch.testing.assert_close(got, getattr(ref.transform, name)[b, orig], atol=1e-6, rtol=0)
                    moved += int((got - eye).abs().max() > 1e-4)
            assert int(ours.camera_index[b, pos]) == (-1 if orig is None else int(ref.camera_index[b, orig]))
    assert moved > 0


def test_sequence_cat_refuses_pose_index_positions(bases):
    with pytest.raises(ConfigError, match="pose index P"):
        spatial(bases, connector="sequence_cat", positions="pthw")
    model = spatial(bases, connector="sequence_cat", positions="thw_index")
    assert model.config.positions.temporal == "index"
    with pytest.raises(ConfigError, match="pose index P"):
        model.enable_pose_positions("pthw")
    with pytest.raises(ConfigError, match="extra video token"):
        enable_pose_positions(copy.deepcopy(bases["qwen2_5"]), position_spec("pthw"), extra_video_tokens=1)


# ---- expand_video_pads -------------------------------------------------------------------------------------------
def test_expand_video_pads_keeps_text_order_and_padding_side():
    """Row 0 holds two videos (2 and 4 merged tokens), row 1 one (4): each gets its extra pads after its own."""
    vid = 9
    valid = [[5, 9, 9, 6, 9, 9, 9, 9, 7], [5, 9, 9, 9, 9]]
    grid = torch.tensor([[1, 2, 4], [1, 4, 4], [1, 4, 4]])

    def padded(side):
        ids = torch.zeros(2, 9, dtype=torch.long)
        mask = torch.zeros(2, 9, dtype=torch.long)
        for b, row in enumerate(valid):
            span = slice(9 - len(row), 9) if side == "left" else slice(0, len(row))
            ids[b, span], mask[b, span] = torch.tensor(row), 1
        return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": (ids == vid).long() * 2 * mask,
                "video_grid_thw": grid, "pixel_values_videos": "kept"}

    want = {1: [[5, 9, 9, 9, 9, 6] + [9] * 8 + [7], [5] + [9] * 8],
            2: [[5] + [9] * 6 + [6] + [9] * 12 + [7], [5] + [9] * 12]}
    for side in ("left", "right"):
        for e in (1, 2):
            out = expand_video_pads(padded(side), video_token_id=vid, spatial_merge_size=2, extra_per_token=e)
            keep = out["attention_mask"].bool()
            assert [out["input_ids"][b][keep[b]].tolist() for b in range(2)] == want[e]
            assert out["pixel_values_videos"] == "kept" and out["input_ids"].shape[1] == len(want[e][0])
            assert torch.equal(out["mm_token_type_ids"] == 2, (out["input_ids"] == vid) & keep)
            short = len(want[e][1])
            expected_mask = [0] * (len(want[e][0]) - short) + [1] * short
            assert out["attention_mask"][1].tolist() == (expected_mask if side == "left" else expected_mask[::-1])
    same = expand_video_pads(padded("left"), video_token_id=vid, spatial_merge_size=2, extra_per_token=0)
    assert all(torch.equal(same[k], padded("left")[k]) for k in ("input_ids", "attention_mask"))
    with pytest.raises(ConfigError, match="extra_per_token"):
        expand_video_pads(padded("left"), video_token_id=vid, spatial_merge_size=2, extra_per_token=-1)
    with pytest.raises(ShapeError, match="gives 6 merged tokens"):
        expand_video_pads(dict(padded("left"), video_grid_thw=grid[:2]), video_token_id=vid,
                          spatial_merge_size=2, extra_per_token=1)
