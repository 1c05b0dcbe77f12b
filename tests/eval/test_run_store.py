"""Run directory: run_config written once and verified, append/scan round trips, a killed writer's
torn last line tolerated and repaired, later records win, resume equals an uninterrupted run.

``make_run`` / ``vsi_rows`` / ``run_record`` build fake runs from the real ``score_record`` and are
imported by test_report.py and test_compare.py.
"""

import datetime as dt
import hashlib
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval import MCA_QUESTION_TYPES, NA_QUESTION_TYPES, score_record
from posevlm.eval.run_store import (
    RunStore,
    canonical_json,
    load_run,
    run_id_for,
    shard_file_name,
)

DATASETS = ("arkitscenes", "scannet")
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def vsi_rows(n_per_type: int = 4, datasets=DATASETS, id0: int = 0) -> list[dict]:
    """HF-style VSI-Bench rows: every question type x dataset (no ApprOrd on ARKitScenes, as in §1.2)."""
    rows = []
    for q in (*NA_QUESTION_TYPES, *MCA_QUESTION_TYPES):
        for d in datasets:
            if q == "obj_appearance_order" and d == "arkitscenes":
                continue
            for _ in range(n_per_type):
                i = id0 + len(rows)
                if q in MCA_QUESTION_TYPES:
                    options = [f"{L}. choice {j}" for j, L in enumerate("ABCD")]
                    row = {"options": options, "ground_truth": "ABCD"[(i * 7) % 4]}
                else:
                    row = {"options": None, "ground_truth": f"{1.0 + (i * 13) % 40 / 4:g}"}
                rows.append({"id": i, "dataset": d, "scene_name": f"scene{i % 5}", "question_type": q,
                             "question": "?", **row})
    return rows


def answers(rows, p_correct: float = 0.5, seed: int = 0) -> list[str]:
    """Raw outputs: the right letter with probability p (else a wrong one); numbers off by a random factor."""
    rng = np.random.default_rng(seed)
    out = []
    for r in rows:
        if r["options"]:
            wrong = "ABCD"[("ABCD".index(r["ground_truth"]) + 1) % 4]
            letter = r["ground_truth"] if rng.random() < p_correct else wrong
            out.append(f"{letter}.")
        else:
            out.append(f"{float(r['ground_truth']) * rng.uniform(0.4, 1.6):.2f}")
    return out


def run_record(row: dict, raw_output: str | None, *, error_kind: str | None = None, attempt: int = 1,
               written: dt.datetime = T0) -> dict:
    """A record in the records/*.jsonl format; scores from the real ``score_record``."""
    if error_kind is None:
        scores = score_record(row, raw_output)["modes"]
        status, error = "ok", None
    else:
        scores = {m: {"answer": None, "text": "", "status": "error", "score": 0.0, "hits": None, "flags": []}
                  for m in ("official", "lenient", "legacy")}
        status, error, raw_output = "error", {"kind": error_kind, "message": "boom"}, None
    return {"id": row["id"], "dataset": row["dataset"], "scene_name": row["scene_name"],
            "question_type": row["question_type"], "ground_truth": row["ground_truth"], "options": row["options"],
            "status": status, "error": error, "raw_output": raw_output, "scores": scores,
            "frames": {"frame_ids": [0, 8, 16], "source": "folder", "video_grid_thw": None, "n_visual_tokens": None},
            "timings_ms": {"generate": 1.5}, "attempt": attempt, "written": written.isoformat()}


def eval_config(sampler: str = "uniform", n: int = 16, model: str = "tiny-qwen") -> dict:
    return {"benchmark": {"name": "vsibench", "config": "full", "filters": {}},
            "model": {"backend": "hf", "name": model},
            "frames": {"source": "folder", "sampler": f"{sampler}__pool-linspace128__n{n}__pair-none__seed0",
                       "num_frames": n},
            "prompt": {"name": "official", "version": 1}, "generation": {"max_new_tokens": 16},
            "parsing": ["official", "lenient", "legacy"]}


def make_run(path, rows, outputs, *, config=None, world: int = 2, skip=(), errors=None):
    """Write a run directory: one record per row except ``skip`` ids; ``errors``: id -> error kind."""
    store = RunStore(path)
    store.create_or_verify(config or eval_config(), [r["id"] for r in rows], provenance={"test": True})
    errors = errors or {}
    for k, (row, raw) in enumerate(zip(rows, outputs)):
        if row["id"] not in skip:
            store.append(run_record(row, raw, error_kind=errors.get(row["id"])), k % world, world)
    return path


# ---- run_config.json -----------------------------------------------------------------------------------------


