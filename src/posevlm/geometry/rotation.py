"""Rotation matrices: projection onto SO(3), stable geodesic angles, axis-angle, rigidity checks.

Shapes: (..., 3, 3) rotation matrices acting on column vectors; angles in radians.
"""

from __future__ import annotations

import torch
from torch import Tensor

from posevlm.geometry._checks import as_float_tensor, check_trailing

__all__ = [
    "project_to_so3",
    "rotation_angle",
    "geodesic_angle",
    "pairwise_geodesic_angle",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rotation_rigidity_error",
]


def project_to_so3(matrix: Tensor) -> Tensor:
    """Nearest rotation (Frobenius) to each (..., 3, 3) matrix: SVD U diag(1, 1, det(UV^T)) V^T.

    The determinant fix turns a reflection into the nearest proper rotation. Differentiable with finite
    gradients at rotations too (where the SVD's own backward divides by ``s_i^2 - s_j^2 = 0``): the backward is
    the polar factor's derivative ``dR = U' [(W - W^T)_ij / (s'_i + s'_j)] V^T``, ``W = U'^T dA V``, with U' and the
    signed singular values s' including the determinant fix (0 where ``s'_i + s'_j = 0``: the projection of a
    matrix with two opposite signed singular values is not unique).
    """
    m = check_trailing(as_float_tensor(matrix, "matrix"), "matrix", (3, 3))
    return _SpecialPolar.apply(m)


def _special_polar(m: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(rotation, U' = U D, signed singular values D s, V) with D = diag(1, 1, det(U V^T))."""
    u, s, vh = torch.linalg.svd(m)
    det = torch.det(u @ vh)
    d = torch.ones(*m.shape[:-2], 3, dtype=m.dtype, device=m.device)
    d[..., 2] = torch.sign(det) + (det == 0).to(m.dtype)  # det is +-1 for full-rank input
    return u @ torch.diag_embed(d) @ vh, u * d[..., None, :], s * d, vh.transpose(-1, -2)


class _SpecialPolar(torch.autograd.Function):
    """Forward: :func:`_special_polar`'s rotation (the SVD formula, unchanged values). Backward: its derivative."""

    @staticmethod
    def forward(ctx, m: Tensor) -> Tensor:
        rotation, u, s, v = _special_polar(m)
        ctx.save_for_backward(u, s, v)
        return rotation

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        u, s, v = ctx.saved_tensors
        w = u.transpose(-1, -2) @ grad @ v  # <G, U' X V^T> = <W, X>
        denom = s[..., :, None] + s[..., None, :]
        ok = denom != 0
        k = torch.where(ok, (w - w.transpose(-1, -2)) / torch.where(ok, denom, torch.ones_like(denom)), 0.0)
        return u @ k @ v.transpose(-1, -2)


def _skew_vector(m: Tensor) -> Tensor:
    """(m - m^T)^vee for (..., 3, 3): equals 2 sin(theta) * axis for a rotation."""
    return torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], dim=-1
    )


def rotation_angle(rotation: Tensor) -> Tensor:
    """Angle in [0, pi] of each (..., 3, 3) rotation, ``atan2(|vee(R - R^T)|, tr R - 1)``.

    Unlike ``arccos((tr R - 1) / 2)`` this keeps full precision near 0 and is exact at 0, pi/2 and pi.
    """
    r = check_trailing(as_float_tensor(rotation, "rotation"), "rotation", (3, 3))
    trace = r.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.atan2(_skew_vector(r).norm(dim=-1), trace - 1)


def geodesic_angle(rotation_a: Tensor, rotation_b: Tensor) -> Tensor:
    """Geodesic distance on SO(3), the angle of ``R_a^T R_b``; (..., 3, 3) x (..., 3, 3) -> (...).

    Symmetric, and the same whether both inputs are world-to-camera or both camera-to-world.
    """
    a = check_trailing(as_float_tensor(rotation_a, "rotation_a"), "rotation_a", (3, 3))
    b = check_trailing(as_float_tensor(rotation_b, "rotation_b"), "rotation_b", (3, 3))
    return rotation_angle(a.transpose(-1, -2) @ b)


#: Rows of the (S, S) output computed per block: keeps temporaries cache-sized (page faults on
#: large temporaries, not arithmetic, dominate at S = 2000).
PAIRWISE_ROW_BLOCK = 128


