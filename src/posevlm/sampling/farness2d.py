"""Legacy 2-D "farness" selection (spec §3.4, the research code's ``efficient`` sampler).

**A lossy heuristic, kept only to reproduce old runs ("effi_hybrid").** Each pool frame becomes one
2-D point: its translation and rotation farness from pool frame 0, so two frames at the same
distance and angle from frame 0 on opposite sides of the room collapse onto the same point. Prefer
:func:`posevlm.sampling.pose_fps.select_pose_fps` for new work.

Per frame i (P frames, rotations re-orthogonalised first):

* ``f_t(i) = ||t_i - t_0||`` of the given matrices' translation column; ``f_r(i)`` = angle of
  ``R_0^T R_i``. For w2c input whose world is camera 0 (VGGT) ``f_t`` is the camera-centre distance
  to frame 0, so c2w input and such w2c input give the same points (and picks).
* normalised over all P frames: ``std_norm`` divides each axis by its population std,
  ``max_norm`` by its max (an axis whose std / max is <= 1e-6 is left as is); ``p_i = (f̂_t, f̂_r)``,
  ``s_i = ||p_i||`` (the "diagonal score").

Modes: ``grid`` (one point per cell of a ``ceil(sqrt(int(grid_density k)))``-square grid over the
candidates' bounding box, cells ranked by mean s, highest first, stable; the point nearest the cell
centre, or the largest s if ``diagonal_priority > 0.5``; missing picks filled by descending s),
``fps_2d`` (farthest-point selection in the plane, score ``(1 - λ) mind + λ s`` with
``λ = diagonal_priority``) and ``hybrid`` (grid down to ``min(3k, P)`` candidates, then fps_2d on
them; the default). Every tie goes where the reference's Python loops sent it (documented inline).
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np
import torch

from posevlm.errors import ConfigError
from posevlm.geometry import project_to_so3, rotation_angle
from posevlm.sampling.pose_fps import _choice, poses_arg
from posevlm.sampling.selection import SamplerSpec, Selection
from posevlm.sampling.uniform import _count

__all__ = ["Farness2DMode", "select_farness2d"]

Farness2DMode = Literal["grid", "hybrid", "fps_2d"]


def _farness_points(w2c: torch.Tensor, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) normalised (translation, rotation) farness from frame 0 and (P,) scores s = ||p||."""
    rot = project_to_so3(w2c[:, :3, :3])
    t = w2c[:, :3, 3]
    f_t = torch.linalg.vector_norm(t - t[0], dim=-1).numpy()
    f_r = rotation_angle(rot[0].T @ rot).numpy()
    axes = []
    for f in (f_t, f_r):
        scale = np.std(f) if normalization == "std_norm" else np.max(f)
        axes.append(f / scale if scale > 1e-6 else f)
    points = np.column_stack(axes)
    return points, np.linalg.norm(points, axis=1)


def _grid(points: np.ndarray, s: np.ndarray, k: int, valid: np.ndarray, grid_density: float,
          diagonal_priority: float) -> list[int]:
    """Reference ``_grid_sampling``: k pool indices in cell-rank order."""
    size = int(np.ceil(np.sqrt(int(grid_density * k))))
    pv = points[valid]
    mins = pv.min(axis=0)
    ranges = pv.max(axis=0) - mins
    ranges = np.where(ranges < 1e-6, 1.0, ranges)
    cell_xy = np.clip(((pv - mins) / ranges * (size - 1e-6)).astype(np.int64), 0, size - 1)
    cell = cell_xy[:, 0] * size + cell_xy[:, 1]
    # cells in first-appearance order (the reference's dict insertion order); members in pool order
    _, first = np.unique(cell, return_index=True)
    cells = cell[np.sort(first)]
    members = [valid[cell == c] for c in cells]
    means = np.array([np.mean(s[m]) for m in members])
    ranked = np.argsort(-means, kind="stable")  # == sorted(..., reverse=True): ties keep insertion order
    selected: list[int] = []
    for c in ranked[:k]:
        m = members[c]
        if diagonal_priority > 0.5:
            selected.append(int(m[np.argmax(s[m])]))
        else:
            center = np.array(divmod(int(cells[c]), size)) + 0.5
            dist = np.linalg.norm((points[m] - mins) / ranges * size - center, axis=1)
            selected.append(int(m[np.argmin(dist)]))
    if len(selected) < k:  # fewer non-empty cells than k: descending s, stable over pool order
        rest = valid[~np.isin(valid, selected)]
        selected += rest[np.argsort(-s[rest], kind="stable")][: k - len(selected)].tolist()
    return selected[:k]


