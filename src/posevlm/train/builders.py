"""The built-in training families (:mod:`posevlm.train.families`) and how each builds its model.

* ``qwen2_5_vl`` / ``qwen3_vl``: a stock transformers model (a directory, a hub id or the ``tiny`` preset) made
  pose-aware with :func:`posevlm.models.enable_pose_positions`; activation checkpointing on the model's layers.
* ``spatial_mllm``: :func:`posevlm.models.spatial_mllm.compose` (Qwen base ``source`` + ``model.vggt`` + a fresh
  ``model.connector``) or :func:`~posevlm.models.spatial_mllm.from_pretrained` of a Spatial-MLLM ``source``;
  activation checkpointing on its Qwen model.
* ``vlm2``: :func:`posevlm.models.vlm2.compose` (Qwen2.5-VL base + ``model.vggt`` with camera and point heads +
  connector or none + a fresh stage of ``model.vlm2``), :func:`~posevlm.models.vlm2.from_spatial_mllm` of a
  Spatial-MLLM ``source``, or :func:`~posevlm.models.vlm2.from_pretrained` of a VLM² ``source``.

Every build returns a :class:`~posevlm.train.families.BuiltModel` whose ``info`` carries ``positions`` (the position
spec dict, or None) for the collator and the run record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from posevlm.train.families import BuiltModel, TrainFamily

__all__ = ["QWEN2_5_VL", "QWEN3_VL", "SPATIAL_MLLM", "VLM2", "build_stock", "build_spatial_mllm", "build_vlm2",
           "vlm2_problems"]


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


# ---- VLM² ---------------------------------------------------------------------------------------------------------
_VLM2_WIDTHS = ("llm_dim", "spatial_dim")


def _source_model_type(source: str, hub: dict) -> str | None:
    """``model_type`` of the checkpoint ``source`` (a directory or a hub id; None if it has no ``config.json``)."""
    import json

    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(source, "config.json", revision=hub["revision"],
                                        local_files_only=hub["local_files_only"]))
        except Exception as exc:  # noqa: BLE001 - huggingface_hub raises several unrelated types here
            from posevlm.spatial.weights import CheckpointError

            raise CheckpointError(f"model.source={source}: no config.json locally or on the hub "
                                  f"({type(exc).__name__}: {exc}); pass a checkpoint directory or a hub id",
                                  path=source) from exc
    return json.loads(path.read_text()).get("model_type") if path.is_file() else None


def vlm2_problems(config) -> list[str]:
    """``model.vlm2``: VLM2Config overrides (every module switchable; the widths come from the model)."""
    from posevlm.errors import ConfigError
    from posevlm.memory import VLM2Config

    overrides = config.vlm2
    if not isinstance(overrides, Mapping):
        return []  # reported as a mapping problem by the section
    p = [f"model.vlm2.{k}: the stage's widths are the model's (LLM hidden size, VGGT token width); remove it"
         for k in _VLM2_WIDTHS if k in overrides]
    heads = overrides.get("num_heads", 16)
    probe = {"llm_dim": heads * 64 if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else 1024,
             "spatial_dim": 1024}
    try:
        VLM2Config.from_dict({**{k: v for k, v in overrides.items() if k not in _VLM2_WIDTHS}, **probe})
    except (ConfigError, TypeError) as exc:
        p.append(f"model.vlm2: {exc}")
    return p


def build_vlm2(config, work_dir: Path, dtype, hub: dict, seed: int) -> BuiltModel:
    """A VLM² model (:mod:`posevlm.models.vlm2`), by what ``source`` holds:

    * a Qwen2.5-VL base (or ``tiny``) with ``model.vggt``: ``compose`` (base + VGGT with camera and point heads + the
      connector, ``auto`` / ``none`` = none, the paper's layout + a fresh stage of ``model.vlm2``);
    * a Spatial-MLLM checkpoint: ``from_spatial_mllm`` (its parts + a fresh stage; ``model.vggt``, if set, replaces
      its VGGT, e.g. by one with the point head that coordinate injection reads);
    * a VLM² checkpoint: its own ``from_pretrained`` (stage and config as saved; ``model.vlm2`` / ``model.vggt``
      refused).
    ``seed`` initialises the fresh connector and stage.

    Raises:
        ConfigError: a source of another kind, or options the source cannot take.
    """
    from posevlm.errors import ConfigError
    from posevlm.models.spatial_mllm import from_pretrained as spatial_from_pretrained
    from posevlm.models.spatial_mllm.loading import processor_source as spatial_processor_source
    from posevlm.models.vlm2 import VLM2_MODEL_TYPE, compose, from_pretrained, from_spatial_mllm
    from posevlm.models.vlm2.config import DEFAULT_HEADS
    from posevlm.train.checkpoint import processor_dir
    from posevlm.train.trainer import prepare_source

    common = spatial_common(config, dtype, hub)
    overrides = dict(config.vlm2)
    source = prepare_source(config, work_dir)
    kind = "qwen2_5_vl" if config.source == "tiny" else _source_model_type(source, hub)

    def vggt_of(name: str):
        if name == "tiny":
            return tiny_vggt(seed, DEFAULT_HEADS)
        from posevlm.spatial.vggt import load_vggt

        return load_vggt(name, heads=DEFAULT_HEADS, device="cpu", offline=hub["local_files_only"])

    if kind == VLM2_MODEL_TYPE:
        refused = [k for k, v in (("model.vlm2", overrides), ("model.vggt", config.vggt)) if v]
        if refused:
            raise ConfigError(f"model.source={source} is a VLM² checkpoint: its stage and VGGT are its own; remove "
                              f"{' and '.join(refused)} (or start from a Qwen base / a Spatial-MLLM checkpoint)",
                              field=refused[0], value=source)
        model = from_pretrained(source, **common)
        how = "from_pretrained"
    elif kind in ("spatial-mllm", "spatial-mllm-qwen3"):
        base = spatial_from_pretrained(source, **common)
        vggt = vggt_of(config.vggt) if config.vggt is not None else None
        model = from_spatial_mllm(base, overrides, spatial_encoder=vggt, seed=seed + 1)
        how = "from_spatial_mllm"
    elif kind == "qwen2_5_vl":
        if config.vggt is None:
            raise ConfigError(f"model.source={source} is a Qwen2.5-VL base: set model.vggt (tiny, or VGGT weights such "
                              "as facebook/VGGT-1B) to compose a VLM² model", field="model.vggt", value=None)
        connector = None if config.connector in ("auto", "none") else config.connector
        model = compose(source, vggt_of(config.vggt), connector, vlm2=overrides, seed=seed, **common)
        how = "compose"
    else:
        raise ConfigError(f"model.source={source} is a {kind!r} checkpoint; family vlm2 starts from a Qwen2.5-VL base "
                          "(with model.vggt), a Spatial-MLLM or a VLM² checkpoint", field="model.source", value=kind)
    if how == "compose":
        processor_source = processor_dir(source, **hub)
    else:
        processor_source = processor_dir(spatial_processor_source(processor_dir(source, **hub),
                                                                  model.config.base_family), **hub)
    return finish_spatial(config, model, processor_source, dtype,
                          {"model_class": "VLM2", "built_by": how, "spatial_mllm": model.config.to_dict()})


VLM2 = TrainFamily("vlm2", "qwen2_5_vl", build_vlm2, composed=True, with_video_tchw=True, model_keys=("vlm2",),
                   extra_problems=vlm2_problems,
                   description="VLM²: Spatial-MLLM + coordinate injection, viewpoint alignment, fusion, dual memory "
                               "(model.vlm2 overrides; freeze groups fusion, memory)")
