"""SpatialLM layout scripts: the target built from a synthetic scan's exact ground truth, a parser, and a scorer
(oriented 3D box IoU, F1 at IoU thresholds).

Script (SpatialLM's language; one entity per line; metres in the **point cloud's frame**: z up, the cloud's
minimum at 0, i.e. ``p_cloud = R_up p_world - origin`` as in ``posevlm.scenes.pointcloud``)::

    wall_0=Wall(ax,ay,az,bx,by,bz,height,thickness)
    bbox_0=Bbox(category,x,y,z,angle_z,scale_x,scale_y,scale_z)

``(x, y, z)`` is a box's centre, ``angle_z`` its yaw (radians, about +z), ``scale_*`` its full extents along its
own axes. ``Door(...)`` / ``Window(...)`` lines parse but are not scored (the synthetic rooms have none).
Numbers are written with ``decimals`` (2: centimetres).

Scoring (per sample, per entity kind: ``walls``, ``boxes``): a wall is scored as a box (its segment's midpoint,
yaw along the segment, extents (length, max(thickness, ``wall_thickness``), height)); at IoU threshold t the true
positives are the **largest one-to-one matching** of predictions to ground-truth entities of the same category with
IoU >= t (maximum bipartite matching, not greedy; SpatialLM's own evaluation thresholds a Hungarian assignment
on IoU, which can match fewer). precision = tp / predicted, recall = tp / ground truth, F1 their harmonic mean;
an empty prediction for an empty ground truth scores 1, anything against an empty side 0. Lines that do not
parse are counted (``unparsed``) and dropped. :func:`aggregate_layout_scores` sums tp / counts over samples (micro).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError, ShapeError

__all__ = ["Wall", "Box", "Layout", "layout_from_metadata", "parse_layout_script", "box_iou_3d", "walls_as_boxes",
           "max_matching", "score_layout", "aggregate_layout_scores", "IOU_THRESHOLDS", "LAYOUT_PROMPT"]

IOU_THRESHOLDS = (0.25, 0.5)
#: the instruction paired with a layout target (SpatialLM's "all" prompt without the code template)
LAYOUT_PROMPT = "Detect walls, doors, windows, boxes."
_LINE = re.compile(r"^\s*(\w+)\s*=\s*(Wall|Bbox|Door|Window)\s*\((.*)\)\s*$")
_CATEGORY = re.compile(r"^[A-Za-z_][\w ]*$")


def _f(value: float, decimals: int) -> str:
    text = f"{float(value):.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.00"


@dataclass(frozen=True)
class Wall:
    """A wall segment from ``a`` to ``b`` (floor points (3,)), ``height`` and ``thickness`` in metres."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    height: float
    thickness: float = 0.0


@dataclass(frozen=True)
class Box:
    """An oriented box: ``category``, centre (3,), yaw ``angle_z`` (radians), full ``size`` (3,) on its own axes."""

    category: str
    center: tuple[float, float, float]
    angle_z: float
    size: tuple[float, float, float]


@dataclass(frozen=True)
class Layout:
    """Walls and boxes of one scene, in the point cloud's frame (module docstring)."""

    walls: tuple[Wall, ...] = ()
    boxes: tuple[Box, ...] = ()
    unscored: tuple[str, ...] = field(default=(), compare=False)

    def to_script(self, decimals: int = 2) -> str:
        """SpatialLM layout script, walls first (``wall_i``), then boxes (``bbox_i``)."""
        lines = [f"wall_{i}=Wall({','.join(_f(v, decimals) for v in (*w.a, *w.b, w.height, w.thickness))})"
                 for i, w in enumerate(self.walls)]
        lines += [f"bbox_{i}=Bbox({b.category},{','.join(_f(v, decimals) for v in (*b.center, b.angle_z, *b.size))})"
                  for i, b in enumerate(self.boxes)]
        return "\n".join(lines)


