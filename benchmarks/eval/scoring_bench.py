"""Score + aggregate a full synthetic VSI-Bench run: 5,130 records with the §1.2 distribution of
question types and datasets, random raw outputs (clean letters/numbers, verbose, tagged, garbage).

Target: parse + score under all three modes (official, lenient, legacy) and aggregate every mode
with per-dataset columns in < 1 s. Baseline: the per-record scalar path (``score_record`` in a
loop), i.e. the same work without the vectorised MRA.

    python benchmarks/eval/scoring_bench.py [--repeats 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment, median_ms  # noqa: E402
from posevlm.eval import (  # noqa: E402
    DEFAULT_MODES,
    MCA_QUESTION_TYPES,
    VSIBENCH_FULL_COUNTS,
    aggregate_scored,
    score_record,
    score_records,
)

TARGET_MS = 1000.0
MCA_TEMPLATES = ["{L}", "{L}.", "{l}", "{L}. {opt}", "{L}) {opt}", "({L})", "The answer is {L}.", "<answer>{L}</answer>",
                 " {L}", "{L}\n", "Answer: {L}", "{opt}", "<think>maybe {L2}</think>{L}", "I am not sure.", ""]
NA_TEMPLATES = ["{x}", "{x}.", "{x} meters", "{x}m", "about {x}", "<answer>{x}</answer>", "{big}", "two",
                "{x}\n\nExplanation: estimated from the frames.", "It is roughly {x} square meters.", "", "nan"]


def synthetic_run(seed: int = 0) -> tuple[list[dict], list[str]]:
    rng = np.random.default_rng(seed)
    records, outputs = [], []
    for (q, dataset), n in VSIBENCH_FULL_COUNTS.items():
        for _ in range(n):
            i = len(records)
            if q in MCA_QUESTION_TYPES:
                k = {"object_rel_direction_easy": 2, "object_rel_direction_medium": 3}.get(q, 4)
                options = [f"{'ABCD'[j]}. option {j}" for j in range(k)]
                gt, pick, other = "ABCD"[rng.integers(k)], int(rng.integers(k)), "ABCD"[rng.integers(k)]
                raw = MCA_TEMPLATES[rng.integers(len(MCA_TEMPLATES))].format(
                    L="ABCD"[pick], l="abcd"[pick], L2=other, opt=f"option {pick}")
            else:
                options, gt_value = None, float(np.round(rng.uniform(0.4, 130.0), 1))
                gt = f"{gt_value:g}"
                x = float(np.round(gt_value * rng.uniform(0.3, 1.7), 2))
                raw = NA_TEMPLATES[rng.integers(len(NA_TEMPLATES))].format(x=f"{x:g}", big=f"{x * 1000:,.0f}")
            records.append({"id": i, "dataset": dataset, "scene_name": f"scene{i % 288:04d}", "question_type": q,
                            "question": "?", "options": options, "ground_truth": gt})
            outputs.append(raw)
    return records, outputs


def score_and_aggregate(records, outputs):
    scored = score_records(records, outputs)
    return {mode: aggregate_scored(scored, mode=mode) for mode in DEFAULT_MODES}


def scalar_baseline(records, outputs):
    scored = [score_record(r, o) for r, o in zip(records, outputs)]
    return {mode: aggregate_scored(scored, mode=mode) for mode in DEFAULT_MODES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    records, outputs = synthetic_run()
    result = score_and_aggregate(records, outputs)
    assert result["official"].to_dict() == scalar_baseline(records, outputs)["official"].to_dict()
    t_ours = median_ms(lambda: score_and_aggregate(records, outputs), repeats=args.repeats, warmup=2)
    t_base = median_ms(lambda: scalar_baseline(records, outputs), repeats=max(3, args.repeats // 2), warmup=1)
    print(environment() + f", median of {args.repeats} after 2 warm-up")
    print(f"{'records':>7} {'modes':>5} {'ours_ms':>8} {'target_ms':>9} {'ratio(ours/target)':>18} "
          f"{'scalar_ms':>9} {'speedup':>7}")
    print(f"{len(records):>7} {len(DEFAULT_MODES):>5} {t_ours:>8.1f} {TARGET_MS:>9.0f} {t_ours / TARGET_MS:>18.2f} "
          f"{t_base:>9.1f} {t_base / t_ours:>6.2f}x")
    for mode, agg in result.items():
        c = agg.columns
        print(f"  {mode:<8} macro_official_all={c['macro_official_all']:.4f} micro_all={c['micro_all']:.4f} "
              f"macro_legacy10_all={c['macro_legacy10_all']:.4f}")
    if args.json:
        print(json.dumps({"records": len(records), "ours_ms": t_ours, "target_ms": TARGET_MS,
                          "ratio": t_ours / TARGET_MS, "scalar_ms": t_base}, indent=1))


if __name__ == "__main__":
    main()
