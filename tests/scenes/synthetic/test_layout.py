"""Properties of procedural layouts: ranges, no overlaps, containment, exact areas, round trips."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.errors import ConfigError
from posevlm.scenes.synthetic.categories import CATEGORIES, CLUTTER_CATEGORY_NAMES, STANDARD_CATEGORY_NAMES, Category
from posevlm.scenes.synthetic.layout import (
    Layout,
    distance_to_walls_xy,
    generate_layout,
    points_in_room_xy,
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
shapes = st.sampled_from([None, "rect", "L"])
counts = st.one_of(st.none(), st.integers(5, 25))
all_shapes = st.sampled_from([None, "rect", "L", "multi"])


def _shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _footprint_grid(obj, n: int = 7) -> np.ndarray:
    """(n*n, 2) points covering the footprint, corners included."""
    b = obj.bounds
    xs, ys = np.linspace(b[0, 0], b[1, 0], n), np.linspace(b[0, 1], b[1, 1], n)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def test_same_seed_same_layout_and_different_seed_differs():
    a = generate_layout(np.random.default_rng(7))
    b = generate_layout(np.random.default_rng(7))
    c = generate_layout(np.random.default_rng(8))
    assert a == b and a.to_dict() == b.to_dict()
    assert a != c


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, n=counts)
def test_room_ranges_and_area(seed, shape, n):
    room = generate_layout(np.random.default_rng(seed), num_objects=n, room_shape=shape).room
    lo, hi = room.boxes_xy[:, :2].min(0), room.boxes_xy[:, 2:].max(0)
    assert np.all((hi - lo >= 3.0) & (hi - lo <= 9.0))
    assert 2.4 <= room.height <= 3.0
    assert len(room.boxes_xy) in (1, 2) and len(room.polygon_xy) == {1: 4, 2: 6}[len(room.boxes_xy)]
    if shape is not None:
        assert len(room.boxes_xy) == {"rect": 1, "L": 2}[shape]
    # counter-clockwise outline whose area equals the exact area of the union of boxes
    assert _shoelace(room.polygon_xy) > 0
    assert room.floor_area_m2 == pytest.approx(_shoelace(room.polygon_xy), rel=1e-12)
    # Monte Carlo cross-check of the union membership against the outline area
    pts = np.random.default_rng(0).uniform(lo, hi, size=(20000, 2))
    frac = points_in_room_xy(room, pts).mean()
    assert frac * np.prod(hi - lo) == pytest.approx(room.floor_area_m2, rel=0.05)
    # outline vertices lie on the boundary of the union
    assert points_in_room_xy(room, room.polygon_xy).all()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shape=all_shapes, n=counts, clutter=st.booleans())
def test_objects_valid(seed, shape, n, clutter):
    layout = generate_layout(np.random.default_rng(seed), num_objects=n, room_shape=shape, clutter=clutter)
    objs = layout.objects
    assert 5 <= len(objs) <= (60 if clutter else 25) and (n is None or len(objs) <= n)
    assert [o.instance_id for o in objs] == list(range(1, len(objs) + 1))
    if not clutter:
        assert {o.category for o in objs} <= set(STANDARD_CATEGORY_NAMES)
    for o in objs:
        cat = CATEGORIES[o.category]
        lmin, wmin, hmin = cat.size_min_m
        lmax, wmax, hmax = cat.size_max_m
        sx, sy, sz = o.size
        eps = 1e-9
        within = lambda v, a, b: a - eps <= v <= b + eps  # noqa: E731
        as_is = within(sx, lmin, lmax) and within(sy, wmin, wmax)
        turned = within(sy, lmin, lmax) and within(sx, wmin, wmax)  # quarter-turn yaw swaps x and y
        assert as_is or turned
        assert within(sz, hmin, hmax)
        assert o.bounds[0, 2] == pytest.approx(0.0, abs=1e-12)  # resting on the floor
        assert o.bounds[1, 2] < layout.room.height
        assert np.all(np.abs(np.array(o.color_rgb) - cat.color_rgb) <= 18)
        assert points_in_room_xy(layout.room, _footprint_grid(o)).all()  # inside the union
        if cat.against_wall:  # one side of the footprint touches (within the gap) a wall
            assert distance_to_walls_xy(layout.room, _footprint_grid(o, 15)).min() < 0.05
    for a, b in itertools.combinations(objs, 2):  # footprints apart by >= 5 cm
        gap = np.maximum(a.bounds[0, :2] - b.bounds[1, :2], b.bounds[0, :2] - a.bounds[1, :2])
        assert gap.max() >= 0.05 - 1e-9, (a.category, b.category)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_dict_round_trip_through_json(seed):
    layout = generate_layout(np.random.default_rng(seed))
    d = json.loads(json.dumps(layout.to_dict()))
    back = Layout.from_dict(d)
    assert back == layout
    assert back.to_dict() == layout.to_dict()
    assert back.room.boxes_xy.dtype == np.float64 and back.objects[0].center.shape == (3,)


def test_counts_vary_and_categories_repeat():
    layouts = [generate_layout(np.random.default_rng(s)) for s in range(12)]
    counts = {len(lay.objects) for lay in layouts}
    assert len(counts) > 3
    most = [max(np.unique([o.category for o in lay.objects], return_counts=True)[1]) for lay in layouts]
    assert max(most) >= 3  # repeats (several chairs) so counting questions are interesting


def test_many_objects_requested_in_small_room_still_yields_at_least_five():
    for seed in range(5):
        layout = generate_layout(np.random.default_rng(seed), num_objects=25, room_shape="rect")
        assert 5 <= len(layout.objects) <= 25


def test_arrays_are_read_only():
    layout = generate_layout(np.random.default_rng(0))
    with pytest.raises(ValueError):
        layout.objects[0].center[0] = 1.0


@pytest.mark.parametrize("kwargs", [{"num_objects": 4}, {"num_objects": 61}, {"room_shape": "round"}])
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        generate_layout(np.random.default_rng(0), **kwargs)


def test_from_dict_missing_key_names_it():
    d = generate_layout(np.random.default_rng(0)).to_dict()
    del d["room"]["height"]
    with pytest.raises(ConfigError, match="height"):
        Layout.from_dict(d)


def test_category_table():
    assert len(CATEGORIES) >= 14
    for name, cat in CATEGORIES.items():
        assert cat.name == name
        assert all(0 < a <= b for a, b in zip(cat.size_min_m, cat.size_max_m))
        assert cat.size_max_m[2] < 2.4  # fits under the lowest ceiling
    with pytest.raises(ConfigError):
        Category("bad", (1.0, 1.0, 1.0), (0.5, 1.0, 1.0), (0, 0, 0), False)


# standard layouts are those of the generator before multi-room and clutter existed (issue 17): sha256 of
# json.dumps([generate_layout(default_rng(s), room_shape=shape).to_dict() ...]) computed on main at ddbcf5e
STANDARD_LAYOUTS_SHA256 = "a56a9de96128c21eda08f70bfe9f5b05a15421f819609fb1a2abba83c7e9b79a"


def test_standard_layouts_unchanged_by_the_multi_room_and_clutter_options():
    import hashlib

    out = [generate_layout(np.random.default_rng(s), room_shape=shape).to_dict()
           for s in range(30) for shape in (None, "rect", "L")]
    assert hashlib.sha256(json.dumps(out).encode()).hexdigest() == STANDARD_LAYOUTS_SHA256


def _room_index(rooms: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """(N,) index of the room rectangle holding each point (-1: none, e.g. in a doorway)."""
    p = points_xy[:, None]
    inside = ((p >= rooms[None, :, :2]) & (p <= rooms[None, :, 2:])).all(-1)
    return np.where(inside.any(1), inside.argmax(1), -1)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), clutter=st.booleans())
def test_multi_room_structure(seed, clutter):
    room = generate_layout(np.random.default_rng(seed), room_shape="multi", clutter=clutter).room
    n_rooms = (len(room.boxes_xy) + 1) // 2
    rooms, doors = room.boxes_xy[:n_rooms], room.boxes_xy[n_rooms:]
    assert n_rooms in (2, 3) and len(doors) == n_rooms - 1
    sides = np.sort(rooms[:, 2:] - rooms[:, :2], axis=1)
    assert (sides[:, 0] >= 3.0 - 1e-9).all() and (sides[:, 1] <= 5.5 + 1e-9).all()
    # rooms never overlap: every pair is separated by a wall at least 15 cm thick
    for a, b in itertools.combinations(rooms, 2):
        gap = np.maximum(a[:2] - b[2:], b[:2] - a[2:])
        assert gap.max() >= 0.15 - 1e-9
    for door in doors:  # a doorway spans exactly one wall: thin side = wall, long side 1.2-1.5 m
        thin, wide = np.sort(door[2:] - door[:2])
        assert thin == pytest.approx(0.15) and 1.2 - 1e-9 <= wide <= 1.5 + 1e-9
        touching = [r for r in rooms if np.maximum(door[:2] - r[2:], r[:2] - door[2:]).max() <= 1e-9]
        assert len(touching) == 2
    # the outline is counter-clockwise, rectilinear, and bounds exactly the union of rooms and doors
    assert _shoelace(room.polygon_xy) > 0
    assert room.floor_area_m2 == pytest.approx(_shoelace(room.polygon_xy), rel=1e-12)
    edges = np.roll(room.polygon_xy, -1, axis=0) - room.polygon_xy
    assert ((edges == 0).sum(1) == 1).all()
    assert points_in_room_xy(room, room.polygon_xy).all()
    lo, hi = room.boxes_xy[:, :2].min(0), room.boxes_xy[:, 2:].max(0)
    pts = np.random.default_rng(0).uniform(lo, hi, size=(20000, 2))
    wall = (_room_index(rooms, pts) == -1) & points_in_room_xy(room, pts)
    assert wall.mean() < 0.05  # outside the rooms only in the doorways


def test_clutter_draws_small_categories_and_repeats_them():
    layouts = [generate_layout(np.random.default_rng(s), room_shape="multi", clutter=True) for s in range(6)]
    cats = [[o.category for o in lay.objects] for lay in layouts]
    assert all(set(c) & set(CLUTTER_CATEGORY_NAMES) for c in cats)
    assert np.mean([len(c) for c in cats]) >= 20
    per_area = [len(c) / lay.room.floor_area_m2 for c, lay in zip(cats, layouts)]
    standard = [generate_layout(np.random.default_rng(s), room_shape="multi") for s in range(6)]
    assert min(per_area) > max(len(lay.objects) / lay.room.floor_area_m2 for lay in standard)
    assert max(max(np.unique(c, return_counts=True)[1]) for c in cats) >= 4
