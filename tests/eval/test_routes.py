"""Route-planning geometry: exact segment tests against dense sampling, turn angles and labels, the
VSI-Bench question wording."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.eval.benchmarks.routes import (
    route_question,
    route_turn_angles,
    segment_in_floor,
    segment_rect_distance,
    turn_angle_deg,
    turn_label,
    turn_margin_deg,
    turn_option_text,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
# two rooms joined by a doorway through a 15 cm wall (the multi-room layout's shape)
ROOMS = np.array([[-4.0, -2.0, -0.075, 2.0], [0.075, -1.5, 4.0, 2.5], [-0.075, 0.2, 0.075, 1.5]])
coords = st.floats(-4.5, 4.5, allow_nan=False)


def _dense_inside(boxes, a, b, n=20001):
    t = np.linspace(0.0, 1.0, n)[:, None]
    p = a + t * (b - a)
    return bool(((p[:, None] >= boxes[None, :, :2]) & (p[:, None] <= boxes[None, :, 2:])).all(-1).any(1).all())


@SETTINGS
@given(ax=coords, ay=coords, bx=coords, by=coords)
def test_segment_in_floor_matches_dense_sampling(ax, ay, bx, by):
    a, b = np.array([ax, ay]), np.array([bx, by])
    assert segment_in_floor(ROOMS, a, b) == _dense_inside(ROOMS, a, b)


def test_segment_in_floor_through_the_doorway_only():
    assert segment_in_floor(ROOMS, [-2.0, 0.8], [2.0, 0.9])  # through the door
    assert not segment_in_floor(ROOMS, [-2.0, -1.0], [2.0, -1.0])  # through the wall
    assert not segment_in_floor(ROOMS, [-2.0, 1.0], [2.0, 2.2])  # leaves the door through its jamb


@SETTINGS
@given(ax=coords, ay=coords, bx=coords, by=coords, cx=coords, cy=coords,
       w=st.floats(0.05, 2.0), h=st.floats(0.05, 2.0))
def test_segment_rect_distance_matches_dense_sampling(ax, ay, bx, by, cx, cy, w, h):
    a, b = np.array([ax, ay]), np.array([bx, by])
    rect = np.array([[cx, cy, cx + w, cy + h]])
    t = np.linspace(0.0, 1.0, 20001)[:, None]
    p = a + t * (b - a)
    gap = np.maximum(0.0, np.maximum(rect[0, :2] - p, p - rect[0, 2:]))
    brute = np.hypot(gap[:, 0], gap[:, 1]).min()
    exact = float(segment_rect_distance(a, b, rect)[0])
    step = np.linalg.norm(b - a) / 20000
    assert exact <= brute + 1e-9 and brute <= exact + step + 1e-9


def _wrapped(delta_deg: float) -> float:
    """|delta| on the circle (180 and -180 are the same turn)."""
    return abs((delta_deg + 180.0) % 360.0 - 180.0)


@SETTINGS
@given(bx=coords, by=coords, cx=coords, cy=coords, rot=st.floats(-np.pi, np.pi), shift=st.tuples(coords, coords))
def test_turn_angle_is_rigid_invariant_and_mirrors_flip_it(bx, by, cx, cy, rot, shift):
    before, after = np.array([bx, by]), np.array([cx, cy])
    if min(np.linalg.norm(before), np.linalg.norm(after)) < 1e-3:
        return
    R = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    angle = turn_angle_deg(before, after)
    assert _wrapped(turn_angle_deg(R @ before, R @ after) - angle) < 1e-6
    mirror = np.diag([1.0, -1.0])
    if abs(abs(angle) - 180.0) > 1e-6:
        assert turn_angle_deg(mirror @ before, mirror @ after) == pytest.approx(-angle, abs=1e-6)
    # the route through start -> w1 -> goal turns at w1 by exactly this angle, wherever it is
    start = np.array(shift)
    w1 = start + before
    assert _wrapped(route_turn_angles("facing_first", start, w1, np.stack([w1, w1 + after]))[0] - angle) < 1e-6


def test_turn_labels_and_margins():
    # heading +y; a left turn is towards -x (counter-clockwise seen from above, z up)
    assert turn_label(turn_angle_deg([0, 1], [-1, 0])) == "left"
    assert turn_label(turn_angle_deg([0, 1], [1, 0])) == "right"
    assert turn_label(turn_angle_deg([0, 1], [0.1, -1])) == "back"
    assert [turn_margin_deg(a) for a in (90.0, -60.0, 150.0, 30.0, 135.0)] == [45.0, 15.0, 15.0, -15.0, 0.0]


def test_turn_first_route_turns_in_place_first():
    # start at the origin facing +y; walk to (3, 0) (a right turn), then to (3, 3) (a left turn)
    angles = route_turn_angles("turn_first", np.zeros(2), np.array([0.0, 2.0]), np.array([[3.0, 0.0], [3.0, 3.0]]))
    assert [turn_label(a) for a in angles] == ["right", "left"]
    assert angles == pytest.approx([-90.0, 90.0])


def test_question_wording_is_vsibench_route_planning():
    q = route_question("facing_first", "bed", "tv", ["tv", "sofa", "toilet"])
    assert q == ("You are a robot beginning at the bed facing the tv. You want to navigate to the toilet. You will "
                 "perform the following actions (Note: for each [please fill in], choose either 'turn back,' 'turn "
                 "left,' or 'turn right.'): 1. Go forward until the tv. 2. [please fill in] 3. Go forward until the "
                 "sofa. 4. [please fill in] 5. Go forward until the toilet. You have reached the final destination.")
    q = route_question("turn_first", "door", "window", ["lamp", "sofa"])
    assert "): 1. [please fill in] 2. Go forward until the lamp. 3. [please fill in] 4. Go forward until the sofa." in q
    assert turn_option_text(["back", "left"]) == "Turn Back, Turn Left"
