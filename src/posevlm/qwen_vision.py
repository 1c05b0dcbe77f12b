"""Qwen-VL vision-input arithmetic: frame sizes and frame counts as the Qwen processors and qwen-vl-utils
compute them. Pure integer / float rules (``math`` only: no torch, numpy, transformers or decoder), so the
position inspector (``posevlm.positions``), the frame sources (``posevlm.eval.frames``) and the hf backend's
video inputs (``posevlm.models.qwen_video``) share one copy without importing each other.

* sizes: :func:`smart_resize_hw` (nearest multiples of patch·merge, no pixel clamps) and
  :func:`video_resize_hw` (qwen-vl-utils 0.0.14 ``fetch_video``: pixel budget of ``QWEN_VL_UTILS_BUDGET``);
* frame counts: :func:`qwen_nframes` (``round_by_factor(n, 2)``) and :func:`fps_nframes` (``smart_nframes``
  with ``fps``);
* Qwen3-VL prompt timestamps: :func:`qwen3_timestamps` (the ``<t seconds>`` of each temporal patch, as
  transformers' ``Qwen3VLProcessor._calculate_timestamps``; tested live against it in tests/train).

``video_resize_hw``, ``qwen_nframes`` and ``fps_nframes`` are tested live against the pinned qwen-vl-utils
(tests/eval/test_qwen_vl_utils_parity.py, dev extra).
"""

from __future__ import annotations

import math

__all__ = ["QWEN_VL_UTILS_BUDGET", "FRAME_FACTOR", "smart_resize_hw", "video_resize_hw", "qwen_nframes",
           "fps_nframes", "qwen3_timestamps"]

#: qwen-vl-utils 0.0.14 ``fetch_video`` budget: merged tokens per frame (VIDEO_MIN/MAX_TOKEN_NUM) and
#: the sequence length the total pixel budget derives from (MODEL_SEQ_LEN; 90 % of it is used).
QWEN_VL_UTILS_BUDGET = {"min_tokens": 128, "max_tokens": 768, "model_seq_len": 128000, "version": "0.0.14"}
#: qwen-vl-utils: frame counts are multiples of the temporal patch size.
FRAME_FACTOR = 2


def smart_resize_hw(height: int, width: int, factor: int) -> tuple[int, int]:
    """(H, W) rounded to the nearest multiple of ``factor`` (patch * merge), at least ``factor``, as the
    Qwen processors' ``smart_resize`` does before its min/max pixel clamps (not applied here)."""
    return max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)


def video_resize_hw(height: int, width: int, n_frames: int, *, patch_size: int, min_pixels: int | None = None,
                    max_pixels: int | None = None, total_pixels: int | None = None) -> tuple[int, int]:
    """(h, w) that qwen-vl-utils 0.0.14 ``fetch_video`` resizes ``n_frames`` frames of height x width to.

    Both multiples of ``f = 2 * patch_size``, area in [min, max], aspect ratio kept; defaults
    min = 128 f², total = 128000 f² · 0.9, max = ``max(min(768 f², total / S * 2), 1.05 min)`` with S =
    ``n_frames`` rounded up to even; an explicit ``max_pixels`` can only lower max.
    """
    f = 2 * patch_size
    n = math.ceil(n_frames / 2) * 2
    lo = min_pixels if min_pixels is not None else QWEN_VL_UTILS_BUDGET["min_tokens"] * f * f
    total = total_pixels if total_pixels is not None else QWEN_VL_UTILS_BUDGET["model_seq_len"] * f * f * 0.9
    hi = max(min(QWEN_VL_UTILS_BUDGET["max_tokens"] * f * f, total / n * 2), int(lo * 1.05))
    hi = min(max_pixels, hi) if max_pixels is not None else hi
    h_bar, w_bar = max(f, round(height / f) * f), max(f, round(width / f) * f)
    if h_bar * w_bar > hi:
        beta = math.sqrt(height * width / hi)
        h_bar, w_bar = max(f, math.floor(height / beta / f) * f), max(f, math.floor(width / beta / f) * f)
    elif h_bar * w_bar < lo:
        beta = math.sqrt(lo / (height * width))
        h_bar, w_bar = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return h_bar, w_bar


def qwen_nframes(n: int) -> int:
    """qwen-vl-utils' ``round_by_factor(n, 2)``: Python ``round`` (half to even), so 5 -> 4, 7 -> 8."""
    return round(n / FRAME_FACTOR) * FRAME_FACTOR


def fps_nframes(total_frames: int, video_fps: float, fps: float, min_frames: int = 4,
                max_frames: int | None = None) -> int:
    """qwen-vl-utils ``smart_nframes`` with ``fps``: ``T / video_fps * fps`` clamped to [min, max] and to
    T, floored to even. ``max_frames=None`` means ``min(768, T)``."""
    lo = math.ceil(min_frames / FRAME_FACTOR) * FRAME_FACTOR
    hi = (min(768, total_frames) if max_frames is None else max_frames) // FRAME_FACTOR * FRAME_FACTOR
    n = min(min(max(total_frames / video_fps * fps, lo), hi), total_frames)
    return math.floor(n / FRAME_FACTOR) * FRAME_FACTOR


def qwen3_timestamps(frames_indices, fps: float, temporal_patch_size: int = FRAME_FACTOR) -> list[float]:
    """Seconds of each temporal patch of a Qwen3-VL video, the ``<t seconds>`` its processor writes before the patch.

    transformers 5.23 ``Qwen3VLProcessor._calculate_timestamps``: the frame indices padded to a multiple of
    ``temporal_patch_size`` by repeating the last one, each index divided by ``fps``, then the mean of the first and
    the last frame of each patch. ``frames_indices``: the video metadata's (source frame ids, or qwen-vl-utils'
    ``0..S'-1`` list form), in processor order; ``fps``: the metadata's fps (the processor's fallback for None is
    24). Returns T = ceil(S / temporal_patch_size) floats (same float arithmetic as the processor, so the ``.1f``
    texts are identical).
    """
    ids = [int(i) for i in frames_indices]
    ids += [ids[-1]] * (-len(ids) % temporal_patch_size)
    seconds = [i / fps for i in ids]
    first, last = seconds[::temporal_patch_size], seconds[temporal_patch_size - 1::temporal_patch_size]
    return [(a + b) / 2 for a, b in zip(first, last)]
