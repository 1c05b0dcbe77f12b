"""Merge-aware pairing: make each temporal patch (two consecutive frames, temporal_patch_size = 2)
hold one viewpoint, wrapping any selector.

Policies (``PairingConfig.name``):

- ``none``: the selector picks all N frames; consecutive frames are merged as they fall.
- ``duplicate``: N/2 anchors, each repeated (a1, a1, a2, a2, ...), as Qwen pads a still image.
- ``neighbor(step, space, direction, seed)``: N/2 anchors, each with a companion ``step`` away in
  pool indices (``space="pool"``) or in frame ids (``space="frame"``), ``before``, ``after`` or
  ``random`` (seeded). Guarantee: pairs never cross or share frames, and pair t sits at positions
  (2t, 2t + 1). A companion that would leave the scan or reach the previous pair / the next anchor
  tries the other direction, then falls back to duplicating the anchor; every fallback is counted.
- ``legacy=True`` reproduces the reference code (sampling spec section 3.5) bit for bit, including its
  crossing and shared companions: first anchor forced ``after``, last forced ``before``, companions
  checked only against the adjacent anchors, then one global sort.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from posevlm.errors import ConfigError

__all__ = ["PairingConfig", "PairedFrames", "pair_frames", "anchors_needed"]

Role = Literal["anchor", "companion", "duplicate"]


@dataclass(frozen=True)
class PairingConfig:
    name: Literal["none", "neighbor", "duplicate"] = "none"
    step: int = 1
    space: Literal["pool", "frame"] = "pool"
    direction: Literal["after", "before", "random"] = "after"
    legacy: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.name not in ("none", "neighbor", "duplicate"):
            problems.append(f"name must be none, neighbor or duplicate; got {self.name!r}")
        if self.step < 1:
            problems.append(f"step must be >= 1; got {self.step}")
        if self.space not in ("pool", "frame"):
            problems.append(f"space must be pool or frame; got {self.space!r}")
        if self.direction not in ("after", "before", "random"):
            problems.append(f"direction must be after, before or random; got {self.direction!r}")
        if problems:
            raise ConfigError("invalid pairing: " + "; ".join(problems), field="pairing")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def slug(self) -> str:
        if self.name != "neighbor":
            return self.name if not self.legacy or self.name == "none" else f"{self.name}-legacy"
        d = {"after": "aft", "before": "bef", "random": "rnd"}[self.direction]
        return f"nbr-{d}-s{self.step}-{self.space}" + ("-legacy" if self.legacy else "")


@dataclass(frozen=True)
class PairedFrames:
    """N frames in model order.

    ``frame_ids`` (N,) ascending; ``pool_indices`` (N,) with -1 for a companion outside the pool;
    ``roles`` (N,) anchor / companion / duplicate; ``pair_ids`` (N,) = position // 2 (the temporal
    patch a frame falls in); ``anchor_frame_ids`` the anchors as picked; ``n_fallbacks`` companions
    that had to be replaced by a duplicate; ``directions`` the direction tried first per anchor.
    """

    frame_ids: np.ndarray
    pool_indices: np.ndarray
    roles: tuple[str, ...]
    anchor_frame_ids: np.ndarray
    n_fallbacks: int = 0
    directions: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pair_ids(self) -> np.ndarray:
        return np.arange(self.frame_ids.size, dtype=np.int64) // 2

    @property
    def duplicate_ratio(self) -> float:
        return self.roles.count("duplicate") / max(1, self.frame_ids.size // 2)


def anchors_needed(num_frames: int, config: PairingConfig) -> int:
    """How many frames the selector must pick for N output frames."""
    if config.name == "none":
        return num_frames
    if num_frames % 2:
        raise ConfigError(
            f"pairing {config.name!r} needs an even frame count (pairs of 2); got {num_frames}",
            field="num_frames",
            value=num_frames,
        )
    return num_frames // 2


def pair_frames(
    anchor_pool_indices: np.ndarray,
    pool_frame_ids: np.ndarray,
    config: PairingConfig,
    *,
    num_source_frames: int | None = None,
    seed: int = 0,
    valid_frame_ids: np.ndarray | None = None,
) -> PairedFrames:
    """Expand sorted anchor pool indices into N paired frames.

    Args:
        anchor_pool_indices: (A,) ascending pool indices chosen by a selector.
        pool_frame_ids: (P,) ascending frame ids of the pool.
        num_source_frames: number of frames in the scan (frame ids 0..n-1), required for ``space="frame"``.
        seed: seeds ``direction="random"``.
        valid_frame_ids: ``space="frame"`` only: the frame ids that exist (scans can have gaps, e.g. ScanNet
            frames dropped for invalid poses); a companion on a missing id counts as leaving the scan.
    """
    anchors = np.asarray(anchor_pool_indices, dtype=np.int64)
    pool = np.asarray(pool_frame_ids, dtype=np.int64)
    if anchors.size and (np.any(np.diff(anchors) <= 0) or anchors[0] < 0 or anchors[-1] >= pool.size):
        raise ConfigError("anchor_pool_indices must be ascending, unique and inside the pool", field="anchors")
    anchor_ids = pool[anchors]
    if config.name == "none":
        return PairedFrames(anchor_ids, anchors.copy(), ("anchor",) * anchors.size, anchor_ids)
    if config.name == "duplicate":
        return PairedFrames(np.repeat(anchor_ids, 2), np.repeat(anchors, 2),
                            ("anchor", "duplicate") * anchors.size, anchor_ids)
    if config.space == "frame" and num_source_frames is None:
        raise ConfigError("space='frame' needs num_source_frames (the scan's frame count)", field="num_source_frames")
    # work in one integer space: pool indices (space="pool") or frame ids (space="frame")
    points = anchors if config.space == "pool" else anchor_ids
    total = pool.size if config.space == "pool" else int(num_source_frames)
    rng = np.random.default_rng(seed)
    n = points.size
    if config.direction == "random":
        prefer = np.where(rng.random(n) < 0.5, -1, 1)
    else:
        prefer = np.full(n, 1 if config.direction == "after" else -1)
    exists = None
    if config.space == "frame" and valid_frame_ids is not None:
        valid = set(np.asarray(valid_frame_ids, dtype=np.int64).tolist())
        exists = valid.__contains__
    if config.legacy:
        frames_sp, roles, fallbacks = _legacy(points, prefer, config.step, total, exists)
    else:
        frames_sp, roles, fallbacks = _non_interleaving(points, prefer, config.step, total, exists)
    if config.space == "pool":
        frame_ids, pool_idx = pool[frames_sp], frames_sp
    else:
        frame_ids = frames_sp
        pos = np.searchsorted(pool, frame_ids)
        hit = (pos < pool.size) & (pool[np.minimum(pos, pool.size - 1)] == frame_ids)
        pool_idx = np.where(hit, pos, -1)
    directions = tuple("after" if p > 0 else "before" for p in prefer)
    return PairedFrames(frame_ids, pool_idx, roles, anchor_ids, fallbacks, directions)


def _non_interleaving(points: np.ndarray, prefer: np.ndarray, step: int, total: int, exists=None):
    """Pairs in disjoint, ordered intervals: companion strictly between the previous pair and the
    next anchor; preferred direction, then the other, then a duplicate."""
    out, roles, fallbacks = [], [], 0
    prev_max = -1
    n = points.size
    for i in range(n):  # at most N/2 anchors: not a hot path
        a = int(points[i])
        upper = int(points[i + 1]) if i + 1 < n else total
        for d in (int(prefer[i]), -int(prefer[i])):
            c = a + d * step
            if prev_max < c < upper and 0 <= c < total and (exists is None or exists(c)):
                pair, role = ((a, c), ("anchor", "companion")) if c > a else ((c, a), ("companion", "anchor"))
                break
        else:
            pair, role = (a, a), ("anchor", "duplicate")
            fallbacks += 1
        out.extend(pair)
        roles.extend(role)
        prev_max = max(pair)
    return np.asarray(out, dtype=np.int64), tuple(roles), fallbacks


def _legacy(points: np.ndarray, prefer: np.ndarray, step: int, total: int, exists=None):
    """The reference ``add_neighbor_frames``: forced first/last directions, checks against adjacent
    anchors only, duplicates on failure, then a global sort (companions may cross or be shared)."""
    pairs, fallbacks = [], 0
    n = points.size
    for i in range(n):
        a = int(points[i])
        d = 1 if i == 0 else (-1 if i == n - 1 else int(prefer[i]))
        c = a + d * step
        bad = c < 0 or c >= total or (d < 0 and i > 0 and c <= points[i - 1]) or (
            d > 0 and i + 1 < n and c >= points[i + 1]) or (exists is not None and not exists(c))
        if bad:
            pairs.append((a, a, "anchor", "duplicate"))
            fallbacks += 1
        else:
            pairs.append((a, c, "anchor", "companion"))
    flat = [(v, r) for a, c, ra, rc in pairs for v, r in ((a, ra), (c, rc))]
    flat.sort(key=lambda vr: vr[0])  # stable: equal frames keep anchor before duplicate
    return np.asarray([v for v, _ in flat], dtype=np.int64), tuple(r for _, r in flat), fallbacks