def _fps_2d(points: np.ndarray, s: np.ndarray, k: int, candidates: list[int], diagonal_priority: float,
            start: str) -> list[int]:
    """Reference ``_fps_2d_sampling`` over ``candidates`` (in the order given)."""
    if len(candidates) <= k:
        return list(candidates)
    cand = np.asarray(candidates, dtype=np.int64)
    if start == "farthest":
        first = int(cand[np.argmax(s[cand])])  # first maximum in candidate order
    elif start == "medoid":
        pair = np.linalg.norm(points[cand][:, None, :] - points[cand][None, :, :], axis=-1)
        first = int(cand[np.argmin(np.cumsum(pair, axis=1)[:, -1])])  # sequential sums, as the loop
    else:
        first = int(cand[0])
    selected = [first]
    remaining = np.zeros(points.shape[0], dtype=bool)
    remaining[cand] = True
    remaining[first] = False
    mind = np.full(points.shape[0], np.inf)
    mind[remaining] = np.linalg.norm(points[remaining] - points[first], axis=1)
    lam = diagonal_priority
    for _ in range(k - 1):
        score = np.full(points.shape[0], -np.inf)
        score[remaining] = (1 - lam) * mind[remaining] + lam * s[remaining]
        j = int(np.argmax(score))  # over pool indices: the lowest pool index wins ties
        selected.append(j)
        remaining[j] = False
        mind[remaining] = np.minimum(mind[remaining], np.linalg.norm(points[remaining] - points[j], axis=1))
    return selected


def select_farness2d(
    w2c_opencv,
    k: int,
    *,
    mode: Farness2DMode = "hybrid",
    normalization: Literal["std_norm", "max_norm"] = "std_norm",
    start: Literal["farthest", "medoid", "first"] = "farthest",
    diagonal_priority: float = 0.0,
    grid_density: float = 1.5,
    skip_first_frame: bool = False,
) -> Selection:
    """Legacy 2-D farness selection (lossy; reproduces the "efficient" runs). See module docstring.

    Args:
        w2c_opencv: (P, 4, 4) poses; the research code passed raw VGGT w2c (world = camera 0), GT runs
            passed c2w. Only the translation column and rotations are used (no inversion).
        k: 1 <= k <= P; ``k == P`` returns every frame (even with ``skip_first_frame``, as the reference).
        mode: ``"grid"``, ``"hybrid"`` or ``"fps_2d"``.
        normalization: ``"std_norm"`` (function default) or ``"max_norm"`` (HPC script default).
        start: fps_2d start: ``"farthest"`` (largest s), ``"medoid"`` (least summed 2-D distance) or
            ``"first"`` (first candidate: pool index 0, or in hybrid the top-ranked grid cell's pick).
        diagonal_priority: λ; keep 0. Old runs used up to 1.2 (out of the documented [0, 1]).
        grid_density: grid cells = int(grid_density * k).
        skip_first_frame: drop pool index 0 from the candidates (normalisation still uses all frames).
    Returns:
        ``Selection`` (``selection_order`` = the reference's return order). ``stats``: the options,
        ``n_candidates`` (hybrid), and ``min_distance_2d_mean`` / ``_max`` (non-selected frames) /
        ``_std`` (all frames) of each frame's 2-D distance to its nearest pick (spec §8.1).
    """
    w2c = poses_arg(w2c_opencv)
    n = int(w2c.shape[0])
    k = _count(k, "k", 1)
    mode = _choice(mode, "mode", ("grid", "hybrid", "fps_2d"))  # type: ignore[assignment]
    normalization = _choice(normalization, "normalization",  # type: ignore[assignment]
                            ("std_norm", "max_norm"))
    start = _choice(start, "start", ("farthest", "medoid", "first"))  # type: ignore[assignment]
    problems = []
    if k > n:
        problems.append(f"k={k} exceeds the pool size P={n}")
    if not (isinstance(diagonal_priority, numbers.Real) and math.isfinite(diagonal_priority)):
        problems.append(f"diagonal_priority must be a finite number; got {diagonal_priority!r}")
    if not (isinstance(grid_density, numbers.Real) and math.isfinite(grid_density)
            and int(grid_density * k) >= 1):
        problems.append(f"grid_density must be finite with int(grid_density * k) >= 1; got {grid_density!r}")
    if problems:
        raise ConfigError("invalid farness2d call: " + "; ".join(problems), field="farness2d")
    stats: dict = {"mode": mode, "normalization": normalization, "start": start,
                   "diagonal_priority": float(diagonal_priority), "grid_density": float(grid_density),
                   "skip_first_frame": bool(skip_first_frame)}
    points, s = _farness_points(w2c, normalization)
    valid = np.arange(1 if skip_first_frame else 0, n, dtype=np.int64)
    if k == n:
        order = list(range(n))
    elif mode == "grid":
        order = _grid(points, s, k, valid, grid_density, diagonal_priority)
    elif mode == "fps_2d":
        order = _fps_2d(points, s, k, valid.tolist(), diagonal_priority, start)
    else:
        cands = _grid(points, s, min(int(3 * k), valid.size), valid, grid_density, diagonal_priority)
        stats["n_candidates"] = len(cands)
        order = _fps_2d(points, s, k, cands, diagonal_priority, start)
    mind = np.linalg.norm(points[:, None, :] - points[order][None, :, :], axis=-1).min(axis=1)
    rest = np.ones(n, dtype=bool)
    rest[order] = False
    stats.update(min_distance_2d_mean=float(mind[rest].mean()) if rest.any() else 0.0,
                 min_distance_2d_max=float(mind[rest].max()) if rest.any() else 0.0,
                 min_distance_2d_std=float(mind.std()))
    return Selection.from_order(np.asarray(order, dtype=np.int64), stats, n_returned_before_fill=len(order))


