"""Point-cloud LM training data: a synthetic point training set, records -> tokenised samples with assistant-only
labels, and the collator that builds a batch (token ids, masks, labels, the clouds' voxel tokens).

Notation: B samples in a batch, L tokens of the longest row, N_b points of cloud b, T_b its voxel tokens.

**Training set** (:func:`build_point_training_set`, reused when its config is unchanged)::

    out/scenes/synthetic_train/synth_<index>/   synthetic posed scans (as posevlm.train.synthetic, indices >= 100000)
    out/train/  out/test/                       posevlm.eval.layout_data.write_point_task_data of each split:
                                                clouds/<scene>.npz, layout.jsonl, point_qa.jsonl
    out/train.jsonl  out/test.jsonl             training records (below), split by scene
    out/point_train.json                        config, split, counts, provenance

``out/test`` is what ``posevlm eval --benchmark synthetic_layout | synthetic_point_qa --source out/test --frames
point_cloud --frames-root out/test --prompt point_cloud`` reads.

**Records** (one JSON line each; :func:`point_training_records`): ``id`` (``layout:<scene>`` / ``qa:<question id>``),
``task`` (``layout`` / ``qa``), ``dataset``, ``scene_name``, ``question_type``, ``point_cloud`` (path relative to the
JSONL's folder), ``prompt`` (the user text: the eval prompt preset ``prompt``, ``point_cloud`` by default, rendered
for the record) and ``answer`` (the layout script / the ground-truth answer).

**Tokenisation** (:func:`tokenize_point_sample`): the prompt is exactly what the ``points`` eval backend feeds the
model: the checkpoint's chat template on one user turn :func:`~posevlm.models.point_lm.point_prompt` (point span, then
the text) with the generation prompt; then the answer's tokens and the end-of-turn token (the tokenizer's
``eos_token``, ``<|im_end|>`` for ChatML). Labels: the answer tokens and the end-of-turn token; -100 on the prompt.
The sample holds the single ``<|point_pad|>``; the collator expands it.

**Collator** (:class:`PointCollator`): voxelises every cloud of the batch in one pass
(:func:`~posevlm.spatial.points.voxelize_points`), expands each row's pad to its T_b pads
(:func:`~posevlm.models.point_lm.expand_point_pad`, labels -100 there), right-pads; returns ``input_ids`` (B, L),
``attention_mask`` (B, L), ``labels`` (B, L), ``points`` (a :class:`~posevlm.spatial.points.PointBatch`) and
``sample_ids`` — what :meth:`PointCloudLM.forward` takes (``sample_ids`` go to the NaN guard).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import ConfigError, InputFileError
from posevlm.train.synthetic import TRAIN_DATASET, TRAIN_START_INDEX, SceneSplit, write_jsonl

__all__ = ["POINT_TRAIN_VERSION", "POINT_TASKS", "PointSynthConfig", "PointTrainSet", "build_point_training_set",
           "point_training_records", "read_point_records", "PointSample", "tokenize_point_sample",
           "PointSFTDataset", "PointCollator", "load_cloud_array"]

POINT_TRAIN_VERSION = 1
POINT_TASKS = ("layout", "qa")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class PointSynthConfig(SceneSplit):
    """What a synthetic point training set is made of (serialised into ``point_train.json``).

    Scans: ``num_scenes`` from ``start_index`` (the last ``num_test_scenes`` are the test split) with ``seed``,
    ``frames_per_scene`` frames of ``image_hw``. Clouds: ``cloud_frames`` evenly spaced frames, every
    ``pixel_stride``-th pixel, grid ``grid_size`` metres. Samples: ``tasks`` (``layout``, ``qa``),
    ``questions_per_type`` per point-QA question type and scene, rendered with the eval prompt preset ``prompt``.
    """

    num_scenes: int = 6
    num_test_scenes: int = 2
    seed: int = 0
    start_index: int = TRAIN_START_INDEX
    frames_per_scene: int = 24
    image_hw: tuple[int, int] = (48, 64)
    cloud_frames: int = 8
    pixel_stride: int = 2
    grid_size: float = 0.05
    questions_per_type: int = 2
    tasks: tuple[str, ...] = POINT_TASKS
    prompt: str = "point_cloud"
    schema_version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_hw", tuple(self.image_hw))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        problems = self.split_problems()
        for name in ("cloud_frames", "pixel_stride", "questions_per_type"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (an int >= 1)")
        if self.frames_per_scene < 2:
            problems.append(f"frames_per_scene={self.frames_per_scene!r} (>= 2)")
        if not (isinstance(self.grid_size, (int, float)) and self.grid_size > 0):
            problems.append(f"grid_size={self.grid_size!r} (metres > 0)")
        if not self.tasks or any(t not in POINT_TASKS for t in self.tasks):
            problems.append(f"tasks={list(self.tasks)!r} (a non-empty subset of {', '.join(POINT_TASKS)})")
        from posevlm.eval.layout_format import layout_prompts
        from posevlm.eval.prompts import prompts

        if self.prompt not in prompts or self.prompt not in layout_prompts:
            both = sorted(set(prompts.names()) & set(layout_prompts.names()))
            problems.append(f"prompt={self.prompt!r} (a preset of both point-cloud benchmarks: {', '.join(both)})")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid PointSynthConfig: " + "; ".join(problems), field="synthetic", value=problems)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(image_hw=list(self.image_hw), tasks=list(self.tasks))
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PointSynthConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown PointSynthConfig keys {unknown}; known: {sorted(known)}", field="synthetic",
                              value=unknown)
        return cls(**dict(data))


@dataclass(frozen=True)
class PointTrainSet:
    """What :func:`build_point_training_set` wrote: the record files, the eval folder of the test split, scene names
    per split, record counts."""

    root: Path
    train: Path
    test: Path
    test_dir: Path
    train_scenes: tuple[str, ...]
    test_scenes: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ records
def point_training_records(folder: str | Path, *, tasks: Sequence[str] = POINT_TASKS, prompt: str = "point_cloud",
                           relative_to: str | Path | None = None) -> list[dict[str, Any]]:
    """Training records (module docstring) of a ``write_point_task_data`` folder, layout records first, then QA in
    file order. ``point_cloud`` paths are relative to ``relative_to`` (default: ``folder``)."""
    from posevlm.eval.benchmarks.point_tasks import load_layout_benchmark, load_point_qa
    from posevlm.eval.layout_format import layout_prompts
    from posevlm.eval.prompts import prompts

    folder = Path(folder)
    base = Path(relative_to) if relative_to is not None else folder
    cloud = {}
    records: list[dict[str, Any]] = []
    for r in load_layout_benchmark(folder):
        cloud[r["scene_name"]] = Path(r["point_cloud"])
        if "layout" in tasks:
            records.append({"id": f"layout:{r['scene_name']}", "task": "layout", "dataset": r["dataset"],
                            "scene_name": r["scene_name"], "question_type": r["question_type"],
                            "point_cloud": _relative(cloud[r["scene_name"]], base),
                            "prompt": layout_prompts.get(prompt).render(r), "answer": r["ground_truth"]})
    if "qa" in tasks:
        preset = prompts.get(prompt)
        for r in load_point_qa(folder):
            path = cloud.get(r["scene_name"], folder / "clouds" / f"{r['scene_name']}.npz")
            records.append({"id": f"qa:{r['id']}", "task": "qa", "dataset": r["dataset"], "scene_name": r["scene_name"],
                            "question_type": r["question_type"], "point_cloud": _relative(path, base),
                            "prompt": preset.render(r), "answer": r["ground_truth"]})
    return records


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


_FIELDS = ("id", "task", "scene_name", "point_cloud", "prompt", "answer")


def read_point_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a point training JSONL, ``point_cloud`` made absolute (relative to the file's folder).

    Raises:
        InputFileError: a missing file, bad JSON, a record without one of the fields (names file, line, field).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; build it with posevlm.train.points.build_point_training_set",
                             path=path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{n} is not JSON ({exc})", path=path) from None
        missing = [k for k in _FIELDS if not isinstance(record.get(k), str) or (k != "answer" and not record[k])]
        if missing:
            raise InputFileError(f"{path}:{n}: field(s) {', '.join(missing)} missing or not a string (a point "
                                 f"training record has {', '.join(_FIELDS)})", path=path)
        record["point_cloud"] = str(path.parent / record["point_cloud"])
        out.append(record)
    return out


def build_point_training_set(out: str | Path, config: PointSynthConfig = PointSynthConfig(), *,
                             log: Callable[[str], None] | None = None) -> PointTrainSet:
    """Generate (or reuse) the scans, both splits' point-task folders and the training records (module docstring).
    A folder whose ``point_train.json`` holds the same config is reused as it is."""
    from posevlm.atomic import atomic_write_text
    from posevlm.eval.layout_data import write_point_task_data
    from posevlm.provenance import provenance
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset, scene_name

    say = log or (lambda _msg: None)
    out = Path(out)
    splits = {"train": [scene_name(i) for i in config.train_indices],
              "test": [scene_name(i) for i in config.test_indices]}
    meta_path = out / "point_train.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("config") == config.to_dict() and meta.get("version") == POINT_TRAIN_VERSION:
            say(f"point training set {out}: reused ({meta['counts']})")
            return PointTrainSet(out, out / "train.jsonl", out / "test.jsonl", out / "test", tuple(splits["train"]),
                                 tuple(splits["test"]), dict(meta["counts"]))
    synth = SynthConfig(seed=config.seed, num_frames=config.frames_per_scene, image_hw=config.image_hw)
    say(f"synthetic scans {splits['train'][0]} .. {splits['test'][-1]} -> {out / 'scenes' / TRAIN_DATASET}")
    scene_dirs = {p.name: p for p in generate_dataset(out / "scenes" / TRAIN_DATASET, config.num_scenes, synth,
                                                      start_index=config.start_index)}
    counts = {}
    for split, names in splits.items():
        write_point_task_data([scene_dirs[n] for n in names], out / split, seed=config.seed,
                              max_per_type=config.questions_per_type, dataset=TRAIN_DATASET,
                              num_frames=config.cloud_frames, pixel_stride=config.pixel_stride,
                              grid_size=config.grid_size)
        records = point_training_records(out / split, tasks=config.tasks, prompt=config.prompt, relative_to=out)
        write_jsonl(records, out / f"{split}.jsonl")
        counts[split] = len(records)
        say(f"{split}: {len(names)} scene(s), {len(records)} records -> {out / f'{split}.jsonl'}")
    atomic_write_text(meta_path, json.dumps({
        "version": POINT_TRAIN_VERSION, "config": config.to_dict(), "synth_config": synth.to_dict(),
        "dataset": TRAIN_DATASET, "splits": splits, "counts": counts, "provenance": provenance(seed=config.seed),
    }, indent=2, sort_keys=True) + "\n")
    return PointTrainSet(out, out / "train.jsonl", out / "test.jsonl", out / "test", tuple(splits["train"]),
                         tuple(splits["test"]), counts)


# -------------------------------------------------------------------------------------- tokenisation
@dataclass(frozen=True)
class PointSample:
    """One tokenised sample: ``input_ids`` (L0,) long with one ``<|point_pad|>``, ``labels`` (L0,) long (-100 on
    the prompt), ``cloud`` (N, 9) float32, ``sample_id``; ``prompt_length`` = tokens before the answer."""

    input_ids: Tensor
    labels: Tensor
    cloud: Tensor
    sample_id: str
    prompt_length: int


def _prompt_ids(tokenizer, text: str) -> list[int]:
    from posevlm.models.point_lm import point_prompt

    if getattr(tokenizer, "chat_template", None) is None:
        return list(tokenizer(point_prompt(text), add_special_tokens=False)["input_ids"])
    return list(tokenizer.apply_chat_template([{"role": "user", "content": point_prompt(text)}], tokenize=True,
                                              add_generation_prompt=True, return_dict=False))


def tokenize_point_sample(record: Mapping[str, Any], tokenizer, cloud: Tensor,
                          max_length: int | None = None) -> PointSample:
    """The sample of one record (module docstring). ``max_length`` bounds the text tokens before the pad expands
    (the point tokens are not counted).

    Raises:
        ConfigError: the tokenizer has no end-of-turn (eos) token.
        posevlm.train.errors.SampleTooLongError: more than ``max_length`` tokens.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token (the end-of-turn token the answer is trained to end with)",
                          field="tokenizer", value=None)
    prompt = _prompt_ids(tokenizer, record["prompt"])
    answer = list(tokenizer(record["answer"], add_special_tokens=False)["input_ids"]) + [int(eos)]
    ids = prompt + answer
    if max_length is not None and len(ids) > max_length:
        from posevlm.train.errors import SampleTooLongError

        raise SampleTooLongError(f"sample {record['id']} has {len(ids)} text tokens > {max_length} "
                                 "(data.model_max_length)", sample_id=record["id"])
    labels = [IGNORE_INDEX] * len(prompt) + answer
    return PointSample(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long), cloud,
                       str(record["id"]), len(prompt))


