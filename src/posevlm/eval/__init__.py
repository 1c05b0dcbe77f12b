"""Evaluation core: VSI-Bench per-sample metrics, answer parsing modes, labelled aggregation, and
ScanQA/SQA3D text metrics. Pure functions over records and arrays; no models, no files.

Headline numbers use parsing mode ``official`` and ``columns["macro_official_all"]`` (the official
VSI-Bench overall); every other average is named (``micro``, ``macro_legacy10``) and defined in
``VsiBenchAggregate.definitions``. See ``design.md``.
"""

from posevlm.eval.aggregate import (
    AVERAGES,
    REL_DIRECTION_TYPES,
    TASKS,
    VSIBENCH_FULL_COUNTS,
    QuestionTypeScore,
    VsiBenchAggregate,
    aggregate_scored,
    aggregate_vsibench,
    vsibench_average,
)
from posevlm.eval.metrics import (
    MCA_QUESTION_TYPES,
    MRA_LEGACY_THRESHOLDS,
    MRA_THRESHOLDS,
    NA_QUESTION_TYPES,
    QUESTION_KINDS,
    MetricSpec,
    accuracy,
    accuracy_array,
    ground_truth_is_valid,
    metrics,
    mra,
    mra_array,
    mra_hits,
    mra_legacy,
    mra_legacy_array,
    mra_legacy_hits,
    question_kind,
)
from posevlm.eval.parsing import (
    DEFAULT_MODES,
    PARSE_STATUSES,
    AnswerParser,
    ParsedAnswer,
    answer_parsers,
    parse_answer,
    score_record,
    score_records,
)
from posevlm.eval.text_metrics import (
    CAPTION_METRICS,
    SQA3D_PREFIXES,
    CaptionScores,
    MetricValue,
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
from posevlm.eval.task_format import TaskFormat, task_formats, task_format_of

__all__ = [
    # metrics
    "MCA_QUESTION_TYPES", "NA_QUESTION_TYPES", "QUESTION_KINDS", "MRA_THRESHOLDS", "MRA_LEGACY_THRESHOLDS",
    "question_kind", "accuracy", "accuracy_array", "ground_truth_is_valid", "mra", "mra_hits", "mra_array",
    "mra_legacy", "mra_legacy_hits", "mra_legacy_array", "MetricSpec", "metrics",
    # parsing
    "PARSE_STATUSES", "DEFAULT_MODES", "ParsedAnswer", "AnswerParser", "answer_parsers", "parse_answer",
    "score_record", "score_records",
    # aggregation
    "AVERAGES", "TASKS", "REL_DIRECTION_TYPES", "VSIBENCH_FULL_COUNTS", "QuestionTypeScore",
    "VsiBenchAggregate", "vsibench_average", "aggregate_vsibench", "aggregate_scored",
    # text metrics
    "CAPTION_METRICS", "SQA3D_PREFIXES", "OptionalDependencyError", "MetricValue", "CaptionScores",
    "normalize_answer", "text_exact_match", "refined_exact_match", "exact_match_scores",
    "sqa3d_question_prefix", "sqa3d_scores", "java_status", "simple_tokenize", "caption_scores",
    "scanqa_scores",
    # task formats (how a benchmark family is prompted, scored, aggregated, compared)
    "TaskFormat", "task_formats", "task_format_of",
]
