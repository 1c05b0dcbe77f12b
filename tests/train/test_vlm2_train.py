"""``model.family: vlm2`` in training: composed from a tiny Qwen2.5-VL + tiny VGGT (camera and point heads) with
``model.vlm2`` overrides, only the stage trained under ``train=fusion,memory``, the final checkpoint a VLM² checkpoint
that loads back and is itself a source (its own ``from_pretrained``), a Spatial-MLLM checkpoint as a source
(``from_spatial_mllm``), the family's config checks; and ``posevlm train configs/train/tiny_vlm2_synthetic.yaml``
through the CLI, its final checkpoint evaluated."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.train.config import ModelSection, load_train_config
from posevlm.train.run import RUN_RECORD_NAME, train
from train_world import PIXELS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "tiny_vlm2_synthetic.yaml"
STAGE = "model.vlm2={num_heads: 4, working_size: 2, episodic_size: 3}"


def _config(world, out, *extra):
    pixels = [f"data.{k}={v}" for k, v in PIXELS.items()]
    return load_train_config(None, [
        "name=v", f"run.output_dir={out}", f"data.dataset_root={world['root']}", "data.datasets=synthetic_train_posed",
        "data.num_frames=4", "data.with_video_tchw=true", *pixels, "model.family=vlm2", "optim.lr=1e-2",
        "optim.projector_lr=1e-2", "optim.weight_decay=0", "run.batch_size=2", "run.max_steps=3", "run.save_steps=3",
        "run.num_workers=0", *extra])


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def vlm2_run(train_world, tmp_path_factory):
    """3 steps of a composed tiny VLM² under train=fusion,memory, and the model it started from."""
    from posevlm.train.trainer import build_model

    out = tmp_path_factory.mktemp("vlm2") / "run"
    config = _config(train_world, out, "model.vggt=tiny", STAGE, "tune.policy=train=fusion,memory")
    result = train(config, log=lambda _m: None)
    start = build_model(config.model, work_dir=out, seed=config.run.seed).model  # the same seeded initialisation
    return config, result, _state(start)


def test_composed_vlm2_trains_only_the_stage_and_its_final_checkpoint_loads_back(vlm2_run):
    from posevlm.models.vlm2 import VLM2, from_pretrained

    config, result, start = vlm2_run
    record = json.loads((result.output_dir / RUN_RECORD_NAME).read_text())
    assert record["model"]["model_class"] == "VLM2" and record["model"]["built_by"] == "compose"
    stage = record["model"]["spatial_mllm"]["vlm2"]
    assert (stage["num_heads"], stage["working_size"], stage["episodic_size"]) == (4, 2, 3)
    assert stage["coordinate_injection"] and stage["cross_attention_fusion"] and stage["episodic_memory"]
    assert record["model"]["spatial_mllm"]["connector"] is None  # connector auto = the paper's layout
    assert {g for g, c in record["freeze"]["groups"].items() if c["trainable"]} == {"fusion", "memory"}
    assert record["collator"] == {"pose_inputs": "none", "with_video_tchw": True}
    model = from_pretrained(result.final, device="cpu", processor=False)
    assert isinstance(model, VLM2) and model.load_report.ok
    final = _state(model)
    assert set(final) == set(start)
    changed = {k for k in start if not torch.equal(start[k], final[k])}
    assert changed and all(k.startswith("vlm2.") for k in changed)  # Qwen and VGGT frozen
    assert any(k.startswith("vlm2.memory.") for k in changed)
    assert any(k.startswith(("vlm2.injection.", "vlm2.alignment.", "vlm2.fusion.")) for k in changed)
    assert json.loads((result.final / "config.json").read_text())["model_type"] == "spatial-mllm-vlm2"


def test_a_vlm2_checkpoint_is_a_source_and_keeps_its_own_stage(vlm2_run, train_world, tmp_path):
    _, result, _ = vlm2_run
    again = train(_config(train_world, tmp_path / "again", f"model.source={result.final}",
                          "tune.policy=train=memory", "run.max_steps=1"), log=lambda _m: None)
    record = json.loads((again.output_dir / RUN_RECORD_NAME).read_text())
    assert record["model"]["built_by"] == "from_pretrained" and record["model"]["spatial_mllm"]["vlm2"][
        "working_size"] == 2 and again.global_step == 1
    with pytest.raises(ConfigError, match="is a VLM² checkpoint: its stage and VGGT are its own; remove model.vlm2"):
        train(_config(train_world, tmp_path / "refused", f"model.source={result.final}", STAGE), log=lambda _m: None)


def test_a_spatial_mllm_checkpoint_gets_a_fresh_stage(train_world, tmp_path):
    """from_spatial_mllm: the checkpoint's Qwen, VGGT (camera head only) and connector, a stage configured without
    the module that would need VGGT's point head."""
    from posevlm.models.spatial_mllm import from_pretrained as spatial_from_pretrained

    smllm = train(load_train_config(None, [
        "name=s", f"run.output_dir={tmp_path / 'smllm'}", f"data.dataset_root={train_world['root']}",
        "data.datasets=synthetic_train_posed", "data.num_frames=4", "data.with_video_tchw=true",
        *[f"data.{k}={v}" for k, v in PIXELS.items()], "model.family=spatial_mllm", "model.vggt=tiny",
        "tune.policy=train=connector", "run.max_steps=1", "run.num_workers=0"]), log=lambda _m: None)
    connector = spatial_from_pretrained(smllm.final, device="cpu", processor=False).connector.state_dict()
    result = train(_config(train_world, tmp_path / "v", f"model.source={smllm.final}", "tune.policy=train=fusion",
                           "model.vlm2={num_heads: 4, coordinate_injection: false}", "run.max_steps=1"),
                   log=lambda _m: None)
    record = json.loads((result.output_dir / RUN_RECORD_NAME).read_text())
    info = record["model"]
    assert info["built_by"] == "from_spatial_mllm" and info["spatial_mllm"]["connector"]["type"] == "add"
    assert info["spatial_mllm"]["vlm2"]["coordinate_injection"] is False
    from posevlm.models.vlm2 import from_pretrained

    model = from_pretrained(result.final, device="cpu", processor=False)
    assert all(torch.equal(v, model.connector.state_dict()[k]) for k, v in connector.items())  # frozen, kept


