"""The training-family seam: ``model.family`` is a registry entry (built-in families listed, checked and built
through it, no name branches in the recipe), and a family that is not fed video samples brings its own dataset,
collator and config checks and trains through the unchanged recipe."""

import json
from dataclasses import replace

import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.train.config import ModelSection, load_train_config
from posevlm.train.families import TrainFamily, train_families


def test_built_in_families_are_registry_entries_with_their_properties():
    assert {"qwen2_5_vl", "qwen3_vl", "spatial_mllm", "vlm2", "point_lm"} <= set(train_families.names())
    stock, qwen3, spatial = (train_families.get(n) for n in ("qwen2_5_vl", "qwen3_vl", "spatial_mllm"))
    assert all(isinstance(f, TrainFamily) for f in (stock, qwen3, spatial))
    assert (stock.layout, qwen3.layout, spatial.layout) == ("qwen2_5", "qwen3", "qwen2_5")
    assert spatial.composed and spatial.with_video_tchw and not stock.composed and not qwen3.with_video_tchw
    assert spatial.base_family == "qwen2_5_vl" and qwen3.base_family == "qwen3_vl"
    described = {n: d for n, d, o in train_families.describe()}
    assert "VGGT" in described["spatial_mllm"] and all(o == "builtin" for _, _, o in train_families.describe())
    import posevlm.train.config as config_module

    assert not hasattr(config_module, "MODEL_FAMILIES")  # the registry is the one list


def test_family_checks_come_from_the_family():
    assert ModelSection(family="spatial_mllm", vggt="tiny").problems() == []
    problems = ModelSection(family="qwen3_vl", vggt="tiny", connector="add").problems()
    assert any("VGGT is part of family spatial_mllm" in p for p in problems)
    assert any(p.startswith("model.connector applies to family spatial_mllm") for p in problems)
    assert any("set model.vggt" in p for p in ModelSection(family="spatial_mllm").problems())


# ---- a family that is not fed video: its own dataset, collator and checks ---------------------------------------
class _TextSamples(torch.utils.data.Dataset):
    """Text-only question / answer samples with assistant-only labels (no video, no processor call)."""

    def __init__(self, tokenizer, n: int):
        from posevlm.train.records import Turn
        from posevlm.train.tokenize import tokenize_conversation

        self.rows = []
        for i in range(n):
            turns = [Turn("user", f"How many chairs are in room {i}?"), Turn("assistant", str(i % 4))]
            tok = tokenize_conversation(turns, tokenizer)
            self.rows.append({"input_ids": tok.input_ids, "labels": tok.labels,
                              "mm_token_type_ids": tok.mm_token_type_ids, "sample_id": f"text:{i}"})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


CALLS: list[str] = []


def _text_dataset(family, config, built, bad_samples):
    CALLS.append(f"dataset:{family.name}")
    return _TextSamples(built.processor.tokenizer, 4)


def _text_collator(family, config, built, pad_token_id):
    from posevlm.train.collate import SFTCollator

    CALLS.append(f"collator:{family.name}")
    return SFTCollator(pad_token_id, with_sample_ids=True)


def _text_problems(config):
    return [] if config.positions is None else ["model.positions: the text family has no video positions; set null"]


@pytest.fixture
def text_family(monkeypatch):
    from posevlm.train.builders import build_stock

    monkeypatch.setattr(train_families, "_entries", dict(train_families._entries))  # registered for this test only

    def build(config, work_dir, dtype, hub, seed):
        return build_stock(replace(config, family="qwen2_5_vl"), work_dir, dtype, hub, seed)

    family = TrainFamily("text_qa", "qwen2_5_vl", build, description="text-only QA (test)", dataset=_text_dataset,
                         collator=_text_collator, extra_problems=_text_problems)
    train_families.register("text_qa", family)
    CALLS.clear()
    return family


def test_a_non_video_family_trains_with_its_own_dataset_collator_and_checks(text_family, tmp_path):
    from posevlm.train.run import RUN_RECORD_NAME, train

    base = ["name=text", f"run.output_dir={tmp_path / 'run'}", "model.family=text_qa", "data.datasets=unused",
            "tune.policy=train=all", "run.max_steps=2", "run.batch_size=2", "run.num_workers=0", "run.save_steps=2",
            "optim.lr=1e-3"]
    with pytest.raises(ConfigError, match="the text family has no video positions"):
        load_train_config(None, [*base, "model.positions=pthw"])
    with pytest.raises(ConfigError, match="allowed point_lm, qwen2_5_vl, qwen3_vl, spatial_mllm, text_qa"):
        load_train_config(None, [*base, "model.family=text"])
    result = train(load_train_config(None, base), log=lambda _m: None)
    assert CALLS == ["dataset:text_qa", "collator:text_qa"]
    assert result.global_step == 2 and all(v == v for v in result.losses)
    record = json.loads((result.output_dir / RUN_RECORD_NAME).read_text())
    assert record["samples"] == 4 and record["collator"] == {"pose_inputs": "none", "with_video_tchw": False}
    assert (result.output_dir / "base_model" / "config.json").is_file()  # the tiny source of its base family
