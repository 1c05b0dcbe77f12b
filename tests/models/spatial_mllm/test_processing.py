"""Spatial-MLLM inputs: pixel_values_videos and video_tchw from the same resized frames (models spec §1.2 / §1.3),
the training pixel budget, and frames from memory, an mp4, a frame folder and a sampling manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.frames_io import read_frames  # noqa: E402
from posevlm.models.qwen_video import load_processor  # noqa: E402
from posevlm.models.spatial_mllm import TRAINING_PIXELS, prepare_inputs, spatial_resize_hw  # noqa: E402

from spatial_mllm_tiny import tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_processors")
    q25 = tiny_models.save_tiny_qwen2_5_vl(root / "qwen2_5")
    q3 = tiny_models.save_tiny_qwen3_vl(root / "qwen3")
    return {"qwen2_5": load_processor(str(q25), transformers.Qwen2_5_VLProcessor, {"local_files_only": True})[0],
            "qwen3": load_processor(str(q3), transformers.Qwen3VLProcessor, {"local_files_only": True})[0]}


def video(n: int = 16, h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """Smooth random frames (bicubic resizing of white noise would clamp a lot)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, h // 40, w // 40, generator=g)
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (big * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def unpatchify(pixel_values: torch.Tensor, grid_thw, patch: int, temporal: int = 2, merge: int = 2) -> torch.Tensor:
    """pixel_values_videos rows [T, mh, mw, 2, 2 | C, tp, p, p] (spec §1.2 item 4) -> (T * tp, C, H, W)."""
    t, gh, gw = (int(v) for v in grid_thw)
    x = pixel_values.view(t, gh // merge, gw // merge, merge, merge, 3, temporal, patch, patch)
    x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8)  # [T, tp, C, mh, 2, p, mw, 2, p]
    return x.reshape(t * temporal, 3, gh * patch, gw * patch)


def test_training_budget_resizes_640x480_to_644x476():
    assert spatial_resize_hw(480, 640, 16, patch_size=14) == (476, 644)
    assert spatial_resize_hw(480, 640, 16, patch_size=16) == (480, 640)
    assert TRAINING_PIXELS == {"min_pixels": 28 * 28 * 374, "max_pixels": 28 * 28 * 414}
    h, w = spatial_resize_hw(1080, 1920, 16, patch_size=14)  # a larger frame is brought into the budget
    assert h % 28 == w % 28 == 0 and 293216 <= h * w <= 324576


def test_worked_example_16_frames_and_both_streams_from_the_same_frames(processors):
    """16 frames of 640x480 -> video_tchw (16, 3, 476, 644), grid (8, 34, 46), 12,512 tubelet rows of 1,176 and
    3,128 video pads (spec §1.3); video_tchw normalised with the processor's mean / std is exactly the
    un-flattened pixel_values_videos."""
    proc = processors["qwen2_5"]
    out = prepare_inputs(proc, video(), "How many chairs?")
    tchw = out["video_tchw"][0]
    assert out["resized_hw"] == (476, 644) and tchw.shape == (16, 3, 476, 644) and tchw.dtype == torch.uint8
    assert out["video_grid_thw"].tolist() == [[8, 34, 46]]
    assert tuple(out["pixel_values_videos"].shape) == (12512, 1176)
    assert int((out["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum()) == 3128
    vp = proc.video_processor
    mean = torch.tensor(vp.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(vp.image_std).view(1, 3, 1, 1)
    normalised = (tchw.double() / 255 - mean.double()) / std.double()
    patches = unpatchify(out["pixel_values_videos"].double(), out["video_grid_thw"][0], 14)
    torch.testing.assert_close(patches, normalised, atol=1e-5, rtol=0)
    assert float(out["second_per_grid_ts"][0]) == 1.0  # frames without fps: qwen-vl-utils' list form (fps 2)


def test_qwen3_grid_and_odd_frame_count(processors):
    """Qwen3-VL's 32-px grid keeps 640x480; an odd count is padded by the processor (last frame repeated) while
    video_tchw keeps the frames given (the model pads it the same way)."""
    proc = processors["qwen3"]
    out = prepare_inputs(proc, video(5, seed=1), "Size?", frame_ids=[0, 10, 20, 30, 40], source_fps=10.0,
                         total_frames=50)
    assert out["resized_hw"] == (480, 640) and out["video_tchw"][0].shape == (5, 3, 480, 640)
    assert out["video_grid_thw"].tolist() == [[3, 30, 40]]
    patches = unpatchify(out["pixel_values_videos"].double(), out["video_grid_thw"][0], 16)
    tchw = out["video_tchw"][0]
    padded = torch.cat([tchw, tchw[-1:]]).double() / 255
    torch.testing.assert_close(patches, (padded - 0.5) / 0.5, atol=1e-5, rtol=0)
    text = proc.tokenizer.decode(out["input_ids"][0])
    # one timestamp per tubelet, the mean of its two frames' ids / fps (the last pair is frame 40 twice)
    assert [f"<{t} seconds>" in text for t in (0.5, 2.5, 4.0)] == [True] * 3


def test_frames_from_memory_files_folders_and_manifests_are_the_same_frames(tmp_path):
    from PIL import Image

    from posevlm.scenes.video import write_video

    frames = video(6, 48, 64, seed=2)
    as_list = read_frames([Image.fromarray(f) for f in frames])
    assert np.array_equal(as_list.frames, frames) and as_list.frame_ids.tolist() == list(range(6))
    assert np.array_equal(read_frames(frames).frames, frames)
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
    assert np.array_equal(read_frames(tensor).frames, frames)
    assert np.array_equal(read_frames(tensor.float() / 255).frames, frames)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, f in zip((30, 4, 100, 7, 55, 12), frames):  # numeric order, not name order
        Image.fromarray(f).save(folder / f"frame_{i}.png")
    read = read_frames(folder)
    assert read.frame_ids.tolist() == [4, 7, 12, 30, 55, 100]
    assert np.array_equal(read.frames, frames[[1, 3, 5, 0, 4, 2]])
    manifest = tmp_path / "scene"
    manifest.mkdir()
    ids = [3, 9, 15]
    for i, f in zip(ids, frames):
        Image.fromarray(f).save(manifest / f"scene_frame_{i:06d}.png")
    (manifest / "selected_frames.json").write_text(json.dumps({
        "scene_name": "scene", "selected_frames": ids, "num_frames": 3}))
    for source in (manifest, manifest / "selected_frames.json"):
        got = read_frames(source)
        assert got.frame_ids.tolist() == ids and np.array_equal(got.frames, frames[:3])
    mp4 = tmp_path / "clip.mp4"
    write_video(mp4, list(video(20, 48, 64, seed=3)), fps=10.0)
    clip = read_frames(mp4, num_frames=4)
    assert clip.frames.shape == (4, 48, 64, 3) and clip.frame_ids.tolist() == [0, 6, 13, 19]
    assert clip.source_fps == 10.0 and clip.total_frames == 20
    from posevlm.errors import InputFileError, ShapeError

    with pytest.raises(InputFileError, match="does not exist"):
        read_frames(tmp_path / "nowhere.mp4")
    with pytest.raises(ShapeError, match="one size"):
        read_frames([frames[0], frames[0][:10]])


def test_a_processor_saved_without_torchvision_names_the_stock_classes_and_reloads_the_same(processors, tmp_path):
    """The torch-only stand-in saves as the checkpoint's own processor (stock class names, the same video config),
    so transformers' classes can load it; reloaded, it makes the same pixel values."""
    for family, proc in processors.items():
        proc.save_pretrained(tmp_path / family)
        saved = json.loads((tmp_path / family / "processor_config.json").read_text())
        cls = {"qwen2_5": "Qwen2_5_VLProcessor", "qwen3": "Qwen3VLProcessor"}[family]
        assert saved["processor_class"] == cls
        assert saved["video_processor"]["video_processor_type"] == \
            {"qwen2_5": "Qwen2VLVideoProcessor", "qwen3": "Qwen3VLVideoProcessor"}[family]
        assert json.loads((tmp_path / family / "tokenizer_config.json").read_text())["processor_class"] == cls
        again = load_processor(str(tmp_path / family), getattr(transformers, cls), {"local_files_only": True})[0]
        a = prepare_inputs(proc, video(2, 96, 128), "Q?", min_pixels=None, max_pixels=None)
        b = prepare_inputs(again, video(2, 96, 128), "Q?", min_pixels=None, max_pixels=None)
        assert torch.equal(a["pixel_values_videos"], b["pixel_values_videos"])
        assert torch.equal(a["input_ids"], b["input_ids"])
