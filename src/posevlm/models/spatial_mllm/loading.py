"""Spatial-MLLM checkpoints: load the released layout, compose from bases, save.

Key layouts (checkpoint name -> module name of :class:`SpatialMLLM`):

=====================================  ==================================  ============================================
checkpoint (released, transformers      checkpoint (transformers >= 4.52 /  SpatialMLLM
4.51: Qwen2.5-VL as saved by 4.51       5.x names; Qwen3-VL always)
and by 5.23's save_pretrained)
=====================================  ==================================  ============================================
``visual.*``                           ``model.visual.*``                  ``qwen.model.visual.*``
``model.*`` (decoder)                  ``model.language_model.*``          ``qwen.model.language_model.*``
``lm_head.weight`` (absent when tied)  ``lm_head.weight``                  ``qwen.lm_head.weight``
``spatial_encoder.vggt_model.*``       same                                ``spatial_encoder.*`` (VGGT-1B names:
                                                                           ``aggregator.*``, ``camera_head.*``)
``connector.*``                        same                                ``connector.*``
=====================================  ==================================  ============================================

VGGT heads the model does not build (``depth_head``, ``point_head``, ``track_head``; ``camera_head`` for a model
without cameras) and a tied ``lm_head.weight`` are skipped unread and reported as ignored. Loading builds the model
on the ``meta`` device (parameters only; rotary buffers are computed as usual) and assigns the checkpoint's tensors:
no random initialisation of billions of parameters. Every load keeps a :class:`~posevlm.spatial.KeyReport`
(``model.load_report``); ``strict`` raises :class:`~posevlm.spatial.CheckpointError` with its one-line summary.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError
from posevlm.hub import hub_offline, hub_status
from posevlm.models.spatial_mllm.config import (
    BASE_FAMILIES,
    SpatialMLLMConfig,
    hf_config_dict,
    read_hf_config,
    warn_if_overridden,
)
from posevlm.models.spatial_mllm.connectors import ConnectorConfig, build_connector
from posevlm.models.spatial_mllm.model import SpatialMLLM
from posevlm.spatial.vggt import VGGT, VGGTConfig, load_vggt
from posevlm.spatial.weights import (
    INDEX_NAME,
    SAFETENSORS_NAME,
    CheckpointError,
    KeyReport,
    apply_dtype_policy,
    checkpoint_shapes,
    compare_keys,
    resolve_checkpoint,
)

__all__ = ["from_pretrained", "compose", "save_pretrained", "released_state_dict", "checkpoint_key_to_module",
           "module_key_to_checkpoint", "detect_layout", "processor_source", "LAYOUTS"]

#: checkpoint layouts this module reads: ``released`` (transformers 4.51 names), ``transformers5``
LAYOUTS = ("released", "transformers5")
# (checkpoint prefix, module prefix, layout); the first match wins (``model.visual.`` before ``model.``)
_PREFIXES = (
    ("model.visual.", "qwen.model.visual.", "transformers5"),
    ("model.language_model.", "qwen.model.language_model.", "transformers5"),
    ("visual.", "qwen.model.visual.", "released"),
    ("model.", "qwen.model.language_model.", "released"),
    ("lm_head.", "qwen.lm_head.", None),
    ("spatial_encoder.vggt_model.", "spatial_encoder.", None),
    ("connector.", "connector.", None),
    ("vlm2.", "vlm2.", None),  # the VLM² stage (posevlm.models.vlm2); absent from Spatial-MLLM checkpoints
)
_SAVE_LAYOUT = {"qwen2_5_vl": "released", "qwen3_vl": "transformers5"}
_PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
_SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*$", re.IGNORECASE)


# ---- key maps --------------------------------------------------------------------------------------------------
def checkpoint_key_to_module(key: str) -> tuple[str | None, str | None]:
    """(module key, layout) of a checkpoint key; (None, None) for a key outside every known prefix."""
    for ckpt, module, layout in _PREFIXES:
        if key.startswith(ckpt):
            return module + key[len(ckpt):], layout
    return None, None


def module_key_to_checkpoint(key: str, layout: str = "released") -> str:
    """The checkpoint name of a :class:`SpatialMLLM` state-dict key in ``layout`` (``released`` / ``transformers5``)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout!r} (allowed: {', '.join(LAYOUTS)})", field="layout", value=layout)
    for ckpt, module, kind in _PREFIXES:
        if kind in (layout, None) and key.startswith(module):
            return ckpt + key[len(module):]
    raise ConfigError(f"{key} is not a SpatialMLLM state-dict key (prefixes qwen., spatial_encoder., connector.)",
                      field="key", value=key)


