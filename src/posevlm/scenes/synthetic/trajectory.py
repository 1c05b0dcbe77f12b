"""Hand-held scan trajectories: a person walking loops through the free floor of a synthetic room.

Pipeline (deterministic given the rng): floor occupancy grid (10 cm cells; free = inside the room,
>= 0.4 m from walls, >= 0.35 m from object footprints) -> 4-9 spread-out waypoints in the largest
free component (about one per 3 m2) -> clearance-weighted grid shortest paths visiting them in
angular order, lap after lap, until the walk is long enough -> arc-length resampling and Gaussian
smoothing (backed off until the smoothed path keeps its clearance) -> per-frame positions at a
slowly varying speed -> orientation = smoothed walking heading + slow look-around, pitched down,
small roll, yaw rate-limited -> small smooth jitter.

Guarantees (tested): every camera centre is inside the room, >= 0.3 m from walls and >= 0.25 m
from every object footprint; height in [1.3, 1.7] m; pitch in [-25, -5] deg; speed <= 0.8 m/s
before jitter; yaw rate <= 75 deg/s before jitter (jitter: <= 1.5 cm per axis, < 0.6 deg per angle).

World: metres, z up. Output poses are ``w2c_opencv`` (S, 4, 4) float64 (x right, y down, z forward).
"""

from __future__ import annotations

import numpy as np

from posevlm.errors import ConfigError
from posevlm.scenes.synthetic.layout import (
    Layout,
    distance_to_footprints_xy,
    distance_to_walls_xy,
    points_in_room_xy,
)

__all__ = ["generate_trajectory", "WALL_CLEARANCE_M", "OBJECT_CLEARANCE_M"]

WALL_CLEARANCE_M = 0.3  # camera centre to any wall, guaranteed
OBJECT_CLEARANCE_M = 0.25  # camera centre to any object footprint, guaranteed
_CELL_M = 0.1
_PLAN_MARGIN_M = 0.1  # grid cells keep this much more than the guarantees
_JITTER_BUDGET_M = 0.025  # smoothed path keeps this much more (covers the <= 1.5 cm jitter)
_MAX_YAW_RATE = np.deg2rad(75.0)  # rad/s
_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _shift(a: np.ndarray, di: int, dj: int, fill: float) -> np.ndarray:
    """out[i, j] = a[i - di, j - dj] (value of the neighbour at offset (-di, -dj)), ``fill`` outside."""
    out = np.full_like(a, fill)
    h, w = a.shape
    out[max(di, 0):h + min(di, 0), max(dj, 0):w + min(dj, 0)] = a[max(-di, 0):h - max(di, 0),
                                                                   max(-dj, 0):w - max(dj, 0)]
    return out


