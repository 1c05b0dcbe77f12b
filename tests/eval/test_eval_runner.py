"""The eval runner as users run it: resume, kills, typed errors, shards, torchrun, the demo path."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval_world import N, SAMPLER, config, final
from posevlm.errors import ConfigError
from posevlm.eval.report import write_report
from posevlm.eval.run_store import RunStore, load_run
from posevlm.eval.runner import EvalConfig, run_eval

def test_oracle_run_completes_resumes_idempotently_and_reports(world, tmp_path):
    cfg = config(world)
    first = run_eval(cfg, tmp_path / "run")
    assert first.complete and first.n_errors == 0 and first.n_ok == first.n_expected > 10
    lines = sum(1 for f in (tmp_path / "run" / "records").iterdir() for _ in f.open())
    again = run_eval(cfg, tmp_path / "run")
    assert again.n_ok == 0 and again.n_skipped == first.n_expected
    assert sum(1 for f in (tmp_path / "run" / "records").iterdir() for _ in f.open()) == lines
    rec = next(iter(RunStore(tmp_path / "run").scan().values()))
    assert len(rec["frames"]["frame_ids"]) == N and set(rec["scores"]) == {"official", "lenient", "legacy"}
    files = write_report([tmp_path / "run"], tmp_path / "report")
    metrics = json.loads(Path(files["metrics"]).read_text())
    assert metrics["runs"][0]["run_id"] == first.run_id


def test_score_stage_rescores_stored_outputs_idempotently(world, tmp_path):
    cfg = config(world, "dummy", answer="B")
    run_eval(cfg, tmp_path / "run")
    store = RunStore(tmp_path / "run")
    before = store.scan()
    victim = next(i for i, r in before.items() if r["options"])
    stale = {**before[victim], "scores": {m: {**v, "score": 0.5} for m, v in before[victim]["scores"].items()}}
    store.append(stale, 0, 1)  # e.g. scored by an older parser
    first = run_eval(cfg, tmp_path / "run", stage="score")
    assert first.n_ok == 1 and store.scan()[victim]["scores"] == before[victim]["scores"]
    again = run_eval(cfg, tmp_path / "run", stage="score")
    assert again.n_ok == 0 and again.n_skipped == len(before)


def test_other_config_in_the_same_directory_is_refused(world, tmp_path):
    run_eval(config(world, "dummy", answer="B"), tmp_path / "run")
    with pytest.raises(ConfigError, match="different configuration"):
        run_eval(config(world, "dummy", answer="C"), tmp_path / "run")


def test_typed_errors_and_the_run_goes_on(world, tmp_path):
    # copy the sampled folders, then break one scene three ways: missing folder, wrong count, corrupt frame
    import shutil

    src = world / "sampled" / SAMPLER.slug
    dst = tmp_path / "sampled"
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "synthetic" / "synth_0000")
    frames = sorted((dst / "synthetic" / "synth_0001").glob("*.png"))
    frames[3].write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    summary = run_eval(config(world, "oracle", frames_root=dst), tmp_path / "run")
    records = RunStore(tmp_path / "run").scan()
    kinds = {(r["scene_name"], r["error"]["kind"]) for r in records.values() if r["status"] == "error"}
    assert ("synth_0000", "missing_input") in kinds
    assert any(scene == "synth_0001" for scene, _ in kinds)
    assert any(r["status"] == "ok" and r["scene_name"] == "synth_0002" for r in records.values())
    assert summary.complete and summary.n_errors > 0 and summary.n_ok > 0
    os.remove(frames[0])  # a frame the manifest lists is gone: caught in preflight before any model loads
    run = tmp_path / "run2"
    pre = run_eval(config(world, "oracle", frames_root=dst), run, stage="preflight")
    report = json.loads(Path(pre.preflight).read_text())
    kinds = {(f["scene_name"], f["kind"]) for f in report["failures"]}
    assert kinds == {("synth_0000", "missing_input"), ("synth_0001", "missing_input")}
    assert not pre.ok and set(pre.failed) == {i for f in report["failures"] for i in f["sample_ids"]}
    assert RunStore(run).scan() == {}  # preflight writes no records


def test_resume_retries_error_records_until_max_attempts(world, tmp_path):
    import shutil

    from posevlm.eval.runner import MAX_ATTEMPTS

    dst = tmp_path / "sampled"
    shutil.copytree(world / "sampled" / SAMPLER.slug, dst)
    hidden = tmp_path / "hidden"
    shutil.move(dst / "synthetic" / "synth_0001", hidden)
    cfg = config(world, "oracle", frames_root=dst)
    first = run_eval(cfg, tmp_path / "run")
    assert first.n_errors > 0
    shutil.move(hidden, dst / "synthetic" / "synth_0001")  # the user restores the input
    second = run_eval(cfg, tmp_path / "run")
    assert second.n_errors == 0 and second.n_ok == first.n_errors
    assert all(r["status"] == "ok" for r in RunStore(tmp_path / "run").scan().values())
    # a permanent failure stops being retried after MAX_ATTEMPTS
    shutil.rmtree(dst / "synthetic" / "synth_0002")
    run3 = tmp_path / "run3"
    results = [run_eval(cfg, run3) for _ in range(MAX_ATTEMPTS + 1)]
    assert results[0].n_errors > 0 and results[-1].n_errors == 0 and results[-1].n_ok == 0
    errs = [r for r in RunStore(run3).scan().values() if r["status"] == "error"]
    assert errs and all(r["attempt"] == MAX_ATTEMPTS for r in errs)


def test_unparseable_outputs_are_scored_not_fatal(world, tmp_path):
    run_eval(config(world, "dummy", answer="I cannot tell"), tmp_path / "run")
    recs = list(RunStore(tmp_path / "run").scan().values())
    assert all(r["status"] == "ok" for r in recs)
    assert {r["scores"]["official"]["score"] for r in recs} == {0.0}
    assert {r["scores"]["official"]["status"] for r in recs} - {"ok"}


def test_shards_merge_to_the_unsharded_result(world, tmp_path):
    cfg = config(world)
    run_eval(cfg, tmp_path / "one")
    for i in range(2):
        run_eval(cfg, tmp_path / "two", shard=f"{i}/2")
    assert final(tmp_path / "two") == final(tmp_path / "one")
    assert load_run(tmp_path / "two").n_done == load_run(tmp_path / "one").n_done


def _cli(world: Path, out: Path, launcher=()):
    args = [*launcher, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi", "--source", str(world / "bench.jsonl"),
            "--backend", "oracle", "--scenes", str(world / "data"), "--frames", "folder_manifest",
            "--frames-root", str(world / "sampled" / SAMPLER.slug), "--num-frames", str(N), "--out", str(out)]
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_at_random_points_then_resumed_equals_uninterrupted(world, tmp_path):
    clean = _cli(world, tmp_path / "clean")
    assert clean.wait(300) == 0, clean.stderr.read()
    out = tmp_path / "killed"
    rng = random.Random(0)
    n_expected = len(final(tmp_path / "clean"))
    mid_run_kills = 0
    for _ in range(8):  # until two kills landed mid-run (records are cheap: a run can also finish first)
        before = len(RunStore(out).scan()) if (out / "records").exists() else 0
        if mid_run_kills >= 2 or before == n_expected:
            break
        proc = _cli(world, out)
        while proc.poll() is None and (not (out / "records").exists() or len(RunStore(out).scan()) <= before):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))  # somewhere after the first new record: mid-run, maybe mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_run_kills += 0 < len(RunStore(out).scan()) < n_expected
    assert mid_run_kills >= 2
    done = _cli(world, out)
    assert done.wait(300) == 0, done.stderr.read()
    assert final(out) == final(tmp_path / "clean")
    ids = [json.loads(ln)["id"] for f in (out / "records").iterdir() for ln in f.read_text().splitlines() if ln.strip()]
    assert len(ids) == len(set(ids))  # nothing recomputed twice (a torn line is repaired, not duplicated)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(world, tmp_path):
    one = _cli(world, tmp_path / "one")
    assert one.wait(300) == 0, one.stderr.read()
    two = _cli(world, tmp_path / "two", launcher=("-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                  "--master_port", str(29500 + os.getpid() % 1000)))
    assert two.wait(300) == 0, two.stderr.read()
    assert len(list((tmp_path / "two" / "records").iterdir())) == 2
    assert final(tmp_path / "two") == final(tmp_path / "one")


def _hf_eval_cli(world: Path, tmp_path: Path, family: str, limit: int, *extra: str) -> tuple[Path, Path]:
    """Run `posevlm eval --backend hf` on a tiny local checkpoint, offline, as a user would; returns (model, run)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import save_tiny_qwen2_5_vl, save_tiny_qwen3_vl

    save = save_tiny_qwen2_5_vl if family == "qwen2_5_vl" else save_tiny_qwen3_vl
    model_dir = save(tmp_path / "model")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = tmp_path / "run"
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi", "--source",
            str(world / "bench.jsonl"), "--limit", str(limit), "--backend", "hf", "--model", str(model_dir),
            "--dtype", "float32", "--frames", "folder_manifest", "--frames-root",
            str(world / "sampled" / SAMPLER.slug), "--num-frames", str(N), "--out", str(out), *extra]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunStore(out).scan()
    assert len(records) == limit and all(r["status"] == "ok" for r in records.values()), records
    return model_dir, out


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_posevlm_eval_cli_with_a_tiny_local_hf_model(world, tmp_path, family):
    """`posevlm eval --backend hf --model <local dir>` exactly as a user runs it, offline."""
    model_dir, out = _hf_eval_cli(world, tmp_path, family, 6)
    rec = next(iter(RunStore(out).scan().values()))
    assert isinstance(rec["raw_output"], str) and rec["frames"]["n_visual_tokens"] > 0
    assert rec["frames"]["video_grid_thw"] is not None
    assert json.loads((out / "run_config.json").read_text())["config"]["model"]["model"] == str(model_dir)


