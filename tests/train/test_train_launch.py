"""``posevlm train`` as users launch it (subprocesses, CPU fp32, one intra-op thread each): a run killed with SIGKILL
at a random step and resumed (through ``accelerate launch``) reproduces the uninterrupted losses and weights exactly;
2-process DDP (gloo, torchrun) equals one process with the doubled batch, and so does DeepSpeed ZeRO-3; the README's
command trains the tiny model ~200 steps, its loss falls well below the start, and its checkpoints evaluate with
``posevlm eval``; the tiny Qwen3-VL config trains and evaluates the same way; errors are one line."""

import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from posevlm.train.config import load_train_config
from posevlm.train.trainer import LossLog

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "tiny_synthetic.yaml"
pytestmark = pytest.mark.slow


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def posevlm(*args, launcher=(), check=True, cwd=None):
    proc = subprocess.run([sys.executable, *launcher, "-m", "posevlm", *map(str, args)], capture_output=True,
                          text=True, env=_env(), cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The tiny config's synthetic training set, built once (every run below reuses it)."""
    from posevlm.train.synthetic import build_synthetic_training_set

    root = tmp_path_factory.mktemp("train_data")
    build_synthetic_training_set(root / "synthetic_train_posed", load_train_config(CONFIG).synthetic)
    return root


def _args(data_root, out, *extra):
    return ["train", CONFIG, f"run.output_dir={out}", f"data.dataset_root={data_root}", "run.evaluate=false", *extra]


def _log(out):
    """The per-step entries of a run's log (the end-of-training summary line is timing, not a step)."""
    lines = (Path(out) / "train_log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if "loss" in e]


def _weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_kill9_at_a_random_step_then_resume_reproduces_the_run_exactly(data_root, tmp_path):
    steps = ["run.max_steps=12", "run.save_steps=3", "run.batch_size=2"]
    posevlm(*_args(data_root, tmp_path / "full", *steps))
    full = _log(tmp_path / "full")
    assert [e["step"] for e in full] == list(range(1, 13))
    rng = random.Random()
    for attempt in range(4):  # until a kill lands mid-run (a slow poll could let a run finish first)
        out, kill_after = tmp_path / f"killed{attempt}", rng.randint(4, 10)
        proc = subprocess.Popen([sys.executable, "-m", "posevlm", *map(str, _args(data_root, out, *steps))],
                                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = out / "train_log.jsonl"
        while proc.poll() is None and (not log.is_file() or len(log.read_text().splitlines()) < kill_after):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (out / "final").exists():
            break
    else:
        pytest.fail("four runs finished before SIGKILL arrived")
    killed_at = len(_log(out))
    assert killed_at < 12, killed_at
    resumed = posevlm(*_args(data_root, out, *steps), launcher=("-m", "accelerate.commands.launch",
                                                                  "--num_processes", "1", "--cpu"))
    assert re.search(r"resuming from checkpoint-(3|6|9)\b", resumed.stdout), resumed.stdout
    assert _log(out) == full, f"killed after step {killed_at}"  # losses, gradient norms, learning rates, epochs
    a, b = _weights(tmp_path / "full" / "final"), _weights(out / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def one_process(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    posevlm(*_args(data_root, out, "run.max_steps=4", "run.save_steps=2", "run.batch_size=2"))
    return out


def _assert_same_run(out, ref):
    mine, theirs = _log(out), _log(ref)
    assert [e["step"] for e in mine] == [e["step"] for e in theirs] == [1, 2, 3, 4]
    for a, b in zip(mine, theirs):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6), (a, b)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5), (a, b)
    wa, wb = _weights(out / "final"), _weights(ref / "final")
    names = {re.sub(r"^model\.model\.", "model.", k): k for k in wa}  # ZeRO-3's gathered names
    assert sorted(names) == sorted(wb)
    for k, key in names.items():
        assert torch.allclose(wa[key], wb[k], atol=1e-6, rtol=1e-5), k


def test_two_process_ddp_equals_one_process_with_the_doubled_batch(data_root, one_process, tmp_path):
    out = tmp_path / "ddp"
    run = posevlm(*_args(data_root, out, "run.max_steps=4", "run.save_steps=2", "run.batch_size=1"),
                  launcher=("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port())))
    assert "world size 2" in run.stdout
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    _assert_same_run(out, one_process)


def test_deepspeed_zero3_by_name_equals_one_process(data_root, one_process, tmp_path):
    out = tmp_path / "zero3"
    posevlm(*_args(data_root, out, "run.max_steps=4", "run.save_steps=2", "run.batch_size=2", "run.deepspeed=zero3"),
            launcher=("-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", str(_port())))
    assert json.loads((out / "run.json").read_text())["deepspeed"]["zero_optimization"]["stage"] == 3
    assert (out / "checkpoint-2" / "model.safetensors").is_file()  # 16-bit weights gathered on save
    _assert_same_run(out, one_process)


def _readme_train_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Train\n")
    section = readme[start: readme.find("\n## ", start + 1)]
    lines = [ln.split("#")[0].strip() for ln in section.splitlines() if ln.startswith("posevlm train ")]
    return shlex.split(lines[0])[1:]


def test_readme_command_trains_the_tiny_model_and_its_checkpoints_evaluate(data_root, tmp_path):
    args = _readme_train_command()
    assert args[:2] == ["train", "configs/train/tiny_synthetic.yaml"]
    out = tmp_path / "tiny"
    run = posevlm(*args, f"run.output_dir={out}", f"data.dataset_root={data_root}", cwd=ROOT)
    config = load_train_config(CONFIG)
    losses = [e["loss"] for e in LossLog.read(out)]
    assert len(losses) == config.run.max_steps >= 150
    start, end = sum(losses[:5]) / 5, sum(losses[-20:]) / 20
    assert end < 0.5 * start, (start, end)
    # the run's own evaluation of final/ (run.evaluate in the config) ...
    assert "eval synthetic_vsi: 15 answered, 0 errors" in run.stdout
    (entry,) = json.loads((out / "eval" / "report" / "metrics.json").read_text())["runs"]
    assert (entry["n_done"], entry["n_expected"], entry["n_errors"]) == (15, 15, 0)
    # ... and posevlm eval on an intermediate checkpoint, as a user runs it
    slug = json.loads((data_root / "synthetic_train_posed" / "synthetic_train.json").read_text())["sampling"]["slug"]
    ev = posevlm("eval", "--benchmark", "synthetic_vsi", "--source",
                 data_root / "synthetic_train_posed" / "test_benchmark.jsonl", "--backend", "hf", "--model",
                 out / "checkpoint-100", "--frames", "folder_manifest", "--frames-root",
                 data_root / "synthetic_train_posed" / "sampled" / slug, "--num-frames", 4,
                 "--backend-set", "min_pixels=3136", "--backend-set", "max_pixels=4704", "--out", tmp_path / "ev100")
    assert "15 answered, 0 errors" in ev.stdout
    (info,) = json.loads(next((tmp_path / "ev100" / "backend").glob("rank*.json")).read_text())
    assert info["positions_origin"] == "checkpoint" and info["positions"]["spec"]["pose"] == "scalar"  # PTHW back


def test_tiny_qwen3_config_trains_and_its_checkpoints_evaluate(data_root, tmp_path):
    """Qwen3-VL with PHW positions: a few steps of the shipped config (same synthetic data as the Qwen2.5-VL one), the
    run's own evaluation of final/, then ``posevlm eval --backend hf`` on a checkpoint, which reloads its positions."""
    qwen3 = ROOT / "configs" / "train" / "tiny_qwen3_synthetic.yaml"
    assert load_train_config(qwen3).synthetic == load_train_config(CONFIG).synthetic  # data_root serves it
    out = tmp_path / "qwen3"
    run = posevlm("train", qwen3, f"run.output_dir={out}", f"data.dataset_root={data_root}", "run.max_steps=4",
                  "run.save_steps=2", "run.batch_size=2")
    losses = [e["loss"] for e in LossLog.read(out)]
    assert len(losses) == 4 and all(v == v for v in losses)
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["model_class"] == "Qwen3VLForConditionalGeneration"
    assert record["model"]["positions"]["layout"] == "qwen3" and record["collator"]["pose_inputs"] == "cameras"
    assert "eval synthetic_vsi: 15 answered, 0 errors" in run.stdout
    slug = json.loads((data_root / "synthetic_train_posed" / "synthetic_train.json").read_text())["sampling"]["slug"]
    ev = posevlm("eval", "--benchmark", "synthetic_vsi", "--source",
                 data_root / "synthetic_train_posed" / "test_benchmark.jsonl", "--backend", "hf", "--model",
                 out / "checkpoint-2", "--frames", "folder_manifest", "--frames-root",
                 data_root / "synthetic_train_posed" / "sampled" / slug, "--num-frames", 4,
                 "--backend-set", "min_pixels=3136", "--backend-set", "max_pixels=4704", "--out", tmp_path / "ev2")
    assert "15 answered, 0 errors" in ev.stdout
    (info,) = json.loads(next((tmp_path / "ev2" / "backend").glob("rank*.json")).read_text())
    assert info["family"] == "qwen3_vl" and info["positions_origin"] == "checkpoint"
    assert info["positions"]["spec"]["layout"] == "qwen3" and info["positions"]["spec"]["pose"] == "scalar"


def test_errors_are_one_line(tmp_path):
    missing = posevlm("train", tmp_path / "nope.yaml", check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    bad = posevlm("train", CONFIG, "run.max_stepz=3", "optim.lr=0", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "did you mean run.max_steps?" in bad.stderr and "optim.lr=0" in bad.stderr
    slurm = posevlm("train", "--print-slurm").stdout
    assert slurm.startswith("#!/bin/bash") and "torchrun" in slurm and "-m posevlm train" in slurm
