"""Depth maps and poses (numpy): back-projection to world points, and multi-view depth agreement,
which tells poses stored in the wrong direction (c2w read as w2c) from correct ones.

Shapes: N frames, H x W depth pixels, M = h * w strided pixels per frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from posevlm.errors import ShapeError

__all__ = [
    "backproject_depth",
    "depth_agreement",
    "PoseDirectionEvidence",
    "pose_direction_evidence",
    "AGREEMENT_REL_TOL",
    "AGREEMENT_ABS_TOL_M",
    "INVERTED_MIN_AGREEMENT",
    "INVERTED_MIN_RATIO",
    "INVERTED_MIN_POINTS",
]

#: A re-projected point agrees with a depth map when |z - depth| <= AGREEMENT_REL_TOL * depth + AGREEMENT_ABS_TOL_M.
AGREEMENT_REL_TOL = 0.05
AGREEMENT_ABS_TOL_M = 0.02
#: Inverted poses are reported only when, read inverted, at least this fraction of compared points agree ...
INVERTED_MIN_AGREEMENT = 0.3
#: ... at least this many times the fraction that agree with the poses as given ...
INVERTED_MIN_RATIO = 2.0
#: ... and at least this many points could be compared.
INVERTED_MIN_POINTS = 200


def backproject_depth(depth: np.ndarray, K_pixels: np.ndarray, w2c_opencv: np.ndarray, *,
                      pixel_stride: int = 1) -> np.ndarray:
    """World points of every (strided) pixel, one vectorised pass over all frames.

    Args:
        depth: (N, H, W) OpenCV z-depth in metres; <= 0 or non-finite = no measurement.
        K_pixels: (N, 3, 3) intrinsics for (H, W).
        w2c_opencv: (N, 4, 4) world-to-camera, OpenCV axes.
        pixel_stride: use rows and columns 0, s, 2s, ... (pixel centres at index + 0.5).
    Returns:
        (N, h, w, 3) float64 world points, NaN where depth is missing; h = ceil(H / s), w = ceil(W / s).
    Raises:
        ShapeError: inconsistent shapes.
    """
    depth, K, w2c = _check(depth, K_pixels, w2c_opencv)
    s = int(pixel_stride)
    z = depth[:, ::s, ::s].astype(np.float64)
    z = np.where(np.isfinite(z) & (z > 0), z, np.nan)
    v = np.arange(0, depth.shape[1], s) + 0.5
    u = np.arange(0, depth.shape[2], s) + 0.5
    x = (u[None, None, :] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None] * z  # (N, h, w)
    y = (v[None, :, None] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None] * z
    n, h, w = z.shape
    cam = np.stack([x, y, z], -1).reshape(n, h * w, 3)
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    # world = R^T (cam - t), as row vectors: (cam - t) @ R, one batched matmul
    return np.matmul(cam - t[:, None, :], R).reshape(n, h, w, 3)


def _check(depth: np.ndarray, K_pixels: np.ndarray, w2c_opencv: np.ndarray) -> tuple[np.ndarray, ...]:
    depth = np.asarray(depth)
    K = np.asarray(K_pixels, dtype=np.float64)
    w2c = np.asarray(w2c_opencv, dtype=np.float64)
    if depth.ndim != 3 or K.shape != (len(depth), 3, 3) or w2c.shape != (len(depth), 4, 4):
        raise ShapeError(f"need depth (N, H, W), K_pixels (N, 3, 3), w2c_opencv (N, 4, 4); got "
                         f"{depth.shape}, {K.shape}, {w2c.shape}.", name="depth", shape=depth.shape)
    return depth, K, w2c


def depth_agreement(depth: np.ndarray, K_pixels: np.ndarray, w2c_opencv: np.ndarray, *,
                    pixel_stride: int = 1) -> tuple[float, int]:
    """How well the frames' depth maps agree with each other under the given poses.

    Every strided pixel with depth in frame i is back-projected to the world, projected into every
    other frame j, and compared with the depth j measured at that pixel: it agrees when
    ``|z_j - depth_j| <= AGREEMENT_REL_TOL * depth_j + AGREEMENT_ABS_TOL_M``. Points behind camera j,
    outside its image or on a pixel without depth are not compared. All N (N - 1) pairs in one
    vectorised pass.

    Args:
        depth: (N, H, W) OpenCV z-depth in metres; <= 0 or non-finite = no measurement.
        K_pixels: (N, 3, 3) intrinsics for (H, W).
        w2c_opencv: (N, 4, 4) world-to-camera, OpenCV axes.
        pixel_stride: back-project rows and columns 0, s, 2s, ... (look-ups use every pixel).
    Returns:
        (fraction of compared points that agree (0 when none), number of compared points).
    Raises:
        ShapeError: inconsistent shapes.
    """
    depth, K, w2c = _check(depth, K_pixels, w2c_opencv)
    n, h, w = depth.shape
    world = backproject_depth(depth, K, w2c, pixel_stride=pixel_stride).reshape(1, -1, 3)  # (1, N M, 3)
    # camera j coordinates of every frame's points, one batched matmul: (N_j, N_i, M, 3)
    cam = (np.matmul(world, np.swapaxes(w2c[:, :3, :3], 1, 2)) + w2c[:, None, :3, 3]).reshape(n, n, -1, 3)
    z = cam[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = K[:, 0, 0, None, None] * cam[..., 0] / z + K[:, 0, 2, None, None]
        v = K[:, 1, 1, None, None] * cam[..., 1] / z + K[:, 1, 2, None, None]
        seen = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)  # False where the point is NaN
    seen &= ~np.eye(n, dtype=bool)[:, :, None]
    jj, ii, mm = np.nonzero(seen)
    measured = depth[jj, v[jj, ii, mm].astype(np.int64), u[jj, ii, mm].astype(np.int64)].astype(np.float64)
    valid = np.isfinite(measured) & (measured > 0)
    err = np.abs(z[jj, ii, mm][valid] - measured[valid])
    compared = int(valid.sum())
    agree = int((err <= AGREEMENT_REL_TOL * measured[valid] + AGREEMENT_ABS_TOL_M).sum())
    return (agree / compared if compared else 0.0), compared


@dataclass(frozen=True)
class PoseDirectionEvidence:
    """Depth agreement (:func:`depth_agreement`) of the poses as given and of their inverses.

    ``inverted_likely`` is True when the inverted reading is clearly the consistent one: agreement
    at least ``INVERTED_MIN_AGREEMENT``, at least ``INVERTED_MIN_RATIO`` times the agreement as given,
    over at least ``INVERTED_MIN_POINTS`` compared points. Scans with too little motion or overlap
    give similar or low agreement both ways and are never flagged.
    """

    agreement_as_given: float
    agreement_inverted: float
    compared_as_given: int
    compared_inverted: int
    num_frames: int

    @property
    def inverted_likely(self) -> bool:
        return (self.compared_inverted >= INVERTED_MIN_POINTS
                and self.agreement_inverted >= INVERTED_MIN_AGREEMENT
                and self.agreement_inverted >= INVERTED_MIN_RATIO * self.agreement_as_given)

    def to_dict(self) -> dict:
        return {**asdict(self), "inverted_likely": self.inverted_likely}


def pose_direction_evidence(depth: np.ndarray, K_pixels: np.ndarray, w2c_opencv: np.ndarray, *,
                            pixel_stride: int = 1) -> PoseDirectionEvidence:
    """Do these depth maps agree better with the poses as given or with their inverses?

    Each frame's back-projection is consistent with its own pose whichever way the pose is read; what
    a camera-to-world pose read as world-to-camera breaks is the agreement *between* frames. So both
    readings are scored with :func:`depth_agreement` and compared.

    Args:
        depth: (N, H, W) metres, N >= 2 frames of one scan (a handful, spread over the scan).
        K_pixels: (N, 3, 3) intrinsics for (H, W).
        w2c_opencv: (N, 4, 4) the poses as the scan declares them (world-to-camera, OpenCV axes).
        pixel_stride: back-projection stride (about 1,000 points per frame suffice).
    Returns:
        ``PoseDirectionEvidence``.
    """
    depth, K, w2c = _check(depth, K_pixels, w2c_opencv)
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    inverse = np.zeros_like(w2c)
    inverse[:, :3, :3] = np.swapaxes(R, 1, 2)
    inverse[:, :3, 3] = -np.einsum("nba,nb->na", R, t)
    inverse[:, 3, 3] = 1.0
    a, n_a = depth_agreement(depth, K, w2c, pixel_stride=pixel_stride)
    b, n_b = depth_agreement(depth, K, inverse, pixel_stride=pixel_stride)
    return PoseDirectionEvidence(a, b, n_a, n_b, len(depth))
