"""Key compatibility with the released facebook/VGGT-1B checkpoint: the full-size model, built on the meta device
(no memory), has exactly the keys and shapes of the checked-in table, which make_vggt_1b_keys.py derives from the
published architecture without importing posevlm."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import make_vggt_1b_keys as released  # noqa: E402

from posevlm.spatial.vggt import VGGT, VGGTConfig  # noqa: E402


def _shapes(config: VGGTConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = VGGT(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _diff(ours: dict, table: dict) -> str:
    missing = sorted(set(table) - set(ours))[:5]
    extra = sorted(set(ours) - set(table))[:5]
    shapes = [(k, ours[k], table[k]) for k in sorted(set(ours) & set(table)) if ours[k] != table[k]][:5]
    return f"not in the model: {missing}; not in the checkpoint: {extra}; shapes (model, checkpoint): {shapes}"


def test_full_size_model_matches_the_released_key_table():
    table = released.read()
    ours = _shapes(VGGTConfig.vggt_1b())
    assert len(table) == 1403
    assert ours == table, _diff(ours, table)


def test_the_table_is_what_its_script_generates():
    assert released.TABLE.read_text() == released.render(released.vggt_keys())


def test_released_parameter_count():
    table = released.read()
    total = sum(torch.Size(shape).numel() for shape in table.values())
    assert total == 1_190_596_120  # aggregator 909.1 M, camera head 216.2 M, depth and point heads 32.7 M each


@pytest.mark.parametrize("patch_embed", ["conv", "dinov2"])
def test_tiny_configs_follow_the_same_layout(patch_embed):
    cfg = VGGTConfig.tiny(patch_embed=patch_embed)
    expected = released.vggt_keys(dim=32, depth=2, heads=2, registers=4, patch=14, img=56, backbone_depth=1,
                                  conv_patch_embed=patch_embed == "conv", trunk_depth=1, features=16,
                                  channels=(8, 16, 32, 32), hidden=8)
    ours = _shapes(cfg)
    assert ours == expected, _diff(ours, expected)


def test_heads_that_are_not_built_have_no_keys():
    ours = _shapes(VGGTConfig.vggt_1b(heads=("camera",)))
    table = released.read()
    assert ours == {k: v for k, v in table.items() if not k.startswith(("depth_head.", "point_head."))}
