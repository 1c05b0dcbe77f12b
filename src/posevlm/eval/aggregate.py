"""VSI-Bench aggregation: every average in circulation, each under an explicit, defined name.

Notation: ``s_q`` = mean per-sample score of question_type ``q``, ``n_q`` its count (spec eval.md
§2.3). Scores are fractions in [0, 1] (lmms-eval today; thinking-in-space printed ×100).

Three families, never a bare "overall" (``average=`` names):

* ``micro``            — mean over samples (MCA samples → acc, NA → mra, all → all). Fork
  ``acc/mra/all.micro``; the fork LaTeX "Overall" and the Spatial-MLLM paper "Avg" are ``micro_all``.
* ``macro_official``   — mean over the 8 *tasks*, RelDir = unweighted mean of easy/medium/hard.
  ``macro_official_all`` is the official VSI-Bench overall (lmms-eval ``vsibench_aggregate_results``)
  and equals upstream Spatial-MLLM ``all.macro`` after "fix issue #23".
* ``macro_legacy10``   — mean over the up-to-10 ``question_type`` values, the rel-direction splits
  counted separately (the fork's ``acc/mra/all.macro``). For continuity only.

Absent tasks are ``None`` (rendered "-"), e.g. ApprOrd on ARKitScenes; macros are then over the
present tasks, as lmms-eval's ``sum(values) / len(values)`` does, and a warning says so.

Missing rel-direction splits. lmms-eval pops all three split keys unconditionally, so any subset
without all three *crashes* (``KeyError``, even when no rel-direction item is present at all);
thinking-in-space snapshots either guard on the ``easy`` key only or fill missing splits with 0
and still divide by 3. We never crash: RelDir is the unweighted mean of the *present* splits (the
upstream post-fix rule), absent when none is present, and a warning names the missing splits —
with all three present this is exactly the official value.

Numerics, bit for bit the official ones. lmms-eval takes each per-type mean with pandas'
``Series.mean`` over the samples in document order; for float64 that is ``nanops.nanmean``, i.e.
numpy's ``add.reduce`` (pairwise summation: 8 running partial sums per block of <= 128 values,
blocks combined by halving) divided by the count; pandas never uses bottleneck for means. Every
mean over samples here is that same numpy reduction, over the samples in *id order* when ``ids``
are given (the order of the HF split, i.e. lmms-eval's document order for one process; run records
are sorted by id), else in the order given. A correctly rounded sum (``math.fsum``) would differ
from the official numbers in the last ulp (0.1, 0.2, 0.3 average to 0.19999999999999998 instead of
the official 0.20000000000000004). RelDir and the overall combine task scores in lmms-eval's order
(question types sorted by name, RelDir last; left-to-right Python sum).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from posevlm.errors import ConfigError, ShapeError
from posevlm.eval.metrics import MCA_QUESTION_TYPES, NA_QUESTION_TYPES, question_kind

__all__ = [
    "AVERAGES",
    "TASKS",
    "REL_DIRECTION_TYPES",
    "VSIBENCH_FULL_COUNTS",
    "QuestionTypeScore",
    "VsiBenchAggregate",
    "vsibench_average",
    "aggregate_vsibench",
    "aggregate_scored",
]

Average = Literal["micro", "macro_official", "macro_legacy10"]
Group = Literal["acc", "mra", "all"]
AVERAGES: tuple[str, ...] = ("micro", "macro_official", "macro_legacy10")
_GROUPS: tuple[str, ...] = ("acc", "mra", "all")

REL_DIRECTION_TYPES: tuple[str, ...] = MCA_QUESTION_TYPES[:3]
#: Paper column -> question types, in the paper's column order (ObjCnt … ApprOrd).
TASKS: dict[str, tuple[str, ...]] = {
    "ObjCnt": ("object_counting",),
    "AbsDist": ("object_abs_distance",),
    "ObjSz": ("object_size_estimation",),
    "RoomSz": ("room_size_estimation",),
    "RelDist": ("object_rel_distance",),
    "RelDir": REL_DIRECTION_TYPES,
    "RoutePl": ("route_planning",),
    "ApprOrd": ("obj_appearance_order",),
}
_NA_TASKS = ("ObjCnt", "AbsDist", "ObjSz", "RoomSz")
_MCA_TASKS = ("RelDist", "RelDir", "RoutePl", "ApprOrd")
#: Integer code of each question type: its rank in name order (lmms-eval's groupby order).
_TYPE_CODE: dict[str, int] = {q: i for i, q in enumerate(sorted(MCA_QUESTION_TYPES + NA_QUESTION_TYPES))}
_TYPE_NAMES: tuple[str, ...] = tuple(_TYPE_CODE)
_IS_MCA_CODE = np.array([q in MCA_QUESTION_TYPES for q in _TYPE_NAMES])

#: (question_type, dataset) -> count in the 5,130-item ``full`` test split (spec §1.2).
VSIBENCH_FULL_COUNTS: dict[tuple[str, str], int] = {
    (q, d): n
    for q, row in {
        "object_counting": (166, 223, 176), "object_abs_distance": (277, 347, 210),
        "object_size_estimation": (363, 357, 233), "room_size_estimation": (150, 88, 50),
        "object_rel_distance": (167, 259, 284), "object_rel_direction_easy": (97, 63, 57),
        "object_rel_direction_medium": (135, 147, 96), "object_rel_direction_hard": (142, 133, 98),
        "route_planning": (104, 64, 26), "obj_appearance_order": (0, 390, 228),
    }.items()
    for d, n in zip(("arkitscenes", "scannet", "scannetpp"), row)
}

_DEFINITIONS: dict[str, str] = {
    "macro_official_all": "Official VSI-Bench overall (lmms-eval vsibench_aggregate_results): unweighted "
    "mean of the present task scores ObjCnt…ApprOrd (up to 8), RelDir = unweighted mean of its "
    "easy/medium/hard splits",
    "macro_official_acc": "Unweighted mean of the present MCA task scores RelDist, RelDir (unweighted over "
    "splits), RoutePl, ApprOrd (up to 4; upstream acc.macro after 'fix issue #23')",
    "macro_official_mra": "Unweighted mean of the present NA task scores ObjCnt, AbsDist, ObjSz, RoomSz "
    "(up to 4)",
    "micro_all": "Mean per-sample score over all samples, MCA and NA together (fork all.micro; fork LaTeX "
    "'Overall'; Spatial-MLLM paper 'Avg')",
    "micro_acc": "Mean per-sample accuracy over all MCA samples (fork acc.micro)",
    "micro_mra": "Mean per-sample MRA over all NA samples (fork mra.micro)",
    "macro_legacy10_all": "Unweighted mean of s_q over the present question_types, rel-direction splits "
    "counted separately (up to 10; fork all.macro, not official)",
    "macro_legacy10_acc": "Unweighted mean of s_q over the present MCA question_types, rel-direction splits "
    "counted separately (up to 6; fork acc.macro, not official)",
    "macro_legacy10_mra": "Unweighted mean of s_q over the present NA question_types (up to 4; fork mra.macro)",
    "ObjCnt": "s_q of object_counting (mean MRA)",
    "AbsDist": "s_q of object_abs_distance (mean MRA)",
    "ObjSz": "s_q of object_size_estimation (mean MRA)",
    "RoomSz": "s_q of room_size_estimation (mean MRA)",
    "RelDist": "s_q of object_rel_distance (accuracy)",
    "RelDir": "Official RelDir: unweighted mean (s_easy + s_medium + s_hard) / 3 over the present splits",
    "RelDir_weighted": "Count-weighted RelDir = sum_q s_q n_q / sum_q n_q over the splits (fork LaTeX "
    "'RelDir'; not official)",
    "RoutePl": "s_q of route_planning (accuracy)",
    "ApprOrd": "s_q of obj_appearance_order (accuracy)",
}


@dataclass(frozen=True)
class QuestionTypeScore:
    """``score`` = s_q (mean per-sample score), ``count`` = n_q."""

    score: float
    count: int


@dataclass(frozen=True)
class VsiBenchAggregate:
    """Aggregated VSI-Bench scores; every column is defined in ``definitions``.

    Attributes:
        columns: column -> value or None (absent). Keys: ``macro_official_{all,acc,mra}``,
            ``micro_{all,acc,mra}``, ``macro_legacy10_{all,acc,mra}``, the 8 task columns
            (``ObjCnt`` … ``ApprOrd``) and ``RelDir_weighted``.
        per_question_type: question_type -> (s_q, n_q) for the present types.
        n: number of samples.
        warnings: what is missing and how it was handled.
        per_dataset: dataset -> aggregate of that dataset's samples (empty if datasets not given).
        definitions: column -> definition string.
    """

    columns: dict[str, float | None]
    per_question_type: dict[str, QuestionTypeScore]
    n: int
    warnings: tuple[str, ...] = ()
    per_dataset: dict[str, "VsiBenchAggregate"] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=lambda: dict(_DEFINITIONS))

    @property
    def official_overall(self) -> float | None:
        """The official VSI-Bench overall (== ``columns["macro_official_all"]``)."""
        return self.columns["macro_official_all"]

    def average(self, average: Average, group: Group = "all") -> float | None:
        """One average by explicit name, e.g. ``average("macro_official", "all")``."""
        _check_choice("average", average, AVERAGES)
        _check_choice("group", group, _GROUPS)
        return self.columns[f"{average}_{group}"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: columns, per_question_type, n, warnings, per_dataset, definitions."""
        return {
            "columns": dict(self.columns),
            "per_question_type": {q: {"score": s.score, "count": s.count}
                                  for q, s in self.per_question_type.items()},
            "n": self.n,
            "warnings": list(self.warnings),
            "per_dataset": {d: _without(agg.to_dict(), ("definitions", "per_dataset"))
                            for d, agg in self.per_dataset.items()},
            "definitions": dict(self.definitions),
        }


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)} (there is no bare 'overall')",
                          field=name, value=value)


