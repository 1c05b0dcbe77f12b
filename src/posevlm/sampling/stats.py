"""Selection quality statistics computed the same way for every strategy (so strategies compare):
each pool frame's pose distance to its nearest chosen frame. (Voxel coverage is reported by the
voxel_coverage selector itself.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posevlm.geometry import camera_centers, geodesic_angle, pairwise_pose_distances
from posevlm.sampling.pose_fps import min_distance_stats as spec_min_distance_stats

__all__ = ["min_distance_stats", "pool_normalizers"]


def pool_normalizers(w2c_opencv: torch.Tensor) -> tuple[float, float]:
    """(max camera-centre distance, max geodesic angle) over all pairs of the pool (1.0 where 0)."""
    d_t, d_r = pairwise_pose_distances(w2c_opencv)
    t_max, r_max = float(d_t.max()), float(d_r.max())
    return (t_max if t_max > 0 else 1.0), (r_max if r_max > 0 else 1.0)


def min_distance_stats(w2c_opencv: torch.Tensor, chosen: np.ndarray, *,
                       normalizers: tuple[float, float] | None = None) -> dict[str, Any]:
    """For every pool frame, the max-normalised pose distance (centre / max + angle / max, the
    reference's ``max_norm``) to its nearest chosen frame, reduced as sampling spec section 8.1 says
    (mean and max over unchosen frames, std over all) by the same function the pose-FPS selector uses.
    The runner records these for every strategy, replacing a selector's own-weighting values, so
    manifests compare across strategies.

    Only chosen x pool distances are computed (O(K P)); pass ``normalizers`` from
    :func:`pool_normalizers` to reuse the pool's maxima across selections.
    """
    t_max, r_max = normalizers if normalizers is not None else pool_normalizers(w2c_opencv)
    idx = torch.as_tensor(np.unique(chosen))
    centers = camera_centers(w2c_opencv)
    d_t = torch.cdist(centers[idx], centers, compute_mode="donot_use_mm_for_euclid_dist")
    rot = w2c_opencv[:, :3, :3]
    d_r = geodesic_angle(rot[idx][:, None], rot[None])
    nearest = (d_t / t_max + d_r / r_max).min(dim=0).values
    return spec_min_distance_stats(nearest, idx.tolist())
