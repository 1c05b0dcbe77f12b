"""Selection quality statistics computed the same way for every strategy (so strategies compare):
voxel coverage of the chosen frames and each pool frame's pose distance to its nearest chosen frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posevlm.geometry import pairwise_pose_distances

__all__ = ["coverage_stats", "min_distance_stats"]


def coverage_stats(frame_offsets: np.ndarray, voxel_ids: np.ndarray, chosen: np.ndarray) -> dict[str, Any]:
    """Coverage of the union of all pool voxels by the chosen pool indices.

    Args:
        frame_offsets: (P + 1,) CSR offsets into ``voxel_ids`` per pool frame.
        voxel_ids: (V_total,) voxel ids, frame by frame.
        chosen: (K,) pool indices (repeats allowed).
    """
    total = np.unique(voxel_ids).size
    parts = [voxel_ids[frame_offsets[i] : frame_offsets[i + 1]] for i in np.unique(chosen)]
    covered = np.unique(np.concatenate(parts)).size if parts else 0
    return {"coverage_ratio": covered / total if total else 0.0, "covered_voxels": int(covered),
            "total_voxels": int(total)}


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
