"""Answering backends behind one registry.

A backend answers batches of ``(record, prompt, FrameSpec)`` (the :class:`Backend` protocol); a
:class:`BackendSpec` says how to build one from the run's ``model`` config, how to read its options from the
command line, and which configs it refuses. ``posevlm eval --backend NAME``, ``EvalConfig`` validation and
``posevlm list backends`` all go through ``backends``. Built in: ``hf`` (Qwen2.5-VL / Qwen3-VL through
transformers, pose-aware positions, camera attention), ``oracle`` (perfect perception of the given frames:
the upper bound a frame selection allows; needs synthetic scenes or any scene with depth, instance masks,
cameras and an instance-to-category list in ``metadata.objects``), ``points`` (a ``PointCloudLM`` checkpoint
answering from each scene's point cloud, ``--frames point_cloud``) and ``dummy`` (a constant answer, for smoke
tests and overhead). Other packages add backends through the entry-point group ``posevlm.backends``.
"""

from posevlm.eval.backends.base import Backend, BackendSpec
from posevlm.eval.backends.oracle import (
    FALLBACK_LETTER,
    FALLBACK_NUMBER,
    OracleConfig,
    answer_oracle,
    answer_oracle_many,
    closest_distance,
    floor_area_from_points,
    points_extent_cm,
)
from posevlm.registry import Registry

__all__ = [
    "Backend", "BackendSpec", "backends", "FALLBACK_LETTER", "FALLBACK_NUMBER", "OracleConfig", "answer_oracle",
    "answer_oracle_many", "closest_distance", "floor_area_from_points", "points_extent_cm",
]  # fmt: skip


#: Backends by name (``BackendSpec``); built-ins load their module on first use.
backends: Registry[BackendSpec] = Registry("backend", "backends")
for _name in ("hf", "oracle", "dummy", "points"):
    backends.register_lazy(_name, f"posevlm.eval.backends.{_name}:BACKEND")
