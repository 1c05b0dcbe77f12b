"""The built-in training families (:mod:`posevlm.train.families`) and how each builds its model.

* ``qwen2_5_vl`` / ``qwen3_vl``: a stock transformers model (a directory, a hub id or the ``tiny`` preset) made
  pose-aware with :func:`posevlm.models.enable_pose_positions`; activation checkpointing on the model's layers.
* ``spatial_mllm``: :func:`posevlm.models.spatial_mllm.compose` (Qwen base ``source`` + ``model.vggt`` + a fresh
  ``model.connector``) or :func:`~posevlm.models.spatial_mllm.from_pretrained` of a Spatial-MLLM ``source``;
  activation checkpointing on its Qwen model.

Every build returns a :class:`~posevlm.train.families.BuiltModel` whose ``info`` carries ``positions`` (the position
spec dict, or None) for the collator and the run record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posevlm.train.families import BuiltModel, TrainFamily

__all__ = ["QWEN2_5_VL", "QWEN3_VL", "SPATIAL_MLLM", "build_stock", "build_spatial_mllm"]


def build_stock(config, work_dir: Path, dtype, hub: dict, seed: int) -> BuiltModel:
    """A stock Qwen2.5-VL / Qwen3-VL of ``config`` (``seed`` unused: nothing is freshly initialised)."""
    import transformers

    from posevlm.models import enable_pose_positions
    from posevlm.models.families import model_families
    from posevlm.train.checkpoint import processor_dir
    from posevlm.train.data import load_train_processor
    from posevlm.train.trainer import pose_request, prepare_source

    source = prepare_source(config, work_dir)
    family = model_families.get(config.family)
    model = family.transformers_class("model").from_pretrained(
        source, dtype=dtype, attn_implementation=config.attn_implementation, **hub)
    request, camera = pose_request(config)
    spec = None
    if request is not None:
        from posevlm.positions import resolve_position_spec

        tps = family.tokens_per_second(model.config)
        spec = resolve_position_spec(request, family.layout, **({} if tps is None else {"tokens_per_second": tps}))
        model = enable_pose_positions(model, spec, camera_attention=camera)
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    processor_source = processor_dir(source, **hub)
    info = {"family": config.family, "source": source, "model_class": type(model).__name__,
            "dtype": str(dtype).removeprefix("torch."), "transformers": transformers.__version__,
            "positions": None if spec is None else spec.to_dict(),
            "camera_attention": None if camera is None else camera.to_dict()}
    return BuiltModel(model, load_train_processor(processor_source, config.family), processor_source, config.family,
                      info)


def tiny_vggt(seed: int, heads: tuple[str, ...]):
    """A random tiny VGGT with ``heads``, initialised from ``seed`` without touching the global RNG."""
    import torch

    from posevlm.spatial import VGGT, VGGTConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VGGT(VGGTConfig.tiny(heads=heads))


def spatial_common(config, dtype, hub: dict) -> dict[str, Any]:
    """The keyword arguments the Spatial-MLLM / VLM² ``compose`` and ``from_pretrained`` share."""
    from posevlm.train.trainer import pose_request

    positions, camera = pose_request(config)
    return {"positions": positions, "camera_attention": camera, "pose_source": config.pose_source, "dtype": dtype,
            "device": "cpu", "attn_implementation": config.attn_implementation, "processor": False,
            "local_files_only": hub["local_files_only"], "revision": hub["revision"]}


def finish_spatial(config, model, processor_source, dtype, extra_info: dict[str, Any]) -> BuiltModel:
    """Activation checkpointing on the inner Qwen model, the processor and the run-record info of a Spatial-MLLM
    (or a model built on one)."""
    from posevlm.train.data import load_train_processor

    if config.gradient_checkpointing:
        model.qwen.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.qwen.config.use_cache = False
    base_family = model.config.base_family
    recipe = model.config.to_dict()
    info = {"family": config.family, "source": config.source, "vggt": config.vggt, **extra_info,
            "positions": recipe["positions"], "dtype": str(dtype).removeprefix("torch.")}
    return BuiltModel(model, load_train_processor(processor_source, base_family), processor_source, base_family,
                      info)


def build_spatial_mllm(config, work_dir: Path, dtype, hub: dict, seed: int) -> BuiltModel:
    """A Spatial-MLLM composed from bases (``model.vggt`` set; ``seed`` initialises the connector) or loaded from a
    Spatial-MLLM checkpoint ``source``."""
    from posevlm.models.spatial_mllm import compose, from_pretrained
    from posevlm.models.spatial_mllm.loading import processor_source as spatial_processor_source
    from posevlm.train.checkpoint import processor_dir
    from posevlm.train.trainer import prepare_source

    common = spatial_common(config, dtype, hub)
    if config.vggt is not None:  # compose: Qwen base + VGGT + a fresh connector
        base = prepare_source(config, work_dir)
        vggt: Any = tiny_vggt(seed, ("camera",)) if config.vggt == "tiny" else config.vggt
        model = compose(base, vggt, config.connector, seed=seed, **common)
        processor_source = processor_dir(base, **hub)
    else:  # a Spatial-MLLM checkpoint
        model = from_pretrained(config.source, **common)
        processor_source = processor_dir(spatial_processor_source(processor_dir(config.source, **hub),
                                                                  model.config.base_family), **hub)
    return finish_spatial(config, model, processor_source, dtype,
                          {"model_class": "SpatialMLLM", "spatial_mllm": model.config.to_dict()})


QWEN2_5_VL = TrainFamily("qwen2_5_vl", "qwen2_5_vl", build_stock,
                         description="stock Qwen2.5-VL (pose positions, camera attention, learned pose-bias slopes)")
QWEN3_VL = TrainFamily("qwen3_vl", "qwen3_vl", build_stock,
                       description="stock Qwen3-VL (pose positions, camera attention, learned pose-bias slopes)")
SPATIAL_MLLM = TrainFamily("spatial_mllm", "qwen2_5_vl", build_spatial_mllm, composed=True, with_video_tchw=True,
                           description="Spatial-MLLM: composed from a Qwen base + VGGT + connector (model.vggt), or a "
                                       "Spatial-MLLM checkpoint")
