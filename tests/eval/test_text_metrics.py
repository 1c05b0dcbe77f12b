"""ScanQA / SQA3D text metrics (spec eval.md §7): EM normalisation properties, refined EM, SQA3D
prefixes, pycocoevalcap bridge with and without Java, and the missing-extra error.

The live METEOR run loads a 60 MB paraphrase table (~11 s here) and runs wherever Java is installed
(CI has it). The missing-Java and broken-Java paths always run."""

import stat
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posevlm.errors import ConfigError
from posevlm.eval import (
    SQA3D_PREFIXES,
    OptionalDependencyError,
    caption_scores,
    exact_match_scores,
    java_status,
    normalize_answer,
    refined_exact_match,
    scanqa_scores,
    simple_tokenize,
    sqa3d_question_prefix,
    sqa3d_scores,
    text_exact_match,
)

coco = pytest.importorskip("pycocoevalcap", reason="optional extra eval-text not installed")
PREDICTIONS = {"q1": "The brown chair.", "q2": "a table near the wall", "q3": "two", "q4": "on the left"}
REFERENCES = {"q1": ["brown chair"], "q2": ["table near wall", "table"], "q3": ["2", "two chairs"], "q4": ["left"]}
words = st.text(alphabet=st.sampled_from("abcdefgh AN .,!-'Th3"), max_size=30)


@given(words)
def test_normalisation_is_idempotent_and_ignores_case_punctuation_articles(text):
    n = normalize_answer(text)
    assert normalize_answer(n) == n and n == n.strip() and "  " not in n
    assert normalize_answer(text.upper()) == n
    assert normalize_answer(f"The {text}!") == n
    assert text_exact_match(text.upper() + ".", [text]) == 1.0


def test_normalisation_rules():
    assert normalize_answer("The Brown-Chair, near A wall.") == "brown chair near wall"
    assert normalize_answer("3.5 m") == "3.5 m" and normalize_answer("two", number_words=True) == "2"
    assert normalize_answer("anthem theater") == "anthem theater"  # articles only as whole words


def test_exact_match_raw_vs_normalised_vs_refined():
    assert text_exact_match("Brown chair.", ["brown chair"], normalize=False) == 0.0  # the fork's raw EM
    assert text_exact_match("Brown chair.", ["brown chair"]) == 1.0
    assert refined_exact_match("chair", ["brown chair"]) == 1.0 and text_exact_match("chair", ["brown chair"]) == 0.0
    assert refined_exact_match("brown chair by the door", ["brownchair"]) == 1.0
    assert refined_exact_match("", ["chair"]) == 0.0 and refined_exact_match("...", ["chair"]) == 0.0
    assert refined_exact_match("chair", [""]) == 0.0


@given(st.lists(st.tuples(words, st.lists(words, min_size=1, max_size=3)), max_size=20))
def test_em_ordering_raw_le_normalised_le_refined(items):
    if not items:
        return
    preds, refs = zip(*items)
    s = exact_match_scores(list(preds), list(refs))
    assert s["n"] == len(items)
    assert 0.0 <= s["em_raw"] <= s["em_normalized"] + 1e-12 and s["em_normalized"] <= s["em_refined"] + 1e-12


def test_sqa3d_prefixes_and_breakdown():
    qs = ["What is on my left?", "  is the door open?", "How many chairs?", "Can I sit?", "Which way?", "Where?"]
    assert [sqa3d_question_prefix(q) for q in qs] == list(SQA3D_PREFIXES)
    out = sqa3d_scores(["chair", "yes", "2", "no", "left", "here"], [["chair"], ["no"], ["two"], ["no"], ["Left"],
                                                                     ["there"]], qs)
    assert out["overall"]["n"] == 6 and out["overall"]["em_normalized"] == pytest.approx(3 / 6)
    assert sum(v["n"] for v in out["per_prefix"].values()) == 6 and out["per_prefix"]["how"]["em_normalized"] == 0.0
    with pytest.raises(ConfigError, match="questions"):
        sqa3d_scores(["a"], [["a"]], [])


