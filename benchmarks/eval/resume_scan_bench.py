"""Resume scan of a full-size eval run directory: 5,130 records in 4 rank files, one torn last line.

Target: ``RunStore.missing_ids()`` (read run_config.json + scan every shard + diff with the expected
ids: what a restarted runner does first) in < 1 s. Also prints ``scan()`` alone, ``load_run`` (the
report's reader), the cost of one ``append`` (json line + flush + fsync) and, with ``--compare``,
``compare_records`` with 10,000 bootstrap resamples on the same records.

    python benchmarks/eval/resume_scan_bench.py [--repeats 10] [--raw-chars 0] [--compare] [--json]

``--raw-chars`` pads every raw output to that length (verbose models write long answers; the
fork generated up to 1,024 tokens).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment, median_ms  # noqa: E402
from benchmarks.eval.scoring_bench import synthetic_run  # noqa: E402
from posevlm.eval import score_records  # noqa: E402
from posevlm.eval.compare import compare_records  # noqa: E402
from posevlm.eval.run_store import RunStore, load_run  # noqa: E402

TARGET_MS = 1000.0
WORLD = 4


def run_records(raw_chars: int, seed: int = 0) -> list[dict]:
    rows, outputs = synthetic_run(seed)
    if raw_chars:
        outputs = [(o + " " + "reasoning " * (raw_chars // 10))[:max(raw_chars, len(o))] for o in outputs]
    written = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).isoformat()
    out = []
    for row, scored in zip(rows, score_records(rows, outputs)):
        out.append({"id": row["id"], "dataset": row["dataset"], "scene_name": row["scene_name"],
                    "question_type": row["question_type"], "ground_truth": row["ground_truth"],
                    "options": row["options"], "status": "ok", "error": None,
                    "raw_output": scored["raw_output"], "scores": scored["modes"],
                    "frames": {"frame_ids": list(range(0, 512, 16)), "source": "folder",
                               "video_grid_thw": [[16, 28, 28]], "n_visual_tokens": 3136},
                    "timings_ms": {"load": 12.5, "generate": 410.2}, "attempt": 1, "written": written})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--raw-chars", type=int, default=0)
    ap.add_argument("--compare", action="store_true", help="also time compare_records (10,000 resamples)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    records = run_records(args.raw_chars)
    tmp = Path(tempfile.mkdtemp(prefix="posevlm_resume_bench_"))
    try:
        store = RunStore(tmp / "run")
        store.create_or_verify({"benchmark": {"name": "synthetic-5130"}}, [r["id"] for r in records])
        t0 = time.perf_counter()
        for k, rec in enumerate(records):
            store.append(rec, k % WORLD, WORLD)
        append_ms = (time.perf_counter() - t0) * 1e3 / len(records)
        with open(store.shard_path(0, WORLD), "a") as f:  # a killed writer
            f.write(json.dumps(records[0])[:100])
        size_mb = sum(p.stat().st_size for p in store.shard_files()) / 1e6
        found, stats = store.scan_with_stats()
        assert len(found) == len(records) and stats.truncated and store.is_complete()
        t_missing = median_ms(store.missing_ids, repeats=args.repeats, warmup=2)
        t_scan = median_ms(store.scan, repeats=args.repeats, warmup=2)
        t_load = median_ms(lambda: load_run(store.run_dir), repeats=args.repeats, warmup=2)
        t_cmp = None
        if args.compare:
            flipped = [{**r["scores"]["official"], "score": 1.0 - r["scores"]["official"]["score"]}
                       for r in records]
            other = [{**r, "scores": {**r["scores"], "official": f}} for r, f in zip(records, flipped)]
            t_cmp = median_ms(lambda: compare_records(records, other, n_bootstrap=10_000, seed=0),
                              repeats=max(3, args.repeats // 3), warmup=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(environment() + f", median of {args.repeats} after 2 warm-up")
    print(f"records {len(records)} in {WORLD} rank files, {size_mb:.1f} MB, one torn last line; "
          f"append (json + flush + fsync) {append_ms:.3f} ms/record")
    print(f"{'step':<28} {'ms':>8} {'target_ms':>9} {'ratio(ms/target)':>16}")
    print(f"{'missing_ids (resume)':<28} {t_missing:>8.1f} {TARGET_MS:>9.0f} {t_missing / TARGET_MS:>16.3f}")
    print(f"{'scan':<28} {t_scan:>8.1f} {TARGET_MS:>9.0f} {t_scan / TARGET_MS:>16.3f}")
    print(f"{'load_run (report reader)':<28} {t_load:>8.1f} {'-':>9} {'-':>16}")
    if t_cmp is not None:
        print(f"{'compare_records 10k boot':<28} {t_cmp:>8.1f} {'-':>9} {'-':>16}")
    if args.json:
        print(json.dumps({"records": len(records), "size_mb": size_mb, "append_ms_per_record": append_ms,
                          "missing_ids_ms": t_missing, "scan_ms": t_scan, "load_run_ms": t_load,
                          "compare_10k_ms": t_cmp, "target_ms": TARGET_MS}, indent=1))


if __name__ == "__main__":
    main()