def load_cloud_array(path: str | Path) -> Tensor:
    """(N, 9) float32 SpatialLM rows of a stored cloud (``.npz`` / ``.ply``,
    :func:`posevlm.scenes.pointcloud.load_point_cloud`)."""
    from posevlm.scenes.pointcloud import load_point_cloud

    return torch.from_numpy(np.ascontiguousarray(load_point_cloud(path).to_array()))


class PointSFTDataset(torch.utils.data.Dataset):
    """Point training records -> :class:`PointSample` (clouds read once per file and kept: a scene's layout and
    QA samples share one cloud).

    Args:
        records: from :func:`read_point_records` (``point_cloud`` absolute).
        tokenizer: the model's tokenizer, holding the point tokens (``PointCloudLM.compose`` adds them).
        max_length: see :func:`tokenize_point_sample`.
        bad_samples: the log a sample that fails on its own (too long, an unreadable cloud) goes to; the next index
            is served instead (deterministic, as :class:`posevlm.train.data.SFTDataset`), at most ``max_skips`` in a
            row. ``on_error="raise"`` raises instead.
    """

    def __init__(self, records: Sequence[Mapping[str, Any]], tokenizer, *, max_length: int | None = None,
                 bad_samples=None, on_error: str = "skip", max_skips: int = 64):
        from posevlm.models.point_lm import POINT_TOKENS
        from posevlm.train.bad_samples import BadSampleLog

        missing = [t for t in POINT_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise ConfigError(f"the tokenizer lacks the point tokens {missing}; build the model with "
                              "PointCloudLM.compose (it adds them) and use its tokenizer", field="tokenizer",
                              value=missing)
        if not records:
            raise ConfigError("no point training records; build them with build_point_training_set",
                              field="data.datasets", value=None)
        if on_error not in ("skip", "raise"):
            raise ConfigError(f"on_error={on_error!r} (skip or raise)", field="data.on_error", value=on_error)
        self.records = list(records)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.bad_samples = bad_samples if bad_samples is not None else BadSampleLog()
        self.on_error, self.max_skips = on_error, max_skips
        self._clouds: dict[str, Tensor] = {}
        self._known_bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def cloud(self, path: str) -> Tensor:
        """(N, 9) rows of the cloud at ``path`` (read once). Raises ``DecodeError`` for an unreadable file."""
        from posevlm.errors import PosevlmError
        from posevlm.eval.errors import DecodeError

        if path not in self._clouds:
            try:
                self._clouds[path] = load_cloud_array(path)
            except PosevlmError as exc:
                raise DecodeError(f"cannot read point cloud {path}: {exc}", input=path) from exc
        return self._clouds[path]

    def build(self, index: int) -> PointSample:
        record = self.records[index]
        return tokenize_point_sample(record, self.tokenizer, self.cloud(record["point_cloud"]), self.max_length)

    def __getitem__(self, index: int) -> PointSample:
        from posevlm.errors import PosevlmError
        from posevlm.eval.errors import SampleError

        if self.on_error == "raise":
            return self.build(index)
        n, first = len(self.records), None
        for step in range(min(n, self.max_skips + 1)):
            j = (index + step) % n
            if j in self._known_bad:
                continue
            try:
                return self.build(j)
            except SampleError as exc:
                self._known_bad.add(j)
                self.bad_samples.add(index=j, sample_id=str(self.records[j]["id"]), error=exc)
                first = first or exc
        raise PosevlmError(f"no usable point training sample from index {index} on ({first}); fix the data or raise "
                           "data.max_skips")


# ------------------------------------------------------------------------------------------ collator
@dataclass(frozen=True)
class PointCollator:
    """:class:`PointSample` list -> a batch for :meth:`PointCloudLM.forward` (module docstring).

    Args:
        point_ids: (start, pad, end) token ids (``PointCloudLM.config``).
        pad_token_id: the padding id of ``input_ids``.
        token_stride: grid cells per voxel token (``PointCloudLM.config.encoder.token_stride``).
        with_sample_ids: add ``sample_ids`` (the NaN guard reads and removes them).
    """

    point_ids: tuple[int, int, int]
    pad_token_id: int
    token_stride: int
    with_sample_ids: bool = True

    def __call__(self, samples: Sequence[PointSample]) -> dict[str, Any]:
        from posevlm.models.point_lm import expand_point_pad
        from posevlm.spatial.points import voxelize_points

        points = voxelize_points([s.cloud for s in samples], self.token_stride)
        counts = points.token_counts.tolist()
        pad = self.point_ids[1]
        rows, labels = [], []
        for s, count in zip(samples, counts):  # one slice per row (B rows), never per token
            ids = torch.tensor(expand_point_pad(s.input_ids.tolist(), count, self.point_ids), dtype=torch.long)
            at = int((s.input_ids == pad).nonzero()[0, 0]) if bool((s.input_ids == pad).any()) else None
            if at is None:  # the span was put in front: labels shift by the span's length
                lab = torch.cat([torch.full((count + 2,), IGNORE_INDEX, dtype=torch.long), s.labels])
            else:
                lab = torch.cat([s.labels[:at], torch.full((count,), IGNORE_INDEX, dtype=torch.long),
                                 s.labels[at + 1:]])
            rows.append(ids)
            labels.append(lab)
        length = max(len(r) for r in rows)
        lengths = torch.tensor([len(r) for r in rows])
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        label_batch = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        valid = torch.arange(length)[None, :] < lengths[:, None]  # (B, L) right padding
        input_ids[valid] = torch.cat(rows)
        label_batch[valid] = torch.cat(labels)
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": valid.long(), "labels": label_batch,
                                 "points": points}
        if self.with_sample_ids:
            from posevlm.train.guard import SAMPLE_IDS_KEY

            batch[SAMPLE_IDS_KEY] = [s.sample_id for s in samples]
        return batch
