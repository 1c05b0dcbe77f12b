"""Space-aware selection: greedy maximum coverage of voxelised point maps (spec §3.2, upstream "SA").

Point maps (or depth + cameras) -> :class:`VoxelSets` (each pool frame's set of occupied voxels)
-> :func:`select_voxel_coverage` (greedy maximum coverage, then a fill policy so exactly k come back).

Shapes: P pool frames, H x W pixels, V voxels in the union, nnz = sum of per-frame set sizes.

Voxelisation, bit for bit as the research code (float arithmetic in the points' dtype, float32 for
VGGT; the confidence threshold and floor are cast to the confidence dtype, as torch compares)::

    tau   = np.percentile(C over all P*H*W pixels, conf_percentile)       # numpy's linear rule
    valid = (C >= tau) & (C > conf_floor)
    v     = min(box extent of valid points) * fl(1 / voxels_on_short_axis)
    voxel = floor((x - box_min) / v)                                       # per valid point

``v`` uses the reciprocal because torch evaluates ``tensor / 20`` on CUDA, where the reference ran,
as a multiplication by ``1/20`` (ATen ``div_true_kernel_cuda``); it can differ from ``extent / 20`` in
the last bit. The percentile is computed without sorting all pixels but equals ``np.percentile``.

``PARITY`` (defaults + ``fill="none"``) reproduces the reference selection, including returning
fewer than k frames once everything is covered (failure F9); the default fill tops up to k.
:func:`_reference_voxel_sets` and :func:`_reference_greedy` are the slow set-based transcriptions.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Literal, Sequence

import numpy as np
import torch

from posevlm.errors import ConfigError, ConventionError, ShapeError
from posevlm.geometry import intrinsics_resize, w2c_to_c2w
from posevlm.sampling.pose_fps import fps_fill, poses_arg
from posevlm.sampling.selection import SamplerSpec, Selection
from posevlm.sampling.uniform import _count, select_uniform

__all__ = [
    "Fill", "PARITY", "VoxelSets", "voxel_sets_from_points", "voxel_sets_from_depth", "select_voxel_coverage",
]

Fill = Literal["pose_fps", "uniform", "none"]

#: The reference behaviour: builder defaults plus no fill (may return fewer than k frames).
PARITY = MappingProxyType(
    {"conf_percentile": 50.0, "conf_floor": 0.1, "voxels_on_short_axis": 20, "fill": "none"}
)

_CHUNK_PIXELS = 1 << 21  # pixels per chunk when gathering valid points (temporaries ~25 MB at float32)
_BITMAP_LIMIT = 1 << 26  # frames x grid cells up to which (frame, voxel) pairs are deduplicated in a bitmap
_EXACT_PERCENTILE = 1 << 20  # arrays up to this size go straight to np.percentile
_PERCENTILE_SAMPLE = 1 << 16  # strided sample size used to bracket the percentile of larger arrays


@dataclass(frozen=True)
class VoxelSets:
    """Occupied voxels per pool frame, CSR layout.

    Attributes:
        frame_offsets: (P + 1,) int64; frame f's voxels are
            ``voxel_ids[frame_offsets[f]:frame_offsets[f + 1]]``.
        voxel_ids: (nnz,) int64 ids in [0, num_voxels), ascending within each frame.
        voxel_coords: (num_voxels, 3) int64 grid coordinates ``floor((x - box_min) / voxel_size)`` of each id
            (ids are in lexicographic order of their coordinates).
        num_voxels: V, the size of the union over all frames.
        voxel_size: edge length v in world units (0.0 when no point was valid).
        box_min: (3,) float64 corner of the box of valid points.
        n_valid_points: (P,) int64 valid points per frame.
    """

    frame_offsets: np.ndarray
    voxel_ids: np.ndarray
    voxel_coords: np.ndarray
    num_voxels: int
    voxel_size: float
    box_min: np.ndarray
    n_valid_points: np.ndarray

    def __post_init__(self) -> None:
        off = np.asarray(self.frame_offsets, dtype=np.int64)
        ids = np.asarray(self.voxel_ids, dtype=np.int64)
        coords = np.asarray(self.voxel_coords, dtype=np.int64).reshape(-1, 3)
        if off.ndim != 1 or off.size < 2 or off[0] != 0 or off[-1] != ids.size or np.any(np.diff(off) < 0):
            raise ShapeError(f"frame_offsets must be (P + 1,) non-decreasing from 0 to nnz={ids.size}",
                             name="frame_offsets")
        if coords.shape[0] != self.num_voxels or (ids.size and (ids.min() < 0 or ids.max() >= self.num_voxels)):
            raise ShapeError(f"voxel_ids must lie in [0, num_voxels={self.num_voxels}) and voxel_coords be "
                             f"({self.num_voxels}, 3); got coords {coords.shape}", name="voxel_ids")
        for name, value in (("frame_offsets", off), ("voxel_ids", ids), ("voxel_coords", coords),
                            ("box_min", np.asarray(self.box_min, dtype=np.float64)),
                            ("n_valid_points", np.asarray(self.n_valid_points, dtype=np.int64))):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.frame_offsets.size - 1)

    def frame(self, f: int) -> np.ndarray:
        """(|V_f|,) voxel ids of pool frame f."""
        return self.voxel_ids[self.frame_offsets[f] : self.frame_offsets[f + 1]]

    def to_python_sets(self) -> list[set[tuple[int, int, int]]]:
        """Per-frame sets of voxel coordinate tuples, the research code's representation."""
        return [set(map(tuple, self.voxel_coords[self.frame(f)].tolist())) for f in range(len(self))]

    @classmethod
    def from_python_sets(cls, sets: Sequence[Iterable[tuple[int, int, int]]]) -> "VoxelSets":
        """Build from per-frame iterables of (ix, iy, iz) tuples (tests, hand-made cases)."""
        per_frame = [np.asarray(sorted(set(s)), dtype=np.int64).reshape(-1, 3) for s in sets]
        if not per_frame:
            raise ShapeError("sets must hold at least one frame", name="sets")
        allc = np.concatenate(per_frame)
        coords, ids = np.unique(allc, axis=0, return_inverse=True)
        sizes = np.array([p.shape[0] for p in per_frame], dtype=np.int64)
        return cls(np.concatenate([[0], np.cumsum(sizes)]), ids.reshape(-1), coords, int(coords.shape[0]), 1.0,
                   np.zeros(3), sizes)


