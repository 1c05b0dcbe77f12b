"""The collator: right padding, concatenated pixels, stacked grids, per-video seconds per grid step and cameras for
mixed frame counts (4 and 6 frames); equal to the processor's own batch; never position ids."""

import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.eval.backends._qwen_video import resize_frames, video_metadata
from posevlm.sampling import read_manifest
from posevlm.train import IGNORE_INDEX, DataConfig, DataItem, SFTCollator, SFTDataset
from posevlm.train.media import load_video
from posevlm.train.records import parse_record
from train_world import PIXELS

CONFIG = DataConfig(num_frames=6, manifest_policy="allow_fewer", with_video_tchw=True, require_cameras=True, **PIXELS)


def _folders(world):
    return [f"synthetic_train_posed/sampled/{world['four_slug']}/synthetic_train/synth_100000",
            f"sampled6/{world['six_slug']}/synthetic_train/synth_100001"]


@pytest.fixture(scope="module")
def mixed(train_world, processor):
    """Two samples: 4 frames of synth_100000 (short answer), 6 frames of synth_100001 (longer question)."""
    texts = [("<video>Count?", "3"), ("<video>How far is the lamp from the sofa, in meters?", "1.25")]
    items = [DataItem(parse_record({"id": k, "video": v, "conversations": [{"from": "human", "value": q},
                                                                          {"from": "gpt", "value": a}]}),
                      str(train_world["root"]), "mix")
             for k, (v, (q, a)) in enumerate(zip(_folders(train_world), texts))]
    ds = SFTDataset(items, processor, CONFIG)
    return [ds[0], ds[1]], texts


def test_shapes_padding_cameras_and_seconds_per_grid_step(mixed, train_world, processor):
    samples, _ = mixed
    pad = processor.tokenizer.pad_token_id
    batch = SFTCollator(pad, pose_inputs="cameras", with_video_tchw=True, with_sample_ids=True)(samples)
    lengths = [s["input_ids"].numel() for s in samples]
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, max(lengths))
    for row, n in enumerate(lengths):  # right padding
        assert torch.equal(batch["input_ids"][row, :n], samples[row]["input_ids"])
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert (batch["input_ids"][row, n:] == pad).all() and (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert (batch["mm_token_type_ids"][row, n:] == 0).all()
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4], [3, 4, 4]]
    assert batch["pixel_values_videos"].shape == (2 * 16 + 3 * 16, 3 * 2 * 14 * 14)
    video = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert (batch["input_ids"] == video).sum(1).tolist() == [8, 12]  # t*h*w / merge**2 per video
    # 4 (resp. 6) of 30 frames at 5 fps: 2 / (S / 30 * 5) seconds per temporal patch
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([3.0, 2.0])
    manifests = [read_manifest(train_world["root"] / f) for f in _folders(train_world)]
    assert [w.shape for w in batch["w2c_opencv"]] == [(4, 4, 4), (6, 4, 4)]
    for k, doc in enumerate(manifests):
        assert batch["w2c_opencv"][k].dtype == torch.float32
        assert torch.allclose(batch["w2c_opencv"][k], torch.tensor([s["w2c_opencv"] for s in doc["selected"]]))
        assert batch["frame_ids"][k].tolist() == [s["frame_id"] for s in doc["selected"]]
        assert torch.allclose(batch["K_pixels"][k], torch.tensor([s["K_pixels"] for s in doc["selected"]]))
    assert [v.shape for v in batch["video_tchw"]] == [(4, 3, 56, 56), (6, 3, 56, 56)]
    assert batch["sample_ids"] == ["mix/0", "mix/1"]
    assert "position_ids" not in batch


def test_batch_equals_the_processors_batch(mixed, train_world, processor):
    samples, texts = mixed
    batch = SFTCollator(processor.tokenizer.pad_token_id)(samples)
    videos, metas, prompts = [], [], []
    for folder, (q, a) in zip(_folders(train_world), texts):
        spec = load_video(train_world["root"] / folder, CONFIG.frames)
        videos.append(resize_frames(spec.frames, (56, 56)))
        meta = video_metadata(spec.frame_ids, spec.source_fps, spec.total_frames, "source")
        metas.append({k: v for k, v in meta.items() if k != "mode"})
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": q.removeprefix("<video>")}]},
                    {"role": "assistant", "content": a}]
        prompts.append(processor.apply_chat_template(messages, tokenize=False))
    ref = processor(text=prompts, videos=videos, video_metadata=metas, do_resize=False, do_sample_frames=False,
                    cap_pixels_per_frame=False, padding=True, padding_side="right", return_tensors="pt")
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw"):
        assert torch.equal(batch[key], ref[key]), key
    assert batch["second_per_grid_ts"].tolist() == pytest.approx(torch.as_tensor(ref["second_per_grid_ts"]).tolist())
    assert set(batch) == {"input_ids", "attention_mask", "labels", "mm_token_type_ids", "pixel_values_videos",
                          "video_grid_thw", "second_per_grid_ts"}  # a stock model's keyword arguments only


def test_pose_input_modes_and_refusals(mixed, processor):
    samples, _ = mixed
    pad = processor.tokenizer.pad_token_id
    ids_only = SFTCollator(pad, pose_inputs="frame_ids")(samples)
    assert [f.shape for f in ids_only["frame_ids"]] == [(4,), (6,)] and "w2c_opencv" not in ids_only
    no_cams = [{**samples[0], "w2c_opencv": [None]}, samples[1]]
    with pytest.raises(ConfigError, match=r"samples \['mix/0'\] have no cameras"):
        SFTCollator(pad, pose_inputs="cameras")(no_cams)
    no_k = [{**s, "K_pixels": [None]} for s in samples]
    assert "K_pixels" not in SFTCollator(pad, pose_inputs="cameras")(no_k)  # intrinsics only when every video has them
    with pytest.raises(ConfigError, match="with_video_tchw"):
        SFTCollator(pad, with_video_tchw=True)([{k: v for k, v in s.items() if k != "video_tchw"} for s in samples])
    assert SFTCollator(pad, pad_to_multiple_of=64)(samples)["input_ids"].shape[1] % 64 == 0
    with pytest.raises(ConfigError, match="pose_inputs"):
        SFTCollator(pad, pose_inputs="poses")
