"""Task formats: how a family of benchmarks is prompted, scored, aggregated, tabulated and compared.

A benchmark (``BenchmarkSpec``) names its format (``task_format``); the runner, ``posevlm report`` and
``posevlm compare`` dispatch through the ``task_formats`` registry, so a benchmark with another answer
format needs a format, not a branch in those recipes.

=============  ========================================================================================
format         benchmarks, per-sample score, aggregate
=============  ========================================================================================
``vsibench``   ``vsibench``, ``synthetic_vsi``: letters / numbers parsed per mode, accuracy or MRA,
               the official VSI-Bench macro and every named average (``vsibench_format.py``)
``sqa3d``      ``sqa3d``: free-text answers, exact match (EM@1 normalised, EM-R, raw EM), EM per
               question prefix (``open_qa.py``)
``scanqa``     ``scanqa``: free-text answers, EM@1 + BLEU-1/4, METEOR, ROUGE-L, CIDEr (``open_qa.py``)
``pose_views`` ``synthetic_pose``: option letters over views shown shuffled, accuracy per type and their
               macro (``pose_format.py``)
``layout``     ``synthetic_layout``: SpatialLM layout scripts, oriented box IoU, F1 at IoU 0.25 / 0.5 for
               walls and boxes (micro), per-sample F1@0.25 for compare (``layout_format.py``)
=============  ========================================================================================

Every format produces run records of one shape (``scores[mode] = {"answer", "text", "status", "score",
"hits", "flags", ...}``) and aggregate dicts of one shape (``columns``, ``per_question_type``,
``per_dataset``, ``definitions``, ``n``, ``warnings``), so the run store, resume, sharding and the
report files are shared. Plug-ins add formats through the entry-point group ``posevlm.task_formats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from posevlm.registry import Registry

__all__ = ["TaskFormat", "task_formats", "task_format_of"]


@dataclass(frozen=True)
class TaskFormat:
    """A registered task format.

    Attributes:
        name: registry name (``BenchmarkSpec.task_format``).
        title: benchmark family name in table titles ("VSI-Bench").
        question_types: the ``question_type`` values its records may carry (others are refused).
        prompts: the prompt presets (``PromptPreset``) that render its records (``EvalConfig.prompt``).
        score_record: ``(record, raw_output, *, modes) -> {"kind", "flags", "modes": {mode: {...}}}``.
        aggregate: ``(run records, mode) -> aggregate dict`` (``columns``, ``per_question_type``
            {type: {score, count}}, ``per_dataset``, ``definitions``, ``n``, ``warnings``); run records are
            the ``records/*.jsonl`` rows (``scores`` per mode).
        table_columns: the columns of ``posevlm report`` tables, in order; ``micro_columns`` are added
            with ``--micro``.
        column_headers: column -> printed header.
        noted_columns: columns whose definition is printed under every table as "Header = column: ...";
            ``defined_columns`` are printed as "column: ...".
        column_types: column -> the question types its samples come from (``n`` of a column).
        compare_columns: columns of ``posevlm compare``; ``accuracy_columns`` get an exact McNemar test.
        column_weights: ``{question_type: n} -> {column: w}`` with column == w @ (per-type means over
            ``sorted`` types), None if absent: the bootstrap recomputes every column from it.
        column_means: ``(question types (N,), scores (N,)) -> (columns, definitions)`` for compare's means.
        plot: ``posevlm report`` draws ``score_vs_frames.png`` (the VSI-Bench task panels).
    """

    name: str
    title: str
    question_types: tuple[str, ...]
    prompts: Registry
    score_record: Callable[..., dict[str, Any]]
    aggregate: Callable[[Sequence[Mapping[str, Any]], str], dict[str, Any]]
    table_columns: tuple[str, ...]
    column_headers: Mapping[str, str]
    column_types: Callable[[str], tuple[str, ...]]
    compare_columns: tuple[str, ...]
    accuracy_columns: tuple[str, ...]
    column_weights: Callable[[Mapping[str, int]], dict[str, np.ndarray | None]]
    column_means: Callable[[Sequence[str], np.ndarray], tuple[dict[str, float | None], dict[str, str]]]
    micro_columns: tuple[str, ...] = ()
    noted_columns: tuple[str, ...] = ()
    defined_columns: tuple[str, ...] = ()
    plot: bool = False
    description: str = ""


#: Task formats by name; built-ins load their module on first use.
task_formats: Registry[TaskFormat] = Registry("task format", "task_formats")
task_formats.register_lazy("vsibench", "posevlm.eval.vsibench_format:FORMAT",
                           description="VSI-Bench: option letters and numbers, accuracy / MRA, official macro")
task_formats.register_lazy("sqa3d", "posevlm.eval.open_qa:SQA3D_FORMAT",
                           description="SQA3D: free-text answers, EM@1 / EM-R, per question prefix")
task_formats.register_lazy("scanqa", "posevlm.eval.open_qa:SCANQA_FORMAT",
                           description="ScanQA: free-text answers, EM@1 / EM-R, BLEU-1/4, METEOR, ROUGE-L, CIDEr")
task_formats.register_lazy("pose_views", "posevlm.eval.pose_format:FORMAT",
                           description="pose questions over views shown shuffled: accuracy per type, macro")
task_formats.register_lazy("layout", "posevlm.eval.layout_format:FORMAT",
                           description="layout scripts: oriented box IoU, F1 at IoU 0.25 / 0.5 for walls and boxes")


def task_format_of(config: Mapping[str, Any]) -> TaskFormat:
    """The task format of an eval config (``EvalConfig.to_dict()`` or ``run_config.json``'s config): its
    benchmark's ``task_format``. Raises ``ConfigError`` for an unknown benchmark (e.g. a plug-in's that is not
    installed)."""
    from posevlm.eval.benchmarks import benchmarks

    return task_formats.get(benchmarks.get((config.get("benchmark") or {}).get("name")).task_format)
