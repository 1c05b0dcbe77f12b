"""The training recipe in-process on the tiny preset (a few steps each): the run record, the loss log, checkpoints
that load into the hf eval backend with their pose positions, refusals on resume, a Spatial-MLLM with LoRA, and a
NaN injected at a step stopping the run with the tensor, the step and the batch ids named."""

import json

import pytest
import torch
import yaml

from posevlm.errors import ConfigError
from posevlm.train.config import TrainConfig, load_train_config
from posevlm.train.run import RUN_CONFIG_NAME, RUN_RECORD_NAME, NonFiniteStop, train
from posevlm.train.trainer import LossLog
from train_world import PIXELS


def _config(world, out, *extra):
    pixels = [f"data.{k}={v}" for k, v in PIXELS.items()]
    return load_train_config(None, [
        "name=t", f"run.output_dir={out}", f"data.dataset_root={world['root']}", "data.datasets=synthetic_train_posed",
        "data.num_frames=4", "data.require_cameras=true", *pixels, "model.positions=pthw", "tune.policy=train=all",
        "optim.lr=1e-3", "optim.projector_lr=null", "run.batch_size=2", "run.max_steps=4", "run.save_steps=2",
        "run.num_workers=0", *extra])


@pytest.fixture(scope="module")
def pose_run(train_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "pthw"
    config = _config(train_world, out)
    return config, train(config, log=lambda _m: None)


def test_run_record_log_and_checkpoints(pose_run):
    config, result = pose_run
    out = result.output_dir
    assert result.global_step == 4 and result.resumed_from is None and result.nonfinite == ()
    assert TrainConfig.from_dict(yaml.safe_load((out / RUN_CONFIG_NAME).read_text())) == config
    record = json.loads((out / RUN_RECORD_NAME).read_text())
    prov = record["provenance"]
    assert {"git", "torch", "transformers", "accelerate", "peft", "python", "date"} <= set(prov) and prov["seed"] == 0
    assert record["model"]["positions"]["pose"] == "scalar" and record["collator"]["pose_inputs"] == "cameras"
    assert record["freeze"]["policy"] == "train=all" and record["precision"] == "fp32"
    logged = LossLog.read(out)
    assert [e["step"] for e in logged] == [1, 2, 3, 4] and list(result.losses) == [e["loss"] for e in logged]
    assert all(isinstance(v, float) and v == v for v in result.losses)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["bad_samples"]["n_bad"] == 0


def test_checkpoints_load_into_the_hf_eval_backend_with_their_positions(pose_run, train_world):
    from posevlm.eval.backends.hf import HFBackend, HFBackendConfig
    from posevlm.eval.frames import folder_manifest

    _, result = pose_run
    scene = next((train_world["root"] / "synthetic_train_posed" / "sampled").rglob("selected_frames.json")).parent
    for folder in (result.output_dir / "checkpoint-2", result.final):
        backend = HFBackend(HFBackendConfig(model=str(folder), **PIXELS))
        assert backend.info["positions_origin"] == "checkpoint"
        assert backend.info["positions"]["spec"]["pose"] == "scalar"
        out = backend.generate([("How many chairs?", folder_manifest(scene, 4))])
        assert isinstance(out[0].text, str)
    trained = torch.load  # the final weights are the trained ones, not the tiny preset's
    from safetensors.torch import load_file

    base = load_file(str(result.output_dir / "base_model" / "model.safetensors"))
    final = load_file(str(result.final / "model.safetensors"))
    assert trained and not torch.equal(base["lm_head.weight"], final["lm_head.weight"])


def test_resume_refuses_another_configuration_and_never_overwrites(pose_run, train_world):
    config, result = pose_run
    with pytest.raises(ConfigError, match=r"another configuration \(optim.lr: 0.001 -> 0.002\)"):
        train(_config(train_world, result.output_dir, "optim.lr=2e-3"), log=lambda _m: None)
    with pytest.raises(ConfigError, match="run.resume=never"):
        train(_config(train_world, result.output_dir, "run.resume=never"), log=lambda _m: None)
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        train(_config(train_world, result.output_dir, f"run.resume={result.output_dir / 'nope'}"), log=lambda _m: None)


def test_spatial_mllm_with_lora_trains_and_exports_an_evaluable_checkpoint(train_world, tmp_path):
    from posevlm.models.spatial_mllm import from_pretrained
    from posevlm.train.checkpoint import TRAIN_STATE_NAME

    config = _config(train_world, tmp_path / "smllm", "model.family=spatial_mllm", "model.vggt=tiny",
                     "model.positions=null", "data.with_video_tchw=true", "data.require_cameras=false",
                     "tune.policy=train=connector,lora", "tune.lora={r: 4, alpha: 8}", "run.max_steps=2",
                     "optim.lr=1e-2")
    result = train(config, log=lambda _m: None)
    record = json.loads((result.output_dir / RUN_RECORD_NAME).read_text())
    trained = {g for g, c in record["freeze"]["groups"].items() if c["trainable"]}
    assert trained == {"lora", "connector"} and record["freeze"]["groups"]["llm"]["trainable"] == 0
    assert record["collator"] == {"pose_inputs": "none", "with_video_tchw": True}
    assert (result.final / TRAIN_STATE_NAME).is_file()
    model = from_pretrained(result.final, processor=False, device="cpu")  # merged: plain released layout
    assert not any("lora_" in k for k in model.state_dict())
    # a Spatial-MLLM checkpoint is itself a model source (from_pretrained; processor files travelled with it)
    again = train(_config(train_world, tmp_path / "continued", "model.family=spatial_mllm",
                          f"model.source={result.final}", "model.positions=null", "data.with_video_tchw=true",
                          "data.require_cameras=false", "tune.policy=train=connector", "run.max_steps=1"),
                  log=lambda _m: None)
    assert again.global_step == 1 and json.loads((again.output_dir / RUN_RECORD_NAME).read_text())["model"][
        "source"] == str(result.final)


def test_spatial_mllm_on_a_qwen3_base_trains_on_timestamped_prompts(train_world, tiny_qwen3, tmp_path):
    """A Spatial-MLLM composed on a Qwen3-VL base gets Qwen3-VL samples (per-patch ``<t seconds>`` in the text, no
    second_per_grid_ts) and trains."""
    from posevlm.train.run import finish_run, prepare_run

    config = _config(train_world, tmp_path / "sm3", "model.family=spatial_mllm", f"model.source={tiny_qwen3}",
                     "model.vggt=tiny", "model.connector=add", "model.positions=null", "data.with_video_tchw=true",
                     "data.require_cameras=false", "tune.policy=train=connector,llm", "run.max_steps=1")
    run = prepare_run(config, log=lambda _m: None)
    dataset = run.trainer.train_dataset
    sample = dataset[0]
    text = dataset.processor.tokenizer.decode(sample["input_ids"])
    assert dataset.chat.layout == "qwen3" and text.count(" seconds><|vision_start|>") == 2  # 4 frames, 2 patches
    assert "second_per_grid_ts" not in sample and not text.startswith("<|im_start|>system")
    run.trainer.train()
    result = finish_run(run, log=lambda _m: None)
    record = json.loads((result.output_dir / RUN_RECORD_NAME).read_text())
    assert record["model"]["spatial_mllm"]["base_family"] == "qwen3_vl" and result.global_step == 1
    assert all(v == v for v in result.losses)


def _synthetic_overrides(world):
    """The ``synthetic`` section that made ``world`` (so the recipe reuses it and can evaluate on its test split)."""
    return [f"synthetic.{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}"
            for k, v in world["config"].to_dict().items() if k != "schema_version"]


@pytest.mark.parametrize("connector", ["add", "sequence_cat"])
def test_spatial_mllm_run_evaluates_its_final_checkpoint(train_world, tmp_path, connector):
    """run.evaluate on a Spatial-MLLM: the final checkpoint answers the synthetic test split through
    ``posevlm eval --backend hf`` (family from its config.json; VGGT cameras, connector and frames as trained).
    ``sequence_cat`` adds a token per merged video token: the training samples carry its extra pads, as the eval's
    prompt does (the model refuses a prompt without them)."""
    config = _config(train_world, tmp_path / "smllm_eval", "model.family=spatial_mllm", "model.vggt=tiny",
                     f"model.connector={connector}", "model.positions=null", "data.with_video_tchw=true",
                     "data.require_cameras=false", "tune.policy=train=connector,llm", "run.max_steps=2",
                     "run.evaluate=true", *_synthetic_overrides(train_world))
    assert config.synthetic == train_world["config"]
    result = train(config, log=lambda _m: None)
    assert result.eval_dir == result.output_dir / "eval"
    (entry,) = json.loads((result.eval_dir / "report" / "metrics.json").read_text())["runs"]
    assert entry["n_done"] == entry["n_expected"] > 0 and entry["n_errors"] == 0
    (info,) = json.loads(next((result.eval_dir / "backend").glob("rank*.json")).read_text())
    assert info["family"] == "spatial_mllm" and info["source"] == str(result.final)
    assert info["spatial_mllm"]["connector"]["type"] == connector


def test_nan_at_a_step_stops_the_run_naming_tensor_step_and_batch(train_world, tmp_path, monkeypatch):
    import posevlm.train.trainer as trainer_module

    build = trainer_module.build_model
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        built = build(*args, **kwargs)
        mlp = built.model.model.language_model.layers[1].mlp

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] == 3 else output  # forward of step 3

        mlp.register_forward_hook(hook)
        return built

    monkeypatch.setattr(trainer_module, "build_model", poisoned)
    with pytest.raises(NonFiniteStop, match=r"stopped at step 3: non-finite forward: output of "
                                            r"model.language_model.layers.1.mlp \(micro-batch 0\); batch \['synthetic"):
        train(_config(train_world, tmp_path / "nan", "run.save_steps=1"), log=lambda _m: None)
    report = json.loads((tmp_path / "nan" / "nonfinite" / "step-3.json").read_text())
    assert len(report["sample_ids"]) == 2 and report["action"] == "stop"
    assert not (tmp_path / "nan" / "final").exists()
    assert [p.name for p in sorted((tmp_path / "nan").glob("checkpoint-*"))] == ["checkpoint-1", "checkpoint-2"]
    assert json.loads((tmp_path / "nan" / "summary.json").read_text())["nonfinite"][0]["global_step"] == 3


