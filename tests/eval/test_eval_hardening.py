"""Exit codes, retry attempts, input names, run locks and file modes of `posevlm eval`, as users hit them."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eval_world import N, SAMPLER, config
from posevlm.atomic import default_file_mode
from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.benchmarks import read_benchmark_jsonl, write_benchmark_jsonl
from posevlm.eval.run_store import RunLockedError, RunStore
from posevlm.eval.runner import EvalConfig, run_eval


def eval_cli(world: Path, out: Path, *extra: str, frames_root: Path | None = None, source: Path | None = None,
             num_frames: int = N) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi",
            "--source", str(source or world / "bench.jsonl"), "--backend", "oracle", "--scenes", str(world / "data"),
            "--frames", "folder_manifest", "--frames-root", str(frames_root or world / "sampled" / SAMPLER.slug),
            "--num-frames", str(num_frames), "--out", str(out), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def broken_copy(world: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the sampled frames with scene synth_0001 moved away: (frames root, moved folder, its home)."""
    dst = tmp_path / "sampled"
    shutil.copytree(world / "sampled" / SAMPLER.slug, dst)
    home = dst / "synthetic" / "synth_0001"
    hidden = tmp_path / "hidden"
    shutil.move(home, hidden)
    return dst, hidden, home


@pytest.mark.slow
def test_preflight_uses_no_attempts_and_fixed_inputs_are_then_answered(world, tmp_path):
    frames, hidden, home = broken_copy(world, tmp_path)
    out = tmp_path / "run"
    for _ in range(2):  # preflight twice on bad inputs
        pre = eval_cli(world, out, "--stage", "preflight", frames_root=frames)
        assert pre.returncode == 1, pre.stderr
        assert "synth_0001" in (out / "preflight" / "rank00000-of-00001.json").read_text()
    assert RunStore(out).scan() == {}  # no records, so no retry attempts used
    shutil.move(hidden, home)  # the user fixes the inputs
    run = eval_cli(world, out, frames_root=frames)
    assert run.returncode == 0, run.stdout + run.stderr
    records = RunStore(out).scan()
    assert records and all(r["status"] == "ok" for r in records.values())


@pytest.mark.slow
def test_failed_samples_make_the_exit_code_nonzero_until_retried(world, tmp_path):
    frames, hidden, home = broken_copy(world, tmp_path)
    out = tmp_path / "run"
    for _ in range(2):  # the second run is the automatic retry; both fail
        run = eval_cli(world, out, frames_root=frames)
        assert run.returncode == 1 and "failed (" in run.stdout and "--retry-errors" in run.stdout, run.stdout
    shutil.move(hidden, home)
    again = eval_cli(world, out, frames_root=frames)  # attempts used up: kept as errors, still non-zero
    assert again.returncode == 1 and " 0 answered" in again.stdout, again.stdout
    retried = eval_cli(world, out, "--retry-errors", frames_root=frames)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert all(r["status"] == "ok" for r in RunStore(out).scan().values())


def test_retry_errors_reruns_final_error_records(world, tmp_path):
    frames, hidden, home = broken_copy(world, tmp_path)
    cfg = config(world, frames_root=frames)
    for _ in range(2):
        run_eval(cfg, tmp_path / "run")
    shutil.move(hidden, home)
    kept = run_eval(cfg, tmp_path / "run")
    assert kept.n_ok == 0 and kept.failed and not kept.ok
    retried = run_eval(cfg, tmp_path / "run", retry_errors=True)
    assert retried.n_ok == len(kept.failed) and retried.ok and not retried.failed


