"""Tiny Spatial-MLLM inputs for CPU tests (not a test module): models spec §6.2 sizes.

Qwen2.5-VL tiny (text 64 wide, 2 layers; vision depth 2, width 32, patch 14) from tests/eval/tiny_models.py, VGGT
``VGGTConfig.tiny()`` (DD = 64, camera head), and left-padded prompt batches with any number of videos per sample:
a video of S frames at H x W gives the grid (ceil(S / 2), H / p, W / p) and ``T * H/2p * W/2p`` pads (4 frames of
56 x 84 -> (2, 4, 6) -> 12 merged tokens of merged width 8 x 64 = 512). Qwen3-VL prompts get a 3-token timestamp
and their own vision block per tubelet, as its processor renders them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("_tiny_models_spatial", Path(__file__).parents[1] / "eval" /
                                               "tiny_models.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)

#: (text before, [(S, H, W) per video], text after) per sample: sample 0 has two videos, sample 1 one (left-padded)
SAMPLES_QWEN2_5 = [(5, [(4, 56, 84), (3, 56, 56)], 4), (3, [(4, 56, 84)], 2)]
SAMPLES_QWEN3 = [(5, [(4, 64, 96), (3, 64, 64)], 4), (3, [(4, 64, 96)], 2)]


def tiny_vggt(seed: int = 0, **overrides):
    from posevlm.spatial import VGGT, VGGTConfig

    torch.manual_seed(seed)
    return VGGT(VGGTConfig.tiny(**{"heads": ("camera",), **overrides})).eval()


def make_batch(qwen_config, samples, *, family: str = "qwen2_5", seed: int = 0):
    """(forward kwargs, video_tchw list) for ``samples``; videos in processor order (row-major over samples)."""
    cfg = qwen_config
    g = torch.Generator().manual_seed(seed)
    vs, ve, vid = cfg.vision_start_token_id, cfg.vision_end_token_id, cfg.video_token_id
    patch = cfg.vision_config.patch_size
    merge = cfg.vision_config.spatial_merge_size
    rows, grids, frames = [], [], []

    def text(ids, tt, n):
        ids += torch.randint(40, 200, (n,), generator=g).tolist()
        tt += [0] * n

    for before, videos, after in samples:
        ids, tt = [], []
        text(ids, tt, before)
        for s, h, w in videos:
            t = (s + 1) // 2
            grid = (t, h // patch, w // patch)
            per = (grid[1] // merge) * (grid[2] // merge)
            blocks = [(3, per)] * t if family == "qwen3" else [(0, t * per)]
            for stamp, n in blocks:
                text(ids, tt, stamp)
                ids += [vs] + [vid] * n + [ve]
                tt += [0] + [2] * n + [0]
            text(ids, tt, 2)
            grids.append(grid)
            frames.append(torch.rand(s, 3, h, w, generator=g))
        text(ids, tt, after)
        rows.append((ids, tt))
    length = max(len(r[0]) for r in rows)
    pad = cfg.text_config.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(i)) + i for i, _ in rows])
    mm = torch.tensor([[0] * (length - len(t)) + t for _, t in rows])
    mask = torch.tensor([[0] * (length - len(i)) + [1] * len(i) for i, _ in rows])
    grid_t = torch.tensor(grids)
    n_patches = int(grid_t.prod(-1).sum())
    pixels = torch.randn(n_patches, 3 * 2 * patch * patch, generator=g)
    kwargs = {"input_ids": input_ids, "attention_mask": mask, "mm_token_type_ids": mm,
              "pixel_values_videos": pixels, "video_grid_thw": grid_t}
    if family == "qwen2_5":
        kwargs["second_per_grid_ts"] = torch.tensor([1.0, 2.0, 1.0][: len(grids)])
    return kwargs, frames


class Recorder:
    """Records the keyword arguments the text decoder receives (``inputs_embeds``, ``position_ids``)."""

    def __init__(self, module):
        self.calls: list[dict] = []
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls.append({k: v for k, v in kwargs.items() if k in ("inputs_embeds", "position_ids")})

    def remove(self):
        self.handle.remove()


def count_calls(module) -> list[int]:
    """A one-element list counting forward calls of ``module``."""
    counter = [0]

    def hook(*_):
        counter[0] += 1

    module.register_forward_pre_hook(hook)
    return counter


def save_tiny_spatial_mllm(out, *, connector="add", seed: int = 0, **compose_kwargs):
    """A tiny Spatial-MLLM checkpoint directory with its processor (``save_pretrained``): tiny Qwen2.5-VL base
    saved next to it (``<out>_base``), tiny VGGT, a fresh connector (seed ``seed``)."""
    from posevlm.models.spatial_mllm import SpatialMLLM

    out = Path(out)
    base = tiny_models.save_tiny_qwen2_5_vl(out.parent / f"{out.name}_base", seed=seed)
    model = SpatialMLLM.compose(str(base), tiny_vggt(seed), connector, seed=seed, processor=True,
                                local_files_only=True, device="cpu", **compose_kwargs)
    model.save_pretrained(out)
    return out


def save_tiny_vlm2(out, *, connector=None, seed: int = 0, **stage):
    """A tiny VLM² checkpoint directory with its processor: tiny Qwen2.5-VL base saved next to it (``<out>_base``),
    tiny VGGT with camera and point heads, a random (not zero-initialised) stage with 4 heads and ``stage``
    overrides, so every module changes the answer."""
    from posevlm.models.vlm2 import compose

    out = Path(out)
    base = tiny_models.save_tiny_qwen2_5_vl(out.parent / f"{out.name}_base", seed=seed)
    model = compose(str(base), tiny_vggt(seed, heads=("camera", "point")), connector,
                    vlm2={"num_heads": 4, "zero_init": False, **stage}, seed=seed, processor=True,
                    local_files_only=True, device="cpu")
    model.save_pretrained(out)
    return out
