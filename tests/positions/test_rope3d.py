"""MixedRoPE3D: the named-axes layout (Qwen2.5 / PTHW / Qwen3 as special cases), the mixed per-head tables against a
float64 reference, text = the LLM's 1D RoPE, relative (translation-invariant) scores, GQA shapes, normalisation,
gradients and the config checks."""

import pytest
import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.positions import (
    MixedRoPE3D,
    MixedRoPE3DConfig,
    MultiAxisRotary,
    apply_rotary,
    mixed_axis_angles,
    normalize_point_coords,
    rope3d_config,
    rope3d_layout,
    rope3d_presets,
)
from posevlm.positions.rope3d import interleaved_sections_slot_axis, mixed_rope3d_reference
from posevlm.positions.rotary import interleaved_qwen3_slot_axis

FIXED = dict(learned_frequencies=False, learned_mixing=False)


def _module(heads=4, kv=2, head_dim=32, theta=1e6, **overrides):
    return MixedRoPE3D(MixedRoPE3DConfig(**overrides), head_dim=head_dim, num_heads=heads, num_kv_heads=kv,
                       rope_theta=theta)


def _perturb(module, scale=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g) * p.abs().clamp_min(0.05))


def _inputs(b=2, length=9, seed=0, axes=3, point_fraction=0.6):
    g = torch.Generator().manual_seed(seed)
    seq = torch.arange(length)[None].expand(b, -1) + torch.arange(b)[:, None] * 3
    coords = torch.randn(b, length, axes, generator=g) * 4
    mask = torch.rand(b, length, generator=g) < point_fraction
    mask[:, 0] = True
    return seq, coords, mask


def _scores(module, tables, q, k):
    qr = apply_rotary(q, tables.cos_q, tables.sin_q)
    kr = apply_rotary(k, tables.cos_k, tables.sin_k).repeat_interleave(module.groups, 1)
    return qr @ kr.transpose(-1, -2)


# -- the general layout and its special cases ----------------------------------------------------------------------
def _thw(b=2, length=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4000, (3, b, length), generator=g).to(torch.float32)


def _point_tables(module, rows):
    """Tables of a prompt made of point tokens only, whose coordinates are ``rows`` (A, B, L)."""
    b, length = rows.shape[1:]
    seq = torch.zeros(b, length, dtype=torch.long)
    return module.tables(seq, rows.permute(1, 2, 0), torch.ones(b, length, dtype=torch.bool))


SPECIAL = dict(split="full_spatial", rope_theta_3d=None, normalization="none", resolution=1.0, **FIXED)


