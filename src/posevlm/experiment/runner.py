"""Running an experiment's runs: resumable, shardable, one ``posevlm train`` (with its evaluation) per run.

Per run, under ``<output_dir>/runs/<name>/``::

    config.json     the full resolved training config, its hash, the overrides and the command
    train/          the ``posevlm train`` output (checkpoints, train_log.jsonl, eval/ = the ``posevlm eval`` run)
    train.log       the run's stdout and stderr
    lock            held (``fcntl``) while a process works on the run: the run shows as running
    done.json       written last, after the training and the evaluation succeeded (config hash, seconds)
    failed.json     the exit code and the log's tail of the last failed attempt

A run with ``done.json`` is never run again (after ``kill -9`` of everything, rerunning the same command
starts no finished run; an unfinished one resumes from its newest checkpoint, as ``posevlm train`` does). A
finished run whose resolved config no longer matches the spec is refused (change ``output_dir`` instead).
Runs whose lock another process holds are skipped, so any number of shards (``--shard K/N``, local
``--jobs``, a SLURM array over ``--index``) can share one output folder. Each condition's synthetic data set
is built once, under a lock, before its first run (with its pose questions when the spec's training config asks
for them: ``synthetic.pose_questions_per_type``; ``posevlm train`` then evaluates them into ``train/eval_pose``).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from posevlm.errors import ConfigError, PosevlmError
from posevlm.experiment.spec import ExperimentSpec, RunPlan, expand_runs

__all__ = ["RunStatus", "run_status", "experiment_status", "run_one", "run_experiment", "slurm_array_script",
           "STATES"]

STATES = ("done", "running", "failed", "started", "pending")


@dataclass(frozen=True)
class RunStatus:
    """``state``: done | running (a process holds its lock) | failed | started (interrupted: resumes) | pending."""

    name: str
    index: int
    state: str
    detail: str = ""


@contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    from posevlm.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def run_status(run: RunPlan) -> RunStatus:
    """The state of one run from its folder (never blocks)."""
    d = run.run_dir
    if (d / "done.json").is_file():
        return RunStatus(run.name, run.index, "done")
    if (d / "lock").is_file():
        with _try_lock(d / "lock") as free:
            if not free:
                return RunStatus(run.name, run.index, "running")
    if (d / "failed.json").is_file():
        info = json.loads((d / "failed.json").read_text())
        return RunStatus(run.name, run.index, "failed", f"exit {info.get('returncode')}: {info.get('last_line', '')}")
    if (d / "config.json").is_file():
        ckpts = sorted(p.name for p in run.train_dir.glob("checkpoint-*")) if run.train_dir.is_dir() else []
        return RunStatus(run.name, run.index, "started", ckpts[-1] if ckpts else "no checkpoint yet")
    return RunStatus(run.name, run.index, "pending")


def experiment_status(spec: ExperimentSpec) -> list[RunStatus]:
    return [run_status(r) for r in expand_runs(spec, resolve=False)]


def _prepare_data(run: RunPlan) -> None:
    """Build the condition's synthetic data set once (a lock serialises shards; later runs reuse it)."""
    from posevlm.train.config import TrainConfig
    from posevlm.train.synthetic import TRAIN_DATASET, build_synthetic_training_set

    config = TrainConfig.from_dict(run.config)
    if config.synthetic is None:
        return
    root = run.data_root
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        built = root / f"{TRAIN_DATASET}_posed"
        if not (built / "synthetic_train.json").is_file():
            build_synthetic_training_set(built, config.synthetic)
    finally:
        os.close(fd)


def _command(spec: ExperimentSpec, run: RunPlan) -> list[str]:
    launcher = list(spec.launcher) if spec.launcher else [sys.executable]
    return [*launcher, "-m", "posevlm", "train", str(spec.train_config), *run.overrides]


