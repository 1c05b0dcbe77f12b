import numpy as np
import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.geometry import transform_points, w2c_to_c2w
from posevlm.scenes import load_scene
from posevlm.scenes.synthetic import SynthConfig, generate_dataset, generate_scene

CFG = SynthConfig(seed=5, num_frames=10, image_hw=(48, 64))


def test_generation_is_deterministic_per_seed_and_index(tmp_path):
    a = load_scene(generate_scene(tmp_path / "a", 2, CFG))
    b = load_scene(generate_scene(tmp_path / "b", 2, CFG))
    c = load_scene(generate_scene(tmp_path / "c", 3, CFG))
    assert torch.equal(a.cameras.w2c_opencv, b.cameras.w2c_opencv)
    assert a.metadata["objects"] == b.metadata["objects"]
    assert not torch.equal(a.cameras.w2c_opencv, c.cameras.w2c_opencv)
    assert np.array_equal(a.depth.read(7), b.depth.read(7))
    assert a.metadata["generator"]["config"] == CFG.to_dict()


def test_written_depth_back_projects_into_the_room(tmp_path):
    scene = load_scene(generate_scene(tmp_path, 0, CFG))
    room = scene.metadata["room"]
    boxes = np.asarray(room["boxes_xy"])
    h, w = 48, 64
    v, u = np.mgrid[0:h, 0:w] + 0.5
    for fid in (0, 9):
        depth = scene.depth.read(fid).astype(np.float64)
        K = scene.cameras.K_pixels[fid].numpy()
        cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1).reshape(-1, 3)
        world = transform_points(w2c_to_c2w(scene.cameras.w2c_opencv[fid]), torch.from_numpy(cam)).numpy()
        tol = 0.01  # millimetre quantisation of the stored depth, plus margin
        inside_xy = ((world[:, None, 0] >= boxes[:, 0] - tol) & (world[:, None, 0] <= boxes[:, 2] + tol)
                     & (world[:, None, 1] >= boxes[:, 1] - tol) & (world[:, None, 1] <= boxes[:, 3] + tol)).any(1)
        assert inside_xy.all()
        assert world[:, 2].min() > -tol and world[:, 2].max() < room["height"] + tol


def test_config_validation_lists_every_problem():
    with pytest.raises(ConfigError) as err:
        SynthConfig(num_frames=1, image_hw=(47, 64), num_objects=70, room_shape="round", clutter="yes")
    msg = str(err.value)
    assert all(s in msg for s in ("num_frames", "image_hw", "num_objects", "room_shape", "clutter"))


def test_dataset_keeps_complete_scenes_and_refuses_other_configs(tmp_path):
    calls = []
    generate_dataset(tmp_path, 2, CFG, on_scene=lambda i, p, skipped: calls.append((i, skipped)))
    mtime = (tmp_path / "synth_0000" / "cameras.npz").stat().st_mtime_ns
    generate_dataset(tmp_path, 2, CFG, on_scene=lambda i, p, skipped: calls.append((i, skipped)))
    assert calls == [(0, False), (1, False), (0, True), (1, True)]
    assert (tmp_path / "synth_0000" / "cameras.npz").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="different configuration"):
        generate_dataset(tmp_path, 1, SynthConfig(seed=6, num_frames=10, image_hw=(48, 64)))


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_byte_identical_files_whatever_the_cpu_count_and_clock(tmp_path, monkeypatch):
    """Issue 10 item 7: rgb.mp4, cameras.npz, scene.json, depth/ and instances/ are byte-identical across
    reruns. x264's automatic thread count follows the CPUs the process may use (sliced threads change the
    bitstream), so the second run sees a single CPU; and it runs at another wall-clock time."""
    import datetime as dt
    import os

    from posevlm import provenance as prov

    cfg = SynthConfig(seed=11, num_frames=6, image_hw=(128, 160))  # x264 slices only from ~8 macroblock rows
    generate_dataset(tmp_path / "a", 1, cfg)

    class _Later(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2031, 7, 1, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr(prov._dt, "datetime", _Later)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        generate_dataset(tmp_path / "b", 1, cfg)
    finally:
        os.sched_setaffinity(0, cpus)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert sorted(a) == sorted(b)
    assert {"synth_0000/rgb.mp4", "synth_0000/cameras.npz", "synth_0000/scene.json",
            "synth_0000/depth/000005.png", "synth_0000/instances/000005.png"} <= set(a)
    assert [name for name in a if a[name] != b[name]] == []


def test_presets_fill_config_fields_and_unknown_presets_are_named():
    from posevlm.scenes.synthetic import SYNTH_PRESETS, synth_config

    assert synth_config("standard", seed=3) == SynthConfig(seed=3)
    hard = synth_config("hard", num_frames=600, fps=10.0)
    assert (hard.room_shape, hard.clutter, hard.num_frames, hard.fps) == ("multi", True, 600, 10.0)
    assert synth_config("hard").num_frames == 1800
    with pytest.raises(ConfigError, match="standard, hard"):
        synth_config("harder")
    assert set(SYNTH_PRESETS) == {"standard", "hard"}
    # standard configs serialise as before clutter existed (scene.json and the resume check unchanged)
    assert "clutter" not in SynthConfig().to_dict() and hard.to_dict()["clutter"] is True
