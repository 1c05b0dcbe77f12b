"""Per-sample metrics: the MRA vectors of spec eval.md §2.2, parity with transcriptions of the
official (float64, linspace, <=) and fork (torch float32, arange, <) formulas, guards, registry."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import posevlm.eval as ev
from posevlm.errors import ConfigError, ShapeError
from posevlm.eval import (
    MRA_THRESHOLDS,
    accuracy,
    accuracy_array,
    metrics,
    mra,
    mra_array,
    mra_hits,
    mra_legacy,
    mra_legacy_array,
    mra_legacy_hits,
    question_kind,
)

# spec §2.2: (y, ŷ, official, fork legacy, exact maths with <=)
SPEC_MRA_VECTORS = [
    (4, 4, 1.0, 1.0, 1.0), (2.9, 3.0, 1.0, 1.0, 1.0), (4, 4.2, 1.0, 1.0, 1.0), (173, 150, 0.8, 0.8, 0.8),
    (26.4, 20, 0.6, 0.6, 0.6), (10, 11, 0.9, 0.9, 0.9), (4, 4.4, 0.9, 0.8, 0.9), (10, 12, 0.6, 0.6, 0.7),
    (5, 6, 0.6, 0.6, 0.7), (4, 5, 0.6, 0.5, 0.6), (3, 4, 0.4, 0.4, 0.4), (10, 13, 0.5, 0.4, 0.5),
    (10, 14, 0.3, 0.2, 0.3), (100, 145, 0.1, 0.1, 0.2), (2, 3, 0.1, 0.0, 0.1), (2, 1, 0.1, 0.0, 0.1),
    (10, 16, 0.0, 0.0, 0.0), (1, 2, 0.0, 0.0, 0.0),
]


def official_oracle(pred: float, target: float) -> float:
    """Spec §2.1 official formula, written out: float64, num_pts = int((0.95-0.5)/0.05 + 2), '<='."""
    thresholds = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))
    return float((abs(float(pred) - float(target)) / float(target) <= 1 - thresholds).mean())


def fork_oracle(pred: float, target: float) -> float:
    """Spec §2.1 fork formula in live torch: float32, |y| + 1e-8, arange(0.5, 0.975, 0.05), strict '<'."""
    p, t = torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    rel = torch.abs(p - t) / (torch.abs(t) + 1e-8)
    thresholds = torch.arange(0.5, 0.95 + 0.05 / 2, 0.05, dtype=torch.float32)
    return (rel < (1 - thresholds)).float().mean().item()


def exact_maths(pred: float, target: float) -> float:
    """MRA in rational arithmetic (no floating point): the spec's 'exact maths' column."""
    r = abs(Fraction(str(pred)) - Fraction(str(target))) / Fraction(str(target))
    return sum(r <= 1 - Fraction(50 + 5 * i, 100) for i in range(10)) / 10


@pytest.mark.parametrize("y, pred, official, legacy, exact", SPEC_MRA_VECTORS)
def test_spec_mra_vectors(y, pred, official, legacy, exact):
    assert mra(pred, y) == official
    assert mra_hits(pred, y) == round(official * 10)
    assert mra_legacy(pred, y) == float(np.float32(legacy))  # the fork returns float32 means
    assert mra_legacy_hits(pred, y) == round(legacy * 10)
    assert exact_maths(pred, y) == exact
    assert official_oracle(pred, y) == official and fork_oracle(pred, y) == mra_legacy(pred, y)


def test_spec_vectors_vectorised_match_scalar():
    y, pred = (np.array([v[i] for v in SPEC_MRA_VECTORS], float) for i in (0, 1))
    np.testing.assert_array_equal(mra_array(pred, y), [v[2] for v in SPEC_MRA_VECTORS])
    np.testing.assert_array_equal(mra_legacy_array(pred, y), [mra_legacy(p, t) for p, t in zip(pred, y)])


def test_threshold_construction_pins():
    # spec §2.1: the float expression is 10.999999999999998, int() -> 10; linspace's 0.9 entry; 1-0.8 < 0.2
    assert (0.95 - 0.5) / 0.05 + 2 == 10.999999999999998
    np.testing.assert_array_equal(MRA_THRESHOLDS, np.linspace(0.5, 0.95, 10))
    assert MRA_THRESHOLDS[8] == 0.8999999999999999 and 1 - 0.8 == 0.19999999999999996
    np.testing.assert_array_equal(ev.MRA_LEGACY_THRESHOLDS, torch.arange(0.5, 0.975, 0.05).numpy())


def boundary_pairs():
    """(ŷ, y) pairs that land on or next to thresholds: realistic decimal GTs, ŷ = y(1 ± k/20) etc."""
    gt = st.one_of(st.integers(1, 47).map(float), st.integers(4, 1260).map(lambda c: c / 100),
                   st.integers(70, 5420).map(lambda c: c / 10))
    return st.tuples(gt, st.integers(-25, 25), st.sampled_from([0.0, 1e-12, -1e-12, 0.01])).map(
        lambda t: (round(t[0] * (1 + t[1] / 20) + t[2], 6), t[0]))


any_pairs = st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(1e-3, 1e6, allow_nan=False))


@given(st.lists(st.one_of(boundary_pairs(), any_pairs), min_size=1, max_size=40))
def test_official_parity_with_formula_transcription(pairs):
    pred, y = map(np.array, zip(*pairs))
    expected = [official_oracle(p, t) for p, t in pairs]
    assert [mra(p, t) for p, t in pairs] == expected
    np.testing.assert_array_equal(mra_array(pred, y), expected)  # bit-identical, not approx
    np.testing.assert_array_equal(mra_hits(pred, y) / 10, expected)