def detect_layout(keys) -> str:
    """``transformers5`` if any key uses its Qwen names (``model.visual.``, ``model.language_model.``), else
    ``released``."""
    return "transformers5" if any(checkpoint_key_to_module(k)[1] == "transformers5" for k in keys) else "released"


def _tied(qwen) -> dict[str, str]:
    """{tied target: source} module keys of the base model (lm_head -> embed_tokens when tied)."""
    if not getattr(qwen.config, "tie_word_embeddings", False):
        return {}
    return {f"qwen.{t}": f"qwen.{s}" for t, s in (getattr(qwen, "_tied_weights_keys", None) or {}).items()}


def released_state_dict(model: SpatialMLLM, layout: str | None = None,
                        state_dict: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The model's tensors under checkpoint names (default layout: ``released`` for Qwen2.5-VL, ``transformers5``
    for Qwen3-VL, what transformers 5.23 itself writes); tied weights written once. ``state_dict``: tensors under
    the model's module names to use instead of ``model.state_dict()`` (e.g. gathered from DeepSpeed ZeRO-3, or
    with LoRA adapters merged by a trainer)."""
    layout = layout or _SAVE_LAYOUT[model.config.base_family]
    tied = _tied(model.qwen)
    state = model.state_dict() if state_dict is None else state_dict
    return {module_key_to_checkpoint(k, layout): v for k, v in state.items() if k not in tied}


# ---- sources ---------------------------------------------------------------------------------------------------
def _snapshot(source: str | Path, *, revision: str | None, offline: bool) -> Path:
    """A local directory holding the checkpoint (a hub id is downloaded / read from the cache)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not _HUB_ID.match(str(source)):
        raise CheckpointError(f"Spatial-MLLM checkpoint {source} does not exist; pass a directory (what "
                              "save_pretrained writes) or a hub id such as Diankun/Spatial-MLLM-v1.1-Instruct-135K",
                              path=path)
    from huggingface_hub import snapshot_download

    repo = str(source)
    if not offline and (problem := hub_status()) is not None:  # fail (or fall back) now, not after retries
        try:
            folder = snapshot_download(repo, revision=revision, allow_patterns=_SNAPSHOT_PATTERNS,
                                       local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - huggingface_hub raises several unrelated types here
            raise CheckpointError(f"{repo} is not in the local cache and the hub is unreachable: {problem}; fix the "
                                  "network / proxy, or download it elsewhere and pass its directory "
                                  f"({type(exc).__name__})", path=repo) from None
        warnings.warn(f"hub unreachable ({problem}): using the cached copy of {repo}; set HF_HUB_OFFLINE=1 to skip "
                      "this check", stacklevel=3)
        return Path(folder)
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=_SNAPSHOT_PATTERNS,
                                      local_files_only=offline))
    except Exception as exc:  # noqa: BLE001
        where = "in the local cache (offline)" if offline else "locally or on the hub"
        raise CheckpointError(f"{repo} not found {where}; download it with `hf download {repo}` or pass a local "
                              f"directory ({type(exc).__name__}: {exc})", path=repo) from exc


def processor_source(directory: str | Path, base_family: str) -> str:
    """Where the processor comes from: ``directory`` when it holds tokenizer files, else the base Qwen repo
    (self-trained checkpoints often ship none; models spec §1.11 item 9)."""
    folder = Path(directory)
    if any((folder / name).is_file() for name in _PROCESSOR_FILES):
        return str(folder)
    return BASE_FAMILIES[base_family]["base_repo"]


