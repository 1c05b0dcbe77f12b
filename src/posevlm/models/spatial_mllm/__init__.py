"""Spatial-MLLM: a stock Qwen2.5-VL / Qwen3-VL composed with a spatial encoder (VGGT) and a connector.

- :mod:`~posevlm.models.spatial_mllm.connectors`: the merge of spatial tokens into Qwen's merge-window layout and
  the ``connectors`` registry (``add``, ...).
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

__all__ = ["ConnectorConfig", "MERGE_ORDERS", "merge_spatial_tokens", "merge_spatial_tokens_reference", "RMSNorm",
           "AddConnector", "connectors", "build_connector"]
