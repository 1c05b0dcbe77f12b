"""``posevlm experiment run`` as users launch it: SIGKILL of the runner and its training child (the whole process
group) after the first run finished and while the second trains; rerunning the command starts no finished run
(its log, weights and done marker are untouched) and finishes the other; ``status`` shows each state; the
condition's data set carries its pose questions over the selected views, and every run evaluates them shown in
their shuffled order."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "posevlm", "experiment", *map(str, args)], capture_output=True,
                          text=True, env=_env())


def test_kill9_then_rerun_runs_nothing_finished(tmp_path):
    spec = tmp_path / "exp.yaml"
    spec.write_text(
        f"name: resume\ntrain_config: {ROOT / 'configs/train/tiny_synthetic.yaml'}\noutput_dir: {tmp_path / 'out'}\n"
        "overrides: {run.max_steps: 6, run.save_steps: 3, run.batch_size: 2, synthetic.num_scenes: 3,\n"
        "  synthetic.num_test_scenes: 1, synthetic.frames_per_scene: 40, synthetic.questions_per_type: 1,\n"
        "  synthetic.pose_questions_per_type: 2, synthetic.pose_orders_per_scene: 4}\n"
        "grid: {sampler: [uniform], num_frames: [2], seeds: [0, 1]}\n")
    runs = tmp_path / "out" / "runs"
    first, second = runs / "uniform-f2--thw--s0", runs / "uniform-f2--thw--s1"
    proc = subprocess.Popen([sys.executable, "-m", "posevlm", "experiment", "run", str(spec)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 900
    while proc.poll() is None and not (second / "train" / "train_log.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (first / "done.json").is_file() and not (second / "done.json").is_file()
    status = _cli("status", spec)
    assert status.returncode == 0, status.stderr
    assert "done      uniform-f2--thw--s0" in status.stdout and "started   uniform-f2--thw--s1" in status.stdout
    kept = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    log = (first / "train.log").read_text()
    rerun = _cli("run", spec)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "uniform-f2--thw--s0" not in rerun.stdout  # not started, not even mentioned
    assert "[1] uniform-f2--thw--s1: done" in rerun.stdout and "runs: 2 done" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == kept
    assert (first / "train.log").read_text() == log
    assert json.loads((second / "done.json").read_text())["config_hash"]
    steps = [json.loads(x)["step"] for x in (second / "train" / "train_log.jsonl").read_text().splitlines()
             if '"loss"' in x]
    assert steps == list(range(1, 7))  # the killed run resumed to the same six steps
    again = _cli("run", spec)
    assert again.returncode == 0 and "runs: 2 done" in again.stdout and "training" not in again.stdout
    assert "2 runs: 2 done" in _cli("status", spec).stdout
    built = tmp_path / "out" / "data" / "uniform-f2" / "synthetic_train_posed"  # the condition's pose questions
    meta = json.loads((built / "synthetic_train.json").read_text())
    (test_scene,) = meta["splits"]["test"]
    selected = json.loads((built / "sampled" / meta["sampling"]["slug"] / "synthetic_train" / test_scene /
                           "selected_frames.json").read_text())["selected_frames"]
    pose = [json.loads(line) for line in (built / "test_pose_benchmark.jsonl").read_text().splitlines()]
    assert pose and all(r["question_type"].startswith("pose_") and sorted(r["frame_ids"]) == selected for r in pose)
    for run in (first, second):  # both tasks evaluated, the pose questions over the views in their shuffled order
        assert (run / "train" / "eval" / "records").is_dir()
        scored = [json.loads(x) for f in (run / "train" / "eval_pose" / "records").glob("*.jsonl")
                  for x in f.read_text().splitlines()]
        assert sorted(r["id"] for r in scored) == sorted(r["id"] for r in pose)
        shown = {r["id"]: r["frame_ids"] for r in pose}
        assert all(r["status"] == "ok" and r["frames"]["frame_ids"] == shown[r["id"]] for r in scored)
