"""Point-cloud tasks in `posevlm eval`: the `layout` task format (scorer parity, aggregation, compare), the
`synthetic_layout` / `synthetic_point_qa` benchmarks, the `point_cloud` input source, the oracle through them, and
a tiny PointCloudLM checkpoint evaluated through the real CLI."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks import benchmarks
from posevlm.eval.benchmarks.point_tasks import POINT_QA_TYPES, load_point_qa
from posevlm.eval.benchmarks.synthetic_vsi import QUESTION_TYPES, write_benchmark_jsonl
from posevlm.eval.compare import compare_records, paired_bootstrap
from posevlm.eval.errors import MissingInputError
from posevlm.eval.layout_format import FORMAT, aggregate_layout, read_layout_output, score_layout_record
from posevlm.eval.layout_script import Box, Layout, Wall, score_layout
from posevlm.eval.point_inputs import PointCloudRequest
from posevlm.eval.run_store import RunStore, load_run
from posevlm.eval.runner import EvalConfig, run_eval
from posevlm.eval.task_format import task_formats

TARGET = Layout((Wall((0, 0, 0), (4, 0, 0), 2.5), Wall((4, 0, 0), (4, 3, 0), 2.5)),
                (Box("chair", (1.0, 1.0, 0.5), 0.0, (1.0, 1.0, 1.0)), Box("table", (2.5, 1.5, 0.4), 0.3, (1.2, 0.8, 0.8))))


def _record(i=1, target=TARGET, dataset="synthetic"):
    return {"id": i, "dataset": dataset, "scene_name": f"s{i}", "question_type": "layout",
            "question": "Detect walls, doors, windows, boxes.", "options": None, "ground_truth": target.to_script()}


def _run_record(record, output):
    scored = score_layout_record(record, output)
    return {**record, "status": "ok", "scores": scored["modes"]}


# ------------------------------------------------------------------------------------------ scorer
def test_prediction_equal_to_target_scores_one_everywhere():
    rec = _record()
    scored = score_layout_record(rec, rec["ground_truth"])
    for mode, entry in scored["modes"].items():
        assert entry["score"] == 1.0 and entry["status"] == "ok", mode
        for kind in ("walls", "boxes"):
            assert all(v["f1"] == 1.0 for v in entry["layout"][kind].values())
    agg = aggregate_layout([_run_record(rec, rec["ground_truth"])])
    assert agg["columns"] == {"wall_f1_25": 1.0, "wall_f1_50": 1.0, "box_f1_25": 1.0, "box_f1_50": 1.0,
                              "sample_f1_25": 1.0}


def test_a_box_shifted_past_iou_half_counts_at_quarter_only():
    """A unit box moved 0.4 m along x: IoU = 0.6 / 1.4 = 0.43, a hit at 0.25, a miss at 0.5."""
    shifted = Layout(TARGET.walls, (Box("chair", (1.4, 1.0, 0.5), 0.0, (1.0, 1.0, 1.0)), TARGET.boxes[1]))
    scores = score_layout(shifted, TARGET)
    assert scores["boxes"]["0.25"]["tp"] == 2 and scores["boxes"]["0.5"]["tp"] == 1
    agg = aggregate_layout([_run_record(_record(), shifted.to_script())])
    assert agg["columns"]["box_f1_25"] == 1.0 and agg["columns"]["box_f1_50"] == pytest.approx(0.5)
    assert agg["columns"]["wall_f1_50"] == 1.0 and agg["columns"]["sample_f1_25"] == 1.0


def test_sample_score_pools_walls_and_boxes():
    half = Layout(TARGET.walls[:1], TARGET.boxes)  # 3 of 4 entities predicted, all right
    entry = score_layout_record(_record(), half.to_script())["modes"]["official"]
    precision, recall = 1.0, 3 / 4
    assert entry["score"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_modes_read_the_script_from_fences_and_think_blocks():
    script = TARGET.to_script()
    wrapped = f"<think>walls first\nwall_9=Wall(0,0,0,9,9,0,1,0)\n</think>Here:\n```python\n{script}\n```\ndone"
    assert read_layout_output(wrapped, "lenient").strip() == script
    scored = score_layout_record(_record(), wrapped)["modes"]
    assert scored["lenient"]["score"] == 1.0
    assert scored["official"]["score"] < 1.0 and scored["official"]["layout"]["unparsed"] > 0
    empty = score_layout_record(_record(), "I cannot see a room.")["modes"]["official"]
    assert empty["status"] == "empty" and empty["score"] == 0.0
    with pytest.raises(ConfigError, match="does not apply to layout"):
        read_layout_output(script, "strict")


def test_aggregate_is_micro_order_free_and_counts_errors_as_empty():
    recs = [_run_record(_record(1), TARGET.to_script()),
            _run_record(_record(2), Layout(TARGET.walls, TARGET.boxes[:1]).to_script()),
            _run_record(_record(3, dataset="other"), "")]
    error = {**_record(4), "status": "error", "scores": {m: {"answer": None, "text": None, "status": "error",
                                                             "score": 0.0, "hits": 0, "flags": []}
                                                         for m in ("official", "lenient", "legacy")}}
    agg = aggregate_layout(recs + [error])
    again = aggregate_layout([error] + recs[::-1])
    assert agg == again
    # boxes: tp 2 + 1 + 0 + 0 of predicted 2 + 1 + 0 + 0 and ground truth 2 x 4
    precision, recall = 3 / 3, 3 / 8
    assert agg["columns"]["box_f1_25"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert agg["n"] == 4 and set(agg["per_dataset"]) == {"synthetic", "other"}
    assert agg["per_question_type"]["layout"]["count"] == 4
    assert set(agg["definitions"]) >= set(FORMAT.table_columns)


def test_layout_format_is_registered_and_compare_pairs_sample_f1():
    assert task_formats.get("layout") is FORMAT and benchmarks.get("synthetic_layout").task_format == "layout"
    assert benchmarks.get("synthetic_point_qa").task_format == "vsibench"
    a = [_run_record(_record(i), TARGET.to_script()) for i in range(1, 7)]
    b = [_run_record(_record(i), Layout(TARGET.walls, TARGET.boxes[:1]).to_script() if i % 2 else TARGET.to_script())
         for i in range(1, 7)]
    result = compare_records(a, b, n_bootstrap=200, task_format="layout")
    (col,) = result.columns
    worse = score_layout_record(_record(1), Layout(TARGET.walls, TARGET.boxes[:1]).to_script())["modes"]
    assert col.column == "sample_f1_25" and col.mean_a == 1.0 and col.mcnemar_p is None
    assert col.delta == pytest.approx((worse["official"]["score"] - 1.0) / 2)
    # the bootstrap weights reproduce the column: every resample's delta is a mean of per-sample deltas
    deltas = np.array([rb["scores"]["official"]["score"] - 1.0 for rb in b])
    boot = paired_bootstrap(["layout"] * 6, deltas, n_bootstrap=50, task_format="layout")["sample_f1_25"]
    assert boot.min() >= deltas.min() - 1e-12 and boot.max() <= 1e-12


# ------------------------------------------------------------------------------------- benchmarks
def test_point_qa_types_are_the_view_independent_ones(tmp_path):
    assert set(QUESTION_TYPES) - set(POINT_QA_TYPES) == {"obj_appearance_order"}
    rec = {"id": 1, "dataset": "synthetic", "scene_name": "s", "question_type": "obj_appearance_order",
           "question": "q", "options": ["A. a", "B. b"], "ground_truth": "A"}
    path = write_benchmark_jsonl([rec], tmp_path / "qa.jsonl")
    with pytest.raises(InputFileError, match="obj_appearance_order"):
        load_point_qa(path)
    with pytest.raises(ConfigError, match="needs --source"):
        benchmarks.get("synthetic_layout").load({"name": "synthetic_layout"})


def test_point_cloud_request_looks_up_files_then_scans(point_world, tmp_path):
    points, data = point_world / "points", point_world / "data"
    req = PointCloudRequest(str(points), "synthetic", "synth_0000")
    assert req.path() == points / "clouds" / "synth_0000.npz" and req.check() == 0
    spec = req.load()
    assert spec.frame_ids.size == 0 and spec.provenance["built_from"] == "file" and spec.n_points > 100
    scan = PointCloudRequest(str(data), "synthetic", "synth_0000", num_frames=4, grid_size=0.05)
    assert scan.path() == data / "synthetic" / "synth_0000" and scan.check() == 4
    built = scan.load()
    assert built.frame_ids.size == 4 and built.provenance["built_from"] == "scan"
    with pytest.raises(MissingInputError, match="no point cloud of scene synthetic/nowhere"):
        PointCloudRequest(str(points), "synthetic", "nowhere").check()
    with pytest.raises(ConfigError, match="grid_size"):
        PointCloudRequest(str(points), "synthetic", "synth_0000", grid_size=0)


# ------------------------------------------------------------------------------------------ oracle
def _config(world, bench, backend="oracle", frames_root=None, num_frames=8, **model):
    m = {"backend": backend, "name": backend, **model}
    if backend == "oracle":
        m["scenes_root"] = str(world / "data")
    return EvalConfig(benchmark={"name": bench, "source": str(world / "points")}, model=m,
                      frames={"source": "point_cloud", "root": str(frames_root or world / "points"),
                              "num_frames": num_frames, "grid_size": 0.05})


def test_oracle_layout_run_scores_one(point_world, tmp_path):
    """The layout oracle answers the exact layout in the cloud's frame: 100 % through run, store and report on the
    clouds the targets were written with (an end-to-end check of the scorer path)."""
    from posevlm.eval.report import markdown_table, run_metrics

    summary = run_eval(_config(point_world, "synthetic_layout"), tmp_path / "run")
    assert summary.ok and summary.n_ok == 2
    metrics = run_metrics(load_run(tmp_path / "run"))
    assert metrics["task_format"] == "layout"
    assert all(v == 1.0 for v in metrics["aggregate"]["columns"].values())
    assert "| 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 2 |" in markdown_table([metrics])
    rec = next(iter(RunStore(tmp_path / "run").scan().values()))
    assert rec["frames"]["source"] == "point_cloud" and rec["frames"]["provenance"]["built_from"] == "file"


def test_layout_samples_must_see_the_cloud_their_target_was_written_in(point_world):
    """A cloud whose origin differs from the one stored with the target fails the sample (invalid_input) instead of
    scoring a correct layout as wrong; records without a stored origin (point QA) are never refused."""
    from posevlm.eval.backends.points import layout_origin_problem
    from posevlm.eval.benchmarks.point_tasks import load_layout_benchmark
    from posevlm.eval.point_inputs import PointCloudSpec

    record = load_layout_benchmark(point_world / "points")[0]
    spec = PointCloudRequest(str(point_world / "points"), "synthetic", record["scene_name"]).load()
    assert layout_origin_problem(record, spec) is None
    moved = PointCloudSpec(type(spec.cloud)(spec.cloud.grid_coord, spec.cloud.xyz, spec.cloud.rgb,
                                            spec.cloud.grid_size, spec.cloud.num_bins, spec.cloud.origin + 0.01),
                           spec.frame_ids, spec.provenance)
    problem = layout_origin_problem(record, moved)
    assert problem is not None and problem.kind == "invalid_input" and "0.01 m apart" in problem.message
    assert layout_origin_problem({**record, "meta": {}}, moved) is None


def test_oracle_point_qa_from_scans_and_refused_on_cloud_files(point_world, tmp_path):
    ok = run_eval(_config(point_world, "synthetic_point_qa", frames_root=point_world / "data"), tmp_path / "qa")
    assert ok.ok and ok.n_ok == ok.n_expected > 0
    records = RunStore(tmp_path / "qa").scan().values()
    assert {r["question_type"] for r in records} <= set(POINT_QA_TYPES)
    assert all(r["frames"]["provenance"]["built_from"] == "scan" and len(r["frames"]["frame_ids"]) == 8
               for r in records)
    files = run_eval(_config(point_world, "synthetic_point_qa"), tmp_path / "files")
    assert not files.ok and set(files.failed.values()) == {"config"}
    first = next(iter(RunStore(tmp_path / "files").scan().values()))
    assert "frames a point cloud was built from" in first["error"]["message"]


def test_points_backend_refuses_frame_sources(point_world):
    with pytest.raises(ConfigError, match="frames.source must be point_cloud"):
        EvalConfig(benchmark={"name": "synthetic_layout", "source": str(point_world / "points")},
                   model={"backend": "points", "name": "m", "model": "ckpt"},
                   frames={"source": "folder_manifest", "root": str(point_world), "num_frames": 4})
    with pytest.raises(ConfigError, match="unknown points backend option"):
        EvalConfig(benchmark={"name": "synthetic_layout", "source": str(point_world / "points")},
                   model={"backend": "points", "name": "m", "model": "ckpt", "temperature": 0.1},
                   frames={"source": "point_cloud", "root": str(point_world), "num_frames": 4})


# -------------------------------------------------------------------------------- tiny checkpoint
_spec = importlib.util.spec_from_file_location("_tiny_models", Path(__file__).parent / "tiny_models.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


def save_tiny_point_lm(out: Path) -> Path:
    """A random tiny Qwen2 decoder composed into a PointCloudLM and saved with its tokenizer."""
    import torch
    import transformers

    from posevlm.models.point_lm import PointCloudLM

    tokenizer = tiny_models.build_tokenizer(tiny_models.QWEN3_VL_CHAT_TEMPLATE)
    torch.manual_seed(0)
    decoder = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=(len(tokenizer) + 15) // 16 * 16, hidden_size=64, intermediate_size=96, head_dim=16,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id))
    model = PointCloudLM.compose(decoder, tokenizer, encoder={"token_stride": 4, "hidden_size": 32, "out_size": 32})
    return model.save_pretrained(out)


def _eval_cli(world: Path, model: Path, out: Path, bench: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", bench, "--source", str(world / "points"),
            "--backend", "points", "--model", str(model), "--frames", "point_cloud", "--frames-root",
            str(world / "points"), "--out", str(out), "--backend-set", "max_new_tokens=6", *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_posevlm_eval_runs_a_tiny_point_lm_checkpoint_and_resumes(point_world, tmp_path):
    """`posevlm eval --backend points` on both point-cloud benchmarks: every sample answered from its cloud, the
    prompt as PointCloudLM.prepare builds it (one pad per voxel token), a rerun keeps every record, and
    `posevlm report` / `posevlm compare` work through the layout format."""
    ckpt = save_tiny_point_lm(tmp_path / "ckpt")
    out = tmp_path / "layout"
    proc = _eval_cli(point_world, ckpt, out, "synthetic_layout", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunStore(out).scan()
    assert len(records) == 2 and all(r["status"] == "ok" for r in records.values())
    for rec in records.values():
        assert isinstance(rec["raw_output"], str) and rec["frames"]["n_visual_tokens"] > 10
        assert 0.0 <= rec["scores"]["official"]["score"] <= 1.0
    info = [i for starts in RunStore(out).backend_info().values() for i in starts]
    assert info[0]["backend"] == "points" and info[0]["mixed_rope3d"] is not None
    again = _eval_cli(point_world, ckpt, out, "synthetic_layout", "--batch-size", "2")
    assert again.returncode == 0 and " 0 answered" in again.stdout and "2 kept" in again.stdout, again.stdout
    assert RunStore(out).scan() == records
    qa = _eval_cli(point_world, ckpt, tmp_path / "qa", "synthetic_point_qa")
    assert qa.returncode == 0, qa.stderr[-3000:]
    assert all(r["status"] == "ok" for r in RunStore(tmp_path / "qa").scan().values())
    oracle = run_eval(_config(point_world, "synthetic_layout"), tmp_path / "oracle")
    assert oracle.ok
    report = subprocess.run([sys.executable, "-m", "posevlm", "report", str(out), str(tmp_path / "oracle"), "--out",
                             str(tmp_path / "report")], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["task_format"] == "layout"
    compare = subprocess.run([sys.executable, "-m", "posevlm", "compare", str(tmp_path / "oracle"), str(out),
                              "--bootstrap", "200", "--json"], capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0, compare.stderr[-3000:]
    (col,) = json.loads(compare.stdout)["columns"]
    assert col["column"] == "sample_f1_25" and col["mean_a"] == 1.0 and col["n"] == 2


def test_eval_cli_on_point_clouds_defaults_to_the_training_prompt(point_world, tmp_path):
    """``posevlm train``'s point set renders its prompts with ``point_cloud`` (``PointSynthConfig.prompt``): ``posevlm
    eval --frames point_cloud`` without ``--prompt`` asks the same text (the official preset says "These are frames
    of a video."); frame sources keep ``official``."""
    from posevlm.eval.prompts import POINT_CLOUD_PRE_PROMPT
    from posevlm.train.points import PointSynthConfig

    assert PointSynthConfig().prompt == "point_cloud"
    out = tmp_path / "qa"
    done = subprocess.run([sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_point_qa", "--source",
                           str(point_world / "points"), "--backend", "oracle", "--scenes", str(point_world / "data"),
                           "--frames", "point_cloud", "--frames-root", str(point_world / "data"), "--num-frames", "8",
                           "--limit", "1", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stored = json.loads((out / "run_config.json").read_text())["config"]
    assert stored["prompt"] == "point_cloud"
    from posevlm.eval.benchmarks.point_tasks import load_point_qa
    from posevlm.eval.prompts import get_prompt

    assert get_prompt(stored["prompt"]).render(load_point_qa(point_world / "points")[0]).startswith(
        POINT_CLOUD_PRE_PROMPT)
