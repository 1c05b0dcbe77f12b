"""Per-sample VSI-Bench metrics: exact-match accuracy (MCA) and Mean Relative Accuracy (NA).

The official numerics (EvolvingLMMs-Lab/lmms-eval and vision-x-nyu/thinking-in-space,
``lmms_eval/tasks/vsibench/utils.py``) are reproduced bit for bit (spec eval.md §2.1):

    r = |ŷ − y| / y                         float64, Python/NumPy IEEE arithmetic
    MRA = mean(r <= 1 − np.linspace(0.5, 0.95, 10))

so a relative error of exactly 0.2 scores 0.6 and exactly 0.45 scores 0.1 (``1 − 0.8`` and
``1 − 0.55`` round below the decimal value). ``mra_legacy`` reproduces the researcher's fork
(float32, ``rel = |ŷ − y| / (|y| + 1e-8)``, thresholds ``torch.arange(0.5, 0.975, 0.05)``, strict
``<``) for comparing with old runs only; it is never a headline number.

Every MRA is also available as integer *hits* (thresholds passed, 0..10), so sums are exact.

Invalid inputs (documented rule, the same for both variants):

* prediction ``None`` (unparseable) → 0, as official (its ``TypeError`` → worst case 0);
* prediction NaN/±inf → 0, which is what the formula gives anyway;
* ground truth ``None``, NaN, ±inf, ``y == 0`` or ``y < 0`` → 0 (see ``ground_truth_is_valid``).
  For NaN/inf this equals the official result. For ``y == 0`` official raises
  ``ZeroDivisionError`` and for ``y < 0`` it returns 1.0 for *every* prediction (``r < 0``); both
  are undefined, VSI-Bench contains neither (all GTs are > 0, spec §1.2), and callers that care
  flag them with ``ground_truth_is_valid`` (``score_record`` does: ``invalid_ground_truth``).

Shapes: ``(N,)`` = one value per sample; scalars are accepted where arrays are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from posevlm.errors import ConfigError, ShapeError
from posevlm.registry import Registry

__all__ = [
    "MCA_QUESTION_TYPES",
    "NA_QUESTION_TYPES",
    "QUESTION_KINDS",
    "POSE_QUESTION_TYPES",
    "MRA_THRESHOLDS",
    "MRA_LEGACY_THRESHOLDS",
    "question_kind",
    "accuracy",
    "accuracy_array",
    "ground_truth_is_valid",
    "mra",
    "mra_hits",
    "mra_array",
    "mra_legacy",
    "mra_legacy_hits",
    "mra_legacy_array",
    "MetricSpec",
    "metrics",
]

Kind = Literal["MCA", "NA"]

#: Multiple-choice question types (scored by accuracy), in the official file's order.
MCA_QUESTION_TYPES: tuple[str, ...] = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
#: Numerical-answer question types (scored by MRA), in the official file's order.
NA_QUESTION_TYPES: tuple[str, ...] = (
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
)
#: question_type -> "MCA" | "NA" for the ten VSI-Bench question types.
QUESTION_KINDS: dict[str, Kind] = {
    **{q: "MCA" for q in MCA_QUESTION_TYPES},
    **{q: "NA" for q in NA_QUESTION_TYPES},
}

#: posevlm's own multiple-choice question types beyond VSI-Bench's ten: the pose-dependent questions about views
#: shown in a shuffled order (``eval/benchmarks/pose_tasks.py``). Prompted and parsed like VSI-Bench's
#: multiple-choice questions; scored and aggregated by their own task format (``pose_views``), never mixed into the
#: VSI-Bench aggregate (which refuses them).
POSE_QUESTION_TYPES: tuple[str, ...] = ("pose_view_facing", "pose_rel_direction", "pose_view_overlap")
_ALL_KINDS: dict[str, Kind] = {**QUESTION_KINDS, **{q: "MCA" for q in POSE_QUESTION_TYPES}}

#: Official thresholds θ: ``np.linspace(0.5, 0.95, 10)`` (float64; the entry for 0.9 is 0.8999999999999999).
MRA_THRESHOLDS: NDArray[np.float64] = np.linspace(0.5, 0.95, 10)
MRA_THRESHOLDS.setflags(write=False)
_MRA_TOLERANCES = 1.0 - MRA_THRESHOLDS  # what r is compared against, float64
#: Fork thresholds: ``torch.arange(0.5, 0.975, 0.05, dtype=float32)`` == float32(0.5 + 0.05 i), i < 10.
MRA_LEGACY_THRESHOLDS: NDArray[np.float32] = (0.5 + 0.05 * np.arange(10)).astype(np.float32)
MRA_LEGACY_THRESHOLDS.setflags(write=False)
_MRA_LEGACY_TOLERANCES = np.float32(1.0) - MRA_LEGACY_THRESHOLDS  # exact in float32 (Sterbenz)
_LEGACY_EPS = np.float32(1e-8)


def question_kind(question_type: str) -> Kind:
    """``"MCA"`` or ``"NA"`` for a VSI-Bench question type (or one of ``POSE_QUESTION_TYPES``, multiple choice).

    Raises:
        ConfigError: unknown question type (lists the valid ones).
    """
    try:
        return _ALL_KINDS[question_type]
    except (KeyError, TypeError):
        raise ConfigError(
            f"question_type {question_type!r} is not a VSI-Bench question type. "
            f"Expected one of: {', '.join(_ALL_KINDS)}",
            field="question_type",
            value=question_type,
        ) from None


# ----------------------------------------------------------------------------------------- accuracy
def accuracy(prediction: str | None, target: str) -> float:
    """Official multiple-choice score: 1.0 iff ``prediction.lower() == target.lower()`` (lmms-eval
    ``exact_match``), else 0.0. ``None`` (nothing parsed) scores 0.0."""
    if prediction is None:
        return 0.0
    return 1.0 if prediction.lower() == target.lower() else 0.0


def accuracy_array(predictions: Sequence[str | None], targets: Sequence[str]) -> NDArray[np.float64]:
    """Vectorised ``accuracy``: (N,) float64 of 0.0/1.0."""
    if len(predictions) != len(targets):
        raise ShapeError(
            f"predictions and targets must have the same length; got {len(predictions)} and {len(targets)}",
            name="predictions", shape=(len(predictions),),
        )
    scores = (accuracy(p, t) for p, t in zip(predictions, targets))
    return np.fromiter(scores, dtype=np.float64, count=len(targets))


# ---------------------------------------------------------------------------------------------- MRA
def ground_truth_is_valid(target: float | None) -> bool:
    """True iff MRA is defined for this ground truth: a finite number ``> 0``."""
    return target is not None and math.isfinite(target) and target > 0


def _as_float64(x: ArrayLike, name: str) -> NDArray[np.float64]:
    """float64 array; ``None`` (scalar or list entry) becomes NaN, i.e. 0 hits."""
    if x is None:
        return np.array(np.nan)
    if isinstance(x, (list, tuple)) and any(v is None for v in x):
        x = [np.nan if v is None else v for v in x]
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numbers (NaN or None for unparseable); got {x!r:.80}",
                          field=name, value=x) from None


def _as_float64_pair(prediction: ArrayLike, target: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    p, t = _as_float64(prediction, "prediction"), _as_float64(target, "target")
    try:
        return tuple(np.broadcast_arrays(p, t))  # type: ignore[return-value]
    except ValueError:
        raise ShapeError(
            f"prediction and target must broadcast; got shapes {p.shape} and {t.shape}",
            name="prediction", shape=p.shape,
        ) from None


def mra_hits(prediction: ArrayLike, target: ArrayLike) -> NDArray[np.int64]:
    """Official MRA as integer hits: how many of the 10 thresholds θ satisfy ``r <= 1 − θ``.

    Args:
        prediction: (N,) or scalar; NaN/``None`` = unparseable.
        target: (N,) or scalar ground truth.
    Returns:
        (N,) int64 in 0..10; ``hits / 10`` is bit-identical to the official float64 score.
    """
    p, t = _as_float64_pair(prediction, target)
    valid = np.isfinite(t) & (t > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.abs(p - t) / np.where(valid, t, 1.0)  # same IEEE ops as abs(pred - target) / target
    hits = (r[..., None] <= _MRA_TOLERANCES).sum(axis=-1)  # NaN/inf r pass no threshold
    return np.where(valid, hits, 0).astype(np.int64)


def mra_array(prediction: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """Official MRA, vectorised: (N,) float64 equal to lmms-eval ``mean_relative_accuracy`` element-wise."""
    return mra_hits(prediction, target) / 10.0


def mra(prediction: float | None, target: float | None) -> float:
    """Official Mean Relative Accuracy of one sample (scalar, float64, ``<=``; see module docstring).

    >>> mra(12, 10), mra(5, 4), mra(145, 100)
    (0.6, 0.6, 0.1)
    """
    if prediction is None or not ground_truth_is_valid(target):
        return 0.0
    p, t = float(prediction), float(target)  # official: to_float() on both sides
    r = abs(p - t) / t
    return float((r <= _MRA_TOLERANCES).mean())


def mra_legacy_hits(prediction: ArrayLike, target: ArrayLike) -> NDArray[np.int64]:
    """Fork MRA as integer hits: float32 ``|ŷ − y| / (|y| + 1e-8) < 1 − θ`` (strict), θ float32.

    Same guard as ``mra_hits`` for invalid ground truths (the fork itself would score y == 0 with
    its 1e-8 epsilon; VSI-Bench has no such item).
    """
    p64, t64 = _as_float64_pair(prediction, target)
    valid = np.isfinite(t64) & (t64 > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p, t = p64.astype(np.float32), t64.astype(np.float32)  # torch.as_tensor(x, dtype=float32)
        r = np.abs(p - t) / (np.abs(t) + _LEGACY_EPS)
    hits = (r[..., None] < _MRA_LEGACY_TOLERANCES).sum(axis=-1)
    return np.where(valid, hits, 0).astype(np.int64)


def mra_legacy_array(prediction: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """Fork MRA, vectorised: (N,) float64 holding the fork's float32 ``mean()`` (e.g. 0.6000000238418579)."""
    hits = mra_legacy_hits(prediction, target)
    return (hits.astype(np.float32) / np.float32(10)).astype(np.float64)


