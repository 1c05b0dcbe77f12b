"""Benchmark the synthetic ray-cast renderer against its per-frame targets (not a test).

    python benchmarks/scenes/render_bench.py [--seed 0] [--frames 48] [--batch 16] [--repeats 3]
                                             [--warmup 5] [--json out.json]

Generates one layout and a 600-frame trajectory from ``--seed``, picks ``--frames`` evenly spaced
poses and times ``render`` at 640x480 (target 50 ms/frame) and 160x120 (target 5 ms/frame), 70 deg
horizontal field of view, in two modes:
  per-frame: one ``render`` call per pose (latency; buffers are allocated per call);
  batch:     ``render`` calls of ``--batch`` poses (the writer's chunk size), time per frame (throughput).
             Very large batches pay for first-touching their freshly allocated outputs (~150 MB for
             40 frames at 640x480), which costs several ms per frame on this VM.
Reports the median (and p90 for per-frame) over poses after warm-up; ratio = median / target
(< 1 meets the target). Single process; numpy may use more than one thread only inside BLAS calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from posevlm.provenance import provenance
from posevlm.scenes.synthetic.layout import generate_layout
from posevlm.scenes.synthetic.raycast import render
from posevlm.scenes.synthetic.trajectory import generate_trajectory

TARGETS_MS = {(480, 640): 50.0, (120, 160): 5.0}


def _K(image_hw: tuple[int, int], hfov_deg: float = 70.0) -> np.ndarray:
    h, w = image_hw
    f = (w / 2) / np.tan(np.deg2rad(hfov_deg) / 2)
    return np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])


def run(seed: int, frames: int, batch_size: int, repeats: int, warmup: int) -> dict:
    layout = generate_layout(np.random.default_rng(seed))
    w2c = generate_trajectory(layout, np.random.default_rng(seed), num_frames=600)
    poses = w2c[np.linspace(0, len(w2c) - 1, frames).round().astype(int)]
    rows = []
    for hw, target in TARGETS_MS.items():
        K = _K(hw)
        for k in range(warmup):
            render(layout, poses[k % frames], K, hw)
        per_frame = []
        for _ in range(repeats):
            for pose in poses:
                t0 = time.perf_counter()
                render(layout, pose, K, hw)
                per_frame.append((time.perf_counter() - t0) * 1e3)
        batch = []
        for _ in range(repeats):
            for start in range(0, frames - batch_size + 1, batch_size):
                t0 = time.perf_counter()
                out = render(layout, poses[start : start + batch_size], K, hw)
                batch.append((time.perf_counter() - t0) * 1e3 / batch_size)
        covered = float((out.instance > 0).mean())
        for mode, times in (("per-frame", per_frame), ("batch", batch)):
            med = float(np.median(times))
            rows.append({"size": f"{hw[1]}x{hw[0]}", "mode": mode, "median_ms": med,
                         "p90_ms": float(np.percentile(times, 90)), "target_ms": target,
                         "ratio": med / target, "object_pixel_fraction": covered})
    env = provenance(cpus=os.cpu_count(), machine=platform.machine(), processor=platform.processor() or None)
    scene = {"seed": seed, "room_boxes": len(layout.room.boxes_xy), "objects": len(layout.objects),
             "floor_area_m2": round(layout.room.floor_area_m2, 2), "frames": frames, "batch": batch_size,
             "repeats": repeats, "warmup": warmup}
    return {"env": env, "scene": scene, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=48, help="poses timed per size")
    parser.add_argument("--batch", type=int, default=16, help="poses per render call in batch mode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if not 1 <= args.batch <= args.frames:
        parser.error(f"--batch must be in [1, --frames={args.frames}]; got {args.batch}")
    report = run(args.seed, args.frames, args.batch, args.repeats, args.warmup)
    env, scene = report["env"], report["scene"]
    print(f"env: python {env['python']}, numpy {env['numpy']}, torch {env['torch']}, cpus {env['cpus']}, "
          f"{env['machine']}, posevlm {env['posevlm']}, commit {env['git']}")
    print(f"scene: seed {scene['seed']}, {'L-shaped' if scene['room_boxes'] == 2 else 'rectangular'} room "
          f"{scene['floor_area_m2']} m2, {scene['objects']} objects; {scene['frames']} poses "
          f"(batches of {scene['batch']}) x {scene['repeats']} repeats, {scene['warmup']} warm-up renders")
    print(f"{'size':8s} {'mode':10s} {'median_ms':>9s} {'p90_ms':>7s} {'target_ms':>9s} {'ratio':>6s}")
    for r in report["results"]:
        print(f"{r['size']:8s} {r['mode']:10s} {r['median_ms']:9.2f} {r['p90_ms']:7.2f} "
              f"{r['target_ms']:9.1f} {r['ratio']:6.2f}{'' if r['ratio'] <= 1 else '  MISSES TARGET'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
