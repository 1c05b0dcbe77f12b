"""Pose-aware frame selection: pure selectors over arrays, merge-aware pairing, manifests, and a
crash-safe runner (``posevlm sample``).

Selectors register in ``samplers`` when their module is imported (``uniform``, ``voxel_coverage``,
``pose_fps``, ``farness2d``); this package imports them lazily so ``import posevlm.sampling`` stays
light. Never imports transformers or a video decoder outside the runner's scene loading.
"""

from posevlm.sampling.config import ALLOWED_PARAMS, STRATEGIES, SamplingConfig
from posevlm.sampling.manifest import MANIFEST_NAME, frame_file_names, manifest_is_complete, read_manifest
from posevlm.sampling.pairing import PairedFrames, PairingConfig, anchors_needed, pair_frames
from posevlm.sampling.pool import PoolConfig, candidate_pool
from posevlm.sampling.selection import Selection, samplers

__all__ = [
    "Selection", "samplers", "SamplingConfig", "STRATEGIES", "ALLOWED_PARAMS", "PoolConfig", "candidate_pool",
    "PairingConfig", "PairedFrames", "pair_frames", "anchors_needed", "MANIFEST_NAME", "frame_file_names",
    "read_manifest", "manifest_is_complete", "run_sampling",
]  # fmt: skip


def __getattr__(name: str):
    if name == "run_sampling":
        from posevlm.sampling.runner import run_sampling

        return run_sampling
    raise AttributeError(f"module 'posevlm.sampling' has no attribute {name!r}")
