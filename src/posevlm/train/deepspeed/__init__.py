"""DeepSpeed for posevlm training: the shipped ZeRO configs and ZeRO-3-safe loading of external VGGT weights.

- :mod:`~posevlm.train.deepspeed.config`: ``zero2`` / ``zero3`` / ``zero3_offload`` (JSON files in this package,
  batch / accumulation / precision / clipping / bucket sizes ``"auto"`` for the HF Trainer to fill) and
  :func:`deepspeed_config` (a name or a path -> dict).
- :mod:`~posevlm.train.deepspeed.weights`: :func:`load_spatial_encoder_weights` (VGGT weights into
  ``model.spatial_encoder``; under ZeRO-3 inside ``deepspeed.zero.GatheredParameters``, loaded on rank 0).

DeepSpeed itself is imported only where it is used (``pip install posevlm[train]``; Linux).
"""

from posevlm.train.deepspeed.config import DEEPSPEED_CONFIGS, deepspeed_config, fill_hidden_size, hidden_size_of
from posevlm.train.deepspeed.weights import load_spatial_encoder_weights, zero3_enabled

__all__ = ["DEEPSPEED_CONFIGS", "deepspeed_config", "fill_hidden_size", "hidden_size_of", "load_spatial_encoder_weights",
           "zero3_enabled"]
