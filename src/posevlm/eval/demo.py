"""``posevlm demo``: the whole pipeline on the built-in synthetic benchmark, on a laptop CPU.

synthetic posed scans -> frame selection (several strategies x 8/16/32 frames) -> the synthetic
VSI-style benchmark -> oracle evaluation (perfect perception restricted to the selected frames, so
the score measures how much spatial information a selection keeps) -> report table and plot.
Every stage resumes: rerunning the demo reuses what is already on disk. The scans of a preset live in
``OUT/data`` (standard) or ``OUT/data_<preset>``, so presets never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from posevlm.errors import ConfigError
from posevlm.eval.runner import EvalConfig, run_eval

__all__ = ["DemoConfig", "run_demo", "DEMO_PRESETS"]

#: preset -> (dataset name of its scans and records, frames per scan at ``DemoConfig.fps``)
DEMO_PRESETS: dict[str, tuple[str, int]] = {"standard": ("synthetic", 300), "hard": ("synthetic_hard", 600)}
DATASET = DEMO_PRESETS["standard"][0]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo generates and evaluates; the defaults take a few minutes on 2 CPU cores.

    Attributes:
        scenes: synthetic scans.
        preset: scan preset (``posevlm.scenes.synthetic.SYNTH_PRESETS``): ``hard`` (2-3 rooms, clutter, 60 s
            walks) separates selection strategies beyond 8 frames; ``standard`` (one room, 30 s walks) does not.
        frames_per_scene: frames per scan; None = the preset's (``DEMO_PRESETS``: 300 standard, 600 hard).
        fps, size_hw: capture rate and (H, W) of the scans.
        strategies, frame_counts: every strategy selects every frame count.
        seed: scans, selection and questions.
        questions_per_task: at most this many questions per question type and scene (room size: one per scene).
    """

    scenes: int = 8
    preset: str = "hard"
    frames_per_scene: int | None = None
    fps: float = 10.0
    size_hw: tuple[int, int] = (120, 160)
    strategies: tuple[str, ...] = ("uniform", "voxel_coverage", "pose_fps")
    frame_counts: tuple[int, ...] = (8, 16, 32)
    seed: int = 0
    questions_per_task: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_hw", tuple(self.size_hw))
        object.__setattr__(self, "strategies", tuple(self.strategies))
        object.__setattr__(self, "frame_counts", tuple(self.frame_counts))
        problems = []
        if self.preset not in DEMO_PRESETS:
            problems.append(f"preset must be one of {list(DEMO_PRESETS)}; got {self.preset!r}")
        if not isinstance(self.scenes, int) or self.scenes < 1:
            problems.append(f"scenes must be an int >= 1; got {self.scenes!r}")
        if not isinstance(self.questions_per_task, int) or self.questions_per_task < 1:
            problems.append(f"questions_per_task must be an int >= 1; got {self.questions_per_task!r}")
        if self.frames_per_scene is not None and (not isinstance(self.frames_per_scene, int)
                                                  or self.frames_per_scene < max(self.frame_counts, default=2)):
            problems.append(f"frames_per_scene must be None or an int >= the largest frame count "
                            f"{max(self.frame_counts, default=2)}; got {self.frames_per_scene!r}")
        if problems:
            raise ConfigError("invalid DemoConfig: " + "; ".join(problems), field="DemoConfig")

    @property
    def dataset(self) -> str:
        return DEMO_PRESETS[self.preset][0]

    @property
    def num_frames(self) -> int:
        return self.frames_per_scene or DEMO_PRESETS[self.preset][1]

    @property
    def tag(self) -> str:
        prefix = "" if self.preset == "standard" else f"{self.preset}_"
        frames = "" if self.frames_per_scene is None else f"_f{self.frames_per_scene}"
        from posevlm.eval.benchmarks import BENCHMARK_VERSION

        return f"{prefix}scenes{self.scenes}_q{self.questions_per_task}_seed{self.seed}{frames}_v{BENCHMARK_VERSION}"


def run_demo(out: str | Path, config: DemoConfig = DemoConfig(), *,
             log: Callable[[str], None] = print) -> Path:
    """Run every stage into ``out``; returns the report directory."""
    from posevlm.eval.benchmarks import generate_benchmark, read_benchmark_jsonl, write_benchmark_jsonl
    from posevlm.eval.report import write_report
    from posevlm.sampling import SamplingConfig
    from posevlm.sampling.runner import run_sampling
    from posevlm.scenes.synthetic import generate_dataset, synth_config

    out = Path(out)
    data = out / ("data" if config.preset == "standard" else f"data_{config.preset}")  # one dataset per root
    log(f"[1/5] synthetic scans ({config.preset}) -> {data / config.dataset}")
    synth = synth_config(config.preset, seed=config.seed, num_frames=config.num_frames, image_hw=config.size_hw,
                         fps=config.fps)
    scene_dirs = generate_dataset(data / config.dataset, config.scenes, synth)

    log(f"[2/5] frame selection: {', '.join(config.strategies)} x {', '.join(map(str, config.frame_counts))} frames")
    sampling = [SamplingConfig(s, n, seed=config.seed) for s in config.strategies for n in config.frame_counts]
    summary = run_sampling(data, sampling, out / "sampled")
    if summary.failures:
        raise RuntimeError(f"sampling failed for {len(summary.failures)} output(s); see {out / 'sampled' / '_runs'}")

    tag = config.tag
    bench = out / f"benchmark_{tag}.jsonl"  # named by what made it, so a rerun with other settings never reuses it
    log(f"[3/5] synthetic VSI-style benchmark -> {bench}")
    if not bench.is_file():
        write_benchmark_jsonl(generate_benchmark(scene_dirs, seed=config.seed, dataset=config.dataset,
                                                 max_per_type=config.questions_per_task), bench)
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
