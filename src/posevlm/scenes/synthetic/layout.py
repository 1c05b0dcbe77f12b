"""Procedural rooms (rectangular, L-shaped or several rooms joined by doorways) furnished with
non-overlapping axis-aligned boxes.

World frame: metres, z up, floor at z = 0, ceiling at z = ``room.height``. The floor is the union of
R axis-aligned rectangles ``boxes_xy`` (R, 4) ``[xmin, ymin, xmax, ymax]`` (R = 1 rectangular, R = 2
L-shaped, the two rectangles overlapping; multi-room: 2-3 rooms in a row separated by 15 cm walls,
each pair joined by a doorway rectangle through the wall, R = 3 or 5); the interior is that union
extruded from 0 to height, and ``polygon_xy`` its outline (interior walls and door jambs included).
Objects are axis-aligned boxes resting on the floor; a quarter-turn yaw is a swap of x and y extents.

Placement keeps a walkway free: a loop inset from the walls (the outline offset inwards by a wall
band deep enough for the wall objects, plus the walkway half-width; in narrow arms the loop collapses
into a corridor; multi-room: one loop per room plus a corridor through every doorway), with every
object footprint >= ``_WALKWAY_HALF_WIDTH_M`` away from it, so the trajectory planner always finds
connected free floor with clearance from objects and walls.

``clutter=True`` draws from every category (the 14 standard ones and 9 small clutter ones, weighted
towards the small ones) and places more objects by default (0.45-0.75 per m² of floor, up to 60):
more instances per category, smaller objects, more occlusion.

Shapes: N points, R floor rectangles, V outline vertices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from posevlm.errors import ConfigError, PosevlmError, SchemaVersionError, ShapeError
from posevlm.scenes.synthetic.categories import CATEGORIES, CATEGORY_NAMES, STANDARD_CATEGORY_NAMES, Category

__all__ = [
    "Room",
    "SceneObject",
    "Layout",
    "generate_layout",
    "points_in_room_xy",
    "distance_to_walls_xy",
    "distance_to_footprints_xy",
    "LAYOUT_SCHEMA_VERSION",
    "ROOM_SHAPES",
]

LAYOUT_SCHEMA_VERSION = 1
#: room shapes of ``generate_layout`` (None = random rect / L)
ROOM_SHAPES: tuple[str, ...] = ("rect", "L", "multi")
_MIN_OBJECTS, _MAX_OBJECTS = 5, 25  # default range of standard layouts
_MAX_REQUESTED = 60  # most objects one may request (clutter layouts reach it in large spaces)
_INTERIOR_WALL_M = 0.15  # thickness of the walls between the rooms of a multi-room layout
_WALKWAY_HALF_WIDTH_M = 0.45  # objects keep this distance from the walkway loop
_OBJECT_GAP_M = 0.05  # minimum footprint-to-footprint gap
_WALL_GAP_M = 0.03  # minimum footprint-to-wall gap (no coplanar faces for the renderer)
_MAX_ATTEMPTS = 80  # placement tries per requested object before it is skipped
# relative sampling frequency: several chairs per room so counting questions are interesting
_WEIGHTS = {"chair": 4.0, "stool": 1.5, "plant": 1.5, "trash_can": 1.5, "lamp": 1.2, "table": 1.2,
            "cabinet": 1.0, "bookshelf": 1.0, "desk": 0.8, "sofa": 0.8, "tv": 0.7, "bed": 0.5,
            "refrigerator": 0.4, "toilet": 0.3,
            # clutter categories (only drawn by clutter layouts)
            "backpack": 1.5, "box": 2.0, "basket": 1.2, "suitcase": 0.8, "fan": 0.8, "speaker": 1.0,
            "vase": 1.0, "nightstand": 0.8, "ottoman": 0.8}  # fmt: skip
_SMALL = ("trash_can", "stool", "plant", "lamp", "chair")  # used to top up to _MIN_OBJECTS


def _readonly(x: Any, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    a = np.array(x, dtype=np.float64)
    if a.ndim != len(shape_tail) or any(t != -1 and s != t for s, t in zip(a.shape, shape_tail)):
        want = ", ".join("n" if t == -1 else str(t) for t in shape_tail)
        raise ShapeError(f"{name} must have shape ({want}); got {a.shape}.", name=name, shape=a.shape)
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} must be finite; got {a.tolist()}.", field=name, value=a.tolist())
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Room:
    """Room structure. ``boxes_xy`` (R, 4) float64 [xmin, ymin, xmax, ymax], floor = their union;
    ``height`` metres; ``polygon_xy`` (V, 2) outline, counter-clockwise; ``floor_area_m2`` exact area."""

    boxes_xy: np.ndarray
    height: float
    polygon_xy: np.ndarray
    floor_area_m2: float

    def __post_init__(self) -> None:
        boxes = _readonly(self.boxes_xy, (-1, 4), "boxes_xy")
        if len(boxes) == 0 or (boxes[:, 2:] <= boxes[:, :2]).any():
            raise ConfigError(f"boxes_xy needs >= 1 box with xmin < xmax, ymin < ymax; got {boxes.tolist()}.",
                              field="boxes_xy", value=boxes.tolist())
        poly = _readonly(self.polygon_xy, (-1, 2), "polygon_xy")
        if len(poly) < 3 or _shoelace(poly) <= 0:
            raise ConfigError("polygon_xy must be a counter-clockwise outline with >= 3 vertices.",
                              field="polygon_xy", value=poly.tolist())
        if not self.height > 0:
            raise ConfigError(f"height must be > 0; got {self.height}.", field="height", value=self.height)
        area = _union_area(boxes)
        if abs(area - float(self.floor_area_m2)) > 1e-6 * max(1.0, area):
            raise ConfigError(f"floor_area_m2={self.floor_area_m2} differs from the area {area} of the union "
                              "of boxes_xy.", field="floor_area_m2", value=self.floor_area_m2)
        object.__setattr__(self, "boxes_xy", boxes)
        object.__setattr__(self, "polygon_xy", poly)
        object.__setattr__(self, "height", float(self.height))
        object.__setattr__(self, "floor_area_m2", float(self.floor_area_m2))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Room) and _room_dict(self) == _room_dict(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One axis-aligned box on the floor. ``center`` (3,) world; ``size`` (3,) full extents along
    world x, y, z; ``instance_id`` 1..n in placement order (0 is the room structure)."""

    instance_id: int
    category: str
    center: np.ndarray
    size: np.ndarray
    color_rgb: tuple[int, int, int]

    def __post_init__(self) -> None:
        center = _readonly(self.center, (3,), "center")
        size = _readonly(self.size, (3,), "size")
        if (size <= 0).any():
            raise ConfigError(f"object {self.instance_id}: size must be > 0; got {size.tolist()}.",
                              field="size", value=size.tolist())
        if int(self.instance_id) < 1:
            raise ConfigError(f"instance_id must be >= 1 (0 is the room); got {self.instance_id}.",
                              field="instance_id", value=self.instance_id)
        rgb = tuple(int(c) for c in self.color_rgb)
        if len(rgb) != 3 or any(not 0 <= c <= 255 for c in rgb):
            raise ConfigError(f"color_rgb must be 3 ints in [0, 255]; got {self.color_rgb}.",
                              field="color_rgb", value=self.color_rgb)
        object.__setattr__(self, "instance_id", int(self.instance_id))
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "color_rgb", rgb)

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) [min_xyz, max_xyz]."""
        return np.stack([self.center - self.size / 2, self.center + self.size / 2])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SceneObject) and _object_dict(self) == _object_dict(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Layout:
    """A furnished room: ``room`` and ``objects`` (instance ids unique, >= 1)."""

    room: Room
    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        ids = [o.instance_id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"instance ids must be unique; got {ids}.", field="objects", value=ids)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (lists and floats); inverse of :meth:`from_dict`."""
        return {"schema_version": LAYOUT_SCHEMA_VERSION, "units": "m", "up_axis": "z",
                "room": _room_dict(self.room), "objects": [_object_dict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        """Rebuild a layout written by :meth:`to_dict` (raises ``ConfigError`` naming a missing key)."""
        version = d.get("schema_version", LAYOUT_SCHEMA_VERSION)
        if version > LAYOUT_SCHEMA_VERSION:
            raise SchemaVersionError(f"layout schema_version {version} is newer than "
                                     f"{LAYOUT_SCHEMA_VERSION}; upgrade posevlm to read it.")
        try:
            r = d["room"]
            room = Room(np.asarray(r["boxes_xy"]), r["height"], np.asarray(r["polygon_xy"]),
                        r["floor_area_m2"])
            objects = tuple(SceneObject(o["instance_id"], o["category"], np.asarray(o["center"]),
                                        np.asarray(o["size"]), tuple(o["color_rgb"])) for o in d["objects"])
        except KeyError as e:
            raise ConfigError(f"layout dict is missing key {e}; expected the output of Layout.to_dict().",
                              field=str(e), value=None) from None
        return cls(room, objects)


def _room_dict(room: Room) -> dict:
    return {"boxes_xy": room.boxes_xy.tolist(), "height": room.height, "polygon_xy": room.polygon_xy.tolist(),
            "floor_area_m2": room.floor_area_m2}


def _object_dict(o: SceneObject) -> dict:
    return {"instance_id": o.instance_id, "category": o.category, "center": o.center.tolist(),
            "size": o.size.tolist(), "color_rgb": list(o.color_rgb)}


# ----------------------------------------------------------------------------- planar geometry


def _shoelace(poly_xy: np.ndarray) -> float:
    """Signed area of a (V, 2) polygon (> 0 when counter-clockwise)."""
    x, y = poly_xy[:, 0], poly_xy[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _union_area(boxes_xy: np.ndarray) -> float:
    """Exact area of a union of (R, 4) rectangles by coordinate compression."""
    xs, ys = np.unique(boxes_xy[:, [0, 2]]), np.unique(boxes_xy[:, [1, 3]])
    mx, my = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    cx, cy = np.meshgrid(mx, my, indexing="ij")
    covered = _points_in_boxes_xy(boxes_xy, np.stack([cx.ravel(), cy.ravel()], -1)).reshape(cx.shape)
    return float(np.sum(np.outer(np.diff(xs), np.diff(ys)) * covered))


def _points_in_boxes_xy(boxes_xy: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """(R, 4) rectangles, (N, 2) points -> (N,) bool: inside (closed) at least one rectangle."""
    p = np.asarray(points_xy, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_xy, dtype=np.float64)[None]
    return ((p >= b[..., :2]) & (p <= b[..., 2:])).all(-1).any(-1)


def points_in_room_xy(room: Room, points_xy: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N,) bool: inside (closed) the floor union of ``room``."""
    return _points_in_boxes_xy(room.boxes_xy, points_xy)


def _rect_in_union(rect: np.ndarray, boxes_xy: np.ndarray) -> bool:
    """Whether rectangle [xmin, ymin, xmax, ymax] lies inside the union of (R, 4) rectangles."""
    xs = np.unique(np.clip(np.concatenate([rect[[0, 2]], boxes_xy[:, [0, 2]].ravel()]), rect[0], rect[2]))
    ys = np.unique(np.clip(np.concatenate([rect[[1, 3]], boxes_xy[:, [1, 3]].ravel()]), rect[1], rect[3]))
    cx, cy = np.meshgrid((xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2, indexing="ij")
    return bool(_points_in_boxes_xy(boxes_xy, np.stack([cx.ravel(), cy.ravel()], -1)).all())


def _segment_distance(points_xy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 2) points, (M, 2) segment ends a, b -> (N, M) Euclidean distances."""
    p = np.asarray(points_xy, dtype=np.float64)[:, None, :]
    ab = b - a
    s = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0.0, 1.0)
    return np.linalg.norm(p - (a + s[..., None] * ab), axis=-1)


def distance_to_walls_xy(room: Room, points_xy: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N,) distance to the nearest wall (outline edge) of ``room``."""
    a = room.polygon_xy
    return _segment_distance(points_xy, a, np.roll(a, -1, axis=0)).min(-1)


def _rect_distance(rects_a: np.ndarray, rects_b: np.ndarray) -> np.ndarray:
    """(..., 4) x (..., 4) rectangles -> (...) Euclidean gap (0 when they touch or overlap)."""
    dx = np.maximum(0.0, np.maximum(rects_a[..., 0] - rects_b[..., 2], rects_b[..., 0] - rects_a[..., 2]))
    dy = np.maximum(0.0, np.maximum(rects_a[..., 1] - rects_b[..., 3], rects_b[..., 1] - rects_a[..., 3]))
    return np.hypot(dx, dy)


def _footprints(objects: tuple[SceneObject, ...] | list[SceneObject]) -> np.ndarray:
    """(n, 4) [xmin, ymin, xmax, ymax] of the objects' footprints."""
    if len(objects) == 0:
        return np.zeros((0, 4))
    b = np.stack([o.bounds for o in objects])  # (n, 2, 3)
    return np.stack([b[:, 0, 0], b[:, 0, 1], b[:, 1, 0], b[:, 1, 1]], -1)


def distance_to_footprints_xy(objects: tuple[SceneObject, ...], points_xy: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N,) distance to the nearest object footprint (0 inside; inf without objects)."""
    p = np.asarray(points_xy, dtype=np.float64)
    if len(objects) == 0:
        return np.full(len(p), np.inf)
    pts = np.concatenate([p, p], -1)[:, None, :]  # degenerate rectangles
    return _rect_distance(pts, _footprints(objects)[None]).min(-1)


# ----------------------------------------------------------------------------- generation


def _generate_room(rng: np.random.Generator, shape: str) -> tuple[Room, float]:
    """A room and the width of its narrowest arm (metres)."""
    height = float(rng.uniform(2.4, 3.0))
    if shape == "rect":
        lx, ly = rng.uniform(3.0, 9.0, size=2)
        x0, y0, x1, y1 = -lx / 2, -ly / 2, lx / 2, ly / 2
        boxes = np.array([[x0, y0, x1, y1]])
        poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        min_arm = min(lx, ly)
    else:  # L: bounding rectangle minus its (+x, +y) corner, then a random quarter turn
        lx, ly = rng.uniform(5.0, 9.0, size=2)
        cx, cy = lx * rng.uniform(0.3, 0.5), ly * rng.uniform(0.3, 0.5)
        x0, y0, x1, y1 = -lx / 2, -ly / 2, lx / 2, ly / 2
        boxes = np.array([[x0, y0, x1, y1 - cy], [x0, y0, x1 - cx, y1]])
        poly = np.array([[x0, y0], [x1, y0], [x1, y1 - cy], [x1 - cx, y1 - cy], [x1 - cx, y1], [x0, y1]])
        min_arm = min(lx - cx, ly - cy)
        for _ in range(int(rng.integers(4))):  # (x, y) -> (-y, x) keeps orientation and exactness
            boxes = np.stack([-boxes[:, 3], boxes[:, 0], -boxes[:, 1], boxes[:, 2]], -1)
            poly = np.stack([-poly[:, 1], poly[:, 0]], -1)
    return Room(boxes, height, poly, _union_area(boxes)), float(min_arm)


def _quarter_turn(rects: np.ndarray, poly: np.ndarray | None, turns: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate (n, 4) rectangles and a (V, 2) outline by ``turns`` quarter turns, (x, y) -> (-y, x)
    each: exact, keeps rectangles axis-aligned and outlines counter-clockwise."""
    for _ in range(turns):
        rects = np.stack([-rects[:, 3], rects[:, 0], -rects[:, 1], rects[:, 2]], -1)
        poly = None if poly is None else np.stack([-poly[:, 1], poly[:, 0]], -1)
    return rects, poly


def _generate_multi_room(rng: np.random.Generator) -> tuple[Room, np.ndarray, np.ndarray]:
    """2-3 rooms in a row joined by doorways, then a random quarter turn.

    Built along +x: room k spans [a_k, b_k] x [c_k, d_k] (3-5 m by 3.5-5.5 m, shifted by up to 0.6 m
    in y), walls ``_INTERIOR_WALL_M`` thick between rooms, and a 1.2-1.5 m doorway through each wall at
    least 0.3 m from the rooms' corners. Returns the room, the (n, 4) room rectangles and the (n - 1, 4)
    doorway rectangles (rotated like the room).
    """
    height = float(rng.uniform(2.4, 3.0))
    n = int(rng.integers(2, 4))
    lx, ly = rng.uniform(3.0, 5.0, size=n), rng.uniform(3.5, 5.5, size=n)
    c = rng.uniform(-0.6, 0.6, size=n) - ly / 2
    a = np.concatenate([[0.0], np.cumsum(lx[:-1] + _INTERIOR_WALL_M)])
    a -= (a[-1] + lx[-1]) / 2
    rooms = np.stack([a, c, a + lx, c + ly], -1)
    doors = []
    for k in range(n - 1):
        w = float(rng.uniform(1.2, 1.5))
        lo = max(rooms[k, 1], rooms[k + 1, 1]) + 0.3
        hi = min(rooms[k, 3], rooms[k + 1, 3]) - 0.3 - w
        y0 = float(rng.uniform(lo, max(hi, lo)))
        doors.append([rooms[k, 2], y0, rooms[k + 1, 0], y0 + w])
    doors = np.array(doors)
    bottom, top = [], []
    for k in range(n):  # outline: bottom chain left to right, top chain right to left
        bottom += [(rooms[k, 0], rooms[k, 1]), (rooms[k, 2], rooms[k, 1])]
        if k < n - 1:
            bottom += [(doors[k, 0], doors[k, 1]), (doors[k, 2], doors[k, 1])]
    for k in range(n - 1, -1, -1):
        top += [(rooms[k, 2], rooms[k, 3]), (rooms[k, 0], rooms[k, 3])]
        if k > 0:
            top += [(doors[k - 1, 2], doors[k - 1, 3]), (doors[k - 1, 0], doors[k - 1, 3])]
    poly = np.array(bottom + top)
    turns = int(rng.integers(4))
    rooms, poly = _quarter_turn(rooms, poly, turns)
    doors, _ = _quarter_turn(doors, None, turns)
    boxes = np.concatenate([rooms, doors])
    return Room(boxes, height, poly, _union_area(boxes)), rooms, doors


def _segment_rect(a: tuple[float, float], b: tuple[float, float]) -> list[float]:
    """An axis-aligned segment as a degenerate rectangle [xmin, ymin, xmax, ymax]."""
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])]


