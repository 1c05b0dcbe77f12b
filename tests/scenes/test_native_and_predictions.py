
import numpy as np
import pytest
import torch
from strategies import random_K, random_w2c

from posevlm.errors import InputFileError
from posevlm.geometry import (Cameras, extrinsics_intrinsics_to_pose_encoding, intrinsics_crop, intrinsics_resize,
                              intrinsics_rotate90, transform_points)
from posevlm.scenes import load_predictions, load_scene, save_predictions, write_native_scene
from posevlm.scenes.loaders.video import read_pose_text

HW = (48, 64)


def camera_K(seed: int, n: int, hw: tuple[int, int]) -> torch.Tensor:
    """``random_K`` with square pixels, so intrinsics checks see a plausible camera (fy = fx)."""
    K = random_K(seed, n, hw)
    K[:, 1, 1] = K[:, 0, 0]
    return K


def make_scene(tmp_path, n=12):
    cams = Cameras.create(random_w2c(0, n), camera_K(0, 1, HW), HW)
    frames = ((np.full((*HW, 3), 10 * i, np.uint8), np.full(HW, 0.5 + 0.25 * i, np.float32),
               np.full(HW, i, np.int32)) for i in range(n))
    return cams, write_native_scene(tmp_path / "s", name="s", cameras=cams, fps=15.0, frames=frames,
                                    metadata={"room": None})


def test_native_round_trip(tmp_path):
    cams, path = make_scene(tmp_path)
    scene = load_scene(path)
    assert scene.provenance["loader"] == "native" and scene.num_frames == 12 and scene.fps == 15.0
    assert torch.equal(scene.cameras.w2c_opencv, cams.w2c_opencv)
    assert scene.depth.read(5)[0, 0] == pytest.approx(1.75)  # millimetre quantisation
    assert scene.instances.read(7)[3, 3] == 7
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial dirs left
    with pytest.raises(InputFileError, match="already exists"):
        make_scene(tmp_path)


def test_native_incomplete_scene_is_reported(tmp_path):
    _, path = make_scene(tmp_path)
    (path / "rgb.mp4").write_bytes(b"")
    with pytest.raises(InputFileError, match="rgb.mp4"):
        load_scene(path)
    (path / "scene.json").write_text("{broken")
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_scene(path)


def test_damaged_cameras_npz_names_the_file_and_the_fix(tmp_path):
    _, path = make_scene(tmp_path)
    good = (path / "cameras.npz").read_bytes()
    (path / "cameras.npz").write_bytes(good[:100])  # truncated
    with pytest.raises(InputFileError, match=r"cameras.npz is not a readable npz .*regenerate the scene"):
        load_scene(path)
    (path / "cameras.npz").write_bytes(good)
    arrays = dict(np.load(path / "cameras.npz"))
    np.savez(path / "cameras.npz", **{k: v for k, v in arrays.items() if k != "K_pixels"})
    with pytest.raises(InputFileError, match=r"cameras.npz lacks K_pixels"):
        load_scene(path)
    (path / "cameras.npz").unlink()
    with pytest.raises(InputFileError, match=r"cameras.npz is missing"):
        load_scene(path, format="native")


def test_predictions_round_trip_with_pose_encoding(tmp_path):
    w2c, K = random_w2c(1, 6), camera_K(1, 1, (392, 518)).expand(6, 3, 3).clone()
    K[:, 0, 2], K[:, 1, 2] = 259.0, 196.0  # VGGT: centred principal point
    enc = extrinsics_intrinsics_to_pose_encoding(w2c, K, (392, 518))
    pts = np.random.default_rng(0).normal(size=(6, 4, 5, 3)).astype(np.float16)
    path = save_predictions(tmp_path / "p.npz", frame_ids=[0, 10, 20, 30, 40, 50], image_hw=(392, 518),
                            pose_encoding=enc.numpy(), world_points=pts, world_points_conf=np.ones((6, 4, 5)),
                            meta={"model": "facebook/VGGT-1B"})
    pred = load_predictions(path)
    assert torch.allclose(pred.cameras.w2c_opencv, w2c, atol=1e-12)
    assert torch.allclose(pred.cameras.K_pixels, K, atol=1e-9)
    assert pred.point_maps.image_hw == (4, 5) and pred.meta["model"] == "facebook/VGGT-1B"


