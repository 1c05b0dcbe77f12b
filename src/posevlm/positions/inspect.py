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

Pure: no files, no printing. The CLI (``posevlm inspect positions``) renders it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from posevlm.errors import ConfigError
from posevlm.positions.plan import build_position_plan
from posevlm.positions.presets import position_spec, spec_needs
from posevlm.positions.token_map import build_token_map

__all__ = [
    "inspect_positions",
    "SIZE_RULES",
    "smart_resize_hw",
    "uniform_frame_ids",
    "synthetic_w2c",
    "DEFAULT_PATCH_SIZE",
    "REPORT_FORMAT",
]

REPORT_FORMAT = "posevlm.inspect.positions/1"
DEFAULT_PATCH_SIZE = {"qwen2_5": 14, "qwen3": 16}  # Qwen2.5-VL ViT patch 14, Qwen3-VL patch 16
_TEXT_ID, _VIDEO_ID = 0, 1
#: ``round``: nearest multiple of patch*merge (smart_resize without its pixel clamps); ``qwen_vl_utils``:
#: the resize the hf eval backend applies (``posevlm.eval.backends._qwen_video.video_resize_hw``).
SIZE_RULES = ("round", "qwen_vl_utils")


def _positive(name: str, value: int, fix: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1; got {value!r}{fix}", field=name, value=value)
    return int(value)


def smart_resize_hw(height: int, width: int, factor: int) -> tuple[int, int]:
    """(H, W) rounded to the nearest multiple of ``factor`` (patch * merge), at least ``factor``, as the
    Qwen processors' ``smart_resize`` does before its min/max pixel clamps (not applied here)."""
    return max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)


def uniform_frame_ids(frames: int, video_frames: int) -> list[int]:
    """``frames`` source frame ids spread uniformly (rounded linspace) over a ``video_frames``-frame video."""
    return np.linspace(0, video_frames - 1, frames).round().astype(np.int64).tolist()


def synthetic_w2c(frame_ids: Sequence[int], video_frames: int, seed: int = 0) -> torch.Tensor:
    """(S, 4, 4) float64 w2c (OpenCV) of ``frame_ids`` on a deterministic synthetic hand-held scan of
    ``video_frames`` frames (room and trajectory of ``posevlm.scenes.synthetic`` seeded by ``seed``)."""
    from posevlm.scenes.synthetic import generate_layout, generate_trajectory

    rng = np.random.default_rng(seed)
    layout = generate_layout(rng)
    w2c = generate_trajectory(layout, rng, num_frames=max(int(video_frames), 2))
    return torch.as_tensor(np.asarray(w2c)[np.asarray(frame_ids, dtype=np.int64)], dtype=torch.float64)


