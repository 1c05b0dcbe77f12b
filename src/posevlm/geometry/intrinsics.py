"""Pinhole intrinsics that always travel with the image size they refer to.

``K_pixels``: (..., 3, 3) [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels of an image of size
``image_hw = (H, W)``. Pixel coordinates are continuous with the image spanning [0, W] x [0, H]
(so the image centre is (W/2, H/2), as in VGGT); resizing therefore scales cx, cy linearly.
Skew is assumed zero.

:func:`intrinsics_problems` checks K against the image it describes; its limits are module constants
(``PRINCIPAL_POINT_MAX_OFFSET``, ``HFOV_RANGE_DEG``, ``FOCAL_ASPECT_MAX``, ``SKEW_MAX``) and are
documented with their reasons in docs/conventions.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from posevlm.errors import ShapeError
from posevlm.geometry._checks import as_float_tensor, broadcast_batch, check_trailing

__all__ = [
    "K_from_params",
    "intrinsics_resize",
    "intrinsics_crop",
    "intrinsics_rotate90",
    "intrinsics_normalize",
    "intrinsics_denormalize",
    "intrinsics_from_fov",
    "fov_from_intrinsics",
    "image_hw_tensor",
    "IntrinsicsProblems",
    "intrinsics_problems",
    "PRINCIPAL_POINT_MAX_OFFSET",
    "HFOV_RANGE_DEG",
    "FOCAL_ASPECT_MAX",
    "SKEW_MAX",
]

HW = Sequence[int] | Tensor


def image_hw_tensor(image_hw: HW, like: Tensor) -> Tensor:
    """Return ``image_hw`` as a float tensor (..., 2) on ``like``'s device and dtype."""
    hw = torch.as_tensor(image_hw, device=like.device).to(like.dtype)
    if hw.shape[-1:] != (2,):
        raise ShapeError(
            f"image_hw must be (H, W) or (..., 2); got shape {tuple(hw.shape)}. "
            "Intrinsics are meaningless without the image size they refer to.",
            name="image_hw",
            shape=tuple(hw.shape),
        )
    if bool((hw <= 0).any()):
        raise ShapeError(f"image_hw must be positive; got {hw.tolist()}", name="image_hw")
    return hw


def _K(K_pixels: Tensor) -> Tensor:
    return check_trailing(as_float_tensor(K_pixels, "K_pixels"), "K_pixels", (3, 3))


def K_from_params(fx: Tensor | float, fy: Tensor | float, cx: Tensor | float, cy: Tensor | float) -> Tensor:
    """Build (..., 3, 3) intrinsics from broadcastable focal lengths and principal point (pixels)."""
    fx, fy, cx, cy = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float64) for v in (fx, fy, cx, cy)))
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], dim=-1).reshape(*fx.shape, 3, 3)


def intrinsics_resize(K_pixels: Tensor, image_hw: HW, new_hw: HW) -> Tensor:
    """Intrinsics of the same camera after resizing the (H, W) image to ``new_hw`` (no crop)."""
    k = _K(K_pixels)
    hw, new = image_hw_tensor(image_hw, k), image_hw_tensor(new_hw, k)
    sy, sx = (new / hw).unbind(-1)
    scale = torch.stack([sx, sy, torch.ones_like(sx)], dim=-1)
    return k * scale[..., :, None]


def intrinsics_crop(K_pixels: Tensor, image_hw: HW, top: int, left: int, crop_hw: HW) -> tuple[Tensor, Tensor]:
    """Crop the window [top, top + h) x [left, left + w). Returns (K_pixels, crop image_hw)."""
    k = _K(K_pixels)
    hw, crop = image_hw_tensor(image_hw, k), image_hw_tensor(crop_hw, k)
    if bool(((crop + torch.tensor([top, left], dtype=k.dtype)) > hw).any()) or top < 0 or left < 0:
        raise ShapeError(
            f"crop window top={top}, left={left}, size={crop.tolist()} leaves the image of size {hw.tolist()}",
            name="crop_hw",
        )
    out = k.clone()
    out[..., 0, 2] -= left
    out[..., 1, 2] -= top
    return out, crop.expand(*k.shape[:-2], 2).clone()