def test_predictions_undo_vggt_style_preprocessing(tmp_path):
    """Cameras predicted on a rotated, resized, cropped portrait frame map back to the original frame."""
    src_hw = (640, 480)  # portrait H x W
    w2c = random_w2c(2, 3)
    K_src = camera_K(2, 3, src_hw)
    K, hw, rot = intrinsics_rotate90(K_src, src_hw, -1)  # VGGT turns portrait frames clockwise
    lift = torch.eye(4, dtype=torch.float64)
    lift[:3, :3] = rot
    w2c_model = lift @ w2c
    K = intrinsics_resize(K, hw, (392, 518))
    K, crop_hw = intrinsics_crop(K, (392, 518), 10, 0, (378, 518))
    ops = [{"op": "rotate90", "k": -1}, {"op": "resize", "hw": [392, 518]},
           {"op": "crop", "top": 10, "left": 0, "hw": [378, 518]}]
    path = save_predictions(tmp_path / "p.npz", frame_ids=[0, 1, 2], image_hw=(378, 518), w2c_opencv=w2c_model.numpy(),
                            K_pixels=K.numpy(), source_image_hw=src_hw, preprocess=ops)
    back = load_predictions(path).cameras_in_source_frame()
    assert back.image_hw.tolist() == [list(src_hw)] * 3
    pts = torch.tensor([[0.3, -0.2, 4.0]], dtype=torch.float64)
    for i in range(3):
        world = transform_points(torch.linalg.inv(w2c[i]), pts)
        uv_true = (pts @ K_src[i].T)[:, :2] / pts[:, 2:]
        cam = transform_points(back.w2c_opencv[i], world)
        uv = (cam @ back.K_pixels[i].T)[:, :2] / cam[:, 2:]
        assert torch.allclose(uv, uv_true, atol=1e-8)


def test_predictions_errors_name_file_and_fix(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(InputFileError, match="not a posevlm predictions file.*save_predictions"):
        load_predictions(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(InputFileError, match="junk.npz"):
        load_predictions(tmp_path / "junk.npz")


def test_video_with_text_pose_file_and_predictions_subset(tmp_path):
    from posevlm.errors import ConfigError
    from posevlm.geometry import w2c_to_c2w
    from posevlm.scenes import write_video

    n = 10
    write_video(tmp_path / "v.mp4", (np.zeros((*HW, 3), np.uint8) for _ in range(n)), fps=10)
    w2c = random_w2c(3, n)
    c2w = w2c_to_c2w(w2c)
    np.savetxt(tmp_path / "poses.txt", c2w.reshape(n, 16).numpy())
    scene = load_scene(tmp_path / "v.mp4", poses=tmp_path / "poses.txt", pose_convention="c2w_opencv",
                       intrinsics=(50, 50, 32, 24))
    assert torch.allclose(scene.cameras.w2c_opencv, w2c, atol=1e-9)
    assert scene.cameras.image_hw[0].tolist() == list(HW)
    with pytest.raises(ConfigError, match="pose_convention"):
        load_scene(tmp_path / "v.mp4", poses=tmp_path / "poses.txt", intrinsics=(50, 50, 32, 24))
    with pytest.raises(ConfigError, match=r"intrinsics=\(fx, fy, cx, cy\)"):
        load_scene(tmp_path / "v.mp4", poses=tmp_path / "poses.txt", pose_convention="c2w_opencv")
    np.savetxt(tmp_path / "short.txt", c2w[:7].reshape(7, 16).numpy())
    with pytest.raises(InputFileError, match="has 7 poses but the frames number 10"):
        load_scene(tmp_path / "v.mp4", poses=tmp_path / "short.txt", pose_convention="c2w_opencv",
                   intrinsics=(50, 50, 32, 24))
    assert read_pose_text(tmp_path / "poses.txt").shape == (n, 4, 4)
    # predictions for a pool of frames: the scene keeps the posed frames only
    save_predictions(tmp_path / "pool.npz", frame_ids=[0, 4, 9], image_hw=HW, w2c_opencv=w2c[[0, 4, 9]].numpy(),
                     K_pixels=camera_K(0, 3, HW).numpy())
    pooled = load_scene(tmp_path / "v.mp4", poses=tmp_path / "pool.npz")
    assert pooled.frame_ids.tolist() == [0, 4, 9] and pooled.provenance["pose_source"] == "predictions"
    assert pooled.read_rgb([9]).shape == (1, *HW, 3)