def _without(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _mean(values: np.ndarray) -> float | None:
    """pandas' ``Series.mean`` of (n,) float64 values: numpy's pairwise ``add.reduce``, then / n."""
    return float(np.add.reduce(values) / np.float64(values.size)) if values.size else None


def _official_mean(values: Sequence[float]) -> float | None:
    """lmms-eval's ``sum(values) / len(values)``: left-to-right float sum."""
    return sum(values) / len(values) if values else None


def _groups(codes: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """question_type -> its scores in the given order, types in name order (present types only)."""
    present = np.flatnonzero(np.bincount(codes, minlength=len(_TYPE_NAMES)))
    return {_TYPE_NAMES[k]: scores[codes == k] for k in present}


def _columns(codes: np.ndarray, scores: np.ndarray) -> tuple[dict[str, float | None], list[str]]:
    """Every column from (N,) question-type codes and (N,) scores, samples in the official order."""
    groups = _groups(codes, scores)
    s_q = {q: _mean(v) for q, v in groups.items()}
    warnings: list[str] = []
    cols: dict[str, float | None] = {}
    is_mca = _IS_MCA_CODE[codes]
    cols["micro_all"], cols["micro_acc"], cols["micro_mra"] = _mean(scores), _mean(scores[is_mca]), \
        _mean(scores[~is_mca])
    present_splits = [q for q in REL_DIRECTION_TYPES if q in groups]
    for task, types in TASKS.items():
        if task == "RelDir":
            cols[task] = _official_mean([s_q[q] for q in present_splits])  # type: ignore[misc]
            cols["RelDir_weighted"] = _mean(scores[np.isin(codes, [_TYPE_CODE[q] for q in present_splits])])
            missing = [q for q in REL_DIRECTION_TYPES if q not in groups]
            if present_splits and missing:
                warnings.append(f"RelDir averaged over {len(present_splits)} of 3 splits (missing: "
                                f"{', '.join(missing)}); lmms-eval raises KeyError here, upstream averages the "
                                "present splits")
        else:
            cols[task] = s_q.get(types[0])
    # lmms-eval order: present question types sorted by name, then RelDir appended last
    official_order = sorted({t for t, types in TASKS.items() if t != "RelDir" for q in types if q in groups},
                            key=lambda t: TASKS[t][0]) + (["RelDir"] if present_splits else [])
    absent = [t for t in TASKS if cols[t] is None]
    if absent and len(absent) < len(TASKS):
        warnings.append(f"absent tasks ({', '.join(absent)}) shown as None; macros are over the present "
                        "tasks only")
    task_scores: dict[str, float] = {t: cols[t] for t in official_order}  # type: ignore[misc]
    cols["macro_official_all"] = _official_mean(list(task_scores.values()))
    cols["macro_official_acc"] = _official_mean([v for t, v in task_scores.items() if t in _MCA_TASKS])
    cols["macro_official_mra"] = _official_mean([v for t, v in task_scores.items() if t in _NA_TASKS])
    type_scores: dict[str, float] = {q: s_q[q] for q in sorted(groups)}  # type: ignore[misc]
    for group, types in (("all", _TYPE_NAMES), ("acc", MCA_QUESTION_TYPES), ("mra", NA_QUESTION_TYPES)):
        cols[f"macro_legacy10_{group}"] = _mean(np.array([v for q, v in type_scores.items() if q in types]))
    order = [*(f"macro_official_{g}" for g in _GROUPS), *(f"micro_{g}" for g in _GROUPS),
             *(f"macro_legacy10_{g}" for g in _GROUPS), *TASKS, "RelDir_weighted"]
    return {k: cols[k] for k in order}, warnings


def _validate(question_types: Sequence[str], scores: ArrayLike,
              datasets: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 scores and (N,) int question-type codes (``_TYPE_CODE``)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) != len(question_types) or (datasets is not None and len(datasets) != len(s)):
        raise ShapeError(
            f"scores must be (N,) with N == len(question_types) == len(datasets); got scores {s.shape}, "
            f"{len(question_types)} question_types, {None if datasets is None else len(datasets)} datasets",
            name="scores", shape=s.shape,
        )
    for q in set(question_types):
        question_kind(q)  # ConfigError naming the bad type
        if q not in _TYPE_CODE:
            raise ConfigError(f"question_type {q!r} is not a VSI-Bench question type (a posevlm pose question?); "
                              "aggregate it with its own task format (posevlm.eval.pose_format)",
                              field="question_type", value=q)
    if not np.all(np.isfinite(s)):
        raise ConfigError("scores must be finite (score unparseable answers as 0, not NaN)", field="scores",
                          value=s[~np.isfinite(s)][:5].tolist())
    return s, np.fromiter((_TYPE_CODE[q] for q in question_types), dtype=np.int64, count=len(s))


def _id_order(ids: ArrayLike | None, n: int) -> np.ndarray | None:
    """Stable permutation putting samples in ascending id order; None keeps the given order."""
    if ids is None:
        return None
    arr = np.asarray(ids)
    if arr.shape != (n,):
        raise ShapeError(f"ids must be (N,) with N == len(scores) == {n}; got {arr.shape}", name="ids",
                         shape=arr.shape)
    if n and arr.dtype.kind not in "iu":
        raise ConfigError(f"ids must be integers (the VSI-Bench 'id' field); got dtype {arr.dtype}",
                          field="ids", value=arr[:5].tolist())
    order = np.argsort(arr, kind="stable")
    repeated = arr[order][1:][np.diff(arr[order]) == 0]
    if repeated.size:
        raise ConfigError(f"ids must be unique; repeated: {np.unique(repeated)[:5].tolist()}", field="ids",
                          value=np.unique(repeated)[:5].tolist())
    return order


def vsibench_average(question_types: Sequence[str], scores: ArrayLike, *, average: Average,
                     group: Group = "all", ids: ArrayLike | None = None) -> float | None:
    """One named average of per-sample scores (see module docstring); None when the group is empty."""
    _check_choice("average", average, AVERAGES)
    _check_choice("group", group, _GROUPS)
    s, codes = _validate(question_types, scores, None)
    order = _id_order(ids, len(s))
    if order is not None:
        codes, s = codes[order], s[order]
    return _columns(codes, s)[0][f"{average}_{group}"]


def aggregate_vsibench(question_types: Sequence[str], scores: ArrayLike, *, datasets: Sequence[str] | None = None,
                       ids: ArrayLike | None = None) -> VsiBenchAggregate:
    """Aggregate per-sample scores into every labelled VSI-Bench column, bit for bit as lmms-eval.

    Args:
        question_types: (N,) question_type per sample.
        scores: (N,) per-sample score (accuracy or MRA of one parsing mode), finite, in [0, 1].
        datasets: optional (N,) dataset per sample; adds ``per_dataset``.
        ids: optional (N,) unique int sample ids (the VSI-Bench ``id``); samples are then reduced in
            id order, lmms-eval's document order, so the result does not depend on the order given.
            Without ids the given order is the document order.
    Returns:
        ``VsiBenchAggregate``; absent tasks are None, never a crash.
    Raises:
        ShapeError: lengths differ. ConfigError: unknown question type, non-finite score, ids not
        unique integers.
    """
    s, codes = _validate(question_types, scores, datasets)
    ds = None if datasets is None else list(datasets)
    order = _id_order(ids, len(s))
    if order is not None:
        codes, s = codes[order], s[order]
        ds = None if ds is None else [ds[i] for i in order.tolist()]
    return _aggregate(codes, s, ds)


def _aggregate(codes: np.ndarray, s: np.ndarray, datasets: Sequence[str] | None) -> VsiBenchAggregate:
    """``aggregate_vsibench`` on validated (N,) type codes and scores, already in the official order."""
    columns, warnings = _columns(codes, s)
    per_type = {q: QuestionTypeScore(_mean(v), len(v))  # type: ignore[arg-type]
                for q, v in _groups(codes, s).items()}
    per_dataset: dict[str, VsiBenchAggregate] = {}
    if datasets is not None:
        names = sorted(set(datasets))
        index = {d: i for i, d in enumerate(names)}
        ds = np.fromiter((index[d] for d in datasets), dtype=np.int64, count=len(s))
        for i, d in enumerate(names):
            mask = ds == i
            per_dataset[d] = _aggregate(codes[mask], s[mask], None)
    return VsiBenchAggregate(columns, per_type, len(s), tuple(warnings), per_dataset)


def aggregate_scored(scored_records: Sequence[Mapping[str, Any]], *, mode: str = "official",
                     by_dataset: bool = True) -> VsiBenchAggregate:
    """Aggregate ``score_record`` outputs under one parsing mode (never mix modes in one number).

    Records carrying an ``id`` are reduced in id order (lmms-eval's document order; see
    ``aggregate_vsibench``), so any record order gives the same bits; without ids, the given order.
    """
    try:
        scores = [r["modes"][mode]["score"] for r in scored_records]
    except KeyError:
        raise ConfigError(f"mode {mode!r} was not scored; score the records with modes=(..., {mode!r})",
                          field="mode", value=mode) from None
    question_types = [r["question_type"] for r in scored_records]
    datasets = [r.get("dataset") for r in scored_records] if by_dataset else None
    if datasets is not None and not all(isinstance(d, str) for d in datasets):
        raise ConfigError("every scored record needs a 'dataset' string for by_dataset=True; pass "
                          "by_dataset=False to aggregate without per-dataset columns",
                          field="dataset", value=None)
    has_id = ["id" in r for r in scored_records]
    if any(has_id) and not all(has_id):
        raise ConfigError(f"{has_id.count(False)} of {len(has_id)} scored records have no 'id'; give every "
                          "record its VSI-Bench id (the official reduction order) or none", field="id", value=None)
    ids = [r["id"] for r in scored_records] if all(has_id) and has_id else None
    return aggregate_vsibench(question_types, scores, datasets=datasets, ids=ids)
