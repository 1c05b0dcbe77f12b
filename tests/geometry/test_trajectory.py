import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import random_rotations, random_w2c, seeds

from posevlm.errors import ShapeError
from posevlm.geometry.trajectory import combined_pose_distance
from posevlm.geometry import (
    camera_centers,
    geodesic_angle,
    lie_scalar_pose_index,
    merge_temporal_pairs,
    normalize_translation_scale,
    pairwise_pose_distances,
    pose_distance_matrix,
    reference_index,
    rereference,
    rotation_rigidity_error,
    se3_from_Rt,
    w2c_to_c2w,
)

EYE = torch.eye(4, dtype=torch.float64)


def global_rigid(seed):
    return se3_from_Rt(random_rotations(seed + 99, 1)[0], torch.from_numpy(np.random.default_rng(seed).normal(size=3) * 5))


def scale_scene(w2c, s):
    """Scale the world by s: centres scale, rotations stay."""
    out = w2c.clone()
    out[..., :3, 3] *= s
    return out


def reference_lie_scalar(c2w, lam, r):
    """Direct loop transcription of positions.md 2.3 (arccos form) for parity."""
    R, c = c2w[:, :3, :3].numpy(), c2w[:, :3, 3].numpy()
    theta = np.array([np.arccos(np.clip((np.trace(R[r].T @ R[i]) - 1) / 2, -1, 1)) for i in range(len(R))])
    d = np.linalg.norm(c - c[r], axis=1)
    d = d / d.max() if d.max() > 0 else d
    p = np.sqrt(theta**2 + lam**2 * d**2)
    return p / p.max() if p.max() > 0 else p


@given(seeds, st.sampled_from([0.1, 1.0, 5.0]), st.sampled_from(["first", "medoid", 3]))
def test_pose_index_parity_range_and_invariances(seed, lam, reference):
    w2c = random_w2c(seed, 9)
    p = lie_scalar_pose_index(w2c, lam=lam, reference=reference)
    r = int(reference_index(w2c, reference, lam=lam))
    assert np.allclose(p.numpy(), reference_lie_scalar(w2c_to_c2w(w2c), lam, r), atol=1e-6)
    assert p.min() >= 0 and p.max() == pytest.approx(1.0) and p[r] == pytest.approx(0.0, abs=1e-7)
    # a global rigid transform of the world (right-multiplying every w2c) changes nothing
    assert torch.allclose(lie_scalar_pose_index(w2c @ global_rigid(seed), lam=lam, reference=reference), p, atol=1e-9)
    # nor does a global scale of the scene
    assert torch.allclose(lie_scalar_pose_index(scale_scene(w2c, 37.5), lam=lam, reference=reference), p, atol=1e-9)


def test_pose_index_convention_guard_detects_c2w_passed_as_w2c():
    w2c = random_w2c(7, 16)
    p = lie_scalar_pose_index(w2c)
    wrong = lie_scalar_pose_index(w2c_to_c2w(w2c))
    assert (p - wrong).abs().max() > 0.05


def test_pose_index_static_trajectory_is_zero_not_error():
    w2c = random_w2c(1, 1).expand(6, 4, 4)
    p = lie_scalar_pose_index(w2c, reference="medoid")
    assert torch.equal(p, torch.zeros(6, dtype=torch.float64))
    # pure rotation about a fixed centre: translation term vanishes, no division by zero
    rot_only = se3_from_Rt(random_rotations(2, 6), torch.zeros(6, 3, dtype=torch.float64))
    assert torch.isfinite(lie_scalar_pose_index(rot_only)).all()


def test_pose_index_batched_equals_unbatched():
    w2c = torch.stack([random_w2c(s, 8) for s in range(3)])
    batched = lie_scalar_pose_index(w2c, reference="medoid")
    for b in range(3):
        assert torch.allclose(batched[b], lie_scalar_pose_index(w2c[b], reference="medoid"))