@pytest.mark.parametrize("family,mode,camera", [("qwen2_5_vl", "pthw", None), ("qwen3_vl", "phw", None),
                                                ("qwen2_5_vl", "thw", "prope")])
@pytest.mark.slow
def test_posevlm_eval_cli_with_pose_positions(world, tmp_path, family, mode, camera):
    """`--positions` installs the pose-aware positions, reads cameras from the frame manifest and is
    recorded in the run config (so it changes the run id); so are `--camera-attention` and `--pose-bias`."""
    extra = ["--positions", mode, "--position-set", "pose_reference=medoid", "--batch-size", "2"]
    if camera:
        extra += ["--camera-attention", camera, "--pose-bias", "alibi", "--camera-set", "reference=medoid"]
    _, out = _hf_eval_cli(world, tmp_path, family, 3, *extra)
    model_cfg = json.loads((out / "run_config.json").read_text())["config"]["model"]
    assert model_cfg["positions"] == {"mode": mode, "legacy": False, "pose_reference": "medoid"}
    # what the backend resolved from it: the full PositionSpec (layout, the checkpoint's tokens_per_second),
    # the slot map and the camera spec
    ((info,),) = RunStore(out).backend_info().values()  # one rank, one start
    spec = info["positions"]["spec"]
    assert spec["pose_reference"] == "medoid" and spec["layout"] == family.removesuffix("_vl")
    assert len(info["positions"]["slot_axis"]) > 0 and info["positions_origin"] == "backend config"
    if camera:
        assert model_cfg["camera_attention"] == {"mode": camera, "reference": "medoid"}
        assert model_cfg["pose_bias"] == "alibi" and info["camera_attention"]["reference"] == "medoid"
        assert info["camera_attention"]["mode"] == camera and info["camera_attention"]["bias"] == "alibi"
        assert info["positions"]["camera_attention"]["dims"] == "t_slots"


