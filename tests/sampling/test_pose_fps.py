import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posevlm.errors import ConfigError, ConventionError, ShapeError
from posevlm.geometry import pairwise_pose_distances, se3_from_Rt, w2c_to_c2w
from posevlm.sampling.pose_fps import _PoseSpace, _reference_fps, poses_arg, select_pose_fps
from posevlm.sampling.selection import samplers
from strategies import random_rotations, random_w2c, seeds

OPTIONS = [(d, w, s) for d in ("center", "legacy_w2c_translation") for w in ("max_norm", "std_norm")
           for s in ("medoid", "first", "random")]


def fps_on_matrix(dmat: np.ndarray, k: int, first: int) -> list[int]:
    """Textbook FPS over an explicit distance matrix (lowest index on ties)."""
    order, mind = [first], dmat[first].copy()
    for _ in range(k - 1):
        cand = np.where(np.isin(np.arange(len(dmat)), order), -1.0, mind)
        j = int(np.argmax(cand))
        order.append(j)
        mind = np.minimum(mind, dmat[j])
    return order


def max_norm_matrix(w2c: torch.Tensor) -> np.ndarray:
    d_t, d_r = (x.numpy() for x in pairwise_pose_distances(w2c))
    return d_t / d_t.max() + d_r / d_r.max()


@settings(max_examples=8)
@given(seed=seeds, smooth=st.booleans())
def test_parity_with_the_loop_reference_for_every_option(seed, smooth, make_w2c):
    w2c = make_w2c(seed, 30) if smooth else random_w2c(seed, 30)
    for distance, weighting, start in OPTIONS:
        kw = dict(distance=distance, weighting=weighting, start=start, seed=seed % 1000)
        fast = select_pose_fps(w2c, 11, **kw).selection_order.tolist()
        assert fast == _reference_fps(w2c.numpy(), 11, **kw), kw


def test_parity_with_reference_without_reorthonormalisation(make_w2c):
    w2c = make_w2c(5, 25)
    w2c[:, :3, :3] *= 1.0 + 1e-3 * torch.from_numpy(np.random.default_rng(0).normal(size=(25, 3, 3)))
    for reorth in (True, False):
        fast = select_pose_fps(w2c, 9, reorth=reorth).selection_order.tolist()
        assert fast == _reference_fps(w2c.numpy(), 9, reorth=reorth)


def test_medoid_start_is_the_argmin_of_row_sums(make_w2c):
    w2c = make_w2c(11, 60)
    dmat = max_norm_matrix(w2c)
    sel = select_pose_fps(w2c, 8)
    assert sel.stats["start_index"] == sel.selection_order[0] == int(np.argmin(dmat.sum(1)))
    assert sel.selection_order.tolist() == fps_on_matrix(dmat, 8, int(np.argmin(dmat.sum(1))))


def test_std_norm_equals_fps_on_sigma_normalised_terms(make_w2c):
    w2c = make_w2c(4, 70)
    d_t, d_r = (x.numpy() for x in pairwise_pose_distances(w2c))
    iu = np.triu_indices(70, k=1)
    dmat = d_t / d_t[iu].std() + d_r / d_r[iu].std()
    sel = select_pose_fps(w2c, 12, weighting="std_norm")
    assert sel.selection_order.tolist() == fps_on_matrix(dmat, 12, int(np.argmin(dmat.sum(1))))
    a, b = sel.stats["alpha"], sel.stats["beta"]
    assert a + b == pytest.approx(2.0)
    assert a / b == pytest.approx(d_r[iu].std() / d_t[iu].std())


def test_rotation_term_is_the_same_for_w2c_and_c2w_input(make_w2c):
    w2c = poses_arg(make_w2c(8, 40))
    c2w = w2c_to_c2w(w2c)
    _, r_w2c = _PoseSpace(w2c, "center", True).pair(slice(0, 40), slice(0, 40))
    _, r_c2w = _PoseSpace(c2w, "center", True).pair(slice(0, 40), slice(0, 40))
    torch.testing.assert_close(r_w2c, r_c2w, atol=1e-7, rtol=0)  # arccos: ~1e-8 rad noise at angle 0
    torch.testing.assert_close(r_w2c, pairwise_pose_distances(w2c)[1], atol=1e-7, rtol=0)


@settings(max_examples=8)
@given(seed=seeds)
def test_center_distance_fps_is_invariant_to_the_world_frame(seed, make_w2c):
    w2c = make_w2c(seed, 40)
    g = np.random.default_rng(seed)
    world_change = se3_from_Rt(random_rotations(seed, 1)[0], torch.from_numpy(g.normal(scale=5.0, size=3)))
    moved = w2c @ world_change  # same cameras, another world frame
    for weighting in ("max_norm", "std_norm"):
        for start in ("medoid", "first"):
            a = select_pose_fps(w2c, 10, weighting=weighting, start=start)
            b = select_pose_fps(moved, 10, weighting=weighting, start=start)
            assert a.selection_order.tolist() == b.selection_order.tolist()
            assert a.stats["min_distance_max"] == pytest.approx(b.stats["min_distance_max"], rel=1e-9)


