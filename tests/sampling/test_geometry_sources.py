"""Geometry sources for the selectors: a stored predictions file, and the geometry-model adapters."""

import numpy as np
import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.geometry import transform_points, w2c_to_c2w
from posevlm.sampling import PoolConfig, SamplingConfig, read_manifest
from posevlm.sampling.geometry_models import predict_geometry, vggt_preprocess
from posevlm.sampling.runner import run_sampling
from posevlm.scenes import load_scene, save_predictions
from posevlm.scenes.synthetic import SynthConfig, generate_dataset


def test_vggt_preprocessing_follows_the_reference():
    landscape = np.zeros((3, 480, 640, 3), np.uint8)
    images, ops = vggt_preprocess(landscape)
    assert images.shape == (3, 3, 392, 518) and ops == [{"op": "resize", "hw": [392, 518]}]
    assert float(images.max()) <= 1.0
    portrait = np.zeros((2, 640, 480, 3), np.uint8)
    images, ops = vggt_preprocess(portrait)
    # portrait frames are turned clockwise first, so they never need the centre crop
    assert ops == [{"op": "rotate90", "k": -1}, {"op": "resize", "hw": [392, 518]}] and images.shape == (2, 3, 392, 518)


@pytest.mark.parametrize("name, hint", [("da3", "depth-anything-3")])  # vggt is built in (posevlm.spatial)
def test_missing_geometry_package_is_a_clear_error(name, hint, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_model(mod, *args, **kw):
        if mod.startswith(("vggt", "depth_anything_3")):
            raise ImportError(f"No module named {mod!r}")
        return real_import(mod, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_model)
    with pytest.raises(ConfigError, match=hint):
        predict_geometry(name, np.zeros((2, 48, 64, 3), np.uint8))
    with pytest.raises(ConfigError, match="unknown geometry model"):
        predict_geometry("slam", np.zeros((2, 48, 64, 3), np.uint8))


def test_sampling_from_a_predictions_file(tmp_path):
    scenes = generate_dataset(tmp_path / "data" / "synthetic", 1, SynthConfig(seed=4, num_frames=60, image_hw=(48, 64)))
    scene = load_scene(scenes[0])
    ids = scene.frame_ids[::2]
    cams = scene.cameras_for(ids)
    depth = scene.depth.read_many(ids).astype(np.float64)
    K = cams.K_pixels.numpy()
    v, u = np.mgrid[0:48, 0:64] + 0.5
    rays = np.stack([(u - K[:, None, None, 0, 2]) / K[:, None, None, 0, 0],
                     (v - K[:, None, None, 1, 2]) / K[:, None, None, 1, 1], np.ones((len(ids), 48, 64))], -1)
    cam_pts = torch.from_numpy((rays * depth[..., None]).reshape(len(ids), -1, 3))
    world = transform_points(w2c_to_c2w(cams.w2c_opencv), cam_pts).reshape(len(ids), 48, 64, 3).numpy()
    pred_dir = tmp_path / "pred"
    w2c_pred = cams.w2c_opencv.clone()
    w2c_pred[:, :3, 3] *= 0.5  # a prediction in another scale: the manifest must record it, not the GT
    save_predictions(pred_dir / "synthetic" / f"{scene.name}.npz", frame_ids=ids, image_hw=(48, 64),
                     w2c_opencv=w2c_pred.numpy(), K_pixels=K, world_points=world.astype(np.float16) * 0.5,
                     world_points_conf=np.ones((len(ids), 48, 64), np.float16), meta={"model": "gt-as-predictions"})
    cfg = SamplingConfig("voxel_coverage", 8, geometry="predictions")
    summary = run_sampling(tmp_path / "data", [cfg], tmp_path / "out", predictions_dir=pred_dir)
    assert summary.ok, summary.failures
    doc = read_manifest(tmp_path / "out" / cfg.slug / "synthetic" / scene.name)
    assert doc["pose_source"] == "predictions:gt-as-predictions"
    assert doc["pool"]["frame_ids"] == ids.tolist() and set(doc["selected_frames"]) <= set(ids.tolist())
    assert 0 < doc["stats"]["coverage_ratio"] <= 1
    first = doc["selected"][0]
    pos = ids.tolist().index(first["frame_id"])
    assert np.allclose(first["w2c_opencv"], w2c_pred[pos].numpy())
    missing = run_sampling(tmp_path / "data", [cfg], tmp_path / "out2", predictions_dir=tmp_path / "nowhere")
    assert len(missing.failures) == 1 and "no geometry predictions" in missing.failures[0]["message"]


def test_geometry_model_runs_once_on_the_pool_and_is_cached(tmp_path, monkeypatch):
    """--geometry vggt: posevlm's VGGT (a tiny random checkpoint on disk) runs on the pool frames once; its
    output is saved under OUT/_geometry/vggt-<config hash>/ and reused."""
    import warnings

    import posevlm.sampling.geometry_models as gm
    from posevlm.errors import ConventionWarning
    from posevlm.spatial import VGGT, VGGTConfig, save_vggt

    scenes = generate_dataset(tmp_path / "data" / "synthetic", 1, SynthConfig(seed=5, num_frames=30, image_hw=(48, 64)))
    torch.manual_seed(0)
    weights = save_vggt(VGGT(VGGTConfig.tiny()), tmp_path / "vggt")
    calls = []
    real = gm.predict_geometry

    def counted(name, frames, **kw):  # the real model, counted
        calls.append((name, frames.shape))
        return real(name, frames, **kw)

    monkeypatch.setattr(gm, "predict_geometry", counted)
    options = {"weights": str(weights), "chunk": 16, "image_width": 84}
    cfg = SamplingConfig("pose_fps", 8, geometry="vggt", geometry_options=options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConventionWarning)  # a random model's cameras
        assert run_sampling(tmp_path / "data", [cfg], tmp_path / "out", geometry_device="cpu").ok
        assert calls == [("vggt", (30, 48, 64, 3))]
        cached = list((tmp_path / "out" / "_geometry").glob("vggt-*/synthetic/*.npz"))
        assert len(cached) == 1
        cfg16 = SamplingConfig("pose_fps", 16, geometry="vggt", geometry_options=options)
        assert run_sampling(tmp_path / "data", [cfg16], tmp_path / "out", geometry_device="cpu").ok
        assert len(calls) == 1  # reused, not recomputed
        other = SamplingConfig("pose_fps", 16, geometry="vggt", geometry_options={**options, "chunk": 8})
        assert other.slug != cfg16.slug and other.slug.endswith(other.geometry_model.cache_name)
        assert run_sampling(tmp_path / "data", [other], tmp_path / "out", geometry_device="cpu").ok
    assert len(calls) == 2  # another model configuration: its own cache and outputs, never a stale one
    assert len(list((tmp_path / "out" / "_geometry").glob("vggt-*/synthetic/*.npz"))) == 2
    doc = read_manifest(tmp_path / "out" / cfg16.slug / "synthetic" / scenes[0].name)
    assert doc["pose_source"] == "predictions:vggt"


def test_a_short_selection_is_an_error_not_a_short_output(tmp_path):
    scenes = generate_dataset(tmp_path / "data" / "synthetic", 1, SynthConfig(seed=6, num_frames=20, image_hw=(48, 64)))
    cfg = SamplingConfig("voxel_coverage", 20, {"fill": "none", "depth_stride": 8},
                         pool=PoolConfig("all"))
    summary = run_sampling(tmp_path / "data", [cfg], tmp_path / "out")
    assert len(summary.failures) == 1 and "exactly N frames" in summary.failures[0]["message"]
    assert not (tmp_path / "out" / cfg.slug).exists() and len(scenes) == 1
