"""Section algebra of MultiAxisRotary and parity of its cos/sin with transformers' rotary modules."""

import pytest
import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.positions import MultiAxisRotary, chunked_slot_axis, interleaved_qwen3_slot_axis


def _inv_freq(theta=1e6, d=128):
    return 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)


def _thw(b=2, length=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5000, (3, b, length), generator=g).to(torch.float32)


@pytest.mark.parametrize("sections", [[16, 24, 24], [8, 8, 24, 24], [24, 20, 20], [2, 3, 3]])
def test_chunked_each_slot_one_axis_counts_equal_sections(sections):
    rot = MultiAxisRotary.chunked(_inv_freq(d=2 * sum(sections)), sections)
    assert rot.slot_axis.numel() == sum(sections)
    assert rot.axis_counts() == sections
    assert torch.all(rot.slot_axis[1:] >= rot.slot_axis[:-1])  # contiguous


def test_interleaved_qwen3_slots():
    slot_axis = interleaved_qwen3_slot_axis([24, 20, 20])
    assert torch.bincount(slot_axis).tolist() == [24, 20, 20]
    assert torch.equal(torch.nonzero(slot_axis == 1).flatten(), torch.arange(1, 60, 3))
    assert torch.equal(torch.nonzero(slot_axis == 2).flatten(), torch.arange(2, 60, 3))
    assert set(torch.nonzero(slot_axis == 0).flatten().tolist()) == set(range(0, 60, 3)) | {60, 61, 62, 63}


@pytest.mark.parametrize("layout", ["chunked", "qwen3", "random"])
def test_both_rotary_halves_identical(layout):
    inv = _inv_freq()
    if layout == "chunked":
        rot = MultiAxisRotary.chunked(inv, [8, 8, 24, 24])
        pos = torch.cat([_thw(seed=1)[:1] * 0.37, _thw()], 0)
    elif layout == "qwen3":
        rot, pos = MultiAxisRotary.interleaved_qwen3(inv), _thw()
    else:
        rot = MultiAxisRotary(inv, torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(3)))
        pos = torch.cat([_thw(seed=1)[:1] * 0.37, _thw()], 0)
    cos, sin = rot(pos)
    assert cos.shape == (2, 37, 128)
    assert torch.equal(cos[..., :64], cos[..., 64:]) and torch.equal(sin[..., :64], sin[..., 64:])


def test_each_slot_reads_its_own_axis():
    """Guards the `i % 3` bug: with one-hot positions, slot k moves iff its axis moved."""
    inv = _inv_freq()
    rot = MultiAxisRotary.chunked(inv, [8, 8, 24, 24])
    for axis in range(4):
        pos = torch.zeros(4, 1, 1)
        pos[axis] = 1.0
        _, sin = rot(pos)
        moved = sin[0, 0, :64] != 0.0
        assert torch.equal(moved, rot.slot_axis == axis)


@pytest.mark.parametrize("split", [(8, 8), (1, 15), (16, 0), (4, 12)])
def test_pthw_with_p_equal_t_is_thw(split):
    inv = _inv_freq()
    thw = _thw()
    base = MultiAxisRotary.chunked(inv, [16, 24, 24])(thw)
    pthw = MultiAxisRotary.chunked(inv, [*split, 24, 24])(torch.cat([thw[:1], thw], 0))
    assert torch.equal(base[0], pthw[0]) and torch.equal(base[1], pthw[1])


def test_qwen3_phw_with_p_equal_t_is_baseline():
    inv = _inv_freq(theta=5e6)
    rot = MultiAxisRotary.interleaved_qwen3(inv)
    thw = _thw()
    phw = thw.clone()  # P row written where T was: same slots, same values
    assert all(torch.equal(a, b) for a, b in zip(rot(thw), rot(phw)))


