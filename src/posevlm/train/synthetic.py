"""A training set from synthetic scans: VSI-style questions with exact answers, in the training record format.

``build_synthetic_training_set(out, SyntheticTrainConfig(...))`` writes::

    out/scenes/synthetic_train/synth_<index>/     synthetic posed scans (``posevlm.scenes.synthetic``)
    out/sampled/<slug>/synthetic_train/<scene>/   frame folders + selected_frames.json (media="manifest" only)
    out/train.jsonl, out/test.jsonl               training records (``posevlm.train.records``), one per question
    out/test_benchmark.jsonl                      the test split as a ``synthetic_vsi`` benchmark (for posevlm eval)
    out/test_pose_benchmark.jsonl                 its pose questions as a ``synthetic_pose`` benchmark (if asked for)
    out/synthetic_train.json                      config, split, counts, provenance

Questions come from ``posevlm.eval.benchmarks.synthetic_vsi`` (the generators of the demo benchmark); the
user turn is ``"<video>" + prompt`` with the eval's prompt preset (``official`` by default, so training text
matches what ``posevlm eval`` asks: the hf backend places the video before the text, no separator) and the
assistant turn is the ground truth as text (an option letter, or a number). ``media="video"`` points each
record at the scene's ``rgb.mp4`` (frames taken by the training ``num_frames`` / ``round_full`` rule);
``media="manifest"`` samples every scene once with ``sampler`` / ``num_frames`` (``posevlm.sampling``) and
points at the sampled folder, so the strategy's frames and their cameras (``w2c_opencv``, ``K_pixels``)
travel into training.

Pose questions (``pose_questions_per_type`` > 0, ``media="manifest"``): per scene, the pose-dependent questions of
:mod:`posevlm.eval.benchmarks.pose_tasks` over the scene's selected views shown in a seeded random order; a
record's ``frame_ids`` is that order, so training shows the views shuffled exactly as ``posevlm eval`` does, and
frame index carries no information. Every scene gets ``pose_orders_per_scene`` different orders (seeds
``seed .. seed + k - 1``: the same views, permuted; the answers of the facing / overlap questions move with the
views); the test questions also go to ``test_pose_benchmark.jsonl``.

Split and disjointness rule:

* train / test split **by scene**: of the ``num_scenes`` scenes (indices ``start_index ...``), the last
  ``num_test_scenes`` are test, the others train; no scene has questions in both.
* disjoint from the demo benchmark: a synthetic scene is a function of ``(seed, index)``
  (``numpy.random.SeedSequence([seed, index])``), the demo generates indices ``0 .. scenes-1`` under dataset
  ``synthetic``; training scenes start at index ``TRAIN_START_INDEX`` = 100000 (names ``synth_100000`` ...,
  enforced by the config) under dataset ``synthetic_train``. So no training scene equals a demo scene (unless
  a demo is run with more than 100000 scenes), scene names never collide, and question ids (a hash of
  dataset / scene / seed / type / index) differ.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from posevlm.errors import ConfigError, PosevlmError

__all__ = ["TRAIN_DATASET", "TRAIN_START_INDEX", "SyntheticTrainConfig", "SyntheticTrainSet",
           "training_record", "build_synthetic_training_set"]

TRAIN_DATASET = "synthetic_train"
#: First scene index of synthetic training scenes; the demo benchmark uses indices 0 .. scenes-1.
TRAIN_START_INDEX = 100_000


class SceneSplit:
    """The by-scene split shared by the synthetic training-set configs (a frozen dataclass with ``num_scenes``,
    ``num_test_scenes`` and ``start_index``): the last ``num_test_scenes`` of the scenes from ``start_index`` are
    test, the others train, and no index falls among the demo benchmark's."""

    num_scenes: int
    num_test_scenes: int
    start_index: int

    def split_problems(self) -> list[str]:
        """The split's problems, each naming its field and the fix."""
        problems = []
        if not 1 <= self.num_test_scenes < self.num_scenes:
            problems.append(f"num_test_scenes={self.num_test_scenes} must be in 1..num_scenes-1 "
                            f"(num_scenes={self.num_scenes}): both splits need a scene")
        if self.start_index < TRAIN_START_INDEX:
            problems.append(f"start_index={self.start_index} < {TRAIN_START_INDEX}: training scenes would share "
                            "indices (hence scenes) with the demo benchmark")
        return problems

    @property
    def train_indices(self) -> range:
        return range(self.start_index, self.start_index + self.num_scenes - self.num_test_scenes)

    @property
    def test_indices(self) -> range:
        return range(self.start_index + self.num_scenes - self.num_test_scenes, self.start_index + self.num_scenes)


