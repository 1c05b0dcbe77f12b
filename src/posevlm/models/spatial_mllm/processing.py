"""Spatial-MLLM inputs: one processor pass that yields both pixel streams, and the prompt expansion for
connectors that add tokens.

Notation: B batch, L tokens, V videos (``video_grid_thw`` rows, row-major over samples), S frames, (H, W) the
resized frame size, N_v = t * h/m * w/m the merged tokens of video v (one ``<|video_pad|>`` each), e extra tokens
per merged token.

**Two copies of the same frames** (models spec §1.2): :func:`prepare_inputs` resizes the frames once (bicubic,
antialiased, uint8: :func:`posevlm.models.qwen_video.resize_frames`, the hf eval backend's resize) to the training
pixel budget (:data:`TRAINING_PIXELS`, spec §3.3: 640x480 -> 644x476 for Qwen2.5-VL's 28-px grid), hands them to
the processor with ``do_resize=False`` (it rescales, normalises and patchifies them into ``pixel_values_videos``),
and returns the same resized frames unnormalised as ``video_tchw`` (per video (S, 3, H, W) uint8 0..255, what the
model's VGGT branch reads; the model rescales uint8 to [0, 1]).

**Extra pads**: a connector that adds tokens (``sequence_cat``: e = 1, its 3D tokens) needs ``(1 + e) * N_v`` video
pads per video: the processor writes N_v. :func:`expand_video_pads` inserts the ``e * N_v`` extra pads right after
the video's last pad (Qwen2.5-VL: at the end of its one vision block; Qwen3-VL, one block per tubelet: at the end of
the last tubelet's block), with ``mm_token_type_ids`` 2 and ``attention_mask`` 1, and re-pads the rows to one length
on the side the processor padded. The model scatters the connector's output in that order (its own 2D tokens, then
the extra tokens), and posevlm's position builder gives every extra token the position of its cell's 2D token
(:class:`posevlm.positions.token_map.ExtraVideoTokens`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.models.qwen_video import resize_frames, video_metadata, video_resize_hw
from posevlm.positions.token_map import VIDEO

__all__ = ["TRAINING_PIXELS", "spatial_resize_hw", "prepare_inputs", "expand_video_pads"]

#: the training scripts' per-frame pixel budget (models spec §1.2 / §3.3: 28 x 28 x 374 .. 28 x 28 x 414)
TRAINING_PIXELS = {"min_pixels": 293216, "max_pixels": 324576}


def spatial_resize_hw(height: int, width: int, n_frames: int, *, patch_size: int,
                      min_pixels: int | None = TRAINING_PIXELS["min_pixels"],
                      max_pixels: int | None = TRAINING_PIXELS["max_pixels"],
                      total_pixels: int | None = None) -> tuple[int, int]:
    """(H, W) the frames are resized to: multiples of ``2 * patch_size``, area in [min_pixels, max_pixels], aspect
    ratio kept (qwen-vl-utils' rule, :func:`posevlm.qwen_vision.video_resize_hw`, at the training budget by
    default; None: qwen-vl-utils' own budget). 480x640 frames -> (476, 644) with patch 14, (480, 640) with 16."""
    return video_resize_hw(height, width, n_frames, patch_size=patch_size, min_pixels=min_pixels,
                           max_pixels=max_pixels, total_pixels=total_pixels)


def prepare_inputs(processor, frames: np.ndarray, question: str, *, frame_ids=None, source_fps: float | None = None,
                   total_frames: int | None = None, min_pixels: int | None = TRAINING_PIXELS["min_pixels"],
                   max_pixels: int | None = TRAINING_PIXELS["max_pixels"], total_pixels: int | None = None,
                   system_prompt: str | None = None) -> dict[str, Any]:
    """One chat prompt ``[video, question]`` with both pixel streams made from the same resized frames.

    Args:
        processor: a Qwen2.5-VL / Qwen3-VL processor (``model.processor``, or
            :func:`posevlm.models.qwen_video.load_processor`).
        frames: (S, H, W, 3) uint8 RGB in model order (``posevlm.frames_io.read_frames`` reads files into it).
        question: the user text after the video (e.g. a VSI-Bench prompt with its answer-format suffix).
        frame_ids / source_fps / total_frames: the source frame ids, fps and length (the processor's
            ``video_metadata``: Qwen3-VL renders ``<t seconds>`` from it, Qwen2.5-VL ``second_per_grid_ts``); without
            fps and length, qwen-vl-utils' list form (fps 2, ids 0..S-1), as the fork's inference on frames.
        min_pixels / max_pixels / total_pixels: the resize budget (:func:`spatial_resize_hw`).
        system_prompt: a system turn (default: the chat template's own, Qwen2.5-VL's "You are a helpful
            assistant.").
    Returns:
        the processor's outputs as a dict (``input_ids`` (1, L), ``attention_mask``, ``mm_token_type_ids``,
        ``pixel_values_videos`` (S' * h * w / ..., C * 2 * p * p), ``video_grid_thw`` (1, 3), Qwen2.5-VL
        ``second_per_grid_ts``) plus ``video_tchw``: [(S, 3, H, W) uint8], the frames the processor normalised, and
        ``resized_hw`` (H, W).
    Raises:
        ShapeError: frames not (S, H, W, 3) uint8.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ShapeError(f"frames must be (S, H, W, 3) uint8 RGB; got {frames.shape} {frames.dtype} (read files and "
                         "PIL images with posevlm.frames_io.read_frames)", name="frames", shape=frames.shape)
    vp = processor.video_processor
    hw = spatial_resize_hw(*frames.shape[1:3], frames.shape[0], patch_size=int(vp.patch_size),
                           min_pixels=min_pixels, max_pixels=max_pixels, total_pixels=total_pixels)
    video = resize_frames(frames, hw)  # (S, 3, H, W) uint8: the one copy both streams come from
    ids = np.arange(frames.shape[0]) if frame_ids is None else np.asarray(frame_ids).reshape(-1)
    meta = video_metadata(ids, source_fps, total_frames, "source")
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]})
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    out = processor(text=[text], videos=[video], video_metadata=[{k: v for k, v in meta.items() if k != "mode"}],
                    do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False, padding=True,
                    padding_side="left", return_tensors="pt")
    return {**dict(out), "video_tchw": [video], "resized_hw": hw}

#: the per-token keys of a processor output that the expansion lengthens (others pass through unchanged)
_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def expand_video_pads(inputs: Mapping[str, Any], *, video_token_id: int, spatial_merge_size: int,
                      extra_per_token: int, pad_token_id: int = 0, padding_side: str | None = None) -> dict[str, Any]:
    """The processor output with ``extra_per_token * N_v`` more video pads after each video's last pad.

    Args:
        inputs: the processor output (``input_ids`` (B, L), ``attention_mask``, ``mm_token_type_ids``,
            ``video_grid_thw`` (V, 3), ...); other keys are copied unchanged.
        video_token_id: the checkpoint's ``<|video_pad|>`` id (``config.video_token_id``).
        spatial_merge_size: m (``vision_config.spatial_merge_size``).
        extra_per_token: e >= 0; 0 returns a copy of ``inputs``.
        pad_token_id: the id written into new padding positions (masked out).
        padding_side: ``left`` / ``right``; default: ``right`` when some row ends with padding and none starts
            with it, else ``left`` (what generation needs, and what posevlm asks the processors for).
    Returns:
        a new dict; ``input_ids``, ``attention_mask`` and ``mm_token_type_ids`` (B, L') with
        ``L' = max_b(valid tokens of row b + e * sum of N_v over its videos)``.
    Raises:
        ShapeError: the video pads do not match ``video_grid_thw`` (names the counts).
        ConfigError: a negative ``extra_per_token`` or an unknown ``padding_side``.
    """
    if isinstance(extra_per_token, bool) or not isinstance(extra_per_token, int) or extra_per_token < 0:
        raise ConfigError(f"extra_per_token={extra_per_token!r} (an int >= 0)", field="extra_per_token")
    out = dict(inputs)
    if extra_per_token == 0:
        return out
    ids = torch.as_tensor(inputs["input_ids"])
    if ids.ndim != 2:
        raise ShapeError(f"input_ids must be (B, L); got {tuple(ids.shape)}", name="input_ids", shape=tuple(ids.shape))
    mask = torch.as_tensor(inputs.get("attention_mask", torch.ones_like(ids))).to(ids.device)
    types = inputs.get("mm_token_type_ids")
    video = (torch.as_tensor(types).to(ids.device) == VIDEO) if types is not None else ids == video_token_id
    video = video & mask.bool()
    grid = torch.as_tensor(inputs["video_grid_thw"]).to(device=ids.device, dtype=torch.long).reshape(-1, 3)
    m = int(spatial_merge_size)
    counts = grid[:, 0] * (grid[:, 1] // m) * (grid[:, 2] // m)
    flat = video.reshape(-1)
    if int(flat.sum()) != int(counts.sum()):
        raise ShapeError(f"input_ids hold {int(flat.sum())} video pads but video_grid_thw {grid.tolist()} gives "
                         f"{int(counts.sum())} merged tokens; expand the processor's own output (one pad per merged "
                         "token), once", name="input_ids", shape=tuple(ids.shape))
    repeats = torch.ones_like(flat, dtype=torch.long)
    last = flat.nonzero().squeeze(-1)[torch.cumsum(counts, 0) - 1] if len(counts) else flat.nonzero().squeeze(-1)
    repeats[last] += extra_per_token * counts
    repeats = repeats.view_as(ids)
    if padding_side is None:
        right = bool((mask[:, -1] == 0).any()) and not bool((mask[:, 0] == 0).any())
        padding_side = "right" if right else "left"
    if padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side={padding_side!r} (left or right)", field="padding_side")
    keep = mask.bool()
    rows = {k: [] for k in _TOKEN_KEYS}
    source = {"input_ids": ids, "attention_mask": mask,
              "mm_token_type_ids": torch.as_tensor(types).to(ids.device) if types is not None else None}
    for b in range(ids.shape[0]):  # one loop over rows (to re-pad), none over tokens
        r = repeats[b][keep[b]]
        for key, value in source.items():
            if value is not None:
                rows[key].append(torch.repeat_interleave(value[b][keep[b]], r))
    length = max(len(r) for r in rows["input_ids"])
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "mm_token_type_ids": 0}
    for key, items in rows.items():
        if not items:
            continue
        padded = []
        for row in items:
            pad = torch.full((length - len(row),), fill[key], dtype=row.dtype, device=row.device)
            padded.append(torch.cat([pad, row] if padding_side == "left" else [row, pad]))
        out[key] = torch.stack(padded)
    return out
