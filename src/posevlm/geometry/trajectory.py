"""Trajectory utilities over S cameras: reference frames, scale normalisation, pose distances, the
Lie-scalar pose index and temporal-pair merging.

Shape notation: S frames, T = S / 2 temporal pairs, leading ``...`` batch dims broadcast.
All inputs are ``w2c_opencv`` (..., S, 4, 4) unless a name says otherwise. No Python loops over frames.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry._checks import se3_arg
from posevlm.geometry.quaternion import matrix_to_quat_xyzw, quat_xyzw_slerp, quat_xyzw_to_matrix
from posevlm.geometry.rotation import geodesic_angle, pairwise_geodesic_angle, project_to_so3
from posevlm.geometry.se3 import camera_centers, se3_from_Rt, w2c_to_c2w

__all__ = [
    "Reference",
    "pairwise_pose_distances",
    "pose_distance_matrix",
    "reference_index",
    "rereference",
    "normalize_translation_scale",
    "lie_scalar_pose_index",
    "merge_temporal_pairs",
    "combined_pose_distance",
]

#: ``"first"``, ``"medoid"`` or an explicit frame index.
Reference = Literal["first", "medoid"] | int
MedoidMetric = Literal["normalized", "legacy_raw"]
ScaleMode = Literal["max", "median", "mean", "none"]


def _frames(w2c_opencv: Tensor) -> Tensor:
    w2c = se3_arg(w2c_opencv, "w2c_opencv")
    if w2c.dim() < 3:
        raise ShapeError(f"w2c_opencv must be (..., S, 4, 4); got {tuple(w2c.shape)}", name="w2c_opencv")
    return w2c


def pairwise_pose_distances(w2c_opencv: Tensor) -> tuple[Tensor, Tensor]:
    """Camera-centre distances and geodesic rotation angles between all pairs of frames.

    Args:
        w2c_opencv: (..., S, 4, 4).
    Returns:
        center_distance: (..., S, S) Euclidean distance of camera centres (world units).
        angle: (..., S, S) geodesic angle in radians.
    Both are symmetric with an exact zero diagonal and invariant to any global rigid transform.
    """
    w2c = _frames(w2c_opencv)
    c = camera_centers(w2c)
    return _pairwise_center_distance(c), pairwise_geodesic_angle(w2c[..., :3, :3])


def _pairwise_center_distance(c: Tensor) -> Tensor:
    """(..., S, 3) -> (..., S, S) exact Euclidean distances (cdist without the |a|^2 + |b|^2 - 2ab
    shortcut, whose cancellation would leave non-zero self distances)."""
    return torch.cdist(c, c, compute_mode="donot_use_mm_for_euclid_dist")


def combined_pose_distance(theta: Tensor, dist: Tensor, lam: float = 1.0) -> Tensor:
    """``sqrt(theta^2 + (lam * dist)^2)`` elementwise, differentiable everywhere.

    The value is ``torch.sqrt`` of the same expression, bit for bit. Where theta and dist are both 0 (a frame and
    itself, the reference frame) the norm has a kink and ``sqrt'(0) = inf`` would turn every gradient through it
    into NaN; there the gradient is 0 (a subgradient, and the central finite difference).
    """
    sq = theta * theta + (lam * dist) ** 2
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def pose_distance_matrix(
    w2c_opencv: Tensor, *, lam: float = 1.0, metric: MedoidMetric = "normalized"
) -> Tensor:
    """(..., S, S) combined pose distance ``sqrt(theta_ij^2 + lam^2 (d_ij / scale)^2)``.

    ``metric="normalized"`` divides centre distances by the trajectory diameter (max pairwise
    distance; 1 for a static trajectory), the pairwise analogue of the per-trajectory normalisation
    of the pose index. ``"legacy_raw"`` uses raw world units, as the reference code's medoid does.
    """
    if metric not in ("normalized", "legacy_raw"):
        raise ConfigError(f"metric must be 'normalized' or 'legacy_raw'; got {metric!r}", field="metric", value=metric)
    d, theta = pairwise_pose_distances(w2c_opencv)
    if metric == "normalized":
        diameter = d.amax(dim=(-1, -2), keepdim=True)
        d = d / torch.where(diameter > 0, diameter, torch.ones_like(diameter))
    return combined_pose_distance(theta, d, lam)


def reference_index(
    w2c_opencv: Tensor, reference: Reference = "first", *, lam: float = 1.0, metric: MedoidMetric = "normalized"
) -> Tensor:
    """Index of the reference frame per batch element: (...,) int64.

    ``"medoid"`` = argmin_i sum_j D(i, j) with :func:`pose_distance_matrix` (lowest index wins ties).
    """
    w2c = _frames(w2c_opencv)
    batch, s = w2c.shape[:-3], w2c.shape[-3]
    if isinstance(reference, bool) or not isinstance(reference, (int, str)):
        raise ConfigError(f"reference must be 'first', 'medoid' or an int; got {reference!r}", field="reference")
    if isinstance(reference, int):
        if not -s <= reference < s:
            raise ConfigError(f"reference index {reference} is out of range for {s} frames", field="reference")
        return torch.full(batch, reference % s, dtype=torch.long, device=w2c.device)
    if reference == "first":
        return torch.zeros(batch, dtype=torch.long, device=w2c.device)
    if reference == "medoid":
        return pose_distance_matrix(w2c, lam=lam, metric=metric).sum(-1).argmin(-1)
    raise ConfigError(f"reference must be 'first', 'medoid' or an int; got {reference!r}", field="reference")


def _gather_frame(x: Tensor, index: Tensor) -> Tensor:
    """x: (..., S, *rest), index: (...) -> (..., *rest)."""
    rest = x.shape[index.dim() + 1 :]
    idx = index.reshape(*index.shape, 1, *([1] * len(rest))).expand(*index.shape, 1, *rest)
    return torch.gather(x, index.dim(), idx).squeeze(index.dim())


def rereference(w2c_opencv: Tensor, reference: Reference | Tensor = "first", **medoid_kw) -> Tensor:
    """Re-express all cameras in the reference camera's frame, so that camera is the identity.

    ``w2c'_i = w2c_i @ c2w_ref``. Relative poses (and so every pose distance) are unchanged.
    ``reference`` may also be a (...) tensor of indices from :func:`reference_index`.
    """
    w2c = _frames(w2c_opencv)
    idx = reference if isinstance(reference, Tensor) else reference_index(w2c, reference, **medoid_kw)
    c2w_ref = w2c_to_c2w(_gather_frame(w2c, idx))
    return w2c @ c2w_ref[..., None, :, :]


def normalize_translation_scale(
    w2c_opencv: Tensor, mode: ScaleMode = "max", reference: Reference | Tensor = "first"
) -> tuple[Tensor, Tensor]:
    """Scale the scene about the reference camera so the chosen camera distance becomes 1.

    ``mode``: ``"max"``, ``"median"`` or ``"mean"`` of the centre distances of the other frames to the
    reference, or ``"none"``. A static trajectory (scale 0) is returned unchanged with scale 1.
    Rotations are untouched; centres map to ``c_ref + (c - c_ref) / scale``.

    Returns:
        (w2c_opencv (..., S, 4, 4), scale (...)).
    """
    if mode not in ("max", "median", "mean", "none"):
        raise ConfigError(f"mode must be max, median, mean or none; got {mode!r}", field="mode", value=mode)
    w2c = _frames(w2c_opencv)
    idx = reference if isinstance(reference, Tensor) else reference_index(w2c, reference)
    c = camera_centers(w2c)
    c_ref = _gather_frame(c, idx)
    d = (c - c_ref[..., None, :]).norm(dim=-1)  # (..., S)
    if mode == "none":
        scale = torch.ones(d.shape[:-1], dtype=d.dtype, device=d.device)
    else:
        others = torch.ones_like(d, dtype=torch.bool)
        others.scatter_(-1, idx[..., None], False)
        if w2c.shape[-3] == 1:
            others[...] = True
        d_others = d.masked_select(others).reshape(*d.shape[:-1], -1)
        if mode == "max":
            scale = d_others.amax(-1)
        elif mode == "median":
            scale = d_others.quantile(0.5, dim=-1)
        else:
            scale = d_others.mean(-1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    c_new = c_ref[..., None, :] + (c - c_ref[..., None, :]) / scale[..., None, None]
    rot = w2c[..., :3, :3]
    t_new = -(rot @ c_new[..., :, None])[..., 0]
    return se3_from_Rt(rot, t_new), scale


def lie_scalar_pose_index(
    w2c_opencv: Tensor,
    *,
    lam: float = 1.0,
    reference: Reference | Tensor = "first",
    traj_scale_norm: bool = True,
    global_normalize: bool = True,
    reorth: bool = True,
    medoid_metric: MedoidMetric = "normalized",
) -> Tensor:
    """Scalar "distance from the reference view" per frame (positions spec section 2.3), vectorised.

    ``P_i = sqrt(theta_i^2 + lam^2 d_i^2)`` with theta_i the geodesic angle between frame i and the
    reference, d_i the camera-centre distance to the reference divided by its maximum over the
    trajectory (``traj_scale_norm``), then P divided by its maximum (``global_normalize``) so
    P is in [0, 1] with P_ref = 0. A static trajectory returns zeros (the reference code raised).

    Invariant to any global rigid transform and any global scale of the scene; not invariant when
    camera-to-world poses are passed as world-to-camera (use this as a convention check).

    Differentiable w.r.t. ``w2c_opencv`` with finite gradients everywhere, the reference frame included (the
    kink of the norm at P = 0 and of the angle at the identity get the zero subgradient; ``reorth`` has an
    analytic backward, see :func:`project_to_so3`). The reference index and the maxima are piecewise constant.

    Args:
        w2c_opencv: (..., S, 4, 4) world-to-camera, OpenCV axes.
    Returns:
        (..., S) pose index in the input dtype.
    """
    w2c = _frames(w2c_opencv)
    idx = reference if isinstance(reference, Tensor) else reference_index(
        w2c, reference, lam=lam, metric=medoid_metric
    )
    centers = camera_centers(w2c)
    rot_c2w = w2c[..., :3, :3].transpose(-1, -2)
    if reorth:
        rot_c2w = project_to_so3(rot_c2w)
    theta = geodesic_angle(_gather_frame(rot_c2w, idx)[..., None, :, :], rot_c2w)
    d = (centers - _gather_frame(centers, idx)[..., None, :]).norm(dim=-1)
    if traj_scale_norm:
        d_max = d.amax(-1, keepdim=True)
        d = d / torch.where(d_max > 0, d_max, torch.ones_like(d_max))
    p = combined_pose_distance(theta, d, lam)  # finite gradients at the reference (P = 0)
    if global_normalize:
        p_max = p.amax(-1, keepdim=True)
        p = p / torch.where(p_max > 0, p_max, torch.ones_like(p_max))
    return p


def merge_temporal_pairs(w2c_opencv: Tensor, mode: Literal["first", "mean"] = "mean") -> Tensor:
    """Merge the cameras of consecutive frame pairs (2t, 2t + 1) into one camera per temporal patch.

    ``"first"`` keeps the first camera of each pair. ``"mean"`` takes the SLERP midpoint of the two
    rotations and the mean of the two camera centres, then rebuilds ``t = -R c``.

    Args:
        w2c_opencv: (..., S, 4, 4) with S even (pad odd counts by repeating the last frame first).
    Returns:
        (..., S / 2, 4, 4).
    """
    w2c = _frames(w2c_opencv)
    s = w2c.shape[-3]
    if s % 2:
        raise ShapeError(
            f"merge_temporal_pairs needs an even frame count; got S={s}. Repeat the last frame "
            "(as the Qwen processors do) before merging.",
            name="w2c_opencv",
            shape=tuple(w2c.shape),
        )
    pairs = w2c.reshape(*w2c.shape[:-3], s // 2, 2, 4, 4)
    if mode == "first":
        return pairs[..., 0, :, :].clone()
    if mode != "mean":
        raise ConfigError(f"mode must be 'first' or 'mean'; got {mode!r}", field="mode", value=mode)
    q = matrix_to_quat_xyzw(pairs[..., :3, :3])
    rot = quat_xyzw_to_matrix(quat_xyzw_slerp(q[..., 0, :], q[..., 1, :], 0.5))
    center = camera_centers(pairs).mean(-2)
    return se3_from_Rt(rot, -(rot @ center[..., :, None])[..., 0])
