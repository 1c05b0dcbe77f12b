"""ScanNet++ DSLR loader on a tiny nerfstudio-format fixture written from known OpenGL cameras."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from posevlm.errors import ConfigError, ConventionError, InputFileError
from posevlm.scenes.loaders.scannetpp import detect_scannetpp, load_scannetpp

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("scannetpp_fixture_truth", FIXTURES / "make_fixtures.py")
gt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gt)

SCENE = FIXTURES / "scannetpp" / gt.SCANNETPP_SCENE
JSON = SCENE / "dslr" / "nerfstudio" / "transforms_undistorted.json"
NAMES = sorted(gt.SCANNETPP_C2W_OPENGL)  # DSC numbers ascending: 12, 50, 103, 1001
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def scene():
    return load_scannetpp(SCENE)


@pytest.fixture
def copy(tmp_path) -> Path:
    dst = tmp_path / gt.SCANNETPP_SCENE
    shutil.copytree(SCENE, dst)
    return dst


def edit_json(root: Path, edit) -> Path:
    path = root / "dslr" / "nerfstudio" / "transforms_undistorted.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


def expected_w2c_opencv(names) -> np.ndarray:
    """Independent conversion: flip the camera's y and z axes (OpenGL -> OpenCV), then invert."""
    return np.stack([np.linalg.inv(gt.SCANNETPP_C2W_OPENGL[n] @ OPENGL_TO_OPENCV) for n in names])


def project(cameras, point: np.ndarray) -> np.ndarray:
    w2c, K = cameras.w2c_opencv.numpy(), cameras.K_pixels.numpy()
    p = np.einsum("sij,j->si", w2c[:, :3, :3], point) + w2c[:, :3, 3]
    uvw = np.einsum("sij,sj->si", K, p)
    return uvw[:, :2] / uvw[:, 2:]


def test_w2c_equals_converted_known_c2w_opengl(scene):
    assert scene.frame_ids.tolist() == [12, 50, 103, 1001]
    np.testing.assert_allclose(scene.cameras.w2c_opencv.numpy(), expected_w2c_opencv(NAMES), atol=1e-9)


def test_camera_looks_down_its_plus_z_axis(scene):
    """OpenCV forward (+z) in world = OpenGL -z: the pin against a missing axis flip."""
    forward_world = scene.cameras.c2w_opencv[:, :3, 2].numpy()
    expected = -np.stack([gt.SCANNETPP_C2W_OPENGL[n][:3, 2] for n in NAMES])
    np.testing.assert_allclose(forward_world, expected, atol=1e-9)


def test_resized_images_rescale_intrinsics(scene):
    s = gt.SCANNETPP_RESIZED_HW[0] / gt.SCANNETPP_FULL_HW[0]
    K = gt.SCANNETPP_K_FULL * np.array([[s], [s], [1.0]])
    np.testing.assert_allclose(scene.cameras.K_pixels.numpy(), np.broadcast_to(K, (4, 3, 3)), atol=1e-12)
    assert scene.cameras.image_hw.tolist() == [list(gt.SCANNETPP_RESIZED_HW)] * 4
    assert any("rescaled" in c for c in scene.provenance["conversions"])
    assert scene.provenance["images"].endswith("resized_undistorted_images")


def test_full_size_undistorted_images_keep_intrinsics():
    scene = load_scannetpp(SCENE, images="undistorted")
    K = np.broadcast_to(gt.SCANNETPP_K_FULL, (4, 3, 3))
    np.testing.assert_allclose(scene.cameras.K_pixels.numpy(), K)
    assert scene.cameras.image_hw.tolist() == [list(gt.SCANNETPP_FULL_HW)] * 4
    assert not any("rescaled" in c for c in scene.provenance["conversions"])


@pytest.mark.parametrize("images", ["auto", "undistorted"])
def test_known_world_point_projects_onto_the_drawn_blob(images):
    scene = load_scannetpp(SCENE, images=images)
    uv = project(scene.cameras, gt.WORLD_POINT)
    scale = scene.cameras.image_hw[0, 0].item() / gt.SCANNETPP_FULL_HW[0]
    expected = np.stack(
        [gt.project_opengl(gt.SCANNETPP_C2W_OPENGL[n], gt.SCANNETPP_K_FULL, gt.WORLD_POINT) for n in NAMES]
    )
    np.testing.assert_allclose(uv, expected * scale, atol=1e-6)
    for row, fid in zip(uv, scene.frame_ids):
        np.testing.assert_allclose(row, gt.blob_centroid(scene.read_rgb([fid])[0]), atol=0.25)


@pytest.mark.parametrize("where", ["scene", "dslr", "json"])
def test_accepts_scene_dslr_or_json_path(where, scene):
    path = {"scene": SCENE, "dslr": SCENE / "dslr", "json": JSON}[where]
    other = load_scannetpp(path)
    assert other.name == gt.SCANNETPP_SCENE
    np.testing.assert_array_equal(other.cameras.w2c_opencv.numpy(), scene.cameras.w2c_opencv.numpy())


