"""Per-camera 4x4 matrices for camera-aware attention (PRoPE, GTA, CaPE).

Shape notation: C cameras, leading ``...`` batch dims broadcast (usually B).

``attention_cameras`` turns raw ``w2c_opencv`` poses (and optional ``K_pixels`` + ``image_hw``) into the
matrices P̃ that :func:`posevlm.attention.build_camera_transform` gathers per token:

1. re-reference: ``V_c = w2c_c @ c2w_ref`` so the reference camera is the identity (global SE(3) of the
   world cancels here, so everything downstream is invariant to it, text tokens included);
2. translation normalisation about the reference centre (``max``/``median``/``mean`` distance -> 1, ``none``
   keeps world units; a static trajectory keeps scale 1);
3. ``prope``: ``P̃_c = lift(K̂_c) V_c lift(K̂_ref)^-1`` with ``lift(K̂) = blockdiag(K̂, 1)``; the trailing
   ``lift(K̂_ref)^-1`` is a fixed change of world frame (it cancels in every P̃_i P̃_j^-1) that makes the
   reference camera exactly the identity, which is what text tokens get. Without K, ``prope`` = ``gta``.
   ``gta`` and ``cape``: ``P̃_c = V_c``.

Every P̃ is affine (bottom row [0, 0, 0, 1]); :func:`affine_inverse` inverts it in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import (
    intrinsics_normalize,
    normalize_translation_scale,
    reference_index,
    rereference,
)
from posevlm.geometry.trajectory import Reference
from posevlm.registry import Registry

__all__ = ["CameraMode", "CameraModeSpec", "camera_modes", "MODES", "TRANSLATION_NORMS", "attention_cameras",
           "affine_inverse", "lift_intrinsics"]

CameraMode = Literal["prope", "gta", "cape"]
TRANSLATION_NORMS = ("max", "median", "mean", "none")


@dataclass(frozen=True)
class CameraModeSpec:
    """A camera attention mode, by what it does with the per-token 4x4 camera matrix.

    Attributes:
        intrinsics: the matrix is ``lift(K̂) · w2c`` (normalised intrinsics; needs ``K_pixels`` + ``image_hw``),
            else the SE(3) ``w2c`` alone.
        values_and_outputs: values get ``P̃⁻¹`` and outputs ``P̃`` as keys do (PRoPE / GTA), else only queries
            and keys are transformed (CaPE).
    """

    name: str
    intrinsics: bool
    values_and_outputs: bool
    description: str = ""


#: Camera attention modes (``CameraModeSpec``); plug-ins add modes through the entry-point group
#: ``posevlm.camera_attention``.
camera_modes: Registry[CameraModeSpec] = Registry("camera attention mode", "camera_attention")
_BUILTIN = (
    CameraModeSpec("prope", True, True, "PRoPE: lift(K̂)·w2c on q (Mᵀ), k and v (M⁻¹), o (M); needs intrinsics"),
    CameraModeSpec("gta", False, True, "GTA: the SE(3) w2c on q, k, v and o"),
    CameraModeSpec("cape", False, False, "CaPE: the SE(3) w2c on queries and keys only"),
)
for _mode in _BUILTIN:
    camera_modes.register(_mode.name, _mode)
#: the built-in mode names (``camera_modes.names()`` also lists plug-ins)
MODES = tuple(m.name for m in _BUILTIN)


def check_mode(mode: str) -> CameraModeSpec:
    """The registered mode ``mode`` (ConfigError on field ``mode``, with suggestions, if unknown)."""
    try:
        return camera_modes.get(mode)
    except ConfigError as exc:
        raise ConfigError(str(exc), field="mode", value=mode) from None


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def lift_intrinsics(K: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 4, 4) ``blockdiag(K, 1)``."""
    out = torch.zeros(*K.shape[:-2], 4, 4, dtype=K.dtype, device=K.device)
    out[..., :3, :3] = K
    out[..., 3, 3] = 1
    return out


def _intrinsics_inverse(K: Tensor) -> Tensor:
    """Closed-form inverse of zero-skew intrinsics (..., 3, 3): [[1/fx, 0, -cx/fx], [0, 1/fy, -cy/fy], [0, 0, 1]]."""
    fx, fy, cx, cy = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]
    out = torch.zeros_like(K)
    out[..., 0, 0] = 1 / fx
    out[..., 1, 1] = 1 / fy
    out[..., 0, 2] = -cx / fx
    out[..., 1, 2] = -cy / fy
    out[..., 2, 2] = 1
    return out