def mra_legacy(prediction: float | None, target: float | None) -> float:
    """Fork (legacy) MRA of one sample: float32, strict ``<``. For reproducing old numbers only.

    >>> mra_legacy(5, 4), mra(5, 4)
    (0.5, 0.6)
    """
    if prediction is None:
        return 0.0
    return float(mra_legacy_array(prediction, target)[()])


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class MetricSpec:
    """A per-sample metric with its metadata.

    Attributes:
        name: registry name.
        kind: ``"MCA"`` (multiple choice) or ``"NA"`` (numerical answer).
        higher_is_better: direction of improvement.
        fn: scalar ``(prediction, target) -> float``.
        fn_array: vectorised ``(predictions, targets) -> (N,) float64``.
        fn_hits: for MRA variants, vectorised integer hits ``-> (N,) int64`` (0..10); else None.
        result_key: suffix of the lmms-eval result key (``<question_type>_<result_key>``).
        description: one-line definition printed in reports.
    """

    name: str
    kind: Kind
    higher_is_better: bool
    fn: Callable[..., float]
    fn_array: Callable[..., NDArray[np.float64]]
    result_key: str
    description: str
    fn_hits: Callable[..., NDArray[np.int64]] | None = None


#: Per-sample VSI-Bench metrics by name: ``accuracy``, ``mra``, ``mra_legacy``.
metrics: Registry[MetricSpec] = Registry("metric")

for _spec in (
    MetricSpec("accuracy", "MCA", True, accuracy, accuracy_array, "accuracy",
               "1 if the parsed answer equals the ground-truth letter (case-insensitive), else 0 "
               "(lmms-eval exact_match)"),
    MetricSpec("mra", "NA", True, mra, mra_array, "MRA:.5:.95:.05",
               "Mean Relative Accuracy, official: mean over θ in linspace(0.5, 0.95, 10) of "
               "[|ŷ−y|/y <= 1−θ], float64", mra_hits),
    MetricSpec("mra_legacy", "NA", True, mra_legacy, mra_legacy_array, "MRA_legacy",
               "Fork MRA (legacy, not official): float32, |ŷ−y|/(|y|+1e-8) < 1−θ (strict), "
               "θ = arange(0.5, 0.975, 0.05)", mra_legacy_hits),
):
    metrics.register(_spec.name)(_spec)
del _spec
