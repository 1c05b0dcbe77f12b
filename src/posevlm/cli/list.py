"""``posevlm list``: what is registered (built in, or added by installed plug-ins through entry points)."""

from __future__ import annotations

import json
from typing import Optional

import typer

#: kind -> (registry "module:attr", what it is)
KINDS: dict[str, tuple[str, str]] = {
    "samplers": ("posevlm.sampling.selection:samplers", "frame selectors (posevlm sample --strategy)"),
    "backends": ("posevlm.eval.backends:backends", "answering backends (posevlm eval --backend)"),
    "benchmarks": ("posevlm.eval.benchmarks:benchmarks", "question sets (posevlm eval --benchmark)"),
    "task-formats": ("posevlm.eval.task_format:task_formats",
                     "how a benchmark family is prompted, scored, reported and compared (BenchmarkSpec.task_format)"),
    "positions": ("posevlm.positions.presets:position_presets", "position modes (posevlm eval --positions)"),
    "camera-attention": ("posevlm.attention.cameras:camera_modes",
                         "camera attention modes (posevlm eval --camera-attention)"),
    "models": ("posevlm.models.families:model_families", "model families (pose positions, camera attention)"),
    "train-families": ("posevlm.train.families:train_families",
                       "training model families (posevlm train, model.family): how each is built and fed"),
    "spatial-encoders": ("posevlm.spatial.base:spatial_encoders",
                         "spatial encoders (posevlm.spatial.load_spatial_encoder): tokens per layer, cameras"),
    "rope3d": ("posevlm.positions.rope3d:rope3d_presets",
               "MixedRoPE3D presets for point-cloud tokens (posevlm.models.enable_mixed_rope3d, PointCloudLM)"),
    "point-encoders": ("posevlm.spatial.points:point_encoders",
                       "point-cloud encoders: SpatialLM [N, 9] clouds -> voxel tokens (PointCloudLM)"),
}


def list_cmd(
    kind: Optional[str] = typer.Argument(None, help=f"One of: {', '.join(KINDS)}. Default: all of them."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable: {kind: [{name, description, origin}]}."),
) -> None:
    """List registered samplers, backends, benchmarks, task formats, position modes, camera attention modes, model
    families, training families, spatial encoders, MixedRoPE3D presets and point encoders, each with a one-line
    description and where it comes from (builtin, or the plug-in's distribution).

    Examples:

        posevlm list samplers

        posevlm list --json
    """
    from posevlm.errors import ConfigError
    from posevlm.registry import resolve_target

    if kind is not None and kind not in KINDS:
        import difflib

        close = difflib.get_close_matches(kind, list(KINDS), n=1)
        raise ConfigError(f"posevlm list: unknown kind {kind!r}.{f' Did you mean: {close[0]}?' if close else ''} "
                          f"Choose from {', '.join(KINDS)}", field="kind", value=kind)
    kinds = [kind] if kind else list(KINDS)
    table = {k: [{"name": n, "description": d, "origin": o} for n, d, o in resolve_target(KINDS[k][0]).describe()]
             for k in kinds}
    if as_json:
        typer.echo(json.dumps(table, indent=1))
        return
    for k in kinds:
        typer.echo(f"{k}: {KINDS[k][1]}")
        width = max((len(e["name"]) for e in table[k]), default=0)
        for e in table[k]:
            origin = "" if e["origin"] == "builtin" else f"  [{e['origin']}]"
            typer.echo(f"  {e['name']:<{width}}  {e['description']}{origin}")
        if len(kinds) > 1:
            typer.echo("")
