"""``posevlm demo``: the whole pipeline on the built-in synthetic benchmark, on a laptop CPU.

synthetic posed scans -> frame selection (several strategies x 8/16/32 frames) -> the synthetic
VSI-style benchmark -> oracle evaluation (perfect perception restricted to the selected frames, so
the score measures how much spatial information a selection keeps) -> report table and plot.
Every stage resumes: rerunning the demo reuses what is already on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from posevlm.eval.runner import EvalConfig, run_eval

__all__ = ["DemoConfig", "run_demo"]

DATASET = "synthetic"


class DemoConfig:
    """Defaults sized for ~2-4 minutes on 2 CPU cores."""

    def __init__(self, *, scenes: int = 4, frames_per_scene: int = 300, fps: float = 10.0, size_hw=(120, 160),
                 strategies: Sequence[str] = ("uniform", "voxel_coverage", "pose_fps"),
                 frame_counts: Sequence[int] = (8, 16, 32), seed: int = 0, questions_per_type: int = 4):
        self.scenes, self.frames_per_scene, self.fps, self.size_hw = scenes, frames_per_scene, fps, tuple(size_hw)
        self.strategies, self.frame_counts, self.seed = tuple(strategies), tuple(frame_counts), seed
        self.questions_per_type = questions_per_type

    @property
    def tag(self) -> str:
        return f"scenes{self.scenes}_q{self.questions_per_type}_seed{self.seed}"


def run_demo(out: str | Path, config: DemoConfig = DemoConfig(), *,
             log: Callable[[str], None] = print) -> Path:
    """Run every stage into ``out``; returns the report directory."""
    from posevlm.eval.benchmarks import generate_benchmark, read_benchmark_jsonl, write_benchmark_jsonl
    from posevlm.eval.report import write_report
    from posevlm.sampling import SamplingConfig
    from posevlm.sampling.runner import run_sampling
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    out = Path(out)
    data = out / "data"
    log(f"[1/5] synthetic scans -> {data / DATASET}")
    synth = SynthConfig(seed=config.seed, num_frames=config.frames_per_scene, image_hw=config.size_hw, fps=config.fps)
    scene_dirs = generate_dataset(data / DATASET, config.scenes, synth)

    log(f"[2/5] frame selection: {', '.join(config.strategies)} x {', '.join(map(str, config.frame_counts))} frames")
    sampling = [SamplingConfig(s, n, seed=config.seed) for s in config.strategies for n in config.frame_counts]
    summary = run_sampling(data, sampling, out / "sampled")
    if summary.failures:
        raise RuntimeError(f"sampling failed for {len(summary.failures)} output(s); see {out / 'sampled' / '_runs'}")

    tag = config.tag
    bench = out / f"benchmark_{tag}.jsonl"  # named by what made it, so a rerun with other settings never reuses it
    log(f"[3/5] synthetic VSI-style benchmark -> {bench}")
    if not bench.is_file():
        write_benchmark_jsonl(generate_benchmark(scene_dirs, seed=config.seed, dataset=DATASET,
                                                 max_per_type=config.questions_per_type), bench)
    n_questions = len(read_benchmark_jsonl(bench))

    log(f"[4/5] oracle evaluation of {len(sampling)} selections on {n_questions} questions")
    from posevlm.eval.backends.oracle import OracleBackend

    model = {"backend": "oracle", "name": "oracle", "scenes_root": str(data)}
    oracle = OracleBackend(model)  # one backend for every selection: each scan loads once
    run_dirs, failed = [], {}
    for cfg in sampling:
        eval_cfg = EvalConfig(
            benchmark={"name": "synthetic_vsi", "source": str(bench)},
            model=model,
            frames={"source": "folder_manifest", "root": str(out / "sampled" / cfg.slug),
                    "num_frames": cfg.num_frames, "strategy": cfg.strategy, "sampler_slug": cfg.slug},
        )
        run_dir = out / "runs" / tag / cfg.slug
        result = run_eval(eval_cfg, run_dir, backend=oracle)
        log(f"      {cfg.strategy:>15} {cfg.num_frames:>3} frames: {result.n_ok} answered, {result.n_errors} errors, "
            f"{result.n_skipped} kept from an earlier run")
        run_dirs.append(run_dir)
        if not result.ok:
            failed[cfg.slug] = result.failed

    report_dir = out / "report" if tag == DemoConfig().tag else out / f"report_{tag}"
    log(f"[5/5] report -> {report_dir}")
    write_report(run_dirs, report_dir, allow_partial=bool(failed))
    if failed:  # the report is written (failed samples score 0); the demo still says it did not go cleanly
        from posevlm.errors import PosevlmError

        raise PosevlmError(f"the demo's evaluation failed for {sum(map(len, failed.values()))} sample(s) in "
                           f"{len(failed)} run(s) ({', '.join(sorted(failed))}); report written to {report_dir}; "
                           f"see {out / 'runs' / tag}/<run>/records")
    return report_dir
