"""`posevlm geometry predict` and `posevlm sample --geometry vggt` with posevlm's own VGGT: a tiny random model saved
to disk as a user's checkpoint would be, synthetic scans, then frame selection from the predictions."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from posevlm.errors import ConfigError, ConventionWarning, InputFileError
from posevlm.sampling import PoolConfig, read_manifest
from posevlm.sampling.geometry_models import _anchor_scale, load_vggt_predictor, predict_vggt_chunked
from posevlm.sampling.geometry_runner import GeometryPredictConfig, predict_scene, run_geometry_predict
from posevlm.scenes import load_predictions, load_scene
from posevlm.scenes.synthetic import SynthConfig, generate_dataset
from posevlm.spatial import VGGT, VGGTConfig, save_vggt

SMALL = {"pool": PoolConfig(size=10), "chunk": 4, "image_width": 84, "device": "cpu"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo")
    generate_dataset(root / "data" / "synthetic", 2, SynthConfig(seed=7, num_frames=30, image_hw=(48, 64), fps=3.0))
    torch.manual_seed(0)
    weights = save_vggt(VGGT(VGGTConfig.tiny()), root / "vggt_tiny")
    return root, weights


def test_anchor_scale_is_the_median_depth_ratio_on_confident_pixels():
    g = torch.Generator().manual_seed(0)
    depth_ref = torch.rand(20, 30, generator=g) + 0.5
    conf = torch.rand(20, 30, generator=g) + 1
    assert _anchor_scale(depth_ref, conf, depth_ref / 3.0, conf) == pytest.approx(3.0, rel=1e-6)
    noisy = depth_ref / 3.0
    noisy[conf < conf.median()] *= 100  # unconfident pixels do not count
    assert _anchor_scale(depth_ref, conf, noisy, conf) == pytest.approx(3.0, rel=1e-6)
    with pytest.raises(ConfigError, match="larger --chunk"):
        _anchor_scale(depth_ref, conf, -depth_ref, conf)


def test_chunks_share_frame_0_and_are_scaled_onto_the_first(setup):
    _, weights = setup
    model = load_vggt_predictor(str(weights), "cpu", None)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(7, 3, 56, 84, generator=g)
    out = predict_vggt_chunked(model, images, chunk=3)
    assert [c["frames"] for c in out["chunks"]] == [[0, 1, 2], [3, 4], [5, 6]]
    first = model.predict(images[[0, 1, 2]][None])
    torch.testing.assert_close(torch.from_numpy(out["world_points"][:3]), first.world_points[0].float())
    for c in out["chunks"][1:]:  # each later chunk: [frame 0] + its frames, scaled by the frame-0 depth ratio
        pred = model.predict(images[[0, *c["frames"]]][None])
        s = _anchor_scale(first.depth[0, 0, ..., 0], first.depth_conf[0, 0], pred.depth[0, 0, ..., 0],
                          pred.depth_conf[0, 0])
        assert c["scale"] == pytest.approx(s)
        torch.testing.assert_close(torch.from_numpy(out["world_points"][c["frames"]]), pred.world_points[0, 1:] * s)
        w2c, _ = pred.cameras()
        torch.testing.assert_close(torch.from_numpy(out["w2c_opencv"][c["frames"], :3, 3]).float(),
                                   w2c[0, 1:, :3, 3].float() * s)
    single = predict_vggt_chunked(model, images[:3], chunk=8)  # one chunk is one plain forward
    assert single["chunks"] == [{"frames": [0, 1, 2], "scale": 1.0}]


def test_predict_scene_writes_once_and_never_overwrites_another_config(setup, tmp_path):
    root, weights = setup
    scene = load_scene(root / "data" / "synthetic" / "synth_0000")
    config = GeometryPredictConfig(weights=str(weights), **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConventionWarning)  # a random model's cameras
        path, written = predict_scene(scene, config, tmp_path / "synth_0000.npz")
        again, written_again = predict_scene(scene, config, path)
        pred = load_predictions(path)
    assert written and not written_again and again == path
    assert pred.frame_ids.size == 10 and pred.meta["predict_config"] == config.identity()
    assert pred.cameras.image_hw[0].tolist() == [56, 84] and pred.point_maps.world_points.shape == (10, 56, 84, 3)
    other = GeometryPredictConfig(weights=str(weights), **{**SMALL, "chunk": 5})
    with pytest.raises(InputFileError, match="another configuration"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConventionWarning)
        predict_scene(scene, other, path)


def test_run_isolates_a_failing_scan(setup, tmp_path):
    root, weights = setup
    bad = GeometryPredictConfig(weights=str(tmp_path / "missing_weights"), **SMALL)
    summary = run_geometry_predict(root / "data", tmp_path / "out", bad)
    assert summary.scenes == 2 and len(summary.failures) == 2 and not summary.ok
    assert "missing_weights" in summary.failures[0]["message"]


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore::posevlm.errors.ConventionWarning", "-m", "posevlm",
                           *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_geometry_predict_then_sample_from_the_predictions(setup, tmp_path):
    root, weights = setup
    small = ["--pool-size", 10, "--chunk", 4, "--image-width", 84, "--device", "cpu"]
    first = cli("geometry", "predict", "--data", root / "data", "--weights", weights, "--out", tmp_path / "pred", *small)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in (tmp_path / "pred" / "synthetic").iterdir()) == ["synth_0000.npz", "synth_0001.npz"]
    again = cli("geometry", "predict", "--data", root / "data", "--weights", weights, "--out", tmp_path / "pred", *small)
    assert again.returncode == 0 and "0 predicted, 2 complete and kept" in again.stdout, again.stdout
    sampled = cli("sample", "--data", root / "data", "--strategy", "voxel_coverage", "--frames", 4, "--pool-size", 10,
                  "--geometry", "predictions", "--predictions", tmp_path / "pred", "--out", tmp_path / "sampled")
    assert sampled.returncode == 0, sampled.stdout + sampled.stderr
    manifests = sorted((tmp_path / "sampled").glob("*/synthetic/*/selected_frames.json"))
    assert len(manifests) == 2
    doc = read_manifest(manifests[0])
    assert doc["pose_source"] == "predictions:vggt" and len(doc["selected"]) == 4
    pred_ids = load_predictions(tmp_path / "pred" / "synthetic" / "synth_0000.npz").frame_ids.tolist()
    assert set(doc["selected_frames"]) <= set(pred_ids)
    on_demand = cli("sample", "--data", root / "data", "--strategy", "pose_fps", "--frames", 4, "--pool-size", 10,
                    "--geometry", "vggt", "--geometry-weights", weights, "--geometry-chunk", 4, "--geometry-device",
                    "cpu", "--out", tmp_path / "sampled2")
    # the on-demand model runs at its released input width (518) on a 64x48 scan: fine for a tiny random model
    assert on_demand.returncode == 0, on_demand.stdout + on_demand.stderr
    cached = list((tmp_path / "sampled2" / "_geometry").glob("vggt-*/synthetic/*.npz"))
    assert len(cached) == 2
    ids = read_manifest(next((tmp_path / "sampled2").glob("*/synthetic/synth_0000/selected_frames.json")))
    assert ids["pose_source"] == "predictions:vggt" and np.isin(ids["selected_frames"], pred_ids).all()
