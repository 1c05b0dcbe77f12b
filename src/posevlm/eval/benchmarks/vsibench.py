"""VSI-Bench records from a local copy of the Hugging Face dataset ``nyu-visionx/VSI-Bench`` (or the hub
id when online), normalised to the record schema of eval.md §5.1.

Local copies: the dataset repo cloned or downloaded (parquet files per config, or ``*.jsonl``), or any
single ``.parquet`` / ``.jsonl`` / ``.json`` file. Videos live at ``<video_root>/<dataset>/<scene_name>.mp4``.
Configs: ``full`` (5,130 records), ``debiased``, ``pruned``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks.base import BenchmarkSpec

__all__ = ["VSIBENCH_HUB_ID", "VSIBENCH_CONFIGS", "load_vsibench", "normalize_record", "filter_records"]

VSIBENCH_HUB_ID = "nyu-visionx/VSI-Bench"
VSIBENCH_CONFIGS = ("full", "debiased", "pruned")
_FIELDS = ("id", "dataset", "scene_name", "question_type", "question", "options", "ground_truth")


def normalize_record(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Keep the schema fields with fixed types: int id, string scene names (never cast digits), options
    a list of strings or None, ground truth a string."""
    missing = [f for f in _FIELDS if f not in raw and f != "options"]
    if missing:
        raise InputFileError(f"{where}: record lacks {', '.join(missing)}; is this VSI-Bench?")
    options = raw.get("options")
    if options is not None and not isinstance(options, (list, tuple)):
        options = list(options) if hasattr(options, "__iter__") and not isinstance(options, str) else None
    out = {
        "id": int(raw["id"]), "dataset": str(raw["dataset"]), "scene_name": str(raw["scene_name"]),
        "question_type": str(raw["question_type"]), "question": str(raw["question"]),
        "options": None if options is None or len(options) == 0 else [str(o) for o in options],
        "ground_truth": str(raw["ground_truth"]),
    }
    if "pruned" in raw:
        out["pruned"] = bool(raw["pruned"])
    return out


def _read_local(path: Path, config: str) -> list[dict[str, Any]]:
    if path.is_dir():
        candidates = sorted(path.glob(f"{config}/*.parquet")) or sorted(path.glob(f"**/*{config}*.parquet")) \
            or sorted(path.glob(f"**/{config}*.jsonl")) or sorted(path.glob("*.parquet")) or sorted(path.glob("*.jsonl"))
        if not candidates:
            raise InputFileError(f"{path} holds no VSI-Bench parquet/jsonl files for config {config!r}", path=path)
        rows: list[dict[str, Any]] = []
        for c in candidates:
            rows.extend(_read_local(c, config))
        return rows
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("reading parquet needs pyarrow: pip install 'posevlm[hf]'", field="benchmark") from exc
        return pq.read_table(path).to_pylist()
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        return data if isinstance(data, list) else data.get("data", [])
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path}:{n} is not valid JSON ({exc})", path=path) from exc
    return rows


def load_vsibench(source: str | Path = VSIBENCH_HUB_ID, *, config: str = "full", split: str = "test",
                  local_files_only: bool = False) -> list[dict[str, Any]]:
    """All records of one config, sorted by id. ``source`` is a local path or a hub id."""
    if config not in VSIBENCH_CONFIGS:
        raise ConfigError(f"VSI-Bench config must be one of {', '.join(VSIBENCH_CONFIGS)}; got {config!r}",
                          field="benchmark.config")
    path = Path(source)
    if path.exists():
        rows = _read_local(path, config)
    else:
        try:
            import datasets
        except ImportError as exc:
            raise ConfigError("loading VSI-Bench from the hub needs: pip install 'posevlm[hf]'",
                              field="benchmark") from exc
        from posevlm.hub import hub_offline, hub_status

        if not (local_files_only or hub_offline()) and (problem := hub_status()) is not None:
            raise InputFileError(f"cannot load {source!r} from the hub: {problem}. Fix the network / proxy, set "
                                 "HF_HUB_OFFLINE=1 to use a cached copy, or pass a local copy's directory as --source")
        try:
            ds = datasets.load_dataset(str(source), config, split=split,
                                       download_mode=None if not local_files_only else "reuse_cache_if_exists")
        except Exception as exc:  # noqa: BLE001 - offline / missing: say what to do
            raise InputFileError(f"cannot load {source!r} (config {config}) from the hub or cache ({exc}). Download "
                                 f"it once with `huggingface-cli download {VSIBENCH_HUB_ID} --repo-type dataset "
                                 "--local-dir <dir>` and pass that directory") from exc
        rows = list(ds)
    records = [normalize_record(r, f"{source}") for r in rows]
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise InputFileError(f"{source}: duplicate record ids; point at one config only")
    return sorted(records, key=lambda r: r["id"])


def filter_records(records: Sequence[dict[str, Any]], *, datasets: Sequence[str] | None = None,
                   question_types: Sequence[str] | None = None, scenes: Sequence[str] | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Records matching every given filter (None = no filter), at most ``limit`` (after sorting by id)."""
    out = [r for r in records
           if (not datasets or r["dataset"] in datasets) and (not question_types or r["question_type"] in question_types)
           and (not scenes or r["scene_name"] in scenes)]
    out.sort(key=lambda r: r["id"])
    return out[:limit] if limit else out


def _load(benchmark: Mapping[str, Any]) -> list[dict[str, Any]]:
    return load_vsibench(benchmark.get("source") or VSIBENCH_HUB_ID, config=benchmark.get("config", "full"))


BENCHMARK = BenchmarkSpec("vsibench", _load, "VSI-Bench (5,130 questions, 8 tasks) from a local copy or the hub; "
                          "configs full | debiased | pruned", default_source=VSIBENCH_HUB_ID,
                          default_config="full")