def test_run_id_is_sha256_of_canonical_config_and_ignores_key_order():
    cfg = eval_config()
    reordered = dict(reversed(list(cfg.items())))
    assert run_id_for(cfg) == run_id_for(reordered) == hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:16]
    assert run_id_for(cfg) != run_id_for(eval_config(n=32))


def test_create_or_verify_writes_once_and_refuses_a_different_config(tmp_path):
    store = RunStore(tmp_path / "run")
    run_id = store.create_or_verify(eval_config(), [3, 1, 2])
    doc = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert doc["format"] == "posevlm.eval_run" and doc["schema_version"] == 1 and doc["run_id"] == run_id
    assert doc["expected_ids"] == [3, 1, 2] and doc["config"] == eval_config() and "posevlm" in doc["provenance"]
    assert store.create_or_verify(eval_config(), [3, 1, 2]) == run_id  # idempotent
    assert json.loads((tmp_path / "run" / "run_config.json").read_text()) == doc  # not rewritten
    other = run_id_for(eval_config(n=32))
    with pytest.raises(ConfigError, match=rf"holds a different configuration \(run_id {run_id} != {other}\); "
                                          "choose another --out"):
        store.create_or_verify(eval_config(n=32), [3, 1, 2])
    with pytest.raises(ConfigError, match="different set of expected ids"):
        store.create_or_verify(eval_config(), [3, 1])
    with pytest.raises(ConfigError, match="duplicates"):
        RunStore(tmp_path / "other").create_or_verify(eval_config(), [1, 1])
    assert not list((tmp_path / "run").glob(".*tmp"))


def test_not_a_run_directory_is_named(tmp_path):
    with pytest.raises(InputFileError, match="not a posevlm eval run directory"):
        load_run(tmp_path)


# ---- append / scan -------------------------------------------------------------------------------------------

texts = st.one_of(st.none(), st.text(max_size=30))  # unicode, newlines, quotes


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3), texts), max_size=40))
def test_append_scan_round_trip_latest_record_wins(tmp_path_factory, ops):
    store = RunStore(tmp_path_factory.mktemp("run"))
    expected = {}
    for k, (rid, rank, raw) in enumerate(ops):
        rec = {"id": rid, "status": "ok", "raw_output": raw, "attempt": 1,
               "written": (T0 + dt.timedelta(seconds=k)).isoformat()}
        store.append(rec, rank, 4)
        expected[rid] = rec
    assert store.scan() == dict(sorted(expected.items()))
    assert list(store.scan()) == sorted(expected)


def test_later_line_wins_within_a_file_and_across_files(tmp_path):
    store = RunStore(tmp_path)
    store.append({"id": 1, "status": "error", "attempt": 1, "written": T0.isoformat()}, 0, 2)
    store.append({"id": 1, "status": "ok", "attempt": 2, "written": T0.isoformat()}, 0, 2)  # same time: line order
    assert store.scan()[1]["status"] == "ok"
    later = (T0 + dt.timedelta(minutes=1)).isoformat()
    store.append({"id": 2, "status": "ok", "attempt": 1, "written": later, "raw_output": "late"}, 0, 2)
    store.append({"id": 2, "status": "ok", "attempt": 1, "written": T0.isoformat(), "raw_output": "early"}, 1, 2)
    records, stats = store.scan_with_stats()
    assert records[2]["raw_output"] == "late" and stats.superseded == 2 and stats.lines == 4


