"""Paired comparison of two eval runs: deltas B − A with bootstrap CIs and exact McNemar tests.

Samples are paired by ``id`` (ids present in both runs only; the unpaired counts are reported),
and the pairs must agree on question type and ground truth (same benchmark). Per column
(``COMPARE_COLUMNS``: the official average and its acc/mra halves, the 8 tasks, micro all/acc/mra)
we report the means of A and B over the paired samples (exactly ``aggregate_vsibench``), the delta
B − A and:

* a **stratified paired bootstrap** CI: each resample draws, within every question type, that
  type's paired ids with replacement (spec eval.md §8.5 "resample ids within task"), so every
  resample has the benchmark's composition n_q and the full aggregate is recomputed on it. With
  fixed n_q every column is a fixed linear combination ``w @ s`` of the per-type means ``s``
  (``column_weights``), so the aggregate delta of a resample is ``w @ mean_q(b − a)``: one
  (B × Q) matrix of resampled per-type mean deltas serves all columns. ``_bootstrap_reference``
  recomputes ``aggregate_vsibench`` per resample from the same draws (the slow oracle).
  Percentile interval; seeded (``numpy.random.default_rng(seed)``, fixed chunking), deterministic.
* an **exact McNemar** test for accuracy columns (RelDist, RelDir with its splits pooled,
  RoutePl, ApprOrd, micro_acc): two-sided binomial test of the discordant pairs, p = min(1,
  2 · P[X <= min(b, c)]), X ~ Bin(b + c, 1/2).

The columns above are the ``vsibench`` task format's; a run's benchmark picks its format
(``task_format.py``): SQA3D / ScanQA compare EM@1 overall (types weighted by n_q) and, for SQA3D, per
question prefix, all with McNemar (EM is 0/1); their corpus caption metrics are not resampled.

Deltas are absolute, in points when printed (the fork's relative % change is misleading near 0).
A CI that contains 0 means the change is within resampling noise (e.g. a few points on the 194
route-planning items).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from posevlm.errors import ConfigError
from posevlm.eval.aggregate import TASKS, aggregate_vsibench
from posevlm.eval.metrics import MCA_QUESTION_TYPES, NA_QUESTION_TYPES
from posevlm.eval.report import run_label
from posevlm.eval.run_store import RunData, load_run

__all__ = [
    "COMPARE_COLUMNS", "ACCURACY_COLUMNS", "ColumnDelta", "RunComparison", "mcnemar_exact", "column_weights",
    "paired_bootstrap", "compare_records", "compare_runs",
]  # fmt: skip

COMPARE_COLUMNS: tuple[str, ...] = ("macro_official_all", "macro_official_acc", "macro_official_mra", *TASKS,
                                    "micro_all", "micro_acc", "micro_mra")
ACCURACY_COLUMNS: tuple[str, ...] = ("RelDist", "RelDir", "RoutePl", "ApprOrd", "micro_acc")
_CHUNK = 1000  # resamples drawn per block; fixed, because the draws depend on it


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (A right/B wrong, A wrong/B right)."""
    if a_only < 0 or b_only < 0:
        raise ConfigError(f"discordant counts must be >= 0; got {a_only}, {b_only}", field="a_only",
                          value=a_only)
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / (1 << n))  # int / int: correctly rounded for any n


