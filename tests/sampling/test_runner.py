"""The sampling runner as users run it: error isolation, resume, interruption, concurrency, sharding."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from posevlm.sampling import PairingConfig, SamplingConfig, read_manifest
from posevlm.sampling.runner import discover_scenes, resolve_shard, run_sampling, scene_seed
from posevlm.scenes import load_scene
from posevlm.scenes.synthetic import SynthConfig, generate_dataset

UNIFORM = SamplingConfig("uniform", 8, {"flavour": "round_full"})
FPS_PAIRS = SamplingConfig("pose_fps", 8, pairing=PairingConfig("neighbor", direction="random"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 3, SynthConfig(seed=1, num_frames=40, image_hw=(48, 64)))
    return root


def outputs(out: Path):
    return sorted(p.parent for p in out.glob("*/*/*/selected_frames.json"))


def stable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("timings_ms", "provenance")}


def test_manifest_contents_match_the_scene(data, tmp_path):
    summary = run_sampling(data, [FPS_PAIRS, UNIFORM], tmp_path)
    assert summary.ok and summary.written == 6 and summary.scenes == 3
    scene_dir = tmp_path / FPS_PAIRS.slug / data.name / "synth_0001"
    doc = read_manifest(scene_dir)
    scene = load_scene(data / "synth_0001")
    ids = doc["selected_frames"]
    assert doc["num_frames"] == 8 and len(ids) == 8 and ids == sorted(ids)
    assert [s["pair_id"] for s in doc["selected"]] == [0, 0, 1, 1, 2, 2, 3, 3]
    files = [s["file"] for s in doc["selected"]]
    assert sorted(files) == files and sorted(p.name for p in scene_dir.glob("*.png")) == files
    cams = scene.cameras_for(ids)
    assert np.allclose(np.array([s["w2c_opencv"] for s in doc["selected"]]), cams.w2c_opencv.numpy())
    assert doc["config"] == FPS_PAIRS.to_dict() and doc["scene_seed"] == scene_seed(0, data.name, "synth_0001")
    frame = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(scene_dir / files[2]))
    assert np.abs(frame.astype(int) - scene.read_rgb([ids[2]])[0].astype(int)).max() == 0
    pool = np.load(scene_dir / "pool_geometry.npz")
    assert pool["frame_ids"].tolist() == doc["pool"]["frame_ids"]
    assert {"min_distance_mean", "n_fallbacks", "duplicate_ratio"} <= set(doc["stats"])


def test_bad_scene_is_reported_and_others_finish_then_resume_skips(data, tmp_path):
    broken = tmp_path / "data"
    broken.mkdir()
    for name in ("synth_0000", "synth_0001", "synth_0002"):
        os.symlink(data / name, broken / name)
    bad = broken / "synth_9999"
    bad.mkdir()
    for f in (data / "synth_0000").iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "rgb.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    summary = run_sampling(broken, [UNIFORM], out)
    assert summary.written == 3 and len(summary.failures) == 1
    failure = summary.failures[0]
    assert failure["scene"] == "synth_9999" and "rgb.mp4" in failure["message"]
    assert json.loads((out / "_runs" / summary.run_id / "failures.json").read_text())[0]["scene"] == "synth_9999"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("selected_frames.json")}
    again = run_sampling(broken, [UNIFORM], out)
    assert again.written == 0 and again.skipped == 3 and len(again.failures) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("selected_frames.json")} == before


def test_shards_partition_the_scenes(data, tmp_path):
    seen = []
    for i in range(2):
        s = run_sampling(data, [UNIFORM], tmp_path, shard=f"{i}/2", on_scene=lambda r: seen.append(r["scene"]))
        assert s.shard == (i, 2, "--shard")
    assert sorted(seen) == ["synth_0000", "synth_0001", "synth_0002"]
    assert resolve_shard(None, {"WORLD_SIZE": "4", "RANK": "3"}) == (3, 4, "torchrun")
    assert resolve_shard(None, {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                                "SLURM_ARRAY_TASK_COUNT": "3"}) == (2, 3, "slurm_array")
    assert resolve_shard(None, {}) == (0, 1, "none")


def test_scene_seeds_are_stable_and_distinct():
    assert scene_seed(0, "scannet", "scene0011_00") == scene_seed(0, "scannet", "scene0011_00")
    assert len({scene_seed(s, "d", n) for s in (0, 1) for n in ("a", "b")}) == 4


def cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "posevlm", "sample", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


ARGS = ["--strategy", "uniform,pose_fps", "--frames", "4,8", "--pairing", "neighbor", "--direction", "random"]


@pytest.mark.slow
def test_kill_and_restart_equals_uninterrupted(data, tmp_path):
    clean = cli(["--data", data, "--out", tmp_path / "clean", *ARGS])
    assert clean.wait(300) == 0, clean.stderr.read()
    out = tmp_path / "killed"
    victim = cli(["--data", data, "--out", out, *ARGS])
    deadline = time.time() + 120
    while not list(out.glob("*/*/*/selected_frames.json")) and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/selected_frames.json")}
    resumed = cli(["--data", data, "--out", out, *ARGS])
    assert resumed.wait(300) == 0, resumed.stderr.read()
    for p, mtime in done_before.items():
        assert p.stat().st_mtime_ns == mtime  # nothing complete was recomputed
    a, b = outputs(tmp_path / "clean"), outputs(out)
    assert [p.relative_to(tmp_path / "clean") for p in a] == [p.relative_to(out) for p in b]
    for pa, pb in zip(a, b):
        assert stable(read_manifest(pa)) == stable(read_manifest(pb))
        assert sorted(f.name for f in pa.iterdir()) == sorted(f.name for f in pb.iterdir())


@pytest.mark.slow
def test_two_concurrent_runs_do_not_interfere(data, tmp_path):
    out = tmp_path / "shared"
    runs = [cli(["--data", data, "--out", out, *ARGS]) for _ in range(2)]
    codes = [r.wait(300) for r in runs]
    assert codes == [0, 0], [r.stderr.read() for r in runs]
    produced = outputs(out)
    assert len(produced) == 3 * 4  # 3 scenes x (2 strategies x 2 frame counts)
    assert not list(out.glob("*/*/.*partial*"))
    for p in produced:
        doc = read_manifest(p)
        assert len(doc["selected"]) == doc["num_frames"]
        assert all((p / s["file"]).is_file() for s in doc["selected"])


def test_discovery_of_dataset_layout(data, tmp_path):
    refs = discover_scenes(data)
    assert [r.name for r in refs] == ["synth_0000", "synth_0001", "synth_0002"] and refs[0].format == "native"
    nested = tmp_path / "vsibench" / "synthetic"
    nested.mkdir(parents=True)
    os.symlink(data / "synth_0000", nested / "synth_0000")
    assert [(r.dataset, r.name) for r in discover_scenes(tmp_path / "vsibench")] == [("synthetic", "synth_0000")]


@pytest.mark.slow
def test_parallel_workers_equal_one_process(data, tmp_path):
    one = run_sampling(data, [FPS_PAIRS, UNIFORM], tmp_path / "one")
    two = run_sampling(data, [FPS_PAIRS, UNIFORM], tmp_path / "two", workers=2)
    assert one.ok and two.ok and two.written == one.written == 6
    a, b = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert [p.relative_to(tmp_path / "one") for p in a] == [p.relative_to(tmp_path / "two") for p in b]
    for pa, pb in zip(a, b):
        assert stable(read_manifest(pa)) == stable(read_manifest(pb))
