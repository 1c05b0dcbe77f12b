"""``posevlm geometry``: camera poses, depth and point maps of scans from a geometry model (``predict``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

geometry_app = typer.Typer(help="Geometry from a model (VGGT): cameras, depth and point maps of scans.",
                           no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@geometry_app.callback()
def _geometry() -> None:
    """Geometry from a model (VGGT): cameras, depth and point maps of scans."""


@geometry_app.command("predict")
def predict(
    data: Path = typer.Option(..., "--data", help="Scan folder, or a root holding <scene>/ or <dataset>/<scene>/."),
    out: Path = typer.Option(..., "--out", help="Writes OUT/<dataset>/<scene>.npz (posevlm sample --predictions OUT)."),
    model: str = typer.Option("vggt", "--model", help="vggt (posevlm's own, no extra package) | da3."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Hub id, local directory or .safetensors file "
                                          "(default facebook/VGGT-1B; HF_HUB_OFFLINE=1 reads the cache only)."),
    pool: str = typer.Option("linspace", "--pool", help="Frames the model sees: linspace | all | stride."),
    pool_size: int = typer.Option(128, "--pool-size", help="linspace pool size P."),
    pool_stride: int = typer.Option(1, "--pool-stride", help="stride pool step."),
    chunk: int = typer.Option(48, "--chunk", help="vggt: frames per forward; longer pools run in chunks that all "
                              "include frame 0 and are scaled onto the first chunk by frame 0's depth."),
    image_width: int = typer.Option(518, "--image-width", help="vggt: model input width (multiple of 14; 518 as "
                                    "trained)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="vggt aggregator storage: float32 | bfloat16 | "
                                        "float16 (default float32, bf16 autocast on CUDA)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n; default from torchrun or SLURM array variables."),
) -> None:
    """Run a geometry model on each scan's pool frames and write one predictions npz per scan (cameras as
    w2c_opencv + K_pixels in the pixels of the frames fed, depth, point maps, confidences). Complete files are
    kept (resume), a failing scan is reported and the others finish; exit code 1 if anything failed.

    Examples:

        posevlm geometry predict --data /data/vsibench --weights /ckpt/VGGT-1B --out runs/vggt_pred

        posevlm sample --data /data/vsibench --strategy voxel_coverage --frames 16 --geometry predictions --predictions runs/vggt_pred --out runs/sampled
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from posevlm.sampling import PoolConfig
    from posevlm.sampling.geometry_runner import GeometryPredictConfig, run_geometry_predict

    pool_config = PoolConfig(pool, pool_size, pool_stride)  # type: ignore[arg-type]
    config = GeometryPredictConfig(model=model, weights=weights, pool=pool_config, chunk=chunk,
                                   image_width=image_width, device=device, dtype=dtype)
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("scans", total=None)

        def on_scene(result: dict) -> None:
            progress.advance(task)
            for f in result["failures"]:
                progress.console.print(f"[red]failed[/] {f['dataset']}/{f['scene']}: {f['error']}: {f['message']}",
                                       highlight=False, soft_wrap=True)

        summary = run_geometry_predict(data, out, config, shard=shard, on_scene=on_scene)
    console.print(f"shard {summary.shard[0]}/{summary.shard[1]}: {summary.scenes} scans, {summary.written} predicted, "
                  f"{summary.skipped} complete and kept, {len(summary.failures)} failed in {summary.seconds:.1f}s; "
                  f"details in {out / '_runs' / summary.run_id}", highlight=False)
    if summary.failures:
        console.print(json.dumps([{k: f[k] for k in ("dataset", "scene", "error", "message")} for f in summary.failures],
                                 indent=1), highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