def _numpy(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_params(conf_percentile: float, conf_floor: float, voxels_on_short_axis: float) -> None:
    problems = []  # report every problem at once
    if not (_real(conf_percentile) and 0 <= conf_percentile <= 100):
        problems.append(f"conf_percentile must be in [0, 100]; got {conf_percentile!r}")
    if not _real(conf_floor):
        problems.append(f"conf_floor must be a finite number; got {conf_floor!r}")
    if not (_real(voxels_on_short_axis) and voxels_on_short_axis > 0):
        problems.append(f"voxels_on_short_axis must be a finite number > 0; got {voxels_on_short_axis!r}")
    if problems:
        raise ConfigError("invalid voxelisation parameters: " + "; ".join(problems), field="voxelisation")


def _confidence_mask(conf: np.ndarray, conf_percentile: float, conf_floor: float) -> np.ndarray:
    """(P, N) confidences -> (P, N) valid = C >= percentile over all pixels and C > floor."""
    conf = np.ascontiguousarray(conf).reshape(conf.shape[0], -1)
    tau = _percentile(conf.reshape(-1), float(conf_percentile))
    if np.isnan(tau):
        raise ConventionError("confidence contains NaN; replace NaN by 0 (invalid) before voxelising")
    valid = conf >= conf.dtype.type(tau)  # compared in the confidence dtype, as torch does
    valid &= conf > conf.dtype.type(conf_floor)
    return valid


def _percentile(x: np.ndarray, q: float):
    """``np.percentile(x, q)`` of a 1-D float array, bit for bit, partitioning only a bracket.

    A strided sample brackets the two order statistics around rank ``(n - 1) q / 100``; one pass
    counts the values below the bracket and extracts those inside; numpy's own interpolation rule
    (``_lerp`` with a Python-float weight) is applied to them. Falls back to ``np.percentile``
    when the bracket misses or x holds NaN or inf.
    """
    n = x.size
    virtual = (n - 1) * np.true_divide(q, 100)
    finite = bool(np.isfinite(x.min()) and np.isfinite(x.max()))
    if n <= _EXACT_PERCENTILE or not 0 <= virtual < n - 1 or not finite:
        return np.percentile(x, q)  # small, an end point, or NaN / inf present: numpy's own rules
    lo = int(np.floor(virtual))
    gamma = float(virtual - lo)
    sample = np.sort(x[:: max(1, n // _PERCENTILE_SAMPLE)])
    rank = int(lo / (n - 1) * (sample.size - 1))
    for margin in (4 * math.isqrt(sample.size), 32 * math.isqrt(sample.size)):
        low, high = sample[max(rank - margin, 0)], sample[min(rank + margin + 1, sample.size - 1)]
        inside = x >= low
        below = n - np.count_nonzero(inside)  # no NaN here
        inside &= x <= high
        window = x[inside]
        if below <= lo and below + window.size > lo + 1:
            window.partition([lo - below, lo + 1 - below])
            a, b = window[lo - below], window[lo + 1 - below]
            diff = b - a
            return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    return np.percentile(x, q)


def _voxelise(points: np.ndarray, valid: np.ndarray, density: float) -> VoxelSets:
    """points: (P, N, 3) float, valid: (P, N) bool -> VoxelSets. Chunked over frames, no per-point loops.

    The valid points are gathered once as (3, n) rows per chunk and kept for the second pass
    (12 bytes per valid point at float32, ~160 MB for 128 VGGT frames); (frame, voxel) keys are
    deduplicated in a bitmap, or by per-chunk ``np.unique`` when frames x cells is too large.
    """
    n_frames, n_pix = valid.shape
    dt = points.dtype.type
    counts = np.count_nonzero(valid, axis=1).astype(np.int64)
    if counts.sum() == 0:
        return VoxelSets(np.zeros(n_frames + 1), np.zeros(0), np.zeros((0, 3)), 0, 0.0, np.zeros(3), counts)
    step = max(1, _CHUNK_PIXELS // max(n_pix, 1))
    spans = [(s, min(s + step, n_frames)) for s in range(0, n_frames, step)]
    # pass 1: valid points per chunk as (3, n) rows (kept for pass 2); the box from row reductions
    chunks = [np.ascontiguousarray(np.compress(valid[s:e].reshape(-1), points[s:e].reshape(-1, 3), axis=0).T)
              for s, e in spans]
    lo = np.array([c.min(axis=1) for c in chunks if c.size], dtype=points.dtype).min(0)
    hi = np.array([c.max(axis=1) for c in chunks if c.size], dtype=points.dtype).max(0)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ConventionError("world points contain NaN or inf among the valid points; give those pixels a "
                              "confidence below the floor (or depth <= 0) so they are masked out")
    v = dt((hi - lo).min()) * dt(1.0 / density)
    if not v > 0:
        raise ConventionError(f"the valid points are flat (box extent {(hi - lo).tolist()}): the voxel size "
                              "min(extent) / voxels_on_short_axis is 0. Check the point maps or the confidence "
                              "mask.")
    dims = [int(d) + 1 for d in ((hi - lo) / v)]
    cells = dims[0] * dims[1] * dims[2]
    if n_frames * cells >= 1 << 62:
        raise ConfigError(f"voxel grid {dims} is too large for int64 keys; lower voxels_on_short_axis",
                          field="voxels_on_short_axis", value=density)
    key_dtype = np.int32 if n_frames * cells < 1 << 31 else np.int64
    bitmap = np.zeros(n_frames * cells, dtype=bool) if n_frames * cells <= _BITMAP_LIMIT else None
    uniques = []
    for (s, e), p in zip(spans, chunks):  # pass 2: (frame, voxel) keys, deduplicated
        p -= lo[:, None]
        p /= v
        q = p.astype(key_dtype)  # truncation == floor: every coordinate is >= 0
        q[0] *= key_dtype(dims[1] * dims[2])
        q[1] *= key_dtype(dims[2])
        key = np.repeat(np.arange(s, e, dtype=key_dtype) * key_dtype(cells), counts[s:e])
        key += q[0]
        key += q[1]
        key += q[2]
        if bitmap is not None:
            bitmap[key] = True
        else:
            uniques.append(np.unique(key))  # chunks hold increasing frames: the concatenation stays sorted
        del p
    del chunks
    keys = (np.flatnonzero(bitmap) if bitmap is not None else np.concatenate(uniques)).astype(np.int64)
    frame = keys // cells
    vox = keys - frame * cells
    offsets = np.concatenate([[0], np.cumsum(np.bincount(frame, minlength=n_frames))])
    if cells <= _BITMAP_LIMIT:
        present = np.zeros(cells, dtype=bool)
        present[vox] = True
        linear = np.flatnonzero(present)
        ids = np.searchsorted(linear, vox)
    else:
        linear, ids = np.unique(vox, return_inverse=True)
    coords = np.stack(np.unravel_index(linear, dims), axis=1)
    return VoxelSets(offsets, ids, coords, int(linear.size), float(v), lo.astype(np.float64), counts)


def voxel_sets_from_points(world_points, confidence=None, *, conf_percentile: float = 50.0,
                           conf_floor: float = 0.1, voxels_on_short_axis: float = 20) -> VoxelSets:
    """Voxel sets from world point maps (VGGT ``world_points`` + ``world_points_conf``).

    Args:
        world_points: (P, H, W, 3) world coordinates (array or tensor; float32 keeps the reference's
            float32 arithmetic).
        confidence: (P, H, W) or None (every point valid). The threshold is the
            ``conf_percentile`` over ALL P*H*W pixels, so a frame can keep very few points.
        conf_percentile, conf_floor: valid = ``C >= percentile`` and ``C > conf_floor``.
        voxels_on_short_axis: voxels along the shortest axis of the valid points' box (20 in the reference).
    Raises:
        ShapeError: bad shapes. ConfigError: bad parameters. ConventionError: NaN confidences, NaN/inf
        valid points, or a flat point cloud (voxel size 0).
    """
    _check_params(conf_percentile, conf_floor, voxels_on_short_axis)
    pts = _numpy(world_points)
    if pts.ndim != 4 or pts.shape[-1] != 3 or pts.shape[0] < 1:
        raise ShapeError(f"world_points must have shape (P, H, W, 3); got {pts.shape}", name="world_points",
                         shape=pts.shape)
    n = pts.shape[0]
    if confidence is None:
        valid = np.ones((n, pts.shape[1] * pts.shape[2]), dtype=bool)
    else:
        conf = _numpy(confidence)
        if conf.shape != pts.shape[:3]:
            raise ShapeError(f"confidence must have shape {pts.shape[:3]} (P, H, W) like world_points; "
                             f"got {conf.shape}", name="confidence", shape=conf.shape)
        valid = _confidence_mask(conf, conf_percentile, conf_floor)
    return _voxelise(np.ascontiguousarray(pts).reshape(n, -1, 3), valid, float(voxels_on_short_axis))


def voxel_sets_from_depth(depth, K_pixels, w2c_opencv, *, image_hw=None, confidence=None, stride: int = 1,
                          conf_percentile: float = 50.0, conf_floor: float = 0.1,
                          voxels_on_short_axis: float = 20) -> VoxelSets:
    """Voxel sets from metric z-depth and cameras: back-project, then as :func:`voxel_sets_from_points`.

    Args:
        depth: (P, H, W) z-depth in metres; pixels with depth <= 0 or non-finite are invalid.
        K_pixels: (3, 3) shared or (P, 3, 3) intrinsics; pixel centres sit at (u + 0.5, v + 0.5).
        w2c_opencv: (P, 4, 4) world-to-camera, OpenCV axes.
        image_hw: (H, W) or (P, 2) image size ``K_pixels`` refers to; None = the depth size. If it
            differs (ScanNet: 1296x968 colour intrinsics, 640x480 depth), K is rescaled to the depth.
        confidence: optional (P, H, W); the percentile rule applies over the strided pixels.
        stride: keep every ``stride``-th row and column (1 = all pixels).
    """
    _check_params(conf_percentile, conf_floor, voxels_on_short_axis)
    stride = _count(stride, "stride", 1)
    d = _numpy(depth)
    if d.ndim != 3 or d.shape[0] < 1:
        raise ShapeError(f"depth must have shape (P, H, W); got {d.shape}", name="depth", shape=d.shape)
    n, h, w = d.shape
    K = _numpy(K_pixels).astype(np.float64)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (n, 3, 3))
    if image_hw is not None and K.shape == (n, 3, 3):
        K = intrinsics_resize(torch.from_numpy(np.ascontiguousarray(K)), image_hw, (h, w)).numpy()
    if K.shape != (n, 3, 3):
        raise ShapeError(f"K_pixels must be (3, 3) or ({n}, 3, 3); got {K.shape}", name="K_pixels",
                         shape=K.shape)
    w2c = poses_arg(w2c_opencv)
    if w2c.shape[0] != n:
        raise ShapeError(f"w2c_opencv has {w2c.shape[0]} poses but depth has {n} frames", name="w2c_opencv")
    c2w = w2c_to_c2w(w2c).numpy()
    d = d[:, ::stride, ::stride]
    hs, ws = d.shape[1:]
    uv1 = np.stack(np.meshgrid(np.arange(ws) * stride + 0.5, np.arange(hs) * stride + 0.5), -1).reshape(-1, 2)
    uv1 = np.concatenate([uv1, np.ones((uv1.shape[0], 1))], 1)  # (N, 3) homogeneous pixel centres
    rays_to_world = c2w[:, :3, :3] @ np.linalg.inv(K)  # (P, 3, 3): world direction per unit z-depth
    out_dtype = np.result_type(d.dtype, np.float32)
    pts = np.empty((n, hs * ws, 3), dtype=out_dtype)
    flat = d.reshape(n, -1)
    with np.errstate(invalid="ignore"):  # inf depth -> NaN points; masked out below
        for f in range(n):  # one frame at a time keeps the float64 temporaries small
            pts[f] = (uv1 @ rays_to_world[f].T) * flat[f][:, None] + c2w[f, :3, 3]
    valid = np.isfinite(flat) & (flat > 0)
    if confidence is not None:
        conf = _numpy(confidence)
        if conf.shape != (n, h, w):
            raise ShapeError(f"confidence must have shape {(n, h, w)}; got {conf.shape}", name="confidence")
        valid &= _confidence_mask(conf[:, ::stride, ::stride], conf_percentile, conf_floor)
    return _voxelise(pts, valid, float(voxels_on_short_axis))


def _greedy_coverage(voxels: VoxelSets, k: int) -> tuple[list[int], list[int], int]:
    """Greedy maximum coverage with incremental gains: (order, gains, covered voxel count).

    gain[g] = |V_g \\ covered| is kept for every frame; picking f subtracts, for each frame g,
    the number of f's newly covered voxels that g also holds (voxel -> frames lists, CSC).
    """
    n = len(voxels)
    off, ids = voxels.frame_offsets, voxels.voxel_ids
    gain = np.diff(off)
    by_voxel = np.argsort(ids, kind="stable")
    frames_of = np.repeat(np.arange(n, dtype=np.int64), gain)[by_voxel]
    vox_ptr = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=voxels.num_voxels))])
    covered = np.zeros(voxels.num_voxels, dtype=bool)
    order: list[int] = []
    gains: list[int] = []
    while len(order) < k:
        f = int(np.argmax(gain))  # first maximum: lowest pool index wins ties
        if gain[f] <= 0:
            break
        order.append(f)
        gains.append(int(gain[f]))
        vf = voxels.frame(f)
        new = vf[~covered[vf]]
        covered[new] = True
        starts, lens = vox_ptr[new], vox_ptr[new + 1] - vox_ptr[new]
        pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens - starts, lens)
        gain -= np.bincount(frames_of[pos], minlength=n)
        gain[f] = -1  # chosen
    return order, gains, int(covered.sum())


