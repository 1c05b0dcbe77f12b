import numpy as np
import pytest

from posevlm.errors import ConfigError
from posevlm.sampling import PairingConfig, PoolConfig, SamplingConfig, candidate_pool, frame_file_names


def test_linspace_pool_truncates_like_the_reference():
    pool = candidate_pool(np.arange(1000), PoolConfig("linspace", 128))
    assert pool.size == 128 and pool[0] == 0 and pool[-1] == 999
    assert np.array_equal(pool, np.linspace(0, 999, 128).astype(int))
    assert candidate_pool(np.arange(50), PoolConfig("linspace", 128)).size == 50
    assert candidate_pool(np.arange(10) * 3, PoolConfig("stride", stride=4)).tolist() == [0, 12, 24]


def test_slug_encodes_every_parameter_and_round_trips():
    a = SamplingConfig("pose_fps", 16, {"start": "first", "weighting": "std_norm"},
                       pairing=PairingConfig("neighbor", direction="random"), seed=3)
    assert a.slug == ("pose_fps-distance_center-reorth_1-start_first-weighting_std_norm__pool-linspace128__n16"
                      "__pair-nbr-rnd-s1-pool__seed3")
    # defaults are written out, so an explicit default and an omitted one are the same config
    assert SamplingConfig("pose_fps", 16, {"start": "medoid"}) == SamplingConfig("pose_fps", 16)
    assert SamplingConfig.from_dict(a.to_dict()) == a
    variants = [SamplingConfig("pose_fps", 16), SamplingConfig("pose_fps", 32), SamplingConfig("pose_fps", 16, seed=1),
                SamplingConfig("pose_fps", 16, pool=PoolConfig("linspace", 64)),
                SamplingConfig("pose_fps", 16, pairing=PairingConfig("duplicate")),
                SamplingConfig("pose_fps", 16, pairing=PairingConfig("neighbor", legacy=True)),
                SamplingConfig("pose_fps", 16, geometry="vggt")]
    assert len({v.slug for v in variants}) == len(variants)


def test_uniform_full_flavours_use_every_frame():
    assert SamplingConfig("uniform", 8, {"flavour": "round_full"}).effective_pool == PoolConfig("all")
    assert SamplingConfig("uniform", 8, {"flavour": "floor_pool"}).effective_pool == PoolConfig()


def test_config_errors_list_all_problems():
    with pytest.raises(ConfigError) as err:
        SamplingConfig("pose_fsp", 0, geometry="slam")
    assert all(s in str(err.value) for s in ("pose_fsp", "num_frames", "geometry"))
    with pytest.raises(ConfigError, match="does not take colour"):
        SamplingConfig("pose_fps", 8, {"colour": 1})


def test_frame_file_names_sort_in_manifest_order():
    ids = [5, 5, 120, 10070, 10070, 10070]
    names = frame_file_names("scene0011_00", ids)
    assert names[0] == "scene0011_00_frame_000005.png" and names[1] == "scene0011_00_frame_000005_2.png"
    assert names[-1] == "scene0011_00_frame_010070_3.png"
    assert sorted(names) == names


def test_default_params_match_the_selectors():
    import inspect

    from posevlm.sampling import farness2d, pose_fps, samplers, voxel_coverage

    for fn, name in ((pose_fps.select_pose_fps, "pose_fps"), (farness2d.select_farness2d, "farness2d"),
                     (voxel_coverage.select_voxel_coverage, "voxel_coverage")):
        sig = inspect.signature(fn).parameters
        for key, value in samplers.get(name).defaults.items():
            if key in sig:
                assert sig[key].default == value, (name, key)
    build = inspect.signature(voxel_coverage.voxel_sets_from_points).parameters
    for key in ("conf_percentile", "conf_floor", "voxels_on_short_axis"):
        assert build[key].default == samplers.get("voxel_coverage").defaults[key]
