"""Farthest-point selection over camera poses in SE(3) (spec §3.3, the research code's ``fps``).

Notation: P pool frames, k selected, D (P, P) the combined pose distance (never materialised).

* ``d_t(i, j)``: ``distance="center"`` (default) = camera-centre distance ``||c_i - c_j||`` with
  ``c = -R^T t``; ``"legacy_w2c_translation"`` = ``||t_i - t_j||`` of the given matrices'
  translation column, which for VGGT w2c input is ``||R_i c_i - R_j c_j||`` (mixes rotation into the
  "translation" term, failure F10). Use legacy only to reproduce the research runs.
* ``d_r(i, j)``: geodesic angle of ``R_i^T R_j`` in radians, the same for w2c and c2w input,
  computed as the reference does, ``arccos(clip((tr(R_i^T R_j) - 1) / 2, -1, 1))``: near-identical
  rotations get the same ~1e-8 rad rounding noise as in the research runs (the geometry package's
  ``atan2`` form is exact there but costs twice as much; FPS compares large distances only).
* ``weighting="max_norm"``: ``D = d_t / max d_t + d_r / max d_r`` (a term whose max is 0 is left as
  is, as the reference does). ``"std_norm"`` (the research ``data_driven``): ``D = a d_t + b d_r``,
  ``a ∝ 1/σ_t``, ``b ∝ 1/σ_r``, ``a + b = 2``, σ the population std over pairs i < j; ``a = b = 1``
  if either σ is 0. Up to a global scale this is ``d_t/σ_t + d_r/σ_r``.

Fast path: one pass over the upper triangle in row blocks gives the maxima, σ and the row sums for
the medoid; each greedy step then computes one row of D (O(P)), so memory is O(P · block) and time
O(P² + kP). :func:`_reference_fps` is the research code's O(P²) loop transcription, kept for tests.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import ConfigError, ConventionError, ShapeError
from posevlm.geometry import project_to_so3
from posevlm.geometry._checks import se3_arg
from posevlm.sampling.selection import SamplerSpec, Selection
from posevlm.sampling.uniform import _count

__all__ = ["Distance", "Weighting", "Start", "select_pose_fps"]

Distance = Literal["center", "legacy_w2c_translation"]
Weighting = Literal["max_norm", "std_norm"]
Start = Literal["medoid", "first", "random"]

#: Rows of D per block in the pairwise pass: keeps temporaries cache-sized (see geometry.rotation).
ROW_BLOCK = 128


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}",
                          field=name, value=value)
    return str(value)


def poses_arg(w2c_opencv: Tensor | np.ndarray, name: str = "w2c_opencv") -> Tensor:
    """Validate (P, 4, 4) or (P, 3, 4) finite poses; return them as a float64 (P, 4, 4) tensor."""
    m = se3_arg(w2c_opencv, name)
    if m.dim() != 3 or m.shape[0] < 1:
        raise ShapeError(f"{name} must have shape (P, 4, 4) with P >= 1; got {tuple(m.shape)}",
                         name=name, shape=tuple(m.shape))
    m = m.detach().to(device="cpu", dtype=torch.float64)
    bad = (~torch.isfinite(m)).flatten(1).any(1).nonzero().flatten().tolist()
    if bad:
        raise ConventionError(f"{name}: {len(bad)} pose(s) contain NaN or inf (pool indices {bad[:8]}). "
                              "Drop those frames from the pool first.")
    return m


def _nearest_rotations(m: Tensor) -> Tensor:
    """(P, 3, 3) -> nearest rotations, as :func:`project_to_so3` (SVD) but ~20x faster on near-rotations.

    Newton's polar iteration ``R <- (R + R^-T) / 2`` (``R^-T`` from column cross products) converges
    quadratically to the orthogonal polar factor ``U V^T``; stopping once a step moves < 1e-12 leaves
    only rounding error. Frames with det <= 0 (where the nearest rotation is not the polar factor)
    and non-converging input go through the SVD.
    """
    def step(r: Tensor) -> tuple[Tensor, Tensor]:
        a, b, c = r[..., 0], r[..., 1], r[..., 2]
        cof = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], -1)
        det = (a * cof[..., 0]).sum(-1)
        return 0.5 * (r + cof / det[..., None, None]), det

    _, det0 = step(m)
    good = det0 > 0
    r = m[good]
    for _ in range(40):
        nxt, _ = step(r)
        moved = float((nxt - r).abs().amax()) if r.numel() else 0.0
        r = nxt
        if moved < 1e-12:
            break
    else:
        return project_to_so3(m)
    if bool(good.all()):
        return r
    out = project_to_so3(m)
    out[good] = r
    return out


class _PoseSpace:
    """Prepared per-frame data so that any block of ``d_t`` and ``d_r`` is a few small products."""

    def __init__(self, w2c: Tensor, distance: str, reorth: bool):
        rot = _nearest_rotations(w2c[:, :3, :3]) if reorth else w2c[:, :3, :3]
        t = w2c[:, :3, 3]
        pos = t if distance == "legacy_w2c_translation" else -(rot.transpose(-1, -2) @ t[..., None])[..., 0]
        self.n = int(w2c.shape[0])
        self.pos = pos.contiguous()
        self.pos_t = pos.T.contiguous()  # (3, P): per-axis rows for the broadcast differences below
        self.flat = rot.transpose(-1, -2).reshape(-1, 9).contiguous()  # tr(R_i^T R_j) = flat_i . flat_j

    def pair(self, rows: slice, cols: slice) -> tuple[Tensor, Tensor]:
        """(d_t, d_r) between frames ``rows`` and ``cols``: two (R, C) float64 tensors."""
        # exact differences per axis (no |a|^2 + |b|^2 - 2ab shortcut); cdist's exact mode is ~10x slower
        d_t = (self.pos[rows, 0:1] - self.pos_t[0:1, cols]).square_()
        for a in (1, 2):
            d_t.add_((self.pos[rows, a : a + 1] - self.pos_t[a : a + 1, cols]).square_())
        d_r = (self.flat[rows] @ self.flat[cols].T).sub_(1).mul_(0.5).clamp_(-1.0, 1.0).acos_()
        return d_t.sqrt_(), d_r

    def row(self, i: int) -> tuple[Tensor, Tensor]:
        """(d_t, d_r) from frame i to every frame, (P,) each. Elementwise only: even a (9,) x (9, P)
        BLAS call is multi-threaded and stalls for milliseconds when the cores are busy."""
        d_t = (self.pos_t[0] - self.pos[i, 0]).square_()
        for a in (1, 2):
            d_t.add_((self.pos_t[a] - self.pos[i, a]).square_())
        d_r = (self.flat * self.flat[i]).sum(1).sub_(1).mul_(0.5).clamp_(-1.0, 1.0).acos_()
        return d_t.sqrt_(), d_r


class _Moments:
    """Population variance of streamed blocks: per-block sums, Chan et al.'s pairwise merge."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, block: Tensor, n_block: int) -> None:
        """``block`` holds the n_block values, any other entries exactly 0."""
        if n_block == 0:
            return
        mean_b = float(block.sum()) / n_block
        m2_b = max(float(torch.linalg.vector_norm(block)) ** 2 - n_block * mean_b * mean_b, 0.0)
        n = self.n + n_block
        delta = mean_b - self.mean
        self.mean += delta * n_block / n
        self.m2 += m2_b + delta * delta * self.n * n_block / n
        self.n = n

    def var(self) -> float:
        return self.m2 / self.n if self.n else 0.0


