"""Cameras of a synthetic hand-held scan without rendering it: a seeded room and trajectory, sampled at
given frame ids. The default cameras of ``posevlm inspect positions`` for pose modes without a manifest."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posevlm.errors import ConfigError
from posevlm.scenes.synthetic.layout import generate_layout
from posevlm.scenes.synthetic.trajectory import generate_trajectory

__all__ = ["synthetic_scan_w2c"]


def synthetic_scan_w2c(frame_ids: Sequence[int] | np.ndarray, video_frames: int, seed: int = 0) -> np.ndarray:
    """w2c_opencv of ``frame_ids`` on a deterministic synthetic scan of ``video_frames`` frames.

    The room (``generate_layout``) and the walk (``generate_trajectory``, 30 fps, at least 2 frames) are
    drawn from ``numpy.random.default_rng(seed)``; the same arguments give the same cameras.

    Args:
        frame_ids: (S,) source frame ids in [0, video_frames), in the order wanted (repeats allowed).
        video_frames: length of the scan the ids index.
        seed: seed of room and trajectory.
    Returns:
        (S, 4, 4) float64 world-to-camera, OpenCV axes.
    Raises:
        ConfigError: ``video_frames`` not an integer >= 1, or a frame id outside the scan.
    """
    if isinstance(video_frames, bool) or not isinstance(video_frames, (int, np.integer)) or video_frames < 1:
        raise ConfigError(f"video_frames must be an integer >= 1; got {video_frames!r}", field="video_frames",
                          value=video_frames)
    ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    outside = ids[(ids < 0) | (ids >= video_frames)]
    if outside.size:
        raise ConfigError(f"frame id {int(outside[0])} is outside the {video_frames}-frame synthetic video; "
                          "raise video_frames (--video-frames) or pass ids in [0, video_frames)",
                          field="video_frames", value=video_frames)
    rng = np.random.default_rng(seed)
    layout = generate_layout(rng)
    w2c = generate_trajectory(layout, rng, num_frames=max(int(video_frames), 2))
    return np.asarray(w2c, dtype=np.float64)[ids]
