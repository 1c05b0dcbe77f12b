"""SFTDataset samples: parity with the checkpoint's processor (ids, pixels, grids, seconds per grid step), Qwen3-VL
samples equal to its processor (per-patch timestamps from the video metadata: manifest, mp4, frame folder without
fps) and to the prompt the hf eval backend feeds the model, images, and the bad-sample rule (logged, counted per
kind, named, skipped deterministically, or raised)."""

import json
import os

import pytest
import torch
from torch.utils.data import DataLoader

from posevlm.errors import ConfigError, PosevlmError
from posevlm.eval.backends._qwen_video import resize_frames, video_metadata
from posevlm.eval.errors import FrameCountMismatchError, MissingInputError
from posevlm.qwen_vision import video_resize_hw
from posevlm.train import IGNORE_INDEX, BadSampleLog, DataConfig, DataItem, SFTDataset, build_sample, read_records
from posevlm.train.media import load_video
from posevlm.train.errors import RecordError
from posevlm.train.records import parse_record
from posevlm.train.tokenize import ChatFormat
from train_world import PIXELS, write_jsonl


def _manifest(world, slug_key, scene):
    return f"sampled6/{world['six_slug']}/synthetic_train/{scene}" if slug_key == "six" else \
        f"synthetic_train_posed/sampled/{world['four_slug']}/synthetic_train/{scene}"


def _record(video, answer="1", rid="r", **extra):
    convs = [{"from": "human", "value": "<video>How many chairs?"}, {"from": "gpt", "value": answer}]
    return {"id": rid, "video": video, "conversations": convs, **extra}


def _item(world, raw):
    return DataItem(parse_record(raw), str(world["root"]), "t")


