import math

import numpy as np
import pytest
import torch
from hypothesis import given
from scipy.spatial.transform import Rotation
from strategies import random_rotations, seeds

from posevlm.errors import ShapeError
from posevlm.geometry import (
    matrix_to_quat_wxyz,
    matrix_to_quat_xyzw,
    quat_wxyz_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_multiply,
    quat_xyzw_slerp,
    quat_xyzw_to_matrix,
    quat_xyzw_to_wxyz,
    rotation_angle,
    rotation_rigidity_error,
)


def test_convention_quat_order_is_xyzw():
    # 90 degrees about z, written scalar-last
    q = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)], dtype=torch.float64)
    R = quat_xyzw_to_matrix(q)
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64))
    # the identity quaternion misread as wxyz is a rotation by pi, not the identity
    identity_xyzw = torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)
    assert torch.allclose(quat_xyzw_to_matrix(identity_xyzw), torch.eye(3, dtype=torch.float64))
    assert rotation_angle(quat_wxyz_to_matrix(identity_xyzw)) == pytest.approx(math.pi)


@given(seeds)
def test_matrix_to_quat_matches_scipy_and_round_trips(seed):
    R = random_rotations(seed, 16)
    q = matrix_to_quat_xyzw(R)
    ref = torch.from_numpy(Rotation.from_matrix(R.numpy()).as_quat())  # scipy is xyzw
    ref = torch.where(ref[:, 3:] < 0, -ref, ref)
    assert torch.allclose(q, ref, atol=1e-12)
    assert (q[:, 3] >= 0).all()
    assert torch.allclose(quat_xyzw_to_matrix(q), R, atol=1e-12)
    # scalar-first path agrees after reordering
    assert torch.allclose(quat_wxyz_to_xyzw(matrix_to_quat_wxyz(R)), q)
    assert torch.allclose(quat_wxyz_to_matrix(quat_xyzw_to_wxyz(q)), R, atol=1e-12)


@given(seeds)
def test_quat_to_matrix_matches_scipy_for_unnormalised_input(seed):
    q = torch.from_numpy(np.random.default_rng(seed).normal(size=(8, 4)) * 3.0)
    R = quat_xyzw_to_matrix(q)
    assert torch.allclose(R, torch.from_numpy(Rotation.from_quat(q.numpy()).as_matrix()), atol=1e-12)
    assert rotation_rigidity_error(R).max() < 1e-12


def test_matrix_to_quat_accurate_at_pi():
    # rotations by exactly pi about random axes: the w-pivot is ill-conditioned there
    axes = torch.nn.functional.normalize(torch.randn(32, 3, dtype=torch.float64), dim=-1)
    R = 2 * axes[:, :, None] * axes[:, None, :] - torch.eye(3, dtype=torch.float64)
    q = matrix_to_quat_xyzw(R)
    assert torch.allclose(quat_xyzw_to_matrix(q), R, atol=1e-12)
    assert torch.allclose(q[:, 3], torch.zeros(32, dtype=torch.float64), atol=1e-12)


@given(seeds)
def test_multiply_composes_rotations(seed):
    Ra, Rb = random_rotations(seed, 4), random_rotations(seed + 7, 4)
    qa, qb = matrix_to_quat_xyzw(Ra), matrix_to_quat_xyzw(Rb)
    assert torch.allclose(quat_xyzw_to_matrix(quat_xyzw_multiply(qa, qb)), Ra @ Rb, atol=1e-12)


@given(seeds)
def test_slerp_endpoints_midpoint_and_rotation(seed):
    Ra, Rb = random_rotations(seed, 8), random_rotations(seed + 1, 8)
    qa, qb = matrix_to_quat_xyzw(Ra), matrix_to_quat_xyzw(Rb)
    assert torch.allclose(quat_xyzw_to_matrix(quat_xyzw_slerp(qa, qb, 0.0)), Ra, atol=1e-10)
    assert torch.allclose(quat_xyzw_to_matrix(quat_xyzw_slerp(qa, qb, 1.0)), Rb, atol=1e-10)
    mid = quat_xyzw_to_matrix(quat_xyzw_slerp(qa, qb, 0.5))
    assert rotation_rigidity_error(mid).max() < 1e-12
    # the midpoint is equidistant and half way along the geodesic
    da = rotation_angle(Ra.transpose(-1, -2) @ mid)
    db = rotation_angle(mid.transpose(-1, -2) @ Rb)
    assert torch.allclose(da, db, atol=1e-9)
    assert torch.allclose(da + db, rotation_angle(Ra.transpose(-1, -2) @ Rb), atol=1e-9)


def test_slerp_of_identical_quaternions_is_stable():
    q = matrix_to_quat_xyzw(random_rotations(3, 5))
    out = quat_xyzw_slerp(q, q.clone(), 0.5)
    assert torch.isfinite(out).all() and torch.allclose(out, q, atol=1e-15)


def test_shape_error_names_argument():
    with pytest.raises(ShapeError, match="quat_xyzw must have shape"):
        quat_xyzw_to_matrix(torch.zeros(3, 3))
