"""PointCloudLM: stock Qwen2 decoder + point encoder + projector + MixedRoPE3D, from a synthetic scan's clouds to
generated tokens; the processor step, trap 1 end to end, training signal and the checkpoint round trip."""

import importlib.util
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ShapeError  # noqa: E402
from posevlm.models.point_lm import POINT_TOKENS, PointCloudLM  # noqa: E402

_spec = importlib.util.spec_from_file_location("_tiny_models", Path(__file__).parents[1] / "eval" / "tiny_models.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    from posevlm.scenes import load_scene, scene_point_cloud
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 1, SynthConfig(seed=2, num_frames=24, image_hw=(48, 64)))
    scan = load_scene(next(root.glob("synth_*")))
    return [scene_point_cloud(scan, num_frames=4, grid_size=0.05), scene_point_cloud(scan, num_frames=1,
                                                                                     grid_size=0.05)]


def _model(family="qwen2", seed=0):
    tokenizer = tiny_models.build_tokenizer(tiny_models.QWEN3_VL_CHAT_TEMPLATE)
    torch.manual_seed(seed)
    common = dict(vocab_size=(len(tokenizer) + 15) // 16 * 16, hidden_size=64, intermediate_size=96, head_dim=16,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  attn_implementation="sdpa", pad_token_id=tokenizer.pad_token_id)
    if family == "qwen3":
        decoder = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common))
    else:
        decoder = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    model = PointCloudLM.compose(decoder.eval(), tokenizer, rope3d={"preset": "mixed_rope3d", "init_noise": 0.1},
                                 encoder={"token_stride": 6, "hidden_size": 32, "out_size": 32}, seed=seed)
    return model.eval()


def test_compose_adds_the_point_span_and_installs_mixed_rope3d():
    model = _model()
    ids = [model.tokenizer.convert_tokens_to_ids(t) for t in POINT_TOKENS]
    assert ids == [model.config.point_start_id, model.config.point_pad_id, model.config.point_end_id]
    assert max(ids) < model.decoder.get_input_embeddings().num_embeddings
    assert model.decoder.config.posevlm_mixed_rope3d["point_token_id"] == model.config.point_pad_id
    assert model.tokenizer.decode(ids) == "".join(POINT_TOKENS)


@pytest.mark.parametrize("side", ["left", "right"])
def test_prepare_expands_one_placeholder_to_one_pad_per_voxel_token(clouds, side):
    model = _model()
    start, pad, end = model.config.point_start_id, model.config.point_pad_id, model.config.point_end_id
    inputs = model.prepare(["Detect walls.", f"{POINT_TOKENS[0]}{POINT_TOKENS[1]}{POINT_TOKENS[2]} Boxes?"], clouds,
                           padding_side=side)
    counts = inputs["points"].token_counts.tolist()
    assert counts[0] != counts[1] and min(counts) > 10
    for b in range(2):
        row = inputs["input_ids"][b][inputs["attention_mask"][b].bool()].tolist()
        first = row.index(pad)
        assert row[first - 1] == start and row[first: first + counts[b]] == [pad] * counts[b]
        assert row[first + counts[b]] == end and row.count(pad) == counts[b]
    valid = inputs["attention_mask"].bool()
    short = int(valid.sum(1).argmin())
    assert (not valid[short, 0]) if side == "left" else (not valid[short, -1])
    with pytest.raises(ShapeError, match="write one"):
        model.prepare([POINT_TOKENS[1] * 2], clouds[:1])
    chat = model.prepare(["Boxes?"], clouds[:1], chat_template=True)["input_ids"][0].tolist()
    assert chat.count(pad) == counts[0]


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_generation_is_a_cached_replay_of_the_full_forward_and_masks_count_the_cache(clouds, family):
    """Trap 1 end to end: during generate every decoder call gets a mask of cache + new tokens, and greedy
    cached generation picks the argmax of one full forward over prompt + generated tokens."""
    model = _model(family)
    inputs = model.prepare(["Detect boxes.", "Walls?"], clouds)
    inner = model.decoder.model
    original = inner.forward
    seen = []

    def spy(*args, **kwargs):
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        ref = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        seen.append((kwargs["attention_mask"].shape[1], past + ref.shape[1]))
        return original(*args, **kwargs)

    inner.forward = spy
    try:
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    finally:
        inner.forward = original
    assert len(seen) == 5 and all(mask_len == total for mask_len, total in seen)
    length = inputs["input_ids"].shape[1]
    assert torch.equal(out[:, :length], inputs["input_ids"])
    full_mask = torch.cat([inputs["attention_mask"], torch.ones(2, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        logits = model(out, attention_mask=full_mask, points=inputs["points"]).logits
    assert torch.equal(logits[:, length - 1: -1].argmax(-1), out[:, length:])


def test_training_signal_reaches_every_part_and_ignores_point_labels(clouds):
    model = _model().train()
    inputs = model.prepare(["Detect walls.", "Boxes?"], clouds, padding_side="right")
    labels = inputs["input_ids"].clone()
    out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    parts = {"encoder": model.encoder, "projector": model.projector, "rope": model.decoder.model.mixed_rope3d,
             "decoder": model.decoder.model.layers[0]}
    for name, module in parts.items():
        assert all(p.grad is not None and p.grad.abs().max() > 0 for p in module.parameters()), name
    scrambled = labels.masked_fill(inputs["input_ids"] == model.config.point_pad_id, 7)
    with torch.no_grad():
        assert torch.equal(model(**inputs, labels=scrambled).loss, model(**inputs, labels=labels).loss)


def test_inputs_that_do_not_match_the_clouds_are_refused(clouds):
    model = _model()
    inputs = model.prepare(["a", "b"], clouds)
    ids = inputs["input_ids"].clone()
    ids[0, ids[0].tolist().index(model.config.point_pad_id)] = 40
    with pytest.raises(ShapeError, match="PointCloudLM.prepare"):
        model(ids, attention_mask=inputs["attention_mask"], points=inputs["points"])
    with pytest.raises(ShapeError, match="no points"):
        model(inputs["input_ids"], attention_mask=inputs["attention_mask"])


def test_checkpoint_round_trip(clouds, tmp_path):
    model = _model()
    with torch.no_grad():
        for p in model.decoder.model.mixed_rope3d.parameters():
            p.mul_(1.1)
    inputs = model.prepare(["Detect walls.", "Boxes?"], clouds)
    model.save_pretrained(tmp_path / "plm")
    loaded = PointCloudLM.from_pretrained(tmp_path / "plm").eval()
    assert loaded.config == model.config
    assert loaded.tokenizer.convert_tokens_to_ids(POINT_TOKENS[1]) == model.config.point_pad_id
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_save_pretrained_writes_a_given_state_dict(clouds, tmp_path):
    """``save_pretrained(state_dict=...)`` (what posevlm.train.checkpoint.export_model passes: a gathered or
    LoRA-merged state) writes that state, split over the decoder and the point modules, not the live weights."""
    model, other = _model(seed=0), _model(seed=1)
    model.save_pretrained(tmp_path / "plm", state_dict=other.state_dict())
    loaded = PointCloudLM.from_pretrained(tmp_path / "plm")
    live, want = loaded.state_dict(), other.state_dict()
    assert set(live) == set(want) and all(torch.equal(live[k], want[k]) for k in want)
    with pytest.raises(ShapeError, match="not under decoder"):
        model.save_pretrained(tmp_path / "bad", state_dict={"lm_head.weight": torch.zeros(1)})
