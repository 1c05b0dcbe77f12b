import warnings

import numpy as np
import pytest
import torch
from strategies import random_K, random_w2c

from posevlm.errors import ConventionError, ConventionWarning, ShapeError
from posevlm.geometry import Cameras, rotation_rigidity_error, w2c_to_c2w

HW = (480, 640)


def camera_K(seed: int, n: int, hw: tuple[int, int]) -> torch.Tensor:
    """``random_K`` with square pixels, so intrinsics checks see a plausible camera (fy = fx)."""
    K = random_K(seed, n, hw)
    K[:, 1, 1] = K[:, 0, 0]
    return K


def test_create_broadcasts_single_K_and_size():
    w2c = random_w2c(0, 5)
    cams = Cameras.create(w2c, camera_K(0, 1, HW)[0], HW)
    assert cams.K_pixels.shape == (5, 3, 3) and cams.image_hw.tolist() == [list(HW)] * 5
    assert len(cams[1:3]) == 2 and torch.equal(cams[[4, 0]].w2c_opencv, w2c[[4, 0]])


def test_from_c2w_conventions_agree():
    w2c = random_w2c(1, 4)
    K = camera_K(1, 1, HW)
    a = Cameras.from_c2w_opencv(w2c_to_c2w(w2c), K, HW)
    flip = torch.diag(torch.tensor([1.0, -1, -1, 1], dtype=torch.float64))
    b = Cameras.from_c2w_opengl(w2c_to_c2w(w2c) @ flip, K, HW)
    assert torch.allclose(a.w2c_opencv, w2c, atol=1e-12) and torch.allclose(b.w2c_opencv, w2c, atol=1e-12)


def test_nan_pose_names_source_and_frames():
    w2c = random_w2c(2, 6)
    w2c[3, 0, 3] = float("inf")
    with pytest.raises(ConventionError, match=r"poses.txt: 1 pose\(s\) contain NaN or inf \(frame positions \[3\]\)"):
        Cameras.create(w2c, camera_K(2, 1, HW), HW, source="poses.txt")


def test_non_rigid_rotation_error_or_reorthonormalise():
    w2c = random_w2c(3, 4)
    w2c[2, :3, :3] *= 1.01
    with pytest.raises(ConventionError, match="not rigid beyond tolerance.*reorthonormalize"):
        Cameras.create(w2c, camera_K(3, 1, HW), HW)
    with pytest.warns(UserWarning, match="re-orthonormalised 1"):
        cams = Cameras.create(w2c, camera_K(3, 1, HW), HW, on_invalid="reorthonormalize")
    assert rotation_rigidity_error(cams.w2c_opencv[:, :3, :3]).max() < 1e-12


def test_shape_mismatch_messages():
    with pytest.raises(ShapeError, match="3 intrinsics for 5 poses"):
        Cameras.create(random_w2c(0, 5), camera_K(0, 3, HW), HW)
    with pytest.raises(ShapeError, match="image_hw"):
        Cameras.create(random_w2c(0, 5), camera_K(0, 1, HW), (1, 2, 3))


def test_resized_keeps_normalised_intrinsics():
    from posevlm.geometry import intrinsics_normalize

    cams = Cameras.create(random_w2c(4, 3), camera_K(4, 3, HW), HW)
    small = cams.resized((240, 320))
    assert small.image_hw.tolist() == [[240, 320]] * 3
    assert torch.allclose(intrinsics_normalize(small.K_pixels, small.image_hw),
                          intrinsics_normalize(cams.K_pixels, cams.image_hw))
    arrays = cams.to_numpy()
    assert isinstance(arrays["w2c_opencv"], np.ndarray) and arrays["image_hw"].dtype == np.int64


def test_intrinsics_of_another_image_size_are_an_error_naming_source_and_fix():
    K_1296 = torch.tensor([[1170.19, 0, 647.75], [0, 1170.19, 483.75], [0, 0, 1]], dtype=torch.float64)
    Cameras.create(random_w2c(5, 2), K_1296, (968, 1296), source="intrinsic_color.txt")  # its own image: fine
    with pytest.raises(ConventionError) as info:
        Cameras.create(random_w2c(5, 2), K_1296, HW, source="pose/", intrinsics_source="intrinsic_color.txt")
    msg = str(info.value)
    assert msg.startswith("intrinsic_color.txt: intrinsics cannot describe their images")
    assert "(647.75, 483.75) lies outside the 640x480 image" in msg and "intrinsics_resize" in msg


def test_non_finite_or_transposed_intrinsics_are_errors():
    K = camera_K(6, 3, HW)
    K[1, 0, 0] = float("nan")
    with pytest.raises(ConventionError, match=r"cams.npz: .*NaN or inf at frame positions \[1\]"):
        Cameras.create(random_w2c(6, 3), K, HW, source="cams.npz")
    with pytest.raises(ConventionError, match="pass K, not K.T"):
        Cameras.create(random_w2c(6, 3), camera_K(6, 3, HW).transpose(1, 2), HW)


def test_implausible_intrinsics_warn_and_still_load():
    K = camera_K(7, 4, HW)
    K[2, 0, 2] = 600.0  # principal point 44 % of the width off centre, still inside
    with pytest.warns(ConventionWarning, match=r"scan.txt: intrinsics look implausible .*frame positions \[2\]"):
        cams = Cameras.create(random_w2c(7, 4), K, HW, source="scan.txt")
    assert torch.equal(cams.K_pixels, K)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Cameras.create(random_w2c(7, 4), K, HW, validate=False)  # the opt-out checks nothing
