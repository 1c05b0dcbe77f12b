"""``posevlm inspect``: look inside what the library builds (``inspect positions``: token layout and position
rows of one video prompt)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional

import typer

from posevlm.errors import PosevlmError

inspect_app = typer.Typer(
    help="Inspect token layouts and position ids.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@inspect_app.callback()
def _inspect() -> None:
    """Inspect token layouts and position ids."""


def _parse_wh(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise typer.BadParameter(
            f"expected WxH like 644x476 (width x height in pixels); got {text!r}", param_hint="'--size'"
        )
    w, h = int(m.group(1)), int(m.group(2))
    if w < 1 or h < 1:
        raise typer.BadParameter(
            f"width and height must be >= 1; got {text!r} (write WxH like 644x476)", param_hint="'--size'"
        )
    return w, h


_OPTION_OF_FIELD = {
    "frames": "--frames",
    "size width": "--size",
    "size height": "--size",
    "patch_size": "--patch-size",
    "temporal_patch_size": "--temporal-patch-size",
    "merge_size": "--merge-size",
    "video_frames": "--video-frames",
    "text_before": "--text-before",
    "text_after": "--text-after",
    "timestamp_tokens": "--qwen3-timestamp-tokens",
    "embed_dim": "--embed-dim",
    "second_per_grid": "--second-per-grid",
    "positions": "--mode",
    "layout": "--layout",
    "PositionSpec": "--set / --mode",
}


def _fail(exc: Exception | str) -> None:
    option = _OPTION_OF_FIELD.get(getattr(exc, "field", None) or "")
    if option and not str(exc).startswith("--"):
        exc = f"{option}: {exc}"
    from posevlm.cli import fail

    fail(str(exc))


def _range(lo, hi) -> str:
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def _render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=True)
    if not con.is_terminal:  # piped / captured: do not squeeze the table into 80 columns
        con = Console(highlight=False, soft_wrap=True, width=160)
    tl, seq, axes = report["token_layout"], report["sequence"], report["axes"]
    (t, gh, gw), (mh, mw) = tl["grid_thw"], tl["merged_hw"]
    p, tp, m = tl["patch_size"], tl["temporal_patch_size"], tl["merge_size"]
    con.print(
        f"[bold]posevlm inspect positions[/]  mode [cyan]{report['mode']}[/]  layout "
        f"[cyan]{report['layout']}[/]{'  (legacy next-segment rule)' if report['legacy'] else ''}  "
        f"rows {','.join(axes)}"
    )
    con.print(
        f"frames      {tl['frames']}"
        + (
            f" (padded to {tl['padded_frames']} by repeating the last frame)"
            if tl["padded_frames"] != tl["frames"]
            else ""
        )
    )
    con.print(
        f"size        {tl['size_note']}; frames enter the ViT as HxW = "
        f"{tl['resized_hw'][0]}x{tl['resized_hw'][1]}"
    )
    con.print(
        f"patch grid  grid_h = {tl['resized_hw'][0]}/{p} = {gh}, grid_w = {tl['resized_hw'][1]}/{p} = {gw}, "
        f"patches per frame {gh}·{gw} = {tl['patches_per_frame']}"
    )
    con.print(f"tubelets    grid_t = ceil({tl['frames']}/{tp}) = {t}  -> video_grid_thw = ({t}, {gh}, {gw})")
    con.print(
        f"pixels      {t}·{gh}·{gw} = {tl['pixel_tokens']} tubelet tokens of dim 3·{tp}·{p}·{p} = "
        f"{tl['pixel_token_dim']}  (pixel_values_videos {tuple(tl['pixel_values_shape'])})"
    )
    con.print(
        f"merged      {gh}/{m} x {gw}/{m} = {mh}x{mw} = {tl['tokens_per_tubelet']} tokens per tubelet; "
        f"{t}·{tl['tokens_per_tubelet']} = {tl['llm_video_tokens']} LLM video tokens"
    )
    con.print(f"token dim   {tl['llm_token_note']}")
    con.print(
        f"notes       Spatial-MLLM VGGT connector: {tl['spatial_mllm_connector_dim']} "
        f"({tl['spatial_mllm_connector_dim_formula']}); not a Qwen dimension"
    )
    ts = (
        f" + {seq['timestamp_tokens']} timestamp ({seq['timestamp_tokens_per_tubelet']} per tubelet)"
        if seq["timestamp_tokens"]
        else ""
    )
    con.print(
        f"sequence    {seq['text_before']} text{ts} + {seq['video_tokens']} video + {seq['text_after']} "
        f"text = {seq['total']} tokens; {report['rope_segments']} rope segment(s) for the video"
    )
    con.print(f"frame ids   {report['frame_ids']} ({report['frame_ids_source']})")
    if report["cameras"]:
        con.print(f"cameras     {report['cameras']}")

    table = Table(show_lines=False)
    for col, kw in (
        ("#", {"justify": "right"}),
        ("segment", {}),
        ("frames", {}),
        ("frame ids", {}),
        ("tokens", {"justify": "right"}),
        ("count", {"justify": "right"}),
    ):
        table.add_column(col, no_wrap=True, **kw)
    for a in axes:
        table.add_column(a, justify="right", no_wrap=True)
    for i, s in enumerate(report["segments"]):
        frames = ids = ""
        if s["frames"] is not None:
            frames = ",".join(str(f) for f in s["frames"])
            ids = ",".join(
                f"{fid}{'*' if f in s['padded_frames'] else ''}"
                for f, fid in zip(s["frames"], s["frame_ids"])
            )
        kind = s["label"] + (
            f" (rope segment {s['segment']})"
            if s["segment"] is not None and report["layout"] == "qwen3"
            else ""
        )
        table.add_row(
            str(i),
            kind,
            frames,
            ids,
            _range(s["first_token"], s["last_token"]),
            str(s["count"]),
            *(_range(*s["rows"][a]) for a in axes),
        )
    con.print(table)
    if any(s.get("padded_frames") for s in report["segments"]):
        con.print("* repeated last frame (odd frame count)")
    con.print(
        f"video starts at {report['video_start']}; next text starts at {report['next_text_start']}; "
        f"first decode step at position {report['decode_start']} (posevlm models continue from the last "
        f"token); continuation delta {report['continuation_delta']}"
    )
    con.print(
        f"transformers get_rope_index: rope_deltas {report['rope_deltas_transformers']} (max position + 1: "
        f"would decode at {report['decode_start_transformers']}; not used by posevlm models)"
    )


def _manifest_wh(manifest: Path) -> tuple[int, int] | None:
    """(W, H) of the frames a manifest's video holds: ``video.height/width``, else ``selected[].image_hw``
    (the size the cameras refer to); None if it records neither."""
    from posevlm.sampling.manifest import read_manifest

    doc = read_manifest(manifest)
    video = doc.get("video") or {}
    if video.get("height") and video.get("width"):
        return int(video["width"]), int(video["height"])
    hws = [s.get("image_hw") for s in doc.get("selected") or [] if isinstance(s, dict)]
    if hws and all(hw is not None for hw in hws):
        h, w = (int(v) for v in hws[0])
        return w, h
    return None


def _synthetic_cameras(frames: int, video_frames: int, seed: int):
    """(w2c_opencv, description) of a synthetic hand-held scan at the inspector's default frame ids (uniform
    over ``video_frames``), or (None, None) when the counts are invalid (the inspector then names them)."""
    if not 1 <= frames <= video_frames:
        return None, None
    from posevlm.positions.inspect import uniform_frame_ids
    from posevlm.scenes.synthetic import synthetic_scan_w2c

    w2c = synthetic_scan_w2c(uniform_frame_ids(frames, video_frames), video_frames, seed)
    return w2c, f"synthetic hand-held scan (seed {seed}, {video_frames} frames)"


@inspect_app.command("positions")
def positions(
    frames: Optional[int] = typer.Option(
        None, "--frames", help="Sampled frames S (default 16, or the manifest's frame count)."
    ),
    size: Optional[str] = typer.Option(
        None,
        "--size",
        help="Frame size WxH (default 644x476); rounded to multiples of patch*merge. With --manifest and no "
        "--size: the manifest's frame size, resized like the hf eval backend (qwen-vl-utils).",
    ),
    mode: str = typer.Option(
        "thw",
        "--mode",
        help="Position mode: thw, thw_index, thw_without_t, thw_readapt_t, pthw, phw (qwen3: thw, phw).",
    ),
    layout: str = typer.Option(
        "qwen2_5",
        "--layout",
        "--model-family",
        help="qwen2_5 (one rope segment per video) or qwen3 (one per tubelet).",
    ),
    text_before: int = typer.Option(10, "--text-before", help="Text tokens before the video."),
    text_after: int = typer.Option(5, "--text-after", help="Text tokens after the video."),
    qwen3_timestamp_tokens: int = typer.Option(
        4,
        "--qwen3-timestamp-tokens",
        help="qwen3 layout: text tokens of the '<t seconds>' timestamp before each tubelet "
        "(ignored for qwen2_5).",
    ),
    patch_size: Optional[int] = typer.Option(
        None, "--patch-size", help="ViT patch (default 14; 16 for qwen3)."
    ),
    temporal_patch_size: int = typer.Option(2, "--temporal-patch-size", help="Frames per tubelet."),
    merge_size: int = typer.Option(2, "--merge-size", help="Spatial merge m (m x m patches -> 1 token)."),
    tokens_per_second: float = typer.Option(2.0, "--tokens-per-second", help="hf_time T multiplier."),
    second_per_grid: float = typer.Option(1.0, "--second-per-grid", help="Seconds per tubelet."),
    legacy: bool = typer.Option(False, "--legacy", help="Fork / transformers 4.x next-segment rule (max+1)."),
    overrides: List[str] = typer.Option([], "--set", help="PositionSpec override KEY=VALUE (repeatable)."),
    manifest: Optional[Path] = typer.Option(
        None, "--manifest", help="selected_frames.json (or its folder): frame ids and cameras from it."
    ),
    video_frames: int = typer.Option(
        300,
        "--video-frames",
        help="Length of the video the uniform frame ids and the synthetic cameras span.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic camera trajectory (pose modes)."),
    embed_dim: Optional[int] = typer.Option(
        None, "--embed-dim", help="Spatial-MLLM VGGT embedding dim DD for its connector line (else symbolic)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Print the token layout of one video prompt (grids, tubelets, token counts, merged dims) and its
    position rows per segment (text runs and video tubelets, with each row's min..max).

    Pose modes need cameras: a deterministic synthetic hand-held scan by default, or --manifest.

    Examples:

        posevlm inspect positions --frames 16 --size 644x476 --mode pthw

        posevlm inspect positions --mode phw --layout qwen3 --json

        posevlm inspect positions --mode pthw --manifest runs/sampled/<run>/synth/synth_0000
    """
    from posevlm.positions import parse_spec_overrides, spec_needs
    from posevlm.positions.inspect import inspect_positions, inspector_spec

    wh = _parse_wh(size) if size is not None else (644, 476)
    size_rule, size_source = "round", None
    if frames is not None and frames < 1:
        raise typer.BadParameter(
            f"must be >= 1 (number of sampled frames, e.g. --frames 16); got {frames}",
            param_hint="'--frames'",
        )
    try:
        spec_overrides = parse_spec_overrides(overrides)
    except PosevlmError as exc:
        _fail(f"--set: {exc}")
    try:
        frame_ids = w2c = source = None
        if manifest is not None:
            from posevlm.pose_io import from_manifest

            inputs = from_manifest(manifest)
            if frames is not None and frames != len(inputs):
                raise typer.BadParameter(
                    f"the manifest has {len(inputs)} frames but --frames is {frames}; omit "
                    "--frames to use the manifest's",
                    param_hint="'--frames'",
                )
            frames = len(inputs)
            frame_ids, w2c, source = inputs.frame_ids.tolist(), inputs.w2c_opencv, f"manifest {manifest}"
            if size is None:
                manifest_wh = _manifest_wh(manifest)
                if manifest_wh is not None:
                    wh, size_rule = manifest_wh, "qwen_vl_utils"
                    size_source = f"frames of manifest {manifest}"
        else:
            frames = 16 if frames is None else frames
            spec = inspector_spec(mode, layout, legacy=legacy, overrides=spec_overrides,
                                  tokens_per_second=tokens_per_second)
            if spec_needs(spec)["w2c_opencv"]:
                w2c, source = _synthetic_cameras(frames, video_frames, seed)
        report = inspect_positions(
            frames=frames,
            size_wh=wh,
            mode=mode,
            layout=layout,
            legacy=legacy,
            overrides=spec_overrides,
            text_before=text_before,
            text_after=text_after,
            timestamp_tokens=qwen3_timestamp_tokens,
            patch_size=patch_size,
            temporal_patch_size=temporal_patch_size,
            merge_size=merge_size,
            tokens_per_second=tokens_per_second,
            second_per_grid=second_per_grid,
            embed_dim=embed_dim,
            frame_ids=frame_ids,
            w2c_opencv=w2c,
            video_frames=video_frames,
            camera_source=source,
            size_rule=size_rule,
            size_source=size_source,
        )
    except PosevlmError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _render(report)


def _register() -> None:
    from posevlm.cli import app  # defined before ``posevlm.cli`` imports this module

    app.add_typer(inspect_app, name="inspect")


_register()
