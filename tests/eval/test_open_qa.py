"""Free-text QA scoring (SQA3D / ScanQA): the three modes, the aggregate (order invariance, per-prefix means,
caption metrics equal to the text-metric functions), the prompt, and the task formats' compare columns (weights
reproduce the means; the vectorised bootstrap equals a per-resample recomputation)."""

import numpy as np
import pytest

from posevlm.errors import ConfigError
from posevlm.eval.compare import _draws, _groups, compare_records, paired_bootstrap
from posevlm.eval.open_qa import (
    QA_MODES, SCANQA_FORMAT, SQA3D_FORMAT, aggregate_open_qa, qa_prompts, read_prediction, score_qa_record,
)  # fmt: skip
from posevlm.eval.parsing import score_record
from posevlm.eval.prompts import OFFICIAL_NA_POST_PROMPT, OFFICIAL_PRE_PROMPT
from posevlm.eval.task_format import task_formats
from posevlm.eval.text_metrics import (
    SQA3D_PREFIXES, caption_scores, refined_exact_match, sqa3d_question_prefix, text_exact_match,
)  # fmt: skip

REC = {"id": 7, "dataset": "scannet", "scene_name": "scene0000_00", "question_type": "what",
       "question": "What color is the desk?", "situation": "I face the window.", "options": None,
       "ground_truth": "brown", "answers": ["brown", "dark brown"]}


def test_modes_read_and_score_as_documented():
    s = score_qa_record(REC, "  The Brown.\n")["modes"]
    assert s["official"]["answer"] == "The Brown." and s["official"]["score"] == 1.0  # normalised EM
    assert s["legacy"]["answer"] == "The Brown." and s["legacy"]["score"] == 0.0  # the fork's raw EM
    assert s["legacy"]["em_normalized"] == 1.0 and s["official"]["em_raw"] == 0.0
    s = score_qa_record(REC, "<think>the desk looks dark</think><answer>Dark brown.\nIt is wooden.</answer>")["modes"]
    assert s["lenient"]["answer"] == "Dark brown" and s["lenient"]["score"] == 1.0
    assert s["official"]["score"] == 0.0  # official reads the whole output
    for out, expected in (("brown wooden desk", (0.0, 1.0)), ("white desk", (0.0, 0.0)), ("Dark-Brown", (1.0, 1.0))):
        s = score_qa_record(REC, out)["modes"]["official"]
        assert (s["score"], s["em_refined"]) == expected, out  # EM-R: one side contains the other


def test_empty_outputs_score_zero_in_every_mode():
    for out in ("", "   ", "."):
        modes = score_qa_record({**REC, "answers": ["."]}, out)["modes"]
        assert all(m["status"] == "empty" and m["score"] == 0.0 and m["em_refined"] == 0.0 for m in modes.values())
    modes = score_qa_record(REC, "<think>it is brown</think>")["modes"]  # reasoning, no answer
    assert modes["lenient"]["status"] == "empty" and modes["lenient"]["em_refined"] == 0.0
    assert modes["official"]["status"] == "ok" and modes["official"]["score"] == 0.0  # read as a whole


def test_scores_agree_with_the_text_metric_functions_on_random_outputs():
    rng = np.random.default_rng(0)
    words = ["brown", "Brown", "dark", "the", "a", "desk", "two", "2", ".", ",", "  ", "\n"]
    refs = [["brown"], ["dark brown", "brown"], ["2"], ["the desk"]]
    for _ in range(300):
        out = "".join(rng.choice(words, rng.integers(0, 6)))
        r = {**REC, "answers": refs[rng.integers(len(refs))]}
        modes = score_qa_record(r, out)["modes"]
        for mode in QA_MODES:
            pred = read_prediction(out, mode)
            m = modes[mode]
            if m["status"] == "empty":
                continue
            assert m["em_raw"] == text_exact_match(pred, r["answers"], normalize=False)
            assert m["em_normalized"] == text_exact_match(pred, r["answers"])
            assert m["em_refined"] == refined_exact_match(pred, r["answers"])
            assert m["score"] == (m["em_raw"] if mode == "legacy" else m["em_normalized"])


