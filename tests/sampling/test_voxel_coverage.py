import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.errors import ConfigError, ConventionError, ShapeError
from posevlm.geometry import pairwise_pose_distances
from posevlm.sampling import voxel_coverage as vc
from posevlm.sampling.selection import samplers
from posevlm.sampling.voxel_coverage import (
    PARITY, VoxelSets, _reference_greedy, _reference_voxel_sets, select_voxel_coverage, voxel_sets_from_depth,
    voxel_sets_from_points,
)
from strategies import seeds


def random_sets(seed: int, n_frames: int, universe: int) -> list[set]:
    g = np.random.default_rng(seed)
    sizes = g.integers(0, universe // 2 + 1, size=n_frames)
    return [set(map(tuple, g.integers(0, [universe, 3, 2], size=(s, 3)).tolist())) for s in sizes]


def assert_same_voxel_sets(a: VoxelSets, b: VoxelSets) -> None:
    for name in ("frame_offsets", "voxel_ids", "voxel_coords", "box_min", "n_valid_points"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.num_voxels, a.voxel_size) == (b.num_voxels, b.voxel_size)


# -- percentile ----------------------------------------------------------------------------------
@settings(max_examples=60)
@given(seed=seeds, n=st.integers(2, 5000), q=st.sampled_from([0.0, 12.5, 50.0, 50, 73.3, 99.9, 100.0]),
       dtype=st.sampled_from([np.float32, np.float64]), kind=st.sampled_from(["ties", "smooth", "periodic"]))
def test_fast_percentile_equals_numpy_bit_for_bit(seed, n, q, dtype, kind):
    g = np.random.default_rng(seed)
    x = {"ties": lambda: g.integers(0, 5, n), "smooth": lambda: 1 + np.exp(g.normal(size=n)),
         "periodic": lambda: np.where(np.arange(n) % 7 == 0, 0.5, g.random(n))}[kind]().astype(dtype)
    with pytest.MonkeyPatch.context() as mp:  # force the bracket path with a small, strided sample
        mp.setattr(vc, "_EXACT_PERCENTILE", 1)
        mp.setattr(vc, "_PERCENTILE_SAMPLE", 64)
        got = vc._percentile(x.copy(), q)
    want = np.percentile(x, q)
    assert got == want and np.asarray(got).dtype == np.asarray(want).dtype


def test_fast_percentile_handles_nan_like_numpy(monkeypatch):
    monkeypatch.setattr(vc, "_EXACT_PERCENTILE", 1)
    x = np.linspace(0, 1, 500, dtype=np.float32)
    x[7] = np.nan
    assert np.isnan(vc._percentile(x, 50.0))


# -- voxelisation ------------------------------------------------------------------------------------
def test_voxelisation_matches_the_set_based_reference(synthetic_pool):
    world, conf = synthetic_pool["world"], synthetic_pool["confidence"]
    fast = voxel_sets_from_points(world, conf)
    assert fast.to_python_sets() == _reference_voxel_sets(world, conf)
    assert fast.num_voxels > 100 and fast.voxel_ids.dtype == np.int64
    assert np.all(fast.n_valid_points == ((conf >= np.percentile(conf, 50)) & (conf > 0.1)).reshape(24, -1).sum(1))
    for kw in (dict(conf_percentile=80.0, voxels_on_short_axis=12.5), dict(conf_percentile=0.0, conf_floor=2.0)):
        assert voxel_sets_from_points(world, conf, **kw).to_python_sets() == _reference_voxel_sets(world, conf, **kw)


def test_bitmap_unique_and_chunking_paths_agree(synthetic_pool, monkeypatch):
    world, conf = synthetic_pool["world"], synthetic_pool["confidence"]
    want = voxel_sets_from_points(world, conf)
    monkeypatch.setattr(vc, "_BITMAP_LIMIT", 0)
    monkeypatch.setattr(vc, "_CHUNK_PIXELS", 5000)
    assert_same_voxel_sets(voxel_sets_from_points(world, conf), want)


def test_depth_path_equals_points_of_the_same_back_projection(synthetic_pool):
    p = synthetic_pool
    depth = p["depth"].astype(np.float64)
    v, u = np.mgrid[0:48, 0:64] + 0.5
    rays = np.stack([(u - p["K"][0, 2]) / p["K"][0, 0], (v - p["K"][1, 2]) / p["K"][1, 1], np.ones_like(u)], -1)
    c2w = np.linalg.inv(p["w2c"])
    world = np.einsum("pij,hwj->phwi", c2w[:, :3, :3], rays) * depth[..., None] + c2w[:, None, None, :3, 3]
    for stride in (1, 3):
        got = voxel_sets_from_depth(depth, p["K"], p["w2c"], stride=stride)
        want = voxel_sets_from_points(world[:, ::stride, ::stride], None)
        assert got.to_python_sets() == want.to_python_sets()
    got = voxel_sets_from_depth(depth, np.broadcast_to(p["K"], (24, 3, 3)), torch.from_numpy(p["w2c"]),
                                confidence=p["confidence"], stride=2)
    assert got.to_python_sets() == voxel_sets_from_points(world[:, ::2, ::2], p["confidence"][:, ::2, ::2]).to_python_sets()


def test_depth_intrinsics_for_another_image_size_are_rescaled(synthetic_pool):
    p = synthetic_pool
    K_colour = p["K"] * np.array([[2.0], [2.0], [1.0]])  # the same camera at 96 x 128
    got = voxel_sets_from_depth(p["depth"], K_colour, p["w2c"], image_hw=(96, 128))
    assert_same_voxel_sets(got, voxel_sets_from_depth(p["depth"], p["K"], p["w2c"]))


def test_invalid_depth_is_masked_and_empty_frames_give_empty_sets(synthetic_pool):
    p = synthetic_pool
    depth = p["depth"].copy()
    depth[3] = 0.0
    depth[5, :10] = np.nan
    vox = voxel_sets_from_depth(depth, p["K"], p["w2c"])
    assert vox.frame(3).size == 0 and vox.n_valid_points[3] == 0
    assert vox.n_valid_points[5] == 48 * 64 - 10 * 64


# -- greedy ------------------------------------------------------------------------------------------
@settings(max_examples=40)
@given(seed=seeds, n_frames=st.integers(1, 25), universe=st.integers(1, 40), k=st.integers(1, 25))
def test_greedy_matches_set_reference_with_non_increasing_gains(seed, n_frames, universe, k):
    sets = random_sets(seed, n_frames, universe)
    k = min(k, n_frames)
    sel = select_voxel_coverage(VoxelSets.from_python_sets(sets), k, fill="none")
    assert sel.selection_order.tolist() == _reference_greedy(sets, k)
    gains = sel.stats["gains"]
    assert all(a >= b > 0 for a, b in zip(gains, gains[1:])) and sum(gains) == sel.stats["covered_voxels"]
    union = set().union(*sets)
    assert sel.stats["total_voxels"] == len(union)
    assert sel.stats["covered_voxels"] == len(set().union(*(sets[i] for i in sel.pool_indices)))


@settings(max_examples=3)
@given(seed=st.integers(0, 2**16))
def test_parity_preset_matches_reference_on_scene_point_maps(seed, synthetic_pool):
    world = synthetic_pool["world"]
    g = np.random.default_rng(seed)
    conf = (1 + np.exp(g.normal(size=world.shape[:3]))).astype(np.float32)
    build = {key: PARITY[key] for key in ("conf_percentile", "conf_floor", "voxels_on_short_axis")}
    vox = voxel_sets_from_points(world, conf, **build)
    ref_sets = _reference_voxel_sets(world, conf)
    for k in (4, 8, 24):
        sel = select_voxel_coverage(vox, k, fill=PARITY["fill"])
        assert sel.selection_order.tolist() == _reference_greedy(ref_sets, k)


def test_ties_go_to_the_lowest_pool_index():
    a, b, c = {(0, 0, 0), (1, 0, 0)}, {(2, 0, 0), (3, 0, 0)}, {(4, 0, 0)}
    sets = [c, b, {(5, 0, 0)}, a, b, c]  # frames 1, 3, 4 tie at gain 2; then frames 0, 2, 5 tie at gain 1
    sel = select_voxel_coverage(VoxelSets.from_python_sets(sets), 4, fill="none")
    assert sel.selection_order.tolist() == [1, 3, 0, 2] == _reference_greedy(sets, 4)
    assert sel.stats["gains"] == [2, 2, 1, 1]


def early_stop_case():
    sets = [{(0, 0, 0)}, {(0, 0, 0), (1, 0, 0)}, {(1, 0, 0)}, set(), {(0, 0, 0)}, {(1, 0, 0)}, set(), set()]
    return VoxelSets.from_python_sets(sets)


def test_early_stop_without_fill_returns_fewer_like_the_reference():
    sel = select_voxel_coverage(early_stop_case(), 5, fill="none")
    assert sel.pool_indices.tolist() == [1] and sel.n_returned_before_fill == 1
    assert sel.stats["coverage_ratio"] == 1.0 and sel.stats["fill_used"] is None


def test_uniform_fill_spreads_over_the_unchosen_frames():
    sel = select_voxel_coverage(early_stop_case(), 5, fill="uniform")
    rest = [0, 2, 3, 4, 5, 6, 7]
    assert sel.selection_order.tolist() == [1] + [rest[i] for i in (0, 2, 4, 6)]  # round(linspace(0, 6, 4))
    assert len(sel) == 5 and sel.n_returned_before_fill == 1
    assert sel.stats["fill_used"] == "uniform" and sel.stats["n_filled"] == 4


def test_pose_fps_fill_continues_farthest_point_from_the_chosen_set(make_w2c):
    w2c = make_w2c(12, 8)
    sel = select_voxel_coverage(early_stop_case(), 5, w2c_opencv=w2c)
    d_t, d_r = (x.numpy() for x in pairwise_pose_distances(w2c))
    dmat = d_t / d_t.max() + d_r / d_r.max()
    order, mind = [1], dmat[1].copy()
    while len(order) < 5:
        j = int(np.argmax(np.where(np.isin(np.arange(8), order), -1, mind)))
        order.append(j)
        mind = np.minimum(mind, dmat[j])
    assert sel.selection_order.tolist() == order
    assert sel.stats["fill_used"] == "pose_fps" and sel.n_returned_before_fill == 1


def test_pose_fps_fill_without_poses_falls_back_to_uniform_with_a_note():
    sel = select_voxel_coverage(early_stop_case(), 5)
    assert sel.stats["fill"] == "pose_fps" and sel.stats["fill_used"] == "uniform"
    assert "w2c_opencv" in sel.stats["fill_note"]
    assert sel.selection_order.tolist() == select_voxel_coverage(early_stop_case(), 5, fill="uniform").selection_order.tolist()


def test_no_voxels_at_all_fills_from_scratch(make_w2c):
    vox = VoxelSets.from_python_sets([set()] * 6)
    sel = select_voxel_coverage(vox, 3, w2c_opencv=make_w2c(0, 6))
    assert len(sel) == 3 and sel.n_returned_before_fill == 0 and sel.stats["coverage_ratio"] == 1.0
    empty = voxel_sets_from_points(np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4), np.float32))
    assert empty.num_voxels == 0 and empty.voxel_size == 0.0