def _multi_room_walkway(rooms: np.ndarray, doors: np.ndarray, d: float) -> np.ndarray:
    """(m, 4) thin rectangles: each room's loop inset by ``d`` and, through every doorway, a corridor
    along the door's axis joined to both loops (so the loops connect through the doors)."""
    segs = []
    inset = rooms + np.array([d, d, -d, -d])
    for x0, y0, x1, y1 in inset:
        segs += [_segment_rect((x0, y0), (x1, y0)), _segment_rect((x1, y0), (x1, y1)),
                 _segment_rect((x0, y1), (x1, y1)), _segment_rect((x0, y0), (x0, y1))]
    for x0, y0, x1, y1 in doors:
        across = 0 if x1 - x0 < y1 - y0 else 1  # the door's thin side is the wall's thickness: walk across it
        mid = (np.array([x0, y0]) + np.array([x1, y1])) / 2
        sides = [k for k in range(len(rooms)) if _rect_distance(np.array([x0, y0, x1, y1]), rooms[k]) == 0.0]
        for k in sides:  # from the door centre into room k up to its loop line, then along it to the loop
            r, lo_hi = inset[k], (inset[k, across], inset[k, across + 2])
            end = np.array(mid)
            end[across] = lo_hi[0] if abs(lo_hi[0] - mid[across]) < abs(lo_hi[1] - mid[across]) else lo_hi[1]
            corner = end.copy()
            corner[1 - across] = np.clip(mid[1 - across], r[1 - across], r[3 - across])
            segs += [_segment_rect(tuple(mid), tuple(end)), _segment_rect(tuple(end), tuple(corner))]
    return np.array(segs)


