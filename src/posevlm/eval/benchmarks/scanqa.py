"""ScanQA (question answering on ScanNet scans) from its released ``ScanQA_v1.0_<split>.json`` files.

Released format (ATR-DBI/ScanQA ``docs/dataset.md``): a JSON list of ::

    {"question_id": "val-scene0011-0", "scene_id": "scene0011_00", "question": str, "answers": [str, ...],
     "object_ids": [int, ...], "object_names": [str, ...]}

Splits ``train | val`` carry answers; the test files (``test_w_obj`` / ``test_wo_obj``) do not and are
refused (scores need references). Records (``open_qa`` format): ``id`` = the first 48 bits of
sha256("scanqa/<question_id>") (run ids are ints; ``question_id`` keeps the released string), ``dataset`` =
``scannet`` (frames under ``<frames-root>/scannet/<scene_id>``), ``scene_name`` = ``scene_id``,
``question_type`` = ``open_ended``, ``question``, ``answers``, ``ground_truth`` = the first answer,
``object_ids`` / ``object_names`` kept, ``options`` = None. The val split has 4,675 questions in the commonly
cited release; the loader reports what the file holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks.annotation_files import find_annotation_file, read_json
from posevlm.eval.benchmarks.base import BenchmarkSpec
from posevlm.eval.benchmarks.sqa3d import SCANNET_DATASET

__all__ = ["SCANQA_SPLITS", "scanqa_file_name", "scanqa_record_id", "scanqa_records", "load_scanqa", "BENCHMARK"]

SCANQA_SPLITS: tuple[str, ...] = ("train", "val")


def scanqa_file_name(split: str) -> str:
    """The released file name of a split."""
    if split not in SCANQA_SPLITS:
        raise ConfigError(f"ScanQA split must be one of {', '.join(SCANQA_SPLITS)} (--bench-config; the test files "
                          f"have no answers); got {split!r}", field="benchmark.config", value=split)
    return f"ScanQA_v1.0_{split}.json"


def scanqa_record_id(question_id: str) -> int:
    """Stable 48-bit int id of a released ``question_id`` string."""
    return int.from_bytes(hashlib.sha256(f"scanqa/{question_id}".encode()).digest()[:6], "big")


def scanqa_records(items: Any, *, path: Path = Path("ScanQA")) -> list[dict[str, Any]]:
    """Records from the parsed released list, sorted by id.

    Raises:
        InputFileError: not a list of objects, a missing / malformed field, no answers, duplicate question ids.
    """
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InputFileError(f"{path} is not a JSON list of question objects; is it a released ScanQA file?", path=path)
    records, ids = [], {}
    for item in items:
        qid = item.get("question_id")
        bad = [k for k in ("question_id", "scene_id", "question")
               if not isinstance(item.get(k), str) or not item[k].strip()]
        if bad:
            raise InputFileError(f"{path}: question {qid!r} has no valid {', '.join(bad)} (non-empty strings)",
                                 path=path)
        answers = item.get("answers")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise InputFileError(f"{path}: question {qid!r} has answers={answers!r}; scoring needs a non-empty list of "
                                 "strings (the test files have none: evaluate on train or val)", path=path)
        rid = scanqa_record_id(qid)
        if rid in ids:
            raise InputFileError(f"{path}: question_id {qid!r} appears twice" if ids[rid] == qid else
                                 f"{path}: question ids {ids[rid]!r} and {qid!r} hash to the same id", path=path)
        ids[rid] = qid
        records.append({"id": rid, "question_id": qid, "dataset": SCANNET_DATASET, "scene_name": item["scene_id"],
                        "question_type": "open_ended", "question": item["question"], "options": None,
                        "ground_truth": answers[0], "answers": list(answers),
                        "object_ids": list(item.get("object_ids") or []),
                        "object_names": list(item.get("object_names") or [])})
    return sorted(records, key=lambda r: r["id"])


def load_scanqa(source: str | Path, *, split: str = "val", local_files_only: bool = False) -> list[dict[str, Any]]:
    """All records of a split. ``source``: the released file, a folder holding it, or a hub dataset id."""
    path = find_annotation_file(source, scanqa_file_name(split), local_files_only=local_files_only)
    return scanqa_records(read_json(path), path=path)


def _load(benchmark: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not benchmark.get("source"):
        raise ConfigError("--benchmark scanqa needs --source: ScanQA_v1.0_<split>.json, its folder, or a hub "
                          "dataset id", field="benchmark.source")
    return load_scanqa(benchmark["source"], split=benchmark.get("config") or "val")


BENCHMARK = BenchmarkSpec("scanqa", _load, "ScanQA on ScanNet scans (released ScanQA_v1.0_<split>.json; configs "
                          "train | val); free-text answers, EM@1 / EM-R, BLEU-1/4, METEOR, ROUGE-L, CIDEr",
                          task_format="scanqa", default_config="val")
