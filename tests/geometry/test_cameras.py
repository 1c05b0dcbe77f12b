import numpy as np
import pytest
import torch
from strategies import random_K, random_w2c

from posevlm.errors import ConventionError, ShapeError
from posevlm.geometry import Cameras, rotation_rigidity_error, w2c_to_c2w

HW = (480, 640)


def test_create_broadcasts_single_K_and_size():
    w2c = random_w2c(0, 5)
    cams = Cameras.create(w2c, random_K(0, 1, HW)[0], HW)
    assert cams.K_pixels.shape == (5, 3, 3) and cams.image_hw.tolist() == [list(HW)] * 5
    assert len(cams[1:3]) == 2 and torch.equal(cams[[4, 0]].w2c_opencv, w2c[[4, 0]])


def test_from_c2w_conventions_agree():
    w2c = random_w2c(1, 4)
    K = random_K(1, 1, HW)
    a = Cameras.from_c2w_opencv(w2c_to_c2w(w2c), K, HW)
    flip = torch.diag(torch.tensor([1.0, -1, -1, 1], dtype=torch.float64))
    b = Cameras.from_c2w_opengl(w2c_to_c2w(w2c) @ flip, K, HW)
    assert torch.allclose(a.w2c_opencv, w2c, atol=1e-12) and torch.allclose(b.w2c_opencv, w2c, atol=1e-12)


def test_nan_pose_names_source_and_frames():
    w2c = random_w2c(2, 6)
    w2c[3, 0, 3] = float("inf")
    with pytest.raises(ConventionError, match=r"poses.txt: 1 pose\(s\) contain NaN or inf \(frame positions \[3\]\)"):
        Cameras.create(w2c, random_K(2, 1, HW), HW, source="poses.txt")


def test_non_rigid_rotation_error_or_reorthonormalise():
    w2c = random_w2c(3, 4)
    w2c[2, :3, :3] *= 1.01
    with pytest.raises(ConventionError, match="not rigid beyond tolerance.*reorthonormalize"):
        Cameras.create(w2c, random_K(3, 1, HW), HW)
    with pytest.warns(UserWarning, match="re-orthonormalised 1"):
        cams = Cameras.create(w2c, random_K(3, 1, HW), HW, on_invalid="reorthonormalize")
    assert rotation_rigidity_error(cams.w2c_opencv[:, :3, :3]).max() < 1e-12


def test_shape_mismatch_messages():
    with pytest.raises(ShapeError, match="3 intrinsics for 5 poses"):
        Cameras.create(random_w2c(0, 5), random_K(0, 3, HW), HW)
    with pytest.raises(ShapeError, match="image_hw"):
        Cameras.create(random_w2c(0, 5), random_K(0, 1, HW), (1, 2, 3))


def test_resized_keeps_normalised_intrinsics():
    from posevlm.geometry import intrinsics_normalize

    cams = Cameras.create(random_w2c(4, 3), random_K(4, 3, HW), HW)
    small = cams.resized((240, 320))
    assert small.image_hw.tolist() == [[240, 320]] * 3
    assert torch.allclose(intrinsics_normalize(small.K_pixels, small.image_hw),
                          intrinsics_normalize(cams.K_pixels, cams.image_hw))
    arrays = cams.to_numpy()
    assert isinstance(arrays["w2c_opencv"], np.ndarray) and arrays["image_hw"].dtype == np.int64
