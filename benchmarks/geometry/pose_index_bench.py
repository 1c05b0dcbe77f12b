"""Pose index and pairwise pose distances for long trajectories, against a loop baseline.

Target (issue 2): 2,000 frames, pose index + pairwise distances <= 50 ms on 2 cores.
Baseline: a direct per-frame / per-pair Python transcription of the reference code (arccos, loops),
run on fewer frames and scaled by its complexity where it would take minutes.

    python benchmarks/geometry/pose_index_bench.py [--frames 500 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment, median_ms  # noqa: E402
from posevlm.geometry import lie_scalar_pose_index, pairwise_pose_distances, quat_xyzw_to_matrix, se3_from_Rt  # noqa: E402

TARGET_MS = 50.0


def trajectory(n: int) -> torch.Tensor:
    g = np.random.default_rng(0)
    q = g.normal(size=(n, 4))
    R = quat_xyzw_to_matrix(torch.from_numpy(q / np.linalg.norm(q, axis=1, keepdims=True)))
    return se3_from_Rt(R, torch.from_numpy(np.cumsum(g.normal(scale=0.02, size=(n, 3)), axis=0)))


def loop_pose_index(w2c: np.ndarray) -> np.ndarray:
    c2w = np.linalg.inv(w2c)
    R, c = c2w[:, :3, :3], c2w[:, :3, 3]
    theta = np.array([np.arccos(np.clip((np.trace(R[0].T @ R[i]) - 1) / 2, -1, 1)) for i in range(len(R))])
    d = np.array([np.linalg.norm(c[i] - c[0]) for i in range(len(R))])
    d = d / d.max()
    p = np.sqrt(theta**2 + d**2)
    return p / p.max()


def loop_pairwise(w2c: np.ndarray) -> np.ndarray:
    n = len(w2c)
    c = np.linalg.inv(w2c)[:, :3, 3]
    out = np.zeros((n, n, 2))
    for i in range(n):
        for j in range(n):
            out[i, j, 0] = np.linalg.norm(c[i] - c[j])
            out[i, j, 1] = np.arccos(np.clip((np.trace(w2c[i, :3, :3].T @ w2c[j, :3, :3]) - 1) / 2, -1, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    print(environment() + ", median of 20 after 3 warm-up")
    print(f"{'frames':>6} {'index_ms':>9} {'pairwise_ms':>11} {'total_ms':>9} {'target_ms':>9} {'baseline_ms':>12} {'speedup':>8}")
    for n in args.frames:
        w2c = trajectory(n)
        t_index = median_ms(lambda: lie_scalar_pose_index(w2c))
        t_pair = median_ms(lambda: pairwise_pose_distances(w2c))
        total = t_index + t_pair
        base_n = min(n, 200)
        w2c_np = w2c[:base_n].numpy()
        t_base_small = median_ms(lambda: (loop_pose_index(w2c_np), loop_pairwise(w2c_np)), repeats=3, warmup=1)
        baseline = t_base_small * (n / base_n) ** 2  # the pairwise loop dominates and is O(n^2)
        rows.append(dict(frames=n, index_ms=t_index, pairwise_ms=t_pair, total_ms=total, target_ms=TARGET_MS,
                         baseline_ms=baseline, baseline_extrapolated=base_n != n, speedup=baseline / total))
        star = "*" if base_n != n else " "
        print(f"{n:>6} {t_index:>9.2f} {t_pair:>11.2f} {total:>9.2f} {TARGET_MS:>9.0f} {baseline:>11.0f}{star} {baseline / total:>7.0f}x")
    print("* baseline measured at 200 frames and scaled by (n/200)^2")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
