"""Frame sources: the uniform rules (eval.md §5.3 vector), mp4 decoding, manifest folders and their
count policies, preflight on every failure type, and the per-scene cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from posevlm.errors import ConfigError, ShapeError
from posevlm.eval.errors import DecodeError, FrameCountMismatchError, MissingInputError
from posevlm.eval.frames import (
    FolderManifest, FrameCache, FrameSpec, Mp4Fps, Mp4Uniform, folder_manifest, fps_nframes, mp4_fps,
    mp4_uniform, preflight, qwen_nframes, uniform_frame_ids,
)  # fmt: skip
from posevlm.sampling.manifest import frame_file_names
from posevlm.scenes import write_video

FPS, N_VIDEO = 10.0, 40


def level(frame_id: int) -> int:
    return (frame_id * 6) % 240 + 8


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """40 frames at 10 fps; frame i is a flat grey of ``level(i)`` so decoded frames identify themselves."""
    path = tmp_path_factory.mktemp("video") / "scene.mp4"
    write_video(path, (np.full((48, 64, 3), level(i), np.uint8) for i in range(N_VIDEO)), fps=FPS)
    return path


def decoded_ids(frames: np.ndarray) -> list[int]:
    levels = np.array([level(i) for i in range(N_VIDEO)])
    return [int(np.argmin(np.abs(levels - f.mean()))) for f in frames]


def make_folder(root, ids, *, scene="scene0000_00", legacy=False, cams=True, fps=FPS, total=N_VIDEO):
    """A frame folder as ``posevlm sample`` writes it (or a legacy one with only ``selected_frames``)."""
    root.mkdir(parents=True, exist_ok=True)
    names = frame_file_names(scene, ids)
    for fid, name in zip(ids, names):
        Image.fromarray(np.full((48, 64, 3), level(fid), np.uint8)).save(root / name)
    doc = {"scene_name": scene, "selected_frames": list(ids), "num_frames": len(ids), "sampling_type": "test"}
    if not legacy:
        doc.update(format="posevlm.sampling_manifest", schema_version=2,
                   video={"fps": fps, "n_frames": total})
        doc["selected"] = [
            {"position": p, "frame_id": fid, "file": name, "timestamp_s": fid / fps,
             "w2c_opencv": np.eye(4).tolist() if cams else None,
             "K_pixels": np.eye(3).tolist() if cams else None, "image_hw": [48, 64] if cams else None}
            for p, (fid, name) in enumerate(zip(ids, names))]
    (root / "selected_frames.json").write_text(json.dumps(doc))
    return root


# ------------------------------------------------------------------------------------- rules
def test_uniform_test_vector_of_eval_spec():
    assert uniform_frame_ids(1000, 8, "round_full").tolist() == [0, 143, 285, 428, 571, 714, 856, 999]
    assert uniform_frame_ids(1000, 8, "floor_pool128").tolist() == [0, 141, 283, 424, 566, 707, 849, 999]
    assert uniform_frame_ids(1000, 8, "floor_full").tolist() == [0, 142, 285, 428, 570, 713, 856, 999]


def test_round_full_equals_qwen_vl_utils_torch_round_half_to_even():
    # qwen-vl-utils: torch.linspace(0, total - 1, n).round().long(); 2.5 -> 2 (half to even), not 3
    assert uniform_frame_ids(6, 3, "round_full").tolist() == [0, 2, 5]
    for total in (7, 16, 33, 100, 257, 1000, 2345):
        for n in (2, 4, 6, 8, 16, 32):
            if n <= total:
                ref = torch.linspace(0, total - 1, n, dtype=torch.float32).round().long().tolist()
                assert uniform_frame_ids(total, n, "round_full").tolist() == ref, (total, n)


def test_qwen_frame_count_rounding_and_fps_mode():
    # round(n / 2) * 2 with Python's half-to-even round
    assert [qwen_nframes(n) for n in (1, 3, 5, 6, 7, 9, 16)] == [0, 4, 4, 6, 8, 8, 16]
    assert fps_nframes(300, 30.0, 2.0) == 20
    assert fps_nframes(30, 30.0, 2.0) == 4  # min_frames
    assert fps_nframes(3000, 30.0, 2.0, max_frames=63) == 62  # floored to even
    assert fps_nframes(5, 1.0, 2.0) == 4  # clamped to the length, then floored to even


def test_uniform_rules_reject_too_many_frames_and_unknown_rules():
    with pytest.raises(FrameCountMismatchError) as err:
        uniform_frame_ids(100, 129, "floor_pool128")
    assert (err.value.expected, err.value.found) == (129, 100)
    with pytest.raises(ConfigError, match="round_full"):
        uniform_frame_ids(100, 8, "round")


# ------------------------------------------------------------------------------- mp4 sources
def test_mp4_uniform_decodes_the_rule_frames(video):
    for rule in ("round_full", "floor_full", "floor_pool128"):
        spec = mp4_uniform(video, 8, rule)
        assert spec.frame_ids.tolist() == uniform_frame_ids(N_VIDEO, 8, rule).tolist()
        assert decoded_ids(spec.frames) == spec.frame_ids.tolist()
        assert spec.frames.shape == (8, 48, 64, 3) and spec.frames.dtype == np.uint8
        assert spec.source_fps == pytest.approx(FPS) and spec.total_frames == N_VIDEO
        np.testing.assert_allclose(spec.timestamps_s, spec.frame_ids / FPS)
        assert spec.provenance["rule_name"] == f"uniform_{rule}" and spec.provenance["path"] == str(video)
    assert mp4_uniform(video, 7).n_frames == 8  # round_full takes qwen-vl-utils' even count
    json.dumps(spec.to_dict())


def test_mp4_fps_follows_qwen_vl_utils(video):
    spec = mp4_fps(video, fps=2.0)  # 40 frames / 10 fps * 2 = 8
    assert spec.frame_ids.tolist() == np.round(np.linspace(0, 39, 8)).astype(int).tolist()
    assert decoded_ids(spec.frames) == spec.frame_ids.tolist()


def test_mp4_errors_are_typed(video, tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        mp4_uniform(tmp_path / "nope.mp4", 8)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DecodeError):
        mp4_uniform(broken, 8)
    with pytest.raises(FrameCountMismatchError, match="has 40 frames"):
        mp4_uniform(video, 64, "floor_full")


# ----------------------------------------------------------------------------- folder source
def test_folder_order_cameras_and_provenance(tmp_path):
    ids = [3, 9, 9, 20, 31, 35]  # a duplicated frame gets the _2 file
    folder = make_folder(tmp_path / "s", ids)
    spec = folder_manifest(folder, 6)
    assert spec.frame_ids.tolist() == ids and decoded_ids(spec.frames) == ids
    assert spec.w2c_opencv.shape == (6, 4, 4) and spec.K_pixels.shape == (6, 3, 3)
    assert spec.image_hw.tolist() == [[48, 64]] * 6
    assert spec.source_fps == FPS and spec.total_frames == N_VIDEO
    prov = spec.provenance
    assert prov["manifest_schema_version"] == 2 and len(prov["manifest_sha256"]) == 64
    assert prov["manifest_order_is_file_order"] and prov["source"] == "folder_manifest"


def test_folder_order_comes_from_the_manifest_not_the_file_sort(tmp_path):
    ids = [30, 4, 17, 8]  # an unsorted pose-aware selection
    folder = make_folder(tmp_path / "s", ids)
    spec = folder_manifest(folder, 4)
    assert spec.frame_ids.tolist() == ids and decoded_ids(spec.frames) == ids
    assert spec.provenance["manifest_order_is_file_order"] is False
    assert folder_manifest(folder, 4, order="temporal").frame_ids.tolist() == sorted(ids)


def test_legacy_manifest_with_duplicates(tmp_path):
    ids = [2, 5, 5, 11]
    spec = folder_manifest(make_folder(tmp_path / "s", ids, legacy=True), 4)
    assert spec.frame_ids.tolist() == ids and decoded_ids(spec.frames) == ids
    assert spec.w2c_opencv is None and spec.source_fps is None and spec.timestamps_s is None
    assert spec.provenance["manifest_schema_version"] == 1


def test_count_policies(tmp_path):
    folder = make_folder(tmp_path / "s", [1, 6, 12])  # early-stopped: 3 of 4 frames
    with pytest.raises(FrameCountMismatchError, match="expected 4") as err:
        folder_manifest(folder, 4)
    assert (err.value.expected, err.value.found) == (4, 3)
    padded = folder_manifest(folder, 4, "pad_repeat_last")
    assert padded.frame_ids.tolist() == [1, 6, 12, 12] and padded.n_padded == 1
    np.testing.assert_array_equal(padded.frames[3], padded.frames[2])
    assert padded.w2c_opencv.shape == (4, 4, 4)
    assert folder_manifest(folder, 4, "allow_fewer").n_frames == 3
    for policy in ("fail_sample", "pad_repeat_last", "allow_fewer"):  # more than expected never passes
        with pytest.raises(FrameCountMismatchError):
            folder_manifest(folder, 2, policy)


def test_png_count_must_equal_manifest_count(tmp_path):
    folder = make_folder(tmp_path / "s", [1, 6, 12, 20])
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "preview_frame_000099.png")
    with pytest.raises(FrameCountMismatchError, match="5 PNG files but its manifest lists 4"):
        folder_manifest(folder, 4)


def test_folder_written_by_the_sampler_loads_in_manifest_order(tmp_path):
    from posevlm.sampling import PairingConfig, SamplingConfig, read_manifest
    from posevlm.sampling.runner import run_sampling
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, 1, SynthConfig(seed=2, num_frames=30, image_hw=(48, 64)))
    config = SamplingConfig("pose_fps", 6, pairing=PairingConfig("neighbor", direction="random"))
    assert run_sampling(data, [config], tmp_path / "out").ok
    scene_dir = next((tmp_path / "out").glob("*/*/*/selected_frames.json")).parent
    doc = read_manifest(scene_dir)
    spec = folder_manifest(scene_dir, 6)
    assert spec.frame_ids.tolist() == [s["frame_id"] for s in doc["selected"]]
    np.testing.assert_allclose(spec.w2c_opencv, [s["w2c_opencv"] for s in doc["selected"]])
    first = np.asarray(Image.open(scene_dir / doc["selected"][0]["file"]).convert("RGB"))
    np.testing.assert_array_equal(spec.frames[0], first)


# --------------------------------------------------------------------------------- preflight
def test_preflight_catches_each_failure_without_decoding(video, tmp_path, monkeypatch):
    import posevlm.eval.frames as frames_mod
    from posevlm.scenes.video import VideoStore

    def no_decoding(*args, **kwargs):
        raise AssertionError("preflight decoded pixels")

    monkeypatch.setattr(VideoStore, "read_many", no_decoding)
    real_read = frames_mod._read_image
    monkeypatch.setattr(frames_mod, "_read_image", lambda p, header_only=False: real_read(p, header_only=True)
                        if header_only else no_decoding())

    good = make_folder(tmp_path / "good", [1, 5, 9, 13])
    fewer = make_folder(tmp_path / "fewer", [1, 5, 9])
    bad_json = make_folder(tmp_path / "bad_json", [1, 5, 9, 13])
    (bad_json / "selected_frames.json").write_text("{not json")
    missing_png = make_folder(tmp_path / "missing_png", [1, 5, 9, 13])
    next(missing_png.glob("*_000009.png")).unlink()
    bad_png = make_folder(tmp_path / "bad_png", [1, 5, 9, 13])
    next(bad_png.glob("*_000005.png")).write_bytes(b"broken")
    broken_mp4 = tmp_path / "broken.mp4"
    broken_mp4.write_bytes(b"\x00" * 2000)

    cases = {
        "ok_folder": (FolderManifest(good, 4), None, 4),
        "ok_pad": (FolderManifest(fewer, 4, "pad_repeat_last"), None, 4),
        "ok_mp4": (Mp4Uniform(video, 16), None, 16),
        "ok_fps": (Mp4Fps(video, 1.0), None, 4),
        "no_folder": (FolderManifest(tmp_path / "absent", 4), "missing_input", None),
        "no_manifest": (FolderManifest(tmp_path, 4), "missing_input", None),
        "fewer": (FolderManifest(fewer, 4), "frame_count_mismatch", None),
        "bad_json": (FolderManifest(bad_json, 4), "decode_error", None),
        "missing_png": (FolderManifest(missing_png, 4), "missing_input", None),
        "bad_png": (FolderManifest(bad_png, 4), "decode_error", None),
        "no_video": (Mp4Uniform(tmp_path / "absent.mp4", 8), "missing_input", None),
        "broken_video": (Mp4Uniform(broken_mp4, 8), "decode_error", None),
        "short_video": (Mp4Uniform(video, 42, "floor_full"), "frame_count_mismatch", None),
    }
    for sample_id, (request, error_type, n) in cases.items():
        result = preflight(request, sample_id=sample_id)
        assert result.ok == (error_type is None) and result.error_type == error_type, (sample_id, result)
        assert result.sample_id == sample_id and result.n_frames == n
        json.dumps(result.to_dict())


# ----------------------------------------------------------------------------------- caching
def test_frame_cache_decodes_each_scene_once(video, tmp_path, monkeypatch):
    from posevlm.scenes.video import VideoStore

    calls = []
    real = VideoStore.read_many
    monkeypatch.setattr(VideoStore, "read_many", lambda self, ids: calls.append(1) or real(self, ids))
    cache = FrameCache(max_entries=2)
    a, b = Mp4Uniform(video, 8), FolderManifest(make_folder(tmp_path / "s", [1, 2, 3, 4]), 4)
    first = [cache.get(Mp4Uniform(str(video), 8)) for _ in range(18)]  # ~18 questions per scene
    assert all(spec is first[0] for spec in first) and len(calls) == 1
    assert (cache.hits, cache.misses) == (17, 1) and a in cache
    assert not first[0].frames.flags.writeable
    cache.get(b), cache.get(Mp4Uniform(video, 4))  # evicts the least recently used (a)
    assert a not in cache and b in cache and len(cache) == 2
    with pytest.raises(MissingInputError):
        cache.get(Mp4Uniform(tmp_path / "absent.mp4", 8))
    assert len(cache) == 2  # failures are not cached


def test_frame_spec_checks_shapes():
    with pytest.raises(ShapeError, match="frames"):
        FrameSpec(np.arange(3), np.zeros((2, 8, 8, 3), np.uint8), None, None, None, {})
    with pytest.raises(ConfigError, match="policy"):
        FolderManifest("x", 4, "pad")
