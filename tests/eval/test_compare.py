"""Paired comparison: identical runs give zero deltas, CIs at 0 and McNemar p = 1; fixing k
discordant items gives the exact binomial p (scipy) and a positive delta; the vectorised bootstrap
equals per-resample ``aggregate_vsibench`` on the same draws; seeded determinism; CIs shrink with
n and cover a known delta; unpaired ids are counted; the CLI verb."""

import json
from fractions import Fraction
from math import comb

import numpy as np
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest
from test_run_store import answers, eval_config, make_run, run_record, vsi_rows
from typer.testing import CliRunner

import posevlm.eval.compare as compare_mod
from posevlm.errors import ConfigError
from posevlm.eval import MCA_QUESTION_TYPES, NA_QUESTION_TYPES, aggregate_vsibench
from posevlm.eval.compare import (
    ACCURACY_COLUMNS,
    COMPARE_COLUMNS,
    column_weights,
    compare_records,
    compare_runs,
    mcnemar_exact,
    paired_bootstrap,
)

ALL_TYPES = MCA_QUESTION_TYPES + NA_QUESTION_TYPES


def records(rows, outputs):
    return [run_record(r, o) for r, o in zip(rows, outputs)]


def exact_mcnemar(b, c):  # independent of the library: rational arithmetic
    n = b + c
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return 1.0 if n == 0 else float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def test_identical_runs_give_zero_delta_ci_at_zero_and_mcnemar_one():
    rows = vsi_rows(3)
    recs = records(rows, answers(rows, 0.5, seed=1))
    result = compare_records(recs, recs, n_bootstrap=500, seed=0)
    assert result.n_paired == len(rows) and result.n_only_a == result.n_only_b == 0
    for c in result.columns:
        assert c.delta == 0.0 and c.ci_low == c.ci_high == 0.0 and c.ci_excludes_zero is False
        assert c.mean_a == c.mean_b is not None
        assert (c.mcnemar_p == 1.0) if c.column in ACCURACY_COLUMNS else c.mcnemar_p is None
    assert result.top_changed == ()


@pytest.mark.parametrize("k, j", [(6, 0), (9, 2), (4, 4)])
def test_fixing_k_discordant_items_gives_the_exact_binomial_p(k, j):
    rows = vsi_rows(12)
    outputs = answers(rows, 0.5, seed=2)
    a = records(rows, outputs)
    rel = [i for i, r in enumerate(rows) if r["question_type"] == "object_rel_distance"]
    wrong = [i for i in rel if a[i]["scores"]["official"]["score"] == 0][:k]
    right = [i for i in rel if a[i]["scores"]["official"]["score"] == 1][:j]
    assert len(wrong) == k and len(right) == j
    fixed = list(outputs)
    for i in wrong:  # B answers these correctly ...
        fixed[i] = rows[i]["ground_truth"]
    for i in right:  # ... and breaks these
        fixed[i] = "ABCD"[("ABCD".index(rows[i]["ground_truth"]) + 1) % 4]
    result = compare_records(a, records(rows, fixed), n_bootstrap=2000, seed=0)
    reldist = result.column("RelDist")
    assert (reldist.a_only, reldist.b_only) == (j, k)
    assert reldist.delta == pytest.approx((k - j) / len(rel), abs=1e-15)
    assert reldist.mcnemar_p == pytest.approx(binomtest(k, k + j, 0.5).pvalue, rel=1e-12)
    assert reldist.mcnemar_p == exact_mcnemar(j, k)
    assert result.column("micro_acc").mcnemar_p == reldist.mcnemar_p  # the only discordant pairs
    assert result.column("RelDir").delta == 0.0 and result.column("ObjCnt").delta == 0.0
    if k > j:
        assert reldist.delta > 0 and result.column("macro_official_all").delta > 0
        assert reldist.ci_high > 0 and len(result.top_changed) == min(k + j, 10)
    assert all(s["id"] in {rows[i]["id"] for i in wrong + right} for s in result.top_changed)


@given(st.integers(0, 400), st.integers(0, 400))
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else binomtest(c, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b) == exact_mcnemar(b, c)


@given(st.lists(st.tuples(st.sampled_from(ALL_TYPES), st.integers(0, 10).map(lambda k: k / 10)), min_size=1,
                max_size=60))
def test_column_weights_reproduce_every_aggregate_column(samples):
    qts, scores = zip(*samples)
    agg = aggregate_vsibench(qts, scores)
    weights = column_weights({q: s.count for q, s in agg.per_question_type.items()})
    s_q = np.array([agg.per_question_type[q].score for q in sorted(agg.per_question_type)])
    for column, value in agg.columns.items():
        assert (weights[column] is None) == (value is None), column
        if value is not None:
            assert weights[column] @ s_q == pytest.approx(value, abs=1e-12), column


def test_vectorised_bootstrap_equals_the_per_resample_aggregate(monkeypatch):
    monkeypatch.setattr(compare_mod, "_CHUNK", 7)  # several blocks
    rng = np.random.default_rng(5)
    qts = [q for q in ALL_TYPES if q != "object_rel_direction_hard" for _ in range(int(rng.integers(1, 9)))]
    a, b = rng.integers(0, 11, len(qts)) / 10, rng.integers(0, 11, len(qts)) / 10
    columns = list(aggregate_vsibench(qts, a).columns)
    fast = paired_bootstrap(qts, b - a, n_bootstrap=30, seed=3, columns=columns)
    slow = compare_mod._bootstrap_reference(qts, a, b, n_bootstrap=30, seed=3, columns=columns)
    for c in columns:
        np.testing.assert_allclose(fast[c], slow[c], rtol=0, atol=1e-12, err_msg=c)


