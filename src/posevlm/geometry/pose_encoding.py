"""VGGT's 9-number camera encoding ``absT_quaR_FoV`` <-> extrinsics + intrinsics.

Layout of the last dim (see shared spec models.md section 1.6):

====== ============================================================
0..2   translation t of the world-to-camera transform (OpenCV axes)
3..6   rotation of the world-to-camera transform, quaternion xyzw
7      vertical field of view fov_h (radians)
8      horizontal field of view fov_w (radians)
====== ============================================================

Decoding needs the (H, W) of the image the encoding was predicted for: fy = (H/2)/tan(fov_h/2),
fx = (W/2)/tan(fov_w/2), cx = W/2, cy = H/2. Unnormalised quaternions are accepted (divided by |q|^2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from posevlm.geometry._checks import as_float_tensor, broadcast_batch, check_trailing, se3_arg
from posevlm.geometry.intrinsics import HW, fov_from_intrinsics, intrinsics_from_fov
from posevlm.geometry.quaternion import matrix_to_quat_xyzw, quat_xyzw_to_matrix
from posevlm.geometry.se3 import se3_from_Rt

__all__ = ["POSE_ENCODING_TYPE", "pose_encoding_to_extrinsics_intrinsics", "extrinsics_intrinsics_to_pose_encoding"]

POSE_ENCODING_TYPE = "absT_quaR_FoV"


def pose_encoding_to_extrinsics_intrinsics(pose_encoding: Tensor, image_hw: HW) -> tuple[Tensor, Tensor]:
    """Decode (..., 9) VGGT encodings.

    Returns:
        w2c_opencv: (..., 4, 4) world-to-camera, OpenCV axes.
        K_pixels: (..., 3, 3) in pixels of the (H, W) image.
    """
    enc = check_trailing(as_float_tensor(pose_encoding, "pose_encoding"), "pose_encoding", (9,))
    rotation = quat_xyzw_to_matrix(enc[..., 3:7])
    w2c = se3_from_Rt(rotation, enc[..., :3])
    K = intrinsics_from_fov(enc[..., 7], enc[..., 8], image_hw).to(enc.dtype)
    return w2c, K


def extrinsics_intrinsics_to_pose_encoding(w2c_opencv: Tensor, K_pixels: Tensor, image_hw: HW) -> Tensor:
    """Encode (..., 4, 4) or (..., 3, 4) w2c and (..., 3, 3) K (pixels of ``image_hw``) as (..., 9).

    The principal point is not encoded: decoding places it at the image centre.
    """
    w2c = se3_arg(w2c_opencv, "w2c_opencv")
    K = check_trailing(as_float_tensor(K_pixels, "K_pixels"), "K_pixels", (3, 3))
    quat = matrix_to_quat_xyzw(w2c[..., :3, :3])
    fov_h, fov_w = fov_from_intrinsics(K, image_hw)
    batch = broadcast_batch(w2c.shape[:-2], K.shape[:-2], names=("w2c_opencv", "K_pixels"))
    parts = [w2c[..., :3, 3].expand(*batch, 3), quat.expand(*batch, 4), fov_h.expand(batch)[..., None], fov_w.expand(batch)[..., None]]
    dtype = torch.promote_types(w2c.dtype, K.dtype)
    return torch.cat([p.to(dtype) for p in parts], dim=-1)
