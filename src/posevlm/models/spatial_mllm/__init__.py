"""Spatial-MLLM: a stock Qwen2.5-VL / Qwen3-VL composed with a spatial encoder (VGGT) and a connector.

- :mod:`~posevlm.models.spatial_mllm.connectors`: the merge of spatial tokens into Qwen's merge-window layout and
  the ``connectors`` registry (``add``, ...).
- :mod:`~posevlm.models.spatial_mllm.config`: :class:`SpatialMLLMConfig` and its place in ``config.json``.
- :mod:`~posevlm.models.spatial_mllm.model`: :class:`SpatialMLLM` (stock Qwen + VGGT + connector; forward, generate).
- :mod:`~posevlm.models.spatial_mllm.processing`: ``prepare_inputs`` (``pixel_values_videos`` and the unnormalised
  ``video_tchw`` from the same resized frames, training pixel budget) and the prompt expansion for connectors that
  add tokens (``expand_video_pads``).
- :mod:`~posevlm.models.spatial_mllm.inference`: ``answer(model_or_path, frames_or_video, question, ...)``.
- :mod:`~posevlm.models.spatial_mllm.loading`: ``from_pretrained`` (released / transformers-5 layouts), ``compose``
  (from bases), ``save_pretrained``.
"""

from posevlm.models.spatial_mllm.connectors import (
    MERGE_ORDERS,
    AddConnector,
    ConnectorConfig,
    RMSNorm,
    build_connector,
    connectors,
    merge_spatial_tokens,
    merge_spatial_tokens_reference,
)

from posevlm.models.spatial_mllm.config import SpatialMLLMConfig
from posevlm.models.spatial_mllm.model import SpatialInputs, SpatialMLLM
from posevlm.models.spatial_mllm.loading import compose, from_pretrained, save_pretrained
from posevlm.models.spatial_mllm.processing import (
    TRAINING_PIXELS,
    expand_video_pads,
    prepare_inputs,
    spatial_resize_hw,
)
from posevlm.models.spatial_mllm.inference import answer

__all__ = ["SpatialMLLM", "SpatialMLLMConfig", "SpatialInputs", "from_pretrained", "compose", "save_pretrained",
           "ConnectorConfig", "MERGE_ORDERS", "merge_spatial_tokens", "merge_spatial_tokens_reference", "RMSNorm",
           "AddConnector", "connectors", "build_connector", "expand_video_pads", "prepare_inputs", "spatial_resize_hw",
           "TRAINING_PIXELS", "answer"]