@given(st.lists(st.one_of(boundary_pairs(), any_pairs), min_size=1, max_size=40))
def test_legacy_parity_with_live_torch_fork_formula(pairs):
    pred, y = map(np.array, zip(*pairs))
    expected = [fork_oracle(p, t) for p, t in pairs]
    np.testing.assert_array_equal(mra_legacy_array(pred, y), expected)
    assert [mra_legacy(p, t) for p, t in pairs] == expected


def test_wart_legacy_is_not_always_below_official():
    # spec §2.2 says the gap is "systematic in one direction (fork <= official on boundaries)". That
    # holds for the listed rows but not in general: exact r = 0.25 here, float64 rounds it up
    # (0.25000000000000006 > 1 - 0.75) while float32 rounds it below 0.25.
    assert (0.05 - 0.04) / 0.04 == 0.25000000000000006
    assert mra(0.05, 0.04) == 0.5 and mra_legacy(0.05, 0.04) == float(np.float32(0.6)) and exact_maths(0.05, 0.04) == 0.6


@pytest.mark.parametrize("target", [0.0, -3.0, float("nan"), float("inf"), -float("inf"), None])
def test_invalid_ground_truth_scores_zero(target):
    for pred in (0.0, 3.0, -3.0, 1e9):
        assert mra(pred, target) == 0.0 and mra_legacy(pred, target) == 0.0
    assert mra_hits([1.0, 2.0], [target, target]).tolist() == [0, 0]
    assert not ev.ground_truth_is_valid(target)


@pytest.mark.parametrize("pred", [None, float("nan"), float("inf"), -float("inf"), -3.0])
def test_unusable_predictions_score_zero(pred):
    assert mra(pred, 3.0) == 0.0 and mra_legacy(pred, 3.0) == 0.0
    assert mra_array([pred, 3.0], [3.0, 3.0]).tolist() == [0.0, 1.0]


def test_non_finite_ground_truth_matches_official_formula():
    with np.errstate(invalid="ignore"):
        for t in (float("nan"), float("inf")):
            assert official_oracle(3.0, t) == mra(3.0, t) == 0.0


def test_mra_is_monotone_in_error():
    y = 7.3
    errors = np.linspace(0, 0.8, 400)
    for sign in (1, -1):
        hits = mra_hits(y * (1 + sign * errors), y)
        assert np.all(np.diff(hits) <= 0) and hits[0] == 10 and hits[-1] == 0


def test_shapes_and_type_errors():
    with pytest.raises(ShapeError):
        mra_hits(np.ones(3), np.ones(4))
    with pytest.raises(ConfigError, match="numbers"):
        mra_hits(["a"], [3.0])
    with pytest.raises(ShapeError):
        accuracy_array(["A"], ["A", "B"])


def test_accuracy_is_case_insensitive_exact_match():
    assert accuracy("b", "B") == 1.0 and accuracy("B.", "B") == 0.0 and accuracy(None, "B") == 0.0
    np.testing.assert_array_equal(accuracy_array(["a", "C", None], ["A", "B", "B"]), [1.0, 0.0, 0.0])


def test_registry_metadata_and_suggestions():
    assert metrics.names() == ["accuracy", "mra", "mra_legacy"]
    for name in metrics:
        spec = metrics.get(name)
        assert spec.higher_is_better and spec.kind in ("MCA", "NA") and spec.description
    assert metrics.get("mra").result_key == "MRA:.5:.95:.05" and metrics.get("accuracy").kind == "MCA"
    assert metrics.get("mra").fn_hits is mra_hits and metrics.get("accuracy").fn_hits is None
    with pytest.raises(ConfigError, match="Did you mean: mra_legacy"):
        metrics.get("mra_legcy")


def test_question_kinds():
    assert sorted(ev.QUESTION_KINDS) == sorted(ev.MCA_QUESTION_TYPES + ev.NA_QUESTION_TYPES)
    assert len(ev.QUESTION_KINDS) == 10 and question_kind("room_size_estimation") == "NA"
    with pytest.raises(ConfigError, match="object_counting"):
        question_kind("object_count")


EVAL_PUBLIC = {
    "MCA_QUESTION_TYPES", "NA_QUESTION_TYPES", "QUESTION_KINDS", "MRA_THRESHOLDS", "MRA_LEGACY_THRESHOLDS",
    "question_kind", "accuracy", "accuracy_array", "ground_truth_is_valid", "mra", "mra_hits", "mra_array",
    "mra_legacy", "mra_legacy_hits", "mra_legacy_array", "MetricSpec", "metrics", "PARSE_STATUSES", "DEFAULT_MODES",
    "ParsedAnswer", "AnswerParser", "answer_parsers", "parse_answer", "score_record", "score_records", "AVERAGES",
    "TASKS", "REL_DIRECTION_TYPES", "VSIBENCH_FULL_COUNTS", "QuestionTypeScore", "VsiBenchAggregate",
    "vsibench_average", "aggregate_vsibench", "aggregate_scored", "CAPTION_METRICS", "SQA3D_PREFIXES",
    "OptionalDependencyError", "MetricValue", "CaptionScores", "normalize_answer", "text_exact_match",
    "refined_exact_match", "exact_match_scores", "sqa3d_question_prefix", "sqa3d_scores", "java_status",
    "simple_tokenize", "caption_scores", "scanqa_scores", "TaskFormat", "task_formats", "task_format_of",
}


def test_eval_public_names():
    assert set(ev.__all__) == EVAL_PUBLIC and len(ev.__all__) == len(EVAL_PUBLIC)
    assert all(hasattr(ev, name) for name in EVAL_PUBLIC)


@pytest.mark.slow
def test_import_eval_is_light():
    import subprocess
    import sys

    code = "import sys, posevlm.eval; print('torch' in sys.modules, 'pycocoevalcap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