def write_jsonl(records: list[dict], path: Path) -> Path:
    """``records`` as JSONL (sorted keys), written atomically."""
    from posevlm.atomic import atomic_write_text

    return atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


@dataclass(frozen=True)
class SyntheticTrainConfig(SceneSplit):
    """What a synthetic training set is made of (serialised into ``synthetic_train.json``).

    Scans: ``num_scenes`` (the last ``num_test_scenes`` form the test split) from ``start_index`` with
    ``seed``, ``frames_per_scene`` frames of ``image_hw`` at ``fps``. Questions: ``questions_per_type`` per
    question type and scene, rendered with the eval prompt preset ``prompt``. Media: ``video`` (the scene's
    mp4) or ``manifest`` (sampled with ``sampler`` / ``num_frames``, cameras included). Pose questions:
    ``pose_questions_per_type`` per pose type, scene and order, over ``pose_orders_per_scene`` shuffles of each
    scene's views (module docstring; manifest media only).
    """

    num_scenes: int = 8
    num_test_scenes: int = 2
    seed: int = 0
    start_index: int = TRAIN_START_INDEX
    frames_per_scene: int = 120
    image_hw: tuple[int, int] = (96, 128)
    fps: float = 10.0
    questions_per_type: int = 4
    prompt: str = "official"
    media: Literal["video", "manifest"] = "video"
    sampler: str = "uniform"
    num_frames: int = 16
    pose_questions_per_type: int = 0
    pose_orders_per_scene: int = 1
    schema_version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_hw", tuple(self.image_hw))
        problems = self.split_problems()
        if self.media not in ("video", "manifest"):
            problems.append(f"media={self.media!r} (allowed: video, manifest)")
        if self.questions_per_type < 1 or self.num_frames < 1 or self.frames_per_scene < 2:
            problems.append("questions_per_type and num_frames must be >= 1, frames_per_scene >= 2")
        if self.pose_questions_per_type < 0 or self.pose_orders_per_scene < 1:
            problems.append(f"pose_questions_per_type={self.pose_questions_per_type} must be >= 0 and "
                            f"pose_orders_per_scene={self.pose_orders_per_scene} >= 1")
        if self.pose_questions_per_type and (self.media != "manifest" or self.num_frames < 2):
            problems.append("pose questions are asked over the sampled views and their cameras: set media=manifest "
                            "and num_frames >= 2 (or pose_questions_per_type=0)")
        from posevlm.eval.prompts import prompts

        if self.prompt not in prompts:
            problems.append(f"prompt={self.prompt!r} (allowed: {', '.join(prompts.names())})")
        if problems:
            raise ConfigError("invalid SyntheticTrainConfig: " + "; ".join(problems), field="synthetic_train")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_hw"] = list(self.image_hw)
        return d


@dataclass(frozen=True)
class SyntheticTrainSet:
    """What :func:`build_synthetic_training_set` wrote: paths, scene names per split, record counts."""

    root: Path
    train: Path
    test: Path
    test_benchmark: Path
    train_scenes: tuple[str, ...]
    test_scenes: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    test_pose_benchmark: Path | None = None


def training_record(question: dict[str, Any], video: str, prompt) -> dict[str, Any]:
    """One training record (``posevlm.train.records`` format) for a synthetic_vsi or synthetic_pose question
    record (a pose question keeps its ``frame_ids``: the views shown, in order)."""
    record = {"id": str(question["id"]), "video": video,
              "conversations": [{"from": "human", "value": "<video>" + prompt.render(question)},
                                {"from": "gpt", "value": question["ground_truth"]}],
              "dataset": question["dataset"], "scene_name": question["scene_name"],
              "question_type": question["question_type"]}
    if "frame_ids" in question:
        record["frame_ids"] = list(question["frame_ids"])
    return record


