"""``posevlm report``: metrics.json, markdown/LaTeX tables, long CSV and plots for eval runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report(
    runs: List[Path] = typer.Argument(..., help="Run directories (posevlm eval --out); one table row each."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output directory (default: RUN/report for one run)."),
    mode: str = typer.Option(
        "official", "--mode", help="Parsing mode of every number: official | lenient | legacy."),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Report runs with missing samples; every artefact then says PARTIAL."),
    micro: bool = typer.Option(
        False, "--micro", help="Add the micro All/Acc/MRA columns (named, not the average)."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write score_vs_frames.png."),
) -> None:
    """Write metrics.json, table.md, table.tex (booktabs), results_long.csv and score_vs_frames.png.

    Columns follow the paper: Avg (official macro = the official VSI-Bench overall) | ObjCnt | AbsDist |
    ObjSz | RoomSz | RelDist | RelDir | RoutePl | ApprOrd, x100 with 2 decimals, definitions under the
    table. A run with missing samples is refused unless --allow-partial. Failed samples count as 0.

    Examples:

        posevlm report runs/eval/qwen3b_uniform16

        posevlm report runs/eval/qwen3b_* --out reports/qwen3b_frames --micro --allow-partial
    """
    from posevlm.eval.report import write_report

    paths = write_report(runs, out, mode=mode, allow_partial=allow_partial, micro=micro, plot=plot)
    table = paths["markdown"].read_text(encoding="utf-8").split("\n## Per dataset")[0]
    typer.echo(table.rstrip() + "\n")
    for path in paths.values():
        typer.echo(f"wrote {path}")
