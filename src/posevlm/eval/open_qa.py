"""Free-text question answering over ScanNet scans (SQA3D, ScanQA): prompts, per-record scoring under the
three parsing modes, aggregation, and the ``sqa3d`` / ``scanqa`` task formats (spec eval.md §7).

Records (from ``benchmarks/sqa3d.py`` / ``benchmarks/scanqa.py``) carry ``answers`` (every reference answer),
``ground_truth`` (the first one), ``question`` and, for SQA3D, ``situation``. Scoring reads the model output
under each mode and compares it with every reference (``text_metrics``):

=============  =================================================  ==============================
mode           prediction read from the output                     ``score`` (EM@1)
=============  =================================================  ==============================
``official``   the output, stripped                                normalised EM (§7.3)
``lenient``    last ``<answer>`` block / text outside ``<think>``,  normalised EM
               its first line, trailing period dropped
``legacy``     the output, stripped (the fork's ``pred_response``)  raw EM (case and punctuation
                                                                   sensitive, the fork's rule)
=============  =================================================  ==============================

Each mode entry also holds ``em_raw``, ``em_normalized`` and ``em_refined`` (LEO-style EM-R) of its
prediction; ``status`` is ``empty`` for an empty prediction (scored 0), else ``ok``.

Aggregates: ``em`` (mean ``score``), ``em_refined``; SQA3D adds ``em_<prefix>`` (the question-prefix
groups what / is / how / can / which / others, which are its records' ``question_type``); ScanQA adds the
corpus caption metrics BLEU-1, BLEU-4, METEOR, ROUGE-L, CIDEr of the mode's predictions (pycocoevalcap, PTB
tokenisation when Java works; CIDEr's IDF comes from the scored set, so PARTIAL runs are not comparable).
Error records count as empty predictions. Means are over samples in id order (independent of record order).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError
from posevlm.eval.parsing import _lenient_text
from posevlm.eval.prompts import OFFICIAL_NA_POST_PROMPT, OFFICIAL_PRE_PROMPT, GenerationSettings, PromptPreset
from posevlm.eval.task_format import TaskFormat
from posevlm.eval.text_metrics import (
    SQA3D_PREFIXES, OptionalDependencyError, caption_scores, normalize_answer, refined_exact_match,
    text_exact_match,
)  # fmt: skip
from posevlm.registry import Registry

__all__ = [
    "QA_MODES", "SQA3D_QUESTION_TYPES", "SCANQA_QUESTION_TYPES", "SCANQA_CAPTION_COLUMNS", "qa_prompts",
    "read_prediction", "score_qa_record", "aggregate_open_qa", "SQA3D_FORMAT", "SCANQA_FORMAT",
]  # fmt: skip

QA_MODES: tuple[str, ...] = ("official", "lenient", "legacy")
#: SQA3D records are typed by their question prefix group (``text_metrics.sqa3d_question_prefix``).
SQA3D_QUESTION_TYPES: tuple[str, ...] = SQA3D_PREFIXES
#: ScanQA has no question types: every record is ``open_ended``.
SCANQA_QUESTION_TYPES: tuple[str, ...] = ("open_ended",)
#: aggregate column -> pycocoevalcap metric name.
SCANQA_CAPTION_COLUMNS: dict[str, str] = {"bleu_1": "BLEU-1", "bleu_4": "BLEU-4", "meteor": "METEOR",
                                          "rouge_l": "ROUGE-L", "cider": "CIDEr"}
_SCORE_DEFINITION = {
    "official": "exact match of the stripped output with any reference after normalisation (lower-case, "
                "punctuation and articles dropped, spaces collapsed)",
    "lenient": "exact match after normalisation of the answer read leniently (last <answer> block or text "
               "outside <think>, first line, trailing period dropped)",
    "legacy": "raw exact match of the stripped output with any reference (case and punctuation sensitive, "
              "the fork's rule)",
}


# ------------------------------------------------------------------------------------------ prompts
def _text(record: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"record {record.get('id')!r}: field {key!r} must be a non-empty string; got {value!r}",
                          field=key, value=value)
    return value.strip()


def _render_official(record: Mapping[str, Any]) -> str:
    situation = _text(record, "situation", required=False)
    question = _text(record, "question", required=True)
    return "\n".join([OFFICIAL_PRE_PROMPT, *([situation] if situation else []), question, OFFICIAL_NA_POST_PROMPT])


#: Prompt presets of the open-QA formats: ``official``.
qa_prompts: Registry[PromptPreset] = Registry("prompt preset")
qa_prompts.register("official", PromptPreset(
    name="official", version=1,
    description="VSI-Bench's official pre-prompt and open-answer post-prompt; SQA3D's situation on its own line "
                "before the question; greedy, 32 new tokens",
    source="posevlm (lmms-eval VSI-Bench strings: lmms_eval/tasks/vsibench/utils.py vsibench_doc_to_text, "
           "NA branch)",
    strings={"pre_prompt": OFFICIAL_PRE_PROMPT, "post_prompt": OFFICIAL_NA_POST_PROMPT, "join": "\n"},
    generation=GenerationSettings(max_new_tokens=32), _render=_render_official,
))


# ------------------------------------------------------------------------------------------ scoring
def read_prediction(raw_output: str, mode: str) -> str:
    """The prediction a mode reads from a model output (see the module table)."""
    if mode == "lenient":  # _lenient_text collapses whitespace: carry the line breaks through it as NUL
        lines = [line.strip() for line in _lenient_text(raw_output.replace("\n", "\0")).split("\0")]
        first = next((line for line in lines if line), "")
        return first[:-1].rstrip() if first.endswith(".") else first
    if mode in ("official", "legacy"):
        return raw_output.strip()
    raise ConfigError(f"parsing mode {mode!r} does not apply to free-text answers; modes: {', '.join(QA_MODES)}",
                      field="mode", value=mode)


def _references(record: Mapping[str, Any]) -> list[str]:
    answers = record.get("answers")
    if not isinstance(answers, (list, tuple)) or not answers or not all(isinstance(a, str) for a in answers):
        raise ConfigError(f"record {record.get('id')!r}: 'answers' must be a non-empty list of reference strings "
                          f"(SQA3D / ScanQA records); got {answers!r}", field="answers", value=answers)
    return list(answers)


def score_qa_record(record: Mapping[str, Any], raw_output: str, *, modes: Sequence[str] = QA_MODES) -> dict[str, Any]:
    """Score one free-text output under each mode (``score_record``'s output shape, ``kind`` = ``"open"``).

    Args:
        record: an SQA3D / ScanQA record (``answers`` required; ``id``, ``dataset``, ``scene_name``,
            ``question_type``, ``ground_truth`` copied through).
        raw_output: the decoded model output, unmodified.
        modes: ``official``, ``lenient``, ``legacy``.
    Returns:
        ``{..., "modes": {mode: {"answer", "text", "status", "score", "hits": None, "flags": [], "em_raw",
        "em_normalized", "em_refined"}}}``; ``answer`` = ``text`` = the prediction the mode read.
    Raises:
        ConfigError: no reference answers, raw_output not a str, unknown mode.
    """
    refs = _references(record)
    if not isinstance(raw_output, str):
        raise ConfigError(f"raw_output for record {record.get('id')!r} must be a str; got "
                          f"{type(raw_output).__name__}", field="raw_output", value=raw_output)
    out_modes = {}
    for mode in modes:
        prediction = read_prediction(raw_output, mode)
        em = {"em_raw": text_exact_match(prediction, refs, normalize=False),
              "em_normalized": text_exact_match(prediction, refs), "em_refined": refined_exact_match(prediction, refs)}
        empty = not normalize_answer(prediction)
        score = 0.0 if empty else (em["em_raw"] if mode == "legacy" else em["em_normalized"])
        out_modes[mode] = {"answer": prediction, "text": prediction, "status": "empty" if empty else "ok",
                           "score": score, "hits": None, "flags": [],
                           **({k: 0.0 for k in em} if empty else em)}
    return {"id": record.get("id"), "dataset": record.get("dataset"), "scene_name": record.get("scene_name"),
            "question_type": record.get("question_type"), "kind": "open", "ground_truth": record.get("ground_truth"),
            "raw_output": raw_output, "flags": [], "modes": out_modes}


# -------------------------------------------------------------------------------------- aggregation
def _mean(values: np.ndarray) -> float | None:
    return float(np.add.reduce(values) / values.size) if values.size else None


def _column_values(records: Sequence[Mapping[str, Any]], mode: str) -> dict[str, np.ndarray]:
    try:
        entries = [r["scores"][mode] for r in records]
    except KeyError:
        raise ConfigError(f"mode {mode!r} was not scored; use one of the run's parse modes", field="mode",
                          value=mode) from None
    return {"score": np.array([e["score"] for e in entries], dtype=np.float64),
            "em_refined": np.array([e.get("em_refined", 0.0) for e in entries], dtype=np.float64)}


def _definitions(mode: str, prefixes: bool, captions: bool) -> dict[str, str]:
    defs = {"em": f"EM@1, mean over samples of the {mode} score: {_SCORE_DEFINITION[mode]}",
            "em_refined": "EM-R, mean over samples: normalised EM, or one side containing the other with spaces "
                          "removed (LEO-style refined EM; an empty prediction never matches)"}
    if prefixes:
        defs.update({f"em_{p}": f"EM@1 over the questions of prefix group '{p}' (leading word what / is / how / "
                                "can / which, else others)" for p in SQA3D_PREFIXES})
    if captions:
        defs.update({c: f"corpus {m} (pycocoevalcap) of the {mode} predictions against all references"
                     for c, m in SCANQA_CAPTION_COLUMNS.items()})
    return defs


def _caption_columns(records: Sequence[Mapping[str, Any]], mode: str, warnings: list[str]) -> dict[str, float | None]:
    predictions = {r["id"]: r["scores"][mode].get("answer") or "" for r in records}
    references = {r["id"]: _references(r) for r in records}
    try:
        scores = caption_scores(predictions, references, metrics=tuple(SCANQA_CAPTION_COLUMNS.values()))
    except OptionalDependencyError as exc:
        warnings.append(f"caption metrics not computed: {exc}")
        return dict.fromkeys(SCANQA_CAPTION_COLUMNS)
    if scores.tokenizer_reason:
        warnings.append(f"caption metrics tokenised with the regex tokeniser: {scores.tokenizer_reason}")
    warnings += [f"{m}: {reason}" for m, reason in scores.to_dict()["unavailable"].items()]
    return {c: scores.values[m].value for c, m in SCANQA_CAPTION_COLUMNS.items()}


def aggregate_open_qa(records: Sequence[Mapping[str, Any]], mode: str = "official", *, prefixes: bool = False,
                      captions: bool = False, by_dataset: bool = True) -> dict[str, Any]:
    """Aggregate run records of an open-QA benchmark under one mode.

    Args:
        records: run records (``scores`` per mode; ``answers`` needed for ``captions``).
        mode: parsing mode of every number.
        prefixes: add ``em_<prefix>`` columns (SQA3D). captions: add the ScanQA caption metrics.
        by_dataset: add ``per_dataset`` (same columns per dataset).
    Returns:
        ``{"columns", "per_question_type", "n", "warnings", "per_dataset", "definitions"}`` (the shape of
        ``VsiBenchAggregate.to_dict()``); absent columns are None.
    """
    recs = sorted(records, key=lambda r: r["id"])
    values = _column_values(recs, mode)
    types = np.array([r["question_type"] for r in recs], dtype=object)
    columns: dict[str, float | None] = {"em": _mean(values["score"]), "em_refined": _mean(values["em_refined"])}
    if prefixes:
        columns.update({f"em_{p}": _mean(values["score"][types == p]) for p in SQA3D_PREFIXES})
    warnings: list[str] = []
    if captions:
        columns.update(_caption_columns(recs, mode, warnings) if recs else dict.fromkeys(SCANQA_CAPTION_COLUMNS))
    per_type = {q: {"score": _mean(values["score"][types == q]), "count": int(np.sum(types == q))}
                for q in sorted(set(types.tolist()))}
    per_dataset = {}
    if by_dataset:
        datasets = sorted({r["dataset"] for r in recs})
        for d in datasets:
            subset = [r for r in recs if r["dataset"] == d]
            if len(datasets) == 1:  # the same sample set: same numbers, and the caption metrics run once
                sub = {"columns": dict(columns), "per_question_type": per_type, "n": len(recs), "warnings": warnings}
            else:
                sub = aggregate_open_qa(subset, mode, prefixes=prefixes, captions=captions, by_dataset=False)
                sub = {k: sub[k] for k in ("columns", "per_question_type", "n", "warnings")}
            per_dataset[d] = sub
    return {"columns": columns, "per_question_type": per_type, "n": len(recs), "warnings": list(warnings),
            "per_dataset": per_dataset, "definitions": _definitions(mode, prefixes, captions)}


# ---------------------------------------------------------------------------------- task formats
def _column_types(question_types: tuple[str, ...]):
    def column_types(column: str) -> tuple[str, ...]:
        prefix = column[3:] if column.startswith("em_") else None
        return (prefix,) if prefix in question_types else question_types
    return column_types


def _weights(question_types: tuple[str, ...], prefixes: bool):
    def column_weights(type_counts: Mapping[str, int]) -> dict[str, np.ndarray | None]:
        qs = sorted(type_counts)
        n = np.array([type_counts[q] for q in qs], dtype=np.float64)
        out: dict[str, np.ndarray | None] = {"em": n / n.sum() if qs else None}
        if prefixes:
            for p in question_types:
                out[f"em_{p}"] = (np.arange(len(qs)) == qs.index(p)).astype(np.float64) if p in qs else None
        return out
    return column_weights


def _means(prefixes: bool):
    def column_means(question_types: Sequence[str], scores: np.ndarray) -> tuple[dict, dict]:
        types, s = np.asarray(question_types, dtype=object), np.asarray(scores, dtype=np.float64)
        columns = {"em": _mean(s), **({f"em_{p}": _mean(s[types == p]) for p in SQA3D_PREFIXES} if prefixes else {})}
        defs = _definitions("official", prefixes, False)
        defs["em"] = "EM@1, mean over the paired samples of the compared mode's score"
        return columns, {c: defs[c] for c in columns}
    return column_means


def _format(name: str, title: str, question_types: tuple[str, ...], *, prefixes: bool, captions: bool,
            description: str) -> TaskFormat:
    prefix_columns = tuple(f"em_{p}" for p in question_types) if prefixes else ()
    caption_columns = tuple(SCANQA_CAPTION_COLUMNS) if captions else ()
    headers = {"em": "EM@1", "em_refined": "EM-R", **{f"em_{p}": p.capitalize() for p in question_types},
               **SCANQA_CAPTION_COLUMNS}

    def aggregate(records: Sequence[Mapping[str, Any]], mode: str) -> dict[str, Any]:
        return aggregate_open_qa(records, mode, prefixes=prefixes, captions=captions)

    return TaskFormat(
        name=name, title=title, question_types=question_types, prompts=qa_prompts, score_record=score_qa_record,
        aggregate=aggregate, table_columns=("em", "em_refined", *prefix_columns, *caption_columns),
        column_headers=headers, column_types=_column_types(question_types),
        compare_columns=("em", *prefix_columns), accuracy_columns=("em", *prefix_columns),
        column_weights=_weights(question_types, prefixes), column_means=_means(prefixes),
        noted_columns=("em",), defined_columns=("em_refined", *caption_columns), description=description,
    )


SQA3D_FORMAT = _format("sqa3d", "SQA3D", SQA3D_QUESTION_TYPES, prefixes=True, captions=False,
                       description="SQA3D: free-text answers, EM@1 / EM-R, per question prefix")
SCANQA_FORMAT = _format("scanqa", "ScanQA", SCANQA_QUESTION_TYPES, prefixes=False, captions=True,
                        description="ScanQA: free-text answers, EM@1 / EM-R, BLEU-1/4, METEOR, ROUGE-L, CIDEr")