def select_voxel_coverage(voxels: VoxelSets, k: int, *, fill: Fill = "pose_fps", w2c_opencv=None) -> Selection:
    """Greedy maximum voxel coverage, then a fill policy so exactly k indices come back.

    Greedy (the reference): repeatedly pick the unchosen frame with the largest gain |V_f \\ covered|,
    lowest pool index on ties; stop at k frames or when the best gain is 0.

    Args:
        voxels: from :func:`voxel_sets_from_points` or :func:`voxel_sets_from_depth`.
        k: 1 <= k <= P (the reference clamped k to P silently; here k > P is an error).
        fill: what to do when coverage saturates before k frames. ``"pose_fps"``: continue by
            farthest-point selection over the rest of the pool (camera-centre + angle distance,
            max-norm, from the chosen set; needs ``w2c_opencv``, otherwise falls back to
            ``"uniform"`` with a ``fill_note``); ``"uniform"``: evenly spaced among the unchosen
            frames (:func:`select_uniform` over them); ``"none"``: return fewer than k (the reference).
        w2c_opencv: (P, 4, 4) pool poses for ``fill="pose_fps"``.
    Returns:
        ``Selection`` with ``n_returned_before_fill`` = greedy count. ``stats``: ``coverage_ratio``
        (covered / total, 1.0 when there are no voxels), ``covered_voxels``, ``total_voxels``,
        ``gains`` (per greedy pick, non-increasing), ``fill`` (requested), ``fill_used`` (policy that
        ran, None if no fill was needed), ``n_filled`` and, on fallback, ``fill_note``.
    """
    if not isinstance(voxels, VoxelSets):
        raise ConfigError("voxels must be a VoxelSets (build it with voxel_sets_from_points or "
                          f"voxel_sets_from_depth); got {type(voxels).__name__}", field="voxels")
    n = len(voxels)
    k = _count(k, "k", 1)
    if k > n:
        raise ConfigError(f"k={k} exceeds the pool size P={n}; pass k <= P", field="k", value=k)
    if fill not in ("pose_fps", "uniform", "none"):
        raise ConfigError(f"fill must be 'pose_fps', 'uniform' or 'none'; got {fill!r}", field="fill",
                          value=fill)
    w2c = None if w2c_opencv is None else poses_arg(w2c_opencv)
    if w2c is not None and w2c.shape[0] != n:
        raise ShapeError(f"w2c_opencv has {w2c.shape[0]} poses but voxels has {n} frames", name="w2c_opencv")
    order, gains, covered = _greedy_coverage(voxels, k)
    greedy = len(order)
    stats: dict = {"coverage_ratio": covered / voxels.num_voxels if voxels.num_voxels else 1.0,
                   "covered_voxels": covered, "total_voxels": voxels.num_voxels, "gains": gains,
                   "fill": fill, "fill_used": None, "n_filled": 0}
    if greedy < k and fill != "none":
        used = fill
        if fill == "pose_fps" and w2c is None:
            used = "uniform"
            stats["fill_note"] = "fill='pose_fps' needs w2c_opencv; none given, so filled uniformly"
        if used == "pose_fps":
            order, _ = fps_fill(w2c, order, k)  # type: ignore[arg-type]
        else:
            rest = np.setdiff1d(np.arange(n), order)
            order = order + rest[select_uniform(rest.size, k - greedy).pool_indices].tolist()
        stats.update(fill_used=used, n_filled=k - greedy)
    return Selection.from_order(np.asarray(order, dtype=np.int64), stats, n_returned_before_fill=greedy)