class _Distance:
    """D = combination of d_t and d_r with the weights of ``weighting``; rows on demand."""

    def __init__(self, space: _PoseSpace, weighting: str, need_rowsum: bool):
        self.space, self.weighting = space, weighting
        n = space.n
        max_t = max_r = 0.0
        rowsum_t = torch.zeros(n, dtype=torch.float64)
        rowsum_r = torch.zeros(n, dtype=torch.float64)
        mom_t, mom_r = _Moments(), _Moments()
        for s in range(0, n, ROW_BLOCK):  # strict upper triangle i < j, by row blocks
            e = min(s + ROW_BLOCK, n)
            b = e - s
            d_t, d_r = space.pair(slice(s, e), slice(s, n))
            keep = torch.ones(b, b, dtype=torch.bool).triu_(1)
            d_t[:, :b].masked_fill_(~keep, 0.0)
            d_r[:, :b].masked_fill_(~keep, 0.0)
            max_t, max_r = max(max_t, float(d_t.max())), max(max_r, float(d_r.max()))
            if need_rowsum:
                rowsum_t[s:e] += d_t.sum(1)
                rowsum_t[s:] += d_t.sum(0)
                rowsum_r[s:e] += d_r.sum(1)
                rowsum_r[s:] += d_r.sum(0)
            if weighting == "std_norm":
                n_block = b * (n - s) - b * (b + 1) // 2
                mom_t.add(d_t, n_block)
                mom_r.add(d_r, n_block)
        self.max_t, self.max_r = max_t, max_r
        if weighting == "max_norm":
            self.alpha = 1.0 / max_t if max_t > 0 else 1.0
            self.beta = 1.0 / max_r if max_r > 0 else 1.0
        else:
            var_t, var_r = mom_t.var(), mom_r.var()
            if var_t > 0 and var_r > 0:
                a, b_ = 1.0 / math.sqrt(var_t), 1.0 / math.sqrt(var_r)
                total = a + b_
                self.alpha, self.beta = 2.0 * a / total, 2.0 * b_ / total
            else:
                self.alpha, self.beta = 1.0, 1.0
        self.rowsum = self.combine(rowsum_t, rowsum_r) if need_rowsum else None

    def combine(self, d_t: Tensor, d_r: Tensor) -> Tensor:
        if self.weighting == "max_norm":  # divide, as the reference does, rather than multiply by 1/max
            t = d_t / self.max_t if self.max_t > 0 else d_t
            r = d_r / self.max_r if self.max_r > 0 else d_r
            return t + r
        return self.alpha * d_t + self.beta * d_r

    def row(self, i: int) -> Tensor:
        return self.combine(*self.space.row(i))