def test_vlm2_config_checks():
    assert ModelSection(family="vlm2", vggt="tiny", vlm2={"num_heads": 4, "working_memory": False}).problems() == []
    problems = ModelSection(family="vlm2", vggt="tiny", vlm2={"llm_dim": 8, "gate": "relu"}).problems()
    assert any(p.startswith("model.vlm2.llm_dim: the stage's widths are the model's") for p in problems)
    assert any("gate" in p and p.startswith("model.vlm2:") for p in problems)
    assert any("set model.vggt" in p for p in ModelSection(family="vlm2").problems())
    other = ModelSection(family="spatial_mllm", vggt="tiny", vlm2={"num_heads": 4}).problems()
    assert other == ["model.vlm2 is set but model.family='spatial_mllm'; it applies to family vlm2 only"]
    with pytest.raises(ConfigError, match="model.family=vlm2 feeds the frames to VGGT"):
        load_train_config(None, ["model.family=vlm2", "model.vggt=tiny", "data.datasets=x"])


@pytest.mark.slow
def test_posevlm_train_cli_trains_the_tiny_vlm2_config_and_evaluates_it(train_world, tmp_path):
    """The shipped config through ``posevlm train`` (a subprocess): only fusion / memory parameters move, the final
    VLM² checkpoint answers the synthetic test split through ``posevlm eval`` (run.evaluate)."""
    from safetensors.torch import load_file

    out = tmp_path / "cli"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    data_root = tmp_path / "data"
    args = [sys.executable, "-m", "posevlm", "train", str(CONFIG), f"run.output_dir={out}",
            f"data.dataset_root={data_root}", "run.max_steps=3", "run.save_steps=1", "tune.policy=train=fusion,memory",
            "synthetic.num_scenes=3", "synthetic.num_test_scenes=1", "synthetic.questions_per_type=1"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fusion           train" in proc.stdout and "spatial_encoder  frozen" in proc.stdout
    first, final = load_file(str(out / "checkpoint-1" / "model.safetensors")), load_file(
        str(out / "final" / "model.safetensors"))
    changed = {k for k in first if not torch.equal(first[k], final[k])}
    assert any(k.startswith("vlm2.memory.") for k in changed)
    assert any(k.startswith(("vlm2.injection.", "vlm2.alignment.", "vlm2.fusion.")) for k in changed)
    assert all(k.startswith("vlm2.") for k in changed)  # Qwen, VGGT frozen
    (entry,) = json.loads((out / "eval" / "report" / "metrics.json").read_text())["runs"]
    assert entry["n_done"] == entry["n_expected"] > 0 and entry["n_errors"] == 0
    (info,) = json.loads(next((out / "eval" / "backend").glob("rank*.json")).read_text())
    assert info["family"] == "vlm2" and info["model_class"] == "VLM2"
