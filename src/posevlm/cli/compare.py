"""``posevlm compare``: paired comparison of two eval runs (deltas, bootstrap CIs, McNemar)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:+.2f}"


def compare(
    run_a: Path = typer.Argument(..., help="Baseline run directory A."),
    run_b: Path = typer.Argument(..., help="Run directory B; deltas are B - A."),
    mode: str = typer.Option(
        "official", "--mode", help="Parsing mode of every number: official | lenient | legacy."),
    bootstrap: int = typer.Option(10000, "--bootstrap", help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (same seed, same CIs)."),
    top: int = typer.Option(10, "--top", help="How many most-changed samples to list."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the full comparison as JSON instead of tables."),
) -> None:
    """Compare two runs sample by sample: means of A and B over the ids both runs have, delta B - A
    in points, a paired bootstrap 95% CI (ids resampled within question type, full aggregate per
    resample) and an exact McNemar p for accuracy tasks. '*' marks CIs that exclude 0.

    Examples:

        posevlm compare runs/eval/qwen3b_uniform16 runs/eval/qwen3b_pose_fps16

        posevlm compare runs/eval/qwen3b_uniform16 runs/eval/qwen3b_uniform32 --bootstrap 2000 --seed 1 --json
    """
    from rich.console import Console
    from rich.table import Table

    from posevlm.eval.compare import compare_runs

    result = compare_runs(run_a, run_b, mode=mode, n_bootstrap=bootstrap, seed=seed, top_k=top)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1, allow_nan=False))
        return
    pct = f"{100 * result.confidence:g}%"
    table = Table(title=f"B - A, mode {mode}, {result.n_paired} paired samples")
    for name in ("column", "n", "A", "B", "delta (pts)", f"{pct} CI", "McNemar p (A only/B only)"):
        table.add_column(name, justify="left" if name == "column" else "right", no_wrap=True)
    for c in result.columns:
        ci = "-" if c.ci_low is None else f"[{_delta(c.ci_low)}, {_delta(c.ci_high)}]" + (
            " *" if c.ci_excludes_zero else "")
        mc = "-" if c.mcnemar_p is None else f"{c.mcnemar_p:.4g} ({c.a_only}/{c.b_only})"
        table.add_row(c.column, str(c.n), _pts(c.mean_a), _pts(c.mean_b), _delta(c.delta), ci, mc)
    console = Console()
    if not console.is_terminal:  # piped or captured: do not wrap the table at 80 columns
        console = Console(width=120)
    console.print(f"A = {result.a['label']} ({result.a.get('run_id')}), B = {result.b['label']} "
                  f"({result.b.get('run_id')})", highlight=False)
    console.print(table)
    console.print(f"unpaired: {result.n_only_a} only in A, {result.n_only_b} only in B. Bootstrap: "
                  f"{result.n_bootstrap} resamples, {result.resampling}, seed {result.seed}. "
                  "A CI containing 0 means the change is within noise.", highlight=False)
    for key, (va, vb) in result.config_diff.items():
        console.print(f"  config {key}: {va!r} -> {vb!r}", highlight=False, markup=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if result.top_changed:
        changed = Table(title=f"top {len(result.top_changed)} changed samples")
        for name in ("id", "question_type", "ground_truth", "answer A", "answer B", "score B - A"):
            changed.add_column(name)
        for s in result.top_changed:
            changed.add_row(str(s["id"]), s["question_type"], str(s["ground_truth"]), str(s["answer_a"]),
                            str(s["answer_b"]), f"{s['delta']:+.2f}")
        console.print(changed)
