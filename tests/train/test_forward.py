"""A collated batch trains: a tiny Qwen2.5-VL forward with labels gives the masked next-token cross-entropy, and a
pose-aware model (PTHW positions) consumes the packed cameras (the loss depends on them) and back-propagates; the same
for a tiny Qwen3-VL (timestamped prompts, PHW positions)."""

import copy

import pytest
import torch

from posevlm.models import enable_pose_positions
from posevlm.positions import build_position_plan, build_token_map, position_spec
from posevlm.train import IGNORE_INDEX, DataConfig, DataItem, SFTCollator, SFTDataset
from posevlm.train.records import parse_record
from test_collate import _folders, mixed  # noqa: F401  (the module fixture: 4- and 6-frame samples with cameras)
from train_world import PIXELS


@pytest.fixture(scope="module")
def stock(tiny_qwen):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen, dtype=torch.float32).eval()


def _batch(samples, processor, **kw):
    batch = SFTCollator(processor.tokenizer.pad_token_id, **kw)(samples)
    batch.pop("video_tchw", None)
    return batch


def test_stock_forward_loss_is_the_masked_next_token_cross_entropy(stock, mixed, processor):  # noqa: F811
    batch = _batch(mixed[0], processor)
    with torch.no_grad():
        out = stock(**batch)
    assert torch.isfinite(out.loss)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                 ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert int((labels != IGNORE_INDEX).sum()) == 2 + 5  # "3" + <|im_end|>, "1.25" (4 bytes) + <|im_end|>


def _rows_seen(model):
    """Record the position rows the text rotary receives (the model's own, built inside ``forward``)."""
    seen, rotary = [], model.model.language_model.rotary_emb
    forward = rotary.forward

    def spy(x, position_ids):
        seen.append(position_ids.detach().clone())
        return forward(x, position_ids)

    rotary.forward = spy
    return seen


def test_pose_aware_forward_consumes_the_packed_cameras(stock, mixed, processor):  # noqa: F811
    """The packed cameras become the P row the rotary rotates by (parity with the plan built from the same
    cameras), identity cameras give a flat P, and the logits move from the first video token on.

    The loss alone cannot show it on a random tiny model: its near-uniform logits (loss ~ ln(vocab)) move by
    ~1e-5 when P changes, inside ``allclose``'s default tolerance."""
    model = enable_pose_positions(copy.deepcopy(stock), position_spec("pthw"))
    seen = _rows_seen(model)
    batch = _batch(mixed[0], processor, pose_inputs="cameras")
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    cfg = model.config
    tm = build_token_map(batch["input_ids"], video_grid_thw=batch["video_grid_thw"], spatial_merge_size=2,
                         attention_mask=batch["attention_mask"], mm_token_type_ids=batch["mm_token_type_ids"],
                         image_token_id=cfg.image_token_id, video_token_id=cfg.video_token_id)
    plan = build_position_plan(tm, position_spec("pthw"), second_per_grid_ts=batch["second_per_grid_ts"],
                               w2c_opencv=batch["w2c_opencv"])
    assert torch.equal(seen[0], torch.cat([plan.text_row[None].float(), plan.rows.float()]))  # [text; P; T; H; W]
    video = batch["mm_token_type_ids"] == 2
    p_row = seen[0][1]
    assert all(p_row[b][video[b]].unique().numel() > 1 for b in range(2))  # real cameras: P varies per tubelet
    with torch.no_grad():
        static = dict(batch, w2c_opencv=[torch.eye(4).expand_as(w).clone() for w in batch["w2c_opencv"]])
        still = model(**static)
    p_still = seen[-1][1]
    assert all(p_still[b][video[b]].unique().numel() == 1 for b in range(2))  # identity cameras: one P per video
    assert torch.equal(seen[-1][2:], seen[0][2:])  # T, H, W do not depend on the cameras
    first = int(video.int().argmax(1).min())
    delta = (still.logits - out.logits.detach()).abs()
    assert torch.equal(delta[:, :first], torch.zeros_like(delta[:, :first]))  # causal: nothing before the video
    assert delta[:, first:].amax() > 1e-4  # float32 rounding is ~1e-7 here
    assert not torch.equal(still.loss, out.loss.detach())


@pytest.fixture(scope="module")
def qwen3_batch(train_world, processor3):
    """A Qwen3-VL batch with cameras: 4 frames of synth_100000 and 6 of synth_100001 (timestamped prompts)."""
    texts = [("<video>Count?", "3"), ("<video>How far is the lamp from the sofa, in meters?", "1.25")]
    items = [DataItem(parse_record({"id": k, "video": v, "conversations": [{"from": "human", "value": q},
                                                                          {"from": "gpt", "value": a}]}),
                      str(train_world["root"]), "mix")
             for k, (v, (q, a)) in enumerate(zip(_folders(train_world), texts))]
    config = DataConfig(num_frames=6, manifest_policy="allow_fewer", require_cameras=True, **PIXELS)
    ds = SFTDataset(items, processor3, config, family="qwen3_vl")
    return _batch([ds[0], ds[1]], processor3, pose_inputs="cameras")


def test_qwen3_phw_forward_with_labels_consumes_the_packed_cameras(tiny_qwen3, qwen3_batch):
    """Stock Qwen3-VL: the loss is the masked next-token cross-entropy of the timestamped batch. PHW: the rotary
    receives the plan of the packed cameras (P on the video tokens, varying per temporal patch), identity cameras
    flatten P, the logits move from the first video token on, and the loss back-propagates."""
    from transformers import Qwen3VLForConditionalGeneration

    batch = qwen3_batch
    assert "second_per_grid_ts" not in batch and batch["video_grid_thw"].tolist() == [[2, 4, 4], [3, 4, 4]]
    stock = Qwen3VLForConditionalGeneration.from_pretrained(tiny_qwen3, dtype=torch.float32).eval()
    cameras = {k: batch[k] for k in ("frame_ids", "w2c_opencv", "K_pixels", "image_hw") if k in batch}
    plain = {k: v for k, v in batch.items() if k not in cameras}
    with torch.no_grad():
        out = stock(**plain)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=IGNORE_INDEX)
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, expected, atol=1e-5)
    spec = position_spec("phw", "qwen3")
    model = enable_pose_positions(copy.deepcopy(stock), spec).train()
    seen = _rows_seen(model)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    cfg = model.config
    tm = build_token_map(batch["input_ids"], video_grid_thw=batch["video_grid_thw"], spatial_merge_size=2,
                         attention_mask=batch["attention_mask"], mm_token_type_ids=batch["mm_token_type_ids"],
                         image_token_id=cfg.image_token_id, video_token_id=cfg.video_token_id)
    plan = build_position_plan(tm, spec, w2c_opencv=batch["w2c_opencv"])
    assert torch.equal(seen[0].float(), plan.rows.float())  # [P; H; W], the text row goes to the mask
    video = batch["mm_token_type_ids"] == 2
    assert all(seen[0][0][b][video[b]].unique().numel() > 1 for b in range(2))
    with torch.no_grad():
        still = model(**dict(batch, w2c_opencv=[torch.eye(4).expand_as(w).clone() for w in batch["w2c_opencv"]]))
    assert all(seen[-1][0][b][video[b]].unique().numel() == 1 for b in range(2))
    first = int(video.int().argmax(1).min())
    delta = (still.logits - out.logits.detach()).abs()
    assert torch.equal(delta[:, :first], torch.zeros_like(delta[:, :first]))
    assert delta[:, first:].amax() > 1e-4