def test_qwen2_5_mrope_is_the_chunked_layout_on_t_h_w():
    from transformers import Qwen2_5_VLTextConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding

    hf = Qwen2_5_VLRotaryEmbedding(Qwen2_5_VLTextConfig(hidden_size=1024, num_attention_heads=8, rope_parameters={
        "rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}))
    module = _module(heads=2, kv=1, head_dim=128, axes=("t", "h", "w"), sections=(16, 24, 24), layout="chunked",
                     **SPECIAL)
    pos = _thw()
    ref_cos, ref_sin = hf(torch.zeros(1), pos.long())
    tables = _point_tables(module, pos)
    for h in range(2):
        torch.testing.assert_close(tables.cos_q[:, h], ref_cos, rtol=0, atol=0)
        torch.testing.assert_close(tables.sin_q[:, h], ref_sin, rtol=0, atol=0)
    torch.testing.assert_close(tables.cos_k[:, 0], ref_cos, rtol=0, atol=0)


def test_pthw_is_the_chunked_layout_on_p_t_h_w():
    """The PTHW slot map posevlm installs on Qwen2.5-VL ([8, 8, 24, 24]: P takes the high half of T's slots)."""
    from posevlm.models.pose_positions import _default_slot_axis
    from posevlm.positions import position_spec

    inv_freq = 1.0 / (1e6 ** (torch.arange(0, 128, 2, dtype=torch.int64).float() / 128))
    pthw = MultiAxisRotary(inv_freq, _default_slot_axis("qwen2_5", position_spec("pthw"), [16, 24, 24]))
    module = _module(heads=2, kv=2, head_dim=128, axes=("p", "t", "h", "w"), sections=(8, 8, 24, 24),
                     layout="chunked", **SPECIAL)
    pos = torch.cat([_thw(seed=1)[:1] * 0.37, _thw()], 0)
    ref_cos, ref_sin = pthw(pos)
    tables = _point_tables(module, pos)
    torch.testing.assert_close(tables.cos_k[:, 1], ref_cos, rtol=0, atol=0)
    torch.testing.assert_close(tables.sin_q[:, 0], ref_sin, rtol=0, atol=0)


def test_qwen3_interleaving_is_the_interleaved_layout():
    from transformers import Qwen3VLTextConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    assert torch.equal(interleaved_sections_slot_axis([24, 20, 20]), interleaved_qwen3_slot_axis([24, 20, 20]))
    hf = Qwen3VLTextRotaryEmbedding(Qwen3VLTextConfig(hidden_size=1024, num_attention_heads=8, head_dim=128,
                                                      rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                                       "mrope_section": [24, 20, 20],
                                                                       "mrope_interleaved": True}))
    module = _module(heads=1, kv=1, head_dim=128, theta=5e6, axes=("t", "h", "w"), sections=(24, 20, 20),
                     layout="interleaved", **SPECIAL)
    pos = _thw(seed=2)
    ref_cos, ref_sin = hf(torch.zeros(1), pos.long())
    tables = _point_tables(module, pos)
    torch.testing.assert_close(tables.cos_q[:, 0], ref_cos, rtol=0, atol=0)
    torch.testing.assert_close(tables.sin_k[:, 0], ref_sin, rtol=0, atol=0)


def test_initial_parameters_are_the_named_axes_layout_of_multi_axis_rotary():
    """mixing_init='axis': the point tokens get exactly ``layout_rotary()`` on rows (seq, x, y, z), learned or not."""
    for learned in (True, False):
        module = _module(heads=4, kv=2, head_dim=64, learned_frequencies=learned, learned_mixing=learned,
                         layout="per_axis_spectrum", normalization="none", resolution=1.0)
        seq, coords, _ = _inputs(length=11)
        mask = torch.ones_like(seq, dtype=torch.bool)
        tables = module.tables(seq, coords, mask)
        ref_cos, ref_sin = module.layout_rotary()(torch.cat([seq[None].float(), coords.permute(2, 0, 1)], 0))
        for h in range(4):
            torch.testing.assert_close(tables.cos_q[:, h], ref_cos, rtol=0, atol=0)
            torch.testing.assert_close(tables.sin_q[:, h], ref_sin, rtol=0, atol=0)


def test_slot_map_is_the_one_hot_frequency_matrix():
    rot = MultiAxisRotary(torch.rand(16), torch.randint(-1, 4, (16,), generator=torch.Generator().manual_seed(1)),
                          num_axes=4)
    pos = torch.randn(4, 2, 7) * 50
    mixed = mixed_axis_angles(pos, rot.axis_frequency_matrix().expand(3, -1, -1))
    for h in range(3):
        torch.testing.assert_close(mixed[:, h], rot.angles(pos), rtol=0, atol=0)


def test_layout_slots_and_ladders():
    layout = rope3d_layout(MixedRoPE3DConfig(layout="interleaved"), 64, 1e6)
    assert layout.num_spatial == 16 and layout.axes == ("seq", "x", "y", "z")
    assert layout.slot_axis[:16].tolist() == [1, 2, 3] * 5 + [1] and set(layout.slot_axis[16:].tolist()) == {0}
    assert torch.equal(layout.inv_freq[16:], layout.text_inv_freq[16:])  # the sequence part is the LLM's ladder
    torch.testing.assert_close(layout.inv_freq[:16], 100.0 ** (-torch.arange(16) / 16.0))  # theta_3d over Ds = 32
    chunked = rope3d_layout(MixedRoPE3DConfig(layout="chunked"), 64, 1e6)
    assert chunked.slot_axis[:16].tolist() == [1] * 6 + [2] * 5 + [3] * 5
    per_axis = rope3d_layout(MixedRoPE3DConfig(layout="per_axis_spectrum", sections=(6, 6, 4)), 64, 1e6)
    for axis, n in zip((1, 2, 3), (6, 6, 4)):  # every axis spans its own full ladder
        torch.testing.assert_close(per_axis.inv_freq[:16][per_axis.slot_axis[:16] == axis],
                                   100.0 ** (-torch.arange(n) / float(n)))
    ratio = rope3d_layout(MixedRoPE3DConfig(split="ratio", spatial_ratio=0.75), 64, 1e6)
    assert ratio.num_spatial == 24
    full_llm = rope3d_layout(MixedRoPE3DConfig(split="full_spatial", rope_theta_3d=None, layout="chunked"), 64, 1e4)
    assert torch.equal(full_llm.inv_freq, full_llm.text_inv_freq) and set(full_llm.slot_axis.tolist()) == {1, 2, 3}


# -- tables: text, reference, relative scores ----------------------------------------------------------------------
@pytest.mark.parametrize("qk_params", ["separate", "shared"])
def test_text_tokens_get_the_llm_rope_in_every_head(qk_params):
    module = _module(heads=6, kv=2, head_dim=32, qk_params=qk_params, init_noise=0.1)
    _perturb(module)
    seq, coords, mask = _inputs()
    tables = module.tables(seq, coords, mask)
    ref_cos, ref_sin = module.text_rotary(seq)
    text = ~mask
    for cos, sin in ((tables.cos_q, tables.sin_q), (tables.cos_k, tables.sin_k)):
        for h in range(cos.shape[1]):
            assert torch.equal(cos[:, h][text], ref_cos[text]) and torch.equal(sin[:, h][text], ref_sin[text])
    # the sequence half of a point token is the text rotary too
    assert torch.equal(tables.cos_q[:, 3][mask][:, 8:16], ref_cos[mask][:, 8:16])


@pytest.mark.parametrize("heads,kv", [(4, 2), (14, 2)])
def test_fast_tables_match_the_float64_reference(heads, kv):
    module = _module(heads=heads, kv=kv, head_dim=32, init_noise=0.2, resolution=8.0)
    _perturb(module, seed=heads)
    seq, coords, mask = _inputs(length=13, seed=heads)
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, heads, 13, 32, generator=g)
    k = torch.randn(2, kv, 13, 32, generator=g)
    tables = module.tables(seq, coords, mask)
    w_q, w_k = module.frequency_matrices()
    norm = module.normalize(coords, mask)
    inv = module.layout.text_inv_freq
    torch.testing.assert_close(apply_rotary(q, tables.cos_q, tables.sin_q).double(),
                               mixed_rope3d_reference(q, seq, norm, mask, w_q.detach(), inv), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(apply_rotary(k, tables.cos_k, tables.sin_k).double(),
                               mixed_rope3d_reference(k, seq, norm, mask, w_k.detach(), inv), rtol=1e-4, atol=1e-4)


def _relative_case(module, shift):
    seq, coords, _ = _inputs(b=1, length=10, seed=3)
    mask = torch.ones(1, 10, dtype=torch.bool)
    g = torch.Generator().manual_seed(7)
    q = torch.randn(1, module.num_heads, 10, module.head_dim, generator=g)
    k = torch.randn(1, module.num_kv_heads, 10, module.head_dim, generator=g)
    return (_scores(module, module.tables(seq, coords, mask), q, k),
            _scores(module, module.tables(seq, coords + shift, mask), q, k))


SHIFT = torch.tensor([3.7, -12.5, 0.8])


@pytest.mark.parametrize("heads,kv", [(4, 2), (14, 2)])
def test_point_scores_depend_on_coordinate_differences_only_with_fixed_mixing(heads, kv):
    """Learned frequencies (noisy init), fixed mixing, separate query / kv parameters as initialised: a common
    translation of every point leaves every q.k unchanged."""
    module = _module(heads=heads, kv=kv, learned_mixing=False, init_noise=0.3, normalization="none",
                     resolution=1.0)
    a, b = _relative_case(module, SHIFT)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert a.abs().max() > 0.1  # scores are not trivially 0


def test_shared_parameters_stay_relative_after_training_separate_ones_do_not():
    shared = _module(heads=6, kv=2, qk_params="shared", init_noise=0.2, normalization="none", resolution=1.0)
    _perturb(shared)
    a, b = _relative_case(shared, SHIFT)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    separate = _module(heads=6, kv=2, qk_params="separate", init_noise=0.2, normalization="none", resolution=1.0)
    _perturb(separate)  # query and kv parameters drift apart: q.k now sees absolute coordinates
    a, b = _relative_case(separate, SHIFT)
    assert (a - b).abs().max() > 1e-2


def test_max_extent_normalisation_removes_translation_and_scale():
    module = _module(heads=4, kv=2, resolution=16.0)
    seq, coords, mask = _inputs(length=12, seed=4)
    a = module.tables(seq, coords, mask)
    b = module.tables(seq, coords * 2.5 + SHIFT, mask)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


# -- GQA shapes (trap 3) ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads,kv", [(4, 2), (14, 2)])
def test_query_and_kv_parameters_have_their_own_head_counts(heads, kv):
    module = _module(heads=heads, kv=kv, head_dim=64, init_noise=0.1)
    groups = heads // kv
    assert module.frequencies_q.shape == (3, heads, 16) and module.frequencies_k.shape == (3, kv, 16)
    assert module.mixing_q.shape == (heads, 16, 3) and module.mixing_k.shape == (kv, 16, 3)
    torch.testing.assert_close(module.frequencies_q, module.frequencies_k.repeat_interleave(groups, 1), rtol=0, atol=0)
    seq, coords, mask = _inputs()
    t = module.tables(seq, coords, mask)
    assert t.cos_q.shape == (2, heads, 9, 64) and t.cos_k.shape == (2, kv, 9, 64)
    q = torch.randn(2, heads, 9, 64)
    with pytest.raises(RuntimeError):  # the query tables cannot rotate the kv heads (the note's 14 vs 2 crash)
        apply_rotary(torch.randn(2, kv, 9, 64), t.cos_q, t.sin_q)
    assert apply_rotary(q, t.cos_q, t.sin_q).shape == q.shape


# -- normalisation -------------------------------------------------------------------------------------------------
def test_normalisation_keeps_aspect_and_maps_the_longest_side_to_the_resolution():
    coords = torch.tensor([[[0.0, 0, 0], [4, 1, 2], [2, 0.5, 1], [9, 9, 9]],
                           [[10.0, 10, 10], [10, 12, 11], [99, 99, 99], [99, 99, 99]]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    out = normalize_point_coords(coords, mask, rule="max_extent", resolution=8.0)
    torch.testing.assert_close(out[0, :3], torch.tensor([[0.0, 0, 0], [8, 2, 4], [4, 1, 2]]))
    torch.testing.assert_close(out[1, :2], torch.tensor([[0.0, 0, 0], [0, 8, 4]]))
    assert torch.equal(out[~mask], torch.zeros(3, 3))
    single = normalize_point_coords(torch.full((1, 2, 3), 5.0), torch.tensor([[True, False]]), resolution=8.0)
    assert torch.equal(single, torch.zeros(1, 2, 3))
    assert torch.equal(normalize_point_coords(coords, mask, rule="none", resolution=2.0)[0, 1], coords[0, 1] * 2)


# -- parameters ------------------------------------------------------------------------------------------------------
def test_learned_parameters_get_gradients_that_match_the_float64_reference():
    module = _module(heads=4, kv=2, head_dim=16, init_noise=0.2)
    _perturb(module, seed=3)
    seq, coords, mask = _inputs(length=7, seed=2)
    g = torch.Generator().manual_seed(9)
    q, k = torch.randn(2, 4, 7, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g)
    wq_out, wk_out = torch.randn(2, 4, 7, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g)
    t = module.tables(seq, coords, mask)
    loss = (apply_rotary(q, t.cos_q, t.sin_q) * wq_out).sum() + (apply_rotary(k, t.cos_k, t.sin_k) * wk_out).sum()
    loss.backward()
    params = dict(module.named_parameters())
    assert set(params) == {"frequencies_q", "frequencies_k", "mixing_q", "mixing_k"}
    copies = {n: p.detach().double().requires_grad_() for n, p in params.items()}
    norm = module.normalize(coords, mask)
    inv = module.layout.text_inv_freq
    w_q = copies["mixing_q"] * copies["frequencies_q"].permute(1, 2, 0)
    w_k = copies["mixing_k"] * copies["frequencies_k"].permute(1, 2, 0)
    ref = (mixed_rope3d_reference(q, seq, norm, mask, w_q, inv) * wq_out.double()).sum() + \
        (mixed_rope3d_reference(k, seq, norm, mask, w_k, inv) * wk_out.double()).sum()
    ref.backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().max() > 0, name
        torch.testing.assert_close(p.grad.double(), copies[name].grad, rtol=1e-3, atol=1e-3)


def test_fixed_parameters_are_buffers_outside_the_state_dict():
    module = _module(**FIXED)
    assert list(module.parameters()) == [] and module.state_dict() == {}
    half = _module(learned_frequencies=True, learned_mixing=False)
    assert {n for n, _ in half.named_parameters()} == {"frequencies_q", "frequencies_k"}
    shared = _module(qk_params="shared")
    assert {n for n, _ in shared.named_parameters()} == {"frequencies_k", "mixing_k"}


# -- config ----------------------------------------------------------------------------------------------------------
def test_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        MixedRoPE3DConfig(split="halves", layout="zigzag", resolution=-1, axes=("x", "x"), schema_version=2)
    text = str(err.value)
    for part in ("split='halves'", "layout='zigzag'", "resolution=-1", "axes=", "schema_version=2"):
        assert part in text
    with pytest.raises(ConfigError, match="init_noise > 0"):
        MixedRoPE3DConfig(mixing_init="uniform")


def test_head_size_dependent_checks_name_the_fix():
    with pytest.raises(ConfigError, match=r"0\.28125 \(18 dims\) or 0\.3125 \(20 dims\)"):
        rope3d_layout(MixedRoPE3DConfig(split="ratio", spatial_ratio=0.3), 64, 1e6)
    with pytest.raises(ConfigError, match="sum to 15"):
        rope3d_layout(MixedRoPE3DConfig(sections=(5, 5, 5)), 64, 1e6)
    with pytest.raises(ConfigError, match="multiple of num_kv_heads"):
        _module(heads=6, kv=4)
    with pytest.raises(ShapeError, match="coords must be"):
        _module().tables(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, 2), torch.ones(1, 4, dtype=torch.bool))


def test_config_round_trip_and_presets():
    cfg = MixedRoPE3DConfig(axes=("x", "y", "z"), sections=(6, 5, 5), init_noise=0.1)
    assert MixedRoPE3DConfig.from_dict(cfg.to_dict()) == cfg
    assert {"mixed_rope3d", "rope3d", "rope3d_full"} <= set(rope3d_presets.names())
    assert rope3d_config("mixed_rope3d") == MixedRoPE3DConfig()
    assert rope3d_config({"preset": "rope3d", "resolution": 8}).resolution == 8
    assert not rope3d_config("rope3d").learned
    with pytest.raises(ConfigError, match="Did you mean: rope3d"):
        rope3d_config("rope3e")
    with pytest.raises(ConfigError, match="unknown MixedRoPE3DConfig keys"):
        MixedRoPE3DConfig.from_dict({"theta": 3})
