"""The ``vsibench`` task format: VSI-Bench's question types, prompts, parsing, aggregation, tables and
comparison columns, assembled from ``parsing``, ``aggregate``, ``report`` and ``compare`` (see
``task_format.py``). Used by ``vsibench`` and ``synthetic_vsi``."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.eval.aggregate import aggregate_scored, aggregate_vsibench
from posevlm.eval.compare import ACCURACY_COLUMNS, COMPARE_COLUMNS, column_weights
from posevlm.eval.metrics import QUESTION_KINDS
from posevlm.eval.parsing import score_record
from posevlm.eval.prompts import prompts
from posevlm.eval.report import COLUMN_HEADERS, MICRO_COLUMNS, TABLE_COLUMNS, column_question_types
from posevlm.eval.task_format import TaskFormat

__all__ = ["FORMAT"]


def _aggregate(records: Sequence[Mapping[str, Any]], mode: str) -> dict[str, Any]:
    view = [{"question_type": r["question_type"], "dataset": r["dataset"], "modes": r["scores"]} for r in records]
    return aggregate_scored(view, mode=mode).to_dict()


def _means(question_types: Sequence[str], scores: np.ndarray) -> tuple[dict, dict]:
    agg = aggregate_vsibench(question_types, scores)
    return agg.columns, agg.definitions


FORMAT = TaskFormat(
    name="vsibench", title="VSI-Bench", question_types=tuple(QUESTION_KINDS), prompts=prompts,
    score_record=score_record, aggregate=_aggregate, table_columns=TABLE_COLUMNS, column_headers=COLUMN_HEADERS,
    column_types=column_question_types, compare_columns=COMPARE_COLUMNS, accuracy_columns=ACCURACY_COLUMNS,
    column_weights=column_weights, column_means=_means, micro_columns=MICRO_COLUMNS,
    noted_columns=("macro_official_all",), defined_columns=("RelDir",), plot=True,
    description="VSI-Bench: option letters and numbers, accuracy / MRA, official macro",
)
