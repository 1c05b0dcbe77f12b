"""`posevlm demo` end to end, a baseline commit and this checkout side by side (not a test).

Target (issue 11, item 3): total time >= 5x faster than the baseline with an identical report. The
baseline is the ``src/`` tree of ``--baseline`` (default 9cb1300, main before the observation cache)
extracted with ``git archive`` into a temporary directory; each variant runs ``python -m posevlm demo``
in its own subprocess with its own ``PYTHONPATH`` and a fresh ``--out``, so both pay the same
interpreter start, imports and every stage from scratch. Stage times come from the demo's own
``[k/5]`` progress lines, stamped as they arrive: ``startup`` = process start to ``[1/5]`` (imports),
``report`` = ``[5/5]`` to process exit (report files and printing the table).

The reports are compared after removing what must differ between two runs: the output directory in
paths, run ids (hashes of configs that contain those paths), ``provenance`` blocks (dates, git hash).
Compared files: ``metrics.json`` (parsed), ``results_long.csv`` (without ``run_id``), ``table.md``,
``table.tex``.

    python benchmarks/eval/demo_bench.py [--baseline 9cb1300] [--scenes 4] [--seed 0] [--repeats 1]
                                          [--keep DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STAGES = ("startup", "synth", "sampling", "benchmark", "eval", "report")
TARGET = 5.0


def extract_baseline(commit: str, dest: Path) -> Path:
    """``src/`` of ``commit`` under ``dest`` (no worktree, nothing written to the repository)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src"], check=True,
                             capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def run_demo(src: Path, out: Path, scenes: int, seed: int) -> dict[str, float]:
    """Run ``posevlm demo`` with ``PYTHONPATH=src``; seconds per stage and ``total`` (wall clock)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}
    cmd = [sys.executable, "-m", "posevlm", "demo", "--out", str(out), "--scenes", str(scenes),
           "--seed", str(seed)]
    t0 = time.perf_counter()
    marks, lines = [t0], []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=out.parent) as proc:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"[{len(marks)}/5]"):
                marks.append(time.perf_counter())
    end = time.perf_counter()
    if proc.returncode or len(marks) != 6:
        tail = "".join(lines[-30:])
        raise RuntimeError(f"demo with PYTHONPATH={src} failed (exit {proc.returncode}):\n{tail}")
    marks.append(end)
    return {**{s: b - a for s, a, b in zip(STAGES, marks, marks[1:])}, "total": end - t0}


def normalised_report(out: Path) -> dict[str, object]:
    """The demo's report files with run-specific fields removed (see the module docstring)."""
    report = out / "report"
    text = {name: (report / name).read_text(encoding="utf-8").replace(str(out), "<OUT>")
            for name in ("metrics.json", "results_long.csv", "table.md", "table.tex")}
    metrics = json.loads(text["metrics.json"])
    metrics.pop("provenance")
    for run in metrics["runs"]:
        run.pop("provenance"), run.pop("run_id")
    rows = list(csv.DictReader(io.StringIO(text["results_long.csv"])))
    for row in rows:
        row.pop("run_id")
    return {"metrics.json": metrics, "results_long.csv": rows, "table.md": text["table.md"],
            "table.tex": text["table.tex"]}


def ulp_differences(a: object, b: object, path: str = "") -> list[tuple[str, float]] | None:
    """Where ``a`` and ``b`` differ only in the last bits of floats: ``[(path, ulps)]``; None if they differ in
    anything else (structure, strings, or numbers by more than 4 ulp). Numbers in the CSV are strings."""
    import math

    def num(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            return None

    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return None
        out = []
        for k in a:
            sub = ulp_differences(a[k], b[k], f"{path}/{k}")
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return None
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            sub = ulp_differences(x, y, f"{path}[{i}]")
            if sub is None:
                return None
            out += sub
        return out
    if a == b:
        return []
    x, y = num(a), num(b)
    if x is None or y is None or isinstance(a, bool) or isinstance(b, bool):
        return None
    ulps = abs(x - y) / math.ulp(max(abs(x), abs(y)))
    return [(path, ulps)] if ulps <= 4 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="9cb1300", help="commit whose src/ is the baseline")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="runs per variant, alternating (baseline first)")
    ap.add_argument("--keep", help="write the demo outputs here and keep them (default: a removed temp dir)")
    ap.add_argument("--json", help="also write the timings to this JSON file")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="posevlm-demo-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        variants = {"baseline": extract_baseline(args.baseline, tmp / "baseline_src"), "ours": REPO / "src"}
        times: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        reports = {}
        for i in range(args.repeats):
            for name, src in variants.items():
                out = tmp / f"{name}_{i}"
                times[name].append(run_demo(src, out, args.scenes, args.seed))
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"  {name} run {i + 1}: {times[name][-1]['total']:.1f} s (load average after: {load})",
                      flush=True)
                reports[name] = normalised_report(out)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    best = {v: min(ts, key=lambda t: t["total"]) for v, ts in times.items()}
    identical = {f: reports["baseline"][f] == reports["ours"][f] for f in reports["ours"]}
    print(environment())
    print(f"posevlm demo: {args.scenes} scenes, seed {args.seed}; baseline = src/ of {args.baseline}; "
          f"{args.repeats} run(s) each, fastest shown")
    print(f"{'stage':<10} {'baseline s':>11} {'ours s':>8} {'ratio':>7}")
    for stage in (*STAGES, "total"):
        b, o = best["baseline"][stage], best["ours"][stage]
        print(f"{stage:<10} {b:>11.2f} {o:>8.2f} {b / o:>6.1f}x")
    ratio = best["baseline"]["total"] / best["ours"]["total"]
    print(f"total speed-up {ratio:.1f}x (target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})")
    print("report identical: " + ", ".join(f"{f} {'yes' if ok else 'NO'}" for f, ok in identical.items()))
    ulps = {f: ulp_differences(reports["baseline"][f], reports["ours"][f]) for f, ok in identical.items() if not ok}
    for f, diffs in ulps.items():
        if diffs is None:
            print(f"  {f}: differs beyond floating-point rounding")
        else:
            print(f"  {f}: {len(diffs)} number(s) differ by <= {max(u for _, u in diffs):.0f} ulp (e.g. {diffs[0][0]}): "
                  "means now use the official mean's pairwise sum (issue 10 item 8), not math.fsum")
    if args.json:
        doc = {"baseline": args.baseline, "scenes": args.scenes, "seed": args.seed, "times": times,
               "speedup_total": ratio, "identical": identical,
               "ulp_differences": {f: d if d is None else len(d) for f, d in ulps.items()}}
        Path(args.json).write_text(json.dumps(doc, indent=1))
    if any(d is None for d in ulps.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
