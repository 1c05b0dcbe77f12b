"""Where the demo's evaluation and report stages spend their time (not a test).

Re-runs stages 4-5 of ``posevlm demo`` (oracle evaluation of every selection, report) on the output
directory of an earlier demo run, after deleting its ``runs/`` and ``report/`` (scans, selections and
the benchmark are reused), with wall-clock timers around the calls that matter. The evaluation rows
do not overlap; ``other`` is the evaluation stage minus their sum (runner loop, prompts, records).

    python -m posevlm demo --out runs/demo                 # once
    python benchmarks/eval/demo_eval_breakdown.py runs/demo [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment  # noqa: E402

import posevlm.eval.backends.oracle as oracle  # noqa: E402
import posevlm.eval.report as report  # noqa: E402
import posevlm.eval.run_store as run_store  # noqa: E402
import posevlm.eval.runner as runner  # noqa: E402
import posevlm.scenes as scenes  # noqa: E402
from posevlm.eval.demo import run_demo  # noqa: E402
from posevlm.eval.frames import FrameCache  # noqa: E402

#: (owner, attribute, label)
TIMED = [(oracle, "observe", "observe (perception)"), (oracle, "answer_oracle_many", "answer"),
         (scenes, "load_scene", "load_scene"), (FrameCache, "get", "FrameCache.get (RGB decode)"),
         (run_store.RunStore, "append", "RunStore.append (fsync)"), (runner, "score_record", "score_record"),
         (runner, "preflight", "preflight"), (report, "plot_score_vs_frames", "plot")]
EVAL_ROWS = {"observe (perception)", "answer", "load_scene", "FrameCache.get (RGB decode)",
             "RunStore.append (fsync)", "score_record", "preflight"}


def timed(seconds: dict, calls: dict) -> None:
    for owner, name, label in TIMED:
        fn = getattr(owner, name)

        def wrapper(*args, _fn=fn, _label=label, **kwargs):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                seconds[_label] += time.perf_counter() - t0
                calls[_label] += 1

        setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo_out", help="output directory of an earlier `posevlm demo` run (default settings)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = Path(args.demo_out)
    if not (out / "sampled").is_dir() or not list(out.glob("benchmark_*.jsonl")):
        sys.exit(f"{out} is not a demo output directory; run `python -m posevlm demo --out {out}` first")
    for sub in ("runs", "report"):
        shutil.rmtree(out / sub, ignore_errors=True)
    seconds, calls = defaultdict(float), defaultdict(int)
    timed(seconds, calls)
    marks: dict[str, float] = {}
    run_demo(out, log=lambda m: marks.setdefault(m[:5], time.perf_counter()) if m.startswith("[") else None)
    end = time.perf_counter()
    eval_s, report_s = marks["[5/5]"] - marks["[4/5]"], end - marks["[5/5]"]
    print(environment())
    print(f"demo output {out}: eval stage {eval_s:.2f} s, report stage {report_s:.2f} s")
    print(f"{'call':<30} {'seconds':>8} {'calls':>6} {'share of eval':>14}")
    for label, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        share = f"{100 * s / eval_s:13.0f}%" if label in EVAL_ROWS else ""
        print(f"{label:<30} {s:>8.2f} {calls[label]:>6} {share:>14}")
    other = eval_s - sum(s for label, s in seconds.items() if label in EVAL_ROWS)
    print(f"{'other (runner loop, records)':<30} {other:>8.2f} {'':>6} {100 * other / eval_s:13.0f}%")
    if args.json:
        print(json.dumps({"eval_s": eval_s, "report_s": report_s, "seconds": seconds, "calls": calls}))


if __name__ == "__main__":
    main()