def test_empty_benchmark_unknown_types_and_bad_frame_counts_are_refused(world, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputFileError, match="holds no records"):
        run_eval(config(world, source=empty), tmp_path / "a")
    recs = read_benchmark_jsonl(world / "bench.jsonl")
    recs[1] = {**recs[1], "question_type": "object_colour"}
    odd = write_benchmark_jsonl(recs, tmp_path / "odd.jsonl")
    with pytest.raises(InputFileError, match=f"'object_colour' \\(ids {recs[1]['id']}\\)"):
        run_eval(config(world, source=odd), tmp_path / "b")
    for n in (0, -3):
        with pytest.raises(ConfigError, match="num_frames must be an int >= 1"):
            EvalConfig(benchmark={"name": "synthetic_vsi", "source": "b.jsonl"}, model={"backend": "dummy"},
                       frames={"source": "folder_manifest", "root": "x", "num_frames": n})
    typo = EvalConfig(benchmark={"name": "synthetic_vsi", "source": str(world / "bench.jsonl"),
                                 "filters": {"question_types": ["object_count"]}}, model={"backend": "dummy"},
                      frames={"source": "folder_manifest", "root": "x", "num_frames": 8})
    with pytest.raises(ConfigError, match="'object_count' is not a VSI-Bench question type"):
        run_eval(typo, tmp_path / "c")
    assert not (tmp_path / "a").exists() or RunStore(tmp_path / "a").scan() == {}