def _free_grid(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell centres (nx, ny, 2), free mask (nx, ny) and clearance (nx, ny) in metres."""
    lo, hi = layout.room.boxes_xy[:, :2].min(0), layout.room.boxes_xy[:, 2:].max(0)
    xs = np.arange(lo[0] + _CELL_M / 2, hi[0], _CELL_M)
    ys = np.arange(lo[1] + _CELL_M / 2, hi[1], _CELL_M)
    centres = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1)
    flat = centres.reshape(-1, 2)
    wall = distance_to_walls_xy(layout.room, flat)
    obj = distance_to_footprints_xy(layout.objects, flat)
    free = points_in_room_xy(layout.room, flat) & (wall >= WALL_CLEARANCE_M + _PLAN_MARGIN_M)
    free &= obj >= OBJECT_CLEARANCE_M + _PLAN_MARGIN_M
    return centres, free.reshape(xs.size, ys.size), np.minimum(wall, obj).reshape(xs.size, ys.size)


def _largest_component(free: np.ndarray) -> np.ndarray:
    """Mask of the largest 8-connected component of ``free`` (min-label propagation)."""
    labels = np.where(free, np.arange(free.size, dtype=np.float64).reshape(free.shape), np.inf)
    while True:
        new = labels
        for di, dj in _OFFSETS:
            new = np.minimum(new, _shift(labels, di, dj, np.inf))
        new = np.where(free, new, np.inf)
        if np.array_equal(new, labels):
            break
        labels = new
    values, counts = np.unique(labels[free], return_counts=True)
    return labels == values[np.argmax(counts)]


def _cost_field(source: tuple[int, int], free: np.ndarray, clearance: np.ndarray) -> np.ndarray:
    """Geodesic cost from ``source`` over 8-connected free cells (vectorised Bellman-Ford).

    A step costs its length times ``1 + 2 * max(0, 1 - clearance / 0.8 m)`` at the target cell, so
    paths keep to the middle of the walkway.
    """
    penalty = np.where(free, 1.0 + 2.0 * np.clip(1.0 - clearance / 0.8, 0.0, None), np.inf)
    dist = np.full(free.shape, np.inf)
    dist[source] = 0.0
    while True:
        new = dist
        for di, dj in _OFFSETS:
            new = np.minimum(new, _shift(dist, di, dj, np.inf) + np.hypot(di, dj) * _CELL_M * penalty)
        if np.array_equal(new, dist):
            return dist
        dist = new


def _descend(field: np.ndarray, goal: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells from ``goal`` back to the field's source (cost 0), following the steepest descent."""
    path, cur = [goal], goal
    nx, ny = field.shape
    while field[cur] > 0:
        best, best_val = cur, field[cur]
        for di, dj in _OFFSETS:
            i, j = cur[0] + di, cur[1] + dj
            if 0 <= i < nx and 0 <= j < ny and field[i, j] < best_val:
                best, best_val = (i, j), field[i, j]
        if best == cur:
            break
        path.append(best)
        cur = best
    return path


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth (N, ...) along axis 0 with a Gaussian of ``sigma`` samples, edge-padded."""
    if sigma <= 0:
        return x.copy()
    r = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    flat = x.reshape(len(x), -1)
    padded = np.concatenate([np.repeat(flat[:1], r, 0), flat, np.repeat(flat[-1:], r, 0)])
    out = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(flat.shape[1])], -1)
    return out.reshape(x.shape)


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float, amplitude: float,
                  dims: int = 1) -> np.ndarray:
    """(n, dims) smooth noise with max |value| exactly ``amplitude`` per dim (``sigma`` in samples)."""
    z = _gaussian_smooth(rng.standard_normal((n, dims)), sigma)
    return amplitude * z / np.maximum(np.abs(z).max(0), 1e-12)


def _resample(poly: np.ndarray, s_query: np.ndarray) -> np.ndarray:
    """Points at arc lengths ``s_query`` along an (N, 2) polyline."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))])
    return np.stack([np.interp(s_query, s, poly[:, k]) for k in range(2)], -1)


def _arc_length(poly: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(poly, axis=0), axis=1).sum())


