"""Rigid transforms and camera conventions.

The library convention is ``w2c_opencv``: a (..., 4, 4) world-to-camera transform whose camera axes are
OpenCV's (x right, y down, z forward). Anything else carries its direction and axes in its name:
``c2w_opencv`` (camera-to-world, OpenCV axes), ``c2w_opengl`` (camera-to-world, OpenGL / nerfstudio /
Blender axes: x right, y up, z backward). Every converter names both ends.
"""

from __future__ import annotations

import torch
from torch import Tensor

from posevlm.geometry._checks import as_float_tensor, broadcast_batch, check_trailing, se3_arg

__all__ = [
    "se3_from_Rt",
    "se3_inverse",
    "se3_compose",
    "w2c_to_c2w",
    "c2w_to_w2c",
    "c2w_opengl_to_c2w_opencv",
    "c2w_opencv_to_c2w_opengl",
    "w2c_opencv_from_c2w_opengl",
    "camera_centers",
    "transform_points",
    "OPENGL_FROM_OPENCV",
]

#: Axis flip between OpenCV and OpenGL camera frames (its own inverse): diag(1, -1, -1, 1).
OPENGL_FROM_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def se3_from_Rt(rotation: Tensor, translation: Tensor) -> Tensor:
    """Assemble (..., 4, 4) from a (..., 3, 3) rotation and a (..., 3) translation."""
    r = check_trailing(as_float_tensor(rotation, "rotation"), "rotation", (3, 3))
    t = check_trailing(as_float_tensor(translation, "translation"), "translation", (3,))
    dtype = torch.promote_types(r.dtype, t.dtype)
    batch = broadcast_batch(r.shape[:-2], t.shape[:-1], names=("rotation", "translation"))
    r = r.to(dtype).expand(*batch, 3, 3)
    t = t.to(dtype).expand(*batch, 3)
    top = torch.cat([r, t[..., :, None]], dim=-1)
    bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def se3_inverse(transform: Tensor) -> Tensor:
    """Closed-form inverse of (..., 4, 4) rigid transforms: [R^T | -R^T t]."""
    m = se3_arg(transform, "transform")
    r_t = m[..., :3, :3].transpose(-1, -2)
    t = -(r_t @ m[..., :3, 3:4])
    out = torch.zeros_like(m)
    out[..., :3, :3] = r_t
    out[..., :3, 3:4] = t
    out[..., 3, 3] = 1
    return out


def se3_compose(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for (..., 4, 4) transforms (apply ``b`` first)."""
    return se3_arg(a, "a") @ se3_arg(b, "b")


def w2c_to_c2w(w2c_opencv: Tensor) -> Tensor:
    """Invert world-to-camera poses in closed form.

    Args:
        w2c_opencv: (..., 4, 4) or (..., 3, 4) world-to-camera, OpenCV axes.
    Returns:
        (..., 4, 4) camera-to-world, OpenCV axes.
    """
    return se3_inverse(se3_arg(w2c_opencv, "w2c_opencv"))


def c2w_to_w2c(c2w_opencv: Tensor) -> Tensor:
    """(..., 4, 4) camera-to-world -> (..., 4, 4) world-to-camera (same camera axes)."""
    return se3_inverse(se3_arg(c2w_opencv, "c2w_opencv"))


def c2w_opengl_to_c2w_opencv(c2w_opengl: Tensor) -> Tensor:
    """Camera-to-world with OpenGL camera axes (y up, z backward) -> OpenCV camera axes.

    Right-multiplies by diag(1, -1, -1, 1): the world frame is unchanged, the camera's y and z flip.
    """
    m = se3_arg(c2w_opengl, "c2w_opengl")
    return m @ OPENGL_FROM_OPENCV.to(dtype=m.dtype, device=m.device)


def c2w_opencv_to_c2w_opengl(c2w_opencv: Tensor) -> Tensor:
    """Inverse of :func:`c2w_opengl_to_c2w_opencv` (the flip is its own inverse)."""
    m = se3_arg(c2w_opencv, "c2w_opencv")
    return m @ OPENGL_FROM_OPENCV.to(dtype=m.dtype, device=m.device)


def w2c_opencv_from_c2w_opengl(c2w_opengl: Tensor) -> Tensor:
    """Nerfstudio / ScanNet++ ``transform_matrix`` (c2w, OpenGL) -> library convention (w2c, OpenCV)."""
    return se3_inverse(c2w_opengl_to_c2w_opencv(c2w_opengl))


def camera_centers(w2c_opencv: Tensor) -> Tensor:
    """Camera centres in world coordinates, ``-R^T t``: (..., 4, 4) w2c -> (..., 3)."""
    m = se3_arg(w2c_opencv, "w2c_opencv")
    return -(m[..., :3, :3].transpose(-1, -2) @ m[..., :3, 3:4])[..., 0]


def transform_points(transform: Tensor, points: Tensor) -> Tensor:
    """Apply (..., 4, 4) transforms to (..., N, 3) points (batch dims broadcast)."""
    m = se3_arg(transform, "transform")
    p = check_trailing(as_float_tensor(points, "points"), "points", (3,))
    return p @ m[..., :3, :3].transpose(-1, -2) + m[..., None, :3, 3]
