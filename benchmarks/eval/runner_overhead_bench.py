"""Eval-runner overhead per sample, model time excluded.

Target (issue 4): < 5 ms per sample. A ``dummy`` backend (constant answer, ~0 model time) drives the
whole runner: resolve, preflight, frame loading from sampled folders (decoded once per scene and
cached), prompt rendering, scoring in three parsing modes, and one fsync'd JSONL append per record.
Baseline: the same loop without the frame cache (every sample decodes its frames again), which is
what the reference evaluator did.

    python benchmarks/eval/runner_overhead_bench.py [--scenes 4] [--copies 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment  # noqa: E402
from posevlm.eval import frames as frame_sources  # noqa: E402
from posevlm.eval.benchmarks import generate_benchmark, read_benchmark_jsonl, write_benchmark_jsonl  # noqa: E402
from posevlm.eval.runner import EvalConfig, run_eval  # noqa: E402
from posevlm.sampling import SamplingConfig  # noqa: E402
from posevlm.sampling.runner import run_sampling  # noqa: E402
from posevlm.scenes.synthetic import SynthConfig, generate_dataset  # noqa: E402

TARGET_MS = 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--copies", type=int, default=8, help="copies of each question (new ids) to reach ~1k samples")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="posevlm-overhead-"))
    scenes = generate_dataset(tmp / "data" / "synthetic", args.scenes,
                              SynthConfig(seed=0, num_frames=120, image_hw=(240, 320), fps=10.0))
    sampler = SamplingConfig("uniform", 16)
    run_sampling(tmp / "data", [sampler], tmp / "sampled")
    base = generate_benchmark(scenes, seed=0, dataset="synthetic", max_per_type=4)
    records = [{**r, "id": r["id"] * 100 + c} for r in base for c in range(args.copies)]
    write_benchmark_jsonl(records, tmp / "bench.jsonl")
    n = len(read_benchmark_jsonl(tmp / "bench.jsonl"))
    cfg = EvalConfig(benchmark={"name": "synthetic_vsi", "source": str(tmp / "bench.jsonl")},
                     model={"backend": "dummy", "name": "dummy", "answer": "B"},
                     frames={"source": "folder_manifest", "root": str(tmp / "sampled" / sampler.slug), "num_frames": 16})
    t0 = time.perf_counter()
    summary = run_eval(cfg, tmp / "run")
    ours = (time.perf_counter() - t0) * 1e3 / n
    t0 = time.perf_counter()
    resumed = run_eval(cfg, tmp / "run")
    resume = (time.perf_counter() - t0) * 1e3
    # baseline: the reference evaluator decoded every sample's frames again; measure one decode per scene
    # request and add it to every sample (per-sample decode = runner overhead + one decode)
    requests = [frame_sources.FolderManifest(str(tmp / "sampled" / sampler.slug / "synthetic" / s.name), 16)
                for s in scenes]
    t0 = time.perf_counter()
    for req in requests:
        req.load()
    decode = (time.perf_counter() - t0) * 1e3 / len(requests)
    baseline = ours + decode
    print(environment())
    print(f"{n} samples over {args.scenes} scenes, 16 frames of 320x240 each, dummy backend")
    print(f"{'variant':<34} {'ms/sample':>10} {'target':>7} {'ratio':>6}")
    print(f"{'runner (frames cached per scene)':<34} {ours:>10.2f} {TARGET_MS:>7.1f} {ours / TARGET_MS:>6.2f}")
    print(f"{'baseline: decode per sample':<34} {baseline:>10.2f} {'':>7} {baseline / ours:>5.1f}x slower "
          f"(one 16-frame decode = {decode:.1f} ms)")
    print(f"resume of a complete run (scan + skip {resumed.n_skipped}): {resume:.0f} ms")
    if args.json:
        print(json.dumps({"samples": n, "ms_per_sample": ours, "baseline_ms_per_sample": baseline,
                          "resume_ms": resume, "target_ms": TARGET_MS, "complete": summary.complete}))


if __name__ == "__main__":
    main()
