"""VLM² on a tiny random Qwen2.5-VL + tiny VGGT (camera and point heads): all-off parity with the base composition,
gradients and freeze groups, cached generate, save -> load, memories per video across prompts, sources of 3D."""

from __future__ import annotations

import copy
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError, ShapeError  # noqa: E402
from posevlm.memory import VLM2Config, VLM2State, point_maps_from_depth  # noqa: E402
from posevlm.models.spatial_mllm import ConnectorConfig, SpatialMLLM  # noqa: E402
from posevlm.models.vlm2 import VLM2, VLM2ModelConfig, compose, from_spatial_mllm  # noqa: E402
from posevlm.spatial import VGGT, VGGTConfig  # noqa: E402
from posevlm.train.policy import apply_freeze_policy, optimizer_param_groups, parameter_groups  # noqa: E402

from spatial_mllm_tiny import SAMPLES_QWEN2_5, Recorder, count_calls, make_batch, tiny_models  # noqa: E402

NEW_TOKENS = 3
#: tiny stage sizes: 4 heads over D = 64, memories past capacity within a 2-tubelet video over 2 prompts
TINY = {"num_heads": 4, "num_frequencies": 4, "working_size": 2, "episodic_size": 3}


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    path = tiny_models.save_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_vlm2") / "qwen2_5")
    return transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()


def tiny_vggt(seed: int = 0) -> VGGT:
    torch.manual_seed(seed)
    return VGGT(VGGTConfig.tiny(heads=("camera", "point"))).eval()


def vlm2(qwen, connector=None, **stage) -> VLM2:
    """A VLM² model over a copy of the tiny base (stage random, not zero, unless asked)."""
    return compose(copy.deepcopy(qwen), tiny_vggt(), connector, vlm2={**TINY, "zero_init": False, **stage}, seed=0)


def batch(model, seed: int = 0):
    return make_batch(model.qwen.config, SAMPLES_QWEN2_5, seed=seed)


@torch.no_grad()
def video_embeds(model, kwargs, **extra) -> torch.Tensor:
    """The video-pad rows of the embeddings the text decoder received."""
    rec = Recorder(model.qwen.model.language_model)
    try:
        model(**kwargs, **extra)
    finally:
        rec.remove()
    return rec.calls[0]["inputs_embeds"][kwargs["input_ids"] == model.qwen.config.video_token_id]


# ---- parity with the base composition -----------------------------------------------------------------------------
@pytest.mark.parametrize("connector", [None, "add"])
@torch.no_grad()
def test_all_modules_off_reproduces_the_base_composition_logits_exactly(qwen, connector):
    base = SpatialMLLM.compose(copy.deepcopy(qwen), tiny_vggt(), connector or "none", seed=0)
    kwargs, frames = batch(base)
    want = base(**kwargs, video_tchw=frames).logits
    model = from_spatial_mllm(base, VLM2Config.off(), spatial_encoder=tiny_vggt())
    assert model.config.vlm2.active is False and not list(model.vlm2.parameters())
    calls = count_calls(model.spatial_encoder.aggregator)
    assert torch.equal(model(**kwargs, video_tchw=frames).logits, want)
    assert calls == ([0] if connector is None else [2])  # nothing to compute without a connector
    fresh = from_spatial_mllm(base, {**TINY}, spatial_encoder=tiny_vggt(), seed=3)  # zero_init: starts as the base
    assert fresh.config.vlm2.active and list(fresh.vlm2.parameters())
    assert torch.equal(fresh(**kwargs, video_tchw=frames).logits, want)
    assert len(fresh.memory_states) == 3 and [s.steps for s in fresh.memory_states] == [2, 2, 2]