def run_one(spec: ExperimentSpec, run: RunPlan, *, log: Callable[[str], None] = print) -> str:
    """Run (or resume) one run; returns its state afterwards: done, failed, running (locked elsewhere)."""
    d = run.run_dir
    done = d / "done.json"
    if done.is_file():
        recorded = json.loads(done.read_text()).get("config_hash")
        if recorded != run.config_hash:
            raise ConfigError(f"run {run.name} in {d} finished with another config (hash {recorded}, the spec now "
                              f"gives {run.config_hash}); point the experiment at a new output_dir", field="spec")
        return "done"
    with _try_lock(d / "lock") as mine:
        if not mine:
            log(f"[{run.index}] {run.name}: running in another process, skipped")
            return "running"
        command = _command(spec, run)
        _write_json(d / "config.json", {"name": run.name, "index": run.index, "config_hash": run.config_hash,
                                        "overrides": list(run.overrides), "command": command,
                                        "train_config": run.config})
        _prepare_data(run)
        log(f"[{run.index}] {run.name}: training + evaluation -> {d}")
        t0 = time.time()
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        with open(d / "train.log", "ab") as out:
            rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        seconds = time.time() - t0
        ok = rc == 0 and (run.eval_dir / "records").is_dir()
        if not ok:
            lines = (d / "train.log").read_text(errors="replace").strip().splitlines()
            _write_json(d / "failed.json", {"returncode": rc, "seconds": seconds,
                                            "last_line": lines[-1] if lines else "",
                                            "tail": lines[-30:]})
            log(f"[{run.index}] {run.name}: FAILED (exit {rc}); see {d / 'train.log'}")
            return "failed"
        (d / "failed.json").unlink(missing_ok=True)
        _write_json(done, {"config_hash": run.config_hash, "seconds": seconds, "eval_dir": str(run.eval_dir)})
        log(f"[{run.index}] {run.name}: done in {seconds:.0f} s")
        return "done"


def run_experiment(spec: ExperimentSpec, runs: Sequence[RunPlan], *, jobs: int = 1,
                   log: Callable[[str], None] = print) -> dict[str, int]:
    """Run ``runs`` (a shard of ``expand_runs(spec)``) in order, or spread over ``jobs`` local worker processes
    (``posevlm experiment run --shard k/jobs``, each with one intra-op thread). Returns state -> count."""
    if jobs > 1:
        names = {r.name for r in runs}
        procs = [subprocess.Popen([sys.executable, "-m", "posevlm", "experiment", "run", str(spec.source),
                                   "--out", str(spec.output_dir), "--shard", f"{k}/{jobs}",
                                   "--only", ",".join(sorted(names))],
                                  env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
                 for k in range(jobs)]
        codes = [p.wait() for p in procs]
        if any(codes):
            log(f"worker exit codes: {codes}")
        counts: dict[str, int] = {}
        for r in runs:
            state = run_status(r).state
            counts[state] = counts.get(state, 0) + 1
        return counts
    counts = {}
    for run in runs:
        state = run_one(spec, run, log=log)
        counts[state] = counts.get(state, 0) + 1
    return counts


def slurm_array_script(spec: ExperimentSpec, n_runs: int, *, gpus_per_task: int = 1, hours: int = 12) -> str:
    """A SLURM array script: task i runs experiment run i (``--index $SLURM_ARRAY_TASK_ID``); resubmitting
    the same array resumes (finished runs are skipped, interrupted ones continue from their checkpoint)."""
    if n_runs < 1:
        raise PosevlmError(f"experiment {spec.name} has no runs")
    return f"""#!/bin/bash
#SBATCH --job-name=exp-{spec.name}
#SBATCH --array=0-{n_runs - 1}
#SBATCH --nodes=1
#SBATCH --gres=gpu:{gpus_per_task}
#SBATCH --cpus-per-task={8 * gpus_per_task}
#SBATCH --time={hours}:00:00
#SBATCH --output=logs/%x-%A_%a.out
# One array task per run of {spec.source} ({n_runs} runs). Runs with several GPUs set the spec's
# launcher: [torchrun, --nproc_per_node, "{gpus_per_task}"]. Resubmit to resume; then:
#   posevlm experiment status {spec.source}  and  posevlm experiment report {spec.source}
set -euo pipefail
posevlm experiment run {spec.source} --out {spec.output_dir} --index "$SLURM_ARRAY_TASK_ID"
"""