@given(seeds)
def test_pairwise_distances_invariant_and_symmetric(seed):
    w2c = random_w2c(seed, 7)
    d, a = pairwise_pose_distances(w2c)
    d2, a2 = pairwise_pose_distances(w2c @ global_rigid(seed))
    assert torch.allclose(d, d2, atol=1e-9) and torch.allclose(a, a2, atol=1e-9)
    assert torch.equal(d.diagonal(), torch.zeros(7, dtype=torch.float64)) and torch.allclose(d, d.T)
    c = camera_centers(w2c)
    assert torch.allclose(d[2, 5], (c[2] - c[5]).norm())


@given(seeds)
def test_medoid_is_argmin_of_row_sums(seed):
    w2c = random_w2c(seed, 11)
    D = pose_distance_matrix(w2c, lam=0.7)
    assert int(reference_index(w2c, "medoid", lam=0.7)) == int(D.sum(1).argmin())
    # the normalised metric is scale free; the legacy raw metric is not
    assert torch.allclose(pose_distance_matrix(scale_scene(w2c, 10.0), lam=0.7), D, atol=1e-9)


@given(seeds, st.sampled_from(["first", "medoid", 4]))
def test_rereference_makes_reference_identity_and_keeps_relative_poses(seed, reference):
    w2c = random_w2c(seed, 8)
    out = rereference(w2c, reference)
    r = int(reference_index(w2c, reference))
    assert torch.allclose(out[r], EYE, atol=1e-12)
    rel = w2c[2] @ w2c_to_c2w(w2c)[5]
    assert torch.allclose(out[2] @ w2c_to_c2w(out)[5], rel, atol=1e-10)


@given(seeds, st.sampled_from(["max", "median", "mean"]))
def test_translation_normalisation(seed, mode):
    w2c = random_w2c(seed, 9)
    out, scale = normalize_translation_scale(w2c, mode, "first")
    c = camera_centers(out)
    d = (c[1:] - c[0]).norm(dim=-1)
    stat = {"max": d.max(), "median": d.quantile(0.5), "mean": d.mean()}[mode]
    assert float(stat) == pytest.approx(1.0)
    assert torch.allclose(out[:, :3, :3], w2c[:, :3, :3])
    out_scaled, _ = normalize_translation_scale(scale_scene(w2c, 4.0), mode, "first")
    # scale is removed: relative geometry after normalisation is the same for a scaled scene
    assert torch.allclose(pairwise_pose_distances(out_scaled)[0], pairwise_pose_distances(out)[0], atol=1e-9)
    static, s = normalize_translation_scale(w2c[:1].expand(4, 4, 4), mode)
    assert float(s) == 1.0 and torch.allclose(static, w2c[:1].expand(4, 4, 4))


@given(seeds)
def test_merge_pairs_mean_and_first(seed):
    w2c = random_w2c(seed, 8)
    first = merge_temporal_pairs(w2c, "first")
    assert torch.equal(first, w2c[0::2])
    mean = merge_temporal_pairs(w2c, "mean")
    assert mean.shape == (4, 4, 4)
    assert rotation_rigidity_error(mean[:, :3, :3]).max() < 1e-12  # SLERP mean gives a rotation
    c = camera_centers(w2c).reshape(4, 2, 3).mean(1)
    assert torch.allclose(camera_centers(mean), c, atol=1e-10)
    ra, rb, rm = w2c[0::2, :3, :3], w2c[1::2, :3, :3], mean[:, :3, :3]
    assert torch.allclose(geodesic_angle(ra, rm), geodesic_angle(rm, rb), atol=1e-9)
    # merging a duplicated pair returns the camera itself
    dup = w2c[:2].repeat_interleave(2, dim=0)
    assert torch.allclose(merge_temporal_pairs(dup, "mean"), w2c[:2], atol=1e-12)


def test_merge_pairs_odd_count_is_a_clear_error():
    with pytest.raises(ShapeError, match="even frame count"):
        merge_temporal_pairs(random_w2c(0, 5))


