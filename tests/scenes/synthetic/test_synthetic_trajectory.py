"""Properties of hand-held scan trajectories: free-space clearance, rigid smooth motion, ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.errors import ConfigError
from posevlm.geometry import geodesic_angle, rotation_rigidity_error, w2c_to_c2w
from posevlm.scenes.synthetic.layout import (
    distance_to_footprints_xy,
    distance_to_walls_xy,
    generate_layout,
    points_in_room_xy,
)
from posevlm.scenes.synthetic.trajectory import generate_trajectory

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)


def _c2w(w2c: np.ndarray) -> np.ndarray:
    return w2c_to_c2w(torch.from_numpy(w2c)).numpy()


def _scan(seed: int, num_frames: int | None = 300, fps: float = 30.0, **layout_kwargs):
    layout = generate_layout(np.random.default_rng(seed), **layout_kwargs)
    w2c = generate_trajectory(layout, np.random.default_rng(seed + 1), num_frames=num_frames, fps=fps)
    return layout, w2c


def test_deterministic_given_rng():
    layout = generate_layout(np.random.default_rng(3))
    a = generate_trajectory(layout, np.random.default_rng(11), num_frames=400)
    b = generate_trajectory(layout, np.random.default_rng(11), num_frames=400)
    c = generate_trajectory(layout, np.random.default_rng(12), num_frames=400)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@SETTINGS
@given(seed=st.integers(0, 2**31), frames=st.sampled_from([300, 450, 900]),
       shape=st.sampled_from(["rect", "L", "multi"]), clutter=st.booleans())
def test_camera_stays_in_free_space_at_head_height(seed, frames, shape, clutter):
    layout, w2c = _scan(seed, frames, room_shape=shape, clutter=clutter)
    assert w2c.shape == (frames, 4, 4) and w2c.dtype == np.float64
    c2w = _c2w(w2c)
    centres = c2w[:, :3, 3]
    assert points_in_room_xy(layout.room, centres[:, :2]).all()
    assert distance_to_walls_xy(layout.room, centres[:, :2]).min() >= 0.3
    assert distance_to_footprints_xy(layout.objects, centres[:, :2]).min() >= 0.25
    assert centres[:, 2].min() >= 1.3 and centres[:, 2].max() <= 1.7
    # looking roughly horizontally and slightly down: camera z axis (forward) pitch in [-25, -5] deg
    pitch = np.rad2deg(np.arcsin(c2w[:, 2, 2]))
    assert pitch.min() >= -25.0 and pitch.max() <= -5.0
    # camera x axis (right) stays near horizontal: small roll
    assert np.rad2deg(np.abs(np.arcsin(c2w[:, 2, 0]))).max() < 5.0


@SETTINGS
@given(seed=st.integers(0, 2**31), fps=st.sampled_from([10.0, 30.0, 60.0]))
def test_rigid_and_smooth(seed, fps):
    frames = int(12 * fps)
    _, w2c = _scan(seed, frames, fps=fps)
    assert float(rotation_rigidity_error(torch.from_numpy(w2c[:, :3, :3])).max()) < 1e-9
    np.testing.assert_array_equal(w2c[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (frames, 1)))
    c2w = _c2w(w2c)
    step = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
    assert step.max() <= 1.0 / fps  # <= 1 m/s including bob and jitter
    rot = torch.from_numpy(c2w[:, :3, :3])
    turn = np.rad2deg(geodesic_angle(rot[:-1], rot[1:]).numpy())
    assert turn.max() <= 90.0 / fps  # <= 90 deg/s
    speed = step.sum() / (frames / fps)
    assert 0.25 <= speed <= 0.85


def test_frame_count_honoured_and_default_range():
    layout = generate_layout(np.random.default_rng(0))
    assert generate_trajectory(layout, np.random.default_rng(0), num_frames=2).shape == (2, 4, 4)
    assert generate_trajectory(layout, np.random.default_rng(0), num_frames=123).shape == (123, 4, 4)
    for seed in range(3):
        s = len(generate_trajectory(layout, np.random.default_rng(seed)))
        assert 300 <= s <= 3000


def test_long_scan_walks_loops_and_looks_around():
    _, w2c = _scan(5, 3000, room_shape="L")
    c2w = _c2w(w2c)
    centres = c2w[:, :3, 3]
    extent = centres[:, :2].max(0) - centres[:, :2].min(0)
    assert extent.min() > 1.0  # covers the room, not a line
    yaw = np.unwrap(np.arctan2(c2w[:, 1, 2], c2w[:, 0, 2]))
    assert np.ptp(yaw) > np.deg2rad(90)


@pytest.mark.parametrize("kwargs", [{"num_frames": 1}, {"fps": 0.0}])
def test_bad_arguments_raise_config_error(kwargs):
    layout = generate_layout(np.random.default_rng(0))
    with pytest.raises(ConfigError):
        generate_trajectory(layout, np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_room_walk_goes_through_the_doorways_into_every_room(seed):
    layout, w2c = _scan(seed, 1800, room_shape="multi", clutter=True)
    centres = _c2w(w2c)[:, :3, 3]
    n_rooms = (len(layout.room.boxes_xy) + 1) // 2
    rooms = layout.room.boxes_xy[:n_rooms]
    p = centres[:, None, :2]
    inside = ((p >= rooms[None, :, :2]) & (p <= rooms[None, :, 2:])).all(-1)
    assert (inside.mean(0) > 0.05).all()  # every room holds a good part of the walk