@pytest.mark.parametrize("metadata", ["source", "qwen_vl_utils_list"])
def test_sample_equals_the_processor_on_the_chat_template(train_world, processor, metadata):
    config = DataConfig(num_frames=6, frame_metadata=metadata, **PIXELS)
    video = _manifest(train_world, "six", "synth_100001")
    sample = build_sample(_item(train_world, _record(video, "B")), processor, config, chat=ChatFormat())
    spec = load_video(train_world["root"] / video, config.frames)
    hw = video_resize_hw(48, 64, 6, patch_size=14, **PIXELS)
    meta = video_metadata(spec.frame_ids, spec.source_fps, spec.total_frames, metadata)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many chairs?"}]},
                {"role": "assistant", "content": "B"}]
    ref = processor(text=[processor.apply_chat_template(messages, tokenize=False)],
                    videos=[resize_frames(spec.frames, hw)], video_metadata=[{k: v for k, v in meta.items() if
                                                                              k != "mode"}],
                    do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False, return_tensors="pt")
    assert torch.equal(sample["input_ids"], ref["input_ids"][0])
    assert torch.equal(sample["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    assert torch.equal(sample["pixel_values_videos"], ref["pixel_values_videos"])
    assert torch.equal(sample["video_grid_thw"], ref["video_grid_thw"]) and sample["video_grid_thw"].tolist() == [
        [3, 4, 4]]
    assert sample["second_per_grid_ts"].tolist() == pytest.approx(torch.as_tensor(ref["second_per_grid_ts"]).tolist())
    # 6 of 30 frames at 5 fps: sampled fps 1, so 2 s per temporal patch; the qwen-vl-utils list form fakes 2 fps
    assert sample["second_per_grid_ts"].tolist() == [2.0 if metadata == "source" else 1.0]
    assert "position_ids" not in sample


def _qwen3_video(world, tmp_path, source):
    """(record video path, frame settings) of a video source: a 6-frame manifest (fps known), 5 frames of an mp4
    (odd: the last temporal patch repeats a frame), 4 of a plain frame folder (fps unknown)."""
    if source == "manifest":
        return _manifest(world, "six", "synth_100001"), {"num_frames": 6}
    if source == "mp4":
        return "synthetic_train_posed/scenes/synthetic_train/synth_100000/rgb.mp4", {"num_frames": 5,
                                                                                       "frame_rule": "floor_full"}
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    for frame_id in (0, 4, 9, 13, 18, 22, 27):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / f"frame_{frame_id}.png")
    return str(tmp_path), {"num_frames": 4}


QWEN3_TURNS = [{"from": "human", "value": "<video>How many chairs?"}, {"from": "gpt", "value": "B"},
               {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes, 3."}]
QWEN3_MESSAGES = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many chairs?"}]},
                  {"role": "assistant", "content": "B"}, {"role": "user", "content": "Sure?"},
                  {"role": "assistant", "content": "Yes, 3."}]


@pytest.mark.parametrize("source,metadata", [("manifest", "source"), ("manifest", "qwen_vl_utils_list"),
                                             ("mp4", "source"), ("folder", "source")])
def test_qwen3_sample_equals_the_processor_on_the_chat_template(train_world, processor3, tmp_path, source, metadata):
    """Live parity with the Qwen3-VL processor + chat template given the same frames and video metadata: ids (the
    ``<t seconds>`` blocks nested in the template's markers), token types, pixels, grid; no second_per_grid_ts;
    labels on the two answers only. The metadata falls back to qwen-vl-utils' list form where the fps is unknown."""
    video, frames = _qwen3_video(train_world, tmp_path, source)
    config = DataConfig(frame_metadata=metadata, **frames, **PIXELS)
    item = DataItem(parse_record({"id": "r", "video": video, "conversations": QWEN3_TURNS}), str(train_world["root"]),
                    "t")
    sample = build_sample(item, processor3, config, chat=ChatFormat.for_family("qwen3_vl"))
    spec = load_video(train_world["root"] / video, config.frames)
    hw = video_resize_hw(*spec.frames.shape[1:3], spec.n_frames, patch_size=16, **PIXELS)
    meta = video_metadata(spec.frame_ids, spec.source_fps, spec.total_frames, metadata)
    ref = processor3(text=[processor3.apply_chat_template(QWEN3_MESSAGES, tokenize=False)],
                     videos=[resize_frames(spec.frames, hw)], video_metadata=[{k: v for k, v in meta.items()
                                                                              if k != "mode"}],
                     do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False, return_tensors="pt")
    assert torch.equal(sample["input_ids"], ref["input_ids"][0])
    assert torch.equal(sample["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    assert torch.equal(sample["pixel_values_videos"], ref["pixel_values_videos"])
    assert torch.equal(sample["video_grid_thw"], ref["video_grid_thw"])
    assert "second_per_grid_ts" not in sample and "second_per_grid_ts" not in ref
    assert sample["video_metadata"] == [meta]
    assert meta["mode"] == ("source" if source != "folder" and metadata == "source" else "qwen_vl_utils_list")
    grid_t = int(sample["video_grid_thw"][0, 0])
    assert grid_t == (spec.n_frames + 1) // 2 and (source != "mp4" or (spec.n_frames, grid_t) == (5, 3))
    text = processor3.tokenizer.decode(sample["input_ids"])
    assert text.count(" seconds><|vision_start|>") == grid_t
    assert text.count("<|vision_start|>") == text.count("<|vision_end|>") == grid_t + 1  # nested in the template's
    trained = sample["labels"] != IGNORE_INDEX
    assert processor3.tokenizer.decode(sample["input_ids"][trained]) == "B<|im_end|>Yes, 3.<|im_end|>"


def test_qwen3_training_prompt_is_what_the_hf_eval_backend_feeds(train_world, tiny_qwen3, processor3):
    """The masked prefix of a training sample (everything before the answer) equals, token for token, the input
    ids the hf eval backend builds for the same frames and question (same checkpoint, pixel budget, metadata)."""
    from posevlm.eval.backends.hf import HFBackend, HFBackendConfig

    video = _manifest(train_world, "six", "synth_100001")
    config = DataConfig(num_frames=6, **PIXELS)
    item = DataItem(parse_record(_record(video, "B")), str(train_world["root"]), "t")
    sample = build_sample(item, processor3, config, chat=ChatFormat.for_family("qwen3_vl"))
    backend = HFBackend(HFBackendConfig(model=str(tiny_qwen3), **PIXELS))
    inputs, per = backend._prepare([("How many chairs?", load_video(train_world["root"] / video, config.frames))])
    first_label = int((sample["labels"] != IGNORE_INDEX).nonzero()[0])
    assert torch.equal(sample["input_ids"][:first_label], inputs["input_ids"][0])
    assert torch.equal(sample["mm_token_type_ids"][:first_label], inputs["mm_token_type_ids"][0])
    assert torch.equal(sample["pixel_values_videos"], inputs["pixel_values_videos"])
    assert sample["video_metadata"] == [per[0]["video_metadata"]]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_extra_video_tokens_equal_the_spatial_mllm_prompt_expansion(train_world, processor, processor3, family):
    """With a connector's extra tokens (``sequence_cat``: 1 per merged token) the sample equals the processor's
    output expanded by ``expand_video_pads``, the text the hf eval backend feeds a Spatial-MLLM."""
    from posevlm.models.spatial_mllm.processing import expand_video_pads

    proc = processor if family == "qwen2_5_vl" else processor3
    video = _manifest(train_world, "six", "synth_100001")
    config = DataConfig(num_frames=6, **PIXELS)
    item = DataItem(parse_record({"id": "r", "video": video, "conversations": QWEN3_TURNS}), str(train_world["root"]),
                    "t")
    sample = build_sample(item, proc, config, chat=ChatFormat.for_family(family, extra_video_tokens=1))
    spec = load_video(train_world["root"] / video, config.frames)
    hw = video_resize_hw(48, 64, 6, patch_size=int(proc.video_processor.patch_size), **PIXELS)
    meta = video_metadata(spec.frame_ids, spec.source_fps, spec.total_frames, "source")
    ref = proc(text=[proc.apply_chat_template(QWEN3_MESSAGES, tokenize=False)], videos=[resize_frames(spec.frames, hw)],
               video_metadata=[{k: v for k, v in meta.items() if k != "mode"}], do_resize=False, do_sample_frames=False,
               cap_pixels_per_frame=False, return_tensors="pt")
    video_id = proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    expanded = expand_video_pads(dict(ref), video_token_id=video_id, spatial_merge_size=2, extra_per_token=1,
                                 pad_token_id=proc.tokenizer.pad_token_id)
    assert torch.equal(sample["input_ids"], expanded["input_ids"][0])
    assert torch.equal(sample["mm_token_type_ids"], expanded["mm_token_type_ids"][0])
    assert int((sample["input_ids"] == video_id).sum()) == 2 * int(sample["video_grid_thw"].prod()) // 4
    trained = sample["labels"] != IGNORE_INDEX
    assert proc.tokenizer.decode(sample["input_ids"][trained]) == "B<|im_end|>Yes, 3.<|im_end|>"


def test_video_tchw_and_cameras_are_the_resized_frames_and_the_manifest_cameras(train_world, processor):
    config = DataConfig(num_frames=6, with_video_tchw=True, **PIXELS)
    video = _manifest(train_world, "six", "synth_100000")
    sample = build_sample(_item(train_world, _record(video)), processor, config, chat=ChatFormat())
    spec = load_video(train_world["root"] / video, config.frames)
    (tchw,) = sample["video_tchw"]
    assert tchw.shape == (6, 3, 56, 56) and tchw.dtype == torch.float32 and 0 <= tchw.min() and tchw.max() <= 1
    assert torch.equal(tchw, resize_frames(spec.frames, (56, 56)).float() / 255)
    assert torch.equal(sample["w2c_opencv"][0], torch.as_tensor(spec.w2c_opencv))
    assert sample["frame_ids"][0].tolist() == spec.frame_ids.tolist()
    assert sample["K_pixels"][0].shape == (6, 3, 3) and sample["image_hw"][0].tolist() == [[48, 64]] * 6


def test_record_frame_ids_show_those_views_in_that_order(train_world, processor):
    """A record with ``frame_ids`` (a shuffled pose question) sees exactly those views in that order, pixels and
    cameras following their frames: the same views permuted give the permuted frames, not the manifest's order."""
    config = DataConfig(num_frames=6, with_video_tchw=True, **PIXELS)
    video = _manifest(train_world, "six", "synth_100000")
    spec = load_video(train_world["root"] / video, config.frames)
    rows = [4, 1, 5, 0, 3, 2]
    order = spec.frame_ids[rows].tolist()
    plain = build_sample(_item(train_world, _record(video)), processor, config, chat=ChatFormat())
    shown = build_sample(_item(train_world, _record(video, frame_ids=order)), processor, config, chat=ChatFormat())
    assert shown["frame_ids"][0].tolist() == order
    assert torch.equal(shown["w2c_opencv"][0], plain["w2c_opencv"][0][rows])
    assert torch.equal(shown["video_tchw"][0], plain["video_tchw"][0][rows])
    assert torch.equal(shown["input_ids"], plain["input_ids"])  # the same prompt, other pixels
    assert not torch.equal(shown["pixel_values_videos"], plain["pixel_values_videos"])
    with pytest.raises(FrameCountMismatchError, match="not among"):
        build_sample(_item(train_world, _record(video, frame_ids=[order[0], 10_000])), processor, config,
                     chat=ChatFormat())
    with pytest.raises(RecordError, match="frame_ids"):
        parse_record(_record(video, frame_ids=[1, 1]))


def test_image_records_go_through_the_image_processor(train_world, processor, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)]
    for k, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{k}.png")
    raw = {"image": ["0.png", "1.png"], "conversations": [{"from": "human", "value": "<image><image>Which?"},
                                                         {"from": "gpt", "value": "A"}]}
    sample = build_sample(DataItem(parse_record(raw), str(tmp_path), "img"), processor, DataConfig(),
                          chat=ChatFormat())
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which?"}]},
                {"role": "assistant", "content": "A"}]
    ref = processor(text=[processor.apply_chat_template(messages, tokenize=False)], images=arrays, return_tensors="pt")
    for key in ("input_ids", "mm_token_type_ids"):
        assert torch.equal(sample[key], ref[key][0])
    assert torch.equal(sample["pixel_values"], ref["pixel_values"])
    assert torch.equal(sample["image_grid_thw"], ref["image_grid_thw"])
    assert sample["frame_ids"] == [] and "video_grid_thw" not in sample


@pytest.fixture
def bad_world(train_world, tmp_path):
    root = train_world["root"]
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 128)
    good = _manifest(train_world, "four", "synth_100000")
    records = [
        _record(good, rid="good0"),
        _record("nowhere/missing.mp4", rid="missing"),
        {"id": "mute", "video": good, "conversations": [{"from": "human", "value": "<video>Q"}]},
        _record(good, rid="good3"),
        _record(str(tmp_path / "broken.mp4"), rid="broken"),
        _record(good, "x" * 3000, rid="long"),
        _record("synthetic_train_posed/scenes/synthetic_train/synth_100000/rgb.mp4", rid="nocams"),
    ]
    items = [DataItem(r, str(root), "bad") for r in read_records(write_jsonl(tmp_path / "bad.jsonl", records))]
    config = DataConfig(num_frames=4, model_max_length=1000, require_cameras=True, **PIXELS)
    return items, config, tmp_path


EXPECTED = {"decode_error": 1, "missing_cameras": 1, "missing_input": 1, "no_assistant_turn": 1, "too_long": 1}


def test_bad_samples_are_skipped_to_the_next_index_counted_and_named(bad_world, processor):
    items, config, tmp = bad_world
    log = BadSampleLog(tmp / "run" / "bad_samples.jsonl")
    ds = SFTDataset(items, processor, config, bad_samples=log)
    assert ds[0]["sample_id"] == "bad/good0"
    assert (ds[1]["index"], ds[1]["sample_id"]) == (3, "bad/good3")  # 1 missing, 2 no assistant turn -> 3
    assert ds[4]["index"] == 0  # 4 broken, 5 too long, 6 no cameras -> wraps to 0
    assert log.counts == EXPECTED
    assert log.sample_ids == ["bad/missing", "bad/mute", "bad/broken", "bad/long", "bad/nocams"]
    ds[1], ds[5]  # known bad samples are not rebuilt nor logged twice
    assert len(log.entries) == 5
    on_disk = BadSampleLog.read(tmp / "run" / "bad_samples.jsonl")
    assert on_disk.counts == EXPECTED and on_disk.summary()["by_kind"]["too_long"] == ["bad/long"]
    line = json.loads((tmp / "run" / "bad_samples.jsonl").read_text().splitlines()[0])
    assert line["sample_id"] == "bad/missing" and line["index"] == 1 and "missing.mp4" in line["message"]


def test_on_error_raise_raises_the_typed_error_with_the_sample_id(bad_world, processor):
    items, config, _ = bad_world
    ds = SFTDataset(items, processor, DataConfig(**{**config.to_dict(), "on_error": "raise"}))
    with pytest.raises(MissingInputError) as info:
        ds[1]
    assert info.value.sample_id == "bad/missing" and len(ds.bad_samples) == 0


def test_too_many_bad_samples_in_a_row_stop(bad_world, processor):
    items, config, _ = bad_world
    ds = SFTDataset(items[1:3] + items[4:], processor, DataConfig(**{**config.to_dict(), "max_skips": 10}))
    with pytest.raises(PosevlmError, match="no usable training sample"):
        ds[0]
    with pytest.raises(ConfigError, match="no training samples"):
        SFTDataset([], processor, config)


def test_workers_share_the_bad_sample_file(bad_world, processor):
    items, config, tmp = bad_world
    path = tmp / "shared.jsonl"
    ds = SFTDataset(items, processor, config, bad_samples=BadSampleLog(path))
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=lambda b: b[0]["index"])
    served = list(loader)
    assert served == [0, 3, 3, 3, 0, 0, 0]  # every index served, bad ones by their deterministic substitute
    log = BadSampleLog.read(path)
    assert log.counts == EXPECTED and len(ds.bad_samples) == 0  # the main process built nothing
    assert os.getpid() not in {e["pid"] for e in log.entries}  # written by the workers