def _inset_rectilinear(poly_xy: np.ndarray, d: float) -> np.ndarray:
    """Offset a counter-clockwise rectilinear polygon inwards by ``d`` (valid while d < half an arm)."""
    edge = np.roll(poly_xy, -1, axis=0) - poly_xy
    edge /= np.linalg.norm(edge, axis=1, keepdims=True)
    inward = np.stack([-edge[:, 1], edge[:, 0]], -1)  # left of a CCW edge
    return poly_xy + d * (inward + np.roll(inward, 1, axis=0))


def _try_place(rect: np.ndarray, room: Room, placed: list[np.ndarray], walkway_rects: np.ndarray) -> bool:
    """Whether footprint ``rect`` keeps its gaps to walls, placed footprints and the walkway."""
    if _rect_distance(rect, walkway_rects).min() < _WALKWAY_HALF_WIDTH_M:
        return False
    if placed and _rect_distance(rect, np.stack(placed)).min() < _OBJECT_GAP_M:
        return False
    grown = rect + np.array([-1, -1, 1, 1]) * _WALL_GAP_M
    if len(room.boxes_xy) == 1:
        return bool((grown[:2] >= room.boxes_xy[0, :2]).all() and (grown[2:] <= room.boxes_xy[0, 2:]).all())
    return _rect_in_union(grown, room.boxes_xy)