def column_weights(type_counts: Mapping[str, int]) -> dict[str, np.ndarray | None]:
    """column -> w over ``sorted(type_counts)`` with column == w @ s (s = per-type means); None if absent.

    Mirrors ``aggregate_vsibench``: tasks average their present types (RelDir: its splits), the
    official macros average the present tasks, micro columns weight types by n_q, legacy macros
    average the present types.
    """
    qs = sorted(type_counts)
    pos = {q: i for i, q in enumerate(qs)}
    n = np.array([type_counts[q] for q in qs], dtype=np.float64)

    def uniform(types: Sequence[str]) -> np.ndarray | None:
        present = [pos[q] for q in types if q in pos]
        if not present:
            return None
        w = np.zeros(len(qs))
        w[present] = 1.0 / len(present)
        return w

    def by_count(types: Sequence[str]) -> np.ndarray | None:
        present = [pos[q] for q in types if q in pos]
        if not present:
            return None
        w = np.zeros(len(qs))
        w[present] = n[present] / n[present].sum()
        return w

    def mean_of(ws: list[np.ndarray | None]) -> np.ndarray | None:
        ws = [w for w in ws if w is not None]
        return sum(ws) / len(ws) if ws else None  # type: ignore[return-value]

    out: dict[str, np.ndarray | None] = {t: uniform(types) for t, types in TASKS.items()}
    mca_tasks = [t for t, types in TASKS.items() if types[0] in MCA_QUESTION_TYPES]
    out["RelDir_weighted"] = by_count(TASKS["RelDir"])
    out["macro_official_all"] = mean_of([out[t] for t in TASKS])
    out["macro_official_acc"] = mean_of([out[t] for t in mca_tasks])
    out["macro_official_mra"] = mean_of([out[t] for t in TASKS if t not in mca_tasks])
    for group, types in (("all", MCA_QUESTION_TYPES + NA_QUESTION_TYPES), ("acc", MCA_QUESTION_TYPES),
                         ("mra", NA_QUESTION_TYPES)):
        out[f"micro_{group}"] = by_count(types)
        out[f"macro_legacy10_{group}"] = uniform(types)
    return out


