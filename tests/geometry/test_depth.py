"""Multi-view depth agreement and the inverted-pose evidence, on depth rendered analytically inside a box room."""

import numpy as np
import pytest
import torch
from hypothesis import given
from strategies import random_rotations, seeds

from posevlm.geometry import K_from_params, se3_from_Rt, w2c_to_c2w
from posevlm.geometry.depth import (AGREEMENT_ABS_TOL_M, AGREEMENT_REL_TOL, backproject_depth, depth_agreement,
                                    pose_direction_evidence)

HW = (24, 32)
K = K_from_params(24.0, 24.0, 16.0, 12.0).numpy()  # 67 deg horizontal field of view
ROOM_LO, ROOM_HI = np.array([-2.5, -2.0, 0.0]), np.array([2.5, 2.0, 2.6])


def box_room_depth(w2c: np.ndarray, hw=HW) -> np.ndarray:
    """(N, H, W) z-depth of the inside of the box [ROOM_LO, ROOM_HI] seen by cameras inside it."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w] + 0.5
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)  # z = 1
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    origin = -np.einsum("nba,nb->na", R, t)  # camera centres
    d = np.einsum("nba,hwb->nhwa", R, rays)  # world directions, scaled so that s = z-depth
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(d > 0, ROOM_HI, ROOM_LO)
        s = (bound - origin[:, None, None, :]) / d
    return np.where(np.isfinite(s) & (s > 0), s, np.inf).min(-1).astype(np.float32)


def walk(seed: int, n: int = 8, length_m: float = 2.5) -> np.ndarray:
    """(n, 4, 4) w2c: a camera walking ``length_m`` inside the room, turning, eye height ~1.4 m."""
    g = np.random.default_rng(seed)
    start = g.uniform([-1.5, -1.2, 1.2], [1.5, 1.2, 1.6])
    heading = g.uniform(0, 2 * np.pi)
    s = np.linspace(0, 1, n)
    step = np.array([np.cos(heading), np.sin(heading), 0.0]) * length_m
    centres = np.clip(start + s[:, None] * step, ROOM_LO + 0.3, ROOM_HI - 0.3)
    yaw = heading + g.uniform(-1.5, 1.5) * s + g.normal(0, 0.1, n)
    pitch = g.uniform(-0.3, 0.1, n)
    forward = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], -1)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    c2w_R = np.stack([right, down, forward], -1)
    c2w = se3_from_Rt(torch.from_numpy(c2w_R), torch.from_numpy(centres))
    return w2c_to_c2w(c2w).numpy()  # inverse of c2w = w2c


def reference_agreement(depth, K_pixels, w2c, stride):
    """Slow transcription of depth_agreement: loop over ordered frame pairs and strided pixels."""
    agree = compared = 0
    n, h, w = depth.shape
    world = backproject_depth(depth, K_pixels, w2c, pixel_stride=stride)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            for p in world[i].reshape(-1, 3):
                if not np.isfinite(p).all():
                    continue
                x, y, z = w2c[j, :3, :3] @ p + w2c[j, :3, 3]
                if z <= 0:
                    continue
                u = K_pixels[j, 0, 0] * x / z + K_pixels[j, 0, 2]
                v = K_pixels[j, 1, 1] * y / z + K_pixels[j, 1, 2]
                if not (0 <= u < w and 0 <= v < h):
                    continue
                d = float(depth[j, int(v), int(u)])
                if not (np.isfinite(d) and d > 0):
                    continue
                compared += 1
                agree += abs(z - d) <= AGREEMENT_REL_TOL * d + AGREEMENT_ABS_TOL_M
    return (agree / compared if compared else 0.0), compared


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depth_agreement_matches_the_loop_reference(seed):
    w2c = walk(seed, n=4)
    depth = box_room_depth(w2c)
    depth[:, :3, :5] = 0.0  # missing measurements are neither back-projected nor looked up
    Ks = np.broadcast_to(K, (4, 3, 3))
    for poses in (w2c, np.linalg.inv(w2c)):
        fast = depth_agreement(depth, Ks, poses, pixel_stride=3)
        ref = reference_agreement(depth, Ks, poses, 3)
        assert fast[1] == ref[1] and fast[0] == pytest.approx(ref[0], abs=1e-12)


def test_correct_poses_agree_everywhere_in_a_box_room():
    w2c = walk(3)
    agreement, compared = depth_agreement(box_room_depth(w2c), np.broadcast_to(K, (8, 3, 3)), w2c, pixel_stride=2)
    assert compared > 1000 and agreement > 0.99  # exact depth: only pixel quantisation at edges disagrees


@given(seeds)
def test_agreement_is_invariant_to_a_global_rigid_transform(seed):
    """Moving the whole world (poses re-expressed) changes nothing a camera sees."""
    w2c = walk(seed % 1000)
    depth = box_room_depth(w2c)
    g = np.random.default_rng(seed)
    world_to_new = se3_from_Rt(random_rotations(seed, 1)[0], torch.from_numpy(g.normal(size=3) * 5)).numpy()
    moved = w2c @ np.linalg.inv(world_to_new)
    Ks = np.broadcast_to(K, (8, 3, 3))
    a = depth_agreement(depth, Ks, w2c, pixel_stride=3)
    b = depth_agreement(depth, Ks, moved, pixel_stride=3)
    assert a[1] == b[1] and a[0] == pytest.approx(b[0], abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_inverted_poses_are_flagged_and_correct_ones_are_not(seed):
    w2c = walk(seed)
    depth = box_room_depth(w2c)
    Ks = np.broadcast_to(K, (8, 3, 3))
    right = pose_direction_evidence(depth, Ks, w2c, pixel_stride=2)
    wrong = pose_direction_evidence(depth, Ks, np.linalg.inv(w2c), pixel_stride=2)
    assert not right.inverted_likely and wrong.inverted_likely
    # the two readings are mirror images of each other
    assert right.agreement_as_given == wrong.agreement_inverted and right.agreement_inverted == wrong.agreement_as_given
    assert wrong.to_dict()["inverted_likely"] is True and wrong.num_frames == 8


def test_a_camera_that_does_not_move_is_never_flagged():
    """Without motion both readings explain the depth equally well: no evidence, no warning."""
    w2c = np.repeat(walk(4, n=1), 6, axis=0)
    depth = box_room_depth(w2c)
    for poses in (w2c, np.linalg.inv(w2c)):
        evidence = pose_direction_evidence(depth, np.broadcast_to(K, (6, 3, 3)), poses, pixel_stride=2)
        assert evidence.agreement_as_given == evidence.agreement_inverted and not evidence.inverted_likely
