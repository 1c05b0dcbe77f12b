import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import random_K, seeds

from posevlm.errors import ShapeError
from posevlm.geometry.intrinsics import intrinsics_problems
from posevlm.geometry import (
    fov_from_intrinsics,
    intrinsics_crop,
    intrinsics_denormalize,
    intrinsics_from_fov,
    intrinsics_normalize,
    intrinsics_resize,
    intrinsics_rotate90,
)

HW = (480, 640)


def project(K, pts):
    uvw = pts @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:]


def random_points(seed, n=20):
    g = np.random.default_rng(seed)
    p = g.normal(size=(n, 3))
    p[:, 2] = np.abs(p[:, 2]) + 1.0
    return torch.from_numpy(p)


@given(seeds, st.integers(50, 900), st.integers(50, 900))
def test_resize_scales_projections_and_round_trips(seed, h2, w2):
    K = random_K(seed, 1, HW)[0]
    K2 = intrinsics_resize(K, HW, (h2, w2))
    pts = random_points(seed)
    uv, uv2 = project(K, pts), project(K2, pts)
    assert torch.allclose(uv2, uv * torch.tensor([w2 / HW[1], h2 / HW[0]], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(intrinsics_resize(K2, (h2, w2), HW), K, atol=1e-9)


@given(seeds, st.integers(0, 100), st.integers(0, 100))
def test_crop_shifts_projections(seed, top, left):
    K = random_K(seed, 1, HW)[0]
    Kc, hw = intrinsics_crop(K, HW, top, left, (300, 400))
    assert hw.tolist() == [300.0, 400.0]
    pts = random_points(seed)
    assert torch.allclose(project(Kc, pts), project(K, pts) - torch.tensor([left, top], dtype=torch.float64))


def test_crop_outside_image_is_an_error():
    K = random_K(0, 1, HW)[0]
    with pytest.raises(ShapeError, match="crop window"):
        intrinsics_crop(K, HW, 400, 0, (300, 400))


@given(seeds, st.integers(-3, 5))
def test_rotate90_matches_rotated_image_and_round_trips(seed, k):
    K = random_K(seed, 1, HW)[0]
    K_rot, hw_rot, cam_rot = intrinsics_rotate90(K, HW, k)
    # a projected point lands where np.rot90 moves its pixel (continuous coords, image spans [0, W])
    pts = random_points(seed)
    u, v = project(K, pts).unbind(-1)
    uv_rot = project(K_rot, pts @ cam_rot.T)
    h, w = HW
    expected = {0: (u, v), 1: (v, w - u), 2: (w - u, h - v), 3: (h - v, u)}[k % 4]
    assert torch.allclose(uv_rot, torch.stack(expected, -1), atol=1e-9)
    assert hw_rot.tolist() == ([h, w] if k % 2 == 0 else [w, h])
    back, hw_back, rot_back = intrinsics_rotate90(K_rot, hw_rot, -k)
    assert torch.allclose(back, K, atol=1e-9) and hw_back.tolist() == list(HW)
    assert torch.allclose(rot_back @ cam_rot, torch.eye(3, dtype=torch.float64))


def test_rotate90_pixel_mapping_agrees_with_numpy_rot90():
    img = np.zeros(HW)
    img[100, 500] = 1  # row 100, col 500 -> centre (u, v) = (500.5, 100.5)
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], dtype=torch.float64)
    K_rot, _, cam_rot = intrinsics_rotate90(K, HW, 1)
    ray = torch.linalg.solve(K, torch.tensor([500.5, 100.5, 1.0], dtype=torch.float64))
    uv = project(K_rot, (cam_rot @ ray)[None])[0]
    r, c = np.argwhere(np.rot90(img, 1))[0]
    assert torch.allclose(uv, torch.tensor([c + 0.5, r + 0.5], dtype=torch.float64))


@given(seeds)
def test_normalize_definition_and_round_trip(seed):
    K = random_K(seed, 4, HW)
    Kn = intrinsics_normalize(K, HW)
    h, w = HW
    assert torch.allclose(Kn[:, 0, 0], K[:, 0, 0] / w) and torch.allclose(Kn[:, 1, 1], K[:, 1, 1] / h)
    assert torch.allclose(Kn[:, 0, 2], K[:, 0, 2] / w - 0.5) and torch.allclose(Kn[:, 1, 2], K[:, 1, 2] / h - 0.5)
    assert torch.allclose(intrinsics_denormalize(Kn, HW), K)
    # resolution free: the same camera at another resolution normalises identically
    assert torch.allclose(intrinsics_normalize(intrinsics_resize(K, HW, (240, 320)), (240, 320)), Kn)


def test_fov_round_trip():
    K = intrinsics_from_fov(torch.tensor(math.radians(50.0)), torch.tensor(math.radians(65.0)), HW)
    fh, fw = fov_from_intrinsics(K, HW)
    assert math.degrees(float(fh)) == pytest.approx(50.0) and math.degrees(float(fw)) == pytest.approx(65.0)
    assert K[0, 2] == 320 and K[1, 2] == 240


def test_image_size_required():
    K = random_K(0, 1, HW)[0]
    with pytest.raises(ShapeError, match="image size they refer to"):
        intrinsics_normalize(K, (480,))