def _groups(question_types: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    qt = np.asarray(question_types)
    qs = sorted(set(question_types))
    return qs, [np.flatnonzero(qt == q) for q in qs]


def _draws(rng: np.random.Generator, sizes: Sequence[int],
           n_bootstrap: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Blocks of resample indices: (first resample, [(c, n_q) positions within type q, per type])."""
    for start in range(0, n_bootstrap, _CHUNK):
        c = min(_CHUNK, n_bootstrap - start)
        yield start, [rng.integers(0, n, size=(c, n)) for n in sizes]


def _check_bootstrap(n_bootstrap: int, confidence: float = 0.95) -> None:
    if not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ConfigError(f"--bootstrap must be a positive int; got {n_bootstrap!r}", field="n_bootstrap",
                          value=n_bootstrap)
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1); got {confidence!r}", field="confidence",
                          value=confidence)


def paired_bootstrap(question_types: Sequence[str], deltas: ArrayLike, *, n_bootstrap: int = 10_000,
                     seed: int = 0, columns: Sequence[str] | None = None,
                     task_format: str = "vsibench") -> dict[str, np.ndarray | None]:
    """Stratified paired bootstrap of column deltas (see module docstring).

    Args:
        question_types: (N,) question type per paired sample, in a fixed order (e.g. by id).
        deltas: (N,) per-sample score of B minus score of A.
        columns: default the task format's ``compare_columns``.
        task_format: whose ``column_weights`` turn per-type mean deltas into column deltas.
    Returns:
        column -> (n_bootstrap,) resampled deltas of that column; None for absent columns.
    """
    from posevlm.eval.task_format import task_formats

    _check_bootstrap(n_bootstrap)
    fmt = task_formats.get(task_format)
    d = np.asarray(deltas, dtype=np.float64)
    qs, positions = _groups(question_types)
    values = [d[p] for p in positions]
    weights = fmt.column_weights({q: len(p) for q, p in zip(qs, positions)})
    columns = fmt.compare_columns if columns is None else columns
    means = np.empty((n_bootstrap, len(qs)))
    for start, block in _draws(np.random.default_rng(seed), [len(p) for p in positions], n_bootstrap):
        for j, idx in enumerate(block):
            means[start:start + len(idx), j] = values[j][idx].mean(axis=1)
    return {c: None if weights[c] is None else means @ weights[c] for c in columns}


def _bootstrap_reference(question_types: Sequence[str], scores_a: ArrayLike, scores_b: ArrayLike, *,
                         n_bootstrap: int, seed: int,
                         columns: Sequence[str] = COMPARE_COLUMNS) -> dict[str, np.ndarray]:
    """Slow oracle: the same draws, ``aggregate_vsibench`` of A and B recomputed on every resample."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    qs, positions = _groups(question_types)
    out = {c: np.empty(n_bootstrap) for c in columns}
    for start, block in _draws(np.random.default_rng(seed), [len(p) for p in positions], n_bootstrap):
        for r in range(len(block[0])):
            rows = np.concatenate([p[idx[r]] for p, idx in zip(positions, block)])
            types = [question_types[i] for i in rows]
            col_a = aggregate_vsibench(types, a[rows]).columns
            col_b = aggregate_vsibench(types, b[rows]).columns
            for c in columns:
                out[c][start + r] = col_b[c] - col_a[c]
    return out


@dataclass(frozen=True)
class ColumnDelta:
    """One column: means over the paired samples, delta = mean_b − mean_a, CI of the delta,
    McNemar p and discordant counts (accuracy columns only). None when the column is absent."""

    column: str
    n: int
    mean_a: float | None
    mean_b: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    mcnemar_p: float | None
    a_only: int | None
    b_only: int | None
    definition: str

    @property
    def ci_excludes_zero(self) -> bool | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return not self.ci_low <= 0.0 <= self.ci_high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci_excludes_zero": self.ci_excludes_zero}


@dataclass(frozen=True)
class RunComparison:
    """Result of ``compare_records`` / ``compare_runs``; ``to_dict()`` is the ``--json`` output.

    ``a`` / ``b``: run summaries (label, run_id, partial, n_done, n_expected, n_errors).
    ``top_changed``: the paired samples with the largest |score_b − score_a|.
    ``config_diff``: dotted config key -> [value in A, value in B] where the run configs differ.
    """

    a: dict[str, Any]
    b: dict[str, Any]
    mode: str
    n_paired: int
    n_only_a: int
    n_only_b: int
    n_bootstrap: int
    seed: int
    confidence: float
    columns: tuple[ColumnDelta, ...]
    top_changed: tuple[dict[str, Any], ...] = ()
    config_diff: dict[str, list[Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    resampling: str = "paired ids within question_type (stratified), percentile interval"

    def column(self, name: str) -> ColumnDelta:
        for c in self.columns:
            if c.column == name:
                return c
        raise ConfigError(f"no column {name!r}; available: {', '.join(c.column for c in self.columns)}",
                          field="column", value=name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = [c.to_dict() for c in self.columns]
        d["top_changed"], d["warnings"] = list(self.top_changed), list(self.warnings)
        return d


Records = Mapping[int, Mapping[str, Any]] | Sequence[Mapping[str, Any]]


def _by_id(records: Records) -> dict[int, Mapping[str, Any]]:
    return dict(records) if isinstance(records, Mapping) else {r["id"]: r for r in records}


def _scores(recs: Mapping[int, Mapping[str, Any]], ids: Sequence[int], mode: str, side: str) -> np.ndarray:
    try:
        return np.array([recs[i]["scores"][mode]["score"] for i in ids], dtype=np.float64)
    except KeyError:
        raise ConfigError(f"run {side} has records without scores for mode {mode!r}; use a mode the runs "
                          "were scored with (--mode)", field="mode", value=mode) from None


def compare_records(records_a: Records, records_b: Records, *, mode: str = "official",
                    n_bootstrap: int = 10_000, seed: int = 0, confidence: float = 0.95,
                    top_k: int = 10, task_format: str = "vsibench") -> RunComparison:
    """Compare two sets of run records (the records/*.jsonl format) paired by id; the columns, their
    bootstrap weights and McNemar columns come from ``task_format`` (``task_formats``).

    Raises:
        ConfigError: no ids in common; paired ids disagree on question type or ground truth;
            ``mode`` not scored; bad ``n_bootstrap`` / ``confidence``.
    """
    from posevlm.eval.task_format import task_formats

    _check_bootstrap(n_bootstrap, confidence)
    fmt = task_formats.get(task_format)
    a, b = _by_id(records_a), _by_id(records_b)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ConfigError(f"runs share no sample ids ({len(a)} in A, {len(b)} in B): not the same benchmark",
                          field="ids", value=None)
    bad = [i for i in ids if (a[i]["question_type"], str(a[i]["ground_truth"]))
           != (b[i]["question_type"], str(b[i]["ground_truth"]))]
    if bad:
        raise ConfigError(f"{len(bad)} paired ids differ in question_type or ground_truth (e.g. {bad[:5]}): "
                          "the runs are on different benchmarks and cannot be paired", field="ids",
                          value=bad[:5])
    qt = [a[i]["question_type"] for i in ids]
    sa, sb = _scores(a, ids, mode, "A"), _scores(b, ids, mode, "B")
    (cols_a, defs), (cols_b, _) = fmt.column_means(qt, sa), fmt.column_means(qt, sb)
    boot = paired_bootstrap(qt, sb - sa, n_bootstrap=n_bootstrap, seed=seed, task_format=fmt.name)
    alpha = 1.0 - confidence
    qt_arr = np.asarray(qt)
    out = []
    for c in fmt.compare_columns:
        mask = np.isin(qt_arr, fmt.column_types(c))
        ma, mb, dist = cols_a[c], cols_b[c], boot[c]
        lo = hi = p = a_only = b_only = None
        if dist is not None:
            lo, hi = (float(v) for v in np.quantile(dist, [alpha / 2, 1 - alpha / 2]))
        if c in fmt.accuracy_columns and mask.any():
            a_only = int(np.sum((sa >= 1) & (sb < 1) & mask))
            b_only = int(np.sum((sa < 1) & (sb >= 1) & mask))
            p = mcnemar_exact(a_only, b_only)
        delta = None if ma is None or mb is None else mb - ma
        out.append(ColumnDelta(c, int(mask.sum()), ma, mb, delta, lo, hi, p, a_only, b_only, defs[c]))
    d = sb - sa
    order = sorted((k for k in range(len(ids)) if d[k] != 0), key=lambda k: (-abs(d[k]), ids[k]))[:top_k]
    top = tuple({"id": ids[k], "question_type": qt[k], "dataset": a[ids[k]].get("dataset"),
                 "ground_truth": a[ids[k]]["ground_truth"],
                 "answer_a": a[ids[k]]["scores"][mode].get("answer"),
                 "answer_b": b[ids[k]]["scores"][mode].get("answer"),
                 "score_a": float(sa[k]), "score_b": float(sb[k]), "delta": float(d[k])} for k in order)
    warnings = []
    if len(a) != len(ids) or len(b) != len(ids):
        warnings.append(f"{len(a) - len(ids)} ids only in A and {len(b) - len(ids)} only in B are left out; "
                        f"means are over the {len(ids)} paired samples")
    return RunComparison({"label": "A"}, {"label": "B"}, mode, len(ids), len(a) - len(ids), len(b) - len(ids),
                         n_bootstrap, seed, confidence, tuple(out), top, {}, tuple(warnings))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _summary(run: RunData) -> dict[str, Any]:
    return {"label": run_label(run.config), "run_id": run.run_id, "run_dir": str(run.run_dir),
            "partial": run.partial, "n_done": run.n_done, "n_expected": run.n_expected,
            "n_errors": sum(r.get("status") == "error" for r in run.records)}


def compare_runs(run_a: str | Path, run_b: str | Path, *, mode: str = "official", n_bootstrap: int = 10_000,
                 seed: int = 0, confidence: float = 0.95, top_k: int = 10) -> RunComparison:
    """Load two run directories (partial runs allowed: only paired ids count) and compare them with their
    benchmark's task format (both runs must share it)."""
    from posevlm.eval.task_format import task_format_of

    ra, rb = load_run(run_a, allow_partial=True), load_run(run_b, allow_partial=True)
    fa_, fb_ = task_format_of(ra.config), task_format_of(rb.config)
    if fa_.name != fb_.name:
        raise ConfigError(f"run A is a {fa_.title} run and run B a {fb_.title} run: compare runs of one benchmark",
                          field="runs", value=[fa_.name, fb_.name])
    result = compare_records(ra.records, rb.records, mode=mode, n_bootstrap=n_bootstrap, seed=seed,
                             confidence=confidence, top_k=top_k, task_format=fa_.name)
    fa, fb = _flatten(ra.config), _flatten(rb.config)
    diff = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    warnings = [f"run {side} is PARTIAL ({r.n_done}/{r.n_expected} samples)"
                for side, r in (("A", ra), ("B", rb)) if r.partial]
    if ra.run_id == rb.run_id:
        warnings.append("A and B have the same run_id (the same configuration)")
    return replace(result, a=_summary(ra), b=_summary(rb), config_diff=diff,
                   warnings=tuple(warnings) + result.warnings)
