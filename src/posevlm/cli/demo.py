"""``posevlm demo``: synthetic scans -> frame selection -> oracle evaluation -> report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where every stage writes (resumable)."),
    scenes: int = typer.Option(4, "--scenes", min=1, help="Synthetic scenes."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run the end-to-end demo on the built-in synthetic benchmark and print where the report is.

    Examples:

        posevlm demo

        posevlm demo --out runs/demo8 --scenes 8 --seed 1
    """
    from posevlm.eval.demo import DemoConfig, run_demo

    console = Console()
    report = run_demo(out, DemoConfig(scenes=scenes, seed=seed), log=lambda m: console.print(m, highlight=False))
    table = (report / "table.md").read_text()
    console.print(table, highlight=False)
    console.print(f"report: {report}/ (table.md, table.tex, metrics.json, results_long.csv, score_vs_frames.png)",
                  highlight=False)