def pairwise_geodesic_angle(rotations: Tensor) -> Tensor:
    """(..., S, 3, 3) -> (..., S, S) geodesic angles between all pairs.

    ``tr(R_i^T R_j)`` and the skew part of ``R_i^T R_j`` are bilinear in the two matrices, so each is
    one (S, k) x (k, S) product of rotation columns; rows are processed in blocks with in-place ops.
    """
    r = check_trailing(as_float_tensor(rotations, "rotations"), "rotations", (3, 3))
    s = r.shape[-3]
    col = [r[..., :, k] for k in range(3)]  # (..., S, 3) each; M_ab = col_a(i) . col_b(j), M = R_i^T R_j
    # M_ab - M_ba as one product: [col_a, -col_b](i) . [col_b, col_a](j), for (a, b) = (2, 1), (0, 2), (1, 0)
    pairs = ((2, 1), (0, 2), (1, 0))
    left = [torch.cat([col[a], -col[b]], dim=-1) for a, b in pairs]
    right = [torch.cat([col[b], col[a]], dim=-1).transpose(-1, -2) for a, b in pairs]
    flat = r.flatten(-2)
    flat_t = flat.transpose(-1, -2)
    track = torch.is_grad_enabled() and r.requires_grad  # autograd: the same arithmetic, out of place
    out = torch.empty(*r.shape[:-3], s, s, dtype=r.dtype, device=r.device)
    for start in range(0, s, PAIRWISE_ROW_BLOCK):  # upper triangle by row blocks, mirrored
        rows = slice(start, start + PAIRWISE_ROW_BLOCK)
        v = left[0][..., rows, :] @ right[0][..., start:]
        sin2 = v * v if track else v.mul_(v)
        for k in (1, 2):
            v = left[k][..., rows, :] @ right[k][..., start:]
            sin2 = torch.addcmul(sin2, v, v) if track else sin2.addcmul_(v, v)
        cos2 = flat[..., rows, :] @ flat_t[..., start:]  # tr(R_i^T R_j) = 1 + 2 cos(theta)
        if track:  # sqrt'(0) = inf: equal rotations (the diagonal) get a zero gradient instead of NaN
            sin = torch.where(sin2 > 0, torch.where(sin2 > 0, sin2, 1.0).sqrt(), 0.0)
            block = torch.atan2(sin, cos2 - 1)
        else:
            block = torch.atan2(sin2.sqrt_(), cos2.sub_(1))
        out[..., rows, start:] = block
        out[..., start:, rows] = block.transpose(-1, -2)
    out.diagonal(dim1=-2, dim2=-1).zero_()  # exact: the fused products need not cancel bit for bit
    return out


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues: (..., 3) rotation vector (axis * angle, radians) -> (..., 3, 3).

    Uses the Taylor series of sin(x)/x and (1 - cos x)/x^2 below 1e-4 rad so it is exact near 0.
    """
    v = check_trailing(as_float_tensor(axis_angle, "axis_angle"), "axis_angle", (3,))
    theta_sq = (v * v).sum(-1)
    theta = theta_sq.sqrt()
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta_sq / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta_sq / 24, (1 - torch.cos(safe)) / (safe * safe))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_axis_angle(rotation: Tensor) -> Tensor:
    """(..., 3, 3) rotation -> (..., 3) rotation vector with angle in [0, pi]."""
    from posevlm.geometry.quaternion import matrix_to_quat_xyzw

    q = matrix_to_quat_xyzw(rotation)  # w >= 0
    xyz, w = q[..., :3], q[..., 3]
    s = xyz.norm(dim=-1)
    angle = 2 * torch.atan2(s, w)
    small = s < 1e-8
    scale = torch.where(small, 2.0 / torch.where(small, w, torch.ones_like(w)), angle / torch.where(small, 1, s))
    return xyz * scale[..., None]


def rotation_rigidity_error(rotation: Tensor) -> Tensor:
    """(..., 3, 3) -> (...) max(|R^T R - I|_max, |det R - 1|): 0 for an exact rotation."""
    r = check_trailing(as_float_tensor(rotation, "rotation"), "rotation", (3, 3))
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    ortho = (r.transpose(-1, -2) @ r - eye).abs().amax(dim=(-1, -2))
    return torch.maximum(ortho, (torch.det(r) - 1).abs())
