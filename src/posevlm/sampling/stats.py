"""Selection quality statistics computed the same way for every strategy (so strategies compare):
each pool frame's pose distance to its nearest chosen frame. (Voxel coverage is reported by the
voxel_coverage selector itself.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posevlm.geometry import pairwise_pose_distances

__all__ = ["min_distance_stats"]


def min_distance_stats(w2c_opencv: torch.Tensor, chosen: np.ndarray) -> dict[str, Any]:
    """For every pool frame, the max-normalised pose distance (centre / max + angle / max, the
    reference's ``max_norm``) to its nearest chosen frame: mean, max over unchosen frames, std over all."""
    d_t, d_r = pairwise_pose_distances(w2c_opencv)
    t_max, r_max = float(d_t.max()), float(d_r.max())
    dist = d_t / (t_max if t_max > 0 else 1.0) + d_r / (r_max if r_max > 0 else 1.0)
    idx = torch.as_tensor(np.unique(chosen))
    nearest = dist[:, idx].min(dim=1).values.numpy()
    unchosen = np.setdiff1d(np.arange(nearest.size), idx.numpy())
    return {
        "min_distance_mean": float(nearest.mean()),
        "min_distance_max": float(nearest[unchosen].max()) if unchosen.size else 0.0,
        "min_distance_std": float(nearest.std()),
    }
