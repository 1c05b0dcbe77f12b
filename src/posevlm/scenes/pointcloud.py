"""Point clouds in SpatialLM's ``[N, 9]`` layout from posed RGB-D scans and ``.ply`` / ``.npz`` files.

Notation: S frames, H x W depth pixels, M points before grid sampling, N points after (one per occupied grid cell).

**The SpatialLM frame and its conversion from posevlm's world frame.** posevlm's world is the frame of the scene's
``w2c_opencv`` cameras (metres). A cloud is brought into SpatialLM's frame in three steps:

1. *up*: a fixed rotation maps the world's up axis to +z (``up``: ``+z`` identity; ``-z``: (x, -y, -z);
   ``+y``: (x, -z, y); ``-y``: (x, z, -y); ``+x``: (-z, y, x); ``-x``: (z, y, -x); each a proper rotation).
   Synthetic scans are z-up (``scene.metadata["up_axis"] == "z"``), so nothing turns; other scans need ``up=``.
2. *axis-aligned*: no rotation about z is estimated; the cloud is axis-aligned when the scan's world is (the
   synthetic rooms are; real scans need their own alignment, e.g. ScanNet's ``axisAlignment`` matrix, first).
3. *positive shift*: ``xyz = p - min(p)`` (``origin = min(p)`` is kept, so ``p = xyz + origin``); then the grid
   ``grid = floor(xyz / grid_size)`` clipped to ``[0, num_bins - 1]`` and one point per occupied grid cell (the
   first in input order), as SpatialLM's ``GridSample`` in test mode. Colours are rgb / 255 in [0, 1].

Rows: ``[grid_x, grid_y, grid_z, x, y, z, r, g, b]`` (float32; grid columns hold integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from posevlm.errors import ConfigError, InputFileError, ShapeError

__all__ = ["PointCloud", "UP_ROTATIONS", "grid_sample_points", "scene_point_cloud", "read_ply", "write_ply",
           "load_point_cloud", "save_point_cloud"]

#: world up axis -> rotation (3, 3) taking it to +z (row-major, applied as p' = R p)
UP_ROTATIONS: dict[str, np.ndarray] = {
    "+z": np.eye(3),
    "-z": np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=np.float64),
    "+y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64),
    "-y": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64),
    "+x": np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=np.float64),
    "-x": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=np.float64),
}


@dataclass(frozen=True)
class PointCloud:
    """A grid-sampled cloud in the SpatialLM frame (module docstring).

    Fields:
        grid_coord: (N, 3) int64 grid cell of each point, in [0, num_bins - 1].
        xyz: (N, 3) float32 metres, z up, minimum at 0.
        rgb: (N, 3) float32 in [0, 1].
        grid_size: metres per grid cell; num_bins: grid cells per axis at most.
        origin: (3,) float64 the point (after the up rotation) that maps to xyz = 0.
        up: the source world's up axis (a key of ``UP_ROTATIONS``).
    """

    grid_coord: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    grid_size: float
    num_bins: int
    origin: np.ndarray
    up: str = "+z"

    def __post_init__(self):
        n = self.xyz.shape[0]
        if self.xyz.shape != (n, 3) or self.rgb.shape != (n, 3) or self.grid_coord.shape != (n, 3):
            raise ShapeError(f"grid_coord, xyz and rgb must all be (N, 3); got {self.grid_coord.shape}, "
                             f"{self.xyz.shape}, {self.rgb.shape}", name="xyz", shape=self.xyz.shape)

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def to_array(self) -> np.ndarray:
        """(N, 9) float32 ``[grid, xyz, rgb]`` (what ``posevlm.spatial.points.voxelize_points`` reads)."""
        return np.concatenate([self.grid_coord.astype(np.float32), self.xyz, self.rgb], 1).astype(np.float32)

    def world_points(self) -> np.ndarray:
        """(N, 3) float64 points back in the source world frame (undo the shift and the up rotation)."""
        return (self.xyz.astype(np.float64) + self.origin) @ UP_ROTATIONS[self.up]


def _check_up(up: str) -> np.ndarray:
    if up not in UP_ROTATIONS:
        raise ConfigError(f"up={up!r}: the world's up axis, one of {', '.join(UP_ROTATIONS)}", field="up", value=up)
    return UP_ROTATIONS[up]


def grid_sample_points(points: np.ndarray, colors: np.ndarray, *, grid_size: float = 0.02, num_bins: int = 1280,
                       up: str = "+z") -> PointCloud:
    """Up rotation, positive shift, grid sampling (module docstring), vectorised.

    Args:
        points: (M, 3) world points (metres); rows with a non-finite coordinate are dropped.
        colors: (M, 3) uint8 in [0, 255] or floats in [0, 1].
    Raises:
        ShapeError: mismatched shapes, or no finite point.
        ConfigError: grid_size <= 0, num_bins < 1, an unknown up axis.
    """
    rot = _check_up(up)
    if not grid_size > 0 or int(num_bins) < 1:
        raise ConfigError(f"grid_size={grid_size!r} must be > 0 and num_bins={num_bins!r} >= 1",
                          field="grid_size", value=grid_size)
    points = np.asarray(points, dtype=np.float64)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
        raise ShapeError(f"points and colors must both be (M, 3); got {points.shape} and {colors.shape}",
                         name="points", shape=points.shape)
    rgb = colors.astype(np.float32) / (255.0 if colors.dtype == np.uint8 else 1.0)
    keep = np.isfinite(points).all(1)
    points, rgb = points[keep] @ rot.T, rgb[keep]
    if not len(points):
        raise ShapeError("no finite point to sample (empty depth?)", name="points", shape=(0, 3))
    origin = points.min(0)
    xyz = points - origin
    grid = np.clip(np.floor(xyz / grid_size), 0, int(num_bins) - 1).astype(np.int64)
    key = (grid[:, 0] * num_bins + grid[:, 1]) * num_bins + grid[:, 2]
    _, first = np.unique(key, return_index=True)  # one point per occupied cell: the first in input order
    return PointCloud(grid[first], xyz[first].astype(np.float32), np.clip(rgb[first], 0, 1).astype(np.float32),
                      float(grid_size), int(num_bins), origin, up)


def _scene_up(scene, up: str | None) -> str:
    if up is not None:
        return up
    axis = (scene.metadata or {}).get("up_axis")
    if axis in ("x", "y", "z"):
        return "+" + axis
    raise ConfigError(f"scene {scene.name!r} does not say which world axis is up; pass up= (one of "
                      f"{', '.join(UP_ROTATIONS)}; ScanNet: '+z')", field="up", value=None)


def scene_point_cloud(scene, frame_ids: Sequence[int] | None = None, *, num_frames: int = 32, pixel_stride: int = 4,
                      grid_size: float = 0.02, num_bins: int = 1280, up: str | None = None,
                      max_depth_m: float | None = None) -> PointCloud:
    """The SpatialLM cloud of a posed RGB-D scene: depth of some frames back-projected, coloured, grid-sampled.

    Args:
        scene: a ``posevlm.scenes.Scene`` with cameras and depth (synthetic scans have both).
        frame_ids: the frames to use; None: ``num_frames`` evenly spaced over the scan.
        pixel_stride: back-project every s-th depth row and column.
        up: the world's up axis; None: ``scene.metadata["up_axis"]`` (synthetic scans: z).
        max_depth_m: drop depth beyond this (None: keep all).
    Raises:
        ConfigError: no depth or cameras, unknown up axis; ShapeError: no valid depth at all.
    """
    from posevlm.geometry.depth import backproject_depth

    if scene.depth is None or scene.cameras is None:
        raise ConfigError(f"scene {scene.name!r} needs depth and cameras for a point cloud (has depth: "
                          f"{scene.depth is not None}, cameras: {scene.cameras is not None}); load an RGB-D scan or "
                          "pass a .ply / .npz cloud instead", field="scene", value=scene.name)
    up = _scene_up(scene, up)
    if frame_ids is None:
        pick = np.unique(np.round(np.linspace(0, len(scene) - 1, max(1, min(int(num_frames), len(scene))))))
        frame_ids = scene.frame_ids[pick.astype(np.int64)]
    frame_ids = [int(f) for f in frame_ids]
    cams = scene.cameras_for(frame_ids)
    depth = np.asarray(scene.depth.read_many(frame_ids), dtype=np.float32)
    if max_depth_m is not None:
        depth = np.where(depth <= max_depth_m, depth, 0.0)
    rgb = scene.read_rgb(frame_ids)
    K = np.asarray(cams.K_pixels, dtype=np.float64).copy()
    dh, dw = depth.shape[1:]
    ih, iw = rgb.shape[1:3]
    if (dh, dw) != (ih, iw):  # intrinsics refer to the RGB size: rescale to the depth grid, colour by nearest pixel
        K[:, 0] *= dw / iw
        K[:, 1] *= dh / ih
    world = backproject_depth(depth, K, np.asarray(cams.w2c_opencv, dtype=np.float64), pixel_stride=pixel_stride)
    rows = (np.arange(0, dh, pixel_stride) * ih // dh)[:, None]
    cols = (np.arange(0, dw, pixel_stride) * iw // dw)[None, :]
    colors = rgb[:, rows, cols]  # (S, h, w, 3)
    return grid_sample_points(world.reshape(-1, 3), colors.reshape(-1, 3), grid_size=grid_size,
                              num_bins=num_bins, up=up)


# -- files -------------------------------------------------------------------------------------------------------
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The vertices of a ``.ply`` file: (M, 3) float64 xyz and (M, 3) colours (uint8 ``red/green/blue`` or float
    ``r/g/b``) or None. Formats: ascii, binary_little_endian, binary_big_endian; vertex properties must be
    scalar (other elements after the vertices, e.g. faces, are ignored).

    Raises:
        InputFileError: not a PLY file, a list property among the vertex properties, no x/y/z, a short file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read point cloud {path}: {exc}", path=path) from exc
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputFileError(f"{path} is not a PLY file (no 'ply' magic / 'end_header')", path=path)
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props, in_vertex, seen_vertex = None, 0, [], False, False
    for line in header:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            in_vertex = parts[1] == "vertex"
            if in_vertex:
                count, seen_vertex = int(parts[2]), True
            elif not seen_vertex:
                raise InputFileError(f"{path}: element {parts[1]!r} before the vertices is not supported",
                                     path=path)
        elif parts[0] == "property" and in_vertex:
            if parts[1] == "list" or parts[1] not in _PLY_TYPES:
                raise InputFileError(f"{path}: vertex property {' '.join(parts[1:])!r} is not a scalar PLY type",
                                     path=path)
            props.append((parts[2], _PLY_TYPES[parts[1]]))
    names = [n for n, _ in props]
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian") or not {"x", "y", "z"} <= set(names):
        raise InputFileError(f"{path}: need format ascii / binary_*_endian and vertex properties x, y, z; got "
                             f"format {fmt!r}, properties {names}", path=path)
    if fmt == "ascii":  # the vertex rows come first: their count x properties values, parsed in one call
        values = data[body_start:].split(maxsplit=count * len(props))[: count * len(props)]
        try:
            table = np.array(values, dtype=np.float64).reshape(count, len(props))
        except ValueError as exc:
            raise InputFileError(f"{path}: {count} ascii vertex rows of {len(props)} numbers expected ({exc})",
                                 path=path) from exc
        columns = {n: table[:, i] for i, n in enumerate(names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + t) for n, t in props])
        if len(data) - body_start < count * dtype.itemsize:
            raise InputFileError(f"{path}: file ends before its {count} vertices", path=path)
        rec = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
        columns = {n: rec[n] for n in names}
    xyz = np.stack([columns[a].astype(np.float64) for a in "xyz"], 1)
    for keys in (("red", "green", "blue"), ("r", "g", "b")):
        if set(keys) <= set(columns):
            rgb = np.stack([columns[k] for k in keys], 1)
            integer = np.issubdtype(rgb.dtype, np.integer) or (fmt == "ascii" and dict(props)[keys[0]][0] in "iu")
            return xyz, (np.clip(rgb, 0, 255).astype(np.uint8) if integer else rgb.astype(np.float32))
    return xyz, None


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None = None, *, binary: bool = True) -> Path:
    """Write (M, 3) points (float32) and optional (M, 3) colours (uint8; floats in [0, 1] are scaled) as PLY."""
    from posevlm.atomic import atomic_write_bytes

    xyz = np.asarray(xyz, dtype=np.float32)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        rgb = np.asarray(rgb)
        rgb = rgb if rgb.dtype == np.uint8 else np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if xyz.ndim != 2 or xyz.shape[1] != 3 or (rgb is not None and rgb.shape != xyz.shape):
        raise ShapeError(f"xyz must be (M, 3) and rgb (M, 3) or None; got {xyz.shape} and "
                         f"{None if rgb is None else rgb.shape}", name="xyz", shape=xyz.shape)
    types = {"f4": "float", "u1": "uchar"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(xyz)}",
              *[f"property {types[t]} {n}" for n, t in fields], "end_header"]
    if binary:
        rec = np.empty(len(xyz), dtype=np.dtype([(n, "<" + t) for n, t in fields]))
        for i, a in enumerate("xyz"):
            rec[a] = xyz[:, i]
        if rgb is not None:
            for i, a in enumerate(("red", "green", "blue")):
                rec[a] = rgb[:, i]
        body = rec.tobytes()
    else:
        import io

        buf = io.StringIO()
        table = np.column_stack([xyz.astype(np.float64)] + ([rgb] if rgb is not None else []))
        np.savetxt(buf, table, fmt=["%.9g"] * 3 + ["%d"] * (3 if rgb is not None else 0))
        body = buf.getvalue().encode("ascii")
    return atomic_write_bytes(Path(path), ("\n".join(header) + "\n").encode("ascii") + body)


def load_point_cloud(path: str | Path, *, grid_size: float = 0.02, num_bins: int = 1280,
                     up: str = "+z") -> PointCloud:
    """A SpatialLM cloud from a file.

    * ``.ply``: world points (``up`` names their up axis) and colours, grid-sampled (:func:`grid_sample_points`).
    * ``.npz`` written by :func:`save_point_cloud` (``points`` (N, 9), ``grid_size``, ``num_bins``, ``origin``,
      ``up``): read as stored; an ``.npz`` with ``xyz`` (M, 3) and optional ``rgb`` (M, 3) is grid-sampled.
    Raises:
        InputFileError: unknown suffix, missing arrays, an (N, 9) array whose grid does not match its xyz.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        xyz, rgb = read_ply(path)
        rgb = np.full_like(xyz, 0.5, dtype=np.float32) if rgb is None else rgb
        return grid_sample_points(xyz, rgb, grid_size=grid_size, num_bins=num_bins, up=up)
    if suffix != ".npz":
        raise InputFileError(f"{path}: point clouds are read from .ply or .npz files", path=path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read point cloud {path}: {exc}", path=path) from exc
    if "points" in arrays:
        pts = np.asarray(arrays["points"], dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 9:
            raise InputFileError(f"{path}: 'points' must be (N, 9) [grid, xyz, rgb]; got {pts.shape}", path=path)
        size = float(arrays.get("grid_size", grid_size))
        grid = pts[:, :3].astype(np.int64)
        if len(pts) and np.abs(grid - np.clip(np.floor(pts[:, 3:6] / size), 0, None)).max() > 1:
            raise InputFileError(f"{path}: grid coordinates do not match xyz / grid_size ({size}); store grid_size "
                                 "with the cloud", path=path)
        return PointCloud(grid, pts[:, 3:6].copy(), pts[:, 6:9].copy(), size,
                          int(arrays.get("num_bins", num_bins)),
                          np.asarray(arrays.get("origin", np.zeros(3)), dtype=np.float64),
                          str(arrays.get("up", up)))
    if "xyz" not in arrays:
        raise InputFileError(f"{path}: needs 'points' (N, 9) or 'xyz' (M, 3) [+ 'rgb']; has {sorted(arrays)}",
                             path=path)
    xyz = arrays["xyz"]
    rgb = arrays.get("rgb", np.full(np.shape(xyz), 0.5, dtype=np.float32))
    return grid_sample_points(xyz, rgb, grid_size=grid_size, num_bins=num_bins, up=up)


def save_point_cloud(path: str | Path, cloud: PointCloud) -> Path:
    """``.npz``: the (N, 9) rows plus grid_size, num_bins, origin, up (read back exactly by
    :func:`load_point_cloud`); ``.ply``: the source-world points and colours."""
    path = Path(path)
    if path.suffix.lower() == ".ply":
        return write_ply(path, cloud.world_points(), cloud.rgb)
    if path.suffix.lower() != ".npz":
        raise ConfigError(f"{path}: save point clouds as .npz or .ply", field="path", value=str(path))
    import io

    from posevlm.atomic import atomic_write_bytes

    buf = io.BytesIO()
    extra: dict[str, Any] = {"grid_size": np.float64(cloud.grid_size), "num_bins": np.int64(cloud.num_bins),
                             "origin": cloud.origin, "up": np.str_(cloud.up)}
    np.savez(buf, points=cloud.to_array(), **extra)
    return atomic_write_bytes(path, buf.getvalue())
