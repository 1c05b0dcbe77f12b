"""Point-cloud LM training pieces: the synthetic point training set, tokenisation with assistant-only labels that
equals the eval backend's prompt, the collator (clouds of different sizes), the loss it drives, and the PointCloudLM
parameter groups of the freeze policy."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError, InputFileError  # noqa: E402
from posevlm.models.point_lm import PointCloudLM, point_prompt  # noqa: E402
from posevlm.train.points import (  # noqa: E402
    IGNORE_INDEX, PointCollator, PointSFTDataset, PointSynthConfig, build_point_training_set, read_point_records,
    tokenize_point_sample,
)

_spec = importlib.util.spec_from_file_location("_tiny_models", Path(__file__).parents[1] / "eval" / "tiny_models.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)

SMALL = PointSynthConfig(num_scenes=3, num_test_scenes=1, frames_per_scene=12, cloud_frames=4, questions_per_type=1)


@pytest.fixture(scope="module")
def point_set(tmp_path_factory):
    return build_point_training_set(tmp_path_factory.mktemp("pointtrain"), SMALL)


def tiny_point_lm(seed=0):
    tokenizer = tiny_models.build_tokenizer(tiny_models.QWEN3_VL_CHAT_TEMPLATE)
    torch.manual_seed(seed)
    decoder = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=(len(tokenizer) + 15) // 16 * 16, hidden_size=64, intermediate_size=96, head_dim=16,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id))
    return PointCloudLM.compose(decoder, tokenizer, encoder={"token_stride": 4, "hidden_size": 32, "out_size": 32},
                                seed=seed)


def _collator(model):
    c = model.config
    return PointCollator((c.point_start_id, c.point_pad_id, c.point_end_id), model.tokenizer.pad_token_id,
                         c.encoder.token_stride)


def test_training_set_splits_by_scene_and_is_reused(point_set, tmp_path):
    train, test = read_point_records(point_set.train), read_point_records(point_set.test)
    assert {r["scene_name"] for r in train} == set(point_set.train_scenes)
    assert {r["scene_name"] for r in test} == set(point_set.test_scenes)
    assert not set(point_set.train_scenes) & set(point_set.test_scenes)
    assert {r["task"] for r in train} == {"layout", "qa"} and len(train) == point_set.counts["train"]
    assert all(Path(r["point_cloud"]).is_file() for r in train + test)
    layout = next(r for r in train if r["task"] == "layout")
    assert layout["prompt"] == "Detect walls, doors, windows, boxes." and layout["answer"].startswith("wall_0=Wall(")
    qa = next(r for r in train if r["task"] == "qa")
    assert qa["prompt"].startswith("This is a point cloud of a room.\n")
    assert (point_set.test_dir / "layout.jsonl").is_file() and (point_set.test_dir / "point_qa.jsonl").is_file()
    stamp = point_set.train.stat().st_mtime_ns
    again = build_point_training_set(point_set.root, SMALL)
    assert again.counts == point_set.counts and point_set.train.stat().st_mtime_ns == stamp
    only_layout = build_point_training_set(tmp_path / "layout_only", PointSynthConfig(
        num_scenes=2, num_test_scenes=1, frames_per_scene=12, cloud_frames=4, tasks=("layout",)))
    assert {r["task"] for r in read_point_records(only_layout.train)} == {"layout"}


def test_config_and_record_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="num_test_scenes=3 must be in 1..num_scenes-1") as err:
        PointSynthConfig(num_scenes=3, num_test_scenes=3, tasks=("layout", "captions"), prompt="answer_tags")
    assert "tasks=['layout', 'captions']" in str(err.value) and "prompt='answer_tags'" in str(err.value)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "task": "qa", "scene_name": "s", "prompt": "p", "answer": "1"}) + "\n")
    with pytest.raises(InputFileError, match="bad.jsonl:1: field.s. point_cloud"):
        read_point_records(bad)


def test_prompt_tokens_equal_the_eval_backends_and_labels_are_the_answer(point_set):
    """The training prompt is, token for token, what the points eval backend feeds the model (PointCloudLM.prepare
    with the chat template on point_prompt(text)); labels cover the answer and the end-of-turn token only."""
    model = tiny_point_lm()
    records = read_point_records(point_set.train)
    dataset = PointSFTDataset(records, model.tokenizer)
    collate = _collator(model)
    for record in (records[0], records[-1]):  # a layout and a QA record
        sample = dataset[records.index(record)]
        batch = collate([sample])
        eval_inputs = model.prepare([point_prompt(record["prompt"])], [sample.cloud], chat_template=True)
        n = eval_inputs["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][0, :n], eval_inputs["input_ids"][0].cpu())
        labels = batch["labels"][0]
        assert (labels[:n] == IGNORE_INDEX).all() and (labels[n:] != IGNORE_INDEX).all()
        answer = model.tokenizer.decode(labels[n:])
        assert answer == record["answer"] + model.tokenizer.eos_token


def test_collator_batches_clouds_of_different_sizes_like_single_samples(point_set):
    model = tiny_point_lm()
    records = read_point_records(point_set.train)
    dataset = PointSFTDataset(records, model.tokenizer)
    samples = [dataset[0], dataset[len(records) - 1], dataset[1]]
    collate = _collator(model)
    batch = collate(samples)
    counts = batch["points"].token_counts
    assert len(set(counts.tolist())) > 1 and batch["sample_ids"] == [s.sample_id for s in samples]
    pad = model.config.point_pad_id
    assert torch.equal((batch["input_ids"] == pad).sum(1), counts)
    assert ((batch["labels"] == IGNORE_INDEX) | batch["attention_mask"].bool()).all()
    assert (batch["labels"][batch["input_ids"] == pad] == IGNORE_INDEX).all()
    for b, s in enumerate(samples):  # each row equals the sample collated alone, then right-padded
        alone = collate([s])
        n = alone["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][b, :n], alone["input_ids"][0])
        assert torch.equal(batch["labels"][b, :n], alone["labels"][0])
        assert int(batch["attention_mask"][b].sum()) == n and not batch["attention_mask"][b, n:].any()
    one = tokenize_point_sample({"id": "x", "prompt": "How many?", "answer": "4"}, model.tokenizer, samples[0].cloud)
    assert int((one.input_ids == pad).sum()) == 1  # one placeholder per sample; the collator expands it


def test_the_batch_trains_the_model_on_the_answer_tokens(point_set):
    """PointCloudLM's loss on a collated batch = mean cross-entropy over the labelled (answer) tokens, and a few
    AdamW steps on it lower it."""
    model = tiny_point_lm().train()
    records = read_point_records(point_set.train)
    dataset = PointSFTDataset(records, model.tokenizer)
    batch = _collator(model)([dataset[0], dataset[len(records) - 1]])
    batch.pop("sample_ids")
    out = model(**batch)
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    target = batch["labels"][:, 1:].reshape(-1)
    manual = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, manual, atol=1e-5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(out.loss.detach())
    for _ in range(8):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    assert float(model(**batch).loss.detach()) < 0.8 * first


def test_freeze_groups_cover_encoder_projector_rope3d_and_decoder():
    from posevlm.train.policy import FreezePolicy, apply_freeze_policy, parameter_groups

    model = tiny_point_lm()
    groups = parameter_groups(model)
    assert set(groups) == {"point_encoder", "connector", "rope3d", "embed", "llm", "lm_head"}
    assert all(n.startswith("encoder.") for n in groups["point_encoder"])
    assert all(n.startswith("projector.") for n in groups["connector"])
    assert all(".mixed_rope3d." in n for n in groups["rope3d"]) and len(groups["rope3d"]) == 4
    apply_freeze_policy(model, FreezePolicy.parse("train=point_encoder,projector,rope3d"))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == set(groups["point_encoder"] + groups["connector"] + groups["rope3d"])


def test_exported_checkpoint_resumes_every_tensor(tmp_path):
    """export_model writes a PointCloudLM checkpoint the points eval backend loads, and load_training_state puts
    every tensor of it back into a differently initialised live model (a resume that restarts nothing)."""
    from posevlm.train.checkpoint import export_model, load_training_state

    trained, fresh = tiny_point_lm(seed=0), tiny_point_lm(seed=1)
    export_model(trained, tmp_path / "checkpoint-1")
    assert PointCloudLM.from_pretrained(tmp_path / "checkpoint-1").tokenizer.convert_tokens_to_ids("<|point_pad|>") \
        == trained.config.point_pad_id
    assert load_training_state(fresh, tmp_path / "checkpoint-1")
    want, got = trained.state_dict(), fresh.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_too_long_sample_is_skipped_by_rule_and_logged(point_set):
    from posevlm.train.bad_samples import BadSampleLog
    from posevlm.train.errors import SampleTooLongError

    model = tiny_point_lm()
    records = read_point_records(point_set.train)
    layout = next(i for i, r in enumerate(records) if r["task"] == "layout")  # the long answer
    log = BadSampleLog()
    dataset = PointSFTDataset(records, model.tokenizer, max_length=200, bad_samples=log)
    served = dataset[layout]
    first_qa = next(i for i in range(layout, len(records)) if records[i]["task"] == "qa")
    assert served.sample_id == records[first_qa]["id"]  # the next usable index, deterministically
    assert log.counts == {"too_long": first_qa - layout}
    assert [e["sample_id"] for e in log.entries] == [r["id"] for r in records[layout:first_qa]]
    with pytest.raises(SampleTooLongError, match="text tokens > 200"):
        PointSFTDataset(records, model.tokenizer, max_length=200, on_error="raise")[layout]


CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny_point_lm_synthetic.yaml"


def test_point_lm_family_reports_its_config_problems():
    from posevlm.train.config import load_train_config

    for override, needle in (("model.point_lm.rope3d=rope4d", "model.point_lm.rope3d='rope4d'"),
                             ("model.point_lm.projector=mlp9", "model.point_lm.projector='mlp9': allowed linear, mlp2"),
                             ("model.point_lm.encoder.token_stride=0", "token_stride=0"),
                             ("model.point_lm.colour=1", "unknown key(s) ['colour']"),
                             ("model.camera_attention=prope", "do not apply to model.family=point_lm")):
        with pytest.raises(ConfigError) as err:
            load_train_config(CONFIG, [override])
        assert needle in str(err.value), (override, str(err.value))


def test_point_lm_family_builds_from_tiny_then_from_its_own_checkpoint(tmp_path):
    """source=tiny composes a PointCloudLM on a tiny Qwen2 decoder with the config's rope3d / encoder / projector;
    a checkpoint of it as source loads the same weights (options then come from the checkpoint)."""
    from posevlm.train.config import load_train_config
    from posevlm.train.points import PointCollator
    from posevlm.train.trainer import build_model

    config = load_train_config(CONFIG, ["model.point_lm.rope3d=rope3d", "model.point_lm.projector=linear"])
    built = build_model(config.model, work_dir=tmp_path / "run")
    model = built.model
    assert isinstance(model, PointCloudLM) and built.processor.tokenizer is model.tokenizer
    assert built.processor_source is None  # no processor files are copied over the point tokenizer
    assert model.decoder.config.posevlm_mixed_rope3d["rope3d"]["learned_mixing"] is False  # the fixed preset
    assert isinstance(model.projector, torch.nn.Linear) and model.config.encoder.token_stride == 4
    assert type(model.decoder).__name__ == "Qwen2ForCausalLM" and model.decoder.config.hidden_size == 64
    collator = config.model.train_family.make_collator(config, built, 0)
    assert isinstance(collator, PointCollator) and collator.token_stride == 4
    model.save_pretrained(tmp_path / "ckpt")
    again = build_model(load_train_config(CONFIG, [f"model.source={tmp_path / 'ckpt'}"]).model,
                        work_dir=tmp_path / "run2").model
    want, got = model.state_dict(), again.state_dict()
    assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
