"""VLM² modules (torch only): 3D coordinate injection, viewpoint-aware geometry alignment, cross-attention
fusion and the dual memory of Algorithm 1, as one streaming stage (:class:`VLM2Stage`) configured by
:class:`VLM2Config`; point maps from depth + cameras or VGGT's point head, pooled to token grids.

- :mod:`~posevlm.memory.config`: :class:`VLM2Config` (every module switchable; saved with the checkpoint).
- :mod:`~posevlm.memory.injection`: :class:`CoordinateInjection` (``F + alpha * phi(C)``, gated per token).
- :mod:`~posevlm.memory.alignment`: :class:`ViewpointAlignment` (geometry tokens fused with view tokens).
- :mod:`~posevlm.memory.fusion`: :class:`CrossAttentionFusion` (visual queries, geometry keys / values).
- :mod:`~posevlm.memory.banks`: :class:`WorkingMemory` (FIFO), :class:`EpisodicMemory` (similarity replacement).
- :mod:`~posevlm.memory.dual`: :class:`DualMemory` (Algorithm 1) and its :class:`DualMemoryState`.
- :mod:`~posevlm.memory.stage`: :class:`VLM2Stage`, :class:`VideoSteps`, :class:`VLM2State` (streaming).
- :mod:`~posevlm.memory.points`: point maps in the first frame's world frame, pooled to token grids.
- :mod:`~posevlm.memory.reference`: Algorithm 1 with Python lists (the test oracle).
"""

from posevlm.memory.alignment import ViewpointAlignment
from posevlm.memory.banks import EpisodicMemory, MemoryBank, WorkingMemory, fifo_slot, most_similar, \
    replacement_slot, write_slot
from posevlm.memory.config import VLM2Config
from posevlm.memory.dual import DualMemory, DualMemoryState
from posevlm.memory.fusion import CrossAttentionFusion
from posevlm.memory.injection import CoordinateInjection, sinusoidal_encoding
from posevlm.memory.points import (
    first_step_scale,
    point_maps_from_depth,
    points_in_first_frame,
    pool_point_maps,
    pose_encoding_in_first_frame,
)
from posevlm.memory.stage import VideoSteps, VLM2Stage, VLM2State

__all__ = [
    "VLM2Config", "CoordinateInjection", "sinusoidal_encoding", "ViewpointAlignment", "CrossAttentionFusion",
    "MemoryBank", "WorkingMemory", "EpisodicMemory", "fifo_slot", "replacement_slot", "most_similar", "write_slot",
    "DualMemory", "DualMemoryState", "VideoSteps", "VLM2State", "VLM2Stage", "point_maps_from_depth",
    "points_in_first_frame", "pool_point_maps", "pose_encoding_in_first_frame", "first_step_scale",
]
