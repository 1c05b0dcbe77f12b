"""Benchmarks: question sets with the VSI-Bench record schema.

``synthetic_vsi``: VSI-Bench-style questions with exact ground truth from synthetic scenes
(``posevlm synth``), nine of the ten VSI-Bench question types. ``route_planning`` is left out on
purpose: VSI-Bench routes are human-written walkable paths ("go forward until the tv, [turn], go
forward until the sofa") whose meaning depends on obstacles and on where "until X" stops; a purely
geometric version would be a chained relative-direction question with the same name but a
different skill, and scores would not be comparable with the real task.
"""

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
    "BENCHMARK_NAME", "BENCHMARK_VERSION", "DIRECTION_CHOICES", "QUESTION_TYPES", "VISIBLE_MIN_PIXELS",
    "box_distance", "direction_label", "format_number", "generate_benchmark", "generate_questions", "question_id",
    "questions_from_ground_truth", "read_benchmark_jsonl", "relative_direction_deg", "validate_record",
    "write_benchmark_jsonl",
]  # fmt: skip
