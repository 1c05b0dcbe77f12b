"""VLM² checkpoints: compose from bases, add a stage to a Spatial-MLLM, save, load.

The on-disk layout is Spatial-MLLM's (:mod:`posevlm.models.spatial_mllm.loading`: released key names, shards,
``generation_config.json``, processor files) plus the stage's ``vlm2.*`` tensors, with ``model_type``
``spatial-mllm-vlm2`` and the :class:`~posevlm.memory.VLM2Config` inside ``config.json``
(:mod:`posevlm.models.vlm2.config`). Loading builds the model on the meta device and assigns the checkpoint's
tensors through the Spatial-MLLM loader's key report, so a missing, unexpected or mis-shaped ``vlm2.*`` key is
reported like any other.

:func:`from_pretrained` takes the keyword arguments of a ``posevlm.models.families.ModelFamily`` ``loader``
(``dtype``, ``device``, ``attn_implementation``, ``local_files_only``, ``revision``, ``processor``, ``positions``,
``slot_axis``, ``camera_attention``, ``pose_source``), so wiring VLM² into ``posevlm eval`` / ``posevlm train`` is a
registry entry pointing at it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from posevlm.errors import ConfigError
from posevlm.hub import hub_offline
from posevlm.memory import VLM2Config, VLM2Stage
from posevlm.models.spatial_mllm.config import read_hf_config
from posevlm.models.spatial_mllm.connectors import build_connector
from posevlm.models.spatial_mllm.loading import _build_context, _stock_qwen, load_checkpoint
from posevlm.models.spatial_mllm.loading import compose as compose_spatial_mllm
from posevlm.models.spatial_mllm.loading import save_pretrained as save_spatial_mllm
from posevlm.models.spatial_mllm.model import SpatialMLLM
from posevlm.models.vlm2.config import DEFAULT_HEADS, VLM2_ARCHITECTURE, VLM2ModelConfig, split_hf_config
from posevlm.models.vlm2.model import VLM2
from posevlm.spatial.vggt import VGGT, VGGTConfig, load_vggt
from posevlm.spatial.weights import apply_dtype_policy

__all__ = ["compose", "from_spatial_mllm", "from_pretrained", "save_pretrained"]


def _vlm2_config(vlm2: VLM2Config | Mapping[str, Any] | None) -> VLM2Config | Mapping[str, Any] | None:
    if vlm2 is None or isinstance(vlm2, (VLM2Config, Mapping)):
        return vlm2
    raise ConfigError(f"vlm2 must be a VLM2Config, its dict or None; got {type(vlm2).__name__}", field="vlm2")


def from_spatial_mllm(model: SpatialMLLM, vlm2: VLM2Config | Mapping[str, Any] | None = None, *,
                      spatial_encoder: VGGT | None = None, seed: int | None = None) -> VLM2:
    """A VLM² model around ``model``'s parts (its Qwen, VGGT, connector, positions) with a fresh stage.

    Args:
        model: a Spatial-MLLM (e.g. a released checkpoint from ``SpatialMLLM.from_pretrained``); its modules are
            shared, not copied, and its vision-tower hook now calls the VLM² model.
        vlm2: the stage's config or dict (default: the paper's); its widths ``llm_dim`` / ``spatial_dim`` are always
            the model's (the LLM hidden size, the VGGT token width).
        spatial_encoder: the VGGT to use (default ``model.spatial_encoder``); coordinate injection from VGGT's points
            needs its point head (``load_vggt(..., heads=("camera", "point"))``).
        seed: makes the stage's random initialisation reproducible.
    """
    vggt = spatial_encoder if spatial_encoder is not None else model.spatial_encoder
    spatial_config = vggt.config if vggt is not None else model.config.spatial_config
    vlm2 = _vlm2_config(vlm2)
    stage_fields = vlm2.to_dict() if isinstance(vlm2, VLM2Config) else dict(vlm2 or {})
    widths = {"llm_dim": int(model.qwen.config.text_config.hidden_size), "spatial_dim": spatial_config.token_dim}
    config = VLM2ModelConfig.from_base(model.config, {**stage_fields, **widths}, spatial_config=spatial_config)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        stage = VLM2Stage(config.vlm2)
    dtype = model.qwen.dtype
    stage.to(device=model.qwen.device, dtype=dtype)
    if vggt is not None and vggt is not model.spatial_encoder:
        apply_dtype_policy(vggt, dtype, keep_fp32=vggt.fp32_modules)
        vggt.to(model.qwen.device)
    out = VLM2(model.qwen, vggt, model.connector, config, stage)
    out.processor, out.processor_source = model.processor, model.processor_source
    return out.eval()


def compose(qwen, vggt=None, connector=None, *, vlm2: VLM2Config | Mapping[str, Any] | None = None,
            spatial_config: VGGTConfig | None = None, spatial_layer: int = -1, pose_source: str = "vggt",
            positions=None, slot_axis=None, camera_attention=None, dtype: torch.dtype | str | None = None,
            device: str | torch.device | None = None, attn_implementation: str = "sdpa",
            local_files_only: bool = False, revision: str | None = None, seed: int | None = None,
            processor: bool | Callable[[str, dict], Any] = False) -> VLM2:
    """A VLM² model from bases: a Qwen2.5-VL model (or its directory / hub id), VGGT (a module, weights, or None
    for a random VGGT-1B with camera and point heads), a fresh connector (default None: the paper's layout) and a
    fresh stage (``vlm2``: default the paper's). ``seed`` makes the connector and stage reproducible; the other
    arguments are those of :func:`posevlm.models.spatial_mllm.compose`.
    """
    offline = local_files_only or hub_offline()
    if isinstance(vggt, VGGT):
        spatial = vggt
    elif vggt is None:
        cfg = spatial_config or VGGTConfig.vggt_1b(heads=DEFAULT_HEADS)
        if spatial_config is None:
            warnings.warn("compose(vggt=None): the spatial encoder is randomly initialised (untrained VGGT-1B); "
                          "pass vggt='facebook/VGGT-1B' for real weights", stacklevel=2)
        spatial = VGGT(cfg)
    else:
        spatial = load_vggt(vggt, config=spatial_config,
                            heads=spatial_config.heads if spatial_config is not None else DEFAULT_HEADS,
                            device=device, offline=offline)
    base = compose_spatial_mllm(qwen, spatial, connector if connector is not None else "none",
                                spatial_layer=spatial_layer, pose_source=pose_source, dtype=dtype, device=device,
                                attn_implementation=attn_implementation, local_files_only=local_files_only,
                                revision=revision, seed=seed, processor=processor)
    model = from_spatial_mllm(base, vlm2, spatial_encoder=spatial, seed=None if seed is None else seed + 1)
    if positions is not None or camera_attention is not None:
        model.enable_pose_positions(positions, slot_axis=slot_axis, camera_attention=camera_attention,
                                    pose_source=pose_source)
    return model


def _skeleton(config: VLM2ModelConfig, qwen_config, *, dtype: torch.dtype, attn_implementation: str,
              meta: bool) -> VLM2:
    """The model with its final dtypes; parameters on ``meta`` (``meta=True``) or randomly initialised."""
    with _build_context(meta):
        qwen = _stock_qwen(config.base_family, qwen_config, dtype=dtype, attn_implementation=attn_implementation)
        vggt = VGGT(config.spatial_config)
        connector = build_connector(config.connector) if config.connector is not None else None
        stage = VLM2Stage(config.vlm2)
    apply_dtype_policy(vggt, dtype, keep_fp32=vggt.fp32_modules)
    for module in (connector, stage):
        if module is not None:
            module.to(dtype)
    return VLM2(qwen.eval(), vggt, connector, config, stage).eval()


def from_pretrained(source: str | Path, *, local_files_only: bool = False, revision: str | None = None,
                    dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
                    attn_implementation: str = "sdpa", strict: bool = True, positions=None, slot_axis=None,
                    camera_attention=None, pose_source: str | None = None, vggt: str | Path | None = None,
                    processor: bool | Callable[[str, dict], Any] = True) -> VLM2:
    """Load a VLM² checkpoint (a directory :func:`save_pretrained` wrote, or a hub id). Arguments as
    :func:`posevlm.models.spatial_mllm.from_pretrained`; returns the model in eval mode with ``load_report``.

    Raises:
        ConfigError: the directory holds no VLM² checkpoint (a plain Spatial-MLLM: use ``SpatialMLLM.from_pretrained``
            and :func:`from_spatial_mllm`).
        CheckpointError: missing / unexpected / mis-shaped keys (``strict``), as the Spatial-MLLM loader reports them.
    """
    return load_checkpoint(source, _read_config, _skeleton, fit_camera_head=False, local_files_only=local_files_only,
                           revision=revision, dtype=dtype, device=device, attn_implementation=attn_implementation,
                           strict=strict, positions=positions, slot_axis=slot_axis, camera_attention=camera_attention,
                           pose_source=pose_source, vggt=vggt, processor=processor)


def _read_config(data: dict, where: str) -> tuple[VLM2ModelConfig, Any]:
    """(VLM2ModelConfig, qwen config) of a VLM² ``config.json`` (refuses a plain Spatial-MLLM's)."""
    data, vlm2 = split_hf_config(data, source=where)
    base, qwen_config, _ = read_hf_config(data, source=where)
    return VLM2ModelConfig.from_base(base, VLM2Config.from_dict(vlm2)), qwen_config


def save_pretrained(model: VLM2, directory: str | Path, **kwargs: Any) -> Path:
    """Write ``directory`` as :func:`posevlm.models.spatial_mllm.save_pretrained` does (same keyword arguments),
    with the stage's ``vlm2.*`` tensors, ``model_type`` ``spatial-mllm-vlm2`` and the VLM2Config in
    ``config.json``; :func:`from_pretrained` of the directory rebuilds the same model."""
    from posevlm.atomic import atomic_write_text

    if not isinstance(model, VLM2):
        raise ConfigError(f"save_pretrained takes a VLM2 model; got {type(model).__name__}", field="model")
    directory = save_spatial_mllm(model, directory, **kwargs)
    path = Path(directory) / "config.json"
    data = json.loads(path.read_text())
    data["architectures"] = [VLM2_ARCHITECTURE]
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return Path(directory)
