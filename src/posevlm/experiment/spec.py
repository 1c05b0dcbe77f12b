"""An experiment spec: one YAML grid expanded deterministically into named training + evaluation runs.

A spec file (``configs/experiments/*.yaml``)::

    name: tiny                                  # the experiment (default output_dir: runs/experiments/<name>)
    train_config: ../train/tiny_synthetic.yaml  # the base `posevlm train` config (relative to the spec file)
    overrides: {run.max_steps: 120}             # training budget and any other key of every run
    launcher: null                              # null: this Python; or e.g. [torchrun, --nproc_per_node, "2"]
    grid:
      sampler: [uniform, pose_fps]              # frame selection strategy  -> synthetic.sampler
      num_frames: [2, 4]                        # frames per video          -> data.num_frames, synthetic.num_frames
      positions: [null, pthw]                   # null = the stock THW mRoPE -> model.positions
      camera_attention: [null, prope]           #                            -> model.camera_attention
      pose_bias: [none]                         #                            -> model.pose_bias
      seeds: [0, 1, 2]                          #                            -> run.seed
      # variants: [{}, {positions: pthw}, {camera_attention: prope}]   # instead of the product of the three
    analysis: {bootstrap: 2000, seed: 0, mode: official, headline: macro_official_all, pose_headline: pose_macro}

``grid.variants`` (optional) lists the variants explicitly (each a mapping of positions / camera_attention /
pose_bias, ``{}`` = the baseline) instead of the product of the three axes (some combinations do not build,
e.g. PTHW with PRoPE on the tiny model's 8-dim heads). ``analysis.headline`` / ``pose_headline`` must be columns
``posevlm compare`` reports for the VSI (``vsibench``) / pose (``pose_views``) task; a spec naming another is refused.

A *condition* is (sampler, num_frames); a *variant* is (positions, camera_attention, pose_bias); the baseline
variant is the stock THW one (positions null, no camera attention, pose bias none) and must be in the grid.
Runs are the product condition x variant x seed, in the order of the axes above, each named
``<sampler>-f<num_frames>--<variant>--s<seed>`` (variant: ``thw`` for the baseline, else the non-default parts
joined by ``+``, e.g. ``pthw+prope``). Every run's full resolved training config is the base config with the
spec overrides, then the run's grid overrides, then its paths (``run.output_dir``, ``data.dataset_root``: one
synthetic data set per condition, shared by its runs) and ``run.evaluate=true``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from posevlm.errors import ConfigError, InputFileError

__all__ = ["GRID_AXES", "ExperimentSpec", "RunPlan", "Variant", "load_spec", "expand_runs", "variant_name",
           "BASELINE", "select_shard"]

GRID_AXES = ("sampler", "num_frames", "positions", "camera_attention", "pose_bias", "seeds", "variants")
_KNOWN = {"name", "train_config", "output_dir", "overrides", "launcher", "grid", "analysis", "description"}
_ANALYSIS_DEFAULTS = {"bootstrap": 2000, "seed": 0, "mode": "official", "headline": "macro_official_all",
                      "pose_headline": "pose_macro", "confidence": 0.95}


@dataclass(frozen=True)
class Variant:
    """How the model conditions on views: position mode (None = stock THW), camera attention, pose bias."""

    positions: str | None = None
    camera_attention: str | None = None
    pose_bias: str = "none"

    @property
    def is_baseline(self) -> bool:
        return self.positions is None and self.camera_attention is None and self.pose_bias == "none"


BASELINE = Variant()


def variant_name(v: Variant) -> str:
    """``thw`` for the stock baseline, else the non-default parts joined by ``+`` (``pthw``, ``thw+prope``)."""
    parts = [v.positions or "thw"]
    if v.camera_attention is not None:
        parts.append(v.camera_attention)
    if v.pose_bias != "none":
        parts.append(f"bias-{v.pose_bias}")
    return "+".join(parts)


@dataclass(frozen=True)
class RunPlan:
    """One run of an experiment: its index in the expansion, name, grid coordinates and training overrides.

    ``overrides`` are ``KEY=VALUE`` strings for ``posevlm train <train_config>`` (spec overrides first, then the
    run's); ``config`` is the full resolved training config and ``config_hash`` its sha256 (what a finished run is
    checked against on resume)."""

    index: int
    name: str
    sampler: str
    num_frames: int
    variant: Variant
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]
    config: Mapping[str, Any] = field(repr=False)
    config_hash: str = ""

    @property
    def condition(self) -> str:
        return f"{self.sampler}-f{self.num_frames}"

    @property
    def variant_name(self) -> str:
        return variant_name(self.variant)

    @property
    def train_dir(self) -> Path:
        return self.run_dir / "train"

    @property
    def eval_dir(self) -> Path:
        return self.train_dir / "eval"

    @property
    def data_root(self) -> Path:
        return self.run_dir.parent.parent / "data" / self.condition


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed spec (see the module docstring). ``train_config`` is resolved against the spec file's folder."""

    name: str
    train_config: Path
    output_dir: Path
    overrides: Mapping[str, Any]
    launcher: tuple[str, ...] | None
    grid: Mapping[str, tuple[Any, ...]]
    analysis: Mapping[str, Any]
    description: str = ""
    source: Path | None = None

    @property
    def variants(self) -> tuple[Variant, ...]:
        return grid_variants(self.grid)