def test_caption_metrics_identical_answers_are_perfect():
    refs = {k: [v[0]] for k, v in REFERENCES.items()}
    preds = {k: v[0] for k, v in REFERENCES.items()}
    s = caption_scores(preds, refs, tokenizer="simple", metrics=("BLEU-1", "ROUGE-L", "CIDEr"))
    assert s.values["BLEU-1"].value == pytest.approx(1.0) and s.values["ROUGE-L"].value == pytest.approx(1.0)
    assert s.n == 4 and s.tokenizer == "simple" and s.values["CIDEr"].value > 0


def test_caption_metrics_invariant_to_id_names_and_order():
    metrics = ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr")
    base = caption_scores(PREDICTIONS, REFERENCES, tokenizer="simple", metrics=metrics).to_dict()
    keys = list(PREDICTIONS)[::-1]
    renamed = caption_scores({f"x{k}": PREDICTIONS[k] for k in keys}, {f"x{k}": REFERENCES[k] for k in keys},
                             tokenizer="simple", metrics=metrics).to_dict()
    assert renamed["values"] == pytest.approx(base["values"])


def test_only_complete_sets_are_scored():
    with pytest.raises(ConfigError, match="complete sets"):
        caption_scores({"q1": "chair"}, REFERENCES, tokenizer="simple")
    with pytest.raises(ConfigError, match="unknown metrics"):
        caption_scores(PREDICTIONS, REFERENCES, metrics=("SPICE",))


@pytest.fixture
def no_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java anywhere
    return tmp_path


def test_missing_java_degrades_to_simple_tokenizer_and_no_meteor(no_java):
    ok, reason = java_status()
    assert not ok and "not found" in reason
    s = caption_scores(PREDICTIONS, REFERENCES)
    assert s.tokenizer == "simple" and "PTB tokenizer unavailable" in s.tokenizer_reason
    assert s.values["METEOR"].value is None and "java not found" in s.values["METEOR"].reason
    assert s.values["BLEU-1"].value is not None and s.to_dict()["unavailable"] == {"METEOR": s.values["METEOR"].reason}
    with pytest.raises(ConfigError, match="needs Java"):
        caption_scores(PREDICTIONS, REFERENCES, tokenizer="ptb")


def test_broken_java_is_reported_not_raised(no_java):
    fake = no_java / "java"
    fake.write_text("#!/bin/sh\necho 'Error: could not create the Java Virtual Machine' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    ok, reason = java_status()
    assert not ok and "exited with 1" in reason and "Virtual Machine" in reason
    assert caption_scores(PREDICTIONS, REFERENCES, metrics=("METEOR",)).values["METEOR"].value is None


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)
    with pytest.raises(OptionalDependencyError, match=r"posevlm\[eval-text\]") as info:
        caption_scores(PREDICTIONS, REFERENCES, tokenizer="simple")
    assert info.value.extra == "eval-text" and isinstance(info.value, ImportError)
    assert exact_match_scores(["chair"], [["chair"]])["em_normalized"] == 1.0  # EM needs no extra


@pytest.mark.skipif(not java_status()[0], reason="no working Java")
def test_ptb_tokenizer_is_used_when_java_works():
    s = caption_scores(PREDICTIONS, REFERENCES, metrics=("BLEU-1", "ROUGE-L"))
    assert s.tokenizer == "ptb" and s.tokenizer_reason is None
    assert simple_tokenize("The brown chair, (left).") == "the brown chair left"


@pytest.mark.slow
@pytest.mark.skipif(not java_status()[0], reason="METEOR needs Java; the missing-Java path is tested above")
def test_scanqa_report_with_live_meteor():
    out = scanqa_scores(PREDICTIONS, REFERENCES)
    assert out["unavailable"] == {} and 0.0 < out["values"]["METEOR"] <= 1.0
    assert out["n"] == 4 and out["em_raw"] <= out["em_normalized"] <= out["em_refined"]