def test_gradient_accumulation_equals_one_large_batch(train_world, tmp_path):
    """2 micro-batches of 1 sample == 1 batch of 2 (losses, gradient norms, final weights): the loss is normalised by
    the label tokens of the whole step, not averaged per micro-batch (Qwen-VL declares accepts_loss_kwargs=False)."""
    from safetensors.torch import load_file

    runs = {}
    for name, extra in (("big", ["run.batch_size=2"]), ("accum", ["run.batch_size=1", "run.grad_accum=2"])):
        runs[name] = train(_config(train_world, tmp_path / name, "run.max_steps=3", "run.save_steps=10", *extra),
                           log=lambda _m: None)
    big, accum = (LossLog.read(runs[k].output_dir) for k in ("big", "accum"))
    assert [e["step"] for e in big] == [e["step"] for e in accum] == [1, 2, 3]
    for a, b in zip(big, accum):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["grad_norm"] == pytest.approx(b["grad_norm"],
                                                                                                     rel=1e-5)
    wa, wb = (load_file(str(runs[k].final / "model.safetensors")) for k in ("big", "accum"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6, rtol=1e-5) for k in wa)


def _first_step_gradients(config):
    """The trainable parameters' gradients of the first batch through the prepared ``Trainer``'s own loss."""
    from posevlm.train.run import prepare_run

    run = prepare_run(config, log=lambda _m: None)
    trainer = run.trainer
    model = trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    batch.pop("sample_ids", None)
    torch.manual_seed(0)
    trainer.compute_loss(model, batch).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, model


