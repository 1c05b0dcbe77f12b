"""SQA3D and ScanQA end to end: loaders for the released annotation formats (local files, folders, the hub
cache offline), then ScanNet scans -> frame selection -> posevlm eval (dummy backend, resumable) -> report ->
compare, and one CLI run with a tiny pose-aware Qwen2.5-VL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa_world import (
    N, SCANQA, SQA3D, build_qa_world, frames_root, scanqa_items, sqa3d_documents, write_scanqa, write_sqa3d,
)  # fmt: skip

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks import benchmarks
from posevlm.eval.benchmarks.scanqa import load_scanqa, scanqa_record_id, scanqa_records
from posevlm.eval.benchmarks.sqa3d import load_sqa3d, sqa3d_records
from posevlm.eval.compare import compare_runs
from posevlm.eval.open_qa import qa_prompts
from posevlm.eval.report import write_report
from posevlm.eval.run_store import RunStore, load_run
from posevlm.eval.runner import EvalConfig, run_eval
from posevlm.eval.text_metrics import normalize_answer, sqa3d_question_prefix


@pytest.fixture(scope="module")
def qa_world(tmp_path_factory):
    return build_qa_world(tmp_path_factory.mktemp("qaworld"))


# -------------------------------------------------------------------------------------------- loaders
def test_sqa3d_pairs_questions_and_annotations_by_id(tmp_path):
    records = load_sqa3d(write_sqa3d(tmp_path))
    assert [r["id"] for r in records] == sorted(row[0] for row in SQA3D)
    by_id = {r["id"]: r for r in records}
    for qid, scene, situation, question, answers in SQA3D:
        r = by_id[qid]
        assert (r["dataset"], r["scene_name"], r["situation"], r["question"]) == ("scannet", scene, situation, question)
        assert r["answers"] == answers and r["ground_truth"] == answers[0] and r["options"] is None
        assert r["question_type"] == sqa3d_question_prefix(question) and r["question_id"] == qid
    questions, annotations = sqa3d_documents()
    questions["questions"].reverse()  # pairing by question_id, not by position
    assert sqa3d_records(questions, annotations) == records


def test_sqa3d_source_forms_and_splits(tmp_path):
    folder = write_sqa3d(tmp_path, split="val")
    balanced = folder / "sqa_task" / "balanced"
    by_folder = load_sqa3d(folder, split="val")
    assert load_sqa3d(balanced / "v1_balanced_questions_val_scannetv2.json", split="val") == by_folder
    assert benchmarks.get("sqa3d").load({"source": str(folder), "config": "val"}) == by_folder
    with pytest.raises(InputFileError, match="v1_balanced_questions_test_scannetv2.json"):
        load_sqa3d(folder)  # default split test: not there
    with pytest.raises(ConfigError, match="train, val, test"):
        load_sqa3d(folder, split="dev")


@pytest.mark.parametrize("damage, message", [
    (lambda q, a: a["annotations"].pop(), "has no annotation"),
    (lambda q, a: q["questions"].pop(), "have no question"),
    (lambda q, a: q["questions"].append(dict(q["questions"][0])), "appears twice"),
    (lambda q, a: a["annotations"][0].update(scene_id="scene0999_00"), "scene0999_00"),
    (lambda q, a: a["annotations"][0].update(answers=[]), "answers=\\[\\]"),
    (lambda q, a: q["questions"][0].pop("situation"), "situation=None"),
    (lambda q, a: q.pop("questions"), "no 'questions' list"),
])
def test_sqa3d_damaged_files_are_refused_naming_the_problem(damage, message):
    questions, annotations = sqa3d_documents()
    damage(questions, annotations)
    with pytest.raises(InputFileError, match=message):
        sqa3d_records(questions, annotations)


def test_scanqa_records_keep_the_released_fields(tmp_path):
    records = load_scanqa(write_scanqa(tmp_path / "scanqa"))
    assert load_scanqa(tmp_path) == records  # the folder holding it
    by_qid = {r["question_id"]: r for r in records}
    for qid, scene, question, answers, ids, names in SCANQA:
        r = by_qid[qid]
        assert r["id"] == scanqa_record_id(qid) and 0 <= r["id"] < 1 << 48
        assert (r["scene_name"], r["question"], r["answers"]) == (scene, question, answers)
        assert r["ground_truth"] == answers[0]
        assert (r["object_ids"], r["object_names"], r["question_type"], r["dataset"]) == (ids, names, "open_ended",
                                                                                          "scannet")
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)


def test_scanqa_test_files_without_answers_and_duplicates_are_refused():
    items = scanqa_items()
    with pytest.raises(InputFileError, match="test files have none"):
        scanqa_records([{k: v for k, v in i.items() if k != "answers"} for i in items])
    with pytest.raises(InputFileError, match="appears twice"):
        scanqa_records(items + items[:1])
    with pytest.raises(InputFileError, match="JSON list"):
        scanqa_records({"questions": items})
    with pytest.raises(ConfigError, match="train, val"):
        load_scanqa("anything", split="test")


def _fake_hub_cache(cache: Path, repo_id: str, files: dict[str, str]) -> None:
    """The huggingface_hub cache layout of one dataset snapshot (refs/main -> snapshots/<commit>/...)."""
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, text in files.items():
        (repo / "snapshots" / commit / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / name).write_text(text)


def test_hub_ids_load_from_the_cache_offline_and_fail_with_the_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = write_scanqa(tmp_path / "local")
    _fake_hub_cache(tmp_path / "cache", "someone/scanqa", {"data/ScanQA_v1.0_val.json": local.read_text()})
    assert load_scanqa("someone/scanqa") == load_scanqa(local)
    questions, annotations = sqa3d_documents()
    _fake_hub_cache(tmp_path / "cache", "someone/sqa3d", {
        "balanced/v1_balanced_questions_test_scannetv2.json": json.dumps(questions),
        "balanced/v1_balanced_sqa_annotations_test_scannetv2.json": json.dumps(annotations)})
    assert load_sqa3d("someone/sqa3d") == sqa3d_records(questions, annotations)
    with pytest.raises(InputFileError, match="huggingface-cli download someone/missing"):
        load_scanqa("someone/missing")


# ------------------------------------------------------------------------------------------ end to end
def config(world: Path, bench: str, answer: str, **frames) -> EvalConfig:
    source = world / ("sqa3d" if bench == "sqa3d" else "scanqa")
    return EvalConfig(benchmark={"name": bench, "source": str(source), "config": None},
                      model={"backend": "dummy", "name": "dummy", "answer": answer},
                      frames={"source": "folder_manifest", "root": str(frames_root(world)), "num_frames": N,
                              "strategy": "uniform", **frames})


def test_sqa3d_runs_reports_and_compares(qa_world, tmp_path):
    a, b = tmp_path / "brown", tmp_path / "yes"
    summary = run_eval(config(qa_world, "sqa3d", "Brown."), a)
    assert summary.ok and summary.n_ok == len(SQA3D)
    assert run_eval(config(qa_world, "sqa3d", "Brown."), a).n_skipped == len(SQA3D)  # resume: nothing to do
    assert run_eval(config(qa_world, "sqa3d", "yes"), b).ok
    records = {r["id"]: r for r in load_run(a).records}
    expected = {qid: float(any(normalize_answer(x) == "brown" for x in answers)) for qid, _, _, _, answers in SQA3D}
    assert {i: r["scores"]["official"]["score"] for i, r in records.items()} == expected
    assert all(r["answers"] == next(row[4] for row in SQA3D if row[0] == i) for i, r in records.items())
    assert all(len(r["frames"]["frame_ids"]) == N and r["frames"]["source"] == "folder_manifest"
               for r in records.values())
    paths = write_report([a, b], tmp_path / "report")
    assert "plot" not in paths and not (tmp_path / "report" / "score_vs_frames.png").exists()
    doc = json.loads(paths["metrics"].read_text())
    assert doc["task_format"] == "sqa3d" and doc["column_order"][:2] == ["em", "em_refined"]
    cols = doc["runs"][0]["aggregate"]["columns"]
    assert cols["em"] == pytest.approx(sum(expected.values()) / len(expected))
    what = [qid for qid, _, _, q, _ in SQA3D if sqa3d_question_prefix(q) == "what"]
    assert cols["em_what"] == pytest.approx(sum(expected[q] for q in what) / len(what))
    table = paths["markdown"].read_text()
    assert table.startswith("# SQA3D results")
    assert "| EM@1 | EM-R | What | Is | How | Can | Which | Others | n |" in table
    csv_text = paths["csv"].read_text()
    assert ",em_what," in csv_text and ",em_others," in csv_text
    result = compare_runs(a, b, n_bootstrap=200)
    em = result.column("em")
    sa = [records[i]["scores"]["official"]["score"] for i in sorted(records)]
    sb = [r["scores"]["official"]["score"] for r in sorted(load_run(b).records, key=lambda r: r["id"])]
    assert (em.n, em.a_only, em.b_only) == (len(SQA3D), sum(x > y for x, y in zip(sa, sb)),
                                            sum(y > x for x, y in zip(sa, sb)))
    assert em.delta == pytest.approx(sum(sb) / len(sb) - sum(sa) / len(sa))


def test_scanqa_runs_with_caption_metrics_and_rescores(qa_world, tmp_path, monkeypatch):
    import posevlm.eval.text_metrics as tm

    monkeypatch.setattr(tm, "java_status", lambda timeout_s=30.0: (False, "java disabled in this test"))
    run = tmp_path / "run"
    assert run_eval(config(qa_world, "scanqa", "brown"), run).ok
    summary = run_eval(config(qa_world, "scanqa", "brown"), run, stage="score")
    assert summary.n_ok == 0 and summary.n_skipped == len(SCANQA)  # stored outputs re-score to the same scores
    paths = write_report([run], tmp_path / "report")
    entry = json.loads(paths["metrics"].read_text())["runs"][0]
    records = load_run(run).records
    direct = tm.caption_scores({r["id"]: "brown" for r in records}, {r["id"]: r["answers"] for r in records},
                               tokenizer="simple")
    cols = entry["aggregate"]["columns"]
    assert cols["cider"] == direct.values["CIDEr"].value and cols["bleu_1"] == direct.values["BLEU-1"].value
    assert cols["meteor"] is None and any("java disabled" in w for w in entry["warnings"])
    assert cols["em"] == pytest.approx(sum("brown" in row[3] for row in SCANQA) / len(SCANQA))
    assert paths["markdown"].read_text().startswith("# ScanQA results")


def test_question_type_filters_and_mixed_reports_are_checked(qa_world, tmp_path):
    cfg = config(qa_world, "sqa3d", "brown")
    cfg = EvalConfig({**cfg.benchmark, "filters": {"question_types": ["object_counting"]}}, cfg.model, cfg.frames)
    with pytest.raises(ConfigError, match="not a SQA3D question type; known: what, is, how, can, which, others"):
        run_eval(cfg, tmp_path / "x")
    run_eval(config(qa_world, "sqa3d", "brown"), tmp_path / "sqa")
    run_eval(config(qa_world, "scanqa", "brown"), tmp_path / "scanqa")
    with pytest.raises(ConfigError, match="different task formats"):
        write_report([tmp_path / "sqa", tmp_path / "scanqa"], tmp_path / "r", plot=False)
    with pytest.raises(ConfigError, match="compare runs of one benchmark"):
        compare_runs(tmp_path / "sqa", tmp_path / "scanqa", n_bootstrap=10)


def test_prompts_of_the_run_carry_the_situation(qa_world, tmp_path):
    seen = []

    class Recorder:
        info = {"backend": "recorder"}

        def generate(self, batch, generation=None):
            seen.extend((r["id"], prompt, spec.w2c_opencv.shape, generation.max_new_tokens)
                        for r, prompt, spec in batch)
            return [{"text": "brown", "video_grid_thw": None, "n_visual_tokens": None} for _ in batch]

    assert run_eval(config(qa_world, "sqa3d", "brown"), tmp_path / "run", backend=Recorder()).ok
    preset = qa_prompts.get("official")
    by_id = {row[0]: row for row in SQA3D}
    for rid, prompt, cams, max_new in seen:
        assert prompt == preset.render({"question": by_id[rid][3], "situation": by_id[rid][2]})
        assert cams == (N, 4, 4) and max_new == preset.generation.max_new_tokens  # ScanNet cameras from the manifest


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_posevlm_eval_sqa3d_cli_with_a_tiny_pose_aware_model(qa_world, tmp_path):
    pytest.importorskip("transformers")
    from tiny_models import save_tiny_qwen2_5_vl

    # mRoPE [4, 2, 2]: PTHW gives P half of T's 4 slots, leaving T 2 slots (4 head dims) for PRoPE's T block
    model = save_tiny_qwen2_5_vl(tmp_path / "tiny", rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                      "mrope_section": [4, 2, 2]})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "posevlm", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = tmp_path / "run"
    cli("eval", "--benchmark", "sqa3d", "--source", qa_world / "sqa3d", "--backend", "hf", "--model", model,
        "--dtype", "float32", "--positions", "pthw", "--camera-attention", "prope", "--backend-set", "min_pixels=3136",
        "--frames", "folder_manifest", "--frames-root", frames_root(qa_world), "--num-frames", N, "--limit", 3, "--out", out)
    records = RunStore(out).scan()
    assert len(records) == 3 and all(r["status"] == "ok" for r in records.values())
    assert all(r["frames"]["video_grid_thw"] is not None for r in records.values())
    config_doc = json.loads((out / "run_config.json").read_text())["config"]
    assert config_doc["benchmark"]["config"] == "test" and config_doc["model"]["positions"]["mode"] == "pthw"
    ((info,),) = RunStore(out).backend_info().values()  # what the backend installed
    assert info["camera_attention"]["mode"] == "prope" and info["positions"]["spec"]["layout"] == "qwen2_5"
    table = cli("report", out)
    assert "# SQA3D results" in table and "| EM@1 | EM-R |" in table