# -- intrinsics_problems: K checked against the image it describes ---------------------------------------
# Published / typical intrinsics of the datasets we load, in pixels of the image they describe.
REAL_INTRINSICS = {
    "scannet_color_1296x968": ((1170.187988, 1170.187988, 647.75, 483.75), (968, 1296)),
    "scannet_depth_640x480": ((577.590698, 578.729797, 318.905426, 242.683609), (480, 640)),
    "scannet_color_rescaled_640x480": ((1170.187988 * 640 / 1296, 1170.187988 * 480 / 968, 647.75 * 640 / 1296,
                                        483.75 * 480 / 968), (480, 640)),
    "arkitscenes_lowres_wide_256x192": ((211.9, 211.9, 127.9, 95.9), (192, 256)),
    "scannetpp_dslr_undistorted_1752x1168": ((600.0, 600.0, 873.2, 585.9), (1168, 1752)),  # ~111 deg wide
    "vggt_518x392": ((400.0, 400.0, 259.0, 196.0), (392, 518)),
    "synthetic_hfov_140": ((320 / math.tan(math.radians(70)), 320 / math.tan(math.radians(70)), 320.0, 240.0),
                           (480, 640)),
}


def _K(fx, fy, cx, cy):
    from posevlm.geometry import K_from_params

    return K_from_params(fx, fy, cx, cy)


@pytest.mark.parametrize("name", sorted(REAL_INTRINSICS))
def test_real_dataset_intrinsics_have_no_problems(name):
    params, hw = REAL_INTRINSICS[name]
    problems = intrinsics_problems(_K(*params), hw)
    assert not problems and problems.impossible == () and problems.implausible == ()


def test_scannet_colour_intrinsics_on_resized_frames_are_impossible():
    """The trap of issue 10: 1296x968 intrinsics used for 640x480 frames put the principal point outside."""
    params, _ = REAL_INTRINSICS["scannet_color_1296x968"]
    problems = intrinsics_problems(_K(*params), (480, 640))
    assert len(problems.impossible) == 1
    assert "principal point (cx, cy) = (647.75, 483.75) lies outside the 640x480 image" in problems.impossible[0]


@pytest.mark.parametrize(
    "K_rows, expected",
    [
        ([[500, 0, 320], [0, 500, 240], [0, 0, 1]], None),
        ([[500, 0, 0], [0, 500, 0], [320, 240, 1]], "pass K, not K.T"),  # transposed
        ([[-500, 0, 320], [0, 500, 240], [0, 0, 1]], "focal lengths must be positive"),
        ([[500, 0, 320], [0, 0, 240], [0, 0, 1]], "focal lengths must be positive"),
        ([[500, 0, float("nan")], [0, 500, 240], [0, 0, 1]], "NaN or inf"),
        ([[500, 0, -3], [0, 500, 240], [0, 0, 1]], "outside the 640x480 image"),
        ([[500, 0, 320], [0, 500, 481], [0, 0, 1]], "outside the 640x480 image"),
    ],
)
def test_impossible_intrinsics(K_rows, expected):
    problems = intrinsics_problems(torch.tensor(K_rows, dtype=torch.float64), (480, 640))
    if expected is None:
        assert not problems
    else:
        assert len(problems.impossible) == 1 and expected in problems.impossible[0]
        assert problems.implausible == ()  # nothing else is judged on an impossible K


@pytest.mark.parametrize(
    "params, expected",
    [
        ((0.8, 1.0, 0.5, 0.5), ["50% of the image size from the centre", "use intrinsics_denormalize"]),  # normalised
        ((500, 500, 600, 240), ["44% of the image size from the centre", "limit 25%"]),
        ((500, 500, 320, 60), ["38% of the image size"]),
        ((5000, 5000, 320, 240), ["horizontal field of view 7.324 deg", "outside 10..170 deg"]),
        ((20, 20, 320, 240), ["horizontal field of view 172.8 deg"]),
        ((500, 300, 320, 240), ["pixel aspect fx/fy = 1.667"]),
    ],
)
def test_implausible_intrinsics(params, expected):
    problems = intrinsics_problems(_K(*params), (480, 640))
    assert problems.impossible == ()
    text = " | ".join(problems.implausible)
    assert all(e in text for e in expected), text


def test_skew_is_implausible():
    K = _K(500.0, 500.0, 320.0, 240.0).clone()
    K[0, 1] = 12.0
    problems = intrinsics_problems(K, (480, 640))
    assert problems.implausible == ("skew K[0, 1] = 12 is ignored by posevlm (assumed 0)",)


def test_batched_messages_name_the_frame_positions():
    K = _K(torch.tensor([500.0, 500.0, 500.0, 500.0]), 500.0, torch.tensor([320.0, 700.0, 320.0, 650.0]), 240.0)
    problems = intrinsics_problems(K, (480, 640))
    assert len(problems.impossible) == 1 and "at frame positions [1, 3]" in problems.impossible[0]
    hw = torch.tensor([[480, 640], [480, 1400], [480, 640], [480, 640]])
    problems = intrinsics_problems(K, hw)  # per-frame sizes: frame 1 now fits its wider image
    assert "at frame positions [3]" in problems.impossible[0]


@given(seeds, st.floats(0.05, 8.0))
def test_verdict_is_invariant_to_resizing_the_image(seed, scale):
    """The checks are resolution free: an isotropic resize (K rescaled with it) changes no verdict."""
    g = np.random.default_rng(seed)
    hw = (480, 640)
    f = g.uniform(10, 5000, size=(16, 2))
    c = g.uniform(-0.2, 1.2, size=(16, 2)) * np.array([640, 480])
    K = _K(*(torch.from_numpy(v) for v in (f[:, 0], f[:, 1], c[:, 0], c[:, 1])))
    new_hw = (480 * scale, 640 * scale)
    before = intrinsics_problems(K, hw)
    after = intrinsics_problems(intrinsics_resize(K, hw, new_hw), new_hw)
    assert _kinds(before.impossible) == _kinds(after.impossible)
    assert _kinds(before.implausible) == _kinds(after.implausible)


def _kinds(messages):
    """(first word, frame positions) of each message: what was found where, without the values."""
    return [(m.split(" ")[0], m[m.index(" at frame positions"):]) for m in messages]