def test_wart_legacy_translation_depends_on_the_world_frame_F10(make_w2c):
    # the research code's ||t_i - t_j|| on w2c is ||R_i c_i - R_j c_j||: moving the world origin changes picks
    w2c = make_w2c(1, 40)
    moved = w2c @ se3_from_Rt(torch.eye(3, dtype=torch.float64), torch.tensor([4.0, -3.0, 2.0], dtype=torch.float64))
    kw = dict(distance="legacy_w2c_translation", start="first")
    assert (select_pose_fps(w2c, 10, **kw).selection_order.tolist()
            != select_pose_fps(moved, 10, **kw).selection_order.tolist())
    assert (select_pose_fps(w2c, 10, start="first").selection_order.tolist()
            == select_pose_fps(moved, 10, start="first").selection_order.tolist())


def test_min_distance_stats_follow_spec_8_1(make_w2c):
    w2c = make_w2c(2, 50)
    sel = select_pose_fps(w2c, 7)
    mind = max_norm_matrix(w2c)[:, sel.selection_order].min(axis=1)
    rest = np.setdiff1d(np.arange(50), sel.pool_indices)
    assert sel.stats["min_distance_mean"] == pytest.approx(mind[rest].mean(), rel=1e-9)
    assert sel.stats["min_distance_max"] == pytest.approx(mind[rest].max(), rel=1e-9)
    assert sel.stats["min_distance_std"] == pytest.approx(mind.std(), rel=1e-9)


def test_exactly_k_sorted_and_k_equal_p_returns_everything(make_w2c):
    w2c = make_w2c(3, 20)
    for k in (1, 5, 19, 20):
        sel = select_pose_fps(w2c, k)
        assert len(sel) == k and np.all(np.diff(sel.pool_indices) > 0)
    assert select_pose_fps(w2c, 20).pool_indices.tolist() == list(range(20))
    assert select_pose_fps(w2c, 20).stats["min_distance_max"] == 0.0


def test_random_start_is_seeded(make_w2c):
    w2c = make_w2c(6, 50)
    a = select_pose_fps(w2c, 6, start="random", seed=1)
    assert a.selection_order.tolist() == select_pose_fps(w2c, 6, start="random", seed=1).selection_order.tolist()
    starts = {select_pose_fps(w2c, 6, start="random", seed=s).stats["start_index"] for s in range(10)}
    assert len(starts) > 1
    with pytest.raises(ConfigError, match="needs an int seed"):
        select_pose_fps(w2c, 6, start="random")


def test_static_and_single_camera_edge_cases():
    still = se3_from_Rt(torch.eye(3, dtype=torch.float64).expand(6, 3, 3), torch.zeros(6, 3, dtype=torch.float64))
    sel = select_pose_fps(still, 3)  # every distance is 0: picks lowest indices, alpha = beta = 1
    assert sel.selection_order.tolist() == [0, 1, 2] and sel.stats["alpha"] == 1.0
    assert select_pose_fps(still[:1], 1).pool_indices.tolist() == [0]
    assert select_pose_fps(still, 3, weighting="std_norm").stats["beta"] == 1.0


def test_accepts_numpy_float32_and_3x4():
    w2c = random_w2c(9, 15)
    ref = select_pose_fps(w2c, 5).selection_order.tolist()
    assert select_pose_fps(w2c[:, :3, :].numpy(), 5).selection_order.tolist() == ref
    assert len(select_pose_fps(w2c.float(), 5)) == 5


def test_registered_spec_dispatches_to_the_selector(make_w2c, array_pool):
    w2c = make_w2c(3, 40)
    spec = samplers.get("pose_fps")
    got = spec.select(array_pool(40, w2c), 7, seed=11, **{**spec.defaults, "start": "random"})
    want = select_pose_fps(w2c, 7, seed=11, start="random")
    assert np.array_equal(got.selection_order, want.selection_order) and spec.needs == ("cameras",)


@pytest.mark.parametrize("k,match", [(0, "k must be >= 1"), (21, "exceeds the pool size P=20"), (2.0, "k must be an int")])
def test_bad_k_raises_config_error(k, match):
    with pytest.raises(ConfigError, match=match):
        select_pose_fps(random_w2c(0, 20), k)


def test_bad_inputs_raise_typed_errors():
    w2c = random_w2c(0, 10)
    with pytest.raises(ShapeError, match=r"\(\.\.\., 4, 4\)"):
        select_pose_fps(w2c[:, :3, :3], 3)
    with pytest.raises(ShapeError, match=r"\(P, 4, 4\)"):
        select_pose_fps(w2c[0], 1)
    bad = w2c.clone()
    bad[4, 0, 3] = float("nan")
    with pytest.raises(ConventionError, match=r"pool indices \[4\]"):
        select_pose_fps(bad, 3)
    with pytest.raises(ConfigError, match="distance must be one of"):
        select_pose_fps(w2c, 3, distance="centre")
    with pytest.raises(ConfigError, match="weighting must be one of"):
        select_pose_fps(w2c, 3, weighting="data_driven")


def test_fast_nearest_rotation_matches_the_svd_projection():
    from posevlm.geometry import project_to_so3
    from posevlm.sampling.pose_fps import _nearest_rotations

    g = np.random.default_rng(0)
    near = random_rotations(1, 200) + torch.from_numpy(g.normal(scale=1e-3, size=(200, 3, 3)))
    arbitrary = torch.from_numpy(g.normal(size=(40, 3, 3)))  # about half with det < 0 (SVD fallback)
    arbitrary[0] = 0.0  # singular
    for m in (random_rotations(2, 50), near, arbitrary):
        torch.testing.assert_close(_nearest_rotations(m), project_to_so3(m), atol=1e-13, rtol=0)