def _greedy(dist: _Distance, initial: Sequence[int], k: int) -> tuple[list[int], Tensor]:
    """Extend ``initial`` (non-empty) to k frames by farthest-point selection.

    Returns the selection order and each pool frame's distance to its nearest selected frame
    (exactly 0 for selected frames). Ties go to the lowest pool index (``argmax`` takes the first).
    """
    order = [int(i) for i in initial]
    chosen = torch.zeros(dist.space.n, dtype=torch.bool)
    chosen[order] = True
    mind = dist.row(order[0])
    for i in order[1:]:
        torch.minimum(mind, dist.row(i), out=mind)
    while len(order) < k:
        j = int(torch.argmax(mind.masked_fill(chosen, -1.0)))  # distances are >= 0; strict > in the reference
        order.append(j)
        chosen[j] = True
        torch.minimum(mind, dist.row(j), out=mind)
    mind.masked_fill_(chosen, 0.0)
    return order, mind


def min_distance_stats(mind: Tensor, chosen: Sequence[int]) -> dict[str, float]:
    """Spec §8.1: mean and max over non-selected frames, std over all frames (selected = 0)."""
    rest = torch.ones(mind.shape[0], dtype=torch.bool)
    rest[list(chosen)] = False
    others = mind[rest]
    return {
        "min_distance_mean": float(others.mean()) if others.numel() else 0.0,
        "min_distance_max": float(others.max()) if others.numel() else 0.0,
        "min_distance_std": float(mind.std(correction=0)),
    }


def fps_fill(w2c_opencv: Tensor | np.ndarray, initial: Sequence[int],
             k: int) -> tuple[list[int], dict[str, float]]:
    """Continue a selection to k frames by centre-distance, max-norm FPS (medoid start if empty).

    Used by other selectors' ``fill="pose_fps"`` policy. Returns the full order and min-distance stats.
    """
    w2c = poses_arg(w2c_opencv)
    dist = _Distance(_PoseSpace(w2c, "center", True), "max_norm", need_rowsum=not initial)
    start = list(initial) if initial else [int(torch.argmin(dist.rowsum))]  # type: ignore[arg-type]
    order, mind = _greedy(dist, start, k)
    return order, min_distance_stats(mind, order)


def select_pose_fps(
    w2c_opencv: Tensor | np.ndarray,
    k: int,
    *,
    distance: Distance = "center",
    weighting: Weighting = "max_norm",
    start: Start = "medoid",
    seed: int | None = None,
    reorth: bool = True,
) -> Selection:
    """Farthest-point selection of k pool frames over camera poses.

    Args:
        w2c_opencv: (P, 4, 4) (or (P, 3, 4)) world-to-camera, OpenCV axes; tensor or array. With
            ``distance="center"`` any rigid poses work and the result does not depend on the world
            frame; the rotation term is the same for c2w input.
        k: number of frames, 1 <= k <= P; ``k == P`` returns every frame (in FPS order).
        distance: ``"center"`` or ``"legacy_w2c_translation"`` (see module docstring).
        weighting: ``"max_norm"`` or ``"std_norm"`` (the research ``data_driven``).
        start: ``"medoid"`` (argmin of the row sums of D, lowest index on ties), ``"first"`` (pool
            index 0) or ``"random"`` (``np.random.default_rng(seed).integers(P)``; needs ``seed``).
        seed: used only by ``start="random"``.
        reorth: replace each rotation by the nearest rotation (what the research code's SVD step does)
            first; it always did.
    Returns:
        ``Selection``; ``selection_order`` is the pick order. ``stats``: ``distance``,
        ``weighting``, ``start``, ``start_index``, ``alpha`` / ``beta`` (coefficients on raw d_t /
        d_r in D: 1/max for ``max_norm``), ``min_distance_mean`` / ``_max`` (over non-selected
        frames) and ``min_distance_std`` (over all frames), each frame's D to its nearest selected
        frame as spec §8.1.
    Raises:
        ShapeError: poses not (P, 4, 4). ConventionError: NaN/inf poses. ConfigError: k outside
        [1, P], an unknown option, or ``start="random"`` without a seed.
    """
    w2c = poses_arg(w2c_opencv)
    n = int(w2c.shape[0])
    k = _count(k, "k", 1)
    if k > n:
        raise ConfigError(f"k={k} exceeds the pool size P={n}; pass k <= P (or a larger pool)", field="k",
                          value=k)
    distance = _choice(distance, "distance", ("center", "legacy_w2c_translation"))  # type: ignore[assignment]
    weighting = _choice(weighting, "weighting", ("max_norm", "std_norm"))  # type: ignore[assignment]
    start = _choice(start, "start", ("medoid", "first", "random"))  # type: ignore[assignment]
    bad_seed = seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
    if start == "random" and bad_seed:
        raise ConfigError(f"start='random' needs an int seed for reproducibility; got seed={seed!r}",
                          field="seed", value=seed)
    dist = _Distance(_PoseSpace(w2c, distance, bool(reorth)), weighting, need_rowsum=start == "medoid")
    if start == "medoid":
        first = int(torch.argmin(dist.rowsum))  # type: ignore[arg-type]
    elif start == "first":
        first = 0
    else:
        first = int(np.random.default_rng(int(seed)).integers(n))  # type: ignore[arg-type]
    order, mind = _greedy(dist, [first], k)
    stats = {"distance": distance, "weighting": weighting, "start": start, "start_index": first,
             "alpha": dist.alpha, "beta": dist.beta, **min_distance_stats(mind, order)}
    if start == "random":
        stats["seed"] = int(seed)  # type: ignore[arg-type]
    return Selection.from_order(np.asarray(order, dtype=np.int64), stats)


