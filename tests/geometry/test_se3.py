import numpy as np
import pytest
import torch
from hypothesis import given
from strategies import random_w2c, seeds

from posevlm.errors import ShapeError
from posevlm.geometry import (
    c2w_opencv_to_c2w_opengl,
    c2w_opengl_to_c2w_opencv,
    c2w_to_w2c,
    camera_centers,
    se3_compose,
    se3_inverse,
    transform_points,
    w2c_opencv_from_c2w_opengl,
    w2c_to_c2w,
)

EYE = torch.eye(4, dtype=torch.float64)


@given(seeds)
def test_w2c_c2w_round_trip(seed):
    w2c = random_w2c(seed, 12)
    c2w = w2c_to_c2w(w2c)
    assert torch.allclose(c2w @ w2c, EYE.expand(12, 4, 4), atol=1e-12)
    assert torch.allclose(c2w_to_w2c(c2w), w2c, atol=1e-12)
    assert torch.allclose(se3_inverse(w2c), torch.linalg.inv(w2c), atol=1e-10)


@given(seeds)
def test_camera_center_is_mapped_to_camera_origin(seed):
    w2c = random_w2c(seed, 5)
    c = camera_centers(w2c)
    assert torch.allclose(transform_points(w2c, c[:, None, :])[:, 0], torch.zeros(5, 3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c, w2c_to_c2w(w2c)[:, :3, 3], atol=1e-12)


@given(seeds)
def test_opengl_opencv_round_trip_and_meaning(seed):
    c2w_gl = w2c_to_c2w(random_w2c(seed, 6))
    c2w_cv = c2w_opengl_to_c2w_opencv(c2w_gl)
    assert torch.allclose(c2w_opencv_to_c2w_opengl(c2w_cv), c2w_gl)
    # same camera centre; the OpenCV forward axis (+z) is the OpenGL backward axis (-z)
    assert torch.allclose(c2w_cv[:, :3, 3], c2w_gl[:, :3, 3])
    assert torch.allclose(c2w_cv[:, :3, 2], -c2w_gl[:, :3, 2])
    assert torch.allclose(c2w_cv[:, :3, 0], c2w_gl[:, :3, 0])
    assert torch.allclose(w2c_opencv_from_c2w_opengl(c2w_gl), se3_inverse(c2w_cv), atol=1e-12)


def test_opengl_camera_looking_down_minus_z_sees_point_in_front():
    # OpenGL camera at the origin with identity pose looks along -z: a point at z=-2 is in front,
    # so in OpenCV camera coordinates it must have positive depth.
    w2c = w2c_opencv_from_c2w_opengl(EYE)
    p = transform_points(w2c, torch.tensor([[0.0, 0.0, -2.0]], dtype=torch.float64))
    assert p[0, 2] == pytest.approx(2.0)


@given(seeds)
def test_compose_and_broadcast(seed):
    a, b = random_w2c(seed, 3), random_w2c(seed + 1, 1)
    ab = se3_compose(a, b)
    pts = torch.from_numpy(np.random.default_rng(seed).normal(size=(3, 7, 3)))
    assert torch.allclose(transform_points(ab, pts), transform_points(a, transform_points(b, pts)), atol=1e-10)


def test_three_by_four_is_padded_and_bad_shape_is_named():
    w2c = random_w2c(0, 2)
    assert torch.allclose(w2c_to_c2w(w2c[:, :3, :]), w2c_to_c2w(w2c))
    with pytest.raises(ShapeError, match=r"w2c_opencv must have shape \(\.\.\., 4, 4\); got \(2, 3, 3\)"):
        w2c_to_c2w(torch.zeros(2, 3, 3))