def test_falls_back_to_transforms_json(copy):
    nerfstudio = copy / "dslr" / "nerfstudio"
    (nerfstudio / "transforms_undistorted.json").rename(nerfstudio / "transforms.json")
    scene = load_scannetpp(copy)
    assert scene.provenance["json"].endswith("transforms.json")
    np.testing.assert_allclose(scene.cameras.w2c_opencv.numpy(), expected_w2c_opencv(NAMES), atol=1e-9)


def test_test_frames_merged_and_listed(scene):
    assert 50 in scene.frame_ids
    assert scene.metadata["test_frame_ids"].tolist() == [50]


def test_bad_frames_kept_by_default_and_dropped_on_request(scene):
    assert 1001 in scene.frame_ids and scene.metadata["bad_frame_ids"].tolist() == [1001]
    kept = load_scannetpp(SCENE, skip_bad=True)
    assert kept.frame_ids.tolist() == [12, 50, 103]
    assert kept.provenance["dropped_bad_frame_ids"] == [1001]
    np.testing.assert_allclose(kept.cameras.w2c_opencv.numpy(), expected_w2c_opencv(NAMES[:3]), atol=1e-9)


def test_no_fps_and_provenance(scene):
    assert scene.fps is None and scene.timestamps_s is None and scene.depth is None
    prov = scene.provenance
    assert prov["loader"] == "scannetpp" and prov["source"] == str(SCENE)
    assert "c2w_opengl" in prov["source_convention"]
    assert any("fps None" in a for a in prov["assumptions"])


def test_unreadable_json_names_the_file(copy):
    path = copy / "dslr" / "nerfstudio" / "transforms_undistorted.json"
    path.write_text('{"frames": [')
    with pytest.raises(InputFileError, match="transforms_undistorted.json") as info:
        load_scannetpp(copy)
    assert info.value.path == path


def test_missing_intrinsics_field_names_the_file(copy):
    path = edit_json(copy, lambda d: d.pop("fl_x"))
    with pytest.raises(InputFileError, match="'fl_x'") as info:
        load_scannetpp(copy)
    assert info.value.path == path and str(path) in str(info.value)


def test_non_rigid_transform_matrix_names_the_frame(copy):
    def scale(doc):
        doc["frames"][0]["transform_matrix"][0][0] *= 1.2

    edit_json(copy, scale)
    with pytest.raises(ConventionError, match=gt.SCANNETPP_TRAIN[0]) as info:
        load_scannetpp(copy)
    assert "transforms_undistorted.json" in str(info.value)


def test_malformed_transform_matrix(copy):
    edit_json(copy, lambda d: d["frames"][1].update(transform_matrix=[[1, 0, 0], [0, 1, 0]]))
    with pytest.raises(InputFileError, match="transform_matrix"):
        load_scannetpp(copy)


def test_file_path_without_number_names_the_json(copy):
    path = edit_json(copy, lambda d: d["frames"][0].update(file_path="cover.JPG"))
    with pytest.raises(InputFileError, match="cover.JPG") as info:
        load_scannetpp(copy)
    assert info.value.path == path


def test_missing_image_file(copy):
    (copy / "dslr" / "resized_undistorted_images" / "DSC00050.JPG").unlink()
    with pytest.raises(InputFileError, match="DSC00050.JPG"):
        load_scannetpp(copy)


def test_missing_image_folder_lists_available():
    with pytest.raises(InputFileError, match="Available: resized_undistorted, undistorted"):
        load_scannetpp(SCENE, images="resized")


def test_image_aspect_ratio_contradicting_json(copy):
    edit_json(copy, lambda d: d.update(w=60))
    with pytest.raises(InputFileError, match="aspect"):
        load_scannetpp(copy)


def test_distortion_model_warns_and_is_recorded(copy):
    edit_json(copy, lambda d: d.update(camera_model="OPENCV_FISHEYE"))
    with pytest.warns(UserWarning, match="distortion"):
        scene = load_scannetpp(copy)
    assert any("distortion" in a for a in scene.provenance["assumptions"])


def test_unknown_images_choice():
    with pytest.raises(ConfigError, match="images"):
        load_scannetpp(SCENE, images="full")


def test_missing_json(tmp_path):
    with pytest.raises(InputFileError, match="transforms"):
        load_scannetpp(tmp_path)


def test_detection(tmp_path):
    assert detect_scannetpp(SCENE) and detect_scannetpp(SCENE / "dslr") and detect_scannetpp(JSON)
    assert not detect_scannetpp(FIXTURES / "scannet" / gt.SCANNET_SCENE)
    assert not detect_scannetpp(FIXTURES / "arkitscenes" / gt.ARKIT_VIDEO_ID)
    assert not detect_scannetpp(tmp_path)
    assert not detect_scannetpp(tmp_path / "missing")
