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
    frames: Optional[int] = typer.Option(None, "--frames", min=2, help="Frames per scene (default: the preset's; "
                                                                       "standard: random 300-3000)."),
    size: str = typer.Option("320x240", "--size", help="Frame size WIDTHxHEIGHT (even numbers)."),
    fps: float = typer.Option(30.0, "--fps", help="Capture rate of the hand-held scan."),
    objects: Optional[int] = typer.Option(None, "--objects", help="Objects per scene, 5-60 (default: random)."),
    room: Optional[str] = typer.Option(None, "--room", help="Room shape: rect, L or multi (default: the preset's)."),
    hfov: float = typer.Option(60.0, "--hfov", help="Horizontal field of view in degrees."),
    preset: str = typer.Option("standard", "--preset", help="standard (one room) or hard (2-3 rooms joined by "
                                                            "doorways, clutter, 1800-frame walks)."),
    benchmark: Optional[Path] = typer.Option(None, "--benchmark", help="Also write the synthetic VSI-style "
                                                                       "benchmark of these scenes to this .jsonl."),
    questions_per_task: int = typer.Option(4, "--questions-per-task", min=1,
                                           help="With --benchmark: at most N questions per question type and scene."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="With --benchmark / --pose-benchmark: the records' "
                                                                  "dataset name (default: the name of the --out folder)."),
    pose_benchmark: Optional[Path] = typer.Option(None, "--pose-benchmark", help="Also write pose questions over "
                                                  "the views of --selection (benchmark synthetic_pose) to this .jsonl."),
    selection: Optional[Path] = typer.Option(None, "--selection", help="With --pose-benchmark: a `posevlm sample` "
                                             "output of these scenes for one selection (OUT/<slug>)."),
    pose_orders: int = typer.Option(1, "--pose-orders", min=1, help="With --pose-benchmark: shuffled orders of each "
                                                                    "scene's views (the answers move with the views)."),
) -> None:
    """Generate synthetic posed scans: procedural rooms, hand-held trajectories, ray-cast RGB, depth and
    instance masks, written as OUT/synth_0000/{scene.json, rgb.mp4, cameras.npz, depth/, instances/}.
    Complete scenes already in OUT are kept. With --benchmark, also write VSI-style questions (all ten
    question types, exact ground truth) for them.

    Examples:

        posevlm synth --out runs/synth --scenes 4 --seed 0

        posevlm synth --out runs/synth_hard --preset hard --scenes 4 --frames 600 --fps 10 --size 160x120 --benchmark runs/synth_hard.jsonl --questions-per-task 8

        posevlm synth --out runs/synth --scenes 4 --pose-benchmark runs/pose8.jsonl --selection runs/sampled/<slug> --pose-orders 3
    """
    if (pose_benchmark is None) != (selection is None):
        raise typer.BadParameter("--pose-benchmark and --selection go together: the questions are about the views a "
                                 "selection chose (run `posevlm sample` on --out first)")
    from posevlm.scenes.synthetic import generate_dataset, synth_config

    chosen = {"num_frames": frames, "num_objects": objects, "room_shape": room}
    config = synth_config(preset, seed=seed, image_hw=parse_size(size), fps=fps, hfov_deg=hfov,
                          **{k: v for k, v in chosen.items() if v is not None})
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        scene_task = progress.add_task("scenes", total=scenes)
        frame_task = progress.add_task("frames rendered", total=None)

        def on_scene(index: int, path: Path, skipped: bool) -> None:
            progress.advance(scene_task)
            progress.console.print(f"{'kept' if skipped else 'wrote'} {path}")

        paths = generate_dataset(out, scenes, config, on_scene=on_scene,
                                 on_frame=lambda n: progress.advance(frame_task, n))
    if benchmark is not None:
        from posevlm.eval.benchmarks import generate_benchmark, write_benchmark_jsonl

        records = generate_benchmark(paths, seed=seed, dataset=dataset or Path(out).resolve().name,
                                     max_per_type=questions_per_task)
        write_benchmark_jsonl(records, benchmark)
        console.print(f"wrote {len(records)} questions to {benchmark}")
    if pose_benchmark is not None:
        from posevlm.eval.benchmarks import write_benchmark_jsonl
        from posevlm.eval.benchmarks.pose_tasks import selection_pose_questions

        records = selection_pose_questions(paths, selection, dataset=dataset or Path(out).resolve().name, seed=seed,
                                           orders=pose_orders, max_per_type=questions_per_task)
        write_benchmark_jsonl(records, pose_benchmark)
        console.print(f"wrote {len(records)} pose questions to {pose_benchmark}")