def grid_variants(grid: Mapping[str, Any]) -> tuple[Variant, ...]:
    """The explicit ``grid.variants``, else the product positions x camera_attention x pose_bias."""
    if "variants" in grid:
        return tuple(grid["variants"])
    return tuple(Variant(p, c, b) for p, c, b in itertools.product(grid["positions"], grid["camera_attention"],
                                                                   grid["pose_bias"]))


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def load_spec(path: str | Path, *, output_dir: str | Path | None = None) -> ExperimentSpec:
    """Read and check a spec file; every problem is reported at once (``ConfigError`` naming the keys)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"experiment spec {path} does not exist; see configs/experiments/", path=path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"experiment spec {path} must be a mapping of keys (name, train_config, grid, ...)",
                          field="spec")
    problems = [f"unknown key {k!r} (known: {', '.join(sorted(_KNOWN))})" for k in raw if k not in _KNOWN]
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.replace("-", "_").replace(".", "_").isidentifier():
        problems.append(f"name={name!r}: letters, digits, '_', '-', '.'")
    base = raw.get("train_config")
    train_config = (path.parent / str(base)).resolve() if base else None
    if train_config is None or not train_config.is_file():
        problems.append(f"train_config={base!r}: a `posevlm train` config file, relative to {path.parent}")
    grid_raw = raw.get("grid") or {}
    grid: dict[str, tuple[Any, ...]] = {}
    defaults = {"positions": [None], "camera_attention": [None], "pose_bias": ["none"], "seeds": [0]}
    explicit = grid_raw.get("variants")
    if explicit is not None:
        if grid_raw.keys() & {"positions", "camera_attention", "pose_bias"}:
            problems.append("grid.variants replaces grid.positions / camera_attention / pose_bias: give one or the "
                            "other")
        try:
            variants = tuple(Variant(**dict(v)) for v in explicit)
        except TypeError as exc:
            problems.append(f"grid.variants: each a mapping of positions, camera_attention, pose_bias ({exc})")
            variants = ()
        grid_raw = {**{k: v for k, v in grid_raw.items() if k != "variants"},
                    "positions": list(dict.fromkeys(v.positions for v in variants)) or [None],
                    "camera_attention": list(dict.fromkeys(v.camera_attention for v in variants)) or [None],
                    "pose_bias": list(dict.fromkeys(v.pose_bias for v in variants)) or ["none"]}
        if len(set(variants)) != len(variants) or not variants:
            problems.append(f"grid.variants={explicit!r}: a non-empty list without repeats")
    for axis in GRID_AXES[:-1]:
        values = grid_raw.get(axis, defaults.get(axis))
        if values is None:
            problems.append(f"grid.{axis} is missing: a list of values")
            continue
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values or len(set(map(str, values))) != len(values):
            problems.append(f"grid.{axis}={list(values)!r}: a non-empty list without repeats")
        grid[axis] = values
    problems += [f"unknown grid axis {k!r} (known: {', '.join(GRID_AXES)})" for k in grid_raw if k not in GRID_AXES]
    for axis in ("num_frames", "seeds"):
        bad = [v for v in grid.get(axis, ()) if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            problems.append(f"grid.{axis} has {bad}: ints >= 0")
    if not problems:
        from posevlm.sampling import samplers

        problems += [f"grid.sampler: {s!r} is not a sampler (known: {', '.join(samplers.names())})"
                     for s in grid["sampler"] if s not in samplers]
    if explicit is not None and not problems:
        grid["variants"] = variants
    if not problems and BASELINE not in grid_variants(grid):
        problems.append("the grid lacks the stock THW baseline: grid.positions needs null, grid.camera_attention "
                        "null and grid.pose_bias none, or grid.variants needs {} (every variant is compared "
                        "against it)")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        problems.append("overrides must be a mapping of dotted training keys to values, e.g. {run.max_steps: 100}")
    reserved = {"run.output_dir", "run.seed", "run.evaluate", "data.dataset_root", "data.num_frames",
                "synthetic.num_frames", "synthetic.sampler", "model.positions", "model.camera_attention",
                "model.pose_bias"}
    problems += [f"overrides.{k} is set by the grid / the experiment; remove it" for k in overrides if k in reserved]
    launcher = raw.get("launcher")
    if launcher is not None and (not isinstance(launcher, list) or not launcher):
        problems.append("launcher: null (this Python) or a command list such as [torchrun, --nproc_per_node, '2']")
    analysis = {**_ANALYSIS_DEFAULTS, **(raw.get("analysis") or {})}
    problems += [f"unknown analysis key {k!r} (known: {', '.join(_ANALYSIS_DEFAULTS)})" for k in analysis
                 if k not in _ANALYSIS_DEFAULTS]
    problems += _headline_problems(analysis)
    if problems:
        raise ConfigError(f"invalid experiment spec {path}: " + "; ".join(problems), field="spec")
    out = Path(output_dir) if output_dir is not None else Path(raw.get("output_dir") or f"runs/experiments/{name}")
    return ExperimentSpec(name, train_config, out, dict(overrides), None if launcher is None else
                          tuple(map(str, launcher)), grid, analysis, str(raw.get("description", "")), path)


def _headline_problems(analysis: Mapping[str, Any]) -> list[str]:
    """Each task's headline (``analysis.headline`` / ``pose_headline``) must be a column its task format compares
    (the report's per-seed table and verdicts read it)."""
    from posevlm.eval.task_format import task_formats
    from posevlm.experiment.analysis import TASKS

    problems = []
    for task in TASKS:
        columns = task_formats.get(task.task_format).compare_columns
        if analysis.get(task.headline_key) not in columns:
            problems.append(f"analysis.{task.headline_key}={analysis.get(task.headline_key)!r} is not a column of the "
                            f"{task.name} task ({task.task_format}); use one of {', '.join(columns)}")
    return problems


def _hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def expand_runs(spec: ExperimentSpec, *, resolve: bool = True) -> tuple[RunPlan, ...]:
    """The runs of ``spec``: condition (sampler x num_frames) x variant x seed, in the grid's order.

    ``resolve`` loads each run's full training config (``load_train_config``: every override is checked);
    without it ``config`` is empty and ``config_hash`` is the hash of the overrides only.

    Raises:
        ConfigError: two runs would get the same name, or an override is invalid for the training config.
    """
    from posevlm.train.config import load_train_config

    common = tuple(f"{k}={_yaml_scalar(v)}" for k, v in spec.overrides.items())
    runs, seen = [], set()
    g = spec.grid
    for sampler, n, variant, seed in itertools.product(g["sampler"], g["num_frames"], spec.variants, g["seeds"]):
        name = f"{sampler}-f{n}--{variant_name(variant)}--s{seed}"
        if name in seen:
            raise ConfigError(f"two runs of {spec.source} are both named {name!r}: list each position mode once "
                              "(null is the stock THW, named thw)", field="grid")
        seen.add(name)
        run_dir = spec.output_dir / "runs" / name
        own = (f"synthetic.sampler={sampler}", f"synthetic.num_frames={n}", f"data.num_frames={n}",
               f"model.positions={_yaml_scalar(variant.positions)}",
               f"model.camera_attention={_yaml_scalar(variant.camera_attention)}",
               f"model.pose_bias={variant.pose_bias}", f"run.seed={seed}", "run.evaluate=true",
               f"run.output_dir={run_dir / 'train'}",
               f"data.dataset_root={spec.output_dir / 'data' / f'{sampler}-f{n}'}")
        overrides = common + own
        config: Mapping[str, Any] = {}
        if resolve:
            try:
                config = load_train_config(spec.train_config, list(overrides)).to_dict()
            except ConfigError as exc:
                raise ConfigError(f"run {name} of {spec.source}: {exc}", field=exc.field, value=exc.value) from None
        digest = _hash(config if resolve else {"overrides": overrides, "train_config": str(spec.train_config)})
        runs.append(RunPlan(len(runs), name, sampler, n, variant, seed, run_dir, overrides, config, digest))
    return tuple(runs)


def select_shard(runs: Sequence[RunPlan], shard: str | None = None, index: int | None = None) -> list[RunPlan]:
    """The runs of shard ``K/N`` (run index % N == K), or the single run ``index`` (a SLURM array task)."""
    if index is not None:
        if not 0 <= index < len(runs):
            raise ConfigError(f"--index {index}: the experiment has runs 0..{len(runs) - 1}", field="index",
                              value=index)
        return [runs[index]]
    if shard is None:
        return list(runs)
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise ConfigError(f"--shard {shard!r}: write K/N with 0 <= K < N, e.g. 0/4", field="shard", value=shard)
    return [r for r in runs if r.index % n == k]
