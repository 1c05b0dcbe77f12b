"""ScanNet loader on a tiny SensReader-format fixture written from known cameras (make_fixtures.py)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posevlm.errors import ConfigError, ConventionError, InputFileError
from posevlm.geometry import rotation_rigidity_error
from posevlm.scenes.loaders.scannet import detect_scannet, load_scannet

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("scannet_fixture_truth", FIXTURES / "make_fixtures.py")
gt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gt)

SCENE = FIXTURES / "scannet" / gt.SCANNET_SCENE
VALID_IDS = [i for i in gt.SCANNET_FRAME_IDS if i not in gt.SCANNET_INVALID_IDS]


@pytest.fixture(scope="module")
def scene():
    return load_scannet(SCENE, on_invalid_pose="drop")


@pytest.fixture
def copy(tmp_path) -> Path:
    dst = tmp_path / gt.SCANNET_SCENE
    shutil.copytree(SCENE, dst)
    return dst


def project(cameras, point: np.ndarray) -> np.ndarray:
    """(S, 2) pixels of one world point: K (R X + t), divided by depth."""
    w2c, K = cameras.w2c_opencv.numpy(), cameras.K_pixels.numpy()
    p = np.einsum("sij,j->si", w2c[:, :3, :3], point) + w2c[:, :3, 3]
    uvw = np.einsum("sij,sj->si", K, p)
    return uvw[:, :2] / uvw[:, 2:]


def test_w2c_equals_inverse_of_known_c2w(scene):
    expected = np.stack([np.linalg.inv(gt.SCANNET_C2W_OPENCV[i]) for i in VALID_IDS])
    np.testing.assert_allclose(scene.cameras.w2c_opencv.numpy(), expected, atol=1e-5)
    assert scene.cameras.w2c_opencv.dtype.is_floating_point


def test_intrinsics_and_image_size_from_a_colour_image(scene):
    np.testing.assert_allclose(scene.cameras.K_pixels.numpy(), np.broadcast_to(gt.SCANNET_K_COLOR, (3, 3, 3)))
    assert scene.cameras.image_hw.tolist() == [list(gt.SCANNET_COLOR_HW)] * 3
    assert scene.image_hw() == gt.SCANNET_COLOR_HW
    np.testing.assert_allclose(scene.metadata["depth_K_pixels"], gt.SCANNET_K_DEPTH)
    assert scene.metadata["depth_image_hw"].tolist() == list(gt.SCANNET_DEPTH_HW)
    np.testing.assert_allclose(scene.metadata["extrinsic_color"], np.eye(4))


def test_numeric_order_with_ids_over_10000(scene):
    assert scene.frame_ids.tolist() == [0, 1008, 10070]  # lexicographic would put 10070 before 1008
    assert scene.rgb.path(10070).name == "10070.jpg"
    c2w = scene.cameras_for([10070]).c2w_opencv[0].numpy()
    np.testing.assert_allclose(c2w, gt.SCANNET_C2W_OPENCV[10070], atol=1e-5)


def test_scene_name_fps_and_provenance(scene):
    assert scene.name == "scene0000_00"
    assert scene.fps == 30.0
    prov = scene.provenance
    assert prov["loader"] == "scannet" and prov["source"] == str(SCENE)
    assert "c2w_opencv" in prov["source_convention"]
    assert any("inverse" in c for c in prov["conversions"])
    assert any("fps = 30" in a for a in prov["assumptions"])


def test_invalid_pose_error_names_file_and_fix():
    with pytest.raises(InputFileError) as info:
        load_scannet(SCENE)
    msg = str(info.value)
    assert "pose/5.txt" in msg and "on_invalid_pose='drop'" in msg
    assert info.value.path.name == "5.txt"


def test_drop_mode_records_dropped_ids(scene):
    assert 5 not in scene.frame_ids
    assert scene.provenance["dropped_invalid_pose_frame_ids"] == [5]
    assert scene.provenance["num_frames_found"] == 4
    assert len(scene.cameras) == len(scene) == 3
    assert scene.rgb.frame_ids.tolist() == scene.frame_ids.tolist()


def test_depth_in_metres(scene):
    depth = scene.depth.read(1008)
    assert depth.dtype == np.float32 and depth.shape == gt.SCANNET_DEPTH_HW
    np.testing.assert_allclose(depth, gt.scannet_depth_mm(1008) / 1000.0, rtol=1e-6)
    assert depth[0, 0] == 0.0  # invalid stays 0


def test_known_world_point_projects_onto_the_drawn_blob(scene):
    uv = project(scene.cameras, gt.WORLD_POINT)
    expected = np.stack(
        [gt.project_opencv(gt.SCANNET_C2W_OPENCV[i], gt.SCANNET_K_COLOR, gt.WORLD_POINT) for i in VALID_IDS]
    )
    np.testing.assert_allclose(uv, expected, atol=1e-3)
    for row, fid in zip(uv, scene.frame_ids):
        np.testing.assert_allclose(row, gt.blob_centroid(scene.read_rgb([fid])[0]), atol=0.25)


def test_png_colour_variant(copy):
    for jpg in (copy / "color").glob("*.jpg"):
        Image.open(jpg).save(jpg.with_suffix(".png"))
        jpg.unlink()
    scene = load_scannet(copy, on_invalid_pose="drop")
    assert scene.rgb.path(10070).suffix == ".png"
    expected = np.stack([np.linalg.inv(gt.SCANNET_C2W_OPENCV[i]) for i in VALID_IDS])
    np.testing.assert_allclose(scene.cameras.w2c_opencv.numpy(), expected, atol=1e-5)


def test_missing_intrinsics_names_the_file(copy):
    (copy / "intrinsic" / "intrinsic_color.txt").unlink()
    with pytest.raises(InputFileError, match="intrinsic_color.txt") as info:
        load_scannet(copy, on_invalid_pose="drop")
    assert info.value.path == copy / "intrinsic" / "intrinsic_color.txt"


@pytest.mark.parametrize("change", ["remove_pose", "extra_pose"])
def test_pose_count_different_from_frame_count(copy, change):
    if change == "remove_pose":
        (copy / "pose" / "1008.txt").unlink()
    else:
        shutil.copy(copy / "pose" / "0.txt", copy / "pose" / "77.txt")
    with pytest.raises(InputFileError, match="1008" if change == "remove_pose" else "77") as info:
        load_scannet(copy, on_invalid_pose="drop")
    assert str(copy / "pose") in str(info.value) and info.value.path == copy / "pose"


def test_unparsable_pose_file_names_it(copy):
    (copy / "pose" / "1008.txt").write_text("1 0 0 0\n0 1 0 oops\n")
    with pytest.raises(InputFileError, match="1008.txt") as info:
        load_scannet(copy, on_invalid_pose="drop")
    assert info.value.path.name == "1008.txt"


def _write_scaled_pose(copy: Path, fid: int, scale: float) -> None:
    c2w = gt.SCANNET_C2W_OPENCV[fid].copy()
    c2w[:3, :3] *= scale
    (copy / "pose" / f"{fid}.txt").write_text("".join(" ".join(f"{v:.6f}" for v in r) + "\n" for r in c2w))


def test_non_rigid_pose_names_the_file(copy):
    _write_scaled_pose(copy, 1008, 1.1)
    with pytest.raises(ConventionError, match=r"pose/1008\.txt.*on_non_rigid='reorthonormalize'"):
        load_scannet(copy, on_invalid_pose="drop")


def test_non_rigid_pose_reorthonormalized_on_request(copy):
    _write_scaled_pose(copy, 1008, 1.1)
    with pytest.warns(UserWarning, match="re-orthonormalised"):
        scene = load_scannet(copy, on_invalid_pose="drop", on_non_rigid="reorthonormalize")
    assert float(rotation_rigidity_error(scene.cameras.w2c_opencv[:, :3, :3]).max()) < 1e-9
    center = scene.cameras.centers[1].numpy()
    np.testing.assert_allclose(center, gt.SCANNET_C2W_OPENCV[1008][:3, 3], atol=1e-5)
    assert any("re-orthonormalised" in c for c in scene.provenance["conversions"])


def test_missing_depth_frame_is_an_error(copy):
    (copy / "depth" / "1008.png").unlink()
    with pytest.raises(InputFileError, match="1008"):
        load_scannet(copy, on_invalid_pose="drop")


def test_missing_scene_folder(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_scannet(tmp_path / "nope")


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="on_invalid_pose"):
        load_scannet(SCENE, on_invalid_pose="skip")


def test_detection(tmp_path):
    assert detect_scannet(SCENE)
    assert not detect_scannet(FIXTURES / "scannetpp" / gt.SCANNETPP_SCENE)
    assert not detect_scannet(FIXTURES / "arkitscenes" / gt.ARKIT_VIDEO_ID)
    assert not detect_scannet(tmp_path)
    assert not detect_scannet(tmp_path / "missing")


# -- colour intrinsics vs the colour files' size (ScanNet's intrinsic_color.txt is for 1296x968) ----------
SCANNET_K_1296 = np.array([[1170.187988, 0.0, 647.75], [0.0, 1170.187988, 483.75], [0.0, 0.0, 1.0]])


def _resize_colour_frames(root: Path, color_hw: tuple[int, int]) -> np.ndarray:
    """Make ``root`` a resized export: colour frames of ``color_hw`` drawn with ScanNet's 1296x968 K scaled
    to that size, while ``intrinsic_color.txt`` keeps the 1296x968 K. Returns the scaled K (the truth)."""
    h, w = color_hw
    K_small = SCANNET_K_1296 * np.array([[w / 1296], [h / 968], [1.0]])
    for jpg in (root / "color").glob("*.jpg"):
        c2w = gt.SCANNET_C2W_OPENCV.get(int(jpg.stem))
        uv = gt.project_opencv(c2w, K_small, gt.WORLD_POINT) if c2w is not None else None
        Image.fromarray(gt.blob_image(color_hw, uv, sigma=2.0)).save(jpg, quality=95)
    K4 = np.eye(4)
    K4[:3, :3] = SCANNET_K_1296
    (root / "intrinsic" / "intrinsic_color.txt").write_text(gt._fmt_rows(K4))
    return K_small


def test_resized_colour_frames_rescale_the_1296x968_intrinsics(copy):
    K_small = _resize_colour_frames(copy, (240, 320))
    scene = load_scannet(copy, on_invalid_pose="drop")
    np.testing.assert_allclose(scene.cameras.K_pixels.numpy(), np.broadcast_to(K_small, (3, 3, 3)), rtol=1e-12)
    assert scene.cameras.image_hw.tolist() == [[240, 320]] * 3
    assert scene.metadata["intrinsic_color_image_hw"].tolist() == [968, 1296]
    assert any("rescaled from intrinsic_color.txt's 1296x968" in c for c in scene.provenance["conversions"])
    uv = project(scene.cameras, gt.WORLD_POINT)
    for row, fid in zip(uv, scene.frame_ids):
        np.testing.assert_allclose(row, gt.blob_centroid(scene.read_rgb([fid])[0]), atol=0.3)


def test_intrinsics_written_for_the_files_are_kept(scene):
    """Re-exports that wrote K for their own frame size (the fixture: 24x18) are not rescaled."""
    assert scene.metadata["intrinsic_color_image_hw"].tolist() == list(gt.SCANNET_COLOR_HW)
    assert not any("rescaled" in c for c in scene.provenance["conversions"])


def test_cropped_colour_frames_are_refused_naming_the_fix(copy):
    _resize_colour_frames(copy, (240, 300))  # 1.25 aspect: not a resize of 1296x968
    with pytest.raises(InputFileError) as info:
        load_scannet(copy, on_invalid_pose="drop")
    msg = str(info.value)
    assert "1296x968" in msg and "300x240" in msg and "different aspect ratio" in msg
    assert "Write intrinsic_color.txt for the 300x240 frames" in msg
    assert info.value.path == copy / "intrinsic" / "intrinsic_color.txt"


def test_scannet_frames_25k_layout(tmp_path):
    """Zero-padded names, intrinsics_color.txt / intrinsics_depth.txt in the scene folder, 1296x968 K."""
    root = tmp_path / gt.SCANNET_SCENE
    shutil.copytree(SCENE, root)
    K_small = _resize_colour_frames(root, (240, 320))
    for sub in ("color", "depth", "pose"):
        for f in list((root / sub).iterdir()):
            f.rename(f.with_name(f"{int(f.stem):06d}{f.suffix}"))
    for name in ("color", "depth"):
        (root / "intrinsic" / f"intrinsic_{name}.txt").rename(root / f"intrinsics_{name}.txt")
    shutil.rmtree(root / "intrinsic")
    assert detect_scannet(root)
    scene = load_scannet(root, on_invalid_pose="drop")
    assert scene.frame_ids.tolist() == [0, 1008, 10070] and scene.rgb.path(1008).name == "001008.jpg"
    np.testing.assert_allclose(scene.cameras.K_pixels.numpy(), np.broadcast_to(K_small, (3, 3, 3)), rtol=1e-12)
    np.testing.assert_allclose(scene.metadata["depth_K_pixels"], gt.SCANNET_K_DEPTH)
    assert scene.provenance["intrinsics"] == str(root / "intrinsics_color.txt")


def test_pose_convention_w2c_reads_world_to_camera_pose_files(copy):
    for fid in VALID_IDS:
        (copy / "pose" / f"{fid}.txt").write_text(gt._fmt_rows(np.linalg.inv(gt.SCANNET_C2W_OPENCV[fid])))
    scene = load_scannet(copy, on_invalid_pose="drop", pose_convention="w2c_opencv")
    expected = np.stack([np.linalg.inv(gt.SCANNET_C2W_OPENCV[i]) for i in VALID_IDS])
    np.testing.assert_allclose(scene.cameras.w2c_opencv.numpy(), expected, atol=1e-5)
    assert scene.provenance["source_convention"].startswith("w2c_opencv")
    with pytest.raises(ConfigError, match="pose_convention"):
        load_scannet(copy, pose_convention="c2w_opengl")
