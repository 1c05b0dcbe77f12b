"""Unit quaternions with the component order in every name.

``quat_xyzw``: scalar last (VGGT, scipy). ``quat_wxyz``: scalar first (pytorch3d, Hamilton textbooks).
All functions are batched over leading dims and keep the input dtype.
Rotation matrices act on column vectors: ``x' = R @ x``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from posevlm.geometry._checks import as_float_tensor, check_trailing

__all__ = [
    "quat_xyzw_to_matrix",
    "matrix_to_quat_xyzw",
    "quat_wxyz_to_matrix",
    "matrix_to_quat_wxyz",
    "quat_xyzw_to_wxyz",
    "quat_wxyz_to_xyzw",
    "quat_xyzw_standardize",
    "quat_xyzw_multiply",
    "quat_xyzw_slerp",
]


def quat_xyzw_to_wxyz(quat_xyzw: Tensor) -> Tensor:
    """Reorder (..., 4) scalar-last to scalar-first."""
    q = check_trailing(as_float_tensor(quat_xyzw, "quat_xyzw"), "quat_xyzw", (4,))
    return torch.cat([q[..., 3:], q[..., :3]], dim=-1)


def quat_wxyz_to_xyzw(quat_wxyz: Tensor) -> Tensor:
    """Reorder (..., 4) scalar-first to scalar-last."""
    q = check_trailing(as_float_tensor(quat_wxyz, "quat_wxyz"), "quat_wxyz", (4,))
    return torch.cat([q[..., 1:], q[..., :1]], dim=-1)


def quat_xyzw_standardize(quat_xyzw: Tensor) -> Tensor:
    """Normalise to unit length and flip the sign so that w >= 0 (q and -q are one rotation)."""
    q = check_trailing(as_float_tensor(quat_xyzw, "quat_xyzw"), "quat_xyzw", (4,))
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., 3:] < 0, -q, q)


def quat_xyzw_to_matrix(quat_xyzw: Tensor) -> Tensor:
    """(..., 4) quaternion (x, y, z, w) -> (..., 3, 3) rotation matrix.

    Unnormalised quaternions are accepted: the formula divides by |q|^2 (as VGGT's decoder does).
    """
    q = check_trailing(as_float_tensor(quat_xyzw, "quat_xyzw"), "quat_xyzw", (4,))
    x, y, z, w = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    m = torch.stack(
        [
            1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
            s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
            s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat_xyzw(rotation: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (x, y, z, w) with w >= 0.

    Branch-free: four candidate quaternions (one per largest diagonal term) are formed and the best
    conditioned one is picked per matrix, so the result is accurate for every angle including pi.
    """
    m = check_trailing(as_float_tensor(rotation, "rotation"), "rotation", (3, 3))
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4*|component|^2 for w, x, y, z
    q_abs_sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    q_abs = torch.sqrt(torch.clamp(q_abs_sq, min=0))
    # candidate (w, x, y, z) scaled by 2*q_abs[k] for each pivot k
    cand = torch.stack(
        [
            torch.stack([q_abs_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, q_abs_sq[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, q_abs_sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs_sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    floor = torch.tensor(0.1, dtype=m.dtype, device=m.device)
    cand = cand / (2.0 * torch.maximum(q_abs[..., None], floor))
    best = q_abs.argmax(dim=-1)
    wxyz = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return quat_xyzw_standardize(quat_wxyz_to_xyzw(wxyz))


def quat_wxyz_to_matrix(quat_wxyz: Tensor) -> Tensor:
    """(..., 4) quaternion (w, x, y, z) -> (..., 3, 3) rotation matrix."""
    return quat_xyzw_to_matrix(quat_wxyz_to_xyzw(quat_wxyz))


def matrix_to_quat_wxyz(rotation: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (w, x, y, z) with w >= 0."""
    return quat_xyzw_to_wxyz(matrix_to_quat_xyzw(rotation))


def quat_xyzw_multiply(a_xyzw: Tensor, b_xyzw: Tensor) -> Tensor:
    """Hamilton product a * b (rotation b first, then a), both (..., 4) scalar-last."""
    a = check_trailing(as_float_tensor(a_xyzw, "a_xyzw"), "a_xyzw", (4,))
    b = check_trailing(as_float_tensor(b_xyzw, "b_xyzw"), "b_xyzw", (4,))
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        dim=-1,
    )


def quat_xyzw_slerp(q0_xyzw: Tensor, q1_xyzw: Tensor, t: float | Tensor) -> Tensor:
    """Spherical linear interpolation along the shortest arc, (..., 4) scalar-last, unit output.

    ``t`` is a float or a tensor broadcastable against (..., 1). ``t = 0`` gives q0, ``t = 1`` gives q1
    (up to sign). Falls back to normalised linear interpolation when the two rotations are within
    ~1e-6 rad of each other.
    """
    q0 = check_trailing(as_float_tensor(q0_xyzw, "q0_xyzw"), "q0_xyzw", (4,))
    q1 = check_trailing(as_float_tensor(q1_xyzw, "q1_xyzw"), "q1_xyzw", (4,))
    q0 = q0 / q0.norm(dim=-1, keepdim=True)
    q1 = q1 / q1.norm(dim=-1, keepdim=True)
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    # angle via atan2 of the chord lengths: accurate for nearly equal quaternions
    omega = 2 * torch.atan2((q1 - q0).norm(dim=-1, keepdim=True), (q1 + q0).norm(dim=-1, keepdim=True))
    sin_omega = torch.sin(omega)
    small = sin_omega < 1e-6
    safe = torch.where(small, torch.ones_like(sin_omega), sin_omega)
    w0 = torch.where(small, 1 - t, torch.sin((1 - t) * omega) / safe)
    w1 = torch.where(small, t, torch.sin(t * omega) / safe)
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)
