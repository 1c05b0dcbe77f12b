"""Pose FPS over 2,000 cameras, against the research code's O(P²) loop.

Target: P = 2,000 cameras, k = 16 / 32 / 64 <= 50 ms on 2 cores (default options: centre distance,
max_norm, medoid start; std_norm shown too).
Trajectory: the synthetic hand-held scan of room seed 0, 2,000 frames at 30 fps.
Baseline: `_reference_fps` (Python double loop over pairs, arccos), measured on a P = 200 subsample
and scaled by (2000 / 200)² because the pair loop dominates and is O(P²).

    python benchmarks/sampling/pose_fps_bench.py [--cameras 2000] [--k 16 32 64] [--json]
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
from posevlm.sampling.pose_fps import _reference_fps, select_pose_fps  # noqa: E402
from posevlm.scenes.synthetic import generate_layout, generate_trajectory  # noqa: E402

TARGET_MS = 50.0
BASE_P = 200


def trajectory(n: int) -> torch.Tensor:
    rng = np.random.default_rng(np.random.SeedSequence([0, 0]))
    return torch.from_numpy(generate_trajectory(generate_layout(rng), rng, num_frames=n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=2000)
    ap.add_argument("--k", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    w2c = trajectory(args.cameras)
    small = w2c[np.linspace(0, args.cameras - 1, BASE_P).astype(np.int64)].numpy()
    scale = (args.cameras / BASE_P) ** 2
    print(environment() + ", median of 20 after 3 warm-up; baseline median of 3 after 1")
    print(f"{'P':>5} {'k':>3} {'weighting':>9} {'ours_ms':>8} {'min_ms':>7} {'target_ms':>9} {'ratio':>6} "
          f"{'base_ms':>9} {'speedup':>8} {'parity@200':>10}")
    rows = []
    for weighting in ("max_norm", "std_norm"):
        for k in args.k:
            ours = median_ms(lambda: select_pose_fps(w2c, k, weighting=weighting))
            fast_small = select_pose_fps(small, k, weighting=weighting).selection_order.tolist()
            base_small = median_ms(lambda: _reference_fps(small, k, weighting=weighting), repeats=3, warmup=1)
            same = fast_small == _reference_fps(small, k, weighting=weighting)
            t_min = min(median_ms(lambda: select_pose_fps(w2c, k, weighting=weighting), repeats=1, warmup=0)
                        for _ in range(10))
            base = base_small * scale
            rows.append(dict(cameras=args.cameras, k=k, weighting=weighting, ours_ms=ours, min_ms=t_min,
                             target_ms=TARGET_MS, ratio_to_target=ours / TARGET_MS, baseline_ms=base,
                             baseline_measured_at=BASE_P, speedup=base / ours, parity_at_200=same))
            print(f"{args.cameras:>5} {k:>3} {weighting:>9} {ours:>8.1f} {t_min:>7.1f} {TARGET_MS:>9.0f} "
                  f"{ours / TARGET_MS:>6.2f} {base:>8.0f}* {base / ours:>7.0f}x {str(same):>10}")
    print(f"* baseline measured at P = {BASE_P} and scaled by (P / {BASE_P})^2; ratio = ours / target (< 1 meets it)")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
