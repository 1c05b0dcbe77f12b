"""``posevlm synth``: generate synthetic posed scans (the built-in default dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from posevlm.cli._common import parse_size


def synth(
    out: Path = typer.Option(..., "--out", help="Output root; scenes go to OUT/synth_0000, OUT/synth_0001, ..."),
    scenes: int = typer.Option(1, "--scenes", min=1, help="Number of scenes."),
    seed: int = typer.Option(0, "--seed", help="Global seed; scene i is determined by (seed, i)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=2, help="Frames per scene (default: random 300-3000)."),
    size: str = typer.Option("320x240", "--size", help="Frame size WIDTHxHEIGHT (even numbers)."),
    fps: float = typer.Option(30.0, "--fps", help="Capture rate of the hand-held scan."),
    objects: Optional[int] = typer.Option(None, "--objects", help="Objects per room, 5-25 (default: random)."),
    room: Optional[str] = typer.Option(None, "--room", help="Room shape: rect or L (default: random)."),
    hfov: float = typer.Option(60.0, "--hfov", help="Horizontal field of view in degrees."),
) -> None:
    """Generate synthetic posed scans: procedural rooms, hand-held trajectories, ray-cast RGB, depth and
    instance masks, written as OUT/synth_0000/{scene.json, rgb.mp4, cameras.npz, depth/, instances/}.
    Complete scenes already in OUT are kept.

    Examples:

        posevlm synth --out runs/synth --scenes 4 --seed 0

        posevlm synth --out runs/small --scenes 1 --frames 300 --size 160x120
    """
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    config = SynthConfig(seed=seed, num_frames=frames, image_hw=parse_size(size), fps=fps, num_objects=objects,
                         room_shape=room, hfov_deg=hfov)
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        scene_task = progress.add_task("scenes", total=scenes)
        frame_task = progress.add_task("frames rendered", total=None)

        def on_scene(index: int, path: Path, skipped: bool) -> None:
            progress.advance(scene_task)
            progress.console.print(f"{'kept' if skipped else 'wrote'} {path}")

        generate_dataset(out, scenes, config, on_scene=on_scene,
                         on_frame=lambda n: progress.advance(frame_task, n))