def test_exactly_k_sorted_and_deterministic(synthetic_pool):
    vox = voxel_sets_from_points(synthetic_pool["world"], synthetic_pool["confidence"])
    for k in (1, 6, 20, 24):
        a = select_voxel_coverage(vox, k, w2c_opencv=synthetic_pool["w2c"])
        b = select_voxel_coverage(vox, k, w2c_opencv=synthetic_pool["w2c"])
        assert len(a) == k and np.all(np.diff(a.pool_indices) > 0)
        assert a.selection_order.tolist() == b.selection_order.tolist() and a.stats == b.stats


def test_registered_spec_builds_voxels_with_its_build_params_only(synthetic_pool, array_pool):
    world, conf = synthetic_pool["world"], synthetic_pool["confidence"]
    spec = samplers.get("voxel_coverage")
    pool = array_pool(world.shape[0], synthetic_pool["w2c"],
                      lambda p: voxel_sets_from_points(world, conf, **{k: v for k, v in p.items() if k != "depth_stride"}))
    got = spec.select(pool, 6, seed=0, **{**spec.defaults, "voxels_on_short_axis": 10})
    want = select_voxel_coverage(voxel_sets_from_points(world, conf, voxels_on_short_axis=10), 6,
                                 w2c_opencv=synthetic_pool["w2c"])
    assert np.array_equal(got.selection_order, want.selection_order)
    assert pool.voxel_params == [{k: v for k, v in {**spec.defaults, "voxels_on_short_axis": 10}.items() if k != "fill"}]


