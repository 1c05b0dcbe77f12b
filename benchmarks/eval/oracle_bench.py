"""Oracle accuracy vs frame budget on tiny synthetic scenes, plus its cost (not a test).

    python benchmarks/eval/oracle_bench.py [--scenes 6] [--frames 60] [--hw 48 64] [--fps 3]
                                           [--seed 0] [--budgets 1 8 16 0] [--json out.json]

Generates ``--scenes`` synthetic scenes into a fresh temporary directory (removed afterwards), makes
the synthetic VSI-style questions (seed ``--seed``) and answers them with the oracle given K
uniformly spaced frames (rounded linspace over the frame ids; K = 0 means every frame). Scores:
accuracy for multiple choice, official MRA for numerical answers; ``chance`` is the expected
accuracy of a uniform random letter. Time: median ms of one ``observe`` + answering per scene.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment  # noqa: E402
from posevlm.eval.backends import OracleConfig, answer_oracle_many  # noqa: E402
from posevlm.eval.benchmarks import QUESTION_TYPES, generate_questions  # noqa: E402
from posevlm.eval.metrics import mra  # noqa: E402
from posevlm.eval.perception import observe  # noqa: E402
from posevlm.scenes import load_scene  # noqa: E402
from posevlm.scenes.synthetic import SynthConfig, generate_dataset  # noqa: E402


def _frames(frame_ids: np.ndarray, k: int) -> np.ndarray:
    if k == 0 or k >= len(frame_ids):
        return frame_ids
    return frame_ids[np.linspace(0, len(frame_ids) - 1, k).round().astype(int)]


def run(n_scenes: int, frames: int, hw: tuple[int, int], fps: float, seed: int, budgets: list[int]) -> dict:
    root = Path(tempfile.mkdtemp(prefix="oracle_bench_"))
    try:
        cfg = SynthConfig(seed=seed, num_frames=frames, image_hw=hw, fps=fps)
        scenes = [load_scene(p) for p in generate_dataset(root, n_scenes, cfg)]
        scores = {k: {t: [] for t in QUESTION_TYPES} for k in budgets}
        chance = {t: [] for t in QUESTION_TYPES}
        times = {k: [] for k in budgets}
        for scene in scenes:
            records = generate_questions(scene, seed=seed)
            for r in records:
                if r["options"]:
                    chance[r["question_type"]].append(1.0 / len(r["options"]))
            for k in budgets:
                t0 = time.perf_counter()
                obs = observe(scene, _frames(scene.frame_ids, k), OracleConfig())
                answers = answer_oracle_many(records, scene, obs.frame_ids, observation=obs)
                times[k].append((time.perf_counter() - t0) * 1e3)
                for r, a in zip(records, answers):
                    s = float(a == r["ground_truth"]) if r["options"] else mra(float(a), float(r["ground_truth"]))
                    scores[k][r["question_type"]].append(s)
    finally:
        shutil.rmtree(root)
    rows = []
    for t in QUESTION_TYPES:
        row = {"question_type": t, "n": len(scores[budgets[0]][t]),
               "chance": float(np.mean(chance[t])) if chance[t] else None}
        row.update({f"k{k}": float(np.mean(scores[k][t])) if scores[k][t] else None for k in budgets})
        rows.append(row)
    micro = {f"k{k}": float(np.mean([s for v in scores[k].values() for s in v])) for k in budgets}
    return {"config": {"scenes": n_scenes, "frames": frames, "image_hw": list(hw), "fps": fps, "seed": seed,
                       "budgets": budgets},
            "rows": rows, "micro": micro, "median_ms": {f"k{k}": float(np.median(times[k])) for k in budgets}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--hw", type=int, nargs=2, default=(48, 64), metavar=("H", "W"))
    parser.add_argument("--fps", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 16, 8, 1], help="frames; 0 = all")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    report = run(args.scenes, args.frames, tuple(args.hw), args.fps, args.seed, args.budgets)
    print(environment())
    c = report["config"]
    print(f"scenes: {c['scenes']} synthetic, {c['frames']} frames at {c['image_hw'][1]}x{c['image_hw'][0]}, "
          f"{c['fps']} fps, seed {c['seed']}; budgets {['all' if k == 0 else k for k in c['budgets']]}")
    cols = [f"k{k}" for k in c["budgets"]]
    names = ["all" if k == 0 else f"{k} fr" for k in c["budgets"]]
    print(f"{'question_type':30s} {'n':>3s} {'chance':>6s} " + " ".join(f"{n:>6s}" for n in names))
    for r in report["rows"]:
        cells = " ".join("     -" if r[k] is None else f"{r[k]:6.2f}" for k in cols)
        chance = "     -" if r["chance"] is None else f"{r['chance']:6.2f}"
        print(f"{r['question_type']:30s} {r['n']:3d} {chance} {cells}")
    print(f"{'micro (all samples)':30s} {'':3s} {'':6s} " + " ".join(f"{report['micro'][k]:6.2f}" for k in cols))
    print(f"{'median ms / scene':30s} {'':3s} {'':6s} " + " ".join(f"{report['median_ms'][k]:6.0f}" for k in cols))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