def _load_processor(model: SpatialMLLM, directory: Path | None, processor, hub_kwargs: dict) -> None:
    """Attach ``model.processor`` (and ``processor_source``). ``processor``: True
    (:func:`posevlm.models.qwen_video.load_processor`: transformers' AutoProcessor, or the torch-only video
    processor stand-in without torchvision), a callable ``(source, hub_kwargs) -> processor``, or False."""
    if processor is False:
        return
    source = processor_source(directory, model.config.base_family) if directory is not None else \
        BASE_FAMILIES[model.config.base_family]["base_repo"]
    model.processor_source = source
    kwargs = dict(hub_kwargs) if source != str(directory) else {}
    try:
        if callable(processor):
            model.processor = processor(source, kwargs)
        else:
            import transformers

            from posevlm.models.qwen_video import load_processor

            cls = getattr(transformers, BASE_FAMILIES[model.config.base_family]["processor_class"])
            model.processor = load_processor(source, cls, kwargs)[0]
    except (OSError, ImportError, ValueError) as exc:
        warnings.warn(f"no processor loaded from {source} ({type(exc).__name__}: {exc}); model.processor is None. "
                      "Pass processor=<callable (source, hub_kwargs) -> processor> to build one, or "
                      "processor=False", stacklevel=3)


def _parse_size(value: int | str) -> int:
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"max_shard_size={value!r}: use bytes or e.g. '5GB', '200KB'", field="max_shard_size",
                          value=value)
    unit = (match.group(2) or "B").upper()
    return int(float(match.group(1)) * 1024 ** "BKMGT".index(unit[0]))


