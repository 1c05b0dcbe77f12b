"""Benchmarks: question sets with the VSI-Bench record schema, behind the ``benchmarks`` registry.

A :class:`BenchmarkSpec` loads the records of one benchmark config (``EvalConfig.benchmark``); ``posevlm eval
--benchmark NAME``, config validation and ``posevlm list benchmarks`` go through the registry, and other
packages add benchmarks through the entry-point group ``posevlm.benchmarks``.

``vsibench``: VSI-Bench from a local copy or the hub (``vsibench.py``).

``sqa3d`` / ``scanqa``: SQA3D and ScanQA free-text QA on ScanNet scans from their released annotation files
(``sqa3d.py``, ``scanqa.py``; task formats ``sqa3d`` / ``scanqa`` in ``posevlm.eval.open_qa``).

``synthetic_vsi``: VSI-Bench-style questions with exact ground truth from synthetic scenes
(``posevlm synth``), all ten VSI-Bench question types. Route planning (``routes.py``) follows VSI-Bench's
wording and options; its routes are straight walkable legs between object centres checked exactly
against the floor and the furniture, so it tests the same skill (turns along a described walk) on
geometry the scene fixes, not on human-written paths.

``synthetic_pose``: questions whose answers depend on the cameras of views shown in a shuffled order (which view
faces X, left / right of Y seen from that view, which two views overlap most; ``pose_tasks.py``, task format
``pose_views``): frame index is uninformative by construction.
``synthetic_layout`` / ``synthetic_point_qa``: point-cloud tasks from synthetic scans (``point_tasks.py``): the
layout script of a scan's exact walls and boxes (task format ``layout``) and the view-independent synthetic VSI
questions asked over its point cloud (format ``vsibench``); inputs ``posevlm eval --frames point_cloud``.
"""

from posevlm.eval.benchmarks.base import BenchmarkSpec
from posevlm.registry import Registry
from posevlm.eval.benchmarks.synthetic_vsi import (
    BENCHMARK_NAME,
    BENCHMARK_VERSION,
    DIRECTION_CHOICES,
    QUESTION_TYPES,
    VISIBLE_MIN_PIXELS,
    box_distance,
    direction_label,
    format_number,
    generate_benchmark,
    generate_questions,
    question_id,
    questions_from_ground_truth,
    read_benchmark_jsonl,
    relative_direction_deg,
    validate_record,
    write_benchmark_jsonl,
)

__all__ = [
    "BenchmarkSpec", "benchmarks", "BENCHMARK_NAME", "BENCHMARK_VERSION", "DIRECTION_CHOICES", "QUESTION_TYPES", "VISIBLE_MIN_PIXELS",
    "box_distance", "direction_label", "format_number", "generate_benchmark", "generate_questions", "question_id",
    "questions_from_ground_truth", "read_benchmark_jsonl", "relative_direction_deg", "validate_record",
    "write_benchmark_jsonl",
]  # fmt: skip

#: Benchmarks by name (``BenchmarkSpec``); built-ins load their module on first use.
benchmarks: Registry[BenchmarkSpec] = Registry("benchmark", "benchmarks")
benchmarks.register_lazy("vsibench", "posevlm.eval.benchmarks.vsibench:BENCHMARK")
benchmarks.register_lazy("synthetic_vsi", "posevlm.eval.benchmarks.synthetic_vsi:BENCHMARK")
benchmarks.register_lazy("sqa3d", "posevlm.eval.benchmarks.sqa3d:BENCHMARK")
benchmarks.register_lazy("scanqa", "posevlm.eval.benchmarks.scanqa:BENCHMARK")
benchmarks.register_lazy("synthetic_pose", "posevlm.eval.benchmarks.pose_tasks:BENCHMARK")
benchmarks.register_lazy("synthetic_layout", "posevlm.eval.benchmarks.point_tasks:LAYOUT_BENCHMARK")
benchmarks.register_lazy("synthetic_point_qa", "posevlm.eval.benchmarks.point_tasks:POINT_QA_BENCHMARK")
