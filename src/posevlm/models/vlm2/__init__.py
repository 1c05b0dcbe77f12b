"""VLM²: the Spatial-MLLM composition (stock Qwen2.5-VL + VGGT + connector or none) followed by the VLM² stage
(:mod:`posevlm.memory`: 3D coordinate injection, viewpoint alignment, cross-attention fusion, dual memory).

- :mod:`~posevlm.models.vlm2.config`: :class:`VLM2ModelConfig` and its place in ``config.json``.
- :mod:`~posevlm.models.vlm2.model`: :class:`VLM2` (forward, cached generate, memory state per video).
- :mod:`~posevlm.models.vlm2.loading`: ``compose`` (bases), ``from_spatial_mllm`` (a Spatial-MLLM + a fresh stage),
  ``from_pretrained``, ``save_pretrained``.
"""

from posevlm.models.vlm2.config import VLM2_MODEL_TYPE, VLM2ModelConfig
from posevlm.models.vlm2.model import VLM2, VLM2_KWARGS, VLM2Inputs
from posevlm.models.vlm2.loading import compose, from_pretrained, from_spatial_mllm, save_pretrained

__all__ = ["VLM2", "VLM2ModelConfig", "VLM2Inputs", "VLM2_KWARGS", "VLM2_MODEL_TYPE", "compose", "from_spatial_mllm",
           "from_pretrained", "save_pretrained"]