def test_truncated_last_line_is_ignored_then_repaired(tmp_path):
    store = RunStore(tmp_path)
    rows = vsi_rows(1)
    first, second, third = (run_record(r, "A") for r in rows[-3:])
    store.append(first, 0, 1)
    path = store.shard_path(0, 1)
    line = json.dumps(second)
    with open(path, "a") as f:  # a writer killed mid-line
        f.write(line[: len(line) // 2])
    records, stats = store.scan_with_stats()
    assert records == {first["id"]: first} and stats.truncated == (path.name,)
    assert store.done_ids() == {first["id"]}
    RunStore(tmp_path).append(third, 0, 1)  # a resumed writer cuts the torn tail first
    assert RunStore(tmp_path).scan() == {first["id"]: first, third["id"]: third}
    assert all(json.loads(x) for x in path.read_text().splitlines())


def test_unterminated_but_complete_last_line_is_kept(tmp_path):
    store = RunStore(tmp_path)
    path = store.shard_path(0, 1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": 5, "status": "ok"}))  # killed before the newline
    assert list(store.scan()) == [5]
    store.append({"id": 6, "status": "ok"}, 0, 1)
    assert list(store.scan()) == [5, 6]


def test_damage_in_the_middle_of_a_file_is_an_error_naming_the_line(tmp_path):
    store = RunStore(tmp_path)
    store.append({"id": 1, "status": "ok"}, 0, 1)
    with open(store.shard_path(0, 1), "a") as f:
        f.write("{not json\n")
    store.append({"id": 2, "status": "ok"}, 0, 1)
    with pytest.raises(InputFileError, match="line 2 of .*rank00000-of-00001.jsonl is not a posevlm eval record"):
        store.scan()


def test_append_validates_the_record(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ConfigError, match="id must be an int"):
        store.append({"id": "7", "status": "ok"}, 0, 1)
    with pytest.raises(ConfigError, match="status must be one of"):
        store.append({"id": 7, "status": "done"}, 0, 1)
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        store.append({"id": 7, "status": "ok", "x": object()}, 0, 1)
    with pytest.raises(ConfigError, match="0 <= rank < world"):
        store.append({"id": 7, "status": "ok"}, 2, 2)
    store.append({"id": 7, "status": "ok", "frame_ids": np.arange(3), "n": np.int64(4)}, 0, 1)  # numpy is fine
    assert store.scan()[7]["frame_ids"] == [0, 1, 2] and shard_file_name(3, 8) == "rank00003-of-00008.jsonl"


def test_non_finite_floats_are_stored_as_null(tmp_path):
    row = next(r for r in vsi_rows(1) if r["question_type"] == "object_counting")
    rec = run_record(row, "nan")  # the official parser reads NaN
    assert rec["scores"]["official"]["answer"] != rec["scores"]["official"]["answer"]
    store = RunStore(tmp_path)
    store.append({**rec, "timings_ms": {"x": float("inf")}, "v": np.array([1.0, np.nan])}, 0, 1)
    back = store.scan()[row["id"]]
    assert back["scores"]["official"]["answer"] is None and back["timings_ms"]["x"] is None
    assert back["v"] == [1.0, None]
    assert back["scores"]["official"]["score"] == 0.0
    assert "NaN" not in store.shard_path(0, 1).read_text()


def test_done_missing_complete_and_partial_loading(tmp_path):
    rows = vsi_rows(1)
    run = make_run(tmp_path / "run", rows, answers(rows), skip={rows[2]["id"], rows[5]["id"]},
                   errors={rows[0]["id"]: "oom"})
    store = RunStore(run)
    assert store.missing_ids() == [rows[2]["id"], rows[5]["id"]] and not store.is_complete()
    assert rows[0]["id"] in store.done_ids() and rows[0]["id"] not in store.done_ids(include_errors=False)
    with pytest.raises(InputFileError, match=r"incomplete: 2 of \d+ expected .*--allow-partial"):
        load_run(run)
    data = load_run(run, allow_partial=True)
    assert data.partial and data.n_done == len(rows) - 2 and data.missing_ids == (rows[2]["id"], rows[5]["id"])
    assert [r["id"] for r in data.records] == sorted(r["id"] for r in data.records)


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
    rows = vsi_rows(2)
    outputs = answers(rows)
    records = [run_record(r, o) for r, o in zip(rows, outputs)]
    whole = RunStore(tmp_path / "whole")
    for k, rec in enumerate(records):
        whole.append(rec, k % 3, 3)

    resumed = RunStore(tmp_path / "resumed")
    resumed.create_or_verify(eval_config(), [r["id"] for r in rows])
    for k, rec in enumerate(records[:17]):
        resumed.append(rec, k % 3, 3)
    with open(resumed.shard_path(17 % 3, 3), "a") as f:  # killed while writing record 17
        f.write(json.dumps(records[17])[:40])
    store = RunStore(tmp_path / "resumed")  # the restarted runner
    todo = set(store.missing_ids())
    assert todo == {r["id"] for r in records[17:]}
    for k, rec in enumerate(records):
        if rec["id"] in todo:
            store.append(rec, k % 3, 3)
    assert store.is_complete() and store.scan() == whole.scan()
    n_lines = sum(len(p.read_text().splitlines()) for p in store.shard_files())
    assert n_lines == len(records)  # no duplicates


def test_backend_info_keeps_one_entry_per_distinct_start(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_backend_info({"transformers": "5.23.0", "dtype": "float32"}, 0, 2)
    store.write_backend_info({"transformers": "5.23.0", "dtype": "float32"}, 0, 2)  # a resume, same backend
    assert store.backend_info() == {"rank00000-of-00002.json": [{"dtype": "float32", "transformers": "5.23.0"}]}
    store.write_backend_info({"transformers": "5.24.0", "dtype": "float32"}, 0, 2)
    (starts,) = store.backend_info().values()
    assert [s["transformers"] for s in starts] == ["5.23.0", "5.24.0"]
    assert not list((tmp_path / "run" / "backend").glob(".*tmp"))
