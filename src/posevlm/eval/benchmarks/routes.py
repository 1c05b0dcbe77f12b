"""Route planning in VSI-Bench's format, from exact floor-plane geometry (pure numpy, no I/O).

A VSI-Bench route question reads::

    You are a robot beginning at the bed facing the tv. You want to navigate to the toilet. You will
    perform the following actions (Note: for each [please fill in], choose either 'turn back,' 'turn
    left,' or 'turn right.'): 1. Go forward until the tv. 2. [please fill in] 3. Go forward until the
    sofa. 4. [please fill in] 5. Go forward until the toilet. You have reached the final destination.

with options such as ``"A. Turn Back, Turn Left"``. Here a route is a polyline through object centres
(floor plane, world z up): the robot starts at the start object's centre facing the facing object's
centre and walks straight legs from waypoint to waypoint (the last one is the goal). Two templates:

- ``"facing_first"``: the facing object is the first waypoint, so step 1 is "Go forward until" it and
  every turn happens at a waypoint;
- ``"turn_first"``: the facing object is not on the route, so step 1 is a turn in place from the
  facing direction towards the first waypoint.

A turn is the signed angle between the walking direction before and after it (positive = counter-
clockwise seen from above = to the left; :func:`turn_angle_deg`), named by :func:`turn_label`:
``back`` when |angle| >= 135 degrees (the rel-direction "back" rule), else ``left`` / ``right``.
Generated routes keep every turn >= ``TURN_MARGIN_DEG`` away from the 45 / 135 degree boundaries and
never near straight ahead (VSI-Bench offers no "go straight" choice), and every leg walkable:
inside the floor (:func:`segment_in_floor`, exact for a union of rectangles, so multi-room legs pass
through doorways) and >= ``LEG_CLEARANCE_M`` from every other object's footprint
(:func:`segment_rect_distance`, exact).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "TURNS", "TURN_MARGIN_DEG", "LEG_CLEARANCE_M", "MIN_LEG_M", "ROUTE_TEMPLATES", "turn_angle_deg", "turn_label",
    "turn_margin_deg", "route_turn_points", "route_turn_angles", "segment_in_floor", "segment_rect_distance",
    "route_question", "turn_option_text",
]  # fmt: skip

#: the fill-in choices of VSI-Bench route questions
TURNS: tuple[str, ...] = ("left", "right", "back")
#: generated turns keep this far (degrees) from the forward / side / back boundaries at 45 and 135
TURN_MARGIN_DEG = 15.0
#: a leg keeps this far (metres) from every object footprint other than its two ends
LEG_CLEARANCE_M = 0.1
#: shortest leg (metres): "go forward until" must mean a walk, and short legs make angles fragile
MIN_LEG_M = 1.0
ROUTE_TEMPLATES: tuple[str, ...] = ("facing_first", "turn_first")
_NOTE = ("You will perform the following actions (Note: for each [please fill in], choose either 'turn back,' "
         "'turn left,' or 'turn right.'): ")


def turn_angle_deg(before_xy: Sequence[float], after_xy: Sequence[float]) -> float:
    """Signed angle in (-180, 180] degrees from direction ``before_xy`` to ``after_xy`` (2-vectors);
    positive = counter-clockwise seen from above (world z up) = a left turn."""
    a, b = np.asarray(before_xy, float)[:2], np.asarray(after_xy, float)[:2]
    return float(np.degrees(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b)))


def turn_label(angle_deg: float) -> str:
    """``back`` when |angle| >= 135 degrees, else ``left`` (angle > 0) or ``right``."""
    if abs(angle_deg) >= 135.0:
        return "back"
    return "left" if angle_deg > 0 else "right"


def turn_margin_deg(angle_deg: float) -> float:
    """Distance (degrees) of |angle| from the boundaries 45 (forward / side) and 135 (side / back);
    negative when the turn is closer to straight ahead than 45 degrees (not a VSI-Bench turn)."""
    a = abs(angle_deg)
    return a - 45.0 if a < 90.0 else min(a - 45.0, abs(a - 135.0))


def route_turn_points(template: str, start_xy: np.ndarray, facing_xy: np.ndarray,
                      waypoints_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (T, 2) incoming and (T, 2) outgoing walking directions of every turn of a route, in order.

    Args:
        template: ``"facing_first"`` (waypoints_xy[0] is the facing object) or ``"turn_first"``.
        start_xy, facing_xy: (2,) centres; waypoints_xy: (W, 2) centres, the goal last.
    """
    path = np.concatenate([np.asarray(start_xy, float)[None, :2], np.asarray(waypoints_xy, float)[:, :2]])
    legs = np.diff(path, axis=0)  # (W, 2)
    before, after = legs[:-1], legs[1:]
    if template == "turn_first":
        before = np.concatenate([(np.asarray(facing_xy, float)[:2] - path[0])[None], before])
        after = np.concatenate([legs[:1], after])
    return before, after


