import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.errors import ConfigError
from posevlm.sampling.selection import samplers
from posevlm.sampling.uniform import select_uniform


def test_golden_round_full_1000_frames_k8():
    # eval.md §5.3: qwen-vl-utils / torch .round() over every frame
    sel = select_uniform(1000, 8, rounding="round")
    assert sel.pool_indices.tolist() == [0, 143, 285, 428, 571, 714, 856, 999]


def test_golden_floor_pool_1000_frames_k8():
    # eval.md §5.3: the research code's uniform = floor over the 128-frame floor-linspace pool
    pool = np.floor(np.linspace(0, 999, 128)).astype(np.int64)
    sel = select_uniform(pool.size, 8, rounding="floor")
    assert sel.pool_indices.tolist() == [0, 18, 36, 54, 72, 90, 108, 127]
    assert pool[sel.pool_indices].tolist() == [0, 141, 283, 424, 566, 707, 849, 999]


def test_floor_full_truncates_like_astype_int():
    sel = select_uniform(1000, 8, rounding="floor")
    assert sel.pool_indices.tolist() == np.linspace(0, 999, 8).astype(int).tolist() == [0, 142, 285, 428, 570, 713,
                                                                                         856, 999]


def test_round_is_half_to_even():
    # linspace(0, 9, 3) = [0, 4.5, 9]: half to even gives 4, floor gives 4, round-half-up would give 5
    assert select_uniform(10, 3).pool_indices.tolist() == [0, 4, 9]
    # linspace(0, 11, 3) = [0, 5.5, 11] -> 6 (even) with rounding, 5 with floor
    assert select_uniform(12, 3).pool_indices.tolist() == [0, 6, 11]
    assert select_uniform(12, 3, rounding="floor").pool_indices.tolist() == [0, 5, 11]


@pytest.mark.parametrize("n,k", [(5, 5), (5, 9), (1, 1), (1, 4)])
def test_k_at_least_n_returns_every_candidate(n, k):
    sel = select_uniform(n, k)
    assert sel.pool_indices.tolist() == list(range(n))
    assert sel.n_returned_before_fill == n


@settings(max_examples=60)
@given(n=st.integers(1, 5000), k=st.integers(1, 300), rounding=st.sampled_from(["round", "floor"]))
def test_exactly_min_k_n_sorted_distinct_and_spanning(n, k, rounding):
    sel = select_uniform(n, k, rounding=rounding)
    idx = sel.pool_indices
    assert idx.size == min(k, n)
    assert np.all(np.diff(idx) > 0) and idx[0] == 0 and idx[-1] <= n - 1
    assert np.array_equal(sel.selection_order, idx)
    if 2 <= k <= n:
        assert idx[-1] == n - 1
    assert np.all(np.abs(idx - np.linspace(0, n - 1, idx.size)) <= 1)


@pytest.mark.parametrize("flavour,rounding", [("round_full", "round"), ("floor_full", "floor"),
                                              ("floor_pool", "floor")])
def test_registered_spec_dispatches_to_the_selector(flavour, rounding, array_pool):
    spec = samplers.get("uniform")
    got = spec.select(array_pool(37), 9, seed=0, flavour=flavour)
    assert np.array_equal(got.pool_indices, select_uniform(37, 9, rounding=rounding).pool_indices)
    assert spec.uses_all_frames({"flavour": flavour}) == flavour.endswith("_full")
    assert spec.problems({"flavour": "ceil"}) and spec.problems({"colour": 1})


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_candidates=10, k=0), "k must be >= 1"),
    (dict(num_candidates=10, k=-3), "k must be >= 1"),
    (dict(num_candidates=0, k=2), "num_candidates must be >= 1"),
    (dict(num_candidates=10, k=2.5), "k must be an int"),
    (dict(num_candidates=10, k=True), "k must be an int"),
    (dict(num_candidates=10, k=3, rounding="ceil"), "rounding must be 'round' or 'floor'"),
])
def test_bad_arguments_raise_config_error_naming_them(kwargs, match):
    n, k = kwargs.pop("num_candidates"), kwargs.pop("k")
    with pytest.raises(ConfigError, match=match):
        select_uniform(n, k, **kwargs)


def test_round_is_qwen_vl_utils_float32_linspace_on_long_videos():
    """qwen-vl-utils reads ``torch.linspace(0, T - 1, n).round()`` (float32); a float64 linspace differs on long
    videos: 236 of 46,367 frames picks frame 36,896 there, 36,895 in float64."""
    import torch

    got = select_uniform(46_367, 236, rounding="round").pool_indices
    want = torch.linspace(0, 46_366, 236).round().long().numpy()
    assert np.array_equal(got, want) and 36_896 in got and 36_895 not in got
    assert not np.array_equal(got, np.round(np.linspace(0, 46_366, 236)).astype(np.int64))
