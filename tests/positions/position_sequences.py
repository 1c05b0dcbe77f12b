"""Hand-built tokenised batches laid out like the Qwen processors (vision_start, pads, vision_end)."""

from __future__ import annotations

import torch

VISION_START, VISION_END, IMAGE_ID, VIDEO_ID, PAD_ID = 100, 101, 102, 103, 0
MERGE = 2


def sample(parts, *, qwen3: bool = False, timestamp_tokens: int = 3, seed: int = 0):
    """parts: list of ("text", n) | ("image", (t, h, w)) | ("video", (t, h, w)).
    Returns ids, mm_token_type_ids (lists), image grids, video grids. Qwen3 videos get a timestamp text
    before every tubelet, each tubelet wrapped in vision_start/vision_end."""
    g = torch.Generator().manual_seed(seed)
    ids, types, images, videos = [], [], [], []

    def text(n):
        ids.extend(torch.randint(1, 90, (n,), generator=g).tolist())
        types.extend([0] * n)

    def block(token, kind, n):
        ids.append(VISION_START); types.append(0)
        ids.extend([token] * n); types.extend([kind] * n)
        ids.append(VISION_END); types.append(0)

    for kind, value in parts:
        if kind == "text":
            text(value)
        elif kind == "image":
            images.append(value)
            block(IMAGE_ID, 1, value[0] * (value[1] // MERGE) * (value[2] // MERGE))
        else:
            videos.append(value)
            per_tubelet = (value[1] // MERGE) * (value[2] // MERGE)
            if qwen3:
                for _ in range(value[0]):
                    text(timestamp_tokens)
                    block(VIDEO_ID, 2, per_tubelet)
            else:
                block(VIDEO_ID, 2, value[0] * per_tubelet)
    return ids, types, images, videos


def batch(samples, *, padding: str = "left"):
    """Pad a list of ``sample`` outputs into (B, L) tensors; grids concatenated in batch order."""
    length = max(len(s[0]) for s in samples)
    ids, types, mask, images, videos = [], [], [], [], []
    for s_ids, s_types, s_images, s_videos in samples:
        pad = length - len(s_ids)
        if padding == "left":
            ids.append([PAD_ID] * pad + s_ids)
            types.append([0] * pad + s_types)
            mask.append([0] * pad + [1] * len(s_ids))
        else:
            ids.append(s_ids + [PAD_ID] * pad)
            types.append(s_types + [0] * pad)
            mask.append([1] * len(s_ids) + [0] * pad)
        images += s_images
        videos += s_videos
    as_grid = lambda g: torch.tensor(g, dtype=torch.long) if g else None  # noqa: E731
    return (torch.tensor(ids), torch.tensor(types), torch.tensor(mask), as_grid(images), as_grid(videos))
