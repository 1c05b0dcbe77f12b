"""Frames of a training video: mp4 (the eval's round_full uniform rule), plain frame folders, sampling-manifest
folders (cameras travel), images; decoding is the eval's / the scenes' code."""

import numpy as np
import pytest
from PIL import Image

from posevlm.eval.errors import DecodeError, FrameCountMismatchError, MissingInputError
from posevlm.eval.frames import FolderManifest, Mp4Uniform, mp4_uniform, uniform_frame_ids
from posevlm.sampling import read_manifest
from posevlm.train import FrameConfig, ImageFolderUniform, load_image, load_video, video_request


def _scene(world, name="synth_100000"):
    return world["root"] / "synthetic_train_posed" / "scenes" / "synthetic_train" / name


def test_mp4_frames_are_the_evals_round_full_uniform_frames(train_world):
    path = _scene(train_world) / "rgb.mp4"
    request = video_request(path, FrameConfig(num_frames=5))
    assert request == Mp4Uniform(str(path), 5, "round_full")
    spec = load_video(path, FrameConfig(num_frames=5))
    assert spec.frame_ids.tolist() == uniform_frame_ids(30, 4, "round_full").tolist() == [0, 10, 19, 29]
    assert np.array_equal(spec.frames, mp4_uniform(path, 5).frames)
    assert spec.w2c_opencv is None and spec.source_fps == 5.0


def test_manifest_folder_carries_the_selection_and_its_cameras(train_world):
    folder = train_world["root"] / "sampled6" / train_world["six_slug"] / "synthetic_train" / "synth_100001"
    assert isinstance(video_request(folder, FrameConfig(num_frames=6)), FolderManifest)
    spec = load_video(folder, FrameConfig(num_frames=6))
    doc = read_manifest(folder)
    assert spec.frame_ids.tolist() == [s["frame_id"] for s in doc["selected"]]
    assert np.allclose(spec.w2c_opencv, [s["w2c_opencv"] for s in doc["selected"]])
    assert spec.K_pixels.shape == (6, 3, 3) and spec.image_hw.tolist() == [[48, 64]] * 6
    with pytest.raises(FrameCountMismatchError, match="expected 4"):
        load_video(folder, FrameConfig(num_frames=4))
    assert load_video(folder, FrameConfig(num_frames=8, manifest_policy="allow_fewer")).n_frames == 6


def test_plain_frame_folder_is_sorted_numerically_and_sampled_uniformly(tmp_path):
    ids = [3, 9, 10, 27, 100, 101, 250]  # lexicographic order would put 10 and 100 before 3 and 9
    for i in ids:
        Image.fromarray(np.full((8, 10, 3), i, np.uint8)).save(tmp_path / f"frame_{i}.png")
    spec = load_video(tmp_path, FrameConfig(num_frames=4))
    assert isinstance(video_request(tmp_path, FrameConfig(num_frames=4)), ImageFolderUniform)
    positions = uniform_frame_ids(len(ids), 4, "round_full")
    assert spec.frame_ids.tolist() == [ids[p] for p in positions]
    assert spec.frames[:, 0, 0, 0].tolist() == [ids[p] for p in positions]  # the pixels of those files
    assert spec.source_fps is None and spec.w2c_opencv is None
    with pytest.raises(FrameCountMismatchError):
        load_video(tmp_path, FrameConfig(num_frames=8))
    (tmp_path / "frame_5.png").write_bytes(b"not a png")
    with pytest.raises(DecodeError):
        load_video(tmp_path, FrameConfig(num_frames=8))


def test_missing_and_unreadable_media(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        load_video(tmp_path / "nope.mp4", FrameConfig())
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MissingInputError, match="is not a video file"):
        load_video(tmp_path / "notes.txt", FrameConfig())
    with pytest.raises(MissingInputError, match="numbered images"):
        load_video(tmp_path, FrameConfig())  # a folder without images
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(DecodeError):
        load_video(tmp_path / "broken.mp4", FrameConfig())
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").shape == (5, 6, 3)
    with pytest.raises(MissingInputError):
        load_image(tmp_path / "b.png")
