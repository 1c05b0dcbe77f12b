"""ARKitScenes loader on a tiny lowres_wide fixture written from known world-to-camera axis-angle poses."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posevlm.errors import ConfigError, InputFileError
from posevlm.scenes.loaders.arkitscenes import detect_arkitscenes, load_arkitscenes

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("arkit_fixture_truth", FIXTURES / "make_fixtures.py")
gt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gt)

VIDEO = FIXTURES / "arkitscenes" / gt.ARKIT_VIDEO_ID
FRAMES = VIDEO / f"{gt.ARKIT_VIDEO_ID}_frames"
KEPT_TS = [t for t in gt.ARKIT_FRAME_TIMESTAMPS if t not in gt.ARKIT_UNMATCHED]


@pytest.fixture(scope="module")
def scene():
    return load_arkitscenes(VIDEO)


@pytest.fixture
def copy(tmp_path) -> Path:
    dst = tmp_path / gt.ARKIT_VIDEO_ID
    shutil.copytree(VIDEO, dst)
    return dst


def traj_w2c(rows) -> np.ndarray:
    """Independent reading of .traj rows: [Rodrigues(rotvec) | t] is world-to-camera (OpenCV axes)."""
    out = np.tile(np.eye(4), (len(rows), 1, 1))
    for m, (_, rotvec, t) in zip(out, rows):
        m[:3, :3], m[:3, 3] = Rotation.from_rotvec(rotvec).as_matrix(), t
    return out


def project(cameras, point: np.ndarray) -> np.ndarray:
    w2c, K = cameras.w2c_opencv.numpy(), cameras.K_pixels.numpy()
    p = np.einsum("sij,j->si", w2c[:, :3, :3], point) + w2c[:, :3, 3]
    uvw = np.einsum("sij,sj->si", K, p)
    return uvw[:, :2] / uvw[:, 2:]


def test_w2c_equals_known_axis_angle_poses(scene):
    # the first four traj rows are the poses of the kept frames (the fifth has no frame)
    np.testing.assert_allclose(scene.cameras.w2c_opencv.numpy(), traj_w2c(gt.ARKIT_TRAJ[:4]), atol=1e-5)


def test_matches_apple_trajstringtomatrix_reference(scene):
    """apple/ARKitScenes tenFpsDataLoader: pose = inv([Rodrigues(r) | t]) maps camera -> world, and
    generate_point back-projects pixels with inv(K) @ [u d, v d, d] (OpenCV axes). Replay it."""
    with open(FRAMES / "lowres_wide.traj") as f:
        line = f.readline()
    tokens = [float(v) for v in line.split()]
    extrinsics = np.eye(4)
    extrinsics[:3, :3] = Rotation.from_rotvec(tokens[1:4]).as_matrix()
    extrinsics[:3, 3] = tokens[4:7]
    apple_pose = np.linalg.inv(extrinsics)  # camera -> world
    np.testing.assert_allclose(scene.cameras.c2w_opencv[0].numpy(), apple_pose, atol=1e-9)
    K = gt.ARKIT_K[KEPT_TS[0]]
    u, v = gt.project_w2c_rotvec(np.array(tokens[1:4]), np.array(tokens[4:7]), K, gt.WORLD_POINT)
    d = (extrinsics @ np.append(gt.WORLD_POINT, 1.0))[2]
    cam = np.linalg.inv(K) @ np.array([u * d, v * d, d])
    np.testing.assert_allclose((apple_pose @ np.append(cam, 1.0))[:3], gt.WORLD_POINT, atol=1e-9)


def test_frame_ids_timestamps_and_fps(scene):
    assert scene.frame_ids.tolist() == [0, 1, 3, 4]  # positions in timestamp order; 2 has no pose
    np.testing.assert_allclose(scene.timestamps_s, KEPT_TS)
    assert scene.fps == pytest.approx(10.0, rel=1e-6)
    assert scene.name == gt.ARKIT_VIDEO_ID


def test_unmatched_frame_dropped_and_recorded(scene):
    prov = scene.provenance
    assert prov["dropped_unmatched_frame_ids"] == [2]
    assert prov["dropped_unmatched_timestamps_s"] == pytest.approx(gt.ARKIT_UNMATCHED)
    assert prov["num_frames_found"] == 5 and prov["max_matched_pose_gap_s"] < 0.001
    assert prov["loader"] == "arkitscenes" and "world-to-camera" in prov["source_convention"]


def test_larger_time_gap_keeps_every_frame():
    scene = load_arkitscenes(VIDEO, max_time_gap_s=0.2)
    assert scene.frame_ids.tolist() == [0, 1, 2, 3, 4]
    assert scene.provenance["dropped_unmatched_frame_ids"] == []


def test_per_frame_intrinsics_and_image_size(scene):
    # frame 4120.550's .pincam is named 4120.551, as real exports drift by a millisecond
    expected = np.stack([gt.ARKIT_K[t] for t in KEPT_TS])
    np.testing.assert_allclose(scene.cameras.K_pixels.numpy(), expected)
    assert scene.cameras.image_hw.tolist() == [list(gt.ARKIT_HW)] * 4


def test_known_world_point_projects_onto_the_drawn_blob(scene):
    uv = project(scene.cameras, gt.WORLD_POINT)
    expected = np.stack([gt.project_w2c_rotvec(r, t, gt.ARKIT_K[ts], gt.WORLD_POINT)
                         for ts, (_, r, t) in zip(KEPT_TS, gt.ARKIT_TRAJ)])  # fmt: skip
    np.testing.assert_allclose(uv, expected, atol=1e-4)  # .traj holds 6 decimals
    for row, fid in zip(uv, scene.frame_ids):
        np.testing.assert_allclose(row, gt.blob_centroid(scene.read_rgb([fid])[0]), atol=0.25)


def test_depth_in_metres(scene):
    depth = scene.depth.read(3)
    assert depth.dtype == np.float32 and depth.shape == gt.ARKIT_HW
    np.testing.assert_allclose(depth, gt.depth_mm(gt.ARKIT_HW, 3) / 1000.0, rtol=1e-6)


def test_accepts_the_frames_folder_itself(scene):
    other = load_arkitscenes(FRAMES)
    assert other.name == gt.ARKIT_VIDEO_ID
    np.testing.assert_array_equal(other.cameras.w2c_opencv.numpy(), scene.cameras.w2c_opencv.numpy())


def test_missing_depth_file_is_recorded(copy):
    frames = copy / f"{gt.ARKIT_VIDEO_ID}_frames"
    (frames / "lowres_depth" / f"{gt.ARKIT_VIDEO_ID}_4120.350.png").unlink()
    scene = load_arkitscenes(copy)
    assert scene.provenance["frames_without_depth"] == [1]
    assert scene.depth.frame_ids.tolist() == [0, 3, 4]


def test_most_frames_unmatched_is_an_error(copy):
    traj = copy / f"{gt.ARKIT_VIDEO_ID}_frames" / "lowres_wide.traj"
    lines = traj.read_text().splitlines()
    shifted = [f"{float(l.split()[0]) + 100:.4f} " + " ".join(l.split()[1:]) for l in lines]
    traj.write_text("\n".join(shifted) + "\n")
    with pytest.raises(InputFileError, match="max_time_gap_s") as info:
        load_arkitscenes(copy)
    assert info.value.path == traj and str(traj) in str(info.value)


def test_bad_traj_line_names_file_and_line(copy):
    traj = copy / f"{gt.ARKIT_VIDEO_ID}_frames" / "lowres_wide.traj"
    lines = traj.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]  # six numbers
    traj.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError, match="line 3") as info:
        load_arkitscenes(copy)
    assert str(traj) in str(info.value)


def test_missing_intrinsics_is_an_error(copy):
    frames = copy / f"{gt.ARKIT_VIDEO_ID}_frames"
    (frames / "lowres_wide_intrinsics" / f"{gt.ARKIT_VIDEO_ID}_4120.650.pincam").unlink()
    with pytest.raises(InputFileError, match="4120.650") as info:
        load_arkitscenes(copy)
    assert "lowres_wide_intrinsics" in str(info.value)


def test_unparsable_pincam_names_the_file(copy):
    folder = copy / f"{gt.ARKIT_VIDEO_ID}_frames" / "lowres_wide_intrinsics"
    pincam = folder / f"{gt.ARKIT_VIDEO_ID}_4120.250.pincam"
    pincam.write_text("24 18 fx fy 12 9\n")
    with pytest.raises(InputFileError, match="4120.250.pincam") as info:
        load_arkitscenes(copy)
    assert info.value.path == pincam


def test_unparsable_frame_name(copy):
    (copy / f"{gt.ARKIT_VIDEO_ID}_frames" / "lowres_wide" / "preview.png").write_bytes(b"")
    with pytest.raises(InputFileError, match="preview.png"):
        load_arkitscenes(copy)


@pytest.mark.parametrize("gap", [0, -1.0, float("nan")])
def test_bad_max_time_gap(gap):
    with pytest.raises(ConfigError, match="max_time_gap_s"):
        load_arkitscenes(VIDEO, max_time_gap_s=gap)


def test_not_an_arkit_folder(tmp_path):
    with pytest.raises(InputFileError, match="_frames"):
        load_arkitscenes(tmp_path)


def test_detection(tmp_path):
    assert detect_arkitscenes(VIDEO) and detect_arkitscenes(FRAMES)
    assert not detect_arkitscenes(FIXTURES / "scannet" / gt.SCANNET_SCENE)
    assert not detect_arkitscenes(FIXTURES / "scannetpp" / gt.SCANNETPP_SCENE)
    assert not detect_arkitscenes(tmp_path)
    assert not detect_arkitscenes(tmp_path / "missing")