def test_text_positions_broadcast():
    rot = MultiAxisRotary.chunked(_inv_freq(), [16, 24, 24])
    text = torch.arange(11, dtype=torch.float32)[None].expand(2, -1)
    a = rot(text)
    b = rot(text[None].expand(3, -1, -1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_float32_under_autocast_and_dtype_cast():
    rot = MultiAxisRotary.chunked(_inv_freq(), [16, 24, 24])
    pos = _thw() + 1e5
    ref = rot(pos)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = rot(pos)
    assert torch.equal(ref[0], got[0])
    assert rot(pos, dtype=torch.bfloat16)[0].dtype == torch.bfloat16


def test_validation_errors():
    with pytest.raises(ConfigError, match="sum to 60"):
        MultiAxisRotary.chunked(_inv_freq(), [16, 24, 20])
    with pytest.raises(ShapeError, match="one entry per frequency slot"):
        MultiAxisRotary(_inv_freq(), [0] * 10)
    with pytest.raises(ShapeError, match="rows"):
        MultiAxisRotary.chunked(_inv_freq(), [16, 24, 24])(torch.zeros(4, 1, 3))
    assert chunked_slot_axis([1, 2]).tolist() == [0, 1, 1]


transformers = pytest.importorskip("transformers")


def test_matches_qwen2_5_rotary_embedding():
    from transformers import Qwen2_5_VLTextConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding

    cfg = Qwen2_5_VLTextConfig(hidden_size=1024, num_attention_heads=8, rope_parameters={
        "rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    hf = Qwen2_5_VLRotaryEmbedding(cfg)
    pos = _thw().long()
    ref_cos, ref_sin = hf(torch.zeros(1, dtype=torch.float32), pos)
    ours = MultiAxisRotary.chunked(hf.inv_freq, [16, 24, 24], hf.attention_scaling)
    cos, sin = ours(pos.float())
    torch.testing.assert_close(cos, ref_cos, rtol=0, atol=0)
    torch.testing.assert_close(sin, ref_sin, rtol=0, atol=0)


def test_matches_qwen3_rotary_embedding():
    from transformers import Qwen3VLTextConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    cfg = Qwen3VLTextConfig(hidden_size=1024, num_attention_heads=8, head_dim=128, rope_parameters={
        "rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20], "mrope_interleaved": True})
    hf = Qwen3VLTextRotaryEmbedding(cfg)
    pos = _thw().long()
    ref_cos, ref_sin = hf(torch.zeros(1, dtype=torch.float32), pos)
    ours = MultiAxisRotary.interleaved_qwen3(hf.inv_freq, [24, 20, 20], hf.attention_scaling)
    cos, sin = ours(pos.float())
    torch.testing.assert_close(cos, ref_cos, rtol=0, atol=0)
    torch.testing.assert_close(sin, ref_sin, rtol=0, atol=0)


def test_unrotated_slots_keep_cos_one_sin_zero_and_leave_other_slots_alone():
    inv_freq = 1.0 / (10000 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
    full = MultiAxisRotary(inv_freq, [0, 0, 1, 1, 1, 2, 2, 2])
    part = MultiAxisRotary(inv_freq, [-1, -1, 1, 1, 1, 2, 2, 2])
    assert part.axis_counts() == [0, 3, 3]
    pos = torch.randint(0, 50, (3, 2, 7)).float()
    cos_f, sin_f = full(pos)
    cos_p, sin_p = part(pos)
    off = torch.tensor([0, 1, 8, 9])  # both rotary halves of slots 0 and 1
    assert torch.equal(cos_p[..., off], torch.ones_like(cos_p[..., off]))
    assert torch.equal(sin_p[..., off], torch.zeros_like(sin_p[..., off]))
    keep = torch.tensor([i for i in range(16) if i not in off.tolist()])
    assert torch.equal(cos_p[..., keep], cos_f[..., keep]) and torch.equal(sin_p[..., keep], sin_f[..., keep])


def test_num_axes_allows_an_axis_without_slots():
    """A slot map leaving the last axis slot-less (e.g. P,T,H,W with W's slots given to a camera block)
    needs num_axes: without it, A = max(slot_axis) + 1 = 3 and a 4-row forward fails."""
    slot_axis = chunked_slot_axis([8, 8, 16])  # axes 0..2; axis 3 (W) gets no slot
    inv = torch.rand(32)
    assert MultiAxisRotary(inv, slot_axis).num_axes == 3  # default unchanged
    rot = MultiAxisRotary(inv, slot_axis, num_axes=4)
    assert rot.num_axes == 4 and rot.axis_counts() == [8, 8, 16, 0]
    pos = torch.randn(4, 2, 5) * 10
    cos, sin = rot(pos)
    ref = MultiAxisRotary(inv, slot_axis)(pos[:3])
    assert torch.equal(cos, ref[0]) and torch.equal(sin, ref[1])
    assert rot(pos[0])[0].shape == (2, 5, 64)  # (B, L) still broadcasts
    with pytest.raises(ShapeError, match="expects 4 axes"):
        rot(pos[:3])
    with pytest.raises(ConfigError, match="num_axes"):
        MultiAxisRotary(inv, slot_axis, num_axes=2)
    assert MultiAxisRotary.chunked(inv, [8, 8, 16], num_axes=4).num_axes == 4
