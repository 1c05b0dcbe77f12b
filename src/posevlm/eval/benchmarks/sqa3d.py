"""SQA3D (situated question answering in ScanNet scenes) from its released balanced files.

Released format (SilongYong/SQA3D ``assets/dataset.md``; ``sqa_task/balanced/``), one pair per split
``train | val | test``::

    v1_balanced_questions_<split>_scannetv2.json      {"questions": [{"question_id": int, "scene_id": "scene0380_00",
                                                       "situation": str, "alternative_situation": [str],
                                                       "question": str}, ...], ...}
    v1_balanced_sqa_annotations_<split>_scannetv2.json {"annotations": [{"question_id": int, "scene_id": str,
                                                       "answers": [{"answer": str, "answer_confidence": str,
                                                       "answer_id": int}], "answer_type": str, "question_type": str,
                                                       "position": {...}, "rotation": {...}}, ...], ...}

Questions and annotations pair by ``question_id`` (every question needs exactly one annotation). Records
(``open_qa`` format): ``id`` = ``question_id`` (an int already), ``dataset`` = ``scannet`` (so the frames are
``<frames-root>/scannet/<scene_id>``, the layout VSI-Bench's ScanNet scenes use), ``scene_name`` = ``scene_id``,
``question_type`` = the question's prefix group (what / is / how / can / which / others), ``situation``,
``question``, ``answers`` (every answer), ``ground_truth`` = the first answer, ``options`` = None. The test
split has 3,519 questions in the commonly cited release; the loader reports what the files hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks.annotation_files import find_annotation_file, read_json
from posevlm.eval.benchmarks.base import BenchmarkSpec
from posevlm.eval.text_metrics import sqa3d_question_prefix

__all__ = ["SQA3D_SPLITS", "SCANNET_DATASET", "sqa3d_file_names", "sqa3d_records", "load_sqa3d", "BENCHMARK"]

SQA3D_SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The ``dataset`` of SQA3D / ScanQA records: frames live under ``<frames-root>/scannet/<scene_id>``.
SCANNET_DATASET = "scannet"


def sqa3d_file_names(split: str) -> tuple[str, str]:
    """(questions file, annotations file) names of a split."""
    if split not in SQA3D_SPLITS:
        raise ConfigError(f"SQA3D split must be one of {', '.join(SQA3D_SPLITS)} (--bench-config); got {split!r}",
                          field="benchmark.config", value=split)
    return (f"v1_balanced_questions_{split}_scannetv2.json", f"v1_balanced_sqa_annotations_{split}_scannetv2.json")


def _entries(doc: Any, key: str, path: Path) -> list[dict]:
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InputFileError(f"{path} has no {key!r} list of objects; is it the released SQA3D {key} file?", path=path)
    return items


def _field(item: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = item.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise InputFileError(f"{path}: question_id {item.get('question_id')!r} has {key}={value!r}; expected a "
                             f"{'non-empty string' if kind is str else kind.__name__}", path=path)
    return value


def sqa3d_records(questions: Any, annotations: Any, *, questions_path: Path = Path("questions"),
                  annotations_path: Path = Path("annotations")) -> list[dict[str, Any]]:
    """Records from the parsed questions and annotations documents, sorted by id.

    Raises:
        InputFileError: a missing / malformed field, duplicate question ids, questions without an annotation
        or annotations without a question, or a scene that differs between the two files.
    """
    qs = _entries(questions, "questions", questions_path)
    anns = _entries(annotations, "annotations", annotations_path)
    by_id: dict[int, dict] = {}
    for a in anns:
        qid = _field(a, "question_id", int, annotations_path)
        if qid in by_id:
            raise InputFileError(f"{annotations_path}: question_id {qid} is annotated twice", path=annotations_path)
        by_id[qid] = a
    records, seen = [], set()
    for q in qs:
        qid = _field(q, "question_id", int, questions_path)
        if qid in seen:
            raise InputFileError(f"{questions_path}: question_id {qid} appears twice", path=questions_path)
        seen.add(qid)
        a = by_id.get(qid)
        if a is None:
            raise InputFileError(f"{questions_path}: question_id {qid} has no annotation in {annotations_path}; "
                                 "use the questions and annotations files of the same split", path=annotations_path)
        scene = _field(q, "scene_id", str, questions_path)
        if a.get("scene_id", scene) != scene:
            raise InputFileError(f"question_id {qid}: scene {scene} in {questions_path.name} but {a['scene_id']} in "
                                 f"{annotations_path.name}", path=annotations_path)
        raw = a.get("answers")
        answers = [x.get("answer") for x in raw] if isinstance(raw, list) and all(isinstance(x, dict) for x in raw) \
            else None
        if not answers or not all(isinstance(x, str) and x.strip() for x in answers):
            raise InputFileError(f"{annotations_path}: question_id {qid} has answers={raw!r}; expected "
                                 "[{'answer': str, ...}, ...]", path=annotations_path)
        question = _field(q, "question", str, questions_path)
        records.append({"id": qid, "question_id": qid, "dataset": SCANNET_DATASET, "scene_name": scene,
                        "question_type": sqa3d_question_prefix(question), "question": question,
                        "situation": _field(q, "situation", str, questions_path), "options": None,
                        "ground_truth": answers[0], "answers": answers})
    orphans = sorted(set(by_id) - seen)
    if orphans:
        raise InputFileError(f"{annotations_path}: {len(orphans)} annotations have no question in {questions_path} "
                             f"(e.g. {orphans[:3]}); use the files of the same split", path=annotations_path)
    return sorted(records, key=lambda r: r["id"])


def load_sqa3d(source: str | Path, *, split: str = "test", local_files_only: bool = False) -> list[dict[str, Any]]:
    """All records of a split. ``source``: the folder holding the released files (searched recursively), the
    questions file (its annotations file next to it), or a hub dataset id holding them."""
    q_name, a_name = sqa3d_file_names(split)
    path = Path(source)
    q_path = find_annotation_file(source, q_name, local_files_only=local_files_only)
    a_source = q_path.parent if path.is_file() else source
    a_path = find_annotation_file(a_source, a_name, local_files_only=local_files_only)
    return sqa3d_records(read_json(q_path), read_json(a_path), questions_path=q_path, annotations_path=a_path)


def _load(benchmark: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not benchmark.get("source"):
        raise ConfigError("--benchmark sqa3d needs --source: the folder of the released SQA3D files "
                          "(sqa_task/balanced), a questions file, or a hub dataset id", field="benchmark.source")
    return load_sqa3d(benchmark["source"], split=benchmark.get("config") or "test")


BENCHMARK = BenchmarkSpec("sqa3d", _load, "SQA3D situated QA on ScanNet scans (released balanced json pairs; "
                          "configs train | val | test); free-text answers, EM@1 / EM-R per question prefix",
                          task_format="sqa3d", default_config="test")