# ---- loading ---------------------------------------------------------------------------------------------------
def _dtype_of(dtype, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ConfigError(f"dtype={dtype!r}: use float32, bfloat16 or float16", field="dtype", value=dtype)
        return getattr(torch, dtype)
    return dtype


def _build_context(meta: bool):
    """Where skeleton modules are built: on ``meta`` (no memory; weights come from a checkpoint) or for real."""
    if meta:
        from accelerate import init_empty_weights

        return init_empty_weights(include_buffers=False)
    import contextlib

    return contextlib.nullcontext()


def _stock_qwen(base_family: str, qwen_config, *, dtype: torch.dtype, attn_implementation: str):
    """The stock transformers Qwen-VL model of ``base_family`` from its config (call inside ``_build_context``)."""
    import transformers

    cls = getattr(transformers, BASE_FAMILIES[base_family]["model_class"])
    return cls._from_config(qwen_config, attn_implementation=attn_implementation, dtype=dtype)


def _skeleton(config: SpatialMLLMConfig, qwen_config, *, dtype: torch.dtype, attn_implementation: str,
              meta: bool) -> SpatialMLLM:
    """The model with its final dtypes; parameters on ``meta`` (``meta=True``) or randomly initialised."""
    with _build_context(meta):
        qwen = _stock_qwen(config.base_family, qwen_config, dtype=dtype, attn_implementation=attn_implementation)
        needs_vggt = config.connector is not None or (config.needs_cameras and config.pose_source == "vggt")
        vggt = VGGT(config.spatial_config) if needs_vggt else None
        connector = build_connector(config.connector) if config.connector is not None else None
    if vggt is not None:
        apply_dtype_policy(vggt, dtype, keep_fp32=vggt.fp32_modules)
    if connector is not None:
        connector.to(dtype)
    return SpatialMLLM(qwen.eval(), vggt, connector, config).eval()


def _load_tensors(model: SpatialMLLM, files, *, source: str, strict: bool, device: torch.device,
                  vggt_files=None) -> KeyReport:
    """Read the checkpoint ``files`` (and, for spatial-encoder keys they lack, ``vggt_files``) into ``model``."""
    from safetensors import safe_open

    from posevlm.models.camera_attention import SLOPES_NAME

    shapes = checkpoint_shapes(files)
    extra_shapes = checkpoint_shapes(vggt_files) if vggt_files else {}
    state = model.state_dict(keep_vars=True)
    tied = _tied(model.qwen)
    vggt = model.spatial_encoder
    ignore = tuple(f"spatial_encoder.{p}" for p in (vggt.checkpoint_ignore if vggt is not None else ("",)))
    if model.connector is None:
        ignore += ("connector.",)
    mapped: dict[str, tuple[str, tuple[int, ...]]] = {}  # module key -> (checkpoint key, shape)
    unknown, ignored = [], []
    for key, shape in shapes.items():
        module_key, _ = checkpoint_key_to_module(key)
        if module_key is None:
            unknown.append(key)
        elif module_key in tied or any(module_key.startswith(p) for p in ignore):
            ignored.append(key)
        else:
            mapped[module_key] = (key, shape)
    from_vggt: dict[str, tuple[str, tuple[int, ...]]] = {}
    for key, shape in extra_shapes.items():
        module_key = "spatial_encoder." + key
        if module_key in state and module_key not in mapped:
            from_vggt[module_key] = (key, shape)
    # learned pose-bias slopes the checkpoint does not hold start at 0 (_materialise_slopes), as in stock models
    absent_slopes = {k for k in state if k.endswith(SLOPES_NAME) and k not in mapped}
    model_shapes = {k: tuple(v.shape) for k, v in state.items() if k not in tied and k not in absent_slopes}
    given = {k: s for k, (_, s) in {**from_vggt, **mapped}.items()}
    report = compare_keys(model_shapes, given, source=source)
    layout = detect_layout(shapes)
    rename = lambda k: mapped[k][0] if k in mapped else module_key_to_checkpoint(k, layout)  # noqa: E731
    report = KeyReport(source, loaded=tuple(rename(k) for k in report.loaded),
                       missing=tuple(module_key_to_checkpoint(k, layout) for k in report.missing),
                       unexpected=tuple(unknown) + tuple(mapped[k][0] for k in report.unexpected if k in mapped),
                       ignored=tuple(ignored),
                       mismatched=tuple((rename(k), c, m) for k, c, m in report.mismatched))
    on_meta = any(v.is_meta for v in state.values())
    if not report.ok and (strict or (on_meta and (report.missing or report.mismatched))):
        hint = ""
        if any(k.startswith("spatial_encoder.") for k in report.missing):
            hint = (". The checkpoint lacks spatial-encoder weights: pass vggt='facebook/VGGT-1B' (or a local copy) to "
                    "fill them")
        raise CheckpointError(report.summary() + hint, path=source, report=report)
    wanted: dict[Path, dict[str, str]] = {}  # file -> {checkpoint key: module key}
    for items, where in ((mapped, files), (from_vggt, vggt_files or ())):
        owner = _owners(where)
        for module_key, (key, _) in items.items():
            if module_key in model_shapes and tuple(state[module_key].shape) == tuple(given[module_key]):
                wanted.setdefault(owner[key], {})[key] = module_key
    tensors: dict[str, Tensor] = {}
    with torch.no_grad():
        for path, keys in wanted.items():
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                for key, module_key in keys.items():
                    param = state[module_key]
                    value = f.get_tensor(key)
                    value = value.to(param.dtype) if param.dtype.is_floating_point else value
                    if on_meta:
                        tensors[module_key] = value
                    else:
                        param.copy_(value.to(param.device))
    if on_meta:
        model.load_state_dict(tensors, strict=False, assign=True)
    _tie(model.qwen)
    _materialise_slopes(model, device)
    return report


def _owners(files) -> dict[str, Path]:
    from safetensors import safe_open

    owner = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                owner[key] = Path(path)
    return owner


def _tie(qwen) -> None:
    """Share the tied parameters (lm_head <- embed_tokens) after loading, as transformers does."""
    for target, source in _tied(qwen).items():
        parent_name, _, leaf = target.removeprefix("qwen.").rpartition(".")
        source_param = qwen.get_parameter(source.removeprefix("qwen."))
        setattr(qwen.get_submodule(parent_name), leaf, source_param)


def _materialise_slopes(model: SpatialMLLM, device: torch.device) -> None:
    """Learned pose-bias slopes absent from the checkpoint start at 0 (the stock model); nothing else may stay on
    meta."""
    from posevlm.models.camera_attention import SLOPES_NAME

    for name, param in list(model.named_parameters()):
        if param.is_meta and name.endswith(SLOPES_NAME):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, nn.Parameter(torch.zeros(param.shape, device=device)))
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise CheckpointError(f"{len(left)} parameters were not loaded ({', '.join(left[:3])}); load with strict=True "
                              "to see the key report", path=None)


