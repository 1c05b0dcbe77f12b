"""``posevlm info``: summarise a posed scan in any supported format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table


def info(
    scene: Path = typer.Argument(..., help="Scene directory, video file or frame folder."),
    format: Optional[str] = typer.Option(None, "--format", help="Force a loader (native, scannet, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also write a top-down PNG of the scan here."),
) -> None:
    """Print frames, fps, resolution, camera convention, trajectory length and scene extent.

    Examples:

        posevlm info runs/synth/synth_0000

        posevlm info /data/scannet/scene0011_00 --json
    """
    from posevlm.scenes import load_scene, scene_summary

    loaded = load_scene(scene, format=format)
    summary = scene_summary(loaded)
    if plot is not None:
        from posevlm.viz import plot_scene_topdown

        summary["plot"] = str(plot_scene_topdown(loaded, plot))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    table = Table(title=f"scene {summary['name']}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, _fmt(value))
    Console().print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)