def route_turn_angles(template: str, start_xy: np.ndarray, facing_xy: np.ndarray,
                      waypoints_xy: np.ndarray) -> list[float]:
    """Signed turn angles (degrees) of a route, in the order of its ``[please fill in]`` steps."""
    before, after = route_turn_points(template, start_xy, facing_xy, waypoints_xy)
    return [turn_angle_deg(b, a) for b, a in zip(before, after)]


def segment_in_floor(boxes_xy: np.ndarray, a_xy: Sequence[float], b_xy: Sequence[float]) -> bool:
    """Whether the segment a-b lies inside the union of (R, 4) closed rectangles [xmin, ymin, xmax, ymax].

    Exact: membership can only change where the segment crosses a rectangle's edge line, so the
    segment is inside iff its ends and the midpoints between consecutive crossings are.
    """
    boxes = np.asarray(boxes_xy, float)
    a, b = np.asarray(a_xy, float)[:2], np.asarray(b_xy, float)[:2]
    d = b - a
    ts = [0.0, 1.0]
    for k in range(2):
        if d[k] != 0.0:
            t = (boxes[:, [k, k + 2]].ravel() - a[k]) / d[k]
            ts += t[(t > 0.0) & (t < 1.0)].tolist()
    ts = np.unique(ts)
    probes = np.concatenate([ts, (ts[:-1] + ts[1:]) / 2])
    p = a + probes[:, None] * d
    inside = ((p[:, None] >= boxes[None, :, :2] - 1e-12) & (p[:, None] <= boxes[None, :, 2:] + 1e-12)).all(-1)
    return bool(inside.any(1).all())


def segment_rect_distance(a_xy: Sequence[float], b_xy: Sequence[float], rects: np.ndarray) -> np.ndarray:
    """(n,) Euclidean distance between the segment a-b and each of (n, 4) rectangles (0 if they meet).

    Exact: 0 when the segment crosses the rectangle (slab clipping), else the smallest of the
    distances from the segment's ends to the rectangle and from the rectangle's corners to the segment.
    """
    r = np.asarray(rects, float).reshape(-1, 4)
    a, b = np.asarray(a_xy, float)[:2], np.asarray(b_xy, float)[:2]
    d = b - a
    lo_t, hi_t = np.zeros(len(r)), np.ones(len(r))
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(2):
            if d[k] == 0.0:
                outside = (a[k] < r[:, k]) | (a[k] > r[:, k + 2])
                hi_t = np.where(outside, -1.0, hi_t)
            else:
                t0, t1 = (r[:, k] - a[k]) / d[k], (r[:, k + 2] - a[k]) / d[k]
                lo_t, hi_t = np.maximum(lo_t, np.minimum(t0, t1)), np.minimum(hi_t, np.maximum(t0, t1))
    crosses = lo_t <= hi_t

    def point_rect(p: np.ndarray) -> np.ndarray:
        g = np.maximum(0.0, np.maximum(r[:, :2] - p, p - r[:, 2:]))
        return np.hypot(g[:, 0], g[:, 1])

    corners = np.stack([r[:, [0, 1]], r[:, [2, 1]], r[:, [2, 3]], r[:, [0, 3]]], 1)  # (n, 4, 2)
    s = np.clip(((corners - a) @ d) / max(float(d @ d), 1e-300), 0.0, 1.0)
    corner_d = np.linalg.norm(corners - (a + s[..., None] * d), axis=-1).min(1)
    return np.where(crosses, 0.0, np.minimum(np.minimum(point_rect(a), point_rect(b)), corner_d))


def turn_option_text(turns: Sequence[str]) -> str:
    """``["back", "left"]`` -> ``"Turn Back, Turn Left"`` (VSI-Bench's option wording)."""
    return ", ".join(f"Turn {t.capitalize()}" for t in turns)


def route_question(template: str, start: str, facing: str, waypoints: Sequence[str]) -> str:
    """VSI-Bench route-planning text for object names (the goal is ``waypoints[-1]``)."""
    steps = [] if template == "facing_first" else ["[please fill in]"]
    for k, name in enumerate(waypoints):
        if k:
            steps.append("[please fill in]")
        steps.append(f"Go forward until the {name}.")
    listed = " ".join(f"{i}. {s}" for i, s in enumerate(steps, start=1))
    return (f"You are a robot beginning at the {start} facing the {facing}. You want to navigate to the "
            f"{waypoints[-1]}. {_NOTE}{listed} You have reached the final destination.")
