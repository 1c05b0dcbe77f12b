"""Pose-aware frame selection: pure selectors over arrays, merge-aware pairing, manifests, and a
crash-safe runner (``posevlm sample``).

Selectors are ``SamplerSpec`` entries of the ``samplers`` registry (``uniform``, ``voxel_coverage``,
``pose_fps``, ``farness2d`` built in; more through the entry-point group ``posevlm.samplers``); their
modules import on first use so ``import posevlm.sampling`` stays light. Never imports transformers or a video decoder outside the runner's scene loading.
"""

from posevlm.sampling.config import SamplingConfig
from posevlm.sampling.manifest import MANIFEST_NAME, frame_file_names, manifest_is_complete, read_manifest
from posevlm.sampling.pairing import PairedFrames, PairingConfig, anchors_needed, pair_frames
from posevlm.sampling.pool import PoolConfig, candidate_pool
from posevlm.sampling.selection import PoolView, SamplerSpec, Selection, samplers

__all__ = [
    "Selection", "samplers", "SamplerSpec", "PoolView", "SamplingConfig", "PoolConfig", "candidate_pool",
    "PairingConfig", "PairedFrames", "pair_frames", "anchors_needed", "MANIFEST_NAME", "frame_file_names",
    "read_manifest", "manifest_is_complete", "run_sampling",
]  # fmt: skip


def __getattr__(name: str):
    if name == "run_sampling":
        from posevlm.sampling.runner import run_sampling

        return run_sampling
    raise AttributeError(f"module 'posevlm.sampling' has no attribute {name!r}")
