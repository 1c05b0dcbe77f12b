"""The configuration of one training run: frozen dataclasses read from YAML plus ``KEY=VALUE`` dotted overrides.

A config file has the sections below (every key optional; defaults = the research's Qwen2.5-VL HPC recipe of
models spec §3.3 where one exists)::

    name: tiny_synthetic                 # the run's name (default output_dir: runs/train/<name>)
    model:    ModelSection               # family, source (dir / hub id / tiny), positions, camera attention, ...
    data:     posevlm.train.data.DataConfig       # datasets mix, frames, pixels, bad-sample rule
    synthetic: posevlm.train.synthetic.SyntheticTrainConfig   # optional: build the synthetic set first
    tune:     TuneSection                # freeze-policy string (train=projector,llm), LoRA
    optim:    OptimSection               # lr, projector / vision lr, decay, schedule, clipping
    run:      RunSection                 # batch, steps, checkpoints, seed, DeepSpeed, NaN policy, resume

Overrides address any key by its dotted path: ``run.max_steps=200``, ``model.tiny.hidden_size=32``,
``data.num_frames=4``, ``model.positions=pthw``, ``run.deepspeed=null``. Values parse as YAML scalars
(``1e-5`` included) and are cast to the field's type. Every problem of a config is reported at once, each naming
its dotted key and the fix (:class:`ConfigError`, ``field`` = the first bad key).
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from posevlm.errors import ConfigError
from posevlm.train.data import DataConfig
from posevlm.train.synthetic import SyntheticTrainConfig
from posevlm.train.families import train_families
from posevlm.train.tiny import TinyModelConfig

__all__ = ["ModelSection", "TuneSection", "OptimSection", "RunSection", "TrainConfig", "DEEPSPEED_PRESETS",
           "load_train_config", "apply_overrides"]

DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
_DTYPES = ("auto", "float32", "bfloat16")
_ATTN = ("sdpa", "eager", "flash_attention_2")
_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_min_lr")
_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


def _choice(problems: list[str], key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        problems.append(f"{key}={value!r}: allowed {', '.join(map(str, allowed))}")


def _positive(problems: list[str], key: str, value: Any, *, kind=int, minimum: float = 1, fix: str = "") -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int) \
        and math.isfinite(value) and value >= minimum
    if not ok:
        problems.append(f"{key}={value!r}: a{'n int' if kind is int else ' number'} >= {minimum}{fix}")


@dataclass(frozen=True)
class ModelSection:
    """What is trained.

    ``family``: a registered :class:`~posevlm.train.families.TrainFamily` (``posevlm list train-families``):
    ``qwen2_5_vl``, ``qwen3_vl`` (stock transformers models), ``spatial_mllm``, ``vlm2`` or ``point_lm``. ``source``: a
    checkpoint directory, a hub id, or ``tiny`` (a random tiny checkpoint built from ``tiny``, the
    :class:`~posevlm.train.tiny.TinyModelConfig` fields). For ``spatial_mllm``: with ``vggt`` set (VGGT weights,
    ``facebook/VGGT-1B`` or a local copy, or ``tiny`` for a random tiny VGGT) the model is composed from the Qwen base
    ``source`` plus a fresh ``connector`` (registry name, ``auto``, ``none``); without it ``source`` is a
    Spatial-MLLM checkpoint. For ``vlm2`` (:mod:`posevlm.models.vlm2`): ``source`` a Qwen2.5-VL base with ``vggt``
    (composed; VGGT with camera and point heads; ``connector`` ``auto`` / ``none`` = none, the paper's layout), a
    Spatial-MLLM checkpoint (its parts + a fresh stage; ``vggt`` replaces its VGGT) or a VLM² checkpoint; ``vlm2``:
    :class:`~posevlm.memory.VLM2Config` overrides of the fresh stage (default the paper's; widths from the model).
    For ``point_lm`` (:mod:`posevlm.train.point_family`): ``source`` ``tiny`` (a tiny Qwen2 decoder), a Qwen2 /
    Qwen2.5 / Qwen3 base or a PointCloudLM checkpoint; ``point_lm``: ``rope3d`` (preset or MixedRoPE3D fields),
    ``encoder`` (point encoder fields), ``projector``.
    ``pose_source``: where a Spatial-MLLM takes cameras (``vggt`` or ``manifest``).
    ``positions`` (a position mode: thw, pthw, phw, ...) with ``position_set`` overrides, ``camera_attention``
    (prope, gta, cape) and ``pose_bias`` (none, alibi, learned) with ``camera_set`` overrides: what
    :func:`posevlm.models.enable_pose_positions` installs (learned slopes are trainable parameters). ``dtype``:
    ``auto`` = bf16 on GPU, fp32 on CPU.
    """

    family: str = "qwen2_5_vl"
    source: str = "tiny"
    tiny: Mapping[str, Any] = field(default_factory=dict)
    vggt: str | None = None
    connector: str = "auto"
    vlm2: Mapping[str, Any] = field(default_factory=dict)
    point_lm: Mapping[str, Any] = field(default_factory=dict)
    pose_source: str = "vggt"
    positions: str | None = None
    position_set: Mapping[str, Any] = field(default_factory=dict)
    camera_attention: str | None = None
    pose_bias: str = "none"
    camera_set: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    local_files_only: bool = False
    revision: str | None = None

    def problems(self) -> list[str]:
        p: list[str] = []
        _choice(p, "model.family", self.family, train_families.names())
        family = train_families.get(self.family) if self.family in train_families else None
        _choice(p, "model.dtype", self.dtype, _DTYPES)
        _choice(p, "model.attn_implementation", self.attn_implementation, _ATTN)
        _choice(p, "model.pose_bias", self.pose_bias, ("none", "alibi", "learned"))
        _choice(p, "model.pose_source", self.pose_source, ("vggt", "manifest"))
        if not isinstance(self.source, str) or not self.source:
            p.append(f"model.source={self.source!r}: a checkpoint directory, a hub id or 'tiny'")
        if self.source == "tiny":
            try:
                TinyModelConfig.from_dict(self.tiny)
            except ConfigError as exc:
                p.append(str(exc))
        elif self.tiny:
            p.append(f"model.tiny is set but model.source={self.source!r}; it only applies to model.source=tiny")
        if family is not None:
            p += family.problems(self)
        if self.positions is not None:
            from posevlm.positions import position_presets, resolve_position_spec

            if self.positions not in position_presets:
                p.append(f"model.positions={self.positions!r}: allowed {', '.join(position_presets.names())} (or "
                         "null for the stock positions)")
            elif isinstance(self.position_set, Mapping):  # the mode and its overrides on the family's layout
                try:
                    resolve_position_spec({"mode": self.positions, **dict(self.position_set)}, self.layout)
                except ConfigError as exc:
                    p.append(f"model.positions={self.positions!r} with model.family={self.family}: {exc}")
        if self.camera_attention is not None:
            from posevlm.attention import camera_modes

            _choice(p, "model.camera_attention", self.camera_attention, camera_modes.names())
        for key in ("tiny", "vlm2", "point_lm", "position_set", "camera_set"):
            if not isinstance(getattr(self, key), Mapping):
                p.append(f"model.{key} must be a mapping of KEY: VALUE; got {getattr(self, key)!r}")
        return p

    @property
    def train_family(self):
        """The :class:`~posevlm.train.families.TrainFamily` of ``family``."""
        return train_families.get(self.family)

    @property
    def layout(self) -> str:
        """The position layout of the family's base (a Spatial-MLLM is taken as Qwen2.5-VL-based, as released)."""
        return self.train_family.layout if self.family in train_families else "qwen2_5"

    @property
    def pose_aware(self) -> bool:
        """Positions or camera attention read per-video cameras / frame ids."""
        return self.positions is not None or self.camera_attention is not None or self.pose_bias != "none"


@dataclass(frozen=True)
class TuneSection:
    """What learns. ``policy``: the freeze-policy string over both families (:mod:`posevlm.train.policy`):
    ``train=<groups>`` trains the named groups and freezes the rest, ``freeze=<groups>`` the reverse; groups
    ``vision, merger, embed, llm, lm_head, pose_slopes, lora, spatial_encoder, connector, fusion, memory``,
    aliases ``projector`` (merger, connector, fusion) and ``language`` (embed, llm, lm_head). The research
    trained ``train=projector,llm`` (tune_mm_connector + tune_mm_llm); add ``pose_slopes`` to learn the
    pose-bias slopes. ``lora``: null (full fine-tuning) or the LoRA settings of the LLM decoder (``r``,
    ``alpha``, ``dropout``, ``target_modules``; peft), with a policy that trains ``lora`` instead of ``llm``
    (e.g. ``train=projector,lora``)."""

    policy: str = "train=projector,llm"
    lora: Mapping[str, Any] | None = None

    def problems(self) -> list[str]:
        from posevlm.train.policy import FreezePolicy, LoraSettings

        p = []
        try:
            policy = FreezePolicy.parse(self.policy)
        except ConfigError as exc:
            p.append(f"tune.policy={self.policy!r}: {exc}")
            policy = None
        if self.lora is not None:
            if not isinstance(self.lora, Mapping):
                p.append(f"tune.lora={self.lora!r}: null or a mapping (r, alpha, dropout, target_modules)")
            else:
                try:
                    LoraSettings.from_dict(self.lora)
                except ConfigError as exc:
                    p.append(f"tune.lora: {exc}")
            if policy is not None and (not policy.trains("lora") or policy.trains("llm")):
                p.append(f"tune.policy={self.policy!r} with tune.lora: LoRA trains adapters of a frozen LLM; write a "
                         "policy that trains lora and not llm, e.g. train=projector,lora")
        return p


@dataclass(frozen=True)
class OptimSection:
    """AdamW with parameter groups: ``lr`` for the rest, ``projector_lr`` for merger + connector, ``vision_lr``
    for the vision tower (None: ``lr``); ``weight_decay`` on weights only (no decay on norms and biases);
    ``warmup_ratio`` of the steps, then ``scheduler``; gradients clipped to ``max_grad_norm`` (0: off)."""

    lr: float = 7e-6
    projector_lr: float | None = 2e-5
    vision_lr: float | None = None
    weight_decay: float = 0.1
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8

    def problems(self) -> list[str]:
        p: list[str] = []
        for key in ("lr", "projector_lr", "vision_lr"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or
                                      not math.isfinite(value) or value <= 0):
                p.append(f"optim.{key}={value!r}: a number > 0" + (" (or null: optim.lr)" if key != "lr" else ""))
        for key in ("weight_decay", "max_grad_norm", "adam_epsilon"):
            _positive(p, f"optim.{key}", getattr(self, key), kind=float, minimum=0)
        for key in ("warmup_ratio", "adam_beta1", "adam_beta2"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                p.append(f"optim.{key}={value!r}: a number in [0, 1)")
        _choice(p, "optim.scheduler", self.scheduler, _SCHEDULERS)
        return p


@dataclass(frozen=True)
class RunSection:
    """How the run goes.

    Batch: ``batch_size`` samples per device and step, ``grad_accum`` micro-batches per optimiser step. Length:
    ``max_steps`` optimiser steps (-1: ``epochs``). Checkpoints every ``save_steps`` optimiser steps (an int, or a
    fraction of the run as the research's 0.0625), the last ``save_total_limit`` kept (null: all). ``output_dir``
    (default ``runs/train/<name>``). ``resume``: ``auto`` (continue from the newest complete checkpoint of
    ``output_dir``), ``never`` (refuse a non-empty ``output_dir``) or a checkpoint directory. ``seed`` (model
    init, dropout, data order; ``data_seed`` overrides the data order), ``deterministic`` (torch's deterministic
    algorithms). ``num_workers`` data-loader processes. ``deepspeed``: null, a preset (zero2, zero3,
    zero3_offload) or a JSON file. ``nonfinite``: what the NaN/Inf guard does (``stop`` or ``skip`` the step).
    ``precision``: ``auto`` (bf16 on GPU, fp32 on CPU), ``bf16`` or ``fp32``. ``evaluate``: after training,
    evaluate the final checkpoint on the synthetic test split (needs a ``synthetic`` section with
    ``media: manifest``).
    """

    output_dir: str | None = None
    batch_size: int = 1
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int = -1
    save_steps: float = 0.0625
    save_total_limit: int | None = None
    logging_steps: int = 1
    seed: int = 0
    data_seed: int | None = None
    deterministic: bool = False
    num_workers: int = 2
    deepspeed: str | None = None
    nonfinite: str = "stop"
    resume: str = "auto"
    precision: str = "auto"
    evaluate: bool = False

    def problems(self) -> list[str]:
        p: list[str] = []
        for key in ("batch_size", "grad_accum", "logging_steps"):
            _positive(p, f"run.{key}", getattr(self, key))
        _positive(p, "run.num_workers", self.num_workers, minimum=0)
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or \
                not (self.max_steps == -1 or self.max_steps >= 1):
            p.append(f"run.max_steps={self.max_steps!r}: an int >= 1, or -1 to run run.epochs")
        if self.max_steps == -1:
            _positive(p, "run.epochs", self.epochs, kind=float, minimum=0, fix=" (or set run.max_steps)")
        s = self.save_steps
        steps_or_fraction = isinstance(s, (int, float)) and (s >= 1 and float(s).is_integer() or 0 < s < 1)
        if isinstance(s, bool) or not steps_or_fraction:
            p.append(f"run.save_steps={s!r}: an int >= 1 (optimiser steps) or a fraction of the run in (0, 1)")
        if self.save_total_limit is not None:
            _positive(p, "run.save_total_limit", self.save_total_limit, fix=" (or null to keep all)")
        _choice(p, "run.nonfinite", self.nonfinite, ("stop", "skip"))
        _choice(p, "run.precision", self.precision, ("auto", "bf16", "fp32"))
        if not isinstance(self.resume, str) or not self.resume:
            p.append(f"run.resume={self.resume!r}: auto, never or a checkpoint directory")
        if self.deepspeed is not None and self.deepspeed not in DEEPSPEED_PRESETS \
                and not str(self.deepspeed).endswith(".json"):
            p.append(f"run.deepspeed={self.deepspeed!r}: null, one of {', '.join(DEEPSPEED_PRESETS)} or a .json file")
        for key in ("seed", "data_seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                p.append(f"run.{key}={value!r}: an int >= 0")
        return p


_SECTIONS = {"model": ModelSection, "data": DataConfig, "tune": TuneSection, "optim": OptimSection,
             "run": RunSection, "synthetic": SyntheticTrainConfig}


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (module docstring); serialised, resolved, into every run directory."""

    name: str = "run"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    tune: TuneSection = field(default_factory=TuneSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)
    synthetic: SyntheticTrainConfig | None = None
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise _invalid(problems)

    def problems(self) -> list[str]:
        """Every problem of the sections and of how they combine, each naming its dotted key and the fix."""
        problems = self.model.problems() + self.tune.problems() + self.optim.problems() + self.run.problems()
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append(f"name={self.name!r}: letters, digits, '.', '-', '_' (it names the output folder)")
        if not self.data.datasets:
            problems.append("data.datasets is empty: name a mix such as 'synthetic_train_posed' or "
                            "'sqa3d_filtered_40k,vica_322k_base%50'")
        family = train_families.get(self.model.family) if self.model.family in train_families else None
        spatial = family is not None and family.with_video_tchw
        if self.model.pose_aware and not spatial and not self.data.require_cameras and self._needs_cameras():
            problems.append("model.positions / camera attention read per-frame cameras: set data.require_cameras=true "
                            "(train on sampling-manifest folders) so samples without cameras are skipped by rule")
        if spatial and not self.data.with_video_tchw:
            problems.append(f"model.family={self.model.family} feeds the frames to VGGT: set data.with_video_tchw=true")
        if self.run.evaluate and family is not None and family.evaluated_by is not None:
            problems.append(f"run.evaluate=true evaluates with the hf video backend, which cannot load a "
                            f"model.family={self.model.family} checkpoint: set run.evaluate=false and evaluate it with "
                            f"{family.evaluated_by}")
        elif self.run.evaluate and (self.synthetic is None or self.synthetic.media != "manifest"):
            problems.append("run.evaluate=true evaluates on the synthetic test split: add a synthetic section with "
                            "media: manifest (or evaluate the checkpoint yourself with posevlm eval)")
        if self.tune.lora is not None and str(self.run.deepspeed or "").startswith("zero3"):
            problems.append(f"tune.lora with run.deepspeed={self.run.deepspeed}: LoRA wraps layers whose weights "
                            "ZeRO-3 has partitioned; use run.deepspeed=zero2 (or full fine-tuning with ZeRO-3)")
        return problems

    def _needs_cameras(self) -> bool:
        from posevlm.positions import resolve_position_spec, spec_needs

        if self.model.camera_attention is not None or self.model.pose_bias != "none":
            return True
        try:
            spec = resolve_position_spec(self.model.positions, self.model.layout, **dict(self.model.position_set))
        except ConfigError:
            return False
        return "w2c_opencv" in spec_needs(spec)

    @property
    def output_dir(self) -> Path:
        return Path(self.run.output_dir) if self.run.output_dir else Path("runs") / "train" / self.name

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.synthetic is not None:
            out["synthetic"] = self.synthetic.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from nested mappings (a YAML document); unknown keys and uncastable values are reported with the
        section problems, all at once."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a training config is a mapping of sections; got {type(data).__name__}", field="config")
        problems: list[str] = []
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                problems.append(_unknown(str(key), known))
        sections: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            raw = data.get(name)
            if raw is None:
                continue
            if not isinstance(raw, Mapping):
                problems.append(f"{name} must be a mapping of KEY: VALUE; got {raw!r}")
                continue
            values = _cast_section(section_cls, raw, name, problems)
            try:
                sections[name] = section_cls(**values)
            except ConfigError as exc:  # sections that validate themselves (data, synthetic)
                problems.append(f"{name}: {exc}")
            except TypeError as exc:
                problems.append(f"{name}: {exc}")
        top = {k: data[k] for k in ("name", "schema_version") if k in data}
        if "schema_version" in top and top["schema_version"] != 1:
            problems.append(f"schema_version={top['schema_version']!r}: this release reads 1")
            top.pop("schema_version")
        try:
            config = cls(**top, **sections)
        except ConfigError as exc:
            problems += list(exc.value) if isinstance(exc.value, list) else [str(exc)]
        if problems:
            raise _invalid(problems)
        return config


def _invalid(problems: list[str]) -> ConfigError:
    first = re.match(r"[\w.]+", problems[0])
    return ConfigError(f"invalid training config ({len(problems)} problem(s)):\n  " + "\n  ".join(problems),
                       field=first.group(0) if first else None, value=problems)


def _unknown(key: str, known) -> str:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(known), n=1)
    hint = f" (did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?)" if close else ""
    return f"{key}: unknown key{hint}; known: {', '.join(sorted(known))}"


def _cast_section(section_cls, raw: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    names = {f.name for f in fields(section_cls) if f.init}
    out = {}
    for key, value in raw.items():
        if key not in names:
            problems.append(_unknown(f"{prefix}.{key}", names))
            continue
        try:
            out[key] = _cast(value, hints[key])
        except (TypeError, ValueError) as exc:
            problems.append(f"{prefix}.{key}={value!r}: {exc}")
    return out


def _cast(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (int, float, bool, str, Optional, tuples, mappings); ints widen to floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _cast(value, arg)
            except (TypeError, ValueError) as exc:
                last = exc
        raise last or TypeError("no matching type")
    if hint is Any:
        return value
    if origin is typing.Literal:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("expected an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError("expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError("expected a string")
    if origin in (tuple, Sequence) or hint is tuple:
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            return tuple(_cast(v, item) for v in value)
        raise TypeError("expected a list")
    if origin in (Mapping, dict) or hint is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError("expected a mapping")
    return value


def _parse_scalar(text: str) -> Any:
    """A command-line value: YAML (``null``, ``true``, ``[a, b]``, ``{k: v}``) with numbers like ``1e-5`` as
    floats (YAML 1.1 reads them as strings)."""
    import yaml

    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``a.b.c=VALUE`` set (nested mappings created as needed; the dataclasses check the keys)."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"bad override {item!r}: write KEY=VALUE with a dotted KEY such as run.max_steps=200",
                              field="overrides", value=item)
        parts = key.split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"bad override {item!r}: {'.'.join(parts[:depth + 1])} is a value, not a section",
                                  field=key, value=item)
            node = child
        node[parts[-1]] = _parse_scalar(raw)
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The :class:`TrainConfig` of a YAML file (None: the defaults) with ``KEY=VALUE`` overrides applied.

    Raises:
        ConfigError: unreadable YAML, bad overrides or invalid values (all problems at once).
        InputFileError: the file does not exist.
    """
    import yaml

    from posevlm.errors import InputFileError

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"training config {path} does not exist; see configs/train/ for examples", path=path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML ({exc})", field="config") from None
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: a training config is a mapping of sections (model, data, ...); got "
                              f"{type(loaded).__name__}", field="config")
        data = dict(loaded or {})
        data.setdefault("name", path.stem)
    return TrainConfig.from_dict(apply_overrides(data, overrides))
