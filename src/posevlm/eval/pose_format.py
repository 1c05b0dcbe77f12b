"""The ``pose_views`` task format: multiple-choice questions about views shown in a shuffled order
(``eval/benchmarks/pose_tasks.py``, benchmark ``synthetic_pose``), where frame index carries no information.

Prompts and parsing are VSI-Bench's for multiple-choice questions (the ``vsibench`` prompt presets and the
``official`` / ``lenient`` / ``legacy`` parsers: the same text is asked and read the same way); the per-sample
score is accuracy. Columns (fractions; ``posevlm report`` prints them x100):

=====================  =========================================================================================
column                 definition
=====================  =========================================================================================
``pose_macro``         mean over the present pose question types of each type's accuracy (the headline)
``pose_micro``         accuracy over all samples
``pose_view_facing``   accuracy on "which frame looks most directly at X" (the answer follows the camera)
``pose_rel_direction`` accuracy on left / right of Y seen from the view facing X
``pose_view_overlap``  accuracy on "which two frames overlap most"
=====================  =========================================================================================

Chance level differs per type (2 options for ``pose_rel_direction``, up to 4 for the others), so compare variants
on the same questions (``posevlm compare``), not with a fixed chance line.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.eval.metrics import POSE_QUESTION_TYPES
from posevlm.eval.parsing import score_record
from posevlm.eval.prompts import prompts
from posevlm.eval.task_format import TaskFormat

__all__ = ["FORMAT", "pose_columns", "aggregate_pose"]

_HEADERS = {"pose_macro": "Pose", "pose_micro": "Pose (micro)", "pose_view_facing": "Facing",
            "pose_rel_direction": "Dir@view", "pose_view_overlap": "Overlap"}
_DEFINITIONS = {
    "pose_macro": "mean over the present pose question types of each type's accuracy",
    "pose_micro": "accuracy over all pose samples",
    **{q: f"accuracy on {q}" for q in POSE_QUESTION_TYPES},
}
COLUMNS: tuple[str, ...] = ("pose_macro", "pose_micro", *POSE_QUESTION_TYPES)


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


def pose_columns(question_types: Sequence[str], scores: np.ndarray) -> dict[str, float | None]:
    """Every column of the module docstring from (N,) question types and (N,) per-sample accuracies; absent
    types give None (and do not enter the macro)."""
    types, s = np.asarray(question_types, dtype=object), np.asarray(scores, dtype=np.float64)
    per_type = {q: _mean(s[types == q]) for q in POSE_QUESTION_TYPES}
    present = [v for v in per_type.values() if v is not None]
    return {"pose_macro": float(np.mean(present)) if present else None, "pose_micro": _mean(s), **per_type}


def aggregate_pose(records: Sequence[Mapping[str, Any]], mode: str, *, by_dataset: bool = True) -> dict[str, Any]:
    """Aggregate run records (``scores`` per mode) under one parsing mode: ``columns``, ``per_question_type``,
    ``per_dataset``, ``definitions``, ``n``, ``warnings`` (the shape every task format returns). Samples are taken
    in id order, so the result does not depend on record order."""
    recs = sorted(records, key=lambda r: r["id"])
    types = [r["question_type"] for r in recs]
    s = np.array([float(r["scores"][mode]["score"]) for r in recs], dtype=np.float64)
    t = np.asarray(types, dtype=object)
    per_type = {q: {"score": _mean(s[t == q]), "count": int(np.sum(t == q))} for q in sorted(set(types))}
    per_dataset = {}
    if by_dataset:
        for d in sorted({r["dataset"] for r in recs}):
            sub = aggregate_pose([r for r in recs if r["dataset"] == d], mode, by_dataset=False)
            per_dataset[d] = {k: sub[k] for k in ("columns", "per_question_type", "n", "warnings")}
    return {"columns": pose_columns(types, s), "per_question_type": per_type, "per_dataset": per_dataset,
            "definitions": dict(_DEFINITIONS), "n": len(recs), "warnings": []}


def _column_types(column: str) -> tuple[str, ...]:
    return (column,) if column in POSE_QUESTION_TYPES else POSE_QUESTION_TYPES


def _column_weights(type_counts: Mapping[str, int]) -> dict[str, np.ndarray | None]:
    """column -> w over ``sorted(type_counts)`` with column == w @ (per-type means); None if absent."""
    qs = sorted(type_counts)
    n = np.array([type_counts[q] for q in qs], dtype=np.float64)
    present = np.array([q in POSE_QUESTION_TYPES and type_counts[q] > 0 for q in qs])
    out: dict[str, np.ndarray | None] = {
        "pose_macro": present / present.sum() if present.any() else None,
        "pose_micro": n / n.sum() if qs and n.sum() > 0 else None,
    }
    for q in POSE_QUESTION_TYPES:
        out[q] = (np.array(qs, dtype=object) == q).astype(np.float64) if q in qs else None
    return out


def _column_means(question_types: Sequence[str], scores: np.ndarray) -> tuple[dict, dict]:
    columns = pose_columns(question_types, scores)
    return columns, {c: _DEFINITIONS[c] for c in columns}


FORMAT = TaskFormat(
    name="pose_views", title="Pose views", question_types=POSE_QUESTION_TYPES, prompts=prompts,
    score_record=score_record, aggregate=aggregate_pose, table_columns=COLUMNS, column_headers=_HEADERS,
    column_types=_column_types, compare_columns=COLUMNS, accuracy_columns=("pose_micro", *POSE_QUESTION_TYPES),
    column_weights=_column_weights, column_means=_column_means, noted_columns=("pose_macro",),
    description="pose questions over views shown shuffled: option letters, accuracy per type, macro",
)
