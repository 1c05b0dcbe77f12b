"""posevlm.point_io: point maps from a scan (depth + cameras) and from a predictions npz agree, in the first listed
frame's world frame, whatever the scan's world frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posevlm.errors import InputFileError
from posevlm.geometry import Cameras, K_from_params, axis_angle_to_matrix, se3_from_Rt
from posevlm.geometry.depth import backproject_depth
from posevlm.point_io import from_predictions, from_scene, model_kwargs
from posevlm.scenes import ArrayStore, Scene, save_predictions

IDS = np.array([3, 10, 17, 24, 31])


def scene(world_from: torch.Tensor | None = None, depth_hw=(6, 8)) -> Scene:
    """5 frames with colour intrinsics at 12 x 16 and depth at 6 x 8 (as ScanNet's colour / depth sizes differ)."""
    g = torch.Generator().manual_seed(0)
    w2c = se3_from_Rt(axis_angle_to_matrix(0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)),
                      torch.randn(5, 3, generator=g, dtype=torch.float64))
    if world_from is not None:
        w2c = w2c @ world_from
    depth = (1 + 2 * torch.rand(5, *depth_hw, generator=g)).numpy().astype(np.float32)
    depth[1, 0, 0] = 0.0
    K = K_from_params(14.0, 13.0, 8.2, 5.8).double()
    cams = Cameras.create(w2c, K[None].expand(5, 3, 3), (12, 16))
    rgb = ArrayStore(np.zeros((5, 12, 16, 3), np.uint8), IDS)
    return Scene("s", IDS, rgb, cameras=cams, depth=ArrayStore(depth, IDS))


def test_scene_points_equal_the_numpy_back_projection_moved_to_the_first_frame():
    s = scene()
    order = [17, 3, 31]  # processor order, not id order: 17 is the world
    got = from_scene(s, order)
    cams = s.cameras_for(order)
    K_depth = cams.K_pixels.numpy() * np.array([0.5, 0.5, 1.0])[:, None]
    world = backproject_depth(s.depth.read_many(order), K_depth, cams.w2c_opencv.numpy())
    first = cams.w2c_opencv[0].numpy()
    expected = np.nan_to_num(world) @ first[:3, :3].T + first[:3, 3]
    assert got.frame_ids.tolist() == order and got.point_maps.shape == (3, 6, 8, 3) and got.scale == "metric"
    np.testing.assert_allclose(got.point_maps.numpy()[got.point_valid.numpy()],
                               expected[got.point_valid.numpy()], rtol=1e-5, atol=1e-5)
    assert int((~got.point_valid).sum()) == 0  # frame 10 (with the hole) not asked for
    kwargs = model_kwargs([got, got])
    assert len(kwargs["point_maps"]) == 2 and kwargs["point_valid"][0] is got.point_valid


def test_scene_points_do_not_depend_on_the_scan_world_frame():
    T = se3_from_Rt(axis_angle_to_matrix(torch.tensor([0.2, -1.0, 0.5], dtype=torch.float64)),
                    torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64))
    a, b = from_scene(scene(), IDS), from_scene(scene(T), IDS)
    torch.testing.assert_close(a.point_maps, b.point_maps, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.point_valid, b.point_valid) and int((~a.point_valid).sum()) == 1


def test_predictions_world_points_and_depth_agree_with_the_scene(tmp_path):
    s = scene()
    cams = s.cameras
    depth = s.depth.read_many(IDS)
    K_depth = cams.K_pixels.numpy() * np.array([0.5, 0.5, 1.0])[:, None]
    world = backproject_depth(depth, K_depth, cams.w2c_opencv.numpy()).astype(np.float32)
    common = dict(frame_ids=IDS, image_hw=(12, 16), w2c_opencv=cams.w2c_opencv.numpy(), K_pixels=cams.K_pixels.numpy(),
                  meta={"scale": "metric"})
    save_predictions(tmp_path / "points.npz", world_points=world, **common)
    save_predictions(tmp_path / "depth.npz", depth=depth, **common)
    order = [24, 10, 3]
    want = from_scene(s, order)
    for name in ("points.npz", "depth.npz"):
        got = from_predictions(tmp_path / name, order)
        assert got.frame_ids.tolist() == order and got.scale == "metric"
        assert torch.equal(got.point_valid, want.point_valid)
        torch.testing.assert_close(got.point_maps, want.point_maps, atol=2e-5, rtol=1e-5)
    with pytest.raises(InputFileError, match=r"no frame id\(s\) \[4\]"):
        from_predictions(tmp_path / "points.npz", [3, 4])


def test_missing_sources_name_the_fix(tmp_path):
    s = scene()
    s.depth = None
    with pytest.raises(InputFileError, match="has no depth"):
        from_scene(s, IDS)
    save_predictions(tmp_path / "cams.npz", frame_ids=IDS, image_hw=(12, 16), w2c_opencv=scene().cameras.w2c_opencv
                     .numpy(), K_pixels=scene().cameras.K_pixels.numpy())
    with pytest.raises(InputFileError, match="neither world_points nor depth"):
        from_predictions(tmp_path / "cams.npz")
