"""``posevlm sample``: choose frames from posed scans with one or more strategies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from posevlm.errors import ConfigError


def _params(items: list[str], strategy: str) -> dict:
    """``--param key=value`` (every strategy) or ``strategy.key=value`` (only that one)."""
    from posevlm.overrides import parse_value

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param expects key=value or strategy.key=value; got {item!r}", field="param")
        key, value = item.split("=", 1)
        if "." in key:
            owner, key = key.split(".", 1)
            if owner != strategy:
                continue
        out[key] = parse_value(value)
    return out


def sample(
    data: Path = typer.Option(..., "--data", help="Scene folder, or a root holding <scene>/ or <dataset>/<scene>/."),
    strategy: str = typer.Option(..., "--strategy", help="Registered samplers, comma list: uniform, voxel_coverage, "
                                 "pose_fps, farness2d, ... (posevlm list samplers)."),
    frames: str = typer.Option("8,16,32", "--frames", help="Frame counts N, comma separated."),
    out: Path = typer.Option(..., "--out", help="Output root: OUT/<slug>/<dataset>/<scene>/."),
    pairing: str = typer.Option("none", "--pairing", help="none | neighbor | duplicate (merge-aware pairs)."),
    step: int = typer.Option(1, "--step", help="neighbor: companion offset."),
    space: str = typer.Option("pool", "--space", help="neighbor: offset in pool indices (pool) or frame ids (frame)."),
    direction: str = typer.Option("after", "--direction", help="neighbor: after | before | random (seeded)."),
    legacy_pairing: bool = typer.Option(False, "--legacy-pairing", help="Reproduce the reference pairing bit for bit."),
    pool: str = typer.Option("linspace", "--pool", help="Candidate pool: linspace | all | stride."),
    pool_size: int = typer.Option(128, "--pool-size", help="linspace pool size P."),
    pool_stride: int = typer.Option(1, "--pool-stride", help="stride pool step."),
    param: List[str] = typer.Option([], "--param", help="Selector parameter key=value or strategy.key=value."),
    geometry: str = typer.Option("gt", "--geometry", help="gt | predictions | vggt | da3 (run the model on each "
                                 "pool once; cached in OUT/_geometry/)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Folder of <dataset>/<scene>.npz predictions."),
    geometry_weights: Optional[str] = typer.Option(None, "--geometry-weights", help="vggt / da3: hub id, local "
                                                   "directory or .safetensors (default facebook/VGGT-1B)."),
    geometry_chunk: int = typer.Option(48, "--geometry-chunk", help="vggt: frames per forward (chunks share frame 0)."),
    geometry_device: Optional[str] = typer.Option(None, "--geometry-device", help="vggt: cuda | cpu (default: cuda "
                                                  "if available)."),
    seed: int = typer.Option(0, "--seed", help="Global seed; each scene derives its own from it."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n; default from torchrun or SLURM array variables."),
    workers: int = typer.Option(1, "--workers", help="Parallel worker processes (one scene each)."),
) -> None:
    """Select N frames per scene for every strategy x frame count, write frames + selected_frames.json.

    Complete outputs are skipped (resume); a failing scene is reported and the others finish; the
    exit code is 1 if anything failed.

    Examples:

        posevlm sample --data runs/synth --strategy uniform,voxel_coverage,pose_fps --frames 8,16,32 --out runs/sampled

        posevlm sample --data /data/vsibench --strategy pose_fps --frames 16 --pairing neighbor --direction random --out runs/pf
    """
    from posevlm.sampling import PairingConfig, PoolConfig, SamplingConfig
    from posevlm.sampling.runner import run_sampling

    try:
        counts = [int(v) for v in frames.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"--frames expects integers like 8,16,32; got {frames!r}") from None
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"--frames needs frame counts >= 1 such as 8,16,32; got {frames!r}")
    names = [s.strip() for s in strategy.split(",") if s.strip()]
    if not names:
        raise typer.BadParameter(f"--strategy needs at least one strategy name; got {strategy!r}")
    pair_cfg = PairingConfig(pairing, step, space, direction, legacy_pairing)  # type: ignore[arg-type]
    pool_cfg = PoolConfig(pool, pool_size, pool_stride)  # type: ignore[arg-type]
    geometry_options = {}
    if geometry in ("vggt", "da3") and geometry_weights:
        geometry_options["weights"] = geometry_weights
    if geometry == "vggt" and geometry_chunk != 48:
        geometry_options["chunk"] = geometry_chunk
    configs = [SamplingConfig(name, n, _params(param, name), pool_cfg, pair_cfg, seed, geometry, geometry_options)
               for name in names for n in counts]
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("scenes", total=None)

        printed: list[dict] = []

        def on_scene(result: dict) -> None:
            progress.advance(task)
            for f in result["failures"]:
                printed.append(f)
                progress.console.print(f"[red]failed[/] {f['dataset']}/{f['scene']} {f['slug'] or ''}: "
                                       f"{f['error']}: {f['message']}", highlight=False, soft_wrap=True)

        summary = run_sampling(data, configs, out, shard=shard, workers=workers, predictions_dir=predictions,
                               geometry_device=geometry_device, on_scene=on_scene)
    console.print(f"shard {summary.shard[0]}/{summary.shard[1]} ({summary.shard[2]}): {summary.scenes} scenes, "
                  f"{summary.written} outputs written, {summary.skipped} complete and kept, "
                  f"{len(summary.failures)} failed in {summary.seconds:.1f}s; details in "
                  f"{out / '_runs' / summary.run_id}", highlight=False)
    if summary.stale_partials:
        console.print(f"note: {summary.stale_partials} '.partial-*' folder(s) from interrupted runs; safe to delete "
                      "once no run is active", highlight=False)
    for f in summary.failures:  # refused before any work (scene ids): not reported per scene above
        if not any(f is p for p in printed):
            console.print(f"[red]refused[/] {f['path']}: {f['message']}", highlight=False, soft_wrap=True)
    if summary.failures:
        console.print(json.dumps([{k: f[k] for k in ('dataset', 'scene', 'slug', 'error')} for f in summary.failures],
                                 indent=1), highlight=False)
        raise typer.Exit(code=1)
