"""Training checkpoints: the tiny preset equals the tests' tiny checkpoint; LoRA merged at the state-dict level
equals peft's merge (policy.merge_lora) and loads into the stock class with the adapter model's logits; the unmerged
state and a Spatial-MLLM's released layout load back into the live model for resuming; interrupted checkpoint
folders are never taken."""

import copy
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from posevlm.spatial import CheckpointError
from posevlm.train.checkpoint import (
    TRAIN_STATE_NAME, complete_checkpoints, export_model, load_training_state, lora_scales, merge_lora_state_dict,
)  # fmt: skip
from posevlm.train.policy import LoraSettings, apply_lora, merge_lora
from posevlm.train.tiny import TinyModelConfig, save_tiny_checkpoint
from train_world import tiny_models

Qwen = transformers.Qwen2_5_VLForConditionalGeneration


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, 200, (2, 12), generator=g),
            "attention_mask": torch.ones(2, 12, dtype=torch.long)}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_tiny_preset_is_the_tests_tiny_checkpoint(tmp_path, family):
    ours = save_tiny_checkpoint(tmp_path / "ours", family)
    ref = getattr(tiny_models, f"save_tiny_{family}")(tmp_path / "ref")
    cls = Qwen if family == "qwen2_5_vl" else transformers.Qwen3VLForConditionalGeneration
    a, b = cls.from_pretrained(ours).state_dict(), cls.from_pretrained(ref).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("tokenizer.json", "video_preprocessor_config.json", "preprocessor_config.json"):
        assert json.loads((ours / name).read_text()) == json.loads((ref / name).read_text()), name
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "image"}, {"type": "text", "text": "Q?"}]},
                {"role": "assistant", "content": "A"}]
    rendered = [transformers.AutoTokenizer.from_pretrained(p).apply_chat_template(messages, tokenize=False,
                                                                                  add_generation_prompt=True)
                for p in (ours, ref)]
    assert rendered[0] == rendered[1] and "<|video_pad|>" in rendered[0]
    other = save_tiny_checkpoint(tmp_path / "seed1", family, TinyModelConfig(seed=1))
    assert not torch.equal(cls.from_pretrained(other).lm_head.weight, a["lm_head.weight"])


@pytest.fixture(scope="module")
def lora_model(tiny_qwen):
    model = Qwen.from_pretrained(tiny_qwen, dtype=torch.float32).eval()
    apply_lora(model, LoraSettings(r=4, alpha=8.0, dropout=0.0))
    with torch.no_grad():  # adapters start as a no-op (B = 0): give them a value
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    return model


def test_merged_state_dict_equals_peft_merge_and_loads_into_the_stock_class(lora_model, tmp_path):
    scales = lora_scales(lora_model)
    assert scales and set(scales.values()) == {2.0}  # alpha / r
    merged = merge_lora_state_dict(lora_model.state_dict(), scales)
    reference = merge_lora(copy.deepcopy(lora_model)).state_dict()
    assert merged.keys() == reference.keys()
    assert all(torch.allclose(merged[k], reference[k], atol=1e-6) for k in merged)
    out = export_model(lora_model, tmp_path / "ckpt")
    plain = Qwen.from_pretrained(out, dtype=torch.float32).eval()  # no LoRA keys: an ordinary checkpoint
    with torch.no_grad():
        want, got = lora_model(**_inputs(lora_model)).logits, plain(**_inputs(plain)).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert (out / TRAIN_STATE_NAME).is_file()


def test_unmerged_training_state_loads_back_exactly(lora_model, tiny_qwen, tmp_path):
    out = export_model(lora_model, tmp_path / "ckpt")
    fresh = Qwen.from_pretrained(tiny_qwen, dtype=torch.float32).eval()
    apply_lora(fresh, LoraSettings(r=4, alpha=8.0, dropout=0.0))
    assert load_training_state(fresh, out)
    want = lora_model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in fresh.state_dict().items())
    stock = Qwen.from_pretrained(tiny_qwen, dtype=torch.float32)
    assert not load_training_state(torch.nn.Linear(2, 2), tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="missing key"):
        load_training_state(stock, out)


def test_a_qwen_checkpoint_resumes_with_every_weight_and_the_learned_slopes(tiny_qwen, tmp_path):
    """Qwen2.5-VL saves model.layers.* (4.x names) but holds model.language_model.*: transformers' own resume
    (load_state_dict(strict=False) on the saved names) loads nothing; ours renames through from_pretrained."""
    from posevlm.models import enable_pose_positions
    from posevlm.models.camera_attention import SLOPES_NAME, CameraAttentionSpec
    from posevlm.positions import position_spec

    def pose_model():
        model = Qwen.from_pretrained(tiny_qwen, dtype=torch.float32)
        return enable_pose_positions(model, position_spec("pthw"), camera_attention=CameraAttentionSpec(
            mode="none", bias="learned"))

    trained = pose_model()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    out = export_model(trained, tmp_path / "ckpt")
    fresh = pose_model()
    want = trained.state_dict()
    assert any(k.endswith(SLOPES_NAME) and want[k].abs().sum() > 0 for k in want)
    missing = fresh.load_state_dict(load_file(str(out / "model.safetensors")), strict=False).missing_keys
    assert len(missing) > 50  # what Trainer._load_from_checkpoint would silently do
    assert load_training_state(fresh, out)
    assert all(torch.equal(v, want[k]) for k, v in fresh.state_dict().items())


def test_processor_files_travel_with_the_checkpoint(tiny_qwen, tmp_path):
    model = Qwen.from_pretrained(tiny_qwen, dtype=torch.float32)
    out = export_model(model, tmp_path / "ckpt", processor_source=tiny_qwen)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json",
                 "video_preprocessor_config.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (tiny_qwen / name).read_bytes(), name


def test_spatial_mllm_exports_in_its_released_layout_and_resumes(tiny_qwen, tmp_path):
    from posevlm.models.spatial_mllm import compose, from_pretrained
    from posevlm.spatial import VGGT, VGGTConfig

    torch.manual_seed(0)
    model = compose(str(tiny_qwen), VGGT(VGGTConfig.tiny(heads=("camera",))), "add", seed=1, device="cpu")
    with torch.no_grad():
        model.connector.mlp[2].weight.add_(0.5)  # "trained"
    out = export_model(model, tmp_path / "ckpt", processor_source=tiny_qwen)
    keys = json.loads((out / "config.json").read_text())
    assert keys["model_type"] == "spatial-mllm"
    loaded = from_pretrained(out, processor=False, device="cpu")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    fresh = compose(str(tiny_qwen), VGGT(VGGTConfig.tiny(heads=("camera",))), "add", seed=2, device="cpu")
    assert load_training_state(fresh, out)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_only_complete_checkpoints_are_resumed_from(tmp_path):
    for step, state in ((5, "{}"), (10, "{}"), (15, '{"global_st'), (20, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-10"]
