"""Inputs users get wrong, and how `posevlm sample` treats them: scene ids, collisions, frame counts,
predictions of another scan, unwritable outputs, and worker processes outliving their parent."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posevlm.errors import InputFileError, OutputPathError
from posevlm.sampling import SamplingConfig
from posevlm.sampling.runner import discover_scenes, run_sampling
from posevlm.scenes import load_scene, save_predictions
from posevlm.scenes.synthetic import SynthConfig, generate_dataset

UNIFORM = SamplingConfig("uniform", 4, {"flavour": "round_full"})


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    generate_dataset(root, 2, SynthConfig(seed=4, num_frames=24, image_hw=(48, 64)))
    return root


def sample_cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posevlm", "sample", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kw)


def test_scene_ids_are_full_folder_names(scans, tmp_path):
    data = tmp_path / "rooms"
    for name in ("room.1", "room.2"):
        shutil.copytree(scans / "synth_0000", data / name)
    assert [r.name for r in discover_scenes(data)] == ["room.1", "room.2"]
    summary = run_sampling(data, [UNIFORM], tmp_path / "out")
    assert summary.ok and summary.written == 2
    assert sorted(p.name for p in (tmp_path / "out" / UNIFORM.slug / "rooms").iterdir()) == ["room.1", "room.2"]


@pytest.mark.slow
def test_unsafe_and_colliding_scene_ids_are_refused_naming_both_inputs(scans, tmp_path):
    data = tmp_path / "mixed"
    data.mkdir()
    video = scans / "synth_0001" / "rgb.mp4"
    shutil.copy(video, data / "...mp4")  # its id would be '..'
    shutil.copy(video, data / "a.mp4")
    shutil.copytree(scans / "synth_0000", data / "a")  # also id 'a'
    shutil.copytree(scans / "synth_0000", data / "Hall")
    shutil.copytree(scans / "synth_0000", data / "hall")  # same folder on a case-insensitive file system
    shutil.copytree(scans / "synth_0001", data / "ok")
    with pytest.raises(InputFileError, match="rename"):
        discover_scenes(data)
    problems: list = []
    refs = discover_scenes(data, problems=problems)
    assert [r.name for r in refs] == ["ok"]
    messages = {Path(p["path"]).name: p["message"] for p in problems}
    assert set(messages) == {"...mp4", "a.mp4", "a", "Hall", "hall"}
    assert str(data / "a.mp4") in messages["a"] and str(data / "a") in messages["a.mp4"]
    assert str(data / "Hall") in messages["hall"]
    summary = run_sampling(data, [UNIFORM], tmp_path / "out")
    assert summary.written == 1 and len(summary.failures) == 5 and not summary.ok
    assert not (tmp_path / "out" / UNIFORM.slug / "..").resolve().joinpath("mixed").exists()
    proc = sample_cli("--data", data, "--strategy", "uniform", "--frames", 4, "--out", tmp_path / "cli")
    assert proc.returncode == 1 and "...mp4" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_frame_count_inputs_name_the_flag_and_the_fix(scans, tmp_path):
    empty = sample_cli("--data", scans, "--strategy", "uniform", "--frames", "", "--out", tmp_path / "o")
    assert empty.returncode == 2 and "--frames needs frame counts" in empty.stderr, empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    summary = run_sampling(scans, [SamplingConfig("pose_fps", 40)], tmp_path / "big")
    assert len(summary.failures) == 2
    message = summary.failures[0]["message"]
    assert "--frames 40" in message and "only 24" in message and "--pool-size" in message


def test_predictions_of_another_scan_name_the_file(scans, tmp_path):
    scene = load_scene(scans / "synth_0000")
    preds = tmp_path / "preds" / scans.name
    ids = scene.frame_ids[:8] + 1000  # ids this scan does not have
    cams = scene.cameras_for(scene.frame_ids[:8])
    save_predictions(preds / "synth_0000.npz", frame_ids=ids, w2c_opencv=cams.w2c_opencv.numpy(),
                     K_pixels=cams.K_pixels.numpy(), image_hw=scene.image_hw())
    cfg = SamplingConfig("pose_fps", 4, geometry="predictions")
    summary = run_sampling(scans / "synth_0000", [cfg], tmp_path / "out", predictions_dir=tmp_path / "preds")
    (failure,) = summary.failures
    assert failure["error"] == "InputFileError" and "synth_0000.npz" in failure["message"]
    assert "regenerate them" in failure["message"] and str(int(ids[0])) in failure["message"]


@pytest.mark.slow
def test_unwritable_outputs_are_one_line_errors_and_resumable(scans, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    with pytest.raises(OutputPathError, match="existing file"):
        run_sampling(scans, [UNIFORM], a_file)
    proc = sample_cli("--data", scans, "--strategy", "uniform", "--frames", 4, "--out", a_file)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "existing file" in proc.stderr, proc.stderr
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        proc = sample_cli("--data", scans, "--strategy", "uniform", "--frames", 4, "--out", locked / "out")
        assert proc.returncode == 2 and "not writable" in proc.stderr and "Traceback" not in proc.stderr
        locked.chmod(0o755)
    full = sample_cli("--data", scans, "--strategy", "uniform", "--frames", 4, "--out", tmp_path / "out")
    assert full.returncode == 0, full.stderr


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc (Linux)")
def test_killing_the_parent_ends_its_workers(tmp_path):
    data = tmp_path / "many"
    generate_dataset(data, 6, SynthConfig(seed=5, num_frames=120, image_hw=(96, 128)))
    parent = subprocess.Popen([sys.executable, "-m", "posevlm", "sample", "--data", str(data), "--strategy",
                               "voxel_coverage,pose_fps", "--frames", "8,16", "--workers", "2", "--out",
                               str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:  # wait for the spawned workers (plus the resource tracker)
        workers = [k for k in _children(parent.pid) if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
        time.sleep(0.1)
    assert len(workers) == 2 and parent.poll() is None
    while time.time() < deadline and not list((tmp_path / "out").glob("*/*/*/selected_frames.json")):
        time.sleep(0.1)  # the workers are set up and busy (spawned workers import torch first)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers outlived their killed parent"