# -- errors -----------------------------------------------------------------------------------------
def test_bad_shapes_and_parameters_raise_typed_errors(synthetic_pool):
    world, conf = synthetic_pool["world"], synthetic_pool["confidence"]
    with pytest.raises(ShapeError, match=r"world_points must have shape \(P, H, W, 3\)"):
        voxel_sets_from_points(world[..., :2], conf)
    with pytest.raises(ShapeError, match="confidence must have shape"):
        voxel_sets_from_points(world, conf[:, :10])
    with pytest.raises(ConfigError) as err:  # every problem at once
        voxel_sets_from_points(world, conf, conf_percentile=101, voxels_on_short_axis=0)
    assert "conf_percentile" in str(err.value) and "voxels_on_short_axis" in str(err.value)
    with pytest.raises(ShapeError, match="K_pixels must be"):
        voxel_sets_from_depth(synthetic_pool["depth"], np.eye(4), synthetic_pool["w2c"])
    with pytest.raises(ShapeError, match="has 23 poses but depth has 24"):
        voxel_sets_from_depth(synthetic_pool["depth"], synthetic_pool["K"], synthetic_pool["w2c"][1:])
    with pytest.raises(ConfigError, match="stride must be >= 1"):
        voxel_sets_from_depth(synthetic_pool["depth"], synthetic_pool["K"], synthetic_pool["w2c"], stride=0)