def affine_inverse(matrix: Tensor) -> Tensor:
    """Closed-form inverse of affine 4x4 matrices ``[[A, b], [0, 1]]`` -> ``[[A^-1, -A^-1 b], [0, 1]]``.

    ``A^-1 = adj(A) / det(A)`` via cross products of A's columns (no ``torch.linalg.inv``). Exact for the
    identity; for a rotation it equals ``A^T`` to rounding.

    Args:
        matrix: (..., 4, 4) with bottom row [0, 0, 0, 1] (not checked here).
    Returns:
        (..., 4, 4) inverse, same dtype.
    """
    a = matrix[..., :3, :3]
    c0, c1, c2 = a[..., :, 0], a[..., :, 1], a[..., :, 2]
    r0, r1, r2 = torch.linalg.cross(c1, c2), torch.linalg.cross(c2, c0), torch.linalg.cross(c0, c1)
    det = (c0 * r0).sum(-1)
    a_inv = torch.stack([r0, r1, r2], dim=-2) / det[..., None, None]
    out = torch.zeros_like(matrix)
    out[..., :3, :3] = a_inv
    out[..., :3, 3:4] = -(a_inv @ matrix[..., :3, 3:4])
    out[..., 3, 3] = 1
    return out


def attention_cameras(
    w2c_opencv: Tensor,
    K_pixels: Tensor | None = None,
    image_hw: Tensor | tuple[int, int] | None = None,
    *,
    mode: CameraMode,
    reference: Reference = "first",
    translation_norm: Literal["max", "median", "mean", "none"] = "max",
) -> Tensor:
    """Per-camera matrices P̃ for camera attention, re-referenced and translation-normalised.

    Args:
        w2c_opencv: (..., C, 4, 4) world-to-camera, OpenCV axes. float64 is kept; other dtypes -> float32.
        K_pixels: optional (..., C, 3, 3) (or broadcastable) zero-skew intrinsics in pixels; ``prope`` only.
        image_hw: (H, W) or (..., C, 2) size of the image ``K_pixels`` refers to; required with ``K_pixels``.
        mode: ``"prope"``, ``"gta"`` or ``"cape"``.
        reference: ``"first"``, ``"medoid"`` or a camera index; that camera becomes the identity.
        translation_norm: ``"max"``, ``"median"``, ``"mean"`` distance of camera centres to the reference
            becomes 1, or ``"none"``.
    Returns:
        (..., C, 4, 4) affine matrices P̃ (bottom row [0, 0, 0, 1]); the reference camera's P̃ is the identity.
    Raises:
        ShapeError: wrong shapes. ConfigError: unknown mode/reference/translation_norm, K without image_hw,
            K with a mode other than ``prope``.
    """
    spec = check_mode(mode)
    if translation_norm not in TRANSLATION_NORMS:
        raise ConfigError(
            f"translation_norm must be one of {', '.join(TRANSLATION_NORMS)}; got {translation_norm!r}",
            field="translation_norm", value=translation_norm,
        )
    if not isinstance(w2c_opencv, Tensor) or w2c_opencv.dim() < 3 or tuple(w2c_opencv.shape[-2:]) != (4, 4):
        shape = tuple(w2c_opencv.shape) if isinstance(w2c_opencv, Tensor) else None
        raise ShapeError(f"w2c_opencv must be a (..., C, 4, 4) tensor; got shape {shape}", name="w2c_opencv",
                         shape=shape)
    dtype = compute_dtype(w2c_opencv) if w2c_opencv.is_floating_point() else torch.float64
    w2c = w2c_opencv.to(dtype)
    ref = reference_index(w2c, reference)
    v = rereference(w2c, ref)
    v, _ = normalize_translation_scale(v, translation_norm, reference=ref)
    if K_pixels is None:
        return _exact_identity_at(v, ref)
    if not spec.intrinsics:
        users = [n for n in camera_modes.names() if camera_modes.get(n).intrinsics]
        raise ConfigError(f"K_pixels is only used by modes with intrinsics ({', '.join(users)}); got mode={mode!r}. "
                          "Drop K_pixels or use prope.", field="K_pixels")
    if image_hw is None:
        raise ConfigError("K_pixels needs image_hw, the (H, W) of the image K refers to", field="image_hw")
    k = torch.as_tensor(K_pixels, device=v.device).to(dtype)
    if k.dim() < 2 or tuple(k.shape[-2:]) != (3, 3):
        raise ShapeError(f"K_pixels must be (..., C, 3, 3); got {tuple(k.shape)}", name="K_pixels",
                         shape=tuple(k.shape))
    k_hat = intrinsics_normalize(k, image_hw).to(dtype)
    k_hat = k_hat.expand(*v.shape[:-2], 3, 3)
    k_ref = torch.gather(k_hat, -3, ref.reshape(*ref.shape, 1, 1, 1).expand(*ref.shape, 1, 3, 3))  # (..., 1, 3, 3)
    return _exact_identity_at(lift_intrinsics(k_hat) @ v @ lift_intrinsics(_intrinsics_inverse(k_ref)), ref)


def _exact_identity_at(p: Tensor, ref: Tensor) -> Tensor:
    """Write the exact identity at the reference camera (it is the identity up to rounding already), so the
    reference camera and text tokens get bit-identical transforms."""
    eye = torch.eye(4, dtype=p.dtype, device=p.device).expand(*ref.shape, 1, 4, 4)
    return p.scatter(-3, ref.reshape(*ref.shape, 1, 1, 1).expand(*ref.shape, 1, 4, 4), eye)
