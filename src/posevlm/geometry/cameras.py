"""``Cameras``: S posed pinhole cameras in the library convention, with validation.

A ``Cameras`` holds ``w2c_opencv`` (S, 4, 4), ``K_pixels`` (S, 3, 3) and ``image_hw`` (S, 2) int64:
intrinsics never travel without the image size they refer to.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import ConventionError, ConventionWarning, ShapeError
from posevlm.geometry._checks import as_float_tensor, check_trailing, se3_arg
from posevlm.geometry.intrinsics import intrinsics_problems, intrinsics_resize
from posevlm.geometry.pose_encoding import pose_encoding_to_extrinsics_intrinsics
from posevlm.geometry.rotation import project_to_so3, rotation_rigidity_error
from posevlm.geometry.se3 import c2w_to_w2c, camera_centers, w2c_opencv_from_c2w_opengl, w2c_to_c2w

__all__ = ["Cameras", "validate_w2c", "validate_intrinsics"]

OnInvalid = Literal["error", "reorthonormalize"]


def validate_w2c(
    w2c_opencv: Tensor,
    *,
    source: str = "w2c_opencv",
    rigid_tol: float = 1e-4,
    on_invalid: OnInvalid = "error",
) -> Tensor:
    """Check (S, 4, 4) poses are finite and rigid; return them (re-orthonormalised if asked).

    Raises ``ConventionError`` naming ``source`` and the offending frame positions for NaN/inf entries,
    a bottom row other than [0, 0, 0, 1], or rotations whose rigidity error exceeds ``rigid_tol``
    (unless ``on_invalid="reorthonormalize"``, which projects onto SO(3) with a warning).
    """
    w2c = se3_arg(w2c_opencv, source)
    flat = w2c.reshape(-1, 4, 4)
    bad = (~torch.isfinite(flat)).flatten(1).any(1).nonzero().flatten().tolist()
    if bad:
        raise ConventionError(
            f"{source}: {len(bad)} pose(s) contain NaN or inf (frame positions {_preview(bad)}). "
            "Drop those frames (e.g. on_invalid_pose='drop' in the ScanNet loader) or fix the pose file."
        )
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=w2c.dtype)
    bad = ((flat[:, 3, :] - bottom).abs().amax(1) > rigid_tol).nonzero().flatten().tolist()
    if bad:
        raise ConventionError(f"{source}: bottom row is not [0, 0, 0, 1] at frame positions {_preview(bad)}.")
    err = rotation_rigidity_error(flat[:, :3, :3])
    bad = (err > rigid_tol).nonzero().flatten().tolist()
    if bad:
        worst = float(err.max())
        if on_invalid != "reorthonormalize":
            raise ConventionError(
                f"{source}: rotation is not rigid beyond tolerance {rigid_tol:g} at frame positions "
                f"{_preview(bad)} (worst error {worst:.3g}). Pass on_invalid='reorthonormalize' to project "
                "onto SO(3), or check that the file holds rotation matrices (not scaled or transposed)."
            )
        warnings.warn(
            f"{source}: re-orthonormalised {len(bad)} non-rigid rotation(s) (worst error {worst:.3g}).",
            stacklevel=2,
        )
        w2c = w2c.clone()
        w2c[..., :3, :3] = project_to_so3(w2c[..., :3, :3])
    return w2c


_INTRINSICS_FIX = (
    "give K_pixels in pixels of these images (rescale with posevlm.geometry.intrinsics_resize(K, old_hw, new_hw) "
    "for resized frames, intrinsics_crop for cropped ones) or fix the intrinsics file."
)


def validate_intrinsics(K_pixels: Tensor, image_hw: Tensor | Sequence[int], *, source: str = "K_pixels") -> None:
    """Check (S, 3, 3) intrinsics against their (S, 2) image sizes (``intrinsics_problems``).

    Raises ``ConventionError`` naming ``source``, the values and the fix for impossible intrinsics
    (non-finite, not a pinhole matrix, focal length <= 0, principal point outside the image); warns
    ``ConventionWarning`` for implausible ones (principal point far from the centre, field of view or
    pixel aspect out of range, skew).
    """
    problems = intrinsics_problems(K_pixels, image_hw)
    if problems.impossible:
        raise ConventionError(
            f"{source}: intrinsics cannot describe their images: {'; '.join(problems.impossible)}. "
            f"To fix, {_INTRINSICS_FIX}"
        )
    if problems.implausible:
        warnings.warn(
            f"{source}: intrinsics look implausible for their images: {'; '.join(problems.implausible)}. "
            f"Check that K belongs to these images; if not, {_INTRINSICS_FIX}",
            ConventionWarning,
            stacklevel=3,
        )


def _preview(items: Sequence[int], n: int = 8) -> str:
    head = ", ".join(map(str, items[:n]))
    return f"[{head}{', ...' if len(items) > n else ''}]"


@dataclass(frozen=True)
class Cameras:
    """S cameras: ``w2c_opencv`` (S, 4, 4), ``K_pixels`` (S, 3, 3), ``image_hw`` (S, 2) int64.

    Construct with ``Cameras.create`` (broadcasts a single K or image size) or one of the
    ``from_*`` converters; the raw constructor expects exact shapes.
    """

    w2c_opencv: Tensor
    K_pixels: Tensor
    image_hw: Tensor

    def __post_init__(self) -> None:
        s = self.w2c_opencv.shape[0] if self.w2c_opencv.dim() == 3 else -1
        if self.w2c_opencv.dim() != 3 or self.w2c_opencv.shape[1:] != (4, 4):
            raise ShapeError(f"w2c_opencv must be (S, 4, 4); got {tuple(self.w2c_opencv.shape)}", name="w2c_opencv")
        if self.K_pixels.shape != (s, 3, 3):
            raise ShapeError(f"K_pixels must be ({s}, 3, 3); got {tuple(self.K_pixels.shape)}", name="K_pixels")
        if self.image_hw.shape != (s, 2) or self.image_hw.is_floating_point():
            raise ShapeError(
                f"image_hw must be an integer ({s}, 2) tensor of (H, W); got {tuple(self.image_hw.shape)} "
                f"{self.image_hw.dtype}",
                name="image_hw",
            )

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        w2c_opencv: Tensor | np.ndarray,
        K_pixels: Tensor | np.ndarray,
        image_hw: Sequence[int] | Tensor | np.ndarray,
        *,
        source: str = "cameras",
        intrinsics_source: str | None = None,
        validate: bool = True,
        rigid_tol: float = 1e-4,
        on_invalid: OnInvalid = "error",
    ) -> "Cameras":
        """Build from (S, 4|3, 4) w2c, (S | 1, 3, 3) K and (H, W) or (S, 2) sizes, in float64.

        With ``validate`` (default) the poses go through :func:`validate_w2c` and the intrinsics
        through :func:`validate_intrinsics` (error for impossible K, ``ConventionWarning`` for
        implausible K). Messages name ``source`` (the pose file), and ``intrinsics_source`` (the
        intrinsics file; default ``source``) for intrinsics problems.
        """
        w2c = se3_arg(w2c_opencv, "w2c_opencv").to(torch.float64)
        if w2c.dim() != 3:
            raise ShapeError(f"{source}: w2c_opencv must be (S, 4, 4); got {tuple(w2c.shape)}", name="w2c_opencv")
        s = w2c.shape[0]
        K = check_trailing(as_float_tensor(K_pixels, "K_pixels"), "K_pixels", (3, 3)).to(torch.float64)
        if K.dim() == 2:
            K = K.expand(s, 3, 3)
        if K.shape[0] == 1:
            K = K.expand(s, 3, 3)
        if K.shape[0] != s:
            raise ShapeError(
                f"{source}: {K.shape[0]} intrinsics for {s} poses; give one K per frame or a single K.",
                name="K_pixels",
            )
        hw = torch.as_tensor(np.asarray(image_hw)).to(torch.int64)
        if hw.shape == (2,):
            hw = hw.expand(s, 2)
        if hw.shape != (s, 2):
            raise ShapeError(f"{source}: image_hw must be (H, W) or ({s}, 2); got {tuple(hw.shape)}", name="image_hw")
        if validate:
            w2c = validate_w2c(w2c, source=source, rigid_tol=rigid_tol, on_invalid=on_invalid)
            validate_intrinsics(K, hw, source=intrinsics_source or source)
        return cls(w2c.contiguous(), K.contiguous(), hw.contiguous())

    @classmethod
    def from_c2w_opencv(cls, c2w_opencv: Tensor | np.ndarray, K_pixels, image_hw, **kw) -> "Cameras":
        """From camera-to-world poses with OpenCV camera axes (ScanNet ``pose/*.txt``)."""
        c2w = se3_arg(c2w_opencv, "c2w_opencv").to(torch.float64)
        if kw.get("validate", True):
            c2w = validate_w2c(c2w, source=kw.get("source", "c2w_opencv"), rigid_tol=kw.get("rigid_tol", 1e-4),
                               on_invalid=kw.get("on_invalid", "error"))
        return cls.create(c2w_to_w2c(c2w), K_pixels, image_hw, **kw)

    @classmethod
    def from_c2w_opengl(cls, c2w_opengl: Tensor | np.ndarray, K_pixels, image_hw, **kw) -> "Cameras":
        """From camera-to-world poses with OpenGL camera axes (nerfstudio / ScanNet++ ``transform_matrix``)."""
        c2w = se3_arg(c2w_opengl, "c2w_opengl").to(torch.float64)
        if kw.get("validate", True):
            c2w = validate_w2c(c2w, source=kw.get("source", "c2w_opengl"), rigid_tol=kw.get("rigid_tol", 1e-4),
                               on_invalid=kw.get("on_invalid", "error"))
        return cls.create(w2c_opencv_from_c2w_opengl(c2w), K_pixels, image_hw, **kw)

    @classmethod
    def from_pose_encoding(cls, pose_encoding: Tensor | np.ndarray, image_hw: Sequence[int], **kw) -> "Cameras":
        """From (S, 9) VGGT ``absT_quaR_FoV`` encodings predicted for images of size ``image_hw``."""
        w2c, K = pose_encoding_to_extrinsics_intrinsics(as_float_tensor(pose_encoding, "pose_encoding"), image_hw)
        return cls.create(w2c, K, image_hw, **kw)

    # -- views ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.w2c_opencv.shape[0]

    def __getitem__(self, index) -> "Cameras":
        """Select frames by position (int, slice, list or tensor of positions)."""
        if isinstance(index, int):
            index = [index]
        idx = torch.as_tensor(np.asarray(index)) if not isinstance(index, (slice, Tensor)) else index
        return Cameras(self.w2c_opencv[idx], self.K_pixels[idx], self.image_hw[idx])

    @property
    def c2w_opencv(self) -> Tensor:
        """(S, 4, 4) camera-to-world, OpenCV axes."""
        return w2c_to_c2w(self.w2c_opencv)

    @property
    def centers(self) -> Tensor:
        """(S, 3) camera centres in world coordinates."""
        return camera_centers(self.w2c_opencv)

    def resized(self, new_hw: Sequence[int]) -> "Cameras":
        """Same cameras after resizing every image to ``new_hw`` (H, W)."""
        hw = torch.as_tensor(new_hw, dtype=torch.int64).expand(len(self), 2)
        K = intrinsics_resize(self.K_pixels, self.image_hw, hw)
        return Cameras(self.w2c_opencv, K, hw.contiguous())

    def to(self, *args, **kwargs) -> "Cameras":
        """Move/cast the float tensors (``image_hw`` stays int64)."""
        return Cameras(self.w2c_opencv.to(*args, **kwargs), self.K_pixels.to(*args, **kwargs),
                       self.image_hw.to(device=self.w2c_opencv.to(*args, **kwargs).device))

    def to_numpy(self) -> dict[str, np.ndarray]:
        """``{"w2c_opencv", "K_pixels", "image_hw"}`` as numpy arrays (for npz files)."""
        return {
            "w2c_opencv": self.w2c_opencv.cpu().numpy(),
            "K_pixels": self.K_pixels.cpu().numpy(),
            "image_hw": self.image_hw.cpu().numpy(),
        }