def _plan_walk(layout: Layout, rng: np.random.Generator, target_m: float) -> np.ndarray:
    """(N, 2) grid-cell polyline of length >= ``target_m`` through free space (or a single point)."""
    centres, free, clearance = _free_grid(layout)
    if not free.any():
        raise ConfigError("the room has no free floor for a camera path (>= 0.4 m from walls and objects).",
                          field="layout", value=layout.room.boxes_xy.tolist())
    comp = _largest_component(free)
    cells = np.argwhere(comp)
    # spread-out waypoints: randomised farthest-point sampling (about one per 3 m2 of free floor)
    free_m2 = len(cells) * _CELL_M**2
    k = min(int(np.clip(free_m2 / 3.0, 4, 8)) + int(rng.integers(0, 2)), len(cells))
    weight = np.minimum(clearance[comp], 0.8)
    chosen = [int(rng.choice(len(cells), p=weight / weight.sum()))]
    for _ in range(k - 1):
        d = np.linalg.norm(cells[:, None, :] - cells[chosen][None], axis=-1).min(1)
        p = weight * (d / max(d.max(), 1e-12)) ** 8
        if p.sum() <= 0:
            break
        chosen.append(int(rng.choice(len(cells), p=p / p.sum())))
    wps = cells[chosen]
    centroid = wps.mean(0)
    wps = wps[np.argsort(np.arctan2(wps[:, 1] - centroid[1], wps[:, 0] - centroid[0]))]
    if len(wps) < 2:
        return centres[tuple(wps[0])][None]
    fields = [_cost_field(tuple(w), comp, clearance) for w in wps]
    start = int(rng.integers(len(wps)))
    cur, path_cells, length = start, [tuple(wps[start])], 0.0
    while length < target_m:
        lap = [i for i in range(1, len(wps) + 1) if rng.random() < 0.8 or i == len(wps)]
        for step in lap:  # visit the waypoints in angular order, skipping a few per lap
            nxt = (start + step) % len(wps)
            if nxt == cur:
                continue
            leg = _descend(fields[cur], tuple(wps[nxt]))[::-1]  # from wps[cur] to wps[nxt]
            path_cells.extend(leg[1:])
            length += _arc_length(np.array(leg, dtype=np.float64)) * _CELL_M
            cur = nxt
            if length >= target_m:
                break
    return centres[tuple(np.array(path_cells).T)]


def _path_ok(layout: Layout, xy: np.ndarray) -> bool:
    walls_ok = distance_to_walls_xy(layout.room, xy).min() >= WALL_CLEARANCE_M + _JITTER_BUDGET_M
    objects_ok = distance_to_footprints_xy(layout.objects, xy).min() >= OBJECT_CLEARANCE_M + _JITTER_BUDGET_M
    return bool(points_in_room_xy(layout.room, xy).all() and walls_ok and objects_ok)


def _rate_limit(angle: np.ndarray, max_step: float) -> np.ndarray:
    """Track ``angle`` (S,) with steps clipped to ``max_step`` (catches up after fast turns)."""
    out = np.empty_like(angle)
    out[0] = angle[0]
    for k in range(1, len(angle)):
        out[k] = out[k - 1] + np.clip(angle[k] - out[k - 1], -max_step, max_step)
    return out