def test_bootstrap_is_deterministic_per_seed():
    rows = vsi_rows(4)
    a, b = records(rows, answers(rows, 0.4, seed=1)), records(rows, answers(rows, 0.6, seed=2))
    r1, r2 = (compare_records(a, b, n_bootstrap=3000, seed=7).to_dict() for _ in range(2))
    assert r1 == r2
    r3 = compare_records(a, b, n_bootstrap=3000, seed=8).to_dict()
    assert [c["ci_low"] for c in r3["columns"]] != [c["ci_low"] for c in r1["columns"]]
    assert [c["delta"] for c in r3["columns"]] == [c["delta"] for c in r1["columns"]]  # point estimates unchanged
    shuffled = compare_records(b[::-1], a[::-1], n_bootstrap=3000, seed=7)  # record order does not matter
    assert [c.delta for c in shuffled.columns] == [-c["delta"] for c in r1["columns"]]


def _synthetic(n_per_type, rng, shift=0.05):
    qts = [q for q in ALL_TYPES for _ in range(n_per_type)]
    mca = np.isin(qts, MCA_QUESTION_TYPES)
    a = np.where(mca, rng.random(len(qts)) < 0.5, rng.integers(0, 11, len(qts)) / 10).astype(float)
    b = np.where(mca, rng.random(len(qts)) < 0.5 + shift, np.clip(rng.integers(0, 11, len(qts)) / 10 + shift, 0, 1))
    return qts, a, b.astype(float)


def _width(qts, a, b, column, seed=0):
    d = paired_bootstrap(qts, b - a, n_bootstrap=2000, seed=seed)[column]
    lo, hi = np.quantile(d, [0.025, 0.975])
    return hi - lo


def test_ci_width_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = _synthetic(40, rng), _synthetic(640, rng)  # 16x the samples: ~4x narrower
    for column in ("macro_official_all", "micro_all", "RelDist", "ObjCnt"):
        assert _width(*large, column) < 0.4 * _width(*small, column), column


def test_ci_covers_a_known_delta_most_of_the_time():
    rng = np.random.default_rng(1)
    n, shift = 60, 0.1
    # population delta per type: MCA +0.1 (Bernoulli 0.5 -> 0.6); NA: E[clip(U{0..1} + 0.1)] - E[U{0..1}] = 0.09
    true_q = {q: 0.1 if q in MCA_QUESTION_TYPES else 0.09 for q in ALL_TYPES}
    w = column_weights({q: n for q in ALL_TYPES})["macro_official_all"]
    truth = w @ np.array([true_q[q] for q in sorted(ALL_TYPES)])
    hits = 0
    for rep in range(60):
        qts, a, b = _synthetic(n, rng, shift)
        d = paired_bootstrap(qts, b - a, n_bootstrap=1000, seed=rep)["macro_official_all"]
        lo, hi = np.quantile(d, [0.025, 0.975])
        hits += lo <= truth <= hi
    assert hits >= 51  # nominal 95 %: P(<= 50 of 60) < 1 %


def test_unpaired_ids_are_counted_and_benchmarks_must_match():
    rows = vsi_rows(2)
    recs = records(rows, answers(rows))
    result = compare_records(recs, recs[:-5], n_bootstrap=100)
    assert (result.n_paired, result.n_only_a, result.n_only_b) == (len(rows) - 5, 5, 0)
    assert "5 ids only in A" in result.warnings[0]
    other = [{**r, "ground_truth": "Z"} if r["options"] else r for r in recs]
    with pytest.raises(ConfigError, match="different benchmarks"):
        compare_records(recs, other)
    with pytest.raises(ConfigError, match="share no sample ids"):
        compare_records(recs[:3], recs[3:])
    with pytest.raises(ConfigError, match="mode 'strict'"):
        compare_records(recs, recs, mode="strict")
    with pytest.raises(ConfigError, match="--bootstrap"):
        compare_records(recs, recs, n_bootstrap=0)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    rows = vsi_rows(3)
    a = make_run(root / "a", rows, answers(rows, 0.4, seed=1), config=eval_config("uniform", 16))
    b = make_run(root / "b", rows, answers(rows, 0.7, seed=2), config=eval_config("uniform", 32),
                 skip={rows[0]["id"]})
    return a, b


def test_compare_runs_reports_config_diff_and_partial(two_runs):
    a, b = two_runs
    result = compare_runs(a, b, n_bootstrap=500)
    assert result.config_diff["frames.num_frames"] == [16, 32]
    assert result.b["partial"] and result.a["label"] == "uniform 16f tiny-qwen" and result.n_only_a == 1
    assert any("PARTIAL" in w for w in result.warnings)
    assert [c.column for c in result.columns] == list(COMPARE_COLUMNS)


def test_cli_compare_table_and_json(two_runs):
    from posevlm.cli.compare import compare

    app = typer.Typer()
    app.command()(compare)
    app.command("noop")(lambda: None)
    a, b = two_runs
    table = CliRunner().invoke(app, ["compare", str(a), str(b), "--bootstrap", "300"])
    assert table.exit_code == 0, table.output
    assert "macro_official_all" in table.output and "McNemar" in table.output and "within noise" in table.output
    out = CliRunner().invoke(app, ["compare", str(a), str(b), "--bootstrap", "300", "--seed", "4", "--json"])
    doc = json.loads(out.output)
    assert doc["n_bootstrap"] == 300 and doc["seed"] == 4 and doc["n_paired"] == doc["a"]["n_done"] - 1
    assert compare.__doc__.count("        posevlm compare ") == 2
