"""``posevlm viz``: visual reports of posevlm outputs (``viz sampling`` for frame selections)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

viz_app = typer.Typer(help="Visual reports of posevlm outputs.", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)


@viz_app.callback()
def _viz() -> None:
    """Visual reports of posevlm outputs."""


@viz_app.command("sampling")
def sampling(
    manifests: List[Path] = typer.Argument(..., help="selected_frames.json files or scene output dirs."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="HTML report path (default: report.html next to the first manifest)."),
    png: bool = typer.Option(
        False, "--png", help="Also write selected_frames_report.png next to each manifest."),
) -> None:
    """Write one self-contained HTML page (opens offline) with, per manifest: the 3-D camera trajectory
    with the selected frames, pairs and frustums, a thumbnail strip and the statistics. Several
    manifests (e.g. strategies on one scene) give one section each and a comparison table.

    Examples (after posevlm sample --data runs/synth --strategy uniform,pose_fps --out runs/sampled):

        posevlm viz sampling runs/sampled/pose_fps__pool-linspace128__n16__pair-none__seed0/synth/synth_0000

        posevlm viz sampling runs/sampled/*__n16__*/synth/synth_0000 --out runs/sampled/n16.html --png
    """
    from posevlm.viz.sampling_report import (
        resolve_manifest_path,
        write_sampling_report_html,
        write_sampling_report_png,
    )

    paths = [resolve_manifest_path(p) for p in manifests]
    html_path = write_sampling_report_html(paths, out if out is not None else paths[0].parent / "report.html")
    typer.echo(f"wrote {html_path}")
    if png:
        for path in paths:
            typer.echo(f"wrote {write_sampling_report_png(path, path.with_name(path.stem + '_report.png'))}")
