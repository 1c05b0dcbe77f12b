"""PositionPlan: float position rows with named axes, text row, decode deltas and token map, built in one pass.

Notation: A position axes, B batch, L tokens, N media items, S frames of a video, T tubelets (S = 2 T).

Segments: every image is one segment; every video is one segment (layout ``qwen2_5``) or one segment per
tubelet (layout ``qwen3``). With ``E`` = the exclusive cumsum along the row of the per-token increment
(1 per text token, the segment advance on the last token of a segment, 0 elsewhere), a text token sits at
``E`` and a segment starts at ``s = E``. Vision rows are ``s + local offset``; the advance is
``max(h', w')`` (``spatial_extent``, transformers 5.x) or ``floor(max local offset over all rows) + 1``
(``max_plus_one``, transformers 4.x). No per-token Python loop; the only loop is over videos for the pose
index when videos have different frame counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from posevlm.errors import ShapeError
from posevlm.geometry import lie_scalar_pose_index
from posevlm.positions.spec import PositionSpec
from posevlm.positions.token_map import IMAGE, TEXT, VIDEO, TokenMap

__all__ = ["PositionPlan", "build_position_plan", "merge_tubelet_scalars", "pose_rows_per_tubelet", "pad_to_tubelets",
           "per_video"]

DECODE_CONVENTION = "cumsum(attention_mask) - 1 + rope_deltas"
CONTINUATION_CONVENTION = "cumsum(attention_mask) - 1 + continuation_deltas"


@dataclass(frozen=True)
class PositionPlan:
    """Output of :func:`build_position_plan`.

    Two decode conventions: the posevlm model integration (``posevlm.models``) continues from the last
    prompt token (``continuation_deltas`` / :meth:`continuation_positions`); ``rope_deltas`` /
    :meth:`decode_positions` follow transformers' ``get_rope_index`` (max + 1) and are kept for parity.

    Attributes:
        rows: (A, B, L) float32 positions, one row per name in ``axes``; padding holds 0.
        axes: row names, e.g. ("T","H","W"), ("P","T","H","W"), ("P","H","W").
        text_row: (B, L) int64 sequence index ``cumsum(attention_mask) - 1`` (0 on padding), the 1-D
            "text position ids" transformers 5.x uses for masks; not a rotary input.
        rope_deltas: (B, 1) int64, ``floor(max position of the row) + 1 - number of valid tokens``: the
            delta of transformers' ``get_rope_index``, kept for parity tests with it (decode with
            :meth:`decode_positions`). The posevlm model integration does NOT use it.
        continuation_deltas: (B, 1) int64, ``floor(max over rows of the position of the last valid token)
            + 1 - number of valid tokens``. This is what ``posevlm.models`` uses
            (:meth:`continuation_positions`): decode token k sits at position(last prompt token) + 1 + k,
            so generated text continues from where the prompt ends.
            The two differ when some vision position exceeds the last token's (e.g. hf_time T beyond the
            spatial extent, or a video right before the last token): ``rope_deltas`` would jump to max+1.
        decode_convention: how a decode step gets its position with ``rope_deltas`` (see
            :meth:`decode_positions`); ``continuation_convention`` the same for ``continuation_deltas``.
        token_map: the TokenMap the plan was built from.
        spec: the PositionSpec used.
    """

    rows: Tensor
    axes: tuple[str, ...]
    text_row: Tensor
    rope_deltas: Tensor
    continuation_deltas: Tensor
    token_map: TokenMap
    spec: PositionSpec
    decode_convention: str = DECODE_CONVENTION
    continuation_convention: str = CONTINUATION_CONVENTION

    @staticmethod
    def _shifted(attention_mask: Tensor, deltas: Tensor) -> Tensor:
        pos = attention_mask.long().cumsum(-1) - 1
        return pos.masked_fill(attention_mask == 0, 0) + deltas.to(pos.device)

    def decode_positions(self, attention_mask: Tensor) -> Tensor:
        """(B, L') positions of every token of an extended mask with ``rope_deltas`` (transformers'
        ``get_rope_index`` convention; all axes equal).

        attention_mask: (B, L') mask of the prompt plus generated tokens (0 on padding)."""
        return self._shifted(attention_mask, self.rope_deltas)

    def continuation_positions(self, attention_mask: Tensor) -> Tensor:
        """(B, L') positions of every token of an extended mask with ``continuation_deltas`` (the posevlm
        model convention: the first generated token sits at position(last prompt token) + 1).

        attention_mask: (B, L') mask of the prompt plus generated tokens (0 on padding)."""
        return self._shifted(attention_mask, self.continuation_deltas)


def merge_tubelet_scalars(values: Tensor, mode: str) -> Tensor:
    """(..., S) per-frame scalars -> (..., S/2) per tubelet by ``mean``, ``first``, ``last`` or ``median``.

    ``median`` of two values is their lower value (torch.median convention), as in the reference code."""
    pairs = values.unflatten(-1, (-1, 2))
    if mode == "mean":
        return pairs.mean(-1)
    if mode == "first":
        return pairs[..., 0]
    if mode == "last":
        return pairs[..., 1]
    return pairs.median(-1).values


def pad_to_tubelets(x: Tensor, tubelets: int, name: str, frame_dim: int = 0) -> Tensor:
    """Per-frame values of one video -> exactly 2 T frames along ``frame_dim``: S == 2 T is returned as is, an odd
    S == 2 T - 1 repeats the last frame like the processors do; anything else raises ShapeError naming ``name``."""
    frames = x.shape[frame_dim]
    if frames == 2 * tubelets - 1:
        last = x.narrow(frame_dim, frames - 1, 1)
        return torch.cat([x, last], dim=frame_dim)
    if frames != 2 * tubelets:
        raise ShapeError(
            f"{name} has {frames} frames but the video grid has T={tubelets} tubelets; expected S = 2*T = "
            f"{2 * tubelets} (or {2 * tubelets - 1}, padded by repeating the last frame). Pass one entry per "
            "sampled frame, in the order given to the processor.", name=name, shape=tuple(x.shape))
    return x


def per_video(items, n_videos: int, name: str, *, required: bool = True) -> list:
    """A per-video input (list, or a stacked (N_vid, ...) tensor) as a list of N_vid entries; None gives a
    ShapeError (``required``) or N_vid Nones. Videos are in ``video_grid_thw`` order: row-major over samples."""
    if items is None:
        if not required:
            return [None] * n_videos
        raise ShapeError(f"{name} is required by this PositionSpec; pass one tensor per video", name=name)
    items = list(items) if not isinstance(items, Tensor) else list(items.unbind(0))
    if len(items) != n_videos:
        raise ShapeError(f"{name} has {len(items)} videos but video_grid_thw has {n_videos}: pass one entry per "
                         "video, in video_grid_thw order (row-major over the batch's samples)", name=name)
    return items


def pose_rows_per_tubelet(
    w2c_opencv: Sequence[Tensor] | Tensor, tubelets: Tensor, spec: PositionSpec
) -> Tensor:
    """Merged, reset and scaled pose index per tubelet, (N_vid, T_max) float32 (zero beyond each video's T).

    w2c_opencv: per video (S, 4, 4) world-to-camera, OpenCV axes (a list, or an (N_vid, S, 4, 4) tensor).
    Videos with the same S are evaluated in one batched call."""
    t_list = tubelets.tolist()
    raw = [torch.as_tensor(c) for c in per_video(w2c_opencv, len(t_list), "w2c_opencv")]
    real_frames = [c.shape[-3] if c.ndim >= 3 else 0 for c in raw]  # S before padding an odd count
    cams = [pad_to_tubelets(c, t, f"w2c_opencv[{i}]", -3) for i, (c, t) in enumerate(zip(raw, t_list))]
    for i, c in enumerate(cams):
        if c.shape[-2:] != (4, 4) or c.ndim != 3:
            raise ShapeError(f"w2c_opencv[{i}] must have shape (S, 4, 4); got {tuple(c.shape)}",
                             name="w2c_opencv", shape=tuple(c.shape))
    out = torch.zeros(len(cams), max(t_list, default=0), dtype=torch.float32, device=tubelets.device)
    by_frames: dict[int, list[int]] = {}
    for i in range(len(cams)):
        by_frames.setdefault(real_frames[i], []).append(i)
    for frames, idx in by_frames.items():  # frames: the real S (2T or 2T - 1); the range is S - 1
        stacked = torch.stack([cams[i] for i in idx]).to(device=tubelets.device, dtype=torch.float32)
        p = lie_scalar_pose_index(stacked, lam=spec.pose_lam, reference=spec.pose_reference)
        p = merge_tubelet_scalars(p, spec.pose_merge)
        if spec.pose_hard_reset:
            lo, hi = p.amin(-1, keepdim=True), p.amax(-1, keepdim=True)
            span = hi - lo
            p = torch.where(span > 0, (p - lo) / torch.where(span > 0, span, torch.ones_like(span)), p)
        scale = float(frames - 1) if spec.pose_range == "frames" else float(spec.pose_range_fixed)
        out[idx, : p.shape[-1]] = (p * scale).to(torch.float32)
    return out


def _hf_time_offsets(tau: Tensor, n: int, tokens_per_second: float, second_per_grid_ts) -> Tensor:
    """(N_vid, T_max) float32 ``(arange(t) * (tokens_per_second * second_per_grid_t)).long()``, in
    transformers' arithmetic: a tensor ``second_per_grid_ts`` keeps its dtype (float64 products in
    float64, bfloat16 in bfloat16, ints exact); a list of Python floats gives a double product that
    multiplies ``arange`` in the default dtype (float32); None means 1 (integer positions)."""
    tps = int(tokens_per_second) if float(tokens_per_second).is_integer() else tokens_per_second
    if second_per_grid_ts is None:
        interval = torch.full((n,), tps, device=tau.device)
    elif isinstance(second_per_grid_ts, Tensor):
        interval = tps * second_per_grid_ts.to(tau.device).reshape(-1)
    else:  # Python numbers
        interval = tps * torch.as_tensor(second_per_grid_ts, device=tau.device).reshape(-1)
        if interval.is_floating_point():
            seconds = torch.as_tensor(second_per_grid_ts, dtype=torch.float64, device=tau.device).reshape(-1)
            interval = (tps * seconds).to(torch.get_default_dtype())
    if interval.numel() != n:
        raise ShapeError(f"second_per_grid_ts has {interval.numel()} entries but there are {n} videos",
                         name="second_per_grid_ts", shape=tuple(interval.shape))
    return (tau[None, :] * interval[:, None]).long().to(torch.float32)


def _temporal_offsets(spec: PositionSpec, grid: Tensor, second_per_grid_ts, frame_ids) -> Tensor:
    """(N_vid, T_max) float32 local T offset of each tubelet of each video (qwen2_5 layout)."""
    n = grid.shape[0]
    t_max = int(grid[:, 0].max()) if n else 0
    tau = torch.arange(t_max, device=grid.device)
    if spec.temporal == "hf_time":
        return _hf_time_offsets(tau, n, spec.tokens_per_second, second_per_grid_ts)
    if spec.temporal == "index":
        return tau[None, :].expand(n, -1).to(torch.float32)
    if spec.temporal == "zero":
        return torch.zeros(n, t_max, device=grid.device)
    out = torch.zeros(n, t_max, device=grid.device)
    t_list = grid[:, 0].tolist()
    for i, (ids, t) in enumerate(zip(per_video(frame_ids, n, "frame_ids"), t_list)):
        ids = torch.as_tensor(ids, device=grid.device, dtype=torch.float64).reshape(-1)
        real_frames = ids.shape[0]  # S before padding an odd count: the range is S - 1 (spec §2.2)
        ids = pad_to_tubelets(ids, t, f"frame_ids[{i}]", -1)
        a = merge_tubelet_scalars(ids, spec.frame_merge)
        a = a - a.min()
        span = a.max()
        target = float(real_frames - 1) if spec.frame_range == "frames" else float(spec.frame_range_fixed)
        a = a * torch.where(span > 0, target / torch.where(span > 0, span, torch.ones_like(span)), 1.0)
        if spec.frame_rounding == "floor":
            a = a.floor()
        elif spec.frame_rounding == "round":
            a = a.round()
        out[i, :t] = a.to(torch.float32)
    return out


def build_position_plan(
    token_map: TokenMap,
    spec: PositionSpec,
    *,
    second_per_grid_ts: Tensor | None = None,
    frame_ids: Sequence[Tensor] | Tensor | None = None,
    w2c_opencv: Sequence[Tensor] | Tensor | None = None,
) -> PositionPlan:
    """Position rows for a tokenised batch.

    Args:
        token_map: from :func:`build_token_map`.
        spec: PositionSpec (layout, temporal, pose, next-segment rule).
        second_per_grid_ts: (N_vid,) seconds per tubelet (processor output); 1 if None (transformers'
            default).
        frame_ids: per video (S,) source frame ids; required by temporal ``frame_ids``.
        w2c_opencv: per video (S, 4, 4) world-to-camera OpenCV poses; required by pose ``scalar``.
    Returns:
        PositionPlan with ``rows`` (A, B, L) float32.
    Raises:
        ShapeError: missing or mis-sized per-video inputs (S must be 2*T, or 2*T - 1 padded).
    """
    tm = token_map
    mod = tm.modality
    device = mod.device
    img_grid, vid_grid, m = tm.image_grid_thw, tm.video_grid_thw, tm.spatial_merge_size
    n_img, n_vid = img_grid.shape[0], vid_grid.shape[0]
    is_img, is_vid = mod == IMAGE, mod == VIDEO
    is_vis, is_text = is_img | is_vid, mod == TEXT
    media = tm.media_index.clamp(min=0)
    media_v = torch.where(is_vid, media, 0)  # safe index into per-video tables
    tau = tm.tubelet.clamp(min=0)
    row, col = tm.row.clamp(min=0), tm.col.clamp(min=0)
    qwen3 = spec.layout == "qwen3"

    # per-segment tables: spatial extent and last-token flags
    img_hw = torch.stack([img_grid[:, 1] // m, img_grid[:, 2] // m], -1)
    vid_hw = torch.stack([vid_grid[:, 1] // m, vid_grid[:, 2] // m], -1)
    vid_t = vid_grid[:, 0]
    if qwen3:
        seg_of_vid_token = n_img + tm.video_tubelet_offset[media_v] + tau if n_vid else media
        vid_seg_hw = torch.repeat_interleave(vid_hw, vid_t, dim=0)
    else:
        seg_of_vid_token = n_img + media
        vid_seg_hw = vid_hw
    seg = torch.where(is_img, media, torch.where(is_vid, seg_of_vid_token, 0))
    seg_hw = torch.cat([img_hw, vid_seg_hw], 0)
    n_seg = seg_hw.shape[0]
    hw_tok = seg_hw[seg] if n_seg else torch.zeros(*mod.shape, 2, dtype=torch.long, device=device)
    last_rc = (row == hw_tok[..., 0] - 1) & (col == hw_tok[..., 1] - 1)
    if qwen3:
        last = is_vis & last_rc
    else:
        t_tok = torch.where(is_vid, vid_t[media_v] if n_vid else tau, 1)
        last = is_vis & last_rc & (tau == t_tok - 1)

    # local offsets of vision tokens, from small per-video tables (N_vid, T_max)
    t_tab = p_tab = None
    if n_vid and not qwen3:
        t_tab = _temporal_offsets(spec, vid_grid, second_per_grid_ts, frame_ids)
        t_local = torch.where(is_vid, t_tab[media_v, tau], 0.0)
    else:
        t_local = torch.zeros(mod.shape, device=device)
    use_pose = spec.pose == "scalar"
    p_local = None
    if use_pose:
        p_local = torch.zeros(mod.shape, device=device)
        if n_vid:
            p_tab = pose_rows_per_tubelet(w2c_opencv, vid_t, spec)
            p_local = torch.where(is_vid, p_tab[media_v, tau], 0.0)

    # advance per segment (computed on the per-segment tables, not per token)
    if spec.next_segment == "spatial_extent" or not n_seg:
        advance = seg_hw.amax(-1) if n_seg else torch.zeros(0, dtype=torch.long, device=device)
    else:
        seg_max = (seg_hw - 1).amax(-1).to(torch.float32)
        if n_vid and not qwen3:
            valid_tau = torch.arange(t_tab.shape[1], device=device)[None, :] < vid_t[:, None]
            vid_max = torch.where(valid_tau, t_tab, float("-inf")).amax(-1)
            if "T" not in spec.axes:  # PHW: T is dropped, only P, H, W set the next start
                vid_max = torch.full_like(vid_max, float("-inf"))
            if use_pose and spec.pose_offset == "anchored":
                vid_max = torch.maximum(vid_max, torch.where(valid_tau, p_tab, float("-inf")).amax(-1))
            seg_max = torch.cat([seg_max[:n_img], torch.maximum(seg_max[n_img:], vid_max)])
        advance = seg_max.floor().long() + 1
    inc = torch.where(is_text, 1, 0)
    if n_seg:
        inc = torch.where(last, advance[seg], inc)
    start = torch.cumsum(inc, dim=1) - inc  # text position, or segment start for vision tokens
    start_f = start.to(torch.float32)

    t_row = torch.where(is_vis, start_f + t_local, start_f)
    h_row = torch.where(is_vis, start_f + row, start_f)
    w_row = torch.where(is_vis, start_f + col, start_f)
    rows = {"T": t_row, "H": h_row, "W": w_row}
    if use_pose:
        anchor = start_f
        if qwen3 and n_vid:
            seg_start = torch.zeros(n_seg, device=device)
            seg_start[seg[last]] = start_f[last]
            anchor = torch.where(is_vid, seg_start[n_img + tm.video_tubelet_offset[media_v]], start_f)
        p_vid = anchor + p_local if spec.pose_offset == "anchored" else p_local
        rows["P"] = torch.where(is_vid, p_vid, t_row)
    axes = spec.axes
    stacked = torch.stack([rows[a] for a in axes], 0)
    stacked = torch.where(tm.valid[None], stacked, 0.0)

    n_valid = tm.valid.sum(-1)
    top = torch.where(tm.valid[None], stacked, float("-inf")).amax(dim=(0, 2))
    top = torch.where(n_valid > 0, top, torch.full_like(top, -1.0))
    rope_deltas = (top.floor().long() + 1 - n_valid)[:, None]
    # continuation: max over rows of the last valid token's position (as posevlm.models computes it; a
    # row without valid tokens reads padding, 0, and gets 1)
    idx = torch.arange(tm.valid.shape[1], device=device)
    last_idx = torch.where(tm.valid, idx, -1).amax(-1).clamp(min=0)
    last_pos = stacked.gather(2, last_idx[None, :, None].expand(stacked.shape[0], -1, 1)).amax(0)[:, 0]
    continuation_deltas = (last_pos.floor().long() + 1 - n_valid)[:, None]
    text_row = (tm.valid.long().cumsum(-1) - 1).masked_fill(~tm.valid, 0)
    return PositionPlan(rows=stacked, axes=axes, text_row=text_row, rope_deltas=rope_deltas,
                        continuation_deltas=continuation_deltas, token_map=tm, spec=spec)
