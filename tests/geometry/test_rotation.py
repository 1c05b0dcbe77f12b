import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from strategies import random_rotations, seeds

from posevlm.geometry import (
    axis_angle_to_matrix,
    geodesic_angle,
    matrix_to_axis_angle,
    pairwise_geodesic_angle,
    project_to_so3,
    rotation_angle,
    rotation_rigidity_error,
)


def rot_about(axis, angle):
    axis = torch.nn.functional.normalize(torch.as_tensor(axis, dtype=torch.float64), dim=-1)
    return axis_angle_to_matrix(axis * angle)


@pytest.mark.parametrize("angle", [0.0, math.pi / 2, math.pi])
def test_geodesic_angle_exact_at_landmarks(angle):
    for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1]):
        R = rot_about(axis, angle)
        # exact for axis-aligned landmark rotations: zero error, not just small
        assert float(rotation_angle(R)) == angle


def test_geodesic_angle_precise_near_zero_where_arccos_fails():
    eps = 1e-9
    R = rot_about([0.3, -0.2, 0.9], eps)
    naive = math.acos(min(1.0, (float(torch.trace(R)) - 1) / 2))
    assert abs(float(rotation_angle(R)) - eps) < 1e-15
    assert abs(naive - eps) > 1e-10  # the textbook arccos form loses this


def test_geodesic_angle_precise_near_pi():
    for delta in (1e-3, 1e-6, 1e-9):
        R = rot_about([1.0, 2.0, -0.5], math.pi - delta)
        assert abs(float(rotation_angle(R)) - (math.pi - delta)) < 1e-12


@given(seeds)
def test_geodesic_angle_symmetric_and_convention_free(seed):
    Ra, Rb = random_rotations(seed, 6), random_rotations(seed + 1, 6)
    ab = geodesic_angle(Ra, Rb)
    assert torch.allclose(ab, geodesic_angle(Rb, Ra))
    # w2c rotations are transposes of c2w rotations: the distance does not change
    assert torch.allclose(ab, geodesic_angle(Ra.transpose(-1, -2), Rb.transpose(-1, -2)), atol=1e-12)
    ref = Rotation.from_matrix(Ra.numpy()).inv() * Rotation.from_matrix(Rb.numpy())
    assert np.allclose(ab.numpy(), ref.magnitude(), atol=1e-12)


@given(seeds, st.integers(1, 12))
def test_pairwise_geodesic_matches_elementwise(seed, n):
    R = random_rotations(seed, n)
    pw = pairwise_geodesic_angle(R)
    ref = geodesic_angle(R[:, None], R[None, :])
    assert torch.allclose(pw, ref, atol=1e-12)
    assert (pw.diagonal() == 0).all()
    assert torch.allclose(pw, pw.T)


@given(seeds)
def test_axis_angle_round_trip_and_scipy(seed):
    v = torch.from_numpy(np.random.default_rng(seed).normal(size=(10, 3)))
    v = v / v.norm(dim=-1, keepdim=True) * torch.rand(10, 1, dtype=torch.float64) * (math.pi - 1e-6)
    R = axis_angle_to_matrix(v)
    assert torch.allclose(R, torch.from_numpy(Rotation.from_rotvec(v.numpy()).as_matrix()), atol=1e-12)
    assert torch.allclose(matrix_to_axis_angle(R), v, atol=1e-9)


def test_axis_angle_small_angles_exact():
    v = torch.tensor([[1e-12, 0, 0], [0, 0, 0], [3e-6, -2e-6, 1e-6]], dtype=torch.float64)
    R = axis_angle_to_matrix(v)
    assert torch.allclose(R, torch.from_numpy(Rotation.from_rotvec(v.numpy()).as_matrix()), atol=1e-15)
    assert torch.allclose(matrix_to_axis_angle(R), v, atol=1e-15)


@given(seeds)
def test_project_to_so3_gives_nearest_rotation_and_fixes_reflection(seed):
    R = random_rotations(seed, 8)
    noisy = R + 1e-3 * torch.from_numpy(np.random.default_rng(seed).normal(size=(8, 3, 3)))
    P = project_to_so3(noisy)
    assert rotation_rigidity_error(P).max() < 1e-12
    assert (P - R).abs().max() < 5e-3
    reflection = R @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    fixed = project_to_so3(reflection)
    assert torch.allclose(torch.det(fixed), torch.ones(8, dtype=torch.float64))
    assert torch.allclose(project_to_so3(R), R, atol=1e-12)


# ------------------------------------------------------------------------------------------- gradients
def test_project_to_so3_gradcheck_at_rotations_noisy_matrices_and_reflections():
    """The SVD's own backward divides by s_i^2 - s_j^2, which is 0 at every rotation (NaN gradients); the
    polar-factor backward is finite there and matches finite differences (float64), also through the
    determinant fix of a reflection. Forward values are the SVD formula's, bit for bit."""
    R = random_rotations(3, 4)
    noisy = R + 0.05 * torch.from_numpy(np.random.default_rng(3).normal(size=(4, 3, 3)))
    reflection = noisy @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    for m in (R, noisy, reflection):
        x = m.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(project_to_so3, (x,), eps=1e-6, atol=1e-7)
        project_to_so3(x).square().sum().backward()
        assert x.grad.isfinite().all()
    u, _, vh = torch.linalg.svd(noisy)
    d = torch.ones(4, 3, dtype=torch.float64)
    d[:, 2] = torch.sign(torch.det(u @ vh))
    assert torch.equal(project_to_so3(noisy), u @ torch.diag_embed(d) @ vh)


def test_geodesic_angle_gradients_finite_at_identity_and_gradcheck():
    """At R_a = R_b the angle has a kink (|omega|): the gradient is 0, never NaN; elsewhere it matches finite
    differences (float64)."""
    R = random_rotations(4, 3)
    a = R.clone().requires_grad_(True)
    geodesic_angle(a, R).sum().backward()
    assert torch.equal(a.grad, torch.zeros_like(a.grad))
    eye = torch.eye(3, dtype=torch.float64).requires_grad_(True)
    geodesic_angle(eye, torch.eye(3, dtype=torch.float64)).backward()
    assert torch.equal(eye.grad, torch.zeros(3, 3, dtype=torch.float64))
    b = random_rotations(5, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(geodesic_angle, (a.detach().requires_grad_(True), b), eps=1e-6, atol=1e-7)


def test_pairwise_geodesic_angle_is_differentiable_with_the_same_values():
    """With autograd on, the blocked in-place products run out of place (an in-place version raised "modified by
    an inplace operation"): same values bit for bit, finite gradients on the diagonal and for repeated
    rotations, gradcheck passes (float64)."""
    R = torch.cat([random_rotations(6, 5), random_rotations(6, 1)])  # frame 5 repeats frame 0
    expected = pairwise_geodesic_angle(R)
    x = R.clone().requires_grad_(True)
    out = pairwise_geodesic_angle(x)
    assert torch.equal(out.detach(), expected)
    (out * torch.arange(36, dtype=torch.float64).view(6, 6)).sum().backward()
    assert x.grad.isfinite().all() and x.grad.abs().max() > 0
    y = random_rotations(7, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(pairwise_geodesic_angle, (y,), eps=1e-6, atol=1e-7)