def _resolve_positions(config: SpatialMLLMConfig, qwen_config, positions, slot_axis, camera_attention,
                       source: str) -> SpatialMLLMConfig:
    """The config with an explicit position / camera-attention request applied (warning when it differs from
    what the checkpoint stores)."""
    from posevlm.models.camera_attention import CameraAttentionSpec
    from posevlm.positions import resolve_position_spec

    if positions is None and camera_attention is None and slot_axis is None:
        return config
    tps = getattr(qwen_config.vision_config, "tokens_per_second", None)
    defaults = {"tokens_per_second": float(tps)} if tps is not None else {}
    spec = resolve_position_spec(positions, config.layout, **defaults) if positions is not None else None
    if isinstance(camera_attention, str):
        camera_attention = CameraAttentionSpec(mode=camera_attention)
    elif isinstance(camera_attention, Mapping):
        camera_attention = CameraAttentionSpec.from_dict(dict(camera_attention))
    warn_if_overridden(config, positions=spec, camera_attention=camera_attention, source=source)
    changes: dict[str, Any] = {}
    if spec is not None:
        changes.update(positions=spec, slot_axis=None if slot_axis is None else tuple(slot_axis))
    elif slot_axis is not None:
        changes["slot_axis"] = tuple(slot_axis)
    if camera_attention is not None:
        changes["camera_attention"] = camera_attention
    return config.replace(**changes)


def _fit_camera_head(config: SpatialMLLMConfig, shapes: Mapping[str, Any], *, filled: bool) -> SpatialMLLMConfig:
    """Whether the released checkpoints hold VGGT's camera head is not known (models spec §6.4): a checkpoint without
    ``camera_head`` keys loads without it when no camera is needed (and no ``vggt`` weights fill it)."""
    heads = config.spatial_config.heads
    has_head = any(k.startswith("spatial_encoder.vggt_model.camera_head.") for k in shapes)
    if "camera" not in heads or has_head or filled or (config.needs_cameras and config.pose_source == "vggt"):
        return config
    spatial = config.spatial_config.__class__.from_dict({**config.spatial_config.to_dict(),
                                                         "heads": [h for h in heads if h != "camera"]})
    return config.replace(spatial_config=spatial)


def from_pretrained(source: str | Path, *, local_files_only: bool = False, revision: str | None = None,
                    dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
                    attn_implementation: str = "sdpa", strict: bool = True, positions=None, slot_axis=None,
                    camera_attention=None, pose_source: str | None = None, vggt: str | Path | None = None,
                    processor: bool | Callable[[str, dict], Any] = True) -> SpatialMLLM:
    """Load a Spatial-MLLM checkpoint: a local directory or a hub id (released
    ``Diankun/Spatial-MLLM-v1.1-Instruct-135K``, a fork checkpoint, or what :func:`save_pretrained` wrote).

    Args:
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE`` is set); otherwise a hub that does
            not answer within a few seconds makes the cached copy be used, with a warning.
        dtype: storage dtype (default bf16 on CUDA, float32 on CPU); VGGT's heads stay float32.
        device: default CUDA when available. attn_implementation: ``sdpa``, ``eager``, ``flash_attention_2``.
        strict: raise CheckpointError (one line: counts, first names, the fix) on missing, unexpected or mis-shaped
            keys; built on the meta device. ``False``: random init, then the matching keys load.
        positions / slot_axis / camera_attention / pose_source: override what the checkpoint stores (its
            ``posevlm_spatial_mllm`` block or the fork's ``pose_rope_config``); a difference warns.
        vggt: VGGT weights (``facebook/VGGT-1B`` or a local copy) for spatial-encoder keys the checkpoint lacks.
        processor: True (from the directory, else the base Qwen repo: transformers' AutoProcessor, or without
            torchvision the torch-only video processor stand-in), a callable ``(source, hub_kwargs) -> processor``,
            or False.
    Returns:
        the model in eval mode; ``model.load_report`` the KeyReport (checkpoint names), ``model.processor``.
    """
    return load_checkpoint(source, lambda data, where: read_hf_config(data, source=where)[:2], _skeleton,
                           fit_camera_head=True, local_files_only=local_files_only, revision=revision, dtype=dtype,
                           device=device, attn_implementation=attn_implementation, strict=strict, positions=positions,
                           slot_axis=slot_axis, camera_attention=camera_attention, pose_source=pose_source, vggt=vggt,
                           processor=processor)