def test_bad_values_raise_convention_errors(synthetic_pool):
    world, conf = synthetic_pool["world"].copy(), synthetic_pool["confidence"].copy()
    bad_conf = conf.copy()
    bad_conf[0, 0, 0] = np.nan
    with pytest.raises(ConventionError, match="confidence contains NaN"):
        voxel_sets_from_points(world, bad_conf)
    world[2, 5, 5] = np.inf
    with pytest.raises(ConventionError, match="NaN or inf among the valid points"):
        voxel_sets_from_points(world, None)
    flat = synthetic_pool["world"].copy()
    flat[..., 2] = 1.0
    with pytest.raises(ConventionError, match="flat"):
        voxel_sets_from_points(flat, conf)


def test_selection_errors(make_w2c):
    vox = early_stop_case()
    with pytest.raises(ConfigError, match="k=9 exceeds the pool size P=8"):
        select_voxel_coverage(vox, 9)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        select_voxel_coverage(vox, 0)
    with pytest.raises(ConfigError, match="fill must be"):
        select_voxel_coverage(vox, 3, fill="fps")
    with pytest.raises(ConfigError, match="voxels must be a VoxelSets"):
        select_voxel_coverage([{(0, 0, 0)}], 1)
    with pytest.raises(ShapeError, match="has 5 poses but voxels has 8 frames"):
        select_voxel_coverage(vox, 3, w2c_opencv=make_w2c(0, 5))
