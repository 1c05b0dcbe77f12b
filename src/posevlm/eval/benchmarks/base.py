"""The benchmark interface: what a registered benchmark provides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["BenchmarkSpec"]


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registered benchmark.

    Attributes:
        name: registry name (``--benchmark``).
        load: ``benchmark config -> records`` (VSI-Bench schema: ``id, dataset, scene_name, question_type,
            question, options, ground_truth``); the config holds ``source`` (a path or hub id), ``config`` and
            anything the benchmark reads. Filters and limits are applied by the runner.
        description: one line for ``posevlm list benchmarks``.
        default_source: the source used when none is given (a hub id), or None (``--source`` required).
        task_format: the ``task_formats`` name that prompts, scores, aggregates and compares its records.
        default_config: the ``config`` used when none is given (``--bench-config``: a VSI-Bench config, a split).
    """

    name: str
    load: Callable[[Mapping[str, Any]], list[dict]]
    description: str = ""
    default_source: str | None = None
    task_format: str = "vsibench"
    default_config: str | None = None