def test_pose_positions_need_frames_with_cameras(world):
    model = {"backend": "hf", "name": "m", "model": "m", "positions": "pthw"}
    with pytest.raises(ConfigError, match="folder_manifest"):
        EvalConfig(benchmark={"name": "synthetic_vsi", "source": "b.jsonl"}, model=model,
                   frames={"source": "mp4_uniform", "root": "videos", "num_frames": 8})
    with pytest.raises(ConfigError, match="not defined for layout 'qwen3'"):
        EvalConfig(benchmark={"name": "synthetic_vsi", "source": "b.jsonl"},
                   model={**model, "family": "qwen3_vl"},
                   frames={"source": "folder_manifest", "root": "x", "num_frames": 8})
    with pytest.raises(ConfigError, match="camera_attention"):
        EvalConfig(benchmark={"name": "synthetic_vsi", "source": "b.jsonl"},
                   model={"backend": "hf", "name": "m", "model": "m", "camera_attention": "gta"},
                   frames={"source": "mp4_uniform", "root": "videos", "num_frames": 8})
    # the stock T modes need no cameras
    EvalConfig(benchmark={"name": "synthetic_vsi", "source": "b.jsonl"}, model={**model, "positions": "thw_index"},
               frames={"source": "mp4_uniform", "root": "videos", "num_frames": 8})
