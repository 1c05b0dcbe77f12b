import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posevlm.errors import ConfigError
from posevlm.sampling import PairingConfig, anchors_needed, pair_frames

NBR = PairingConfig("neighbor", step=1, direction="after")


@pytest.mark.parametrize(
    "anchors, step, total, expected",
    [  # sampling spec 10.4, reproduced by legacy mode (frame ids == pool indices here)
        ([0, 5, 6, 20], 1, 30, [0, 1, 5, 5, 6, 7, 19, 20]),
        ([10, 12], 1, 30, [10, 11, 11, 12]),
        ([100, 140], 30, 400, [100, 110, 130, 140]),
    ],
)
def test_legacy_golden_vectors(anchors, step, total, expected):
    cfg = PairingConfig("neighbor", step=step, direction="after", legacy=True)
    out = pair_frames(np.array(anchors), np.arange(total), cfg)
    assert out.frame_ids.tolist() == expected


def test_new_mode_fixes_crossing_and_sharing():
    crossing = pair_frames(np.array([100, 140]), np.arange(400), PairingConfig("neighbor", step=30))
    pairs = crossing.frame_ids.reshape(-1, 2).tolist()
    assert pairs == [[100, 130], [140, 170]]  # the legacy result pairs (100, 110) and (130, 140) instead
    shared = pair_frames(np.array([10, 12]), np.arange(30), NBR)
    assert len(set(shared.frame_ids.tolist())) == 4


def check_pairs(out, anchors_ids):
    ids = out.frame_ids
    pairs = ids.reshape(-1, 2)
    assert np.all(np.diff(ids) >= 0), "ascending"
    assert np.all(pairs[1:, 0] > pairs[:-1, 1]), "pairs never cross or share frames"
    for (a, b), anchor in zip(pairs, anchors_ids):
        assert anchor in (a, b), "each pair holds its anchor"
    roles = np.array(out.roles).reshape(-1, 2)
    assert all(("anchor" in r) for r in roles.tolist())
    assert out.n_fallbacks == out.roles.count("duplicate")


@given(st.lists(st.integers(0, 199), min_size=1, max_size=40, unique=True), st.integers(1, 12),
       st.sampled_from(["after", "before", "random"]), st.integers(0, 1000))
def test_new_mode_guarantees(anchor_list, step, direction, seed):
    anchors = np.array(sorted(anchor_list))
    pool = np.arange(0, 2000, 10)  # pool frame ids 0, 10, ..., 1990
    for space in ("pool", "frame"):
        cfg = PairingConfig("neighbor", step=step, space=space, direction=direction)
        out = pair_frames(anchors, pool, cfg, num_source_frames=2000, seed=seed)
        assert out.frame_ids.size == 2 * anchors.size
        check_pairs(out, pool[anchors])
        again = pair_frames(anchors, pool, cfg, num_source_frames=2000, seed=seed)
        assert np.array_equal(out.frame_ids, again.frame_ids)  # deterministic per seed
        # pool indices agree with frame ids wherever the companion is in the pool
        hit = out.pool_indices >= 0
        assert np.array_equal(pool[out.pool_indices[hit]], out.frame_ids[hit])


def test_fallback_is_deterministic_and_counted():
    # adjacent anchors in the pool leave no room for a companion between them
    out = pair_frames(np.array([3, 4, 5]), np.arange(6), NBR)
    # 3: after hits anchor 4, before (2) fits; 4: neither 5 (next anchor) nor 3 (taken); 5: 6 leaves the pool
    assert out.frame_ids.tolist() == [2, 3, 4, 4, 5, 5] and out.n_fallbacks == 2
    check_pairs(out, [3, 4, 5])
    assert out.duplicate_ratio == out.roles.count("duplicate") / 3


def test_duplicate_and_none():
    dup = pair_frames(np.array([1, 4]), np.array([0, 10, 20, 30, 40]), PairingConfig("duplicate"))
    assert dup.frame_ids.tolist() == [10, 10, 40, 40] and dup.roles == ("anchor", "duplicate") * 2
    assert dup.pair_ids.tolist() == [0, 0, 1, 1]
    none = pair_frames(np.array([0, 2, 3]), np.array([0, 10, 20, 30]), PairingConfig("none"))
    assert none.frame_ids.tolist() == [0, 20, 30]


def test_odd_frame_count_with_pairs_is_an_error():
    assert anchors_needed(16, NBR) == 8 and anchors_needed(15, PairingConfig()) == 15
    with pytest.raises(ConfigError, match="even frame count"):
        anchors_needed(15, NBR)
    with pytest.raises(ConfigError, match="invalid pairing"):
        PairingConfig("neighbour")


def test_frame_space_companions_must_exist():
    # frames 11 and 12 are missing from the scan (e.g. invalid poses dropped): companions fall back
    pool = np.array([0, 10, 20, 30])
    valid = np.array([0, 1, 2, 10, 13, 20, 21, 30, 31])
    out = pair_frames(np.array([1, 2]), pool, PairingConfig("neighbor", step=1, space="frame"),
                      num_source_frames=40, valid_frame_ids=valid)
    assert out.frame_ids.tolist() == [10, 10, 20, 21]
    assert out.n_fallbacks == 1 and set(out.frame_ids.tolist()) <= set(valid.tolist())