CHECKPOINTING_CASES = {  # embeddings frozen in each; nothing trainable before the first checkpointed layer
    "qwen2_5_gta_lora": ["model.positions=null", "model.camera_attention=gta", "tune.policy=train=lora",
                         "tune.lora={r: 4, alpha: 8}"],
    "qwen3_phw_llm": ["model.family=qwen3_vl", "model.positions=phw", "tune.policy=train=llm"],
    "spatial_mllm_lora": ["model.family=spatial_mllm", "model.vggt=tiny", "model.positions=null",
                          "data.with_video_tchw=true", "data.require_cameras=false", "tune.policy=train=lora",
                          "tune.lora={r: 4, alpha: 8}"],
}


@pytest.mark.parametrize("case", list(CHECKPOINTING_CASES))
def test_gradient_checkpointing_with_frozen_embeddings_gives_the_plain_gradients(train_world, tmp_path, case):
    """Embeddings frozen (LoRA-only, train=llm; a Spatial-MLLM's inner Qwen): with activation checkpointing on, the
    trained parameters inside the checkpointed decoder layers receive non-zero gradients equal to the run without
    checkpointing. (Reentrant checkpointing without input gradients leaves them None: the failure this pins.)"""
    runs = {}
    for flag in (False, True):
        config = _config(train_world, tmp_path / str(flag), *CHECKPOINTING_CASES[case],
                         f"model.gradient_checkpointing={str(flag).lower()}")
        runs[flag] = _first_step_gradients(config)
    (plain, _), (ckpt, model) = runs[False], runs[True]
    qwen = getattr(model, "qwen", model)
    assert qwen.is_activation_checkpointing and qwen.training
    assert plain.keys() == ckpt.keys() and not any("embed_tokens" in n for n in plain)
    inside = [n for n in plain if ".layers." in n]  # all but train=llm's final norm
    assert len(inside) >= len(plain) - 1 > 0
    assert all(ckpt[n] is not None for n in plain), [n for n in plain if ckpt[n] is None][:3]
    assert all(torch.allclose(plain[n], ckpt[n], atol=1e-6, rtol=1e-5) for n in plain)
    assert any(float(ckpt[n].abs().max()) > 0 for n in inside)


