"""Position inspector: the token layout of one video prompt and its position rows, as a plain dict.

:func:`inspect_positions` builds a synthetic prompt (``text_before`` text tokens, one video, ``text_after``
text tokens; in the ``qwen3`` layout every tubelet is preceded by ``timestamp_tokens`` text tokens, the
``<t seconds>`` text real Qwen3-VL prompts carry), runs :func:`build_token_map` and
:func:`build_position_plan` on it and reports

* ``token_layout``: resized frame size, patch grids, tubelets, pixel tokens and the LLM tokens after the
  spatial merge (the numbers of the token-shapes worked example: 16 frames of 644x476 -> grid (8, 34, 46),
  12512 pixel tokens of dim 1176, 3128 LLM tokens); each LLM token is one m x m merge of tubelet patches
  (Qwen merger input m²·C_vit, output the LLM hidden size). The notes' ``8·DD`` is the Spatial-MLLM VGGT
  connector's dimension, reported separately (``spatial_mllm_connector_dim``);
* ``sequence``: token counts of the prompt;
* ``segments``: one row per run of tokens (a text run, or one video tubelet) with its token range and the
  min..max of every position row, the P value of a tubelet, its frames and their source frame ids;
* ``next_text_start`` (the position of the first token after the video), ``continuation_delta`` and
  ``decode_start`` (the first decode position of the posevlm models: last prompt token + 1), and
  ``rope_deltas_transformers`` / ``decode_start_transformers`` (transformers' ``get_rope_index``, max + 1).

Pure: no files, no printing, no scene generation. Pose modes take their cameras as ``w2c_opencv`` from the
caller (the CLI, ``posevlm inspect positions``, passes a manifest's cameras or a synthetic scan's and renders
the report). Size rules come from :mod:`posevlm.qwen_vision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from posevlm.errors import ConfigError
from posevlm.positions.plan import PositionPlan, build_position_plan
from posevlm.positions.presets import position_spec, spec_needs
from posevlm.positions.spec import PositionSpec
from posevlm.positions.token_map import build_token_map
from posevlm.qwen_vision import smart_resize_hw, video_resize_hw

__all__ = [
    "inspect_positions",
    "inspector_spec",
    "SIZE_RULES",
    "smart_resize_hw",
    "uniform_frame_ids",
    "DEFAULT_PATCH_SIZE",
    "REPORT_FORMAT",
]

REPORT_FORMAT = "posevlm.inspect.positions/1"
DEFAULT_PATCH_SIZE = {"qwen2_5": 14, "qwen3": 16}  # Qwen2.5-VL ViT patch 14, Qwen3-VL patch 16
_TEXT_ID, _VIDEO_ID = 0, 1
#: ``round``: nearest multiple of patch*merge (smart_resize without its pixel clamps); ``qwen_vl_utils``:
#: the resize the hf eval backend applies (``posevlm.qwen_vision.video_resize_hw``).
SIZE_RULES = ("round", "qwen_vl_utils")

#: One run of prompt tokens: (kind ``text`` / ``timestamp`` / ``video``, token count, tubelet or None).
_Part = tuple[str, int, int | None]


def uniform_frame_ids(frames: int, video_frames: int) -> list[int]:
    """``frames`` source frame ids spread uniformly (rounded linspace) over a ``video_frames``-frame video."""
    return np.linspace(0, video_frames - 1, frames).round().astype(np.int64).tolist()


def inspector_spec(mode: str, layout: str = "qwen2_5", *, legacy: bool = False,
                   overrides: dict[str, Any] | None = None, tokens_per_second: float = 2.0) -> PositionSpec:
    """The PositionSpec :func:`inspect_positions` reports: ``position_spec(mode, layout, legacy=...)`` with
    ``tokens_per_second`` set from the argument unless ``overrides`` (PositionSpec fields) set it.
    ``spec_needs(inspector_spec(...))["w2c_opencv"]`` tells a caller whether to pass cameras."""
    spec_kw = {"tokens_per_second": float(tokens_per_second), **(overrides or {})}
    return position_spec(mode, layout, legacy=legacy, **spec_kw)


def inspect_positions(
    *,
    frames: int = 16,
    size_wh: tuple[int, int] = (644, 476),
    mode: str = "thw",
    layout: str = "qwen2_5",
    legacy: bool = False,
    overrides: dict[str, Any] | None = None,
    text_before: int = 10,
    text_after: int = 5,
    timestamp_tokens: int = 4,
    patch_size: int | None = None,
    temporal_patch_size: int = 2,
    merge_size: int = 2,
    tokens_per_second: float = 2.0,
    second_per_grid: float = 1.0,
    embed_dim: int | None = None,
    frame_ids: Sequence[int] | None = None,
    w2c_opencv: torch.Tensor | np.ndarray | None = None,
    video_frames: int = 300,
    camera_source: str | None = None,
    size_rule: str = "round",
    size_source: str | None = None,
) -> dict[str, Any]:
    """Report dict of the token layout and position rows of one video prompt (see the module docstring).

    Args:
        frames: S sampled frames (an odd S repeats the last frame to fill the last tubelet).
        size_wh: (W, H) of the frames as asked (or as read from a manifest), resized by ``size_rule``.
        mode, layout, legacy, overrides: passed to :func:`position_spec` (``overrides`` are PositionSpec
            fields; ``tokens_per_second`` is set from the argument unless overridden): :func:`inspector_spec`.
        text_before / text_after: text tokens around the video; timestamp_tokens: text tokens before each
            tubelet in the ``qwen3`` layout (ignored for ``qwen2_5``).
        patch_size: ViT patch; None -> 14 (qwen2_5) or 16 (qwen3).
        second_per_grid: seconds per tubelet (``second_per_grid_ts``).
        embed_dim: DD, the Spatial-MLLM VGGT embedding dim, for its connector dim (``8·DD`` if None).
        frame_ids: (S,) source frame ids; default uniform over ``video_frames`` (:func:`uniform_frame_ids`).
        w2c_opencv: (S, 4, 4) world-to-camera, OpenCV axes, one per frame; required by pose modes (``pthw``,
            ``phw``), ignored otherwise. E.g. ``posevlm.scenes.synthetic.synthetic_scan_w2c(ids, video_frames,
            seed)`` or ``posevlm.pose_io.from_manifest(path).w2c_opencv``.
        video_frames: length of the video the default frame ids span.
        camera_source: description of where ``w2c_opencv`` (and given ``frame_ids``) came from (reported).
        size_rule: ``round`` (nearest multiples of ``patch_size * merge_size``) or ``qwen_vl_utils`` (the hf
            eval backend's ``video_resize_hw(h, w, frames, patch_size=...)`` with its default pixel
            budget: multiples of 2·patch, area clamped, aspect kept).
        size_source: where ``size_wh`` came from (reported), e.g. a manifest.
    Raises:
        ConfigError: bad counts/sizes, a mode the layout lacks, mismatched frame ids / cameras, or a pose
            mode without ``w2c_opencv``.
    """
    spec = inspector_spec(mode, layout, legacy=legacy, overrides=overrides,
                          tokens_per_second=tokens_per_second)
    args = _check_arguments(
        spec, mode, frames=frames, size_wh=size_wh, patch_size=patch_size,
        temporal_patch_size=temporal_patch_size, merge_size=merge_size, video_frames=video_frames,
        text_before=text_before, text_after=text_after, timestamp_tokens=timestamp_tokens,
        embed_dim=embed_dim, second_per_grid=second_per_grid, size_rule=size_rule, size_source=size_source,
    )  # fmt: skip
    ids, ids_source = _frame_ids(frame_ids, args, camera_source)
    cams, cams_source = _cameras(w2c_opencv, spec, mode, args, camera_source)
    grid = _video_grid(args)
    parts = _prompt_parts(spec, grid, args)
    rows = _position_rows(parts, grid, spec, args, ids, cams)
    segments = _segments(parts, rows, grid, args, ids, qwen3=spec.layout == "qwen3")
    return _report(spec, mode, legacy, args, grid, rows, segments, ids, ids_source, cams_source)


# ----------------------------------------------------------------------------------- argument checks
@dataclass(frozen=True)
class _Args:
    """The checked sizes and counts of one inspection."""

    frames: int
    width: int
    height: int
    patch: int
    temporal_patch: int
    merge: int
    video_frames: int
    text_before: int
    text_after: int
    timestamp_tokens: int
    embed_dim: int | None
    second_per_grid: float
    size_rule: str
    size_source: str | None


def _positive(name: str, value: int, fix: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1; got {value!r}{fix}", field=name, value=value)
    return int(value)


def _non_negative(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0; got {value!r}", field=name, value=value)
    return int(value)


def _check_arguments(spec: PositionSpec, mode: str, *, frames, size_wh, patch_size, temporal_patch_size,
                     merge_size, video_frames, text_before, text_after, timestamp_tokens, embed_dim,
                     second_per_grid, size_rule, size_source) -> _Args:
    """Every count and size checked in the order the errors are reported (first problem raises)."""
    frames = _positive("frames", frames, " (number of sampled frames, e.g. --frames 16)")
    width, height = (int(v) for v in size_wh)
    _positive("size width", width, " (write WxH like 644x476)")
    _positive("size height", height, " (write WxH like 644x476)")
    patch = _positive("patch_size", DEFAULT_PATCH_SIZE[spec.layout] if patch_size is None else patch_size)
    tps_t = _positive("temporal_patch_size", temporal_patch_size)
    merge = _positive("merge_size", merge_size)
    video_frames = _positive("video_frames", video_frames)
    counts = [_non_negative(name, value) for name, value in (
        ("text_before", text_before), ("text_after", text_after), ("timestamp_tokens", timestamp_tokens))]
    if embed_dim is not None:
        embed_dim = _positive("embed_dim", embed_dim)
    if not second_per_grid >= 0:
        raise ConfigError(f"second_per_grid must be >= 0; got {second_per_grid!r}", field="second_per_grid",
                          value=second_per_grid)
    if size_rule not in SIZE_RULES:
        raise ConfigError(f"size_rule must be one of {SIZE_RULES}; got {size_rule!r}", field="size_rule",
                          value=size_rule)
    needs = spec_needs(spec)
    if tps_t != 2 and (needs["w2c_opencv"] or needs["frame_ids"]):
        raise ConfigError(
            f"mode {mode!r} pairs frames 2*tau, 2*tau+1 per tubelet and needs temporal_patch_size 2; "
            f"got {tps_t}",
            field="temporal_patch_size",
            value=tps_t,
        )
    return _Args(frames, width, height, patch, tps_t, merge, video_frames, *counts, embed_dim,
                 float(second_per_grid), size_rule, size_source)


# ------------------------------------------------------------------------------------ frames, cameras
def _frame_ids(frame_ids: Sequence[int] | None, a: _Args, source: str | None) -> tuple[list[int], str]:
    """(S,) source frame ids (given, else uniform over the video) and where they came from."""
    if frame_ids is None:
        if a.frames > a.video_frames:
            raise ConfigError(
                f"frames={a.frames} exceeds video_frames={a.video_frames}; raise --video-frames or lower "
                "--frames",
                field="frames",
                value=a.frames,
            )
        return uniform_frame_ids(a.frames, a.video_frames), f"uniform over a {a.video_frames}-frame video"
    ids = [int(i) for i in np.asarray(frame_ids).reshape(-1)]
    if len(ids) != a.frames:
        raise ConfigError(
            f"{len(ids)} frame ids given for frames={a.frames}; pass one id per frame (or omit --frames to "
            "use all of them)",
            field="frames",
            value=a.frames,
        )
    return ids, source or "given"


def _cameras(w2c_opencv, spec: PositionSpec, mode: str, a: _Args,
             source: str | None) -> tuple[torch.Tensor | None, str | None]:
    """(S, 4, 4) float64 w2c_opencv for a pose mode (None otherwise) and where they came from."""
    if not spec_needs(spec)["w2c_opencv"]:
        return None, None
    if w2c_opencv is None:
        raise ConfigError(
            f"mode {mode!r} needs cameras: pass w2c_opencv ({a.frames}, 4, 4), world-to-camera, OpenCV axes, "
            "one per frame, e.g. posevlm.scenes.synthetic.synthetic_scan_w2c(uniform_frame_ids(frames, "
            "video_frames), video_frames, seed) or posevlm.pose_io.from_manifest(path).w2c_opencv "
            "(`posevlm inspect positions` does this: a synthetic scan, or --manifest)",
            field="w2c_opencv",
            value=None,
        )
    cams = torch.as_tensor(np.asarray(w2c_opencv), dtype=torch.float64)
    if cams.shape != (a.frames, 4, 4):
        raise ConfigError(
            f"w2c_opencv must be ({a.frames}, 4, 4) for frames={a.frames}; got {tuple(cams.shape)}",
            field="w2c_opencv",
            value=tuple(cams.shape),
        )
    return cams, source or "given"


# --------------------------------------------------------------------------------------- token layout
@dataclass(frozen=True)
class _VideoGrid:
    """The video as the ViT sees it: resized (H, W), patch grid (T, h, w) and merged grid (h', w')."""

    used_h: int
    used_w: int
    rule_note: str
    grid_t: int
    grid_h: int
    grid_w: int
    merged_h: int
    merged_w: int

    @property
    def tokens_per_tubelet(self) -> int:
        return self.merged_h * self.merged_w


def _video_grid(a: _Args) -> _VideoGrid:
    """Resize the asked frame size by ``size_rule``, then cut it into tubelets, patches and merges."""
    if a.size_rule == "qwen_vl_utils":
        used_h, used_w = video_resize_hw(a.height, a.width, a.frames, patch_size=a.patch)
        rule_note = (f"resized like the hf eval backend (qwen-vl-utils video_resize_hw for {a.frames} "
                     f"frames: multiples of 2·patch = {2 * a.patch}, default pixel budget, aspect kept)")
    else:
        used_h, used_w = smart_resize_hw(a.height, a.width, a.patch * a.merge)
        rule_note = f"multiples of patch*merge = {a.patch * a.merge}"
    grid_h, grid_w = used_h // a.patch, used_w // a.patch
    return _VideoGrid(used_h, used_w, rule_note, -(-a.frames // a.temporal_patch), grid_h, grid_w,
                      grid_h // a.merge, grid_w // a.merge)


def _token_layout(a: _Args, g: _VideoGrid) -> dict[str, Any]:
    """The ``token_layout`` block of the report: sizes, grids, token counts and dims of the video."""
    tps_t, merge, patch = a.temporal_patch, a.merge, a.patch
    pixel_tokens = g.grid_t * g.grid_h * g.grid_w
    pixel_dim = 3 * tps_t * patch * patch
    mult = tps_t * merge * merge
    resized = (g.used_w, g.used_h) != (a.width, a.height)
    origin = f" ({a.size_source})" if a.size_source else ""
    return {
        "frames": a.frames,
        "padded_frames": g.grid_t * tps_t,
        "image_hw": [a.height, a.width],
        "resized_hw": [g.used_h, g.used_w],
        "resized": resized,
        "size_rule": a.size_rule,
        "size_source": a.size_source,
        "size_note": (
            f"{a.width}x{a.height}{origin} -> {g.used_w}x{g.used_h}, {g.rule_note}"
            if a.size_rule == "qwen_vl_utils"
            else f"{a.width}x{a.height}{origin} rounded to {g.used_w}x{g.used_h} ({g.rule_note})"
            if resized
            else f"{a.width}x{a.height}{origin} is already a multiple of patch*merge = {patch * merge}"
        ),
        "patch_size": patch,
        "temporal_patch_size": tps_t,
        "merge_size": merge,
        "grid_thw": [g.grid_t, g.grid_h, g.grid_w],
        "patches_per_frame": g.grid_h * g.grid_w,
        "tubelets": g.grid_t,
        "pixel_tokens": pixel_tokens,
        "pixel_token_dim": pixel_dim,
        "pixel_values_shape": [pixel_tokens, pixel_dim],
        "merged_hw": [g.merged_h, g.merged_w],
        "tokens_per_tubelet": g.tokens_per_tubelet,
        "llm_video_tokens": g.grid_t * g.tokens_per_tubelet,
        "merger_input_dim": f"{merge * merge}·C_vit",
        "merger_output_dim": "LLM hidden size",
        "llm_token_note": (
            f"each LLM token = one {merge}×{merge} merge of tubelet patches (merger input "
            f"{merge * merge}·C_vit, output the LLM hidden size); the temporal patch already folded "
            f"{tps_t} frames into each patch token"
        ),
        "embed_dim": a.embed_dim,
        "spatial_mllm_connector_dim": mult * a.embed_dim if a.embed_dim else f"{mult}·DD",
        "spatial_mllm_connector_dim_formula": f"DD×t×m² = DD×{tps_t}×{merge}²",
    }


# --------------------------------------------------------------------------------------- prompt parts
def _prompt_parts(spec: PositionSpec, g: _VideoGrid, a: _Args) -> list[_Part]:
    """The prompt as runs: text, [timestamp text, tubelet] * T (qwen3) or one video block (qwen2_5), text;
    empty runs dropped."""
    parts: list[_Part] = [("text", a.text_before, None)]
    if spec.layout == "qwen3":
        for tau in range(g.grid_t):
            parts += [("timestamp", a.timestamp_tokens, tau), ("video", g.tokens_per_tubelet, tau)]
    else:
        parts += [("video", g.tokens_per_tubelet, tau) for tau in range(g.grid_t)]
    parts.append(("text", a.text_after, None))
    return [p for p in parts if p[1] > 0]


def _input_ids(parts: list[_Part]) -> torch.Tensor:
    """(1, L) token ids of the prompt: the video token id on video runs, the text id elsewhere."""
    return torch.cat(
        [torch.full((n,), _VIDEO_ID if kind == "video" else _TEXT_ID, dtype=torch.long)
         for kind, n, _ in parts]
        or [torch.zeros(0, dtype=torch.long)]
    )[None]


# -------------------------------------------------------------------------------------- position plan
@dataclass(frozen=True)
class _Rows:
    """The position plan of the prompt: ``rows`` (A, L) float64 of batch row 0, and where text resumes."""

    plan: PositionPlan
    rows: np.ndarray
    axes: list[str]
    total: int
    next_text_start: float


def _position_rows(parts: list[_Part], g: _VideoGrid, spec: PositionSpec, a: _Args, ids: list[int],
                   cams: torch.Tensor | None) -> _Rows:
    """Token map + position plan of the prompt; with no text after the video, a probe text token tells where
    the next text would start."""
    grid_thw = torch.tensor([[g.grid_t, g.grid_h, g.grid_w]])

    def plan_of(input_ids: torch.Tensor) -> PositionPlan:
        tm = build_token_map(input_ids, video_grid_thw=grid_thw, spatial_merge_size=a.merge,
                             video_token_id=_VIDEO_ID)
        return build_position_plan(tm, spec, second_per_grid_ts=torch.tensor([a.second_per_grid]),
                                   frame_ids=[torch.tensor(ids)], w2c_opencv=None if cams is None else [cams])

    input_ids = _input_ids(parts)
    total = int(input_ids.shape[1])
    plan = plan_of(input_ids)
    rows = plan.rows[:, 0].numpy().astype(np.float64)  # (A, L)
    if a.text_after > 0:
        next_start = rows[:, total - a.text_after].max()
    else:
        probe = plan_of(torch.cat([input_ids, torch.tensor([[_TEXT_ID]])], 1))
        next_start = probe.rows[:, 0, -1].max().item()
    return _Rows(plan, rows, list(plan.axes), total, next_start)


# ------------------------------------------------------------------------------------------- segments
def _num(x: float) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else round(x, 4)


def _segment_label(kind: str, index: int, tau: int | None) -> str:
    if kind == "video":
        return f"tubelet {tau}"
    if kind == "timestamp":
        return f"timestamp before tubelet {tau}"
    return "text before" if index == 0 else "text after"


def _segments(parts: list[_Part], r: _Rows, g: _VideoGrid, a: _Args, ids: list[int], *,
              qwen3: bool) -> list[dict[str, Any]]:
    """One entry per prompt run: token range, min..max of every row, and for a tubelet its frames, their
    source ids (the last frame repeated to fill an odd count) and its P."""
    segments = []
    pos = 0
    padded_ids = ids + [ids[-1]] * (g.grid_t * a.temporal_patch - a.frames)
    for i, (kind, n, tau) in enumerate(parts):
        sl = r.rows[:, pos : pos + n]
        entry: dict[str, Any] = {
            "kind": kind,
            "label": _segment_label(kind, i, tau),
            "tubelet": tau if kind == "video" else None,
            "segment": (tau if qwen3 else 0) if kind == "video" else None,
            "first_token": pos,
            "last_token": pos + n - 1,
            "count": n,
            "rows": {ax: [_num(sl[k].min()), _num(sl[k].max())] for k, ax in enumerate(r.axes)},
            "P": None,
            "frames": None,
            "frame_ids": None,
            "padded_frames": None,
        }
        if kind == "video":
            fr = list(range(a.temporal_patch * tau, a.temporal_patch * (tau + 1)))
            entry["frames"] = fr
            entry["frame_ids"] = [padded_ids[f] for f in fr]
            entry["padded_frames"] = [f for f in fr if f >= a.frames]
            if "P" in r.axes:
                entry["P"] = _num(sl[r.axes.index("P")].mean())
        segments.append(entry)
        pos += n
    return segments


# --------------------------------------------------------------------------------------------- report
def _report(spec: PositionSpec, mode: str, legacy: bool, a: _Args, g: _VideoGrid, r: _Rows,
            segments: list[dict[str, Any]], ids: list[int], ids_source: str,
            cams_source: str | None) -> dict[str, Any]:
    """The report dict (keys in the order the CLI's ``--json`` prints them)."""
    qwen3 = spec.layout == "qwen3"
    ts = a.timestamp_tokens if qwen3 else 0
    continuation, rope_delta = int(r.plan.continuation_deltas[0, 0]), int(r.plan.rope_deltas[0, 0])
    return {
        "format": REPORT_FORMAT,
        "mode": mode,
        "layout": spec.layout,
        "legacy": bool(legacy),
        "axes": r.axes,
        "size": {"asked_wh": [a.width, a.height], "used_wh": [g.used_w, g.used_h],
                 "resized": (g.used_w, g.used_h) != (a.width, a.height)},
        "token_layout": _token_layout(a, g),
        "sequence": {
            "text_before": a.text_before,
            "timestamp_tokens_per_tubelet": ts,
            "timestamp_tokens": ts * g.grid_t,
            "video_tokens": g.grid_t * g.tokens_per_tubelet,
            "text_after": a.text_after,
            "total": r.total,
        },
        "spec": spec.to_dict(),
        "second_per_grid": a.second_per_grid,
        "frame_ids": ids,
        "frame_ids_source": ids_source,
        "cameras": cams_source,
        "rope_segments": g.grid_t if qwen3 else 1,
        "segments": segments,
        "video_start": next((s["rows"][r.axes[-1]][0] for s in segments if s["kind"] == "video"), None),
        "next_text_start": _num(r.next_text_start),
        # posevlm models decode from the last prompt token (PositionPlan.continuation_deltas)
        "continuation_delta": continuation,
        "decode_start": r.total + continuation,
        # transformers' get_rope_index convention (max position + 1), for reference / parity
        "rope_deltas_transformers": rope_delta,
        "decode_start_transformers": r.total + rope_delta,
    }