def _reference_voxel_sets(world_points: np.ndarray, confidence: np.ndarray, *, conf_percentile: float = 50.0,
                          conf_floor: float = 0.1, voxels_on_short_axis: float = 20) -> list[set[tuple]]:
    """The reference voxelisation (upstream ``space_aware_frame_sampling`` + ``compute_voxel_sets``),
    transcribed frame by frame into numpy with the same float32 operations. Slow: Python sets of tuples."""
    pts, conf = np.asarray(world_points), np.asarray(confidence)
    tau = np.percentile(conf.reshape(-1), conf_percentile)
    mask = (conf >= conf.dtype.type(tau)) & (conf > conf.dtype.type(conf_floor))
    valid = pts.reshape(-1, 3)[mask.reshape(-1)]
    lo, hi = valid.min(axis=0), valid.max(axis=0)
    dt = pts.dtype.type
    v = dt(min(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])) * dt(1.0 / voxels_on_short_axis)  # CUDA x / 20
    sets = []
    for t in range(pts.shape[0]):
        frame_pts = pts[t].reshape(-1, 3)[mask[t].reshape(-1)]
        if frame_pts.shape[0] == 0:
            sets.append(set())
            continue
        coords = np.floor((frame_pts - lo) / v).astype(np.int64)
        sets.append(set(map(tuple, np.unique(coords, axis=0).tolist())))
    return sets