def _reference_fps(w2c_opencv: np.ndarray, k: int, *, distance: str = "center", weighting: str = "max_norm",
                   start: str = "medoid", seed: int | None = None, reorth: bool = True) -> list[int]:
    """The research code's FPS (fork ``pose_fps_sampling.py``), transcribed loop for loop. Slow: O(P²)
    Python. ``center`` replaces ``t`` by ``-R^T t``; ``random`` uses the seeded generator of the fast path."""
    poses = np.asarray(w2c_opencv, dtype=np.float64)
    n = poses.shape[0]
    rotations = poses[:, :3, :3].copy()
    if reorth:
        for i in range(n):
            u, _, vt = np.linalg.svd(rotations[i])
            r = u @ vt
            if np.linalg.det(r) < 0:
                u[:, -1] *= -1
                r = u @ vt
            rotations[i] = r
    t = poses[:, :3, 3]
    pos = t if distance == "legacy_w2c_translation" else np.stack([-rotations[i].T @ t[i] for i in range(n)])
    trans = np.zeros((n, n))
    rot = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            trans[i, j] = trans[j, i] = np.linalg.norm(pos[i] - pos[j])
            cos = np.clip((np.trace(rotations[i].T @ rotations[j]) - 1) / 2, -1.0, 1.0)
            rot[i, j] = rot[j, i] = np.arccos(cos)
    if weighting == "max_norm":
        tm, rm = trans.max(), rot.max()
        dmat = (trans / tm if tm > 0 else trans) + (rot / rm if rm > 0 else rot)
    else:
        iu = np.triu_indices(n, k=1)
        tv, rv = np.var(trans[iu]), np.var(rot[iu])
        if tv > 0 and rv > 0:
            a, b = 1.0 / np.sqrt(tv), 1.0 / np.sqrt(rv)
            a, b = 2.0 * a / (a + b), 2.0 * b / (a + b)
        else:
            a, b = 1.0, 1.0
        dmat = a * trans + b * rot
    if start == "first":
        first = 0
    elif start == "random":
        first = int(np.random.default_rng(seed).integers(n))
    else:
        first = int(np.argmin(dmat.sum(axis=1)))
    selected = [first]
    remaining = sorted(set(range(n)) - {first})
    mind = dmat[first].copy()
    for _ in range(k - 1):
        best, best_j = -1.0, -1
        for j in remaining:  # ascending, strict >: lowest index wins ties
            if mind[j] > best:
                best, best_j = mind[j], j
        selected.append(best_j)
        remaining.remove(best_j)
        for j in remaining:
            mind[j] = min(mind[j], dmat[best_j, j])
    return selected


def _select(pool, k: int, *, seed: int, **params) -> Selection:
    return select_pose_fps(pool.w2c_opencv, k, seed=seed, **params)


SAMPLER = SamplerSpec(
    "pose_fps", _select, {"distance": "center", "weighting": "max_norm", "start": "medoid", "reorth": True},
    needs=("cameras",),
    description="farthest-point sampling over cameras: centre distance + geodesic angle (view diversity)",
)