def intrinsics_rotate90(K_pixels: Tensor, image_hw: HW, k: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Rotate the image by ``k`` quarter turns counter-clockwise (as ``np.rot90(image, k)``).

    Returns ``(K_pixels, image_hw, cam_rotation)`` where ``cam_rotation`` (3, 3) maps old camera
    coordinates to new ones: update poses with ``w2c_new = blockdiag(cam_rotation, 1) @ w2c``.
    Use ``k = -1`` for VGGT's portrait handling (a clockwise turn).
    """
    kk = _K(K_pixels)
    hw = image_hw_tensor(image_hw, kk).expand(*kk.shape[:-2], 2)
    rot = torch.eye(3, dtype=kk.dtype, device=kk.device)
    # one counter-clockwise quarter turn: u' = v, v' = W - u; camera x' = y, y' = -x
    quarter = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=kk.dtype, device=kk.device)
    for _ in range(k % 4):
        fx, fy, cx, cy = kk[..., 0, 0], kk[..., 1, 1], kk[..., 0, 2], kk[..., 1, 2]
        w = hw[..., 1]
        kk = K_from_params(fy, fx, cy, w - cx).to(kk)
        hw = hw.flip(-1)
        rot = quarter @ rot
    return kk, hw, rot


def intrinsics_normalize(K_pixels: Tensor, image_hw: HW) -> Tensor:
    """PRoPE's resolution-free intrinsics: fx/W, fy/H, cx/W - 0.5, cy/H - 0.5, as a (..., 3, 3) matrix."""
    k = _K(K_pixels)
    hw = image_hw_tensor(image_hw, k)
    h, w = hw.unbind(-1)
    return K_from_params(k[..., 0, 0] / w, k[..., 1, 1] / h, k[..., 0, 2] / w - 0.5, k[..., 1, 2] / h - 0.5).to(k)


def intrinsics_denormalize(K_normalized: Tensor, image_hw: HW) -> Tensor:
    """Inverse of :func:`intrinsics_normalize` for the given image size."""
    k = check_trailing(as_float_tensor(K_normalized, "K_normalized"), "K_normalized", (3, 3))
    h, w = image_hw_tensor(image_hw, k).unbind(-1)
    return K_from_params(k[..., 0, 0] * w, k[..., 1, 1] * h, (k[..., 0, 2] + 0.5) * w, (k[..., 1, 2] + 0.5) * h).to(k)


def intrinsics_from_fov(fov_h: Tensor | float, fov_w: Tensor | float, image_hw: HW) -> Tensor:
    """Centred pinhole from vertical/horizontal fields of view (radians): fy = (H/2)/tan(fov_h/2)."""
    fov_h = as_float_tensor(torch.as_tensor(fov_h), "fov_h")
    fov_w = as_float_tensor(torch.as_tensor(fov_w), "fov_w")
    h, w = image_hw_tensor(image_hw, fov_h).unbind(-1)
    fy = (h / 2) / torch.tan(fov_h / 2)
    fx = (w / 2) / torch.tan(fov_w / 2)
    return K_from_params(fx, fy, w / 2, h / 2).to(fov_h.dtype)


def fov_from_intrinsics(K_pixels: Tensor, image_hw: HW) -> tuple[Tensor, Tensor]:
    """(fov_h, fov_w) in radians: 2 atan((H/2)/fy), 2 atan((W/2)/fx)."""
    k = _K(K_pixels)
    h, w = image_hw_tensor(image_hw, k).unbind(-1)
    return 2 * torch.atan((h / 2) / k[..., 1, 1]), 2 * torch.atan((w / 2) / k[..., 0, 0])




#: Largest |cx / W - 0.5| and |cy / H - 0.5| that is plausible (the principal point in the central half).
PRINCIPAL_POINT_MAX_OFFSET = 0.25
#: Plausible horizontal field of view 2 atan(W / (2 fx)), degrees.
HFOV_RANGE_DEG = (10.0, 170.0)
#: Largest plausible pixel aspect max(fx / fy, fy / fx).
FOCAL_ASPECT_MAX = 1.5
#: Largest plausible |skew| / fx (posevlm assumes zero skew).
SKEW_MAX = 0.01
_FORM_TOL = 1e-6


@dataclass(frozen=True)
class IntrinsicsProblems:
    """What :func:`intrinsics_problems` found, one message per kind of problem.

    ``impossible``: K cannot describe this image (callers raise). ``implausible``: K is a valid pinhole
    for this image but unlike any real camera's (callers warn). Empty tuples when all is well.
    """

    impossible: tuple[str, ...] = ()
    implausible: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.impossible or self.implausible)


def _positions(mask: Tensor, n: int = 8) -> str:
    pos = mask.nonzero().flatten().tolist()
    return ", ".join(map(str, pos[:n])) + (", ..." if len(pos) > n else "")


