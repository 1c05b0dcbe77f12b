"""Voxel-coverage selection on VGGT-sized point maps, against the set-based reference.

Target: 128 frames of 392x518 point maps + confidences, voxelisation + greedy selection for
k = 8 / 16 / 32 <= 1 s on 2 cores, with picks identical to the set-based baseline.
Scene: synthetic room (seed 0), 128-frame linspace pool of a 1,000-frame scan, depth rendered at
392x518 and back-projected to float32 world points; confidence = 1 + exp(-0.3 depth + N(0, 1)).
Baseline: the research code's per-frame voxel sets as Python sets of tuples plus its set-difference
greedy (`_reference_voxel_sets`, `_reference_greedy`), run once (it takes tens of seconds).

    python benchmarks/sampling/voxel_coverage_bench.py [--k 8 16 32] [--repeats 5] [--no-baseline] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment, median_ms  # noqa: E402
from posevlm.geometry import transform_points, w2c_to_c2w  # noqa: E402
from posevlm.sampling.voxel_coverage import (  # noqa: E402
    _reference_greedy, _reference_voxel_sets, select_voxel_coverage, voxel_sets_from_points,
)
from posevlm.scenes.synthetic import SynthConfig, generate_layout, generate_trajectory, render, synthetic_intrinsics  # noqa: E402

TARGET_MS = 1000.0
HW = (392, 518)


def scene(pool_size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(world_points (P, H, W, 3) float32, confidence (P, H, W) float32, w2c (P, 4, 4))."""
    rng = np.random.default_rng(np.random.SeedSequence([0, 0]))
    layout = generate_layout(rng)
    w2c = generate_trajectory(layout, rng, num_frames=1000)[np.linspace(0, 999, pool_size).astype(np.int64)]
    K = synthetic_intrinsics(SynthConfig(image_hw=HW))
    depth = render(layout, w2c, K, HW).depth
    v, u = np.mgrid[0 : HW[0], 0 : HW[1]] + 0.5
    world = np.empty((pool_size, *HW, 3), np.float32)
    for f in range(pool_size):
        d = depth[f].astype(np.float64)
        cam = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d], -1).reshape(-1, 3)
        world[f] = transform_points(w2c_to_c2w(torch.from_numpy(w2c[f])), torch.from_numpy(cam)).numpy().reshape(*HW, 3)
    noise = np.random.default_rng(1).normal(size=depth.shape)
    return world, (1.0 + np.exp(-0.3 * depth + noise)).astype(np.float32), w2c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-baseline", action="store_true", help="skip the slow set-based baseline")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    world, conf, w2c = scene()
    print(environment() + f", median of {args.repeats} after 1 warm-up (selection: 20 after 3)")
    print(f"scene: {world.shape[0]} frames of {HW[0]}x{HW[1]} point maps built in {time.perf_counter() - t0:.1f} s")
    t_vox = median_ms(lambda: voxel_sets_from_points(world, conf), repeats=args.repeats, warmup=1)
    vox = voxel_sets_from_points(world, conf)
    print(f"voxel sets: {vox.num_voxels} voxels of {vox.voxel_size:.3f} m, {vox.voxel_ids.size} (frame, voxel) pairs, "
          f"{np.mean(np.diff(vox.frame_offsets)):.0f} voxels per frame; voxelisation {t_vox:.0f} ms")
    ref_sets, t_ref_vox = None, None
    if not args.no_baseline:
        t1 = time.perf_counter()
        ref_sets = _reference_voxel_sets(world, conf)
        t_ref_vox = (time.perf_counter() - t1) * 1e3
        print(f"baseline voxel sets identical: {ref_sets == vox.to_python_sets()} ({t_ref_vox / 1e3:.1f} s)")
    rows = []
    print(f"{'k':>3} {'vox_ms':>7} {'select_ms':>9} {'total_ms':>9} {'target_ms':>9} {'ratio':>6} "
          f"{'base_ms':>9} {'speedup':>8} {'same_picks':>10} {'greedy':>6} {'coverage':>8}")
    for k in args.k:
        t_sel = median_ms(lambda: select_voxel_coverage(vox, k, fill="none"))
        sel = select_voxel_coverage(vox, k, fill="none")
        total = t_vox + t_sel
        row = dict(k=k, voxelise_ms=t_vox, select_ms=t_sel, total_ms=total, target_ms=TARGET_MS,
                   ratio_to_target=total / TARGET_MS, greedy=sel.n_returned_before_fill,
                   coverage_ratio=sel.stats["coverage_ratio"])
        base, same = float("nan"), None
        if ref_sets is not None:
            t1 = time.perf_counter()
            ref = _reference_greedy(ref_sets, k)
            base = t_ref_vox + (time.perf_counter() - t1) * 1e3  # type: ignore[operator]
            same = ref == sel.selection_order.tolist()
            row.update(baseline_ms=base, speedup=base / total, same_picks=same)
        rows.append(row)
        print(f"{k:>3} {t_vox:>7.0f} {t_sel:>9.2f} {total:>9.0f} {TARGET_MS:>9.0f} {total / TARGET_MS:>6.2f} "
              f"{base:>9.0f} {base / total:>7.0f}x {str(same):>10} {sel.n_returned_before_fill:>6} "
              f"{sel.stats['coverage_ratio']:>8.3f}")
    print("ratio = total / target (< 1 meets it); baseline = set-based voxelisation (once) + set greedy for that k")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