@pytest.mark.slow
def test_cli_bad_benchmark_and_frame_count_are_one_line_errors(world, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for proc in (eval_cli(world, tmp_path / "a", source=empty), eval_cli(world, tmp_path / "b", num_frames=0)):
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_benchmark_names_cannot_leave_the_frames_or_scenes_root(world, tmp_path):
    """A `scene_name` / `dataset` with `..` or a separator would read another run's frames: refused per sample."""
    recs = read_benchmark_jsonl(world / "bench.jsonl")
    other = tmp_path / "other_run"
    shutil.copytree(world / "sampled" / SAMPLER.slug / "synthetic" / "synth_0000", other / "synth_0000")
    evil = [{**recs[0], "id": 10_000, "dataset": "..", "scene_name": "synth_0000"},
            {**recs[1], "id": 10_001, "scene_name": f"../../{other.name}/synth_0000"}]
    bench = write_benchmark_jsonl([*recs, *evil], tmp_path / "evil.jsonl")
    for backend in ("oracle", "dummy"):
        summary = run_eval(config(world, backend, source=bench), tmp_path / backend)
        stored = RunStore(tmp_path / backend).scan()
        assert {i: stored[i]["error"]["kind"] for i in (10_000, 10_001)} == dict.fromkeys((10_000, 10_001),
                                                                                         "invalid_input")
        assert "outside --frames-root" in stored[10_001]["error"]["message"]
        assert summary.failed == dict.fromkeys((10_000, 10_001), "invalid_input")
        assert sum(r["status"] == "ok" for r in stored.values()) == len(recs)  # the run went on


def test_a_second_process_on_the_same_shard_is_refused(world, tmp_path):
    cfg = config(world, "dummy")
    store = RunStore(tmp_path / "run")
    store.create_or_verify(cfg.to_dict(), [r["id"] for r in read_benchmark_jsonl(world / "bench.jsonl")])  # any order
    with store.lock(0, 1):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            run_eval(cfg, tmp_path / "run")
        run_eval(cfg, tmp_path / "run", shard="0/2")  # another shard is free
    assert RunStore(tmp_path / "run").scan() and run_eval(cfg, tmp_path / "run").ok


@pytest.mark.slow
def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over(world, tmp_path):
    out = tmp_path / "run"
    first = eval_cli(world, out, "--stage", "preflight")  # writes run_config.json
    assert first.returncode == 0, first.stderr
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom posevlm.eval.run_store import RunStore\n"
                               f"held = RunStore({str(out)!r}).lock(0, 1)\nheld.__enter__()\nprint('held', flush=True)\n"
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        blocked = eval_cli(world, out)
        assert blocked.returncode == 2 and f"pid {holder.pid}" in blocked.stderr, blocked.stderr
        assert len(blocked.stderr.strip().splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((out / "locks" / "rank00000-of-00001.lock").read_text())["pid"] == holder.pid  # stale
    done = eval_cli(world, out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "locks" / "rank00000-of-00001.lock").read_text() == ""  # released


def test_run_config_is_readable_like_every_other_output(world, tmp_path):
    run_eval(config(world, "dummy"), tmp_path / "run")
    for name in ("run_config.json", "records/rank00000-of-00001.jsonl", "backend/rank00000-of-00001.json"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == default_file_mode(), name


def _dead_proxy_env(hf_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_HOME": str(hf_home), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
            "POSEVLM_HUB_TIMEOUT": "3"}


def _hub_cli(world: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi", "--source",
            str(world / "bench.jsonl"), "--limit", "2", "--backend", "hf", "--model", "posevlm-test/tiny-qwen",
            "--dtype", "float32", "--frames", "folder_manifest", "--frames-root", str(world / "sampled" / SAMPLER.slug),
            "--num-frames", str(N), "--out", str(out)]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_an_unreachable_hub_is_one_line_quickly_or_falls_back_to_the_cache(world, tmp_path):
    proc = _hub_cli(world, tmp_path / "a", _dead_proxy_env(tmp_path / "empty_home"))
    assert proc.returncode == 2 and "Retrying" not in proc.stderr, proc.stderr  # no ~30 s of silent retries
    (line,) = proc.stderr.strip().splitlines()
    assert "not in the local cache" in line and "via proxy http://127.0.0.1:9" in line
    # a copy in the hub cache layout (what `hf download` leaves): used offline, with a one-line warning
    from tiny_models import save_tiny_qwen2_5_vl

    repo = tmp_path / "home" / "hub" / "models--posevlm-test--tiny-qwen"
    revision = "0123456789abcdef0123456789abcdef01234567"
    save_tiny_qwen2_5_vl(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    cached = _hub_cli(world, tmp_path / "b", _dead_proxy_env(tmp_path / "home"))
    assert cached.returncode == 0, cached.stderr[-2000:]
    assert "hub unreachable" in cached.stderr and "loading the cached copy" in cached.stderr
    assert all(r["status"] == "ok" for r in RunStore(tmp_path / "b").scan().values())


@pytest.mark.slow
def test_report_out_problems_are_one_line_errors_and_writes_are_atomic(world, tmp_path):
    from posevlm.errors import OutputPathError
    from posevlm.eval.report import write_report

    run_eval(config(world, "dummy"), tmp_path / "run")
    taken = tmp_path / "taken"
    taken.write_text("a file")
    with pytest.raises(OutputPathError, match="existing file"):
        write_report([tmp_path / "run"], taken)
    proc = subprocess.run([sys.executable, "-m", "posevlm", "report", str(tmp_path / "run"), "--out", str(taken),
                           "--no-plot"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "existing file" in proc.stderr, proc.stderr
    paths = write_report([tmp_path / "run"], tmp_path / "report")
    assert all(p.stat().st_mode & 0o777 == default_file_mode() for p in paths.values())
    assert not list((tmp_path / "report").glob(".*.tmp"))  # written through temporary files, none left
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_an_output_that_fills_up_mid_run_is_one_line_and_resumes(world, tmp_path):
    """A write failing mid-run (here RLIMIT_FSIZE, as a full disk would): one line naming the file, no traceback;
    once the limit is gone the same command resumes and ends with the same records as a clean run."""
    import resource

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    out = tmp_path / "run"
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi", "--source",
            str(world / "bench.jsonl"), "--backend", "oracle", "--scenes", str(world / "data"), "--frames",
            "folder_manifest", "--frames-root", str(world / "sampled" / SAMPLER.slug), "--num-frames", str(N),
            "--out", str(out)]
    full = subprocess.run(args, capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("error: File too large: ") and "rank00000-of-00001.jsonl" in line and "resumed" in line
    assert 0 < len(RunStore(out).scan()) < len(read_benchmark_jsonl(world / "bench.jsonl"))
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    clean = run_eval(config(world), tmp_path / "clean")
    assert clean.ok
    strip = lambda recs: {i: (r["raw_output"], r["scores"]) for i, r in recs.items()}  # noqa: E731
    assert strip(RunStore(out).scan()) == strip(RunStore(tmp_path / "clean").scan())
    taken = tmp_path / "taken"
    taken.write_text("a file")
    proc = subprocess.run(args[:-1] + [str(taken)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "existing file" in proc.stderr
