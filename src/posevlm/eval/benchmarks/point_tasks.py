"""Point-cloud benchmarks from synthetic scans: ``synthetic_layout`` (layout scripts) and ``synthetic_point_qa``
(VSI-Bench questions asked over the scene's point cloud).

Both read the folder :func:`posevlm.eval.layout_data.write_point_task_data` writes (``--source`` = the folder or
its ``.jsonl``); the model sees the scene's cloud (``posevlm eval --frames point_cloud``,
``posevlm.eval.point_inputs``).

``synthetic_layout`` (task format ``layout``): one record per scan from ``layout.jsonl``: ``id``, ``dataset``
(``synthetic``), ``scene_name``, ``question_type`` = ``layout``, ``question`` = the instruction, ``options`` = None,
``ground_truth`` = the target layout script (cloud frame), ``point_cloud`` (the cloud it was written for) and
``meta`` (cloud recipe, ``origin``, counts).

``synthetic_point_qa`` (task format ``vsibench``): the synthetic VSI records of :data:`POINT_QA_TYPES`, the
question types whose answer depends on the scene alone: counting, object size, room size, absolute and relative
distance, relative direction (easy / medium / hard, from object centres) and route planning (object centres and
the floor). ``obj_appearance_order`` asks about the order of first sightings in the video, which a point cloud does
not have, and is left out (a file holding it is refused, naming the type).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks.base import BenchmarkSpec
from posevlm.eval.benchmarks.synthetic_vsi import QUESTION_TYPES, read_benchmark_jsonl

__all__ = ["POINT_QA_TYPES", "LAYOUT_FILE", "POINT_QA_FILE", "layout_records", "load_layout_benchmark",
           "load_point_qa", "LAYOUT_BENCHMARK", "POINT_QA_BENCHMARK"]

#: the synthetic VSI question types a point cloud can answer (no video order)
POINT_QA_TYPES: tuple[str, ...] = tuple(q for q in QUESTION_TYPES if q != "obj_appearance_order")
LAYOUT_FILE = "layout.jsonl"
POINT_QA_FILE = "point_qa.jsonl"


def _file(source: Any, name: str, flag: str) -> Path:
    if not source:
        raise ConfigError(f"--benchmark {flag} needs --source: the folder written by write_point_task_data or its "
                          f"{name}", field="benchmark.source")
    path = Path(source)
    return path / name if path.is_dir() else path


def layout_records(rows: list[dict[str, Any]], dataset: str = "synthetic") -> list[dict[str, Any]]:
    """Benchmark records (module docstring) from ``read_layout_dataset`` rows."""
    from posevlm.eval.layout_format import LAYOUT_QUESTION_TYPE

    return [{"id": int(r["id"]), "dataset": r.get("dataset", dataset), "scene_name": r["scene_name"],
             "question_type": LAYOUT_QUESTION_TYPE, "question": r["prompt"], "options": None,
             "ground_truth": r["target"], "point_cloud": r["point_cloud"], "meta": r.get("meta", {})} for r in rows]


def load_layout_benchmark(source: str | Path) -> list[dict[str, Any]]:
    """The ``synthetic_layout`` records of a folder (its ``layout.jsonl``) or a ``layout.jsonl``."""
    from posevlm.eval.layout_data import read_layout_dataset

    return layout_records(read_layout_dataset(_file(source, LAYOUT_FILE, "synthetic_layout")))


def load_point_qa(source: str | Path) -> list[dict[str, Any]]:
    """The ``synthetic_point_qa`` records of a folder (its ``point_qa.jsonl``) or a synthetic VSI ``.jsonl``.

    Raises:
        InputFileError: records of a question type a point cloud cannot answer (``obj_appearance_order``).
    """
    path = _file(source, POINT_QA_FILE, "synthetic_point_qa")
    records = read_benchmark_jsonl(path)
    other = sorted({r["question_type"] for r in records} - set(POINT_QA_TYPES))
    if other:
        raise InputFileError(f"{path} holds question types a point cloud cannot answer: {', '.join(other)} (they "
                             f"need the video); keep {', '.join(POINT_QA_TYPES)} (write_point_task_data does)",
                             path=path)
    return records


def _load_layout(benchmark: Mapping[str, Any]) -> list[dict[str, Any]]:
    return load_layout_benchmark(benchmark.get("source"))


def _load_point_qa(benchmark: Mapping[str, Any]) -> list[dict[str, Any]]:
    return load_point_qa(benchmark.get("source"))


LAYOUT_BENCHMARK = BenchmarkSpec(
    "synthetic_layout", _load_layout, "point cloud -> SpatialLM layout script from synthetic scans' exact walls and "
    "boxes (a write_point_task_data folder); F1 at IoU 0.25 / 0.5; --frames point_cloud", task_format="layout")
POINT_QA_BENCHMARK = BenchmarkSpec(
    "synthetic_point_qa", _load_point_qa, "the view-independent synthetic VSI questions asked over a scan's point "
    "cloud (a write_point_task_data folder); VSI-Bench metrics; --frames point_cloud")