def intrinsics_problems(K_pixels: Tensor, image_hw: HW) -> IntrinsicsProblems:
    """Check pinhole intrinsics against the image they describe, all frames at once.

    Impossible (K cannot belong to this image):
        * a non-finite entry;
        * not of the form [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (e.g. a transposed K);
        * fx <= 0 or fy <= 0;
        * the principal point outside the image: cx not in [0, W] or cy not in [0, H] (typically K of
          a larger image, e.g. ScanNet's 1296x968 colour intrinsics used for 640x480 frames).
    Implausible (a valid pinhole, but no real camera of this image looks like it):
        * |cx / W - 0.5| or |cy / H - 0.5| above ``PRINCIPAL_POINT_MAX_OFFSET`` (0.25);
        * horizontal field of view 2 atan(W / (2 fx)) outside ``HFOV_RANGE_DEG`` (10..170 degrees;
          normalised intrinsics used as pixels land near 180);
        * pixel aspect max(fx / fy, fy / fx) above ``FOCAL_ASPECT_MAX`` (1.5);
        * |skew| / fx above ``SKEW_MAX`` (0.01).

    Args:
        K_pixels: (..., 3, 3) intrinsics in pixels.
        image_hw: (H, W) or (..., 2), broadcastable against ``K_pixels``' leading dims.
    Returns:
        ``IntrinsicsProblems``; each message names the quantity, the worst value, the limit and, for
        batched K, the (flattened) frame positions concerned.
    Raises:
        ShapeError: ``K_pixels`` not (..., 3, 3) or ``image_hw`` not positive (H, W).
    """
    k = _K(K_pixels).to(torch.float64)
    hw = image_hw_tensor(image_hw, k)
    lead = broadcast_batch(k.shape[:-2], hw.shape[:-1], names=("K_pixels", "image_hw"))
    k = k.expand(*lead, 3, 3).reshape(-1, 3, 3)
    hw = hw.expand(*lead, 2).reshape(-1, 2)
    batched = k.shape[0] > 1

    def where(mask: Tensor) -> str:
        return f" at frame positions [{_positions(mask)}]" if batched else ""

    impossible: list[str] = []
    implausible: list[str] = []

    finite = torch.isfinite(k).flatten(1).all(1)
    if not bool(finite.all()):
        impossible.append(f"K_pixels holds NaN or inf{where(~finite)}")
    k = torch.where(finite[:, None, None], k, torch.eye(3, dtype=k.dtype, device=k.device))  # judged no further
    fx, fy, cx, cy, skew = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 0, 1]
    h, w = hw[:, 0], hw[:, 1]
    form = torch.stack([k[:, 1, 0], k[:, 2, 0], k[:, 2, 1], k[:, 2, 2] - 1], -1).abs().amax(-1)
    bad = finite & (form > _FORM_TOL)
    pinhole = finite & ~bad
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        impossible.append(
            f"K_pixels is not [[fx, s, cx], [0, fy, cy], [0, 0, 1]]: rows 2-3 are {k[i, 1:].tolist()}{where(bad)} "
            "(a transposed K puts cx, cy in the bottom row; pass K, not K.T)"
        )
    bad = pinhole & ((fx <= 0) | (fy <= 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        impossible.append(f"focal lengths must be positive; got fx={fx[i]:.6g}, fy={fy[i]:.6g}{where(bad)}")
    inside = (cx >= 0) & (cx <= w) & (cy >= 0) & (cy <= h)
    bad = pinhole & ~inside
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        impossible.append(
            f"principal point (cx, cy) = ({cx[i]:.6g}, {cy[i]:.6g}) lies outside the {int(w[i])}x{int(h[i])} "
            f"image{where(bad)}"
        )
    ok = pinhole & (fx > 0) & (fy > 0) & inside  # implausibility is judged on otherwise valid K only
    offset = torch.maximum((cx / w - 0.5).abs(), (cy / h - 0.5).abs())
    bad = ok & (offset > PRINCIPAL_POINT_MAX_OFFSET)
    if bool(bad.any()):
        i = int(torch.where(bad, offset, -1.0).argmax())
        implausible.append(
            f"principal point (cx, cy) = ({cx[i]:.6g}, {cy[i]:.6g}) is {offset[i]:.0%} of the image size from the "
            f"centre of the {int(w[i])}x{int(h[i])} image (limit {PRINCIPAL_POINT_MAX_OFFSET:.0%}){where(bad)}"
        )
    hfov = torch.rad2deg(2 * torch.atan2(w / 2, fx))
    lo, hi = HFOV_RANGE_DEG
    bad = ok & ((hfov < lo) | (hfov > hi))
    if bool(bad.any()):
        i = int(torch.where(bad, (hfov - (lo + hi) / 2).abs(), -1.0).argmax())
        hint = " (normalised intrinsics? use intrinsics_denormalize)" if float(hfov[i]) > hi and fx[i] < 8 else ""
        implausible.append(
            f"horizontal field of view {hfov[i]:.4g} deg (fx={fx[i]:.6g} for width {int(w[i])}) is outside "
            f"{lo:g}..{hi:g} deg{hint}{where(bad)}"
        )
    aspect = torch.maximum(fx / fy, fy / fx)
    bad = ok & (aspect > FOCAL_ASPECT_MAX)
    if bool(bad.any()):
        i = int(torch.where(bad, aspect, -1.0).argmax())
        implausible.append(
            f"pixel aspect fx/fy = {fx[i] / fy[i]:.4g} (fx={fx[i]:.6g}, fy={fy[i]:.6g}) is beyond "
            f"1/{FOCAL_ASPECT_MAX:g}..{FOCAL_ASPECT_MAX:g}{where(bad)}"
        )
    bad = ok & ((skew / fx).abs() > SKEW_MAX)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        implausible.append(f"skew K[0, 1] = {skew[i]:.6g} is ignored by posevlm (assumed 0){where(bad)}")
    return IntrinsicsProblems(tuple(impossible), tuple(implausible))
