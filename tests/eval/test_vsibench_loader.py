"""VSI-Bench records from a local copy in the Hugging Face file formats (parquet per config, jsonl)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks.vsibench import filter_records, load_vsibench

ROWS = [
    {"id": 7, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_counting",
     "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "2"},
    {"id": 3, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "object_rel_direction_easy",
     "question": "If I am standing by the sofa...\\nleft or right?", "options": ["A. left", "B. right"],
     "ground_truth": "B"},
    {"id": 5, "dataset": "scannetpp", "scene_name": "09c1414f1b", "question_type": "room_size_estimation",
     "question": "What is the size of this room (in square meters)?", "options": [], "ground_truth": "21.4"},
]


def write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.int64()), ("dataset", pa.string()), ("scene_name", pa.string()),
                        ("question_type", pa.string()), ("question", pa.string()),
                        ("options", pa.list_(pa.string())), ("ground_truth", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def test_parquet_per_config_is_read_and_normalised(tmp_path):
    write_parquet(tmp_path / "full" / "test-00000-of-00001.parquet", ROWS)
    write_parquet(tmp_path / "pruned" / "test-00000-of-00001.parquet", ROWS[:1])
    records = load_vsibench(tmp_path, config="full")
    assert [r["id"] for r in records] == [3, 5, 7]
    by_id = {r["id"]: r for r in records}
    assert by_id[7]["scene_name"] == "41069025" and isinstance(by_id[7]["scene_name"], str)  # never cast digits
    assert by_id[7]["options"] is None and by_id[5]["options"] is None  # empty option lists mean numerical
    assert by_id[3]["options"] == ["A. left", "B. right"]
    assert len(load_vsibench(tmp_path, config="pruned")) == 1


def test_jsonl_file_and_filters(tmp_path):
    path = tmp_path / "vsi.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    records = load_vsibench(path)
    assert [r["id"] for r in filter_records(records, datasets=["scannet", "scannetpp"])] == [3, 5]
    assert [r["id"] for r in filter_records(records, question_types=["object_counting"])] == [7]
    assert [r["id"] for r in filter_records(records, limit=2)] == [3, 5]


def test_errors_name_the_input_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="full, debiased, pruned"):
        load_vsibench(tmp_path, config="tiny")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(InputFileError, match="lacks"):
        load_vsibench(bad)
    bad.write_text("{not json\n")
    with pytest.raises(InputFileError, match="bad.jsonl:1"):
        load_vsibench(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join(json.dumps(r) for r in ROWS + ROWS[:1]))
    with pytest.raises(InputFileError, match="duplicate"):
        load_vsibench(dup)
