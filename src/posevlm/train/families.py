"""Training model families: what ``model.family`` of a training config means to ``posevlm train``.

A :class:`TrainFamily` states everything the recipe (:mod:`posevlm.train.run`) and the config
(:mod:`posevlm.train.config`) need to know about a family, so neither branches on family names:

- ``base_family``: the transformers Qwen-VL family its ``tiny`` source is written as, and its chat layout / processor
  (``qwen2_5_vl`` or ``qwen3_vl``; the built model reports the actual one in :attr:`BuiltModel.base_family`);
- ``composed``: it is composed from a Qwen base plus VGGT and a connector (``model.vggt`` / ``model.connector``);
- ``with_video_tchw``: the frames also go to a spatial encoder (the collator stacks ``video_tchw``; the encoder's
  camera head gives the cameras unless ``model.pose_source=manifest``);
- ``build(config, work_dir, dtype, hub_kwargs, seed) -> BuiltModel``: the model, its processor and run-record info;
- ``dataset`` / ``collator`` hooks (default: the video SFT dataset and collator), so a family that is not fed video
  samples brings its own;
- ``model_keys``: the ``model`` section keys only this family reads (``vlm2``); set for another family, they are
  reported;
- ``extra_problems(config)``: the family's own checks of the ``model`` section, reported with all the others;
- ``evaluated_by``: set for a family ``run.evaluate`` (the video evaluation) cannot evaluate: how to evaluate it.

Built-in families (registered lazily; :mod:`posevlm.train.builders` holds them): ``qwen2_5_vl``, ``qwen3_vl``
(stock, pose-aware through :func:`posevlm.models.enable_pose_positions`), ``spatial_mllm``, ``vlm2``. Plug-ins add
families through the entry-point group ``posevlm.train_families`` (the entry point's value: a :class:`TrainFamily`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from posevlm.registry import Registry

if TYPE_CHECKING:
    from posevlm.train.config import ModelSection, TrainConfig

__all__ = ["TrainFamily", "BuiltModel", "train_families", "video_sft_dataset", "video_sft_collator",
           "no_extra_problems"]


@dataclass
class BuiltModel:
    """A model ready for the freeze policy: the module, its processor, where the processor files live, the Qwen
    family its data is formatted for (``qwen2_5_vl`` / ``qwen3_vl``) and what was resolved (for the run record;
    ``positions``: the position spec dict the model uses, or None for the stock positions)."""

    model: Any
    processor: Any
    processor_source: Path
    base_family: str
    info: dict[str, Any] = field(default_factory=dict)


def video_sft_dataset(family: "TrainFamily", config: "TrainConfig", built: BuiltModel, bad_samples) -> Any:
    """The default dataset: :class:`posevlm.train.data.SFTDataset` of ``config.data`` formatted for the built model's
    Qwen family (with a connector's extra video pads)."""
    from posevlm.train.data import SFTDataset

    return SFTDataset.from_config(config.data, built.processor, family=built.base_family, bad_samples=bad_samples,
                                  extra_video_tokens=getattr(built.model, "extra_tokens_per_visual_token", 0))


def video_sft_collator(family: "TrainFamily", config: "TrainConfig", built: BuiltModel, pad_token_id: int) -> Any:
    """The default collator: :class:`posevlm.train.collate.SFTCollator` with the pose inputs the built model reads
    (cameras for camera attention, a pose bias or a position mode that needs them, unless the family's spatial
    encoder gives them; frame ids for modes that only need those) and ``video_tchw`` for a spatial encoder."""
    from posevlm.positions import spec_needs
    from posevlm.train.collate import SFTCollator

    model_config = config.model
    spec = built.info.get("positions")
    needs = spec_needs(spec) if spec else {"w2c_opencv": False, "frame_ids": False}
    cameras = needs["w2c_opencv"] or model_config.camera_attention is not None or model_config.pose_bias != "none"
    if family.with_video_tchw and model_config.pose_source == "vggt":
        cameras = False  # the model's own VGGT camera head gives them
    pose_inputs = "cameras" if cameras else "frame_ids" if needs["frame_ids"] else "none"
    return SFTCollator(pad_token_id, pose_inputs=pose_inputs, with_video_tchw=family.with_video_tchw,
                       with_sample_ids=True)


def no_extra_problems(config: "ModelSection") -> list[str]:
    """A family without checks of its own."""
    return []


@dataclass(frozen=True)
class TrainFamily:
    """One ``model.family`` of a training config (module docstring).

    Attributes:
        name: the ``model.family`` value.
        base_family: ``qwen2_5_vl`` / ``qwen3_vl``: what a ``tiny`` source is written as, the chat layout and the
            position layout used to check ``model.positions``.
        build: ``(config: ModelSection, work_dir: Path, dtype: torch.dtype, hub_kwargs: dict, seed: int) ->
            BuiltModel``; ``hub_kwargs``: ``local_files_only``, ``revision``.
        description: one line for ``posevlm list train-families``.
        composed: accepts ``model.vggt`` (required with ``model.source=tiny``) and ``model.connector``.
        with_video_tchw: the frames go to a spatial encoder (``data.with_video_tchw`` must be on).
        dataset: ``(family, config: TrainConfig, built, bad_samples: BadSampleLog) -> torch Dataset``.
        collator: ``(family, config: TrainConfig, built, pad_token_id) -> collator`` (``pose_inputs`` and
            ``with_video_tchw`` attributes go to the run record when present).
        model_keys: ``model`` section keys only this family reads (a non-empty value under another family is a
            problem).
        extra_problems: ``(config: ModelSection) -> list[str]``, each naming its dotted key and the fix.
        evaluated_by: how its checkpoints are evaluated when ``posevlm train``'s ``run.evaluate`` (the hf backend on
            the synthetic video test split) cannot: a ``posevlm eval`` hint for the error; None (default): it can.
    """

    name: str
    base_family: str
    build: Callable[..., BuiltModel]
    description: str = ""
    composed: bool = False
    with_video_tchw: bool = False
    dataset: Callable[..., Any] = video_sft_dataset
    collator: Callable[..., Any] = video_sft_collator
    model_keys: tuple[str, ...] = ()
    extra_problems: Callable[["ModelSection"], list[str]] = no_extra_problems
    evaluated_by: str | None = None

    @property
    def layout(self) -> str:
        """The position layout of ``base_family`` (``qwen2_5`` / ``qwen3``)."""
        return "qwen3" if self.base_family == "qwen3_vl" else "qwen2_5"

    def problems(self, config: "ModelSection") -> list[str]:
        """What ``config`` (the ``model`` section) asks that this family cannot do, plus its ``extra_problems``."""
        p: list[str] = []
        composed = ", ".join(n for n in train_families.names() if train_families.get(n).composed)
        if config.source == "tiny" and self.composed and config.vggt is None:
            p.append(f"model.source=tiny with family {self.name} composes a model: set model.vggt (tiny, or VGGT "
                     "weights such as facebook/VGGT-1B)")
        if config.vggt is not None and not self.composed:
            p.append(f"model.vggt is set but model.family={self.name!r}; VGGT is part of family {composed}")
        if config.connector != "auto" and not self.composed:
            p.append(f"model.connector applies to family {composed} only")
        for name in train_families.names():
            other = train_families.get(name)
            for key in other.model_keys:
                if name != self.name and key not in self.model_keys and getattr(config, key, None):
                    p.append(f"model.{key} is set but model.family={self.name!r}; it applies to family {name} only")
        return p + list(self.extra_problems(config))

    def make_dataset(self, config: "TrainConfig", built: BuiltModel, bad_samples) -> Any:
        return self.dataset(self, config, built, bad_samples)

    def make_collator(self, config: "TrainConfig", built: BuiltModel, pad_token_id: int) -> Any:
        return self.collator(self, config, built, pad_token_id)


#: Training families (``TrainFamily``); plug-ins add families through the entry-point group
#: ``posevlm.train_families``.
train_families: Registry[TrainFamily] = Registry("train family", "train_families")
train_families.register_lazy(
    "qwen2_5_vl", "posevlm.train.builders:QWEN2_5_VL",
    description="stock Qwen2.5-VL (pose positions, camera attention, learned pose-bias slopes)")
train_families.register_lazy("qwen3_vl", "posevlm.train.builders:QWEN3_VL",
                             description="stock Qwen3-VL (pose positions, camera attention, learned pose-bias slopes)")
train_families.register_lazy("spatial_mllm", "posevlm.train.builders:SPATIAL_MLLM",
                             description="Spatial-MLLM: composed from a Qwen base + VGGT + connector "
                                         "(model.vggt), or a Spatial-MLLM checkpoint")
train_families.register_lazy("vlm2", "posevlm.train.builders:VLM2",
                             description="VLM²: Spatial-MLLM + coordinate injection, viewpoint alignment, fusion, "
                                         "dual memory (model.vlm2 overrides; freeze groups fusion, memory)")
train_families.register_lazy("point_lm", "posevlm.train.point_family:POINT_LM",
                             description="PointCloudLM: a stock Qwen2 / Qwen3 decoder + point encoder + projector with "
                                         "MixedRoPE3D (model.point_lm), on point-cloud layout / QA records")