def _reference_greedy(voxel_sets: Sequence[set], k: int) -> list[int]:
    """The reference ``maximum_coverage_sampling``, with the frame iteration pinned to ascending order
    (CPython's small-int set order, which made the lowest pool index win ties). Returns pick order."""
    selected: list[int] = []
    covered: set = set()
    remaining = set(range(len(voxel_sets)))
    for _ in range(k):
        if not remaining:
            break
        max_gain, best = -1, None
        for frame in sorted(remaining):
            gain = len(voxel_sets[frame] - covered)
            if gain > max_gain:
                max_gain, best = gain, frame
        if best is None or max_gain <= 0:
            break
        selected.append(best)
        covered.update(voxel_sets[best])
        remaining.remove(best)
    return selected


#: parameters that shape the voxel sets (the rest, ``fill``, go to the greedy selection)
VOXEL_BUILD_PARAMS = ("conf_percentile", "conf_floor", "voxels_on_short_axis", "depth_stride")


def _select(pool, k: int, *, seed: int, fill: Fill, **build) -> Selection:
    return select_voxel_coverage(pool.voxels(build), k, fill=fill, w2c_opencv=pool.w2c_opencv)


SAMPLER = SamplerSpec(
    "voxel_coverage", _select,
    {"conf_percentile": 50.0, "conf_floor": 0.1, "voxels_on_short_axis": 20, "depth_stride": 4, "fill": "pose_fps"},
    needs=("cameras", "voxels"),
    description="space-aware: greedy maximum coverage of voxelised points (point maps or depth), then a fill "
                "policy so exactly N come back",
    check=lambda params: [] if params["fill"] in ("pose_fps", "uniform", "none") else
    [f"voxel_coverage fill must be pose_fps, uniform or none; got {params['fill']!r}"],
)
