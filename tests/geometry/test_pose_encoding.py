import math

import numpy as np
import torch
from hypothesis import given
from strategies import random_w2c, seeds

from posevlm.geometry import (
    Cameras,
    extrinsics_intrinsics_to_pose_encoding,
    intrinsics_from_fov,
    pose_encoding_to_extrinsics_intrinsics,
    quat_xyzw_to_matrix,
)

HW = (476, 644)


@given(seeds)
def test_encode_decode_round_trip(seed):
    w2c = random_w2c(seed, 10)
    g = np.random.default_rng(seed)
    fov = torch.from_numpy(g.uniform(0.5, 1.6, size=(10, 2)))
    K = intrinsics_from_fov(fov[:, 0], fov[:, 1], HW)
    enc = extrinsics_intrinsics_to_pose_encoding(w2c, K, HW)
    assert enc.shape == (10, 9)
    w2c2, K2 = pose_encoding_to_extrinsics_intrinsics(enc, HW)
    assert torch.allclose(w2c2, w2c, atol=1e-12)
    assert torch.allclose(K2, K, atol=1e-9)
    assert torch.allclose(enc[:, 7:], fov, atol=1e-12)


@given(seeds)
def test_decode_encode_round_trip_with_unnormalised_quaternions(seed):
    g = np.random.default_rng(seed)
    enc = torch.from_numpy(np.concatenate([g.normal(size=(6, 3)), g.normal(size=(6, 4)) * 2.5,
                                           g.uniform(0.4, 1.5, size=(6, 2))], axis=1))
    w2c, K = pose_encoding_to_extrinsics_intrinsics(enc, HW)
    enc2 = extrinsics_intrinsics_to_pose_encoding(w2c, K, HW)
    # translation and fov exact; quaternion equal up to scale and sign
    assert torch.allclose(enc2[:, :3], enc[:, :3]) and torch.allclose(enc2[:, 7:], enc[:, 7:], atol=1e-12)
    assert torch.allclose(quat_xyzw_to_matrix(enc2[:, 3:7]), quat_xyzw_to_matrix(enc[:, 3:7]), atol=1e-12)


def test_spec_layout_vector():
    # models.md 1.6: t of w2c, quaternion xyzw, fov_h, fov_w; fy = (H/2)/tan(fov_h/2), cx = W/2
    enc = torch.tensor([[0.1, -0.2, 0.3, 0.0, 0.0, math.sin(0.25), math.cos(0.25), 1.0, 1.2]], dtype=torch.float64)
    w2c, K = pose_encoding_to_extrinsics_intrinsics(enc, HW)
    assert torch.allclose(w2c[0, :3, 3], enc[0, :3])
    c, s = math.cos(0.5), math.sin(0.5)  # rotation by 0.5 rad about z
    assert torch.allclose(w2c[0, :3, :3], torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64))
    assert float(K[0, 1, 1]) == (HW[0] / 2) / math.tan(0.5)
    assert float(K[0, 0, 0]) == (HW[1] / 2) / math.tan(0.6)
    assert K[0, 0, 2] == HW[1] / 2 and K[0, 1, 2] == HW[0] / 2
    cams = Cameras.from_pose_encoding(enc, HW)
    assert cams.image_hw.tolist() == [list(HW)]
