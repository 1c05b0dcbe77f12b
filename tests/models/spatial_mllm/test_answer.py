"""``posevlm.models.spatial_mllm.answer`` on tiny checkpoints saved to disk (CPU, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError, ShapeError  # noqa: E402
from posevlm.models.spatial_mllm import SpatialMLLM, answer, from_pretrained, prepare_inputs  # noqa: E402

from spatial_mllm_tiny import save_tiny_spatial_mllm  # noqa: E402

SMALL = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 12}  # 48x64 frames -> 56x56: grids (T, 4, 4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield save_tiny_spatial_mllm(tmp_path_factory.mktemp("answer") / "spatial")


def frames(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 64, 3), dtype=np.uint8)


def test_answer_from_a_checkpoint_directory_equals_the_explicit_steps(checkpoint):
    """answer(dir, frames, question) = load, prepare_inputs, generate, decode, written out by hand."""
    text = answer(checkpoint, list(frames()), "How many chairs?", max_new_tokens=5, local_files_only=True, **SMALL)
    assert isinstance(text, str)
    model = from_pretrained(checkpoint, device="cpu", local_files_only=True)
    assert model.processor is not None and model.processor_source == str(checkpoint)
    inputs = prepare_inputs(model.processor, frames(), "How many chairs?", **SMALL)
    assert inputs["resized_hw"] == (56, 56) and inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    tchw = inputs.pop("video_tchw")
    inputs.pop("resized_hw")
    out = model.generate(**inputs, video_tchw=tchw, max_new_tokens=5, do_sample=False)
    expected = model.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert text == expected
    assert answer(model, torch.from_numpy(frames()).permute(0, 3, 1, 2), "How many chairs?", max_new_tokens=5,
                  **SMALL) == text  # a loaded model, frames as a tensor


def test_answer_reads_an_mp4_and_passes_cameras(checkpoint, tmp_path):
    from posevlm.scenes.video import write_video

    model = from_pretrained(checkpoint, device="cpu", local_files_only=True, positions="pthw",
                            pose_source="manifest")
    clip = tmp_path / "clip.mp4"
    write_video(clip, list(frames(12, seed=3)), fps=6.0)
    with pytest.raises(ShapeError, match="frames carry none"):
        answer(model, clip, "Size?", num_frames=4, max_new_tokens=3, **SMALL)
    w2c = torch.eye(4).repeat(4, 1, 1)
    w2c[:, 0, 3] = torch.arange(4.0)
    moved = answer(model, clip, "Size?", num_frames=4, max_new_tokens=3, w2c_opencv=w2c, **SMALL)
    assert isinstance(moved, str)
    with pytest.raises(ConfigError, match="no processor"):
        model.processor = None
        answer(model, clip, "Size?", num_frames=4, w2c_opencv=w2c)


def test_sequence_cat_checkpoint_answers_with_the_expanded_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = save_tiny_spatial_mllm(tmp_path / "seq", connector="sequence_cat")
    model = from_pretrained(folder, device="cpu", local_files_only=True)
    assert isinstance(model, SpatialMLLM) and model.extra_tokens_per_visual_token == 1
    assert isinstance(answer(model, frames(), "Where is the sofa?", max_new_tokens=3, **SMALL), str)