def build_synthetic_training_set(out: str | Path, config: SyntheticTrainConfig = SyntheticTrainConfig(), *,
                                 log: Callable[[str], None] | None = None) -> SyntheticTrainSet:
    """Generate (or reuse) the scans, the sampled folders (``media="manifest"``) and the records; see the module
    docstring. Scenes and selections already on disk with the same configuration are reused."""
    from posevlm.eval.benchmarks.pose_tasks import selection_pose_questions
    from posevlm.eval.benchmarks.synthetic_vsi import generate_benchmark, write_benchmark_jsonl
    from posevlm.eval.prompts import get_prompt
    from posevlm.provenance import provenance
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset, scene_name

    say = log or (lambda _msg: None)
    out = Path(out)
    synth = SynthConfig(seed=config.seed, num_frames=config.frames_per_scene, image_hw=config.image_hw,
                        fps=config.fps)
    say(f"synthetic scans {scene_name(config.start_index)} .. {scene_name(config.start_index + config.num_scenes - 1)}"
        f" -> {out / 'scenes' / TRAIN_DATASET}")
    scene_dirs = generate_dataset(out / "scenes" / TRAIN_DATASET, config.num_scenes, synth,
                                  start_index=config.start_index)
    by_name = {p.name: p for p in scene_dirs}
    media = {name: f"scenes/{TRAIN_DATASET}/{name}/rgb.mp4" for name in by_name}
    sampling = None
    if config.media == "manifest":
        from posevlm.sampling import SamplingConfig
        from posevlm.sampling.runner import run_sampling

        sampling = SamplingConfig(config.sampler, config.num_frames, seed=config.seed)
        say(f"frame selection {sampling.slug} -> {out / 'sampled'}")
        summary = run_sampling(out / "scenes", [sampling], out / "sampled")
        if summary.failures:
            raise PosevlmError(f"sampling failed for {len(summary.failures)} scene(s) of {out / 'scenes'}: "
                               f"{summary.failures[:2]}; see {out / 'sampled' / '_runs'}")
        media = {name: f"sampled/{sampling.slug}/{TRAIN_DATASET}/{name}" for name in by_name}
    prompt = get_prompt(config.prompt)
    splits = {"train": [scene_name(i) for i in config.train_indices],
              "test": [scene_name(i) for i in config.test_indices]}
    counts, questions, pose = {}, {}, {}
    for split, names in splits.items():
        questions[split] = generate_benchmark([by_name[n] for n in names], seed=config.seed, dataset=TRAIN_DATASET,
                                              max_per_type=config.questions_per_type)
        pose[split] = [] if not config.pose_questions_per_type else selection_pose_questions(
            [by_name[n] for n in names], out / "sampled" / sampling.slug, dataset=TRAIN_DATASET, seed=config.seed,
            orders=config.pose_orders_per_scene, max_per_type=config.pose_questions_per_type)
        records = [training_record(q, media[q["scene_name"]], prompt) for q in questions[split] + pose[split]]
        write_jsonl(records, out / f"{split}.jsonl")
        counts[split], counts[f"{split}_pose"] = len(records), len(pose[split])
        say(f"{split}: {len(names)} scene(s), {len(records)} records ({len(pose[split])} pose questions) -> "
            f"{out / f'{split}.jsonl'}")
    if config.pose_questions_per_type and not pose["test"]:
        raise ConfigError(f"no pose question passed the margins on the {len(splits['test'])} test scene(s) over their "
                          f"{config.num_frames} selected views: use more test scenes (num_test_scenes), longer scans "
                          "(frames_per_scene), more views (num_frames) or orders (pose_orders_per_scene), or set "
                          "pose_questions_per_type=0", field="synthetic.pose_questions_per_type",
                          value=config.pose_questions_per_type)
    write_benchmark_jsonl(questions["test"], out / "test_benchmark.jsonl")
    if config.pose_questions_per_type:
        write_benchmark_jsonl(pose["test"], out / "test_pose_benchmark.jsonl")
    else:  # a set rebuilt without pose questions must not keep an older one's
        (out / "test_pose_benchmark.jsonl").unlink(missing_ok=True)
    from posevlm.atomic import atomic_write_text

    atomic_write_text(out / "synthetic_train.json", json.dumps({
        "config": config.to_dict(), "synth_config": synth.to_dict(), "prompt": prompt.to_dict(),
        "sampling": None if sampling is None else {"slug": sampling.slug, "strategy": sampling.strategy,
                                                   "num_frames": sampling.num_frames},
        "dataset": TRAIN_DATASET, "splits": splits, "counts": counts,
        "provenance": provenance(seed=config.seed),
    }, indent=2, sort_keys=True) + "\n")
    return SyntheticTrainSet(out, out / "train.jsonl", out / "test.jsonl", out / "test_benchmark.jsonl",
                             tuple(splits["train"]), tuple(splits["test"]), counts,
                             out / "test_pose_benchmark.jsonl" if config.pose_questions_per_type else None)