def layout_from_metadata(metadata: Mapping[str, Any], origin: Sequence[float] = (0.0, 0.0, 0.0)) -> Layout:
    """The exact layout of a synthetic scan (``scene.json`` metadata, z up) in a cloud frame shifted by ``origin``.

    Walls: the edges of ``room.polygon_xy`` (in order) on the floor (z = 0), ``room.height`` high, thickness 0
    (the synthetic walls are planes). Boxes: every object, axis-aligned (angle 0), its ``center`` and ``size``.
    Raises ConfigError when the metadata has no room / objects (not a synthetic scan)."""
    try:
        room, objects = metadata["room"], metadata["objects"]
        polygon = np.asarray(room["polygon_xy"], dtype=np.float64)
        height = float(room["height"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"metadata has no synthetic room / objects ({exc}); layout targets come from synthetic "
                          "scans (posevlm synth)", field="metadata", value=None) from None
    if metadata.get("up_axis", "z") != "z":
        raise ConfigError(f"layout targets need a z-up scan; got up_axis={metadata.get('up_axis')!r}",
                          field="up_axis", value=metadata.get("up_axis"))
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    ends = np.roll(polygon, -1, axis=0)
    walls = tuple(Wall((p[0] - o[0], p[1] - o[1], -o[2]), (q[0] - o[0], q[1] - o[1], -o[2]), height)
                  for p, q in zip(polygon.tolist(), ends.tolist()))
    boxes = tuple(Box(str(obj["category"]), tuple((np.asarray(obj["center"], float) - o).tolist()), 0.0,
                      tuple(float(s) for s in obj["size"])) for obj in objects)
    return Layout(walls, boxes)


def parse_layout_script(text: str) -> tuple[Layout, list[str]]:
    """(layout, lines that did not parse). Door / Window lines go to ``layout.unscored``."""
    walls, boxes, unscored, bad = [], [], [], []
    for line in str(text).splitlines():
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            bad.append(line)
            continue
        kind, args = m.group(2), [a.strip() for a in m.group(3).split(",")]
        try:
            if kind == "Wall" and len(args) == 8:
                v = [float(a) for a in args]
                walls.append(Wall(tuple(v[0:3]), tuple(v[3:6]), v[6], v[7]))
            elif kind == "Bbox" and len(args) == 8 and _CATEGORY.match(args[0]):
                v = [float(a) for a in args[1:]]
                boxes.append(Box(args[0], tuple(v[0:3]), v[3], tuple(v[4:7])))
            elif kind in ("Door", "Window"):
                unscored.append(line.strip())
            else:
                bad.append(line)
        except ValueError:
            bad.append(line)
    finite_walls = [w for w in walls if all(math.isfinite(x) for x in (*w.a, *w.b, w.height, w.thickness))]
    finite_boxes = [b for b in boxes if all(math.isfinite(x) for x in (*b.center, b.angle_z, *b.size))
                    and min(b.size) >= 0]
    bad += ["(non-finite or negative numbers)"] * (len(walls) + len(boxes) - len(finite_walls) - len(finite_boxes))
    return Layout(tuple(finite_walls), tuple(finite_boxes), tuple(unscored)), bad


# -- geometry -------------------------------------------------------------------------------------------------------
def _corners_bev(box: np.ndarray) -> np.ndarray:
    """(4, 2) counter-clockwise floor corners of a (7,) box [x, y, z, angle_z, sx, sy, sz]."""
    c, s = math.cos(box[3]), math.sin(box[3])
    hx, hy = box[4] / 2, box[5] / 2
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return local @ np.array([[c, s], [-s, c]]) + box[:2]


def _clip(subject: list[np.ndarray], a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Sutherland-Hodgman: the part of polygon ``subject`` left of the directed edge a -> b."""
    def side(p):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    out = []
    for i, cur in enumerate(subject):
        prev = subject[i - 1]
        s_cur, s_prev = side(cur), side(prev)
        if s_cur >= 0:
            if s_prev < 0:
                out.append(prev + (cur - prev) * (s_prev / (s_prev - s_cur)))
            out.append(cur)
        elif s_prev >= 0:
            out.append(prev + (cur - prev) * (s_prev / (s_prev - s_cur)))
    return out


def _area(poly: Sequence[np.ndarray]) -> float:
    if len(poly) < 3:
        return 0.0
    p = np.asarray(poly)
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))


def box_iou_3d(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Oriented (yaw) 3D IoU of every pair: floor-polygon intersection (convex clipping) x z overlap.

    Args:
        boxes_a: (N, 7), boxes_b: (M, 7) rows [x, y, z, angle_z, sx, sy, sz] (centre, yaw, full extents).
    Returns:
        (N, M) float64 in [0, 1]; boxes with zero volume have IoU 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 7)
    if (a[:, 4:] < 0).any() or (b[:, 4:] < 0).any():
        raise ShapeError("box extents (columns 4-6) must be >= 0", name="boxes", shape=a.shape)
    vol_a, vol_b = a[:, 4:].prod(1), b[:, 4:].prod(1)
    z_lo = np.maximum(a[:, None, 2] - a[:, None, 6] / 2, b[None, :, 2] - b[None, :, 6] / 2)
    z_hi = np.minimum(a[:, None, 2] + a[:, None, 6] / 2, b[None, :, 2] + b[None, :, 6] / 2)
    z_overlap = np.clip(z_hi - z_lo, 0, None)  # (N, M), vectorised
    # floor discs that cannot touch skip the clipping
    reach = np.hypot(a[:, None, 4], a[:, None, 5]) / 2 + np.hypot(b[None, :, 4], b[None, :, 5]) / 2
    near = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1]) < reach
    inter = np.zeros((len(a), len(b)))
    corners_b = [_corners_bev(x) for x in b]
    for i, j in zip(*np.nonzero(near & (z_overlap > 0))):  # few boxes per scene: the clipping runs per pair
        poly = list(_corners_bev(a[i]))
        cb = corners_b[j]
        for k in range(4):
            poly = _clip(poly, cb[k], cb[(k + 1) % 4])
            if not poly:
                break
        inter[i, j] = _area(poly) * z_overlap[i, j]
    union = vol_a[:, None] + vol_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def walls_as_boxes(walls: Sequence[Wall], min_thickness: float = 0.2) -> np.ndarray:
    """(W, 7) boxes of wall segments: midpoint, yaw along a -> b, extents (length, thickness, height)."""
    rows = []
    for w in walls:
        a, b = np.asarray(w.a, float), np.asarray(w.b, float)
        mid = (a + b) / 2
        rows.append([mid[0], mid[1], min(a[2], b[2]) + w.height / 2, math.atan2(b[1] - a[1], b[0] - a[0]),
                     float(np.hypot(*(b - a)[:2])), max(float(w.thickness), min_thickness), float(w.height)])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def _box_rows(boxes: Sequence[Box]) -> np.ndarray:
    return np.asarray([[*b.center, b.angle_z, *b.size] for b in boxes], dtype=np.float64).reshape(-1, 7)


def max_matching(adjacent: np.ndarray) -> int:
    """Size of the largest one-to-one matching in a bipartite graph (``adjacent`` (N, M) bool; Kuhn's
    augmenting paths: exact, O(N * E), fine for the tens of entities of a scene)."""
    adjacent = np.asarray(adjacent, dtype=bool)
    match_of = np.full(adjacent.shape[1], -1)

    def augment(i: int, seen: np.ndarray) -> bool:
        for j in np.flatnonzero(adjacent[i] & ~seen):
            seen[j] = True
            if match_of[j] < 0 or augment(int(match_of[j]), seen):
                match_of[j] = i
                return True
        return False

    return sum(augment(i, np.zeros(adjacent.shape[1], dtype=bool)) for i in range(adjacent.shape[0]))


def _prf(tp: int, n_pred: int, n_gt: int) -> dict[str, float | int]:
    if n_pred == 0 and n_gt == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gt if n_gt else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "n_pred": n_pred, "n_gt": n_gt}


def _kind_scores(pred_rows, pred_cats, gt_rows, gt_cats, thresholds) -> dict[str, dict]:
    iou = box_iou_3d(pred_rows, gt_rows)
    same = np.asarray(pred_cats, dtype=object)[:, None] == np.asarray(gt_cats, dtype=object)[None, :]
    return {f"{t:g}": _prf(max_matching((iou >= t) & same.reshape(iou.shape)), len(pred_rows), len(gt_rows))
            for t in thresholds}


def score_layout(prediction: str | Layout, target: str | Layout, *, thresholds: Sequence[float] = IOU_THRESHOLDS,
                 wall_thickness: float = 0.2) -> dict[str, Any]:
    """Scores of one predicted layout (script text or Layout) against its target (module docstring).

    Returns ``{"walls": {"0.25": {precision, recall, f1, tp, n_pred, n_gt}, "0.5": ...}, "boxes": {...},
    "unparsed": int}``."""
    if any(not 0 < t <= 1 for t in thresholds):
        raise ConfigError(f"IoU thresholds must be in (0, 1]; got {list(thresholds)}", field="thresholds",
                          value=list(thresholds))
    bad: list[str] = []
    if isinstance(prediction, str):
        prediction, bad = parse_layout_script(prediction)
    if isinstance(target, str):
        target, target_bad = parse_layout_script(target)
        if target_bad:
            raise ConfigError(f"the target layout script has {len(target_bad)} unparsable lines, e.g. "
                              f"{target_bad[0]!r}", field="target", value=target_bad[:3])
    return {
        "walls": _kind_scores(walls_as_boxes(prediction.walls, wall_thickness), ["wall"] * len(prediction.walls),
                              walls_as_boxes(target.walls, wall_thickness), ["wall"] * len(target.walls), thresholds),
        "boxes": _kind_scores(_box_rows(prediction.boxes), [b.category for b in prediction.boxes],
                              _box_rows(target.boxes), [b.category for b in target.boxes], thresholds),
        "unparsed": len(bad),
    }


def aggregate_layout_scores(scores: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Micro average over samples: tp, predicted and ground-truth counts summed per kind and threshold, then
    precision / recall / F1; ``unparsed`` summed; ``samples`` counted."""
    totals: dict[str, dict[str, list[int]]] = {}
    unparsed = samples = 0
    for s in scores:
        samples += 1
        unparsed += int(s.get("unparsed", 0))
        for kind in ("walls", "boxes"):
            for t, v in s[kind].items():
                acc = totals.setdefault(kind, {}).setdefault(t, [0, 0, 0])
                acc[0] += v["tp"]
                acc[1] += v["n_pred"]
                acc[2] += v["n_gt"]
    out: dict[str, Any] = {kind: {t: _prf(*acc) for t, acc in by_t.items()} for kind, by_t in totals.items()}
    out.update(unparsed=unparsed, samples=samples, average="micro")
    return out