def test_mode_entries_have_the_vsibench_entry_shape():
    vsi = score_record({"id": 1, "question_type": "object_counting", "ground_truth": "3", "options": None}, "3")
    qa = score_qa_record(REC, "brown")
    assert set(qa) == set(vsi)
    for mode in QA_MODES:
        assert set(vsi["modes"]["official"]) <= set(qa["modes"][mode])


def test_records_without_references_or_with_unknown_modes_are_refused():
    with pytest.raises(ConfigError, match="answers"):
        score_qa_record({**REC, "answers": []}, "brown")
    with pytest.raises(ConfigError, match="raw_output"):
        score_qa_record(REC, None)
    with pytest.raises(ConfigError, match="official, lenient, legacy"):
        score_qa_record(REC, "brown", modes=("strict",))


def test_official_prompt_puts_the_situation_on_its_own_line_before_the_question():
    preset = qa_prompts.get("official")
    assert preset.render(REC) == "\n".join([OFFICIAL_PRE_PROMPT, REC["situation"], REC["question"],
                                            OFFICIAL_NA_POST_PROMPT])
    assert preset.render({**REC, "situation": None}) == "\n".join([OFFICIAL_PRE_PROMPT, REC["question"],
                                                                   OFFICIAL_NA_POST_PROMPT])
    with pytest.raises(ConfigError, match="question"):
        preset.render({**REC, "question": ""})
    assert preset.generation.greedy


def _run_records(n: int, seed: int, types=SQA3D_PREFIXES, datasets=("scannet",)) -> list[dict]:
    rng = np.random.default_rng(seed)
    answers = ["brown", "two", "yes", "left", "white chair"]
    outs = ["brown", "Two", "yes.", "right", "white", ""]
    recs = []
    for i in range(n):
        refs = [answers[rng.integers(len(answers))]]
        r = {"id": int(rng.integers(1 << 40)), "dataset": datasets[i % len(datasets)], "scene_name": "s",
             "question_type": types[rng.integers(len(types))], "ground_truth": refs[0], "answers": refs}
        r["scores"] = score_qa_record(r, outs[rng.integers(len(outs))])["modes"]
        recs.append(r)
    return recs


def test_aggregate_is_independent_of_record_order_and_matches_direct_means():
    recs = _run_records(60, 1)
    agg = aggregate_open_qa(recs, "official", prefixes=True)
    shuffled = [recs[i] for i in np.random.default_rng(2).permutation(len(recs))]
    assert aggregate_open_qa(shuffled, "official", prefixes=True) == agg
    for p in SQA3D_PREFIXES:
        scores = [r["scores"]["official"]["score"] for r in recs if r["question_type"] == p]
        assert agg["columns"][f"em_{p}"] == pytest.approx(np.mean(scores) if scores else None)
        assert agg["per_question_type"].get(p, {"count": 0})["count"] == len(scores)
    assert agg["columns"]["em"] == pytest.approx(np.mean([r["scores"]["official"]["score"] for r in recs]))
    assert agg["columns"]["em_refined"] == pytest.approx(np.mean([r["scores"]["official"]["em_refined"]
                                                                  for r in recs]))
    assert agg["per_dataset"]["scannet"]["columns"] == agg["columns"]


def test_per_dataset_aggregates_are_the_aggregates_of_each_subset():
    recs = _run_records(40, 3, datasets=("scannet", "other"))
    agg = aggregate_open_qa(recs, "lenient", prefixes=True)
    for d in ("scannet", "other"):
        sub = aggregate_open_qa([r for r in recs if r["dataset"] == d], "lenient", prefixes=True)
        assert agg["per_dataset"][d]["columns"] == sub["columns"]