def test_medoid_of_evenly_spaced_cameras_is_the_middle_one():
    """The pose index's medoid reference (diameter-normalised pairwise metric, the pose index's normalisation
    applied pairwise) is the central camera of a straight, evenly spaced trajectory."""
    w2c = se3_from_Rt(torch.eye(3, dtype=torch.float64).expand(9, 3, 3).clone(),
                      -torch.arange(9, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.0, 0.0]))
    assert int(reference_index(w2c, "medoid")) == 4
    p = lie_scalar_pose_index(w2c, reference="medoid")
    assert float(p[4]) == 0.0 and torch.allclose(p, p.flip(0))


# ------------------------------------------------------------------------------------------- gradients
def top_rows(w2c):
    """(S, 3, 4) leaf with gradients: the free entries of (S, 4, 4) w2c (the functions pad the bottom row)."""
    return w2c[..., :3, :].clone().requires_grad_(True)


def test_combined_pose_distance_values_are_torch_sqrt_bit_for_bit_with_zero_gradient_at_zero():
    theta = torch.tensor([0.0, 0.3, 0.0, 1e-160, 2.0], dtype=torch.float64, requires_grad=True)
    dist = torch.tensor([0.0, 0.0, 0.4, 0.0, 1.5], dtype=torch.float64, requires_grad=True)
    out = combined_pose_distance(theta, dist, 0.7)
    assert torch.equal(out, torch.sqrt(theta * theta + (0.7 * dist) ** 2))
    out.sum().backward()
    assert theta.grad.isfinite().all() and dist.grad.isfinite().all()
    assert theta.grad[0] == 0 and dist.grad[0] == 0 and theta.grad[1] == 1 and dist.grad[2] == 0.7


@pytest.mark.parametrize("reference", ["first", "medoid", 2])
@pytest.mark.parametrize("reorth", [True, False])
def test_pose_index_gradcheck_float64(reference, reorth):
    """float64 gradcheck of the pose index w.r.t. every w2c entry, the reference frame (P = 0, where
    sqrt'(0) = inf made every gradient NaN) and the SO(3) re-orthogonalisation included."""
    top = top_rows(random_w2c(11, 6))
    fn = lambda t: lie_scalar_pose_index(t, lam=0.7, reference=reference, reorth=reorth)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (top,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["static", "rotation_only", "translation_only", "identity_reference"])
def test_pose_index_gradients_finite_on_degenerate_trajectories(case):
    """Kinks everywhere: equal poses (every P = 0), equal centres (d = 0), equal rotations (theta = 0 at the
    identity of R_ref^T R_i), an exact identity reference. Gradients stay finite; where the index is smooth
    (translation only) they also match finite differences. (Equal centres are a discontinuity, not a kink: any
    move of one centre becomes the trajectory's unit of length, d / max d = 1.)"""
    w2c = random_w2c(12, 5)
    if case == "static":
        w2c = w2c[:1].expand(5, 4, 4).clone()
    elif case == "rotation_only":
        w2c = se3_from_Rt(w2c[:, :3, :3], torch.zeros(5, 3, dtype=torch.float64))  # every centre exactly 0
    elif case == "translation_only":
        w2c = se3_from_Rt(w2c[:1, :3, :3].expand(5, 3, 3), w2c[:, :3, 3])
    else:
        w2c = w2c @ torch.linalg.inv(w2c[0])
        w2c[0] = EYE
    top = top_rows(w2c)
    (lie_scalar_pose_index(top) * torch.arange(1.0, 6.0, dtype=torch.float64)).sum().backward()
    assert top.grad.isfinite().all()
    if case == "translation_only":
        assert torch.autograd.gradcheck(lambda t: lie_scalar_pose_index(t), (top.detach().requires_grad_(True),),
                                        eps=1e-6, atol=1e-6)


def test_pose_distance_matrix_gradcheck_and_pairwise_distances_differentiable():
    top = top_rows(random_w2c(13, 5))
    assert torch.autograd.gradcheck(lambda t: pose_distance_matrix(t, lam=0.5), (top,), eps=1e-6, atol=1e-6)
    dist, angle = pairwise_pose_distances(top)
    (dist.sum() + angle.sum()).backward()
    assert top.grad.isfinite().all()
