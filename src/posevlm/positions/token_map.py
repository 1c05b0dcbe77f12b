"""Per-token layout of a tokenised multimodal batch: modality, media item, tubelet, patch row/col, camera.

Notation: B batch, L tokens, N media items of one kind, T temporal patches (tubelets), h' w' merged patch
grid (``grid // spatial_merge_size``).

Vision tokens are assigned to media items in batch-row-major order (row 0 left to right, then row 1, ...),
the order in which transformers consumes ``image_grid_thw`` / ``video_grid_thw``. Inside one item the
tokens are tubelet-major, then row, then column (the processor's raster of merged 2x2 cells). Everything is
computed with cumsum / searchsorted / gather: no per-token Python loop, one host sync (the token count check).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError

__all__ = ["TokenMap", "build_token_map", "ExtraVideoTokens", "locate_extra_video_tokens", "TEXT", "IMAGE", "VIDEO", "PAD"]

PAD, TEXT, IMAGE, VIDEO = -1, 0, 1, 2


@dataclass(frozen=True)
class TokenMap:
    """Per-token layout. All tensors are (B, L) int64 unless stated; -1 marks "not applicable".

    Attributes:
        modality: PAD (-1, attention_mask 0), TEXT (0), IMAGE (1) or VIDEO (2).
        media_index: row of ``image_grid_thw`` (images) or ``video_grid_thw`` (videos); -1 for text/pad.
        tubelet: temporal patch index tau inside the item (0 for images); -1 for text/pad. The tubelet holds
            frames ``2*tau`` and ``2*tau + 1`` of the item (temporal_patch_size 2): :meth:`frame_positions`
            gives them per token, :meth:`source_frame_ids` maps them to source frame ids.
        row, col: merged patch coordinates (y, x) inside the tubelet; -1 for text/pad.
        camera_index: global tubelet camera ``video_tubelet_offset[media_index] + tubelet`` for video tokens,
            -1 otherwise (one camera per tubelet, all videos of the batch concatenated).
        valid: (B, L) bool, attention_mask != 0.
        image_grid_thw: (N_img, 3) int64; video_grid_thw: (N_vid, 3) int64 (empty (0, 3) if absent).
        spatial_merge_size: merge factor m (h' = h // m).
        video_tubelet_offset: (N_vid,) int64, exclusive cumsum of the videos' T.
    """

    modality: Tensor
    media_index: Tensor
    tubelet: Tensor
    row: Tensor
    col: Tensor
    camera_index: Tensor
    valid: Tensor
    image_grid_thw: Tensor
    video_grid_thw: Tensor
    spatial_merge_size: int
    video_tubelet_offset: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.modality.shape)  # type: ignore[return-value]

    def frame_positions(self) -> Tensor:
        """(B, L, 2) int64 positions ``(2*tau, 2*tau + 1)`` of the two frames of each video token's tubelet
        inside its video (the order the frames were given to the processor, temporal_patch_size 2); -1 for
        non-video tokens. With an odd frame count S = 2T - 1 the last tubelet's second position is S, the
        repeated last frame (see :meth:`source_frame_ids`)."""
        is_vid = (self.modality == VIDEO)[..., None]
        pos = 2 * self.tubelet[..., None] + torch.arange(2, device=self.tubelet.device)
        return torch.where(is_vid, pos, torch.full_like(pos, -1))

    def source_frame_ids(self, frame_ids) -> Tensor:
        """(B, L, 2) int64 source frame ids of the two frames of each video token's tubelet; -1 for
        non-video tokens.

        frame_ids: per video (S,) source frame ids (a list, or an (N_vid, S) tensor), one entry per row of
            ``video_grid_thw``; S must be 2T or 2T - 1 (the last frame is repeated, like the processors do).
        Raises:
            ShapeError: wrong number of videos or of frames.
        """
        grid = self.video_grid_thw
        device = self.modality.device
        items = list(frame_ids.unbind(0)) if isinstance(frame_ids, Tensor) else list(frame_ids)
        if len(items) != grid.shape[0]:
            raise ShapeError(f"frame_ids has {len(items)} videos but video_grid_thw has {grid.shape[0]}; pass "
                             "one (S,) list of source frame ids per video", name="frame_ids")
        t_list = grid[:, 0].tolist()
        table = torch.full((len(items), 2 * max(t_list, default=0)), -1, dtype=torch.long, device=device)
        for i, (ids, t) in enumerate(zip(items, t_list)):  # one loop over videos, not tokens
            ids = torch.as_tensor(ids, dtype=torch.long, device=device).reshape(-1)
            if ids.numel() == 2 * t - 1 and t > 0:
                ids = torch.cat([ids, ids[-1:]])
            if ids.numel() != 2 * t:
                raise ShapeError(f"frame_ids[{i}] has {ids.numel()} frames but video {i} has T={t} tubelets; "
                                 f"expected S = 2*T = {2 * t} (or {2 * t - 1}, the last frame repeated)",
                                 name=f"frame_ids[{i}]", shape=tuple(ids.shape))
            table[i, : 2 * t] = ids
        pos = self.frame_positions()
        is_vid = pos >= 0
        if not table.numel():
            return pos
        media = torch.where(is_vid, self.media_index[..., None], 0)
        return torch.where(is_vid, table[media, pos.clamp(min=0)], pos)


def _grid(grid_thw: Tensor | None, name: str, device) -> Tensor:
    if grid_thw is None:
        return torch.zeros(0, 3, dtype=torch.long, device=device)
    grid = torch.as_tensor(grid_thw, device=device).long()
    if grid.ndim != 2 or grid.shape[-1] != 3:
        raise ShapeError(f"{name} must have shape (N, 3) as (t, h, w); got {tuple(grid.shape)}", name=name,
                         shape=tuple(grid.shape))
    return grid


def _locate(kind_mask: Tensor, grid: Tensor, merge: int, name: str):
    """Media index, local token index k and merged grid (t, h', w') per token of one kind (flat over B*L)."""
    flat = kind_mask.reshape(-1)
    merged = torch.stack([grid[:, 0], grid[:, 1] // merge, grid[:, 2] // merge], dim=-1)
    counts = merged.prod(-1)
    expected = int(counts.sum())
    found = int(flat.sum())
    if expected != found:
        raise ShapeError(
            f"{name} describes {expected} tokens (sum of t*(h/{merge})*(w/{merge})) but the batch holds "
            f"{found} such tokens under the attention mask. Pass the grids the processor returned with "
            "these input_ids.",
            name=name, shape=tuple(grid.shape))
    rank = torch.cumsum(flat.long(), 0) - 1
    ends = torch.cumsum(counts, 0)
    media = torch.searchsorted(ends, rank.clamp(min=0), right=True).clamp(max=max(len(grid) - 1, 0))
    if len(grid) == 0:
        zeros = torch.zeros_like(rank)
        return zeros, zeros, zeros, zeros
    k = rank - (ends - counts)[media]
    hw = (merged[:, 1] * merged[:, 2])[media]
    w = merged[media, 2]
    return media, k // hw, (k % hw) // w, k % w


def build_token_map(
    input_ids: Tensor,
    *,
    image_grid_thw: Tensor | None = None,
    video_grid_thw: Tensor | None = None,
    spatial_merge_size: int = 2,
    attention_mask: Tensor | None = None,
    mm_token_type_ids: Tensor | None = None,
    image_token_id: int | None = None,
    video_token_id: int | None = None,
) -> TokenMap:
    """Vectorised token map of a batch (left or right padding).

    Args:
        input_ids: (B, L) token ids.
        image_grid_thw / video_grid_thw: (N, 3) patch grids (t, h, w) before the spatial merge, in batch
            order.
        spatial_merge_size: m; each item contributes t * (h/m) * (w/m) tokens.
        attention_mask: (B, L), 0 for padding; all ones if None.
        mm_token_type_ids: (B, L) with 0 text, 1 image, 2 video (the transformers 5.x processor output).
            If None, ``image_token_id`` / ``video_token_id`` identify the vision tokens.
    Returns:
        TokenMap.
    Raises:
        ShapeError: wrong shapes, or grids that do not match the number of vision tokens.
        ConfigError: neither mm_token_type_ids nor the token ids given.
    """
    if input_ids.ndim != 2:
        raise ShapeError(f"input_ids must have shape (B, L); got {tuple(input_ids.shape)}", name="input_ids",
                         shape=tuple(input_ids.shape))
    device = input_ids.device
    valid = (torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None
             else attention_mask.to(device).bool())
    if valid.shape != input_ids.shape:
        raise ShapeError(f"attention_mask must match input_ids {tuple(input_ids.shape)}; "
                         f"got {tuple(valid.shape)}",
                         name="attention_mask", shape=tuple(valid.shape))
    if mm_token_type_ids is not None:
        types = mm_token_type_ids.to(device).long()
        if types.shape != input_ids.shape:
            raise ShapeError(f"mm_token_type_ids must match input_ids {tuple(input_ids.shape)}; got "
                             f"{tuple(types.shape)}", name="mm_token_type_ids", shape=tuple(types.shape))
    else:
        if image_token_id is None and video_token_id is None:
            raise ConfigError("pass mm_token_type_ids (processor output) or image_token_id/video_token_id "
                              "(config.image_token_id, config.video_token_id)", field="mm_token_type_ids")
        types = torch.zeros_like(input_ids)
        if image_token_id is not None:
            types = torch.where(input_ids == image_token_id, IMAGE, types)
        if video_token_id is not None:
            types = torch.where(input_ids == video_token_id, VIDEO, types)
    modality = torch.where(valid, types, torch.full_like(types, PAD))
    m = int(spatial_merge_size)
    img_grid = _grid(image_grid_thw, "image_grid_thw", device)
    vid_grid = _grid(video_grid_thw, "video_grid_thw", device)

    media = torch.full_like(input_ids, -1).reshape(-1)
    tubelet, row, col = media.clone(), media.clone(), media.clone()
    for kind, grid, name in ((IMAGE, img_grid, "image_grid_thw"), (VIDEO, vid_grid, "video_grid_thw")):
        mask = (modality == kind).reshape(-1)
        mi, tau, y, x = _locate(mask, grid, m, name)
        media = torch.where(mask, mi, media)
        tubelet = torch.where(mask, tau, tubelet)
        row = torch.where(mask, y, row)
        col = torch.where(mask, x, col)
    offset = torch.cumsum(vid_grid[:, 0], 0) - vid_grid[:, 0]
    is_video = (modality == VIDEO).reshape(-1)
    if len(vid_grid):
        camera = torch.where(is_video, offset[torch.where(is_video, media, 0)] + tubelet, -1)
    else:
        camera = torch.full_like(media, -1)
    shape = input_ids.shape
    return TokenMap(modality=modality, media_index=media.view(shape), tubelet=tubelet.view(shape),
                    row=row.view(shape), col=col.view(shape), camera_index=camera.view(shape), valid=valid,
                    image_grid_thw=img_grid, video_grid_thw=vid_grid, spatial_merge_size=m,
                    video_tubelet_offset=offset)


@dataclass(frozen=True)
class ExtraVideoTokens:
    """Where a connector's extra video tokens sit in a tokenised batch, and which cell each one belongs to.

    A video with N merged cells and ``e`` extra tokens per cell holds ``(1 + e) * N`` consecutive video tokens (in
    its own order of the batch, row-major, as the media tokens of :func:`build_token_map`): the first N are its
    own tokens, one per cell in ``[T, h', w']`` raster, the next ``e * N`` the extra ones (extra token j belongs to
    cell ``j % N``, e.g. the ``sequence_cat`` connector's 3D token of that cell). With Qwen3-VL's one vision block
    per tubelet, the extra tokens follow the video's last tubelet in its last block.

    Attributes:
        mask: (B, L) bool, True on extra tokens.
        source: (B, L) int64 flat index (``b * L + l``) of the own token of the cell an extra token belongs to;
            -1 elsewhere.
        count: (B,) int64 extra tokens per batch row.
    """

    mask: Tensor
    source: Tensor
    count: Tensor

    def fill_rows(self, rows: Tensor) -> Tensor:
        """(A, B, L) position rows with every extra token's row copied from its cell's own token."""
        flat = rows.reshape(rows.shape[0], -1)
        src = torch.where(self.mask, self.source, torch.arange(flat.shape[1], device=rows.device).view_as(self.mask))
        return flat[:, src.reshape(-1)].view_as(rows)


def locate_extra_video_tokens(video_mask: Tensor, video_grid_thw: Tensor, spatial_merge_size: int,
                              extra_per_token: int) -> ExtraVideoTokens:
    """The extra video tokens of a batch whose videos each hold ``(1 + extra_per_token) * N`` video tokens.

    Args:
        video_mask: (B, L) bool, the video tokens under the attention mask (``mm_token_type_ids == 2`` or
            ``input_ids == video_token_id``, and ``attention_mask != 0``).
        video_grid_thw: (N_vid, 3) patch grids (t, h, w) before the merge, in batch order.
        spatial_merge_size: m.
        extra_per_token: e >= 0.
    Returns:
        :class:`ExtraVideoTokens`.
    Raises:
        ShapeError: the batch does not hold ``(1 + e) * N`` tokens per video (names the counts).
    """
    device = video_mask.device
    grid = _grid(video_grid_thw, "video_grid_thw", device)
    m = int(spatial_merge_size)
    own = grid[:, 0] * (grid[:, 1] // m) * (grid[:, 2] // m)
    counts = own * (1 + int(extra_per_token))
    flat = video_mask.reshape(-1)
    found, expected = int(flat.sum()), int(counts.sum())
    if found != expected:
        raise ShapeError(f"the batch holds {found} video tokens but video_grid_thw {grid.tolist()} with "
                         f"{extra_per_token} extra token(s) per merged token needs {expected} ((1 + "
                         f"{extra_per_token}) x t*(h/{m})*(w/{m}) per video); expand the prompt for the extra tokens "
                         "(posevlm.models.spatial_mllm.expand_video_pads)", name="input_ids",
                         shape=tuple(video_mask.shape))
    positions = flat.nonzero().squeeze(-1)  # flat index of the video token of each rank
    rank = torch.arange(found, device=device)
    ends = torch.cumsum(counts, 0)
    video = torch.searchsorted(ends, rank, right=True)
    start = ends[video] - counts[video]
    local = rank - start
    n = own[video]
    is_extra = local >= n
    src = positions[start + torch.where(is_extra, (local - n) % n.clamp(min=1), local)]
    mask = torch.zeros_like(flat)
    mask[positions] = is_extra
    source = torch.full_like(flat, -1, dtype=torch.long)
    source[positions] = torch.where(is_extra, src, -1)
    mask = mask.view_as(video_mask)
    return ExtraVideoTokens(mask, source.view_as(video_mask), mask.long().sum(-1))