def _propose(rng: np.random.Generator, cat: Category, size: np.ndarray, room: Room,
             placed: list[np.ndarray], placed_cats: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One candidate (footprint rect (4,), footprint size (2,)) for an object of ``cat``."""
    length, width = size[0], size[1]
    if cat.against_wall:
        poly = room.polygon_xy
        edges = np.roll(poly, -1, axis=0) - poly
        lengths = np.linalg.norm(edges, axis=1)
        k = int(rng.choice(len(poly), p=lengths / lengths.sum()))
        along, n = edges[k] / lengths[k], np.array([-edges[k][1], edges[k][0]]) / lengths[k]
        slack = lengths[k] - length - 2 * _WALL_GAP_M
        t = _WALL_GAP_M + length / 2 + rng.uniform(0, max(slack, 0.0))
        c = poly[k] + along * t + n * (_WALL_GAP_M + 1e-3 + width / 2)
        fp = np.abs(along) * length + np.abs(n) * width
    else:
        fp = np.array([length, width]) if rng.random() < 0.5 else np.array([width, length])
        hosts = [r for r, name in zip(placed, placed_cats) if name in ("table", "desk")]
        if cat.name in ("chair", "stool") and hosts and rng.random() < 0.7:  # pull up to a table
            host = hosts[int(rng.integers(len(hosts)))]
            axis, side = int(rng.integers(2)), int(rng.integers(2))
            c = np.empty(2)
            off = rng.uniform(0.06, 0.2) + fp[axis] / 2
            c[axis] = host[2 + axis] + off if side else host[axis] - off
            c[1 - axis] = rng.uniform(host[1 - axis], host[3 - axis])
        else:
            lo, hi = room.boxes_xy[:, :2].min(0) + fp / 2, room.boxes_xy[:, 2:].max(0) - fp / 2
            c = rng.uniform(lo, np.maximum(hi, lo))
    return np.concatenate([c - fp / 2, c + fp / 2]), fp


def generate_layout(rng: np.random.Generator, *, num_objects: int | None = None,
                    room_shape: Literal["rect", "L", "multi"] | None = None, clutter: bool = False) -> Layout:
    """A random furnished room (or set of rooms), deterministic given ``rng``.

    Args:
        rng: numpy Generator; consumed (pass ``np.random.default_rng(seed)``).
        num_objects: objects requested, 5..60; default random in [5, min(25, 5 + area / 2)] so small
            rooms are not crammed (clutter: in [0.45, 0.75] x area, clipped to 5..60).
        room_shape: "rect", "L" or "multi" (2-3 rooms joined by doorways); default random rect (60%) / L.
        clutter: draw from every category, small clutter ones included (see the module docstring).
    Returns:
        A ``Layout``: room sides 3-9 m (L rooms 5-9 m with arms >= 2.5 m; multi: rooms 3-5 x 3.5-5.5 m),
        height 2.4-3.0 m; objects on the floor, footprints >= 5 cm apart and inside the room, wall
        categories against a wall, every footprint >= 0.45 m from the walkway. A requested object that
        still collides after 80 attempts is skipped, so fewer than ``num_objects`` may come back; small
        objects (trash can, stool, plant, lamp, chair) are then added until at least 5 are placed.
        Standard layouts (``clutter=False``, rect / L) are exactly those of earlier versions.
    Raises:
        ConfigError: ``num_objects`` outside 5..60 or an unknown ``room_shape``.
    """
    if room_shape not in (None, *ROOM_SHAPES):
        raise ConfigError(f"room_shape must be one of {list(ROOM_SHAPES)} or None; got {room_shape!r}.",
                          field="room_shape", value=room_shape)
    if num_objects is not None and not _MIN_OBJECTS <= int(num_objects) <= _MAX_REQUESTED:
        raise ConfigError(f"num_objects must be in [{_MIN_OBJECTS}, {_MAX_REQUESTED}]; got {num_objects}.",
                          field="num_objects", value=num_objects)
    shape = room_shape or ("rect" if rng.random() < 0.6 else "L")
    if shape == "multi":
        room, rooms, doors = _generate_multi_room(rng)
        min_arm = float(np.min(rooms[:, 2:] - rooms[:, :2]))
    else:
        room, min_arm = _generate_room(rng, shape)
    if num_objects is None and clutter:
        lo, hi = np.clip(np.array([0.45, 0.75]) * room.floor_area_m2, _MIN_OBJECTS, _MAX_REQUESTED).astype(int)
        num_objects = int(rng.integers(lo, hi + 1))
    elif num_objects is None:
        upper = int(np.clip(5 + room.floor_area_m2 / 2, _MIN_OBJECTS, _MAX_OBJECTS))
        num_objects = int(rng.integers(_MIN_OBJECTS, upper + 1))
    names = list(CATEGORY_NAMES if clutter else STANDARD_CATEGORY_NAMES)
    weights = np.array([_WEIGHTS.get(n, 1.0) for n in names])
    picks = [names[i] for i in rng.choice(len(names), size=int(num_objects), p=weights / weights.sum())]
    sizes = [rng.uniform(CATEGORIES[n].size_min_m, CATEGORIES[n].size_max_m) for n in picks]
    # walkway loop: the outline inset by a wall band deep enough for the deepest wall object (when the
    # room allows) plus the walkway half-width; in narrow arms the loop collapses into a corridor
    depth = max([sizes[i][1] for i, n in enumerate(picks) if CATEGORIES[n].against_wall], default=0.3)
    cap = min(2.0, min_arm / 2 - _WALKWAY_HALF_WIDTH_M - 0.05)
    band = float(np.clip(depth + 2 * _WALL_GAP_M + rng.uniform(0.0, 0.3), 0.45, cap))
    if shape == "multi":
        walkway_rects = _multi_room_walkway(rooms, doors, band + _WALKWAY_HALF_WIDTH_M)
    else:
        walkway = _inset_rectilinear(room.polygon_xy, band + _WALKWAY_HALF_WIDTH_M)
        ends = np.roll(walkway, -1, axis=0)  # walkway edges are axis-aligned: store them as thin rectangles
        walkway_rects = np.concatenate([np.minimum(walkway, ends), np.maximum(walkway, ends)], -1)
    # wall objects first, then free-standing ones; larger footprints first (tables before chairs)
    order = sorted(range(len(picks)), key=lambda i: (not CATEGORIES[picks[i]].against_wall,
                                                     -sizes[i][0] * sizes[i][1], i))
    queue = [(picks[i], sizes[i]) for i in order]
    placed: list[np.ndarray] = []
    placed_cats: list[str] = []
    objects: list[SceneObject] = []
    k_small = 0
    while queue or len(objects) < _MIN_OBJECTS:
        if not queue:  # top up with small objects (bounded: 2000 small tries in total)
            if k_small >= 2000 // _MAX_ATTEMPTS:
                raise PosevlmError(f"could not place {_MIN_OBJECTS} objects in {room.boxes_xy.tolist()}.")
            name = _SMALL[k_small % len(_SMALL)]
            k_small += 1
            queue.append((name, rng.uniform(CATEGORIES[name].size_min_m, CATEGORIES[name].size_max_m)))
        name, size = queue.pop(0)
        cat = CATEGORIES[name]
        for _ in range(_MAX_ATTEMPTS):  # skipped if it never fits
            rect, fp = _propose(rng, cat, size, room, placed, placed_cats)
            if _try_place(rect, room, placed, walkway_rects):
                jitter = rng.integers(-18, 19, size=3)
                color = tuple(int(v) for v in np.clip(np.array(cat.color_rgb) + jitter, 0, 255))
                center = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2, size[2] / 2])
                objects.append(SceneObject(len(objects) + 1, name, center, np.array([*fp, size[2]]), color))
                placed.append(rect)
                placed_cats.append(name)
                break
    return Layout(room, tuple(objects))