def _reference_farness2d(poses: np.ndarray, k: int, *, mode: str = "hybrid", normalization: str = "std_norm",
                         start: str = "farthest", diagonal_priority: float = 0.0, grid_density: float = 1.5,
                         skip_first_frame: bool = False) -> list[int]:
    """The research code's ``efficient_pose_sampling``, transcribed with its per-frame loops, dict grid
    and Python sorts (angles via :func:`rotation_angle` instead of scipy's rotvec). Slow; for tests."""
    poses = np.asarray(poses, dtype=np.float64)
    n = poses.shape[0]
    if k == n:
        return list(range(n))
    rots = [project_to_so3(torch.from_numpy(p[:3, :3])).numpy() for p in poses]
    f_t = [float(np.linalg.norm(p[:3, 3] - poses[0, :3, 3])) for p in poses]
    f_r = [float(rotation_angle(torch.from_numpy(rots[0].T @ r))) for r in rots]
    points, s = _normalize_like_reference(f_t, f_r, normalization)
    valid = list(range(1 if skip_first_frame else 0, n))

    def grid(num: int) -> list[int]:
        size = int(np.ceil(np.sqrt(int(grid_density * num))))
        mins, maxs = points[valid].min(axis=0), points[valid].max(axis=0)
        ranges = np.where(maxs - mins < 1e-6, 1.0, maxs - mins)
        cells: dict[tuple[int, int], list[int]] = {}
        for i in valid:
            gx = min(max(int((points[i][0] - mins[0]) / ranges[0] * (size - 1e-6)), 0), size - 1)
            gy = min(max(int((points[i][1] - mins[1]) / ranges[1] * (size - 1e-6)), 0), size - 1)
            cells.setdefault((gx, gy), []).append(i)
        score = {c: np.mean([s[i] for i in ids]) for c, ids in cells.items()}
        chosen: list[int] = []
        for c in sorted(cells, key=lambda c: score[c], reverse=True)[:num]:
            ids = cells[c]
            if diagonal_priority > 0.5:
                chosen.append(max(ids, key=lambda i: s[i]))
            else:
                d = [np.linalg.norm((points[i] - mins) / ranges * size - (np.array(c) + 0.5)) for i in ids]
                chosen.append(ids[int(np.argmin(d))])
        rest = sorted([i for i in valid if i not in chosen], key=lambda i: s[i], reverse=True)
        return (chosen + rest)[:num]

    def fps(cands: list[int]) -> list[int]:
        if len(cands) <= k:
            return cands
        if start == "farthest":
            first = max(cands, key=lambda i: s[i])
        elif start == "medoid":
            sums = [0.0] * len(cands)
            for a, i in enumerate(cands):
                for j in cands:
                    sums[a] += float(np.linalg.norm(points[i] - points[j]))
            first = cands[int(np.argmin(sums))]
        else:
            first = cands[0]
        chosen, remaining = [first], set(cands) - {first}
        mind = np.full(n, np.inf)
        for i in remaining:
            mind[i] = np.linalg.norm(points[i] - points[first])
        for _ in range(k - 1):
            score = np.full(n, -np.inf)
            for i in remaining:
                score[i] = (1 - diagonal_priority) * mind[i] + diagonal_priority * s[i]
            j = int(np.argmax(score))
            chosen.append(j)
            remaining.remove(j)
            for i in remaining:
                mind[i] = min(mind[i], np.linalg.norm(points[i] - points[j]))
        return chosen

    if mode == "grid":
        return grid(k)
    if mode == "fps_2d":
        return fps(valid)
    return fps(grid(min(int(3 * k), len(valid))))


def _normalize_like_reference(f_t: list[float], f_r: list[float],
                              normalization: str) -> tuple[np.ndarray, np.ndarray]:
    axes = []
    for f in (np.array(f_t), np.array(f_r)):
        scale = np.std(f) if normalization == "std_norm" else np.max(f)
        axes.append(f / scale if scale > 1e-6 else f)
    points = np.column_stack(axes)
    return points, np.linalg.norm(points, axis=1)


def _select(pool, k: int, *, seed: int, **params) -> Selection:
    return select_farness2d(pool.w2c_opencv, k, **params)


SAMPLER = SamplerSpec(
    "farness2d", _select,
    {"mode": "hybrid", "normalization": "std_norm", "start": "farthest", "diagonal_priority": 0.0,
     "grid_density": 1.5, "skip_first_frame": False},
    needs=("cameras",),
    description="the reference's 'efficient' grid / hybrid / fps_2d on (distance, angle) to frame 0 (legacy runs)",
)
