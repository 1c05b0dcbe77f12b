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