def _w2c_from_pose(position: np.ndarray, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(S, 3) camera centres and (S,) yaw/pitch/roll (rad; yaw from +x towards +y, pitch > 0 up) -> w2c."""
    cp, sp = np.cos(pitch), np.sin(pitch)
    forward = np.stack([cp * np.cos(yaw), cp * np.sin(yaw), sp], -1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)
    down = np.cross(forward, right)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right, down = cr * right + sr * down, -sr * right + cr * down
    r_c2w = np.stack([right, down, forward], -1)  # columns: camera x, y, z in world
    w2c = np.zeros((len(position), 4, 4))
    w2c[:, :3, :3] = r_c2w.transpose(0, 2, 1)
    w2c[:, :3, 3] = -np.einsum("sij,sj->si", w2c[:, :3, :3], position)
    w2c[:, 3, 3] = 1.0
    return w2c


def generate_trajectory(layout: Layout, rng: np.random.Generator, *, num_frames: int | None = None,
                        fps: float = 30.0) -> np.ndarray:
    """A hand-held scan of ``layout``: a person walking loops through free floor space, looking around.

    Args:
        layout: the room and objects to walk around.
        rng: numpy Generator; consumed (deterministic given its state).
        num_frames: S; default random in [300, 3000].
        fps: frames per second; sets the time scale (speeds in m/s, turn rates in deg/s).
    Returns:
        w2c_opencv: (S, 4, 4) float64 world-to-camera, OpenCV axes. Walking speed ~0.35-0.7 m/s
        (faster for short clips) varying by up to 15%, camera height 1.3-1.7 m, pitch -25..-5 deg.
    Raises:
        ConfigError: num_frames < 2, fps <= 0, or a layout without free floor for the camera.
    """
    if num_frames is None:
        num_frames = int(rng.integers(300, 3001))
    if int(num_frames) < 2:
        raise ConfigError(f"num_frames must be >= 2; got {num_frames}.", field="num_frames", value=num_frames)
    if not fps > 0:
        raise ConfigError(f"fps must be > 0; got {fps}.", field="fps", value=fps)
    S = int(num_frames)
    t = np.arange(S) / fps
    duration = S / fps
    v0 = float(np.interp(duration, [10.0, 100.0], [0.6, 0.4]) * rng.uniform(0.87, 1.13))
    speed = v0 * (1.0 + _smooth_noise(rng, S, 3.0 * fps, 0.15)[:, 0])
    s_frames = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2) / fps])
    target = float(s_frames[-1])

    raw = _plan_walk(layout, rng, 1.3 * target + 2.0)  # slack: smoothing shortens corners and U-turns
    dense = _resample(raw, np.arange(0.0, _arc_length(raw) + 1e-9, 0.05)) if len(raw) > 1 else raw
    for sigma_m in (0.3, 0.2, 0.1, 0.05, 0.0):
        path = _gaussian_smooth(dense, sigma_m / 0.05)
        if _path_ok(layout, path):
            break
    total = _arc_length(path)
    s_frames *= min(1.0, total / max(target, 1e-12))  # never walk past the end of the path
    xy = _resample(path, s_frames) if len(path) > 1 else np.repeat(path, S, 0)

    # heading: direction to a point 0.3 m ahead on the path, smoothed over ~0.7 s
    if total > 1e-6:
        ahead = _resample(path, np.minimum(s_frames + 0.3, total))
        behind = _resample(path, np.maximum(s_frames - 0.3, 0.0))
        heading = np.unwrap(np.arctan2(ahead[:, 1] - behind[:, 1], ahead[:, 0] - behind[:, 0]))
    else:
        heading = np.full(S, rng.uniform(-np.pi, np.pi))
    heading = _gaussian_smooth(heading, 0.7 * fps)
    ph = rng.uniform(0, 2 * np.pi, size=5)

    def wave(amplitude: float, period_s: float, phase: float) -> np.ndarray:
        return amplitude * np.sin(2 * np.pi * t / period_s + phase)

    # look-around: a slow sweep of 20-40 deg plus a faster glance of 3-10 deg
    look = wave(rng.uniform(20, 40), rng.uniform(6, 12), ph[0])
    look = np.deg2rad(look + wave(rng.uniform(3, 10), rng.uniform(3, 6), ph[1]))
    yaw = _rate_limit(heading + look, _MAX_YAW_RATE / fps)
    pitch = np.deg2rad(rng.uniform(-18, -12) + wave(rng.uniform(2, 6), rng.uniform(6, 14), ph[2]))
    roll = np.deg2rad(rng.uniform(-1, 1) + wave(rng.uniform(0.5, 1.5), rng.uniform(5, 10), ph[3]))
    height = rng.uniform(1.45, 1.55) + wave(rng.uniform(0.02, 0.08), rng.uniform(8, 20), ph[4])
    height += 0.008 * np.sin(2 * np.pi * 1.8 * t)  # walking bob at 1.8 steps per second

    jitter_xyz = _smooth_noise(rng, S, 0.15 * fps, rng.uniform(0.005, 0.015), dims=3)
    jitter_ang = _smooth_noise(rng, S, 0.15 * fps, np.deg2rad(rng.uniform(0.2, 0.6)), dims=3)
    position = np.concatenate([xy, height[:, None]], -1) + jitter_xyz
    return _w2c_from_pose(position, yaw + jitter_ang[:, 0], pitch + jitter_ang[:, 1], roll + jitter_ang[:, 2])