def _num(x: float) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else round(x, 4)


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
    seed: int = 0,
    camera_source: str | None = None,
    size_rule: str = "round",
    size_source: str | None = None,
) -> dict[str, Any]:
    """Report dict of the token layout and position rows of one video prompt (see the module docstring).

    Args:
        frames: S sampled frames (an odd S repeats the last frame to fill the last tubelet).
        size_wh: (W, H) of the frames as asked (or as read from a manifest), resized by ``size_rule``.
        mode, layout, legacy, overrides: passed to :func:`position_spec` (``overrides`` are PositionSpec
            fields; ``tokens_per_second`` is set from the argument unless overridden).
        text_before / text_after: text tokens around the video; timestamp_tokens: text tokens before each
            tubelet in the ``qwen3`` layout (ignored for ``qwen2_5``).
        patch_size: ViT patch; None -> 14 (qwen2_5) or 16 (qwen3).
        second_per_grid: seconds per tubelet (``second_per_grid_ts``).
        embed_dim: DD, the Spatial-MLLM VGGT embedding dim, for its connector dim (symbolic ``8·DD`` if None).
        frame_ids: (S,) source frame ids; default uniform over ``video_frames``.
        w2c_opencv: (S, 4, 4) cameras for pose modes; default a synthetic scan seeded by ``seed``.
        camera_source: description of where ``w2c_opencv`` came from (reported).
        size_rule: ``round`` (nearest multiples of ``patch_size * merge_size``) or ``qwen_vl_utils`` (the hf
            eval backend's ``video_resize_hw(h, w, frames, patch_size=...)`` with its default pixel
            budget: multiples of 2·patch, area clamped, aspect kept).
        size_source: where ``size_wh`` came from (reported), e.g. a manifest.
    Raises:
        ConfigError: bad counts/sizes, a mode the layout lacks, or mismatched frame ids / cameras.
    """
    spec_kw = {"tokens_per_second": float(tokens_per_second), **(overrides or {})}
    spec = position_spec(mode, layout, legacy=legacy, **spec_kw)
    frames = _positive("frames", frames, " (number of sampled frames, e.g. --frames 16)")
    width, height = (int(v) for v in size_wh)
    _positive("size width", width, " (write WxH like 644x476)")
    _positive("size height", height, " (write WxH like 644x476)")
    patch = _positive("patch_size", DEFAULT_PATCH_SIZE[spec.layout] if patch_size is None else patch_size)
    tps_t = _positive("temporal_patch_size", temporal_patch_size)
    merge = _positive("merge_size", merge_size)
    video_frames = _positive("video_frames", video_frames)
    for name, value in (
        ("text_before", text_before),
        ("text_after", text_after),
        ("timestamp_tokens", timestamp_tokens),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{name} must be an integer >= 0; got {value!r}", field=name, value=value)
    if embed_dim is not None:
        embed_dim = _positive("embed_dim", embed_dim)
    if not second_per_grid >= 0:
        raise ConfigError(
            f"second_per_grid must be >= 0; got {second_per_grid!r}",
            field="second_per_grid",
            value=second_per_grid,
        )
    if size_rule not in SIZE_RULES:
        raise ConfigError(f"size_rule must be one of {SIZE_RULES}; got {size_rule!r}", field="size_rule",
                          value=size_rule)
    needs = spec_needs(spec)
    if tps_t != 2 and (needs["w2c_opencv"] or needs["frame_ids"]):
        raise ConfigError(
            f"mode {mode!r} pairs frames 2*tau, 2*tau+1 per tubelet and needs "
            f"temporal_patch_size 2; got {tps_t}",
            field="temporal_patch_size",
            value=tps_t,
        )

    # frames, cameras
    if frame_ids is None:
        if frames > video_frames:
            raise ConfigError(
                f"frames={frames} exceeds video_frames={video_frames}; raise --video-frames or "
                "lower --frames",
                field="frames",
                value=frames,
            )
        ids = uniform_frame_ids(frames, video_frames)
        ids_source = f"uniform over a {video_frames}-frame video"
    else:
        ids = [int(i) for i in np.asarray(frame_ids).reshape(-1)]
        ids_source = camera_source or "given"
        if len(ids) != frames:
            raise ConfigError(
                f"{len(ids)} frame ids given for frames={frames}; pass one id per frame (or omit "
                "--frames to use all of them)",
                field="frames",
                value=frames,
            )
    cams = None
    cams_source = None
    if needs["w2c_opencv"]:
        if w2c_opencv is None:
            if max(ids) >= video_frames:
                raise ConfigError(
                    f"frame id {max(ids)} is outside the {video_frames}-frame synthetic video; "
                    "raise --video-frames",
                    field="video_frames",
                    value=video_frames,
                )
            cams = synthetic_w2c(ids, video_frames, seed)
            cams_source = f"synthetic hand-held scan (seed {seed}, {video_frames} frames)"
        else:
            cams = torch.as_tensor(np.asarray(w2c_opencv), dtype=torch.float64)
            cams_source = camera_source or "given"
            if cams.shape != (frames, 4, 4):
                raise ConfigError(
                    f"w2c_opencv must be ({frames}, 4, 4) for frames={frames}; got {tuple(cams.shape)}",
                    field="w2c_opencv",
                    value=tuple(cams.shape),
                )

    # token layout
    factor = patch * merge
    origin = f" ({size_source})" if size_source else ""
    if size_rule == "qwen_vl_utils":
        from posevlm.eval.backends._qwen_video import video_resize_hw  # torch/numpy only, no transformers

        used_h, used_w = video_resize_hw(height, width, frames, patch_size=patch)
        rule_note = (f"resized like the hf eval backend (qwen-vl-utils video_resize_hw for {frames} frames: "
                     f"multiples of 2·patch = {2 * patch}, default pixel budget, aspect kept)")
    else:
        used_h, used_w = smart_resize_hw(height, width, factor)
        rule_note = f"multiples of patch*merge = {factor}"
    grid_t = -(-frames // tps_t)
    grid_h, grid_w = used_h // patch, used_w // patch
    merged_h, merged_w = grid_h // merge, grid_w // merge
    per_tubelet = merged_h * merged_w
    llm_tokens = grid_t * per_tubelet
    pixel_tokens = grid_t * grid_h * grid_w
    pixel_dim = 3 * tps_t * patch * patch
    mult = tps_t * merge * merge
    resized = (used_w, used_h) != (width, height)
    token_layout = {
        "frames": frames,
        "padded_frames": grid_t * tps_t,
        "image_hw": [height, width],
        "resized_hw": [used_h, used_w],
        "resized": resized,
        "size_rule": size_rule,
        "size_source": size_source,
        "size_note": (
            f"{width}x{height}{origin} -> {used_w}x{used_h}, {rule_note}"
            if size_rule == "qwen_vl_utils"
            else f"{width}x{height}{origin} rounded to {used_w}x{used_h} ({rule_note})"
            if resized
            else f"{width}x{height}{origin} is already a multiple of patch*merge = {factor}"
        ),
        "patch_size": patch,
        "temporal_patch_size": tps_t,
        "merge_size": merge,
        "grid_thw": [grid_t, grid_h, grid_w],
        "patches_per_frame": grid_h * grid_w,
        "tubelets": grid_t,
        "pixel_tokens": pixel_tokens,
        "pixel_token_dim": pixel_dim,
        "pixel_values_shape": [pixel_tokens, pixel_dim],
        "merged_hw": [merged_h, merged_w],
        "tokens_per_tubelet": per_tubelet,
        "llm_video_tokens": llm_tokens,
        "merger_input_dim": f"{merge * merge}·C_vit",
        "merger_output_dim": "LLM hidden size",
        "llm_token_note": (
            f"each LLM token = one {merge}×{merge} merge of tubelet patches (merger input "
            f"{merge * merge}·C_vit, output the LLM hidden size); the temporal patch already folded "
            f"{tps_t} frames into each patch token"
        ),
        "embed_dim": embed_dim,
        "spatial_mllm_connector_dim": mult * embed_dim if embed_dim else f"{mult}·DD",
        "spatial_mllm_connector_dim_formula": f"DD×t×m² = DD×{tps_t}×{merge}²",
    }

    # the prompt: text, [timestamp text, tubelet] * T (qwen3) or one video block (qwen2_5), text
    qwen3 = spec.layout == "qwen3"
    ts = int(timestamp_tokens) if qwen3 else 0
    parts: list[tuple[str, int, int | None]] = [("text", int(text_before), None)]  # (kind, count, tubelet)
    if qwen3:
        for tau in range(grid_t):
            parts += [("timestamp", ts, tau), ("video", per_tubelet, tau)]
    else:
        parts += [("video", per_tubelet, tau) for tau in range(grid_t)]
    parts.append(("text", int(text_after), None))
    parts = [p for p in parts if p[1] > 0]
    ids_tensor = torch.cat(
        [
            torch.full((n,), _VIDEO_ID if kind == "video" else _TEXT_ID, dtype=torch.long)
            for kind, n, _ in parts
        ]
        or [torch.zeros(0, dtype=torch.long)]
    )[None]
    total = int(ids_tensor.shape[1])
    grid = torch.tensor([[grid_t, grid_h, grid_w]])

    def plan_of(input_ids):
        tm = build_token_map(
            input_ids, video_grid_thw=grid, spatial_merge_size=merge, video_token_id=_VIDEO_ID
        )
        return build_position_plan(
            tm,
            spec,
            second_per_grid_ts=torch.tensor([float(second_per_grid)]),
            frame_ids=[torch.tensor(ids)],
            w2c_opencv=None if cams is None else [cams],
        )

    plan = plan_of(ids_tensor)
    rows = plan.rows[:, 0].numpy().astype(np.float64)  # (A, L)
    axes = list(plan.axes)
    if text_after > 0:
        next_start = rows[:, total - text_after].max()
    else:  # probe: where a following text token would sit
        probe = plan_of(torch.cat([ids_tensor, torch.tensor([[_TEXT_ID]])], 1))
        next_start = probe.rows[:, 0, -1].max().item()

    segments = []
    pos = 0
    padded_ids = ids + [ids[-1]] * (grid_t * tps_t - frames)
    for i, (kind, n, tau) in enumerate(parts):
        sl = rows[:, pos : pos + n]
        entry: dict[str, Any] = {
            "kind": kind,
            "label": (
                f"tubelet {tau}"
                if kind == "video"
                else f"timestamp before tubelet {tau}"
                if kind == "timestamp"
                else "text before"
                if i == 0
                else "text after"
            ),
            "tubelet": tau if kind == "video" else None,
            "segment": (tau if qwen3 else 0) if kind == "video" else None,
            "first_token": pos,
            "last_token": pos + n - 1,
            "count": n,
            "rows": {a: [_num(sl[k].min()), _num(sl[k].max())] for k, a in enumerate(axes)},
            "P": None,
            "frames": None,
            "frame_ids": None,
            "padded_frames": None,
        }
        if kind == "video":
            fr = list(range(tps_t * tau, tps_t * (tau + 1)))
            entry["frames"] = fr
            entry["frame_ids"] = [padded_ids[f] for f in fr]
            entry["padded_frames"] = [f for f in fr if f >= frames]
            if "P" in axes:
                entry["P"] = _num(sl[axes.index("P")].mean())
        segments.append(entry)
        pos += n

    video_total = grid_t * per_tubelet
    return {
        "format": REPORT_FORMAT,
        "mode": mode,
        "layout": spec.layout,
        "legacy": bool(legacy),
        "axes": axes,
        "size": {"asked_wh": [width, height], "used_wh": [used_w, used_h], "resized": resized},
        "token_layout": token_layout,
        "sequence": {
            "text_before": int(text_before),
            "timestamp_tokens_per_tubelet": ts,
            "timestamp_tokens": ts * grid_t,
            "video_tokens": video_total,
            "text_after": int(text_after),
            "total": total,
        },
        "spec": spec.to_dict(),
        "second_per_grid": float(second_per_grid),
        "frame_ids": ids,
        "frame_ids_source": ids_source,
        "cameras": cams_source,
        "rope_segments": grid_t if qwen3 else 1,
        "segments": segments,
        "video_start": next((s["rows"][axes[-1]][0] for s in segments if s["kind"] == "video"), None),
        "next_text_start": _num(next_start),
        # posevlm models decode from the last prompt token (PositionPlan.continuation_deltas)
        "continuation_delta": int(plan.continuation_deltas[0, 0]),
        "decode_start": total + int(plan.continuation_deltas[0, 0]),
        # transformers' get_rope_index convention (max position + 1), for reference / parity
        "rope_deltas_transformers": int(plan.rope_deltas[0, 0]),
        "decode_start_transformers": total + int(plan.rope_deltas[0, 0]),
    }
