"""SpatialLM point clouds from posed RGB-D scans and files: frame conversion, grid sampling, PLY / npz round trips."""

import struct

import numpy as np
import pytest

from posevlm.errors import ConfigError, InputFileError, ShapeError
from posevlm.scenes.pointcloud import (
    UP_ROTATIONS,
    grid_sample_points,
    load_point_cloud,
    read_ply,
    save_point_cloud,
    scene_point_cloud,
    write_ply,
)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    from posevlm.scenes import load_scene
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 1, SynthConfig(seed=3, num_frames=24, image_hw=(48, 64)))
    return load_scene(next(root.glob("synth_*")))


def test_up_rotations_are_proper_and_take_their_axis_to_plus_z():
    for up, rot in UP_ROTATIONS.items():
        axis = np.zeros(3)
        axis["xyz".index(up[1])] = 1.0 if up[0] == "+" else -1.0
        assert np.allclose(rot @ rot.T, np.eye(3)) and np.isclose(np.linalg.det(rot), 1.0)
        assert np.allclose(rot @ axis, [0, 0, 1]), up


def test_grid_sampling_keeps_the_first_point_of_every_cell():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 2, (500, 3))
    pts[7] = np.nan
    colors = rng.integers(0, 256, (500, 3), dtype=np.uint8)
    cloud = grid_sample_points(pts, colors, grid_size=0.25, num_bins=64, up="-y")
    rotated = pts @ UP_ROTATIONS["-y"].T
    finite = np.isfinite(pts).all(1)
    origin = rotated[finite].min(0)
    cells = {}
    for i in np.flatnonzero(finite):  # the obvious loop: first point wins each cell
        cells.setdefault(tuple(np.floor((rotated[i] - origin) / 0.25).astype(int)), i)
    assert len(cloud) == len(cells)
    first = np.array([cells[tuple(g)] for g in cloud.grid_coord])
    np.testing.assert_allclose(cloud.xyz, (rotated[first] - origin).astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cloud.rgb, (colors[first] / 255.0).astype(np.float32))
    np.testing.assert_allclose(cloud.world_points(), pts[first], atol=1e-5)
    assert cloud.xyz.min() >= 0 and np.allclose(cloud.xyz.min(0), 0, atol=1e-6)
    rows = cloud.to_array()
    assert rows.shape == (len(cloud), 9) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, :3], cloud.grid_coord)
    with pytest.raises(ConfigError, match="up="):
        grid_sample_points(pts, colors, up="z")
    with pytest.raises(ShapeError, match="no finite point"):
        grid_sample_points(np.full((3, 3), np.nan), colors[:3])


def test_a_synthetic_scan_gives_a_z_up_cloud_inside_its_room(scan):
    cloud = scene_point_cloud(scan, num_frames=6, pixel_stride=2, grid_size=0.05)
    assert cloud.up == "+z" and len(cloud) > 200
    world = cloud.world_points()
    room = scan.metadata["room"]
    lo = np.min(np.asarray(room["boxes_xy"]).reshape(-1, 2), 0)
    hi = np.max(np.asarray(room["boxes_xy"]).reshape(-1, 2), 0)
    assert (world[:, :2] >= lo - 0.02).all() and (world[:, :2] <= hi + 0.02).all()
    assert (world[:, 2] >= -0.02).all() and (world[:, 2] <= room["height"] + 0.02).all()
    assert (np.abs(world[:, 2]) < 0.03).mean() > 0.05  # the floor is seen
    np.testing.assert_array_equal(cloud.grid_coord, np.floor(cloud.xyz / 0.05 + 1e-6).astype(np.int64))
    again = scene_point_cloud(scan, num_frames=6, pixel_stride=2, grid_size=0.05)
    np.testing.assert_array_equal(again.to_array(), cloud.to_array())


def test_scans_without_depth_or_up_axis_are_refused_with_the_fix(scan):
    import dataclasses

    with pytest.raises(ConfigError, match="needs depth and cameras"):
        scene_point_cloud(dataclasses.replace(scan, depth=None))
    with pytest.raises(ConfigError, match="pass up="):
        scene_point_cloud(dataclasses.replace(scan, metadata={}))
    assert len(scene_point_cloud(dataclasses.replace(scan, metadata={}), up="+z", num_frames=2, grid_size=0.1))


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(40, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    path = write_ply(tmp_path / "c.ply", xyz, rgb, binary=binary)
    got_xyz, got_rgb = read_ply(path)
    np.testing.assert_array_equal(got_xyz.astype(np.float32), xyz)
    np.testing.assert_array_equal(got_rgb, rgb)
    xyz_only = read_ply(write_ply(tmp_path / "d.ply", xyz, None, binary=binary))
    assert xyz_only[1] is None


def test_ply_big_endian_float_colours_and_trailing_faces(tmp_path):
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\nproperty double y\n"
              "property double z\nproperty float r\nproperty float g\nproperty float b\nelement face 1\n"
              "property list uchar int vertex_indices\nend_header\n").encode()
    body = struct.pack(">3d3f", 1.5, -2.0, 3.25, 0.1, 0.2, 0.3) + struct.pack(">3d3f", 0, 0, 1, 1, 1, 1)
    (tmp_path / "be.ply").write_bytes(header + body + b"\x03\x00\x00\x00\x00")
    xyz, rgb = read_ply(tmp_path / "be.ply")
    np.testing.assert_array_equal(xyz, [[1.5, -2.0, 3.25], [0, 0, 1]])
    assert rgb.dtype == np.float32 and np.allclose(rgb[0], [0.1, 0.2, 0.3])
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar int x\n"
                                       b"end_header\n1 2\n")
    with pytest.raises(InputFileError, match="not a scalar PLY type"):
        read_ply(tmp_path / "bad.ply")
    (tmp_path / "no.ply").write_bytes(b"solid stl\n")
    with pytest.raises(InputFileError, match="not a PLY file"):
        read_ply(tmp_path / "no.ply")


def test_cloud_files_round_trip(tmp_path, scan):
    cloud = scene_point_cloud(scan, num_frames=3, grid_size=0.05)
    same = load_point_cloud(save_point_cloud(tmp_path / "c.npz", cloud))
    np.testing.assert_array_equal(same.to_array(), cloud.to_array())
    assert same.grid_size == cloud.grid_size and np.array_equal(same.origin, cloud.origin) and same.up == "+z"
    from_ply = load_point_cloud(save_point_cloud(tmp_path / "c.ply", cloud), grid_size=0.05)
    np.testing.assert_allclose(from_ply.world_points(), cloud.world_points(), atol=1e-5)
    np.savez(tmp_path / "raw.npz", xyz=cloud.world_points())
    assert len(load_point_cloud(tmp_path / "raw.npz", grid_size=0.05)) == len(cloud)
    np.savez(tmp_path / "bad.npz", colours=np.zeros(3))
    with pytest.raises(InputFileError, match="needs 'points'"):
        load_point_cloud(tmp_path / "bad.npz")
    with pytest.raises(InputFileError, match=".ply or .npz"):
        load_point_cloud(tmp_path / "c.obj")