def load_checkpoint(source: str | Path, read_config: Callable[[dict, str], tuple[Any, Any]], skeleton: Callable[..., Any],
                    *, fit_camera_head: bool, local_files_only: bool, revision: str | None, dtype, device,
                    attn_implementation: str, strict: bool, positions, slot_axis, camera_attention,
                    pose_source: str | None, vggt, processor):
    """The loading recipe of :func:`from_pretrained`, shared by the compositions built on it (VLM²):
    ``read_config(config.json data, its path) -> (model config, qwen config)`` and ``skeleton(config, qwen_config,
    dtype=, attn_implementation=, meta=)`` are the model's own; ``fit_camera_head`` sizes VGGT's camera head to what
    the checkpoint holds (Spatial-MLLM checkpoints with or without one)."""
    offline = local_files_only or hub_offline()
    folder = _snapshot(source, revision=revision, offline=offline)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json; pass a checkpoint directory (what save_pretrained "
                              "writes)", path=folder)
    config, qwen_config = read_config(json.loads(config_path.read_text()), str(config_path))
    config = _resolve_positions(config, qwen_config, positions, slot_axis, camera_attention, str(source))
    if pose_source is not None:
        config = config.replace(pose_source=pose_source)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                          else "cpu")
    dtype = _dtype_of(dtype, device)
    files = resolve_checkpoint(folder)
    vggt_files = resolve_checkpoint(vggt, offline=offline) if vggt is not None else None
    if fit_camera_head:
        config = _fit_camera_head(config, checkpoint_shapes(files), filled=vggt_files is not None)
    model = skeleton(config, qwen_config, dtype=dtype, attn_implementation=attn_implementation, meta=strict)
    if not strict:
        model.to(device)
    model.load_report = _load_tensors(model, files, source=str(source), strict=strict, device=device,
                                      vggt_files=vggt_files)
    model.to(device)
    if (folder / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.qwen.generation_config = GenerationConfig.from_pretrained(str(folder))
    _load_processor(model, folder, processor, {"local_files_only": offline, "revision": revision})
    return model.eval()


def compose(qwen, vggt=None, connector: ConnectorConfig | Mapping | str | None = "auto", *,
            spatial_config: VGGTConfig | None = None, spatial_layer: int = -1, pose_source: str = "vggt",
            positions=None, slot_axis=None, camera_attention=None, dtype: torch.dtype | str | None = None,
            device: str | torch.device | None = None, attn_implementation: str = "sdpa",
            local_files_only: bool = False, revision: str | None = None, seed: int | None = None,
            processor: bool | Callable[[str, dict], Any] = False) -> SpatialMLLM:
    """A Spatial-MLLM from bases: a Qwen-VL model + VGGT + a freshly initialised connector (normal std 0.02, zero
    bias, RMSNorm ones; ``seed`` makes it reproducible).

    Args:
        qwen: a transformers Qwen2.5-VL / Qwen3-VL model, or its directory / hub id (``Qwen/Qwen2.5-VL-3B-Instruct``).
        vggt: a :class:`~posevlm.spatial.VGGT`, VGGT weights (``facebook/VGGT-1B``, a directory or file), or None
            (randomly initialised ``spatial_config``; default VGGT-1B with the camera head -- untrained, warns).
        connector: a ConnectorConfig or its dict (``spatial_dim`` / ``llm_dim`` default to the models' widths),
            a registry name (``add``), None / ``"none"`` (pose-only), or ``"auto"`` (``add`` on Qwen2.5-VL, pose-only
            on Qwen3-VL, as the fork's variants).
        positions / slot_axis / camera_attention / pose_source: see :class:`SpatialMLLMConfig`.
    """
    import transformers

    device = torch.device(device) if device is not None else None
    offline = local_files_only or hub_offline()
    if isinstance(qwen, (str, Path)):
        source = str(qwen)
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=offline, revision=revision)
        family = config.model_type
        if family not in BASE_FAMILIES:
            raise ConfigError(f"{source} is a {family!r} checkpoint; compose takes a Qwen2.5-VL or Qwen3-VL base "
                              f"({', '.join(BASE_FAMILIES)})", field="qwen", value=family)
        cls = getattr(transformers, BASE_FAMILIES[family]["model_class"])
        load_dtype = _dtype_of(dtype, device or torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        qwen = cls.from_pretrained(source, dtype=load_dtype, attn_implementation=attn_implementation,
                                   local_files_only=offline, revision=revision)
        base_dir = Path(source) if Path(source).is_dir() else None
    else:
        source, base_dir = None, None
    family = getattr(qwen.config, "model_type", None)
    if family not in BASE_FAMILIES:
        raise ConfigError(f"qwen is a {family!r} model; compose takes Qwen2.5-VL or Qwen3-VL ({', '.join(BASE_FAMILIES)})",
                          field="qwen", value=family)
    if isinstance(vggt, VGGT):
        spatial = vggt
    elif vggt is None:
        cfg = spatial_config or VGGTConfig.vggt_1b(heads=("camera",))
        if spatial_config is None:
            warnings.warn("compose(vggt=None): the spatial encoder is randomly initialised (untrained VGGT-1B); "
                          "pass vggt='facebook/VGGT-1B' for real weights", stacklevel=2)
        spatial = VGGT(cfg)
    else:
        spatial = load_vggt(vggt, config=spatial_config, heads=(spatial_config.heads if spatial_config else ("camera",)),
                            device=device or qwen.device, offline=offline, revision=None)
    hidden = int(qwen.config.text_config.hidden_size)
    if connector == "auto":
        connector = "add" if family == "qwen2_5_vl" else None
    if connector == "none":
        connector = None
    if isinstance(connector, str):
        connector = {"type": connector}
    if isinstance(connector, Mapping):
        connector = ConnectorConfig.from_dict({"spatial_dim": spatial.token_dim, "llm_dim": hidden, **connector})
    module = None
    if connector is not None:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            module = build_connector(connector)
    config = SpatialMLLMConfig(base_family=family, spatial_config=spatial.config, connector=connector,
                               spatial_layer=spatial_layer, pose_source=pose_source)
    config = _resolve_positions(config, qwen.config, positions, slot_axis, camera_attention, "compose")
    needs_vggt = connector is not None or (config.needs_cameras and pose_source == "vggt")
    model = SpatialMLLM(qwen, spatial if needs_vggt else None, module, config)
    target = device or qwen.device
    if dtype is not None:
        load_dtype = _dtype_of(dtype, target)
        model.qwen.to(load_dtype)
        if model.connector is not None:
            model.connector.to(load_dtype)
        if model.spatial_encoder is not None:
            apply_dtype_policy(model.spatial_encoder, load_dtype, keep_fp32=model.spatial_encoder.fp32_modules)
    elif model.connector is not None:
        model.connector.to(model.qwen.dtype)
    model.to(target)
    model.processor_source = None
    if processor is not False:
        _load_processor(model, base_dir, processor, {"local_files_only": offline, "revision": revision})
    return model.eval()


# ---- saving ----------------------------------------------------------------------------------------------------
def save_pretrained(model: SpatialMLLM, directory: str | Path, *, max_shard_size: int | str = "5GB",
                    layout: str | None = None, processor: bool = True,
                    state_dict: Mapping[str, Tensor] | None = None) -> Path:
    """Write ``directory`` in the released layout: ``config.json`` (:func:`~posevlm.models.spatial_mllm.config.
    hf_config_dict` + provenance), ``generation_config.json``, the weights (``model.safetensors``, or shards of at
    most ``max_shard_size`` with ``model.safetensors.index.json``) under checkpoint names, and the processor files
    when ``model.processor`` is set. :func:`from_pretrained` of the directory rebuilds the same model.
    ``state_dict``: the tensors to write under module names (default ``model.state_dict()``; see
    :func:`released_state_dict`)."""
    from safetensors.torch import save_file

    from posevlm.atomic import atomic_write_text
    from posevlm.provenance import provenance

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in released_state_dict(model, layout, state_dict).items()}
    limit = _parse_size(max_shard_size)
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += nbytes
    for old in list(directory.glob("model*.safetensors")) + [directory / INDEX_NAME]:
        old.unlink(missing_ok=True)
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(directory / SAFETENSORS_NAME), metadata=metadata)
    else:
        width = max(5, int(math.log10(len(shards))) + 1)
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:0{width}d}-of-{len(shards):0{width}d}.safetensors"
            save_file(shard, str(directory / name), metadata=metadata)
            weight_map.update({k: name for k in shard})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        atomic_write_text(directory / INDEX_NAME, json.dumps({"metadata": {"total_size": total},
                                                              "weight_map": weight_map}, indent=1, sort_keys=True))
    config = hf_config_dict(model.config, model.qwen.config)
    config["dtype"] = str(model.qwen.dtype).removeprefix("torch.")
    config["posevlm_provenance"] = provenance()
    atomic_write_text(directory / "config.json", json.dumps(config, indent=1, sort_keys=True))
    model.qwen.generation_config.save_pretrained(str(directory))
    if processor and model.processor is not None:
        model.processor.save_pretrained(str(directory))
    return directory
