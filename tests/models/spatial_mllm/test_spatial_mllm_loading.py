"""Spatial-MLLM checkpoints on disk: fabricated upstream layouts, save -> load, pose_rope_config, processors, offline.

The fabricated checkpoints are written here from independent parts -- the tiny Qwen checkpoint as transformers 5.23
saved it (its own 4.51-style names), a full tiny VGGT (camera, depth and point heads, plus a tracking-head key) under
``spatial_encoder.vggt_model.``, an ``add`` connector under ``connector.`` -- with the config.json spelled as the
released one (text fields at the top level, ``rope_scaling``, ``connector_type: mlp_add``), not by
``save_pretrained``.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.models.camera_attention import SLOPES_NAME  # noqa: E402
from posevlm.models.spatial_mllm import (  # noqa: E402
    AddConnector, ConnectorConfig, SpatialMLLM, SpatialMLLMConfig, from_pretrained, save_pretrained,
)  # fmt: skip
from posevlm.models.spatial_mllm.config import hf_config_dict, read_hf_config  # noqa: E402
from posevlm.models.spatial_mllm.loading import (  # noqa: E402
    checkpoint_key_to_module, detect_layout, module_key_to_checkpoint, processor_source,
)  # fmt: skip
from posevlm.positions import chunked_slot_axis, position_spec  # noqa: E402
from posevlm.spatial import CheckpointError, VGGT, VGGTConfig, save_vggt  # noqa: E402

from spatial_mllm_tiny import SAMPLES_QWEN2_5, make_batch, tiny_models  # noqa: E402

TRACK_KEY = "spatial_encoder.vggt_model.track_head.fnet.conv1.weight"


@pytest.fixture(scope="module")
def qwen_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_bases")
    return {"untied": tiny_models.save_tiny_qwen2_5_vl(root / "untied"),
            "tied": tiny_models.save_tiny_qwen2_5_vl(root / "tied", tie_word_embeddings=True)}


def parts(seed=0, vggt_heads=("camera", "depth", "point")):
    """(full VGGT, connector) with fixed random weights."""
    torch.manual_seed(seed)
    vggt = VGGT(VGGTConfig.tiny(heads=vggt_heads)).eval()
    connector = AddConnector(ConnectorConfig(spatial_dim=64, llm_dim=64))
    return vggt, connector


def released_config(qwen_dir, *, layout="released", **extra):
    """A config.json in the released (4.51) spelling, or the transformers-5 nested one."""
    base = json.loads((qwen_dir / "config.json").read_text())
    out = {k: v for k, v in base.items() if k not in ("text_config", "architectures", "model_type")}
    if layout == "released":
        text = dict(base["text_config"])
        rope = text.pop("rope_parameters")
        text.pop("model_type")
        out.update(text, rope_theta=rope["rope_theta"], rope_scaling={"type": "mrope",
                                                                       "mrope_section": rope["mrope_section"]})
    else:
        out["text_config"] = base["text_config"]
    tiny = {k: v for k, v in VGGTConfig.tiny().to_dict().items() if k not in ("heads", "schema_version")}
    out.update(model_type="spatial-mllm", architectures=["SpatialMLLMForConditionalGeneration"],
               spatial_config={**tiny, "model_type": "vggt", "transformers_version": "4.51.3"},
               connector_config={"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1, "use_visual": True,
                                 "use_geo": True}, **extra)
    return out


def fabricate(out, qwen_dir, *, layout="released", shards=1, vggt=None, connector=None, config_extra=None):
    """Write a Spatial-MLLM checkpoint in ``layout`` from independent parts; returns the directory."""
    vggt_p, connector_p = parts()
    vggt, connector = vggt or vggt_p, connector or connector_p
    tensors = dict(load_file(str(qwen_dir / "model.safetensors")))
    if layout == "transformers5":
        tensors = {("model.visual." + k[7:] if k.startswith("visual.") else
                    "model.language_model." + k[6:] if k.startswith("model.") else k): v for k, v in tensors.items()}
    tensors.update({f"spatial_encoder.vggt_model.{k}": v for k, v in vggt.state_dict().items()})
    tensors[TRACK_KEY] = torch.randn(4, 3, 3, 3)
    tensors.update({f"connector.{k}": v for k, v in connector.state_dict().items()})
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in keys}, str(out / "model.safetensors"))
    else:
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            chunk = keys[i::shards]
            save_file({k: tensors[k].contiguous() for k in chunk}, str(out / name))
            weight_map.update({k: name for k in chunk})
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps(released_config(qwen_dir, layout=layout, **(config_extra or {}))))
    return out


def reference(qwen_dir, vggt=None, connector=None, **kw):
    """The same parts composed in memory (no checkpoint I/O of ours)."""
    vggt_p, connector_p = parts()
    vggt, connector = vggt or vggt_p, connector or connector_p
    camera_only = VGGT(VGGTConfig.tiny(heads=("camera",)))
    camera_only.load_state_dict({k: v for k, v in vggt.state_dict().items() if k in camera_only.state_dict()})
    qwen = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_dir, dtype=torch.float32)
    model = SpatialMLLM.compose(qwen, camera_only.eval(), connector="add", **kw)
    model.connector.load_state_dict(connector.state_dict())
    return model


@torch.no_grad()
def logits(model, seed=0):
    kwargs, frames = make_batch(model.qwen.config, SAMPLES_QWEN2_5, seed=seed)
    return model(**kwargs, video_tchw=frames).logits


# ---- fabricated upstream layouts --------------------------------------------------------------------------------
@pytest.mark.parametrize("layout,shards", [("released", 1), ("released", 3), ("transformers5", 1),
                                           ("transformers5", 2)])
def test_fabricated_upstream_layouts_load_completely(qwen_dirs, tmp_path, layout, shards):
    folder = fabricate(tmp_path / "ckpt", qwen_dirs["untied"], layout=layout, shards=shards)
    model = from_pretrained(folder, device="cpu", processor=False)
    report = model.load_report
    assert report.ok and not report.missing and not report.unexpected and not report.mismatched
    ignored = {k.split(".")[2] for k in report.ignored}
    assert ignored == {"depth_head", "point_head", "track_head"} and TRACK_KEY in report.ignored
    assert f"{len(report.ignored)} ignored" in report.summary()
    assert detect_layout(report.loaded) == layout
    assert model.config.connector.type == "add" and model.config.spatial_layer == -1
    assert model.config.spatial_config == VGGTConfig.tiny(heads=("camera",))
    assert not any(p.is_meta for p in model.parameters())
    assert torch.equal(logits(model), logits(reference(qwen_dirs["untied"])))


def test_tied_embeddings_without_lm_head_in_the_checkpoint(qwen_dirs, tmp_path):
    """Qwen2.5-VL-3B ties lm_head to embed_tokens and its checkpoints omit lm_head.weight."""
    folder = fabricate(tmp_path / "ckpt", qwen_dirs["tied"])
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()
    model = from_pretrained(folder, device="cpu", processor=False)
    assert model.load_report.ok
    assert model.qwen.lm_head.weight is model.qwen.model.language_model.embed_tokens.weight
    assert torch.equal(logits(model), logits(reference(qwen_dirs["tied"])))


def test_wrong_key_names_are_reported_in_one_line(qwen_dirs, tmp_path):
    folder = fabricate(tmp_path / "ckpt", qwen_dirs["untied"])
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["connector.fc1.weight"] = tensors.pop("connector.mlp.0.weight")  # a connector of another layout
    tensors["visual.merger.mlp.0.weight"] = tensors["visual.merger.mlp.0.weight"][:, :8].contiguous()
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        from_pretrained(folder, device="cpu", processor=False)
    line = str(err.value)
    assert "\n" not in line and "1 missing (connector.mlp.0.weight)" in line
    assert "1 unexpected (connector.fc1.weight)" in line and "visual.merger.mlp.0.weight" in line
    loose = from_pretrained(folder, device="cpu", processor=False, strict=False)
    assert loose.load_report.missing == ("connector.mlp.0.weight",)


def test_key_maps_round_trip():
    for ckpt, module, layout in [("visual.blocks.0.attn.qkv.weight", "qwen.model.visual.blocks.0.attn.qkv.weight",
                                  "released"),
                                 ("model.layers.1.mlp.up_proj.weight",
                                  "qwen.model.language_model.layers.1.mlp.up_proj.weight", "released"),
                                 ("model.visual.merger.ln_q.weight", "qwen.model.visual.merger.ln_q.weight",
                                  "transformers5"),
                                 ("model.language_model.norm.weight", "qwen.model.language_model.norm.weight",
                                  "transformers5"),
                                 ("spatial_encoder.vggt_model.aggregator.camera_token",
                                  "spatial_encoder.aggregator.camera_token", "released"),
                                 ("connector.ln_q.weight", "connector.ln_q.weight", "released"),
                                 ("lm_head.weight", "qwen.lm_head.weight", "transformers5")]:
        assert checkpoint_key_to_module(ckpt)[0] == module
        assert module_key_to_checkpoint(module, layout) == ckpt
    assert checkpoint_key_to_module("vggt_embedding_merger.mlp.0.weight") == (None, None)  # v1.0: not read


# ---- camera head present or not ------------------------------------------------------------------------------------
def test_checkpoint_without_camera_head(qwen_dirs, tmp_path):
    """Whether the released checkpoints hold VGGT's camera head is open (spec §6.4): without one, the model loads
    without cameras; asking for VGGT cameras needs vggt= weights to fill the head."""
    agg_only, connector = parts(vggt_heads=())
    folder = fabricate(tmp_path / "ckpt", qwen_dirs["untied"], vggt=agg_only, connector=connector)
    model = from_pretrained(folder, device="cpu", processor=False)
    assert model.config.spatial_config.heads == () and model.spatial_encoder.camera_head is None
    with pytest.raises(CheckpointError, match="pass vggt='facebook/VGGT-1B'"):
        from_pretrained(folder, device="cpu", processor=False, positions="pthw")
    full, _ = parts()
    vggt_dir = save_vggt(full, tmp_path / "vggt")
    filled = from_pretrained(folder, device="cpu", processor=False, positions="pthw", vggt=vggt_dir)
    assert filled.load_report.ok
    assert torch.equal(filled.spatial_encoder.camera_head.pose_branch.fc2.weight,
                       full.camera_head.pose_branch.fc2.weight)
    assert torch.equal(filled.spatial_encoder.aggregator.camera_token, agg_only.aggregator.camera_token)


# ---- save -> load ------------------------------------------------------------------------------------------------
def test_save_load_round_trip_is_exact(qwen_dirs, tmp_path):
    model = reference(qwen_dirs["untied"], positions="thw", camera_attention={"mode": "gta", "bias": "learned"})
    model.set_fusion(use_visual=True, use_geo=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(SLOPES_NAME):
                p.copy_(torch.linspace(0.1, 0.4, p.numel()))
    save_pretrained(model, tmp_path / "saved", max_shard_size="64KB")
    index = json.loads((tmp_path / "saved" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert "visual.patch_embed.proj.weight" in index["weight_map"]  # the released names
    assert "model.embed_tokens.weight" in index["weight_map"]
    assert "spatial_encoder.vggt_model.camera_head.pose_branch.fc2.weight" in index["weight_map"]
    loaded = from_pretrained(tmp_path / "saved", device="cpu", processor=False)
    assert loaded.load_report.ok and not loaded.load_report.ignored
    assert loaded.config == model.config
    slopes = [p for n, p in loaded.named_parameters() if n.endswith(SLOPES_NAME)]
    assert slopes and all(torch.equal(s, torch.linspace(0.1, 0.4, s.numel())) for s in slopes)
    assert torch.equal(logits(loaded), logits(model))
    cfg = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert cfg["model_type"] == "spatial-mllm" and cfg["hidden_size"] == 64
    assert cfg["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}
    assert cfg["connector_config"]["connector_type"] == "mlp_add"
    assert cfg["connector_config"]["spatial_embeds_layer_idx"] == -1
    assert cfg["spatial_config"]["embed_dim"] == 32 and "posevlm_provenance" in cfg


def test_pose_only_qwen3_round_trip(tmp_path):
    q3 = tiny_models.save_tiny_qwen3_vl(tmp_path / "q3")
    qwen = transformers.Qwen3VLForConditionalGeneration.from_pretrained(q3, dtype=torch.float32)
    torch.manual_seed(0)
    model = SpatialMLLM.compose(qwen, VGGT(VGGTConfig.tiny(heads=("camera",))).eval(), positions="phw")
    save_pretrained(model, tmp_path / "saved")
    loaded = from_pretrained(tmp_path / "saved", device="cpu", processor=False)
    assert loaded.config == model.config and loaded.connector is None
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model_type"] == "spatial-mllm-qwen3"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        assert any(k.startswith("model.language_model.") for k in f.keys())  # Qwen3-VL's own names
    from spatial_mllm_tiny import SAMPLES_QWEN3

    kwargs, frames = make_batch(model.qwen.config, SAMPLES_QWEN3, family="qwen3")
    with torch.no_grad():
        assert torch.equal(loaded(**kwargs, video_tchw=frames).logits, model(**kwargs, video_tchw=frames).logits)


# ---- the fork's pose_rope_config ------------------------------------------------------------------------------------
def test_pose_rope_config_restores_the_position_mode(qwen_dirs, tmp_path):
    rope = {"use_pose_rope": True, "pose_enc_type": "PTHW", "mrope_section": [1, 1, 3, 3]}
    folder = fabricate(tmp_path / "ckpt", qwen_dirs["untied"], config_extra={"pose_rope_config": rope})
    model = from_pretrained(folder, device="cpu", processor=False)
    assert model.config.positions == position_spec("pthw", legacy=True, tokens_per_second=2.0)
    assert model.config.slot_axis == tuple(chunked_slot_axis([1, 1, 3, 3]).tolist())
    assert model.qwen.model.language_model.rotary_emb.axes == ("P", "T", "H", "W")
    with pytest.warns(UserWarning, match="was trained with positions"):
        other = from_pretrained(folder, device="cpu", processor=False, positions="phw")
    assert other.config.positions.pose_axis == "replace_t"
    data = released_config(qwen_dirs["untied"], pose_rope_config={"use_pose_rope": False, "pose_enc_type": "PTHW"})
    assert read_hf_config(data)[0].positions is None
    data["pose_rope_config"] = {"use_pose_rope": True, "pose_enc_type": "XYZ"}
    with pytest.raises(ConfigError, match="pose_enc_type='XYZ'"):
        read_hf_config(data)


# ---- config ----------------------------------------------------------------------------------------------------
def test_config_reports_every_problem_and_round_trips():
    with pytest.raises(ConfigError) as err:
        SpatialMLLMConfig(base_family="llava", pose_source="gps", spatial_layer=40,
                          connector=ConnectorConfig(spatial_dim=100))
    text = str(err.value)
    for part in ("base_family='llava'", "pose_source='gps'", "spatial_layer=40", "spatial_dim=100"):
        assert part in text
    cfg = SpatialMLLMConfig(spatial_config=VGGTConfig.tiny(heads=("camera",)),
                            connector=ConnectorConfig(spatial_dim=64, llm_dim=64),
                            positions=position_spec("pthw"), slot_axis=(0, 1, 2, 2, 2, 3, 3, 3))
    assert SpatialMLLMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown SpatialMLLMConfig keys"):
        SpatialMLLMConfig.from_dict({**cfg.to_dict(), "fusion": "cat"})
    with pytest.raises(ConfigError, match="not a Spatial-MLLM checkpoint"):
        read_hf_config({"model_type": "qwen2_5_vl"})


def test_released_config_reads_back_through_both_layouts(qwen_dirs):
    data = released_config(qwen_dirs["untied"])
    config, qwen_config, _ = read_hf_config(data)
    assert qwen_config.text_config.hidden_size == 64 and qwen_config.text_config.num_hidden_layers == 2
    assert qwen_config.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    written = hf_config_dict(config, qwen_config)
    again, qwen_again, _ = read_hf_config(json.loads(json.dumps(written)))
    assert again == config
    assert qwen_again.text_config.to_dict() == qwen_config.text_config.to_dict()
    assert not hasattr(qwen_again, "hidden_size")  # the top-level copy is not left on the config


# ---- processor and offline -----------------------------------------------------------------------------------
def test_processor_from_the_checkpoint_or_the_base_repo(qwen_dirs, tmp_path):
    from posevlm.eval.backends._qwen_video import build_processor_without_torchvision

    folder = fabricate(tmp_path / "ckpt", qwen_dirs["untied"])
    assert processor_source(folder, "qwen2_5_vl") == "Qwen/Qwen2.5-VL-3B-Instruct"
    calls = []
    model = from_pretrained(folder, device="cpu", local_files_only=True,
                            processor=lambda source, kw: calls.append((source, kw)) or "sentinel")
    assert calls == [("Qwen/Qwen2.5-VL-3B-Instruct", {"local_files_only": True, "revision": None})]
    assert model.processor == "sentinel" and model.processor_source == "Qwen/Qwen2.5-VL-3B-Instruct"

    def build(source, kw):
        return build_processor_without_torchvision(source, transformers.Qwen2_5_VLProcessor, kw)

    model.processor = build(str(qwen_dirs["untied"]), {})
    save_pretrained(model, tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer.json").is_file()
    assert processor_source(tmp_path / "saved", "qwen2_5_vl") == str(tmp_path / "saved")
    again = from_pretrained(tmp_path / "saved", device="cpu", processor=build)
    assert again.processor_source == str(tmp_path / "saved")
    assert again.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == model.qwen.config.video_token_id


def test_offline_hub_id_not_in_cache_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match=r"not found in the local cache \(offline\)"):
        from_pretrained("nobody/no-such-spatial-mllm", processor=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "missing", processor=False)


def test_compose_from_directories_and_fresh_connector_init(qwen_dirs, tmp_path):
    full, _ = parts()
    vggt_dir = save_vggt(full, tmp_path / "vggt")
    model = SpatialMLLM.compose(str(qwen_dirs["untied"]), str(vggt_dir), seed=3, dtype="float32", device="cpu")
    assert model.spatial_encoder.config.heads == ("camera",)
    assert model.spatial_encoder.load_report.ignored  # the depth / point heads of the file
    c = model.connector
    assert torch.equal(c.ln_q.weight, torch.ones(512)) and torch.equal(c.mlp[0].bias, torch.zeros(512))
    assert abs(float(c.mlp[0].weight.std()) - 0.02) < 2e-3
    twin = SpatialMLLM.compose(str(qwen_dirs["untied"]), str(vggt_dir), seed=3)
    assert torch.equal(twin.connector.mlp[2].weight, c.mlp[2].weight)
    with pytest.raises(ConfigError, match="spatial_dim"):
        SpatialMLLM.compose(str(qwen_dirs["untied"]), copy.deepcopy(full), connector=ConnectorConfig(llm_dim=64))