def test_scanqa_caption_columns_equal_caption_scores_of_the_mode_predictions(monkeypatch):
    import posevlm.eval.text_metrics as tm

    monkeypatch.setattr(tm, "java_status", lambda timeout_s=30.0: (False, "java disabled in this test"))
    recs = _run_records(12, 4, types=("open_ended",))
    agg = aggregate_open_qa(recs, "lenient", captions=True)
    direct = caption_scores({r["id"]: r["scores"]["lenient"]["answer"] for r in recs},
                            {r["id"]: r["answers"] for r in recs}, tokenizer="simple")
    for column, metric in (("bleu_1", "BLEU-1"), ("bleu_4", "BLEU-4"), ("rouge_l", "ROUGE-L"), ("cider", "CIDEr")):
        assert agg["columns"][column] == direct.values[metric].value
    assert agg["columns"]["meteor"] is None
    assert any("java disabled in this test" in w for w in agg["warnings"])


def test_unscored_mode_is_refused():
    with pytest.raises(ConfigError, match="was not scored"):
        aggregate_open_qa([{**r, "scores": {"official": r["scores"]["official"]}} for r in _run_records(3, 5)],
                          "legacy")


@pytest.mark.parametrize("fmt", [SQA3D_FORMAT, SCANQA_FORMAT])
def test_column_weights_reproduce_the_column_means(fmt):
    recs = _run_records(50, 6, types=fmt.question_types)
    qt = [r["question_type"] for r in recs]
    s = np.array([r["scores"]["official"]["score"] for r in recs])
    means, _ = fmt.column_means(qt, s)
    qs = sorted(set(qt))
    per_type = np.array([s[np.array(qt) == q].mean() for q in qs])
    weights = fmt.column_weights({q: qt.count(q) for q in qs})
    for c in fmt.compare_columns:
        assert (weights[c] is None) == (means[c] is None)
        if weights[c] is not None:
            assert weights[c] @ per_type == pytest.approx(means[c], abs=1e-12)
    assert means["em"] == pytest.approx(fmt.aggregate(recs, "official")["columns"]["em"])


@pytest.mark.parametrize("name", ["sqa3d", "scanqa"])
def test_vectorised_bootstrap_equals_recomputing_every_resample(name):
    fmt = task_formats.get(name)
    recs_a, recs_b = _run_records(30, 7, types=fmt.question_types), _run_records(30, 8, types=fmt.question_types)
    qt = [r["question_type"] for r in recs_a]
    sa = np.array([r["scores"]["official"]["score"] for r in recs_a])
    sb = np.array([r["scores"]["official"]["score"] for r in recs_b])
    fast = paired_bootstrap(qt, sb - sa, n_bootstrap=50, seed=3, task_format=name)
    qs, positions = _groups(qt)
    for start, block in _draws(np.random.default_rng(3), [len(p) for p in positions], 50):
        for r in range(len(block[0])):
            rows = np.concatenate([p[idx[r]] for p, idx in zip(positions, block)])
            types = [qt[i] for i in rows]
            ma, mb = fmt.column_means(types, sa[rows])[0], fmt.column_means(types, sb[rows])[0]
            for c in fmt.compare_columns:
                if fast[c] is not None:
                    assert fast[c][start + r] == pytest.approx(mb[c] - ma[c], abs=1e-12)


def test_compare_counts_discordant_pairs_per_prefix():
    recs_a = _run_records(40, 9)
    recs_b = [{**r, "scores": score_qa_record(r, "brown")["modes"]} for r in recs_a]
    result = compare_records(recs_a, recs_b, n_bootstrap=100, task_format="sqa3d")
    for c in result.columns:
        types = SQA3D_PREFIXES if c.column == "em" else (c.column[3:],)
        pairs = [(a["scores"]["official"]["score"], b["scores"]["official"]["score"])
                 for a, b in zip(recs_a, recs_b) if a["question_type"] in types]
        assert c.n == len(pairs)
        assert (c.a_only, c.b_only) == (sum(x > y for x, y in pairs), sum(y > x for x, y in pairs))


def test_question_types_are_the_prefix_groups():
    assert SQA3D_FORMAT.question_types == SQA3D_PREFIXES
    assert {sqa3d_question_prefix(q) for q in ("What is it?", "Is it?", "how many", "Can I?", "Which way?",
                                                "Where is it?")} == set(SQA3D_PREFIXES)
