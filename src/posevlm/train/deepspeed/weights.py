"""ZeRO-3-safe loading of external VGGT weights into a Spatial-MLLM's ``spatial_encoder``.

Under ZeRO-3 (``transformers.integrations.is_deepspeed_zero3_enabled()``, i.e. ``TrainingArguments(deepspeed=...)``
with stage 3 alive) a model built inside ``deepspeed.zero.Init`` (``from_pretrained`` does that) holds only a shard
of every parameter on each rank (``param.shape == (0,)``, the full shape in ``param.ds_shape``): a plain
``load_state_dict`` would see empty tensors. :func:`load_spatial_encoder_weights` then

1. checks the checkpoint's keys and shapes against the parameters' full shapes on **every** rank (a bad
   checkpoint raises everywhere, before any collective, so no rank is left waiting);
2. gathers the encoder's parameters (``deepspeed.zero.GatheredParameters(params, modifier_rank=0)``), loads the
   tensors on rank 0 only, and on leaving the context DeepSpeed broadcasts rank 0's values and re-shards them;
3. broadcasts the encoder's buffers from rank 0 (ZeRO does not shard buffers).

Otherwise -- no ZeRO-3, or ZeRO-3 with an encoder that is not sharded yet (built outside ``zero.Init``;
``deepspeed.initialize`` shards it later) -- every rank loads the file itself (the same bytes, so the ranks agree).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from posevlm.errors import ConfigError
from posevlm.spatial.weights import CheckpointError, KeyReport, checkpoint_shapes, compare_keys, load_weights, \
    resolve_checkpoint

__all__ = ["zero3_enabled", "load_spatial_encoder_weights"]


def zero3_enabled() -> bool:
    """Whether a ZeRO-3 DeepSpeed config is active (the transformers flag set by ``TrainingArguments``)."""
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:
        return False
    return bool(is_deepspeed_zero3_enabled())


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _broadcast_buffers(module: nn.Module) -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


def load_spatial_encoder_weights(model: nn.Module, weights: str | Path, *, strict: bool = True,
                                 revision: str | None = None, offline: bool | None = None) -> KeyReport:
    """Load VGGT ``weights`` (a ``.safetensors`` file, a directory or a hub id such as ``facebook/VGGT-1B``; the
    released key layout) into ``model.spatial_encoder``, ZeRO-3-safe (module docstring).

    Args:
        model: a model with a ``spatial_encoder`` (a :class:`posevlm.spatial.VGGT`, e.g. a Spatial-MLLM).
        strict: any missing, unexpected or mis-shaped key raises CheckpointError (on every rank); keys of heads the
            encoder does not build (``checkpoint_ignore``) are skipped.
    Returns:
        the :class:`~posevlm.spatial.weights.KeyReport` (under sharded ZeRO-3: rank 0's after loading, the
        pre-check's on the other ranks).
    Raises:
        ConfigError: the model has no spatial encoder, or only part of it is sharded.
        CheckpointError: see ``strict``.
    """
    encoder = getattr(model, "spatial_encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"this {type(model).__name__} has no spatial_encoder to load VGGT weights into",
                          field="spatial_encoder")
    ignore = tuple(getattr(encoder, "checkpoint_ignore", ()))
    files = list(resolve_checkpoint(weights, revision=revision, offline=offline))
    params = list(encoder.parameters())
    sharded = [p for p in params if hasattr(p, "ds_id")]
    if not (zero3_enabled() and sharded):
        return load_weights(encoder, files, ignore=ignore, strict=strict)
    if len(sharded) != len(params):
        raise ConfigError(f"{len(sharded)} of the spatial encoder's {len(params)} parameters are ZeRO-3 shards: build "
                          "the whole model inside deepspeed.zero.Init (from_pretrained does) or none of it",
                          field="spatial_encoder", value=len(sharded))
    import deepspeed

    full = {k: tuple(getattr(v, "ds_shape", v.shape)) for k, v in encoder.state_dict(keep_vars=True).items()}
    report = compare_keys(full, checkpoint_shapes(files), ignore=ignore, source=str(weights))
    if strict and not report.ok:
        raise CheckpointError(report.summary(), path=str(weights), report=report)
    with deepspeed.zero.GatheredParameters(sharded, modifier_rank=0):
        if _rank() == 0:
            report = load_weights(encoder, files, ignore=ignore, strict=strict)
    _broadcast_buffers(encoder)
    return report
