"""Sources of 3D: point maps from depth + cameras in the first frame's world frame (parity with the library's
numpy back-projection, invariance to the world frame), pooling to token grids (naive reference), scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posevlm.geometry import K_from_params, axis_angle_to_matrix, intrinsics_resize, se3_from_Rt, transform_points
from posevlm.geometry.depth import backproject_depth
from posevlm.memory import first_step_scale, point_maps_from_depth, points_in_first_frame, pool_point_maps, \
    pose_encoding_in_first_frame


def cameras(seed: int, frames: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(0.4 * torch.randn(frames, 3, generator=g, dtype=torch.float64))
    return se3_from_Rt(R, torch.randn(frames, 3, generator=g, dtype=torch.float64))


def depth_maps(seed: int, frames: int = 5, hw=(6, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    depth = 1 + 3 * torch.rand(frames, *hw, generator=g, dtype=torch.float64)
    depth[0, 0, 0] = 0.0  # no measurement
    depth[1, 2, 3] = float("nan")
    depth[2, 5, 7] = float("inf")
    return depth


K = K_from_params(7.0, 6.5, 4.1, 2.9).double()


def test_depth_points_match_the_numpy_back_projection_in_the_first_frame():
    w2c, depth = cameras(0), depth_maps(1)
    points, valid = point_maps_from_depth(depth, K, w2c)
    world = backproject_depth(depth.numpy(), np.broadcast_to(K.numpy(), (5, 3, 3)), w2c.numpy())
    expected = points_in_first_frame(torch.from_numpy(np.nan_to_num(world)), w2c)
    assert valid.sum() == 5 * 48 - 3 and not bool(valid[0, 0, 0] | valid[1, 2, 3] | valid[2, 5, 7])
    torch.testing.assert_close(points[valid], expected[valid])
    assert torch.equal(points[~valid], torch.zeros_like(points[~valid]))
    # frame 0 is the world: its points are its own camera coordinates (x = (u - cx) / fx * z)
    torch.testing.assert_close(points[0, 3, 5], torch.tensor([(5.5 - 4.1) / 7.0, (3.5 - 2.9) / 6.5, 1.0],
                                                             dtype=torch.float64) * depth[0, 3, 5])


def test_points_do_not_depend_on_the_world_frame():
    """Any rigid change of the scan's world frame (w2c -> w2c @ T) gives the same first-frame points."""
    w2c, depth = cameras(2), depth_maps(3)
    T = cameras(4, 1)[0]
    a, _ = point_maps_from_depth(depth, K, w2c)
    b, _ = point_maps_from_depth(depth, K, w2c @ T)
    torch.testing.assert_close(a, b)


def test_intrinsics_of_a_larger_colour_image_are_resized_to_the_depth():
    w2c, depth = cameras(5), depth_maps(6)
    K_colour = intrinsics_resize(K, (6, 8), (12, 16))
    a, _ = point_maps_from_depth(depth, K, w2c)
    b, _ = point_maps_from_depth(depth, K_colour, w2c, image_hw=(12, 16))
    torch.testing.assert_close(a, b)


def test_points_in_first_frame_is_the_first_camera_transform():
    w2c = cameras(7)
    pts = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(points_in_first_frame(pts, w2c), transform_points(w2c[0], pts.reshape(-1, 3))
                               .reshape(5, 2, 3, 3))


def pool_reference(points, valid, grid):
    """Naive: for every tubelet and cell, the mean of the valid points of both frames inside the cell."""
    s, h, w, _ = points.shape
    mh, mw = grid
    out = torch.zeros(s // 2, mh * mw, 3, dtype=torch.float64)
    ok = torch.zeros(s // 2, mh * mw, dtype=torch.bool)
    for t in range(s // 2):
        for i in range(mh):
            for j in range(mw):
                rows = range(i * h // mh, -(-(i + 1) * h // mh))  # adaptive pooling bins
                cols = range(j * w // mw, -(-(j + 1) * w // mw))
                pts = [points[f, r, c] for f in (2 * t, 2 * t + 1) for r in rows for c in cols if valid[f, r, c]]
                if pts:
                    out[t, i * mw + j] = torch.stack(pts).mean(0)
                    ok[t, i * mw + j] = True
    return out, ok


@pytest.mark.parametrize("hw,grid", [((6, 8), (2, 4)), ((7, 9), (2, 3)), ((4, 6), (4, 6))])
def test_pool_point_maps_matches_the_naive_cell_mean(hw, grid):
    g = torch.Generator().manual_seed(8)
    points = torch.randn(4, *hw, 3, generator=g, dtype=torch.float64)
    valid = torch.rand(4, *hw, generator=g) > 0.5
    valid[0:2, : hw[0] // 2 + 1, : hw[1] // 2 + 1] = False  # an empty cell in tubelet 0
    coords, ok = pool_point_maps(points, valid, grid)
    ref, ref_ok = pool_reference(points, valid, grid)
    assert torch.equal(ok, ref_ok) and not bool(ok.all())
    torch.testing.assert_close(coords, ref)


def test_pool_pads_an_odd_frame_count_and_ignores_non_finite_points():
    points = torch.randn(3, 4, 4, 3)
    points[2, 0, 0] = float("nan")
    coords, ok = pool_point_maps(points, None, (2, 2))
    padded, _ = pool_point_maps(torch.cat([points, points[-1:]]), None, (2, 2))
    assert coords.shape == (2, 4, 3) and torch.isfinite(coords).all() and bool(ok.all())
    torch.testing.assert_close(coords, padded)


def test_first_step_scale_batched():
    coords = torch.tensor([[[[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]])
    valid = torch.tensor([[[False, False], [True, True]]])
    assert first_step_scale(coords, valid).tolist() == [1.0]  # step 0 has no valid point: step 1 decides
    valid = torch.tensor([[[True, True], [True, True]]])
    assert first_step_scale(coords, valid).tolist() == [3.5]
    assert torch.isnan(first_step_scale(coords, torch.zeros_like(valid))).all()


def test_pose_encoding_in_first_frame_starts_at_the_identity():
    enc = pose_encoding_in_first_frame(cameras(9), K, (6, 8))
    assert enc.shape == (5, 9)
    torch.testing.assert_close(enc[0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]), atol=1e-6, rtol=0)


def test_memory_is_torch_only():
    """posevlm.memory sits below models: no transformers, no model / input / training package."""
    from layering import forbidden_static_imports

    assert forbidden_static_imports("posevlm.memory", ("transformers", "posevlm.models", "posevlm.scenes",
                                                       "posevlm.eval", "posevlm.sampling", "posevlm.train",
                                                       "posevlm.cli", "posevlm.spatial")) == {}
