import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import rereference, w2c_to_c2w
from posevlm.sampling.farness2d import _reference_farness2d, select_farness2d
from posevlm.sampling.selection import samplers
from strategies import seeds

MODES = ("grid", "hybrid", "fps_2d")


@settings(max_examples=4)
@given(seed=seeds, k=st.integers(2, 12))
def test_parity_with_the_loop_reference(seed, k, make_w2c):
    w2c = make_w2c(seed, 32)
    for mode in MODES:
        for normalization in ("std_norm", "max_norm"):
            for start in ("farthest", "medoid", "first"):
                for diagonal_priority, skip in ((0.0, False), (1.2, True), (0.3, False)):
                    kw = dict(mode=mode, normalization=normalization, start=start,
                              diagonal_priority=diagonal_priority, skip_first_frame=skip)
                    fast = select_farness2d(w2c, k, **kw).selection_order.tolist()
                    assert fast == _reference_farness2d(w2c.numpy(), k, **kw), kw


@settings(max_examples=10)
@given(seed=seeds, k=st.integers(2, 20), mode=st.sampled_from(MODES),
       normalization=st.sampled_from(["std_norm", "max_norm"]))
def test_c2w_input_and_w2c_with_world_at_camera_0_pick_the_same(seed, k, mode, normalization, make_w2c):
    # spec §10.4: VGGT's w2c has world = camera 0, where ||t_i - t_0|| is the centre distance to frame 0
    w2c = make_w2c(seed, 50)
    c2w = w2c_to_c2w(w2c)
    vggt_like = rereference(w2c, "first")
    a = select_farness2d(c2w, k, mode=mode, normalization=normalization)
    b = select_farness2d(vggt_like, k, mode=mode, normalization=normalization)
    assert a.selection_order.tolist() == b.selection_order.tolist()


def test_exactly_k_distinct_sorted_and_skip_first_frame(make_w2c):
    w2c = make_w2c(3, 64)
    for mode in MODES:
        for k in (1, 5, 16, 63):
            sel = select_farness2d(w2c, k, mode=mode, skip_first_frame=True)
            assert len(sel) == k and np.all(np.diff(sel.pool_indices) > 0) and 0 not in sel.pool_indices
    assert select_farness2d(w2c, 64, skip_first_frame=True).pool_indices.tolist() == list(range(64))  # as the reference


def test_hybrid_is_fps_2d_over_grid_candidates(make_w2c):
    w2c = make_w2c(9, 80)
    sel = select_farness2d(w2c, 8)
    assert sel.stats["n_candidates"] == 24
    grid24 = set(select_farness2d(w2c, 24, mode="grid").pool_indices.tolist())
    assert set(sel.pool_indices.tolist()) <= grid24


def test_stats_are_2d_min_distances(make_w2c):
    sel = select_farness2d(make_w2c(1, 30), 6, mode="fps_2d")
    assert {"min_distance_2d_mean", "min_distance_2d_max", "min_distance_2d_std"} <= set(sel.stats)
    assert sel.stats["min_distance_2d_max"] >= sel.stats["min_distance_2d_mean"] > 0


def test_registered_spec_dispatches_to_the_selector(make_w2c, array_pool):
    w2c = make_w2c(6, 50)
    spec = samplers.get("farness2d")
    got = spec.select(array_pool(50, w2c), 8, seed=0, **{**spec.defaults, "mode": "grid"})
    assert np.array_equal(got.selection_order, select_farness2d(w2c, 8, mode="grid").selection_order)


def test_bad_arguments_raise_typed_errors(make_w2c):
    w2c = make_w2c(0, 10)
    with pytest.raises(ConfigError, match="k=11 exceeds the pool size P=10"):
        select_farness2d(w2c, 11)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        select_farness2d(w2c, 0)
    with pytest.raises(ConfigError, match="mode must be one of"):
        select_farness2d(w2c, 3, mode="efficient")
    with pytest.raises(ConfigError) as err:
        select_farness2d(w2c, 3, grid_density=0.1, diagonal_priority=float("nan"))
    assert "grid_density" in str(err.value) and "diagonal_priority" in str(err.value)
    with pytest.raises(ShapeError):
        select_farness2d(torch.zeros(10, 2, 2), 3)
