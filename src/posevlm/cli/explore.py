"""``posevlm explore``: a static HTML page to browse one eval run, or to diff two."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def explore(
    runs: List[Path] = typer.Argument(..., help="One run directory (posevlm eval --out), or two to compare."),
    out: Path = typer.Option(..., "--out", help="Folder for index.html and thumbs/ (nothing is written elsewhere)."),
    mode: str = typer.Option("official", "--mode", help="Parsing mode whose parsed answers and scores are shown."),
) -> None:
    """Write OUT/index.html (opens offline, no server): per question the selected frames as thumbnails, the
    camera trajectory with the selected cameras, question, options, ground truth, raw and parsed prediction,
    parse status and score, with filters by task, dataset, scene and strategy; with two runs, side by side
    and filterable by where one wins and the other loses.

    Examples:

        posevlm explore runs/demo/runs/hard_scenes4_q8_seed0_v2/uniform-flavour_round_full__pool-all__n16__pair-none__seed0 --out runs/explore_uniform16

        posevlm explore runs/demo/runs/<tag>/<uniform n16 slug> runs/demo/runs/<tag>/<pose_fps n16 slug> --out runs/explore_diff
    """
    from posevlm.viz.run_explorer import write_explorer

    path = write_explorer(runs, out, mode=mode)
    typer.echo(f"wrote {path}")
