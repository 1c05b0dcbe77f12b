"""Shared inputs for the tests on tiny Qwen2.5-VL / Qwen3-VL models (not a test module): left-padded batches
of text + video token runs, random video patches and orbiting camera trajectories."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("_tiny_models", Path(__file__).parents[1] / "eval" / "tiny_models.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


def _rot(axis, angle):
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    k = torch.zeros(3, 3, dtype=torch.float64)
    k[0, 1], k[0, 2], k[1, 2] = -axis[2], axis[1], -axis[0]
    k = k - k.T
    return torch.linalg.matrix_exp(angle * k)


def trajectory(frames: int, seed: int, *, static: bool = False) -> torch.Tensor:
    """(S, 4, 4) float32 world-to-camera (OpenCV) of a camera orbiting and translating."""
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    for i in range(frames):
        if not static:
            c2w[i, :3, :3] = _rot([0.2, 1.0, 0.1], 0.35 * i + 0.1 * float(torch.rand((), generator=g)))
            c2w[i, :3, 3] = torch.tensor([0.4 * i, 0.05 * i * i, 0.1]) + 0.05 * torch.randn(3, generator=g,
                                                                                          dtype=torch.float64)
    return torch.linalg.inv(c2w).to(torch.float32)


def make_batch(model, family: str, samples, seed: int = 0):
    """Left-padded batch. samples: list of (text_before, (t, h, w) video grid, text_after); Qwen3 videos get
    a 3-token timestamp before every tubelet. Returns the forward/generate kwargs and per-video frame counts."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    vs, ve, vid = cfg.vision_start_token_id, cfg.vision_end_token_id, cfg.video_token_id
    merge = cfg.vision_config.spatial_merge_size
    patch, tps = cfg.vision_config.patch_size, cfg.vision_config.temporal_patch_size
    rows, grids = [], []

    def text(ids, tt, n):
        ids += torch.randint(40, 200, (n,), generator=g).tolist()
        tt += [0] * n

    for before, grid, after in samples:
        ids, tt = [], []
        text(ids, tt, before)
        t, h, w = grid
        per = (h // merge) * (w // merge)
        blocks = [(3, per)] * t if family == "qwen3" else [(0, t * per)]
        for stamp, n in blocks:
            text(ids, tt, stamp)
            ids += [vs] + [vid] * n + [ve]
            tt += [0] + [2] * n + [0]
        text(ids, tt, after)
        rows.append((ids, tt))
        grids.append(grid)
    length = max(len(r[0]) for r in rows)
    pad = cfg.text_config.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(i)) + i for i, _ in rows])
    mm = torch.tensor([[0] * (length - len(t)) + t for _, t in rows])
    mask = torch.tensor([[0] * (length - len(i)) + [1] * len(i) for i, _ in rows])
    grid_t = torch.tensor(grids)
    n_patches = int(grid_t.prod(-1).sum())
    pixels = torch.randn(n_patches, 3 * tps * patch * patch, generator=g)
    kwargs = {"input_ids": input_ids, "attention_mask": mask, "mm_token_type_ids": mm,
              "pixel_values_videos": pixels, "video_grid_thw": grid_t}
    if family == "qwen2_5":
        kwargs["second_per_grid_ts"] = torch.tensor([1.0, 2.0][: len(samples)])
    return kwargs, [2 * t for t, _, _ in grids]


# sample 2 ends one token after its video: with hf_time T (and P) reaching past the next-segment start, the
# maximum position is not the last token's, so decode must continue from the last token, not from max + 1
SAMPLES = {"qwen2_5": [(6, (2, 4, 4), 5), (3, (3, 4, 6), 1)],
           "qwen3": [(6, (2, 4, 4), 5), (3, (3, 4, 6), 4)]}


def inputs(model, family, seed=0, cams_seed=1):
    kwargs, frames = make_batch(model, family, SAMPLES[family], seed)
    cams = [trajectory(s, cams_seed + i) for i, s in enumerate(frames)]
    return kwargs, cams