@torch.no_grad()
def test_every_module_changes_the_video_tokens_only(qwen):
    base = SpatialMLLM.compose(copy.deepcopy(qwen), tiny_vggt(), "add", seed=0)
    kwargs, frames = batch(base)
    video = kwargs["input_ids"] == base.qwen.config.video_token_id
    rec = Recorder(base.qwen.model.language_model)
    base(**kwargs, video_tchw=frames)
    model = from_spatial_mllm(base, {**TINY, "zero_init": False}, seed=0)  # the same modules, plus the stage
    model(**kwargs, video_tchw=frames)
    rec.remove()
    stock, ours = rec.calls[0]["inputs_embeds"], rec.calls[1]["inputs_embeds"]
    assert torch.equal(ours[~video], stock[~video])
    assert not torch.allclose(ours[video], stock[video])


# ---- training: gradients and freeze groups --------------------------------------------------------------------------
def test_gradients_reach_every_vlm2_module_and_freeze_groups_are_registered(qwen):
    model = vlm2(qwen, "add", fusion_mlp_ratio=2)
    groups = parameter_groups(model)
    assert {n.split(".")[1] for n in groups["fusion"]} == {"injection", "alignment", "fusion"}
    assert groups["memory"] and all(n.startswith("vlm2.memory.") for n in groups["memory"])
    report = apply_freeze_policy(model, "train=fusion,memory")
    assert set(report.trainable_groups()) == {"fusion", "memory"}
    assert report.groups["fusion"]["trainable"] + report.groups["memory"]["trainable"] == \
        sum(p.numel() for p in model.vlm2.parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    tiers = {names[id(p)]: g["group_name"] for g in optimizer_param_groups(model, lr=1e-5, projector_lr=2e-5)
             for p in g["params"]}
    assert all(t.startswith("projector/") == (n.split(".")[1] != "memory") for n, t in tiers.items())
    assert tiers["vlm2.memory.out_proj.weight"] == "base/decay" and tiers["vlm2.fusion.kv_norm.weight"] == \
        "projector/no_decay"
    kwargs, frames = batch(model)
    labels = kwargs["input_ids"].clone()
    labels[kwargs["attention_mask"] == 0] = -100
    out = model(**kwargs, video_tchw=frames, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("vlm2."):
            assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
        else:
            assert param.grad is None, name  # frozen


# ---- generation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("positions", [None, "pthw"])
@torch.no_grad()
def test_cached_generate_equals_a_full_forward_and_runs_the_stage_once(qwen, positions):
    """Left-padded batch, two videos in sample 0; with ``pthw`` the pose positions read VGGT's cameras, decoded in the
    same VGGT pass that feeds the stage."""
    model = compose(copy.deepcopy(qwen), tiny_vggt(), None, vlm2={**TINY, "zero_init": False}, seed=0,
                    positions=positions)
    kwargs, frames = batch(model)
    stage_calls = count_calls(model.vlm2)
    vggt_calls = count_calls(model.spatial_encoder.aggregator)
    out = model.generate(**kwargs, video_tchw=frames, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                         do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert stage_calls == [1] and vggt_calls == [2]  # prefill only; one VGGT batch per video shape
    length = kwargs["input_ids"].shape[1]
    seq = out.sequences
    ones = torch.ones(seq.shape[0], NEW_TOKENS, dtype=torch.long)
    full = model(**dict(kwargs, input_ids=seq, attention_mask=torch.cat([kwargs["attention_mask"], ones], 1),
                        mm_token_type_ids=torch.cat([kwargs["mm_token_type_ids"], 0 * ones], 1)),
                 video_tchw=frames).logits
    steps = full[:, length - 1: length + NEW_TOKENS - 1]
    assert torch.equal(steps.argmax(-1), seq[:, length:])
    torch.testing.assert_close(torch.stack(out.logits, 1), steps, atol=1e-5, rtol=1e-5)


# ---- save -> load ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("connector", [None, "add"])
@torch.no_grad()
def test_save_load_round_trip_from_disk_gives_identical_logits(qwen, tmp_path, connector):
    model = vlm2(qwen, connector, gate="softmax", view_source="pose_encoding", similarity="mean_token")
    kwargs, frames = batch(model)
    want = model(**kwargs, video_tchw=frames).logits
    model.save_pretrained(tmp_path / "saved", max_shard_size="64KB")
    cfg = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert cfg["model_type"] == "spatial-mllm-vlm2" and cfg["architectures"] == ["VLM2ForConditionalGeneration"]
    assert cfg["posevlm_spatial_mllm"]["vlm2"] == model.config.vlm2.to_dict()
    index = json.loads((tmp_path / "saved" / "model.safetensors.index.json").read_text())
    assert any(k.startswith("vlm2.memory.episodic.") for k in index["weight_map"])
    assert "visual.patch_embed.proj.weight" in index["weight_map"]  # the released names for the base
    loaded = VLM2.from_pretrained(tmp_path / "saved", device="cpu", processor=False)
    assert loaded.load_report.ok and loaded.config == model.config
    assert torch.equal(loaded(**kwargs, video_tchw=frames).logits, want)
    with pytest.raises(ConfigError, match="not a Spatial-MLLM checkpoint"):
        SpatialMLLM.from_pretrained(tmp_path / "saved", device="cpu", processor=False)


def test_loading_reports_a_missing_stage_tensor(qwen, tmp_path):
    from safetensors.torch import load_file, save_file

    from posevlm.spatial import CheckpointError

    model = vlm2(qwen)
    model.save_pretrained(tmp_path / "saved")
    path = tmp_path / "saved" / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["vlm2.memory.out_proj.weight"]
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="vlm2.memory.out_proj.weight"):
        VLM2.from_pretrained(tmp_path / "saved", device="cpu", processor=False)
    plain = SpatialMLLM.compose(copy.deepcopy(qwen), tiny_vggt(), "add", seed=0)
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(ConfigError, match="from_spatial_mllm"):
        VLM2.from_pretrained(tmp_path / "plain", device="cpu", processor=False)


# ---- streaming: memories per video ----------------------------------------------------------------------------
@torch.no_grad()
def test_memories_are_per_video_carried_across_prompts_and_reset_by_none(qwen):
    model = vlm2(qwen)
    kwargs, frames = batch(model)
    first = video_embeds(model, kwargs, video_tchw=frames)
    states = model.memory_states
    assert len(states) == 3 and all(isinstance(s, VLM2State) and s.steps == 2 for s in states)
    assert all(s.memory.episodic.count.tolist() == [2] for s in states)
    kwargs2, frames2 = batch(model, seed=1)  # the next prompt of the same three videos
    fresh = video_embeds(model, kwargs2, video_tchw=frames2)
    carried = video_embeds(model, kwargs2, video_tchw=frames2, memory_state=states)
    assert [s.steps for s in model.memory_states] == [4, 4, 4]
    assert model.memory_states[0].memory.episodic.count.tolist() == [3]  # L_e = 3 reached
    assert not torch.allclose(carried, fresh)
    reset = video_embeds(model, kwargs2, video_tchw=frames2, memory_state=[None, None, None])
    assert torch.equal(reset, fresh)
    # one video continued, the others new: only that video's tokens change
    mixed = video_embeds(model, kwargs2, video_tchw=frames2, memory_state=[None, states[1], None])
    per_video = [int(g.prod()) // 4 for g in kwargs2["video_grid_thw"]]
    for i, (a, b) in enumerate(zip(mixed.split(per_video), fresh.split(per_video))):
        assert torch.equal(a, b) == (i != 1)
    assert torch.equal(first, video_embeds(model, kwargs, video_tchw=frames))  # memory_states is output only


@torch.no_grad()
def test_videos_in_a_batch_equal_each_video_alone(qwen):
    """Sample 1 (one video) in the batch = sample 1 alone: VGGT groups and the stage keep videos apart."""
    model = vlm2(qwen)
    kwargs, frames = batch(model)
    both = video_embeds(model, kwargs, video_tchw=frames)
    mine = kwargs["input_ids"][1] == model.qwen.config.video_token_id
    n0 = int((kwargs["input_ids"][0] == model.qwen.config.video_token_id).sum())
    alone_kwargs = {k: v[1:] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v
                    for k, v in kwargs.items()}
    grid = kwargs["video_grid_thw"]
    patches = [int(g.prod()) for g in grid]
    alone_kwargs.update(video_grid_thw=grid[2:], second_per_grid_ts=kwargs["second_per_grid_ts"][2:],
                        pixel_values_videos=kwargs["pixel_values_videos"][sum(patches[:2]):])
    alone = video_embeds(model, alone_kwargs, video_tchw=frames[2:])
    assert int(mine.sum()) == alone.shape[0]
    torch.testing.assert_close(both[n0:], alone, atol=1e-5, rtol=1e-5)


# ---- sources of 3D ------------------------------------------------------------------------------------------------
@torch.no_grad()
def test_point_maps_from_depth_replace_the_point_head(qwen):
    model = vlm2(qwen)
    kwargs, frames = batch(model)
    g = torch.Generator().manual_seed(0)
    maps = []
    for f in frames:
        s, _, h, w = f.shape
        depth = 1 + torch.rand(s, h // 2, w // 2, generator=g)
        K = torch.tensor([[20.0, 0, w / 4], [0, 20.0, h / 4], [0, 0, 1]])
        w2c = torch.eye(4).repeat(s, 1, 1)
        w2c[:, 0, 3] = torch.arange(s) * 0.1
        maps.append(point_maps_from_depth(depth, K, w2c))
    point_calls = count_calls(model.spatial_encoder.point_head)
    vggt_points = video_embeds(model, kwargs, video_tchw=frames)
    assert point_calls == [2]
    given = video_embeds(model, kwargs, video_tchw=frames, point_maps=[p for p, _ in maps],
                         point_valid=[v for _, v in maps])
    assert point_calls == [2]  # given maps: the point head does not run
    assert not torch.allclose(given, vggt_points)
    needs = compose(copy.deepcopy(qwen), tiny_vggt(), None, vlm2={**TINY, "point_source": "given"}, seed=0)
    assert needs.config.vlm2.point_source == "given"
    with pytest.raises(ShapeError, match="point_source='given': pass point_maps"):
        needs(**kwargs, video_tchw=frames)


@torch.no_grad()
def test_pose_encoding_view_inputs_from_vggt_or_given(qwen):
    model = vlm2(qwen, view_source="pose_encoding")
    kwargs, frames = batch(model)
    camera_calls = count_calls(model.spatial_encoder.camera_head)
    from_vggt = video_embeds(model, kwargs, video_tchw=frames)
    assert camera_calls == [2]
    poses = [torch.randn(f.shape[0], 9, generator=torch.Generator().manual_seed(i)) for i, f in enumerate(frames)]
    given = video_embeds(model, kwargs, video_tchw=frames, pose_encoding=poses)
    assert camera_calls == [2] and not torch.allclose(given, from_vggt)
    with pytest.raises(ShapeError, match=r"pose_encoding\[0\] has 5 frames"):
        model(**kwargs, video_tchw=frames, pose_encoding=[torch.zeros(5, 9)] + poses[1:])
    tokens_view = vlm2(qwen)  # camera-token views: pose encodings would be silently unused
    with pytest.raises(ConfigError, match="pose_encoding given but this VLM² configuration does not read them"):
        tokens_view(**kwargs, video_tchw=frames, pose_encoding=poses)


def test_model_config_reports_every_problem(qwen):
    base = VGGTConfig.tiny(heads=("camera",))
    with pytest.raises(ConfigError) as err:
        VLM2ModelConfig(spatial_config=base, base_family="qwen3_vl",
                        connector=ConnectorConfig(type="sequence_cat", spatial_dim=64, llm_dim=64),
                        vlm2=VLM2Config(llm_dim=64, spatial_dim=32, num_heads=4))
    text = str(err.value)
    for part in ("VLM² is built on Qwen2.5-VL", "adds tokens", "vlm2.spatial_dim=32", "needs the spatial encoder's "
                 "point head"):
        assert part in text
    cfg = VLM2ModelConfig(spatial_config=VGGTConfig.tiny(heads=("camera", "point")),
                          vlm2=VLM2Config(llm_dim=64, spatial_dim=64, num_heads=4))
    assert VLM2ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.model_type == "spatial-mllm-vlm2"
