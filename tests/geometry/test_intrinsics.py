import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import random_K, seeds

from posevlm.errors import ShapeError
from posevlm.geometry import (
    fov_from_intrinsics,
    intrinsics_crop,
    intrinsics_denormalize,
    intrinsics_from_fov,
    intrinsics_normalize,
    intrinsics_resize,
    intrinsics_rotate90,
)

HW = (480, 640)


def project(K, pts):
    uvw = pts @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:]


def random_points(seed, n=20):
    g = np.random.default_rng(seed)
    p = g.normal(size=(n, 3))
    p[:, 2] = np.abs(p[:, 2]) + 1.0
    return torch.from_numpy(p)


@given(seeds, st.integers(50, 900), st.integers(50, 900))
def test_resize_scales_projections_and_round_trips(seed, h2, w2):
    K = random_K(seed, 1, HW)[0]
    K2 = intrinsics_resize(K, HW, (h2, w2))
    pts = random_points(seed)
    uv, uv2 = project(K, pts), project(K2, pts)
    assert torch.allclose(uv2, uv * torch.tensor([w2 / HW[1], h2 / HW[0]], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(intrinsics_resize(K2, (h2, w2), HW), K, atol=1e-9)


@given(seeds, st.integers(0, 100), st.integers(0, 100))
def test_crop_shifts_projections(seed, top, left):
    K = random_K(seed, 1, HW)[0]
    Kc, hw = intrinsics_crop(K, HW, top, left, (300, 400))
    assert hw.tolist() == [300.0, 400.0]
    pts = random_points(seed)
    assert torch.allclose(project(Kc, pts), project(K, pts) - torch.tensor([left, top], dtype=torch.float64))


def test_crop_outside_image_is_an_error():
    K = random_K(0, 1, HW)[0]
    with pytest.raises(ShapeError, match="crop window"):
        intrinsics_crop(K, HW, 400, 0, (300, 400))


@given(seeds, st.integers(-3, 5))
def test_rotate90_matches_rotated_image_and_round_trips(seed, k):
    K = random_K(seed, 1, HW)[0]
    K_rot, hw_rot, cam_rot = intrinsics_rotate90(K, HW, k)
    # a projected point lands where np.rot90 moves its pixel (continuous coords, image spans [0, W])
    pts = random_points(seed)
    u, v = project(K, pts).unbind(-1)
    uv_rot = project(K_rot, pts @ cam_rot.T)
    h, w = HW
    expected = {0: (u, v), 1: (v, w - u), 2: (w - u, h - v), 3: (h - v, u)}[k % 4]
    assert torch.allclose(uv_rot, torch.stack(expected, -1), atol=1e-9)
    assert hw_rot.tolist() == ([h, w] if k % 2 == 0 else [w, h])
    back, hw_back, rot_back = intrinsics_rotate90(K_rot, hw_rot, -k)
    assert torch.allclose(back, K, atol=1e-9) and hw_back.tolist() == list(HW)
    assert torch.allclose(rot_back @ cam_rot, torch.eye(3, dtype=torch.float64))


def test_rotate90_pixel_mapping_agrees_with_numpy_rot90():
    img = np.zeros(HW)
    img[100, 500] = 1  # row 100, col 500 -> centre (u, v) = (500.5, 100.5)
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], dtype=torch.float64)
    K_rot, _, cam_rot = intrinsics_rotate90(K, HW, 1)
    ray = torch.linalg.solve(K, torch.tensor([500.5, 100.5, 1.0], dtype=torch.float64))
    uv = project(K_rot, (cam_rot @ ray)[None])[0]
    r, c = np.argwhere(np.rot90(img, 1))[0]
    assert torch.allclose(uv, torch.tensor([c + 0.5, r + 0.5], dtype=torch.float64))


@given(seeds)
def test_normalize_definition_and_round_trip(seed):
    K = random_K(seed, 4, HW)
    Kn = intrinsics_normalize(K, HW)
    h, w = HW
    assert torch.allclose(Kn[:, 0, 0], K[:, 0, 0] / w) and torch.allclose(Kn[:, 1, 1], K[:, 1, 1] / h)
    assert torch.allclose(Kn[:, 0, 2], K[:, 0, 2] / w - 0.5) and torch.allclose(Kn[:, 1, 2], K[:, 1, 2] / h - 0.5)
    assert torch.allclose(intrinsics_denormalize(Kn, HW), K)
    # resolution free: the same camera at another resolution normalises identically
    assert torch.allclose(intrinsics_normalize(intrinsics_resize(K, HW, (240, 320)), (240, 320)), Kn)


def test_fov_round_trip():
    K = intrinsics_from_fov(torch.tensor(math.radians(50.0)), torch.tensor(math.radians(65.0)), HW)
    fh, fw = fov_from_intrinsics(K, HW)
    assert math.degrees(float(fh)) == pytest.approx(50.0) and math.degrees(float(fw)) == pytest.approx(65.0)
    assert K[0, 2] == 320 and K[1, 2] == 240


def test_image_size_required():
    K = random_K(0, 1, HW)[0]
    with pytest.raises(ShapeError, match="image size they refer to"):
        intrinsics_normalize(K, (480,))
