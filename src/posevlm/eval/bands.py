"""Bootstrap confidence bands of report columns: per run, and paired deltas against a reference run.

Resampling is :mod:`posevlm.eval.compare`'s stratified bootstrap: each resample draws, within every
question type, that type's samples with replacement (sorted by id), so a resample keeps the benchmark's
composition and a column is the fixed linear combination ``w @ s`` of per-type means
(:func:`~posevlm.eval.compare.column_weights`). Runs over the same ids get the *same* draws (same seed,
same per-type sizes, same id order): their bands are paired, and a delta's band
(:func:`paired_delta_band`) is the distribution of the per-resample difference, which is what tells two
strategies apart (two overlapping per-run bands do not mean "no difference" when the runs are paired).

Bands are percentile intervals at ``confidence``; ``None`` for a column the run does not have.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError

__all__ = ["BAND_BOOTSTRAP", "run_samples", "bootstrap_columns", "score_band", "paired_delta_band"]

#: resamples drawn for report bands (fixed so reports are reproducible; enough for a 95% percentile band)
BAND_BOOTSTRAP = 2000


def run_samples(records: Sequence[Mapping[str, Any]], mode: str) -> tuple[list[int], list[str], np.ndarray]:
    """(ids, question types, (N,) scores) of run records sorted by id; error records score 0 as in reports."""
    recs = sorted(records, key=lambda r: r["id"])
    try:
        scores = np.array([r["scores"][mode]["score"] for r in recs], dtype=np.float64)
    except KeyError:
        raise ConfigError(f"mode {mode!r} was not scored; use a mode the runs were scored with (--mode)",
                          field="mode", value=mode) from None
    return [r["id"] for r in recs], [r["question_type"] for r in recs], scores


def bootstrap_columns(question_types: Sequence[str], values: np.ndarray, columns: Sequence[str], *,
                      n_bootstrap: int = BAND_BOOTSTRAP, seed: int = 0) -> dict[str, np.ndarray | None]:
    """column -> (n_bootstrap,) resampled column values of per-sample ``values`` (N,) with question types (N,).

    The same draws as ``compare.paired_bootstrap`` (which resamples deltas): pass deltas to get a paired delta.
    """
    from posevlm.eval.compare import paired_bootstrap

    return paired_bootstrap(question_types, values, n_bootstrap=n_bootstrap, seed=seed, columns=columns)


def _interval(draws: np.ndarray | None, confidence: float) -> tuple[float, float] | None:
    if draws is None:
        return None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def score_band(records: Sequence[Mapping[str, Any]], columns: Sequence[str], *, mode: str = "official",
               n_bootstrap: int = BAND_BOOTSTRAP, seed: int = 0,
               confidence: float = 0.95) -> dict[str, tuple[float, float] | None]:
    """column -> (low, high) percentile band of one run's column (fractions); None when absent."""
    _, types, scores = run_samples(records, mode)
    if not types:
        return {c: None for c in columns}
    draws = bootstrap_columns(types, scores, columns, n_bootstrap=n_bootstrap, seed=seed)
    return {c: _interval(draws[c], confidence) for c in columns}


def paired_delta_band(records_ref: Sequence[Mapping[str, Any]], records_run: Sequence[Mapping[str, Any]],
                      columns: Sequence[str], *, mode: str = "official", n_bootstrap: int = BAND_BOOTSTRAP,
                      seed: int = 0, confidence: float = 0.95) -> dict[str, tuple[float, float] | None] | None:
    """column -> (low, high) band of run − reference, paired by id; None when the runs' ids differ
    (not the same questions, so no pairing) or a column is absent."""
    ids_a, types_a, a = run_samples(records_ref, mode)
    ids_b, types_b, b = run_samples(records_run, mode)
    if ids_a != ids_b or types_a != types_b or not ids_a:
        return None
    draws = bootstrap_columns(types_a, b - a, columns, n_bootstrap=n_bootstrap, seed=seed)
    return {c: _interval(draws[c], confidence) for c in columns}
