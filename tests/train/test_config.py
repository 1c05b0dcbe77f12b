"""TrainConfig: YAML + dotted overrides, types cast per field, every problem reported at once naming its key and the
fix, YAML round trip, and every shipped config validates."""

from pathlib import Path

import pytest
import yaml

from posevlm.errors import ConfigError, InputFileError
from posevlm.train.config import TrainConfig, apply_overrides, load_train_config

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ["data.datasets=synthetic_train_posed"]


def test_overrides_reach_nested_keys_and_are_cast_to_the_field_types(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  positions: pthw\ndata:\n  datasets: synthetic_train_posed\n  require_cameras: true\n")
    config = load_train_config(path, ["optim.lr=1e-5", "run.max_steps=30", "model.tiny.hidden_size=32",
                                      "model.tiny.num_attention_heads=2", "run.save_steps=0.25", "optim.vision_lr=null",
                                      "data.frame_metadata=qwen_vl_utils_list", "model.position_set={pose_lam: 0.5}"])
    assert config.name == "exp"  # from the file name
    assert config.optim.lr == 1e-5 and isinstance(config.optim.lr, float)  # YAML 1.1 would read '1e-5' as text
    assert config.run.max_steps == 30 and config.run.save_steps == 0.25 and config.optim.vision_lr is None
    assert config.model.tiny == {"hidden_size": 32, "num_attention_heads": 2}
    assert config.model.position_set == {"pose_lam": 0.5} and config.model.positions == "pthw"
    assert config.data.frame_metadata == "qwen_vl_utils_list"
    assert config.output_dir == Path("runs/train/exp")
    assert apply_overrides({"a": {"b": 1}}, ["a.c.d=x"]) == {"a": {"b": 1, "c": {"d": "x"}}}


def test_every_problem_is_reported_at_once_with_its_key_and_fix():
    with pytest.raises(ConfigError) as info:
        load_train_config(None, ["run.max_stepz=3", "optim.lr=0", "model.family=qwen4", "run.save_steps=0",
                                 "data.num_frames=four", "model.positions=pthw", "tune.policy=train=llm,vison"])
    text = str(info.value)
    assert info.value.field == "data.num_frames"
    for needle in ("run.max_stepz: unknown key (did you mean run.max_steps?)", "optim.lr=0", "a number > 0",
                   "model.family='qwen4': allowed point_lm, qwen2_5_vl, qwen3_vl, spatial_mllm", "run.save_steps=0",
                   "data.num_frames='four': expected an integer", "set data.require_cameras=true",
                   "did you mean vision?", "data.datasets is empty"):
        assert needle in text, needle
    assert text.count("\n  ") == len(info.value.value) == 8


@pytest.mark.parametrize("overrides, needle", [
    (["tune.lora={r: 8}"], "trains lora and not llm"),
    (["tune.lora={rank: 8}", "tune.policy=train=lora"], "unknown LoraSettings keys ['rank']"),
    (["model.family=spatial_mllm"], "set data.with_video_tchw=true"),
    (["model.vggt=tiny"], "VGGT is part of family spatial_mllm"),
    (["model.source=Qwen/Qwen2.5-VL-3B-Instruct", "model.tiny.seed=1"], "only applies to model.source=tiny"),
    (["run.evaluate=true"], "add a synthetic section with media: manifest"),
    (["run.deepspeed=zero4"], "one of zero2, zero3, zero3_offload or a .json file"),
    (["run.deepspeed=zero3", "tune.lora={r: 8}", "tune.policy=train=lora"], "use run.deepspeed=zero2"),
    (["model.tiny.hidden_size=48"], "head dim of 16"),
    (["bogus=1"], "bogus: unknown key"),
    (["model.family=qwen3_vl", "model.positions=pthw", "data.require_cameras=true"],
     "model.positions='pthw' with model.family=qwen3_vl: position mode 'pthw' is not defined for layout 'qwen3'"),
])
def test_cross_section_rules(overrides, needle):
    with pytest.raises(ConfigError, match="invalid training config") as info:
        load_train_config(None, MINIMAL + overrides)
    assert needle in str(info.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="write KEY=VALUE"):
        load_train_config(None, ["run.max_steps"])
    with pytest.raises(ConfigError, match="run.max_steps is a value, not a section"):
        load_train_config(None, ["run.max_steps=3", "run.max_steps.x=1"])
    with pytest.raises(InputFileError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_train_config(tmp_path / "list.yaml")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_train_config(ROOT / "configs" / "train" / "tiny_synthetic.yaml", ["run.max_steps=7"])
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    again = TrainConfig.from_dict(yaml.safe_load(text))
    assert again == config and again.synthetic == config.synthetic and again.synthetic.image_hw == (48, 64)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = load_train_config(path)
    assert config.name == path.stem and config.data.datasets
