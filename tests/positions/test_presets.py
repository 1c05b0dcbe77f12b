"""Named position modes resolve to the PositionSpecs of positions spec section 2, per layout."""

import pytest

from posevlm.errors import ConfigError
from posevlm.positions import (
    POSITION_MODES, PositionSpec, parse_spec_overrides, position_spec, resolve_position_spec, spec_needs,
)  # fmt: skip

AXES = {"thw": ("T", "H", "W"), "thw_index": ("T", "H", "W"), "thw_without_t": ("T", "H", "W"),
        "thw_readapt_t": ("T", "H", "W"), "pthw": ("P", "T", "H", "W"), "phw": ("P", "H", "W")}


@pytest.mark.parametrize("mode", POSITION_MODES)
def test_modes_have_their_rows_and_only_pose_modes_need_cameras(mode):
    spec = position_spec(mode)
    assert spec.axes == AXES[mode] and spec.layout == "qwen2_5"
    assert spec_needs(spec) == {"w2c_opencv": mode in ("pthw", "phw"), "frame_ids": mode == "thw_readapt_t"}
    assert position_spec(mode, legacy=True).next_segment == "max_plus_one" != spec.next_segment


def test_stock_mode_is_the_default_spec_and_qwen3_keeps_three_rows():
    assert position_spec("thw") == PositionSpec() == position_spec("stock")
    assert position_spec("thw", "qwen3_vl") == PositionSpec(layout="qwen3")
    assert position_spec("phw", "qwen3").axes == ("P", "H", "W")
    for mode in ("pthw", "thw_index", "thw_without_t", "thw_readapt_t"):
        with pytest.raises(ConfigError, match="not defined for layout 'qwen3'"):
            position_spec(mode, "qwen3")
    with pytest.raises(ConfigError, match="Did you mean: pthw.*Available: .*thw"):
        position_spec("ptwh")
    with pytest.raises(ConfigError, match="family / layout"):
        position_spec("thw", "llava")


def test_overrides_are_typed_and_checked():
    over = parse_spec_overrides(["pose_reference=medoid", "pose_lam=0.5", "pose_hard_reset=false"])
    assert over == {"pose_reference": "medoid", "pose_lam": 0.5, "pose_hard_reset": False}
    assert position_spec("pthw", **over).pose_lam == 0.5
    for bad, match in (("pose_lam", "KEY=VALUE"), ("nope=1", "KEY=VALUE"), ("pose_lam=x", "not a float"),
                       ("pose_hard_reset=maybe", "not a bool")):
        with pytest.raises(ConfigError, match=match):
            parse_spec_overrides([bad])
    with pytest.raises(ConfigError, match="pose_reference"):
        position_spec("pthw", pose_reference="middle")


def test_resolve_accepts_names_mode_dicts_and_full_specs():
    assert resolve_position_spec(None, "qwen2_5") is None
    assert resolve_position_spec("phw", "qwen3_vl") == position_spec("phw", "qwen3")
    assert resolve_position_spec({"mode": "pthw", "legacy": True, "pose_lam": 2.0}, "qwen2_5_vl") == \
        position_spec("pthw", legacy=True, pose_lam=2.0)
    full = position_spec("phw", "qwen3").to_dict()
    assert resolve_position_spec(full, "qwen3") == position_spec("phw", "qwen3")
    assert resolve_position_spec({"temporal": "index"}, "qwen2_5").temporal == "index"
