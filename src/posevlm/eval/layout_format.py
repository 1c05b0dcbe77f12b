"""The ``layout`` task format: point cloud -> SpatialLM layout script, scored by oriented box IoU (F1 at IoU 0.25 and
0.5 for walls and boxes), used by the ``synthetic_layout`` benchmark (``benchmarks/point_tasks.py``).

Records carry ``question_type`` = ``layout``, ``question`` = the instruction
(:data:`~posevlm.eval.layout_script.LAYOUT_PROMPT`) and ``ground_truth`` = the target layout script in the point
cloud's frame. Scoring reads the script from the model output under each mode and runs
:func:`~posevlm.eval.layout_script.score_layout` against the target:

=============  ===========================================================================================
mode           script read from the output
=============  ===========================================================================================
``official``   the output as it is (lines that are not ``name=Wall(...)`` / ``name=Bbox(...)`` are counted
               as ``unparsed`` and dropped)
``lenient``    the text outside ``<think>`` blocks; of a fenced code block (````` ``` `````), its body
``legacy``     as ``official`` (there is no earlier layout scorer to reproduce)
=============  ===========================================================================================

Per record and mode: ``layout`` (``score_layout``'s dict: walls / boxes x "0.25" / "0.5" x precision, recall, F1,
tp, n_pred, n_gt; ``unparsed``), ``score`` = the sample's F1 at IoU 0.25 over walls and boxes together (tp, predicted
and ground-truth counts of both kinds summed: the per-sample score ``posevlm compare`` pairs), ``status`` ``empty``
when no entity parsed (scored as an empty prediction), else ``ok``.

Aggregate columns: ``wall_f1_25``, ``wall_f1_50``, ``box_f1_25``, ``box_f1_50`` (micro over samples:
:func:`~posevlm.eval.layout_script.aggregate_layout_scores`), ``sample_f1_25`` (mean over samples of ``score``, the
column ``posevlm compare`` tests with a paired bootstrap; no McNemar test, the scores are not 0/1). Error records
count as empty predictions against their target.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError
from posevlm.eval.layout_script import IOU_THRESHOLDS, LAYOUT_PROMPT, aggregate_layout_scores, score_layout
from posevlm.eval.prompts import GenerationSettings, PromptPreset
from posevlm.eval.task_format import TaskFormat
from posevlm.registry import Registry

__all__ = ["LAYOUT_QUESTION_TYPE", "LAYOUT_MODES", "LAYOUT_COLUMNS", "layout_prompts", "read_layout_output",
           "sample_f1", "score_layout_record", "aggregate_layout", "FORMAT"]

LAYOUT_QUESTION_TYPE = "layout"
LAYOUT_MODES: tuple[str, ...] = ("official", "lenient", "legacy")
#: aggregate column -> (kind, IoU threshold key) of the micro F1
LAYOUT_COLUMNS: dict[str, tuple[str, str]] = {"wall_f1_25": ("walls", "0.25"), "wall_f1_50": ("walls", "0.5"),
                                              "box_f1_25": ("boxes", "0.25"), "box_f1_50": ("boxes", "0.5")}
_HEADERS = {"wall_f1_25": "Wall F1@.25", "wall_f1_50": "Wall F1@.5", "box_f1_25": "Box F1@.25",
            "box_f1_50": "Box F1@.5", "sample_f1_25": "F1@.25 (mean)"}
_THINK = re.compile(r"<think>.*?(</think>|$)", re.S)
_FENCE = re.compile(r"```[\w-]*\n(.*?)(```|$)", re.S)


# ------------------------------------------------------------------------------------------ prompts
def _render(record: Mapping[str, Any]) -> str:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"record {record.get('id')!r}: field 'question' must be the layout instruction; got "
                          f"{question!r}", field="question", value=question)
    return question.strip()


#: Prompt presets of the layout format: ``official`` and its alias ``point_cloud`` (the name the point-cloud QA
#: prompt has, so one ``--prompt`` serves both point-cloud benchmarks): the instruction as it is; the backend puts
#: the point span in front of it.
layout_prompts: Registry[PromptPreset] = Registry("prompt preset")
for _name in ("official", "point_cloud"):
    layout_prompts.register(_name, PromptPreset(
        name=_name, version=1,
        description="the record's instruction (SpatialLM's 'Detect walls, doors, windows, boxes.'); greedy, 1024 "
                    "new tokens (a room's script)",
        source="posevlm (SpatialLM's instruction without its code template)",
        strings={"instruction": LAYOUT_PROMPT}, generation=GenerationSettings(max_new_tokens=1024), _render=_render,
    ))


# ------------------------------------------------------------------------------------------ scoring
def read_layout_output(raw_output: str, mode: str) -> str:
    """The layout script a mode reads from a model output (module table)."""
    if mode in ("official", "legacy"):
        return raw_output
    if mode == "lenient":
        text = _THINK.sub("", raw_output)
        fence = _FENCE.search(text)
        return fence.group(1) if fence else text
    raise ConfigError(f"parsing mode {mode!r} does not apply to layout scripts; modes: {', '.join(LAYOUT_MODES)}",
                      field="mode", value=mode)


def sample_f1(scores: Mapping[str, Any], threshold: str = "0.25") -> float:
    """F1 of one sample at one IoU threshold over walls and boxes together (their tp / counts summed)."""
    tp = n_pred = n_gt = 0
    for kind in ("walls", "boxes"):
        entry = scores[kind][threshold]
        tp, n_pred, n_gt = tp + entry["tp"], n_pred + entry["n_pred"], n_gt + entry["n_gt"]
    if n_pred == 0 and n_gt == 0:
        return 1.0
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gt if n_gt else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _target(record: Mapping[str, Any]) -> str:
    target = record.get("ground_truth")
    if not isinstance(target, str):
        raise ConfigError(f"record {record.get('id')!r}: 'ground_truth' must be the target layout script; got "
                          f"{type(target).__name__}", field="ground_truth", value=target)
    return target


def score_layout_record(record: Mapping[str, Any], raw_output: str, *,
                        modes: Sequence[str] = LAYOUT_MODES) -> dict[str, Any]:
    """Score one model output under each mode (``TaskFormat.score_record``; ``kind`` = ``"layout"``).

    Returns:
        ``{..., "modes": {mode: {"answer", "text", "status", "score", "hits": None, "flags": [], "layout"}}}``
        (``answer`` = ``text`` = the script the mode read; ``layout`` = ``score_layout``'s dict).
    Raises:
        ConfigError: raw_output not a str, a target that does not parse, an unknown mode.
    """
    if not isinstance(raw_output, str):
        raise ConfigError(f"raw_output for record {record.get('id')!r} must be a str; got "
                          f"{type(raw_output).__name__}", field="raw_output", value=raw_output)
    target = _target(record)
    out_modes = {}
    for mode in modes:
        script = read_layout_output(raw_output, mode)
        scores = score_layout(script, target)
        empty = all(scores[k][t]["n_pred"] == 0 for k in ("walls", "boxes") for t in scores[k])
        out_modes[mode] = {"answer": script, "text": script, "status": "empty" if empty else "ok",
                           "score": sample_f1(scores), "hits": None, "flags": [], "layout": scores}
    return {"id": record.get("id"), "dataset": record.get("dataset"), "scene_name": record.get("scene_name"),
            "question_type": record.get("question_type"), "kind": "layout", "ground_truth": record.get("ground_truth"),
            "raw_output": raw_output, "flags": [], "modes": out_modes}


# -------------------------------------------------------------------------------------- aggregation
def _record_scores(record: Mapping[str, Any], mode: str) -> dict[str, Any]:
    try:
        entry = record["scores"][mode]
    except KeyError:
        raise ConfigError(f"mode {mode!r} was not scored; use one of the run's parse modes", field="mode",
                          value=mode) from None
    if "layout" in entry:
        return entry["layout"]
    return score_layout("", _target(record))  # an error record: an empty prediction against its target


def _definitions() -> dict[str, str]:
    how = {"walls": "walls scored as boxes along their segment", "boxes": "oriented 3D box IoU, same category"}
    defs = {c: f"F1 of {kind} at IoU >= {t} ({how[kind]}), micro over samples: tp, predicted and ground-truth counts "
               "summed, largest one-to-one matching" for c, (kind, t) in LAYOUT_COLUMNS.items()}
    defs["sample_f1_25"] = ("mean over samples of the sample's F1 at IoU >= 0.25 over walls and boxes together "
                            "(the per-sample score of posevlm compare)")
    return defs


def _block(records: Sequence[Mapping[str, Any]], mode: str) -> dict[str, Any]:
    per = [_record_scores(r, mode) for r in records]
    micro = aggregate_layout_scores(per) if per else {}
    scores = np.array([r["scores"][mode]["score"] for r in records], dtype=np.float64)
    columns: dict[str, float | None] = {
        c: (micro[kind][t]["f1"] if kind in micro and t in micro[kind] else None)
        for c, (kind, t) in LAYOUT_COLUMNS.items()}
    columns["sample_f1_25"] = float(np.add.reduce(scores) / scores.size) if scores.size else None
    unparsed = int(sum(int(p.get("unparsed", 0)) for p in per))
    warnings = [f"{unparsed} output line(s) were not layout entities and were dropped"] if unparsed else []
    per_type = {LAYOUT_QUESTION_TYPE: {"score": columns["sample_f1_25"], "count": len(records)}} if records else {}
    return {"columns": columns, "per_question_type": per_type, "n": len(records), "warnings": warnings}


def aggregate_layout(records: Sequence[Mapping[str, Any]], mode: str = "official") -> dict[str, Any]:
    """Aggregate run records of a layout benchmark under one mode (the shape of ``VsiBenchAggregate.to_dict()``:
    ``columns``, ``per_question_type``, ``per_dataset``, ``definitions``, ``n``, ``warnings``). Records are taken
    in id order, so every number is independent of record and shard order."""
    recs = sorted(records, key=lambda r: r["id"])
    out = _block(recs, mode)
    datasets = sorted({r["dataset"] for r in recs})
    out["per_dataset"] = {d: _block([r for r in recs if r["dataset"] == d], mode) for d in datasets}
    out["definitions"] = _definitions()
    return out


# ---------------------------------------------------------------------------------- task format
def _column_types(column: str) -> tuple[str, ...]:
    return (LAYOUT_QUESTION_TYPE,)


def _column_weights(type_counts: Mapping[str, int]) -> dict[str, np.ndarray | None]:
    qs = sorted(type_counts)
    return {"sample_f1_25": (np.array([q == LAYOUT_QUESTION_TYPE for q in qs], dtype=np.float64)
                             if LAYOUT_QUESTION_TYPE in qs else None)}


def _column_means(question_types: Sequence[str], scores: np.ndarray) -> tuple[dict, dict]:
    s = np.asarray(scores, dtype=np.float64)
    return ({"sample_f1_25": float(np.add.reduce(s) / s.size) if s.size else None},
            {"sample_f1_25": "mean over the paired samples of the sample's F1 at IoU >= 0.25 (walls and boxes)"})


FORMAT = TaskFormat(
    name="layout", title="Layout (SpatialLM script)", question_types=(LAYOUT_QUESTION_TYPE,), prompts=layout_prompts,
    score_record=score_layout_record, aggregate=aggregate_layout,
    table_columns=(*LAYOUT_COLUMNS, "sample_f1_25"), column_headers=_HEADERS, column_types=_column_types,
    compare_columns=("sample_f1_25",), accuracy_columns=(), column_weights=_column_weights,
    column_means=_column_means, noted_columns=("sample_f1_25",), defined_columns=tuple(LAYOUT_COLUMNS),
    description=f"layout scripts: oriented box IoU, F1 at IoU {' / '.join(map(str, IOU_THRESHOLDS))} for walls and "
                "boxes",
)
