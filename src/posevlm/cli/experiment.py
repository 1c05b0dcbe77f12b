"""``posevlm experiment run|status|report|slurm SPEC``: a grid of training + evaluation runs as one object."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

experiment_app = typer.Typer(no_args_is_help=True, add_completion=False,
                             help="Experiments: a YAML grid (frame selection x frames x position mode x camera "
                                  "attention x pose bias x seeds) of `posevlm train` + `posevlm eval` runs; run them "
                                  "(resumable, sharded), see their status, report every variant against the stock "
                                  "THW baseline with paired CIs. Specs: configs/experiments/.")

_SPEC = typer.Argument(..., help="Experiment spec (YAML; see configs/experiments/).")
_OUT = typer.Option(None, "--out", help="Output folder (default: the spec's output_dir, runs/experiments/<name>).")


def _load(spec: Path, out: Optional[Path]):
    from posevlm.experiment.spec import load_spec

    return load_spec(spec, output_dir=out)


@experiment_app.command("run")
def run_cmd(
    spec: Path = _SPEC,
    out: Optional[Path] = _OUT,
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: only runs with index % N == K."),
    index: Optional[int] = typer.Option(None, "--index", help="Only run INDEX (a SLURM array task id)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated run names to restrict to."),
    jobs: int = typer.Option(1, "--jobs", help="Local worker processes (each takes shard k/JOBS)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their commands; run nothing."),
) -> None:
    """Run (or resume) the experiment's runs: finished runs are skipped, interrupted ones continue from their
    newest checkpoint, runs another process holds are left to it.

    Examples:

        posevlm experiment run configs/experiments/tiny.yaml --jobs 2

        posevlm experiment run configs/experiments/qwen25vl_3b.yaml --index $SLURM_ARRAY_TASK_ID
    """
    from posevlm.experiment.runner import _command, run_experiment
    from posevlm.experiment.spec import expand_runs, select_shard

    s = _load(spec, out)
    runs = select_shard(expand_runs(s), shard, index)
    if only:
        keep = set(only.split(","))
        runs = [r for r in runs if r.name in keep]
    if dry_run:
        for r in runs:
            typer.echo(f"[{r.index}] {r.name}: {' '.join(_command(s, r))}")
        return
    counts = run_experiment(s, runs, jobs=jobs, log=typer.echo)
    typer.echo("runs: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if counts.get("failed"):
        raise typer.Exit(1)


@experiment_app.command("status")
def status_cmd(spec: Path = _SPEC, out: Optional[Path] = _OUT) -> None:
    """Each run's state: done, running (a process holds it), failed (exit code, last log line), started
    (interrupted; resumes from the named checkpoint), pending."""
    from posevlm.experiment.runner import STATES, experiment_status

    statuses = experiment_status(_load(spec, out))
    for st in statuses:
        typer.echo(f"{st.index:4d}  {st.state:8s}  {st.name}" + (f"  ({st.detail})" if st.detail else ""))
    counts = {k: sum(st.state == k for st in statuses) for k in STATES}
    typer.echo(f"{len(statuses)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))


@experiment_app.command("report")
def report_cmd(spec: Path = _SPEC, out: Optional[Path] = _OUT,
               report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Default: OUT/report."),
               plot: bool = typer.Option(True, "--plot/--no-plot", help="Write score_vs_frames.png.")) -> None:
    """Every variant against the stock THW baseline per condition: means per task, deltas with paired
    bootstrap CIs (pooled over seeds, and per seed = posevlm compare), a verdict per comparison, a plot of
    score vs frames. Writes report.md, report.json, score_vs_frames.png; prints report.md."""
    from posevlm.experiment.analysis import experiment_report

    files = experiment_report(_load(spec, out), report_dir, plot=plot)
    typer.echo(files["report.md"].read_text())
    typer.echo(f"wrote {', '.join(str(p) for p in files.values())}")


@experiment_app.command("slurm")
def slurm_cmd(spec: Path = _SPEC, out: Optional[Path] = _OUT,
              gpus: int = typer.Option(1, "--gpus", help="GPUs per array task."),
              hours: int = typer.Option(12, "--hours", help="Time limit per array task.")) -> None:
    """Print a SLURM array script, one task per run (sbatch it; resubmit to resume)."""
    from posevlm.experiment.runner import slurm_array_script
    from posevlm.experiment.spec import expand_runs

    s = _load(spec, out)
    typer.echo(slurm_array_script(s, len(expand_runs(s, resolve=False)), gpus_per_task=gpus, hours=hours), nl=False)
