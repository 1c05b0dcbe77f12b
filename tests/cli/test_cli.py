"""The CLI as a user runs it: a subprocess of ``python -m posevlm``."""

import json
import subprocess
import sys

import pytest

from posevlm import __version__


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "posevlm", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.mark.slow
def test_version():
    assert run("--version").stdout.strip() == f"posevlm {__version__}"


@pytest.mark.slow
def test_synth_then_info(tmp_path):
    out = tmp_path / "synth"
    run("synth", "--out", out, "--scenes", 2, "--frames", 12, "--size", "64x48", "--seed", 3)
    scenes = sorted(p.name for p in out.iterdir())
    assert scenes == ["synth_0000", "synth_0001"]
    summary = json.loads(run("info", out / "synth_0001", "--json", "--plot", tmp_path / "top.png").stdout)
    assert summary["num_frames"] == 12 and summary["resolution_hw"] == [48, 64] and summary["fps"] == 30.0
    assert summary["convention"] == "w2c_opencv" and summary["has_depth"] and summary["has_instances"]
    assert summary["trajectory_length_m"] > 0 and summary["extent_source"] == "room"
    assert 3.0 <= max(summary["scene_extent_m"][:2]) <= 9.0 and 2.4 <= summary["scene_extent_m"][2] <= 3.0
    assert (tmp_path / "top.png").stat().st_size > 10_000
    # a second run keeps complete scenes; a different configuration in the same place is refused
    assert "kept" in run("synth", "--out", out, "--scenes", 2, "--frames", 12, "--size", "64x48", "--seed", 3).stdout
    refused = run("synth", "--out", out, "--scenes", 1, "--frames", 12, "--size", "64x48", "--seed", 4, check=False)
    assert refused.returncode == 2 and "different configuration" in refused.stderr


@pytest.mark.slow
def test_errors_are_one_clear_line(tmp_path):
    proc = run("info", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    bad = run("synth", "--out", tmp_path / "x", "--size", "63x48", "--frames", 4, check=False)
    assert bad.returncode == 2 and "even" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("size", ["640", "axb"])
def test_bad_size_is_a_usage_error(tmp_path, size):
    proc = run("synth", "--out", tmp_path / "x", "--size", size, check=False)
    assert proc.returncode != 0 and "WIDTHxHEIGHT" in proc.stderr


def test_synth_hard_preset_writes_the_benchmark_with_questions_per_task(tmp_path):
    from typer.testing import CliRunner

    from posevlm.cli import app
    from posevlm.eval.benchmarks import read_benchmark_jsonl
    from posevlm.scenes import load_scene

    out, bench = tmp_path / "hard", tmp_path / "hard.jsonl"
    args = ["synth", "--out", str(out), "--preset", "hard", "--scenes", "1", "--seed", "1", "--frames", "60",
            "--fps", "2", "--size", "64x48", "--benchmark", str(bench)]
    result = CliRunner().invoke(app, [*args, "--questions-per-task", "2"])
    assert result.exit_code == 0, result.output
    scene = load_scene(out / "synth_0000")
    assert scene.metadata["generator"]["config"]["room_shape"] == "multi"
    assert scene.metadata["generator"]["config"]["clutter"] is True and len(scene) == 60
    two = read_benchmark_jsonl(bench)
    types = [r["question_type"] for r in two]
    assert "route_planning" in types and max(types.count(t) for t in set(types)) == 2
    assert {r["dataset"] for r in two} == {"hard"}
    result = CliRunner().invoke(app, [*args, "--questions-per-task", "5"])  # scenes kept, more questions
    assert result.exit_code == 0 and "kept" in result.output
    five = read_benchmark_jsonl(bench)
    assert len(five) > len(two)
    by_id = {r["id"]: r for r in five}
    assert all(by_id[r["id"]] == r for r in two)  # more questions per task extend the set, never change it