def test_model_of_a_config_dtype_gradient_checkpointing_and_qwen3(tmp_path):
    from posevlm.train.config import ModelSection
    from posevlm.train.trainer import build_model, resolve_dtype

    assert resolve_dtype(ModelSection(), cuda=True) == torch.bfloat16
    assert resolve_dtype(ModelSection(), cuda=False) == torch.float32
    assert resolve_dtype(ModelSection(dtype="bfloat16"), cuda=False) == torch.bfloat16
    plain = build_model(ModelSection(positions="pthw"), work_dir=tmp_path).model.train()
    ckpt = build_model(ModelSection(positions="pthw", gradient_checkpointing=True), work_dir=tmp_path).model.train()
    assert ckpt.is_activation_checkpointing and not plain.is_activation_checkpointing
    ids = torch.randint(0, 200, (2, 10), generator=torch.Generator().manual_seed(0))
    for model in (plain, ckpt):
        model(input_ids=ids, labels=ids).loss.backward()
    grads = [(a.grad, b.grad) for a, b in zip(plain.parameters(), ckpt.parameters()) if a.grad is not None]
    assert grads and all(torch.allclose(a, b, atol=1e-6) for a, b in grads)  # recomputation changes nothing
    qwen3 = build_model(ModelSection(family="qwen3_vl", positions="phw"), work_dir=tmp_path / "q3")
    assert type(qwen3.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert qwen3.info["positions"]["layout"] == "qwen3" and qwen3.base_family == "qwen3_vl"
