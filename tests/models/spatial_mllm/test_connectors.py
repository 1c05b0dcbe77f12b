"""Connectors of Spatial-MLLM: the merge against two independent references (the spec's index formula and the
upstream reshape/permute steps), multi-video merges, the worked-example shapes, v1.1 / v1.0 parity with the formulas,
ablation switches, identity init, gradients, key layouts and state-dict round trips, parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from posevlm.errors import ConfigError, ShapeError
from posevlm.models.spatial_mllm.connectors import (
    ConnectorConfig,
    build_connector,
    connector_parameters,
    connectors,
    merge_spatial_tokens,
    merge_spatial_tokens_reference,
    merge_videos,
)

TYPES = ("add", "channel_cat", "cross_attn", "sequence_cat", "v1_0")
DD, D = 4, 16  # tiny: merged rows of 8 * DD = 32


def tiny(type_: str, **kw) -> ConnectorConfig:
    return ConnectorConfig(type=type_, spatial_dim=DD, llm_dim=D, num_heads=4, **kw)


def inputs(n: int = 6, seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=dtype), torch.randn(n, 8 * DD, generator=g, dtype=dtype)


def built(config: ConnectorConfig, seed: int = 0, perturb: bool = True) -> torch.nn.Module:
    """A connector in float64; ``perturb``: every parameter randomised (zero-init blocks and norms included)."""
    torch.manual_seed(seed)
    module = build_connector(config).double()
    if perturb:
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.startswith(("ln", "token_merge_ln", "vgg_to_language_ln"))
                                                      else 0.0))
    return module


def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def mlp(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    h = F.gelu(x @ sd[f"{prefix}.0.weight"].T + sd[f"{prefix}.0.bias"])
    return h @ sd[f"{prefix}.2.weight"].T + sd[f"{prefix}.2.bias"]


# ---- merge -------------------------------------------------------------------------------------------------------
def upstream_merge(tokens: torch.Tensor, grid_thw, order: str) -> torch.Tensor:
    """The merge as the upstream code's tensor steps (spec §1.7 steps 3-4 for v1.1; v1.0's ``merge_tokens``)."""
    t, gh, gw = grid_thw
    s, p, dd = tokens.shape
    if order == "v1.1":  # [1, S, DD, gh, gw] -> [1, T, 2, DD, mh, 2, mw, 2] -> [1, T, mh, mw, sh, sw, DD, tm]
        x = tokens.transpose(1, 2).reshape(1, s, dd, gh, gw).view(1, t, 2, dd, gh // 2, 2, gw // 2, 2)
        return x.permute(0, 1, 4, 6, 5, 7, 3, 2).reshape(-1, 8 * dd)
    x = tokens.view(1, s, gh, gw, dd).view(1, t, 2, gh // 2, 2, gw // 2, 2, dd)  # [B, T, tm, mh, sh, mw, sw, D]
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, 8 * dd)


@pytest.mark.parametrize("order", ["v1.1", "v1.0"])
@pytest.mark.parametrize("grid", [(1, 2, 2), (2, 4, 6), (3, 6, 2), (2, 2, 8)])
def test_merge_equals_index_reference_and_upstream_steps(order, grid):
    tokens = torch.randn(2 * grid[0], grid[1] * grid[2], 3)
    fast = merge_spatial_tokens(tokens, grid, order)
    assert fast.shape == (grid[0] * grid[1] * grid[2] // 4, 24)
    assert torch.equal(fast, merge_spatial_tokens_reference(tokens, grid, order))
    assert torch.equal(fast, upstream_merge(tokens, grid, order))


def test_merge_orders_differ_and_hold_the_same_values():
    tokens = torch.randn(4, 24, 3)
    v11, v10 = merge_spatial_tokens(tokens, (2, 4, 6), "v1.1"), merge_spatial_tokens(tokens, (2, 4, 6), "v1.0")
    assert not torch.equal(v11, v10)
    assert torch.equal(v11.sort(dim=1).values, v10.sort(dim=1).values)  # same window, other feature order


def test_merge_formula_pins_one_value():
    """Row 0 holds frames 0-1 of patches (0,0) (0,1) (1,0) (1,1); v1.1 column ((sh*2+sw)*DD + d)*2 + tm."""
    t, gh, gw, dd = 1, 2, 2, 3
    tokens = torch.arange(2 * gh * gw * dd, dtype=torch.float32).reshape(2, gh * gw, dd)  # value = (s*4 + p)*3 + d
    row = merge_spatial_tokens(tokens, (t, gh, gw))[0]
    sh, sw, d, tm = 1, 0, 2, 1
    assert row[((sh * 2 + sw) * dd + d) * 2 + tm] == tokens[tm, sh * gw + sw, d] == (1 * 4 + 2) * 3 + 2


@pytest.mark.parametrize("shape, grid, match", [
    ((3, 24, 2), (2, 4, 6), "needs S = 2T = 4"),
    ((4, 20, 2), (2, 4, 6), "needs 24"),
    ((2, 15, 2), (1, 3, 5), "even sides"),
    ((4, 48), (2, 4, 6), r"\(S, gh\*gw, DD\)"),
])
def test_merge_refuses_bad_shapes(shape, grid, match):
    with pytest.raises(ShapeError, match=match):
        merge_spatial_tokens(torch.zeros(shape), grid)


def test_merge_refuses_unknown_order():
    with pytest.raises(ConfigError, match="v1.1, v1.0"):
        merge_spatial_tokens(torch.zeros(2, 4, 1), (1, 2, 2), "v2")


@pytest.mark.parametrize("as_tensor", [True, False])
def test_merge_videos_merges_each_video_with_its_own_grid(as_tensor):
    grids = [(2, 4, 6), (1, 2, 2), (3, 6, 4)]
    videos = [torch.randn(2 * t, gh * gw, 3) for t, gh, gw in grids]
    grid_thw = torch.tensor(grids) if as_tensor else grids
    for order in ("v1.1", "v1.0"):
        merged = merge_videos(videos, grid_thw, order)
        expected = torch.cat([merge_spatial_tokens_reference(v, g, order) for v, g in zip(videos, grids)])
        assert merged.shape == (12 + 1 + 18, 24)
        assert torch.equal(merged, expected)


def test_merge_videos_refuses_mismatches():
    videos = [torch.randn(4, 24, 3), torch.randn(2, 4, 3)]
    with pytest.raises(ShapeError, match="2 videos of spatial tokens for 1 grid_thw rows"):
        merge_videos(videos, [(2, 4, 6)])
    with pytest.raises(ShapeError, match="widths differ"):
        merge_videos([videos[0], torch.randn(2, 4, 5)], [(2, 4, 6), (1, 2, 2)])
    with pytest.raises(ShapeError, match=r"\(V, 3\)"):
        merge_videos(videos, [(2, 4), (1, 2)])
    with pytest.raises(ShapeError, match="needs S = 2T = 2"):  # the grid rows in the wrong order
        merge_videos(videos, [(1, 2, 2), (2, 4, 6)])


def test_worked_example_16_frames_644x476():
    """Spec §1.3: grid (8, 34, 46) -> 3128 rows of 8 * DD; real tokens at DD = 2, the full sizes on meta."""
    tokens = torch.randn(16, 34 * 46, 2)
    merged = merge_spatial_tokens(tokens, (8, 34, 46))
    assert merged.shape == (3128, 16)
    assert torch.equal(merged, upstream_merge(tokens, (8, 34, 46), "v1.1"))
    full = merge_spatial_tokens(torch.empty(16, 1564, 2048, device="meta"), (8, 34, 46))
    assert full.shape == (3128, 16384)
    for type_ in TYPES:
        config = ConnectorConfig(type=type_)
        with torch.device("meta"):
            module = build_connector(config)
            out = module(torch.empty(3128, 2048), full)
        assert out.shape == (3128, 2048)
        assert 3128 + 3128 * module.extra_tokens_per_visual_token == (6256 if type_ == "sequence_cat" else 3128)


# ---- config and registry -----------------------------------------------------------------------------------------
def test_registry_lists_the_five_connectors_with_descriptions():
    assert connectors.names() == sorted(TYPES)
    for name, description, origin in connectors.describe():
        assert description and origin == "builtin", name
        cls = connectors.get(name)
        assert cls.extra_tokens_per_visual_token == (0 if cls.fuses else 1)
        assert cls.per_video == (name == "cross_attn")


@pytest.mark.parametrize("type_", TYPES)
def test_config_round_trip(type_):
    config = ConnectorConfig(type=type_, spatial_dim=8, llm_dim=32, num_heads=2, mlp_ratio=2)
    assert ConnectorConfig.from_dict(config.to_dict()) == config
    assert config.merge_order == ("v1.0" if type_ == "v1_0" else "v1.1")


def test_config_reads_the_released_dict():
    config = ConnectorConfig.from_dict({"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1,
                                        "use_visual": True, "use_geo": False})
    assert (config.type, config.merge_order, config.use_geo, config.spatial_dim, config.llm_dim) == \
        ("add", "v1.1", False, 2048, 2048)
    assert ConnectorConfig(type="v1_0", merge_order="v1.1").merge_order == "v1.1"  # explicit wins over the default
    with pytest.raises(ConfigError, match="unknown ConnectorConfig keys"):
        ConnectorConfig.from_dict({"connector_type": "mlp_add", "fusion": "cat"})


@pytest.mark.parametrize("kwargs, match", [
    ({"type": "sequence_cat", "skip": True}, "sequence_cat does not support skip"),
    ({"type": "sequence_cat", "use_geo": False}, "does not support use_geo"),
    ({"type": "cross_attn", "use_visual": False}, r"does not support use_visual \(it supports: skip, use_geo\)"),
    ({"type": "cross_attn", "num_heads": 3}, "num_heads=3 does not divide llm_dim=16"),
    ({"type": "cross_attn", "hidden": 64}, "hidden=64 is not used by cross_attn"),
    ({"type": "add", "use_visual": False, "use_geo": False}, "both False"),
    ({"type": "ad"}, "registered: add, channel_cat"),
])
def test_config_refuses_with_the_reason(kwargs, match):
    base = {"spatial_dim": DD, "llm_dim": D, "num_heads": 4} | kwargs
    with pytest.raises(ConfigError, match=match):
        ConnectorConfig(**base)


def test_config_reports_all_problems_at_once():
    with pytest.raises(ConfigError) as err:
        ConnectorConfig(spatial_dim=0, merge_order="v3", mlp_ratio=-1)
    assert all(s in str(err.value) for s in ("spatial_dim=0", "merge_order='v3'", "mlp_ratio=-1"))


def expected_parameters(c: ConnectorConfig) -> int:
    """Closed-form counts, written from the architecture (not from the modules)."""
    m, d = 8 * c.spatial_dim, c.llm_dim
    h = c.hidden or m
    linear = lambda i, o: i * o + o  # noqa: E731
    spatial_mlp = m + linear(m, h) + linear(h, d)
    if c.type in ("add", "sequence_cat"):
        return spatial_mlp
    if c.type == "channel_cat":
        return spatial_mlp + linear(2 * d, d)
    if c.type == "v1_0":
        return spatial_mlp + d + 2 * linear(d, d)
    r = c.mlp_ratio
    return d + m + linear(m, d) + 4 * linear(d, d) + (d + linear(d, r * d) + linear(r * d, d) if r else 0)


@pytest.mark.parametrize("type_", TYPES)
def test_parameter_counts_match_the_formula(type_):
    for config in (ConnectorConfig(type=type_), tiny(type_), tiny(type_, mlp_ratio=0)):
        assert connector_parameters(config) == expected_parameters(config)
    real = build_connector(tiny(type_))
    assert sum(p.numel() for p in real.parameters()) == expected_parameters(tiny(type_))


def test_released_add_connector_has_302m_parameters():
    assert connector_parameters(ConnectorConfig.from_dict({"connector_type": "mlp_add"})) == 302_024_704


# ---- parity with the formulas ------------------------------------------------------------------------------------
def test_add_is_the_v11_formula():
    module = built(tiny("add"))
    sd = module.state_dict()
    visual, spatial = inputs()
    geo = mlp(rms(spatial, sd["ln_q.weight"]), sd, "mlp")
    assert torch.allclose(module(visual, spatial), visual + geo, rtol=0, atol=1e-12)


def test_v1_0_is_the_v10_formula_on_v10_merged_rows():
    config = tiny("v1_0")
    module = built(config)
    sd = module.state_dict()
    tokens, visual = torch.randn(4, 24, DD, dtype=torch.float64), torch.randn(12, D, dtype=torch.float64)
    rows = upstream_merge(tokens, (2, 4, 6), "v1.0")  # v1.0's merge_tokens, then its two norm + MLP stages
    x = mlp(rms(rows, sd["token_merge_ln_q.weight"]), sd, "token_merge_mlp")
    geo = mlp(rms(x, sd["vgg_to_language_ln_q.weight"]), sd, "vgg_to_language_mlp")
    ours = module(visual, merge_spatial_tokens(tokens, (2, 4, 6), config.merge_order))
    assert torch.allclose(ours, visual + geo, rtol=0, atol=1e-12)


def test_cross_attn_is_global_multi_head_attention():
    config = tiny("cross_attn")
    module = built(config)
    sd = module.state_dict()
    visual, spatial = inputs(n=7)
    lin = lambda x, name: x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]  # noqa: E731
    s = lin(rms(spatial, sd["ln_spatial.weight"]), "spatial_proj")
    q, k, v = lin(rms(visual, sd["ln_visual.weight"]), "q_proj"), lin(s, "k_proj"), lin(s, "v_proj")
    heads = []
    for h in range(4):
        cols = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[:, cols] @ k[:, cols].T / math.sqrt(4), dim=-1)  # (N, N): every 3D token
        heads.append(weights @ v[:, cols])
    x = visual + lin(torch.cat(heads, dim=1), "o_proj")
    expected = x + mlp(rms(x, sd["ln_ffn.weight"]), sd, "ffn")
    assert torch.allclose(module(visual, spatial), expected, rtol=0, atol=1e-12)


def test_channel_and_sequence_cat_formulas():
    visual, spatial = inputs()
    seq = built(tiny("sequence_cat"))
    sd = seq.state_dict()
    assert torch.allclose(seq(visual, spatial), mlp(rms(spatial, sd["ln_q.weight"]), sd, "mlp"), rtol=0, atol=1e-12)
    cat = built(tiny("channel_cat"))
    sd = cat.state_dict()
    geo = mlp(rms(spatial, sd["ln_q.weight"]), sd, "mlp")
    expected = torch.cat([visual, geo], 1) @ sd["proj.weight"].T + sd["proj.bias"]
    assert torch.allclose(cat(visual, spatial), expected, rtol=0, atol=1e-12)


# ---- switches ----------------------------------------------------------------------------------------------------
def count_calls(module: torch.nn.Module) -> dict[str, int]:
    calls = {name: 0 for name, _ in module.named_children()}
    for name, child in module.named_children():
        child.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    return calls


@pytest.mark.parametrize("type_", ["add", "v1_0"])
def test_add_ablations_change_exactly_the_expected_terms(type_):
    visual, spatial = inputs()
    both = built(tiny(type_))
    geo = both.project(spatial)
    assert torch.allclose(both(visual, spatial), visual + geo, rtol=0, atol=1e-12)
    for kwargs, expected, runs in [({"use_geo": False}, visual, False), ({"use_visual": False}, geo, True),
                                   ({"skip": True}, visual, False), ({"skip": True, "use_visual": False}, visual, False)]:
        module = built(tiny(type_, **kwargs))
        module.load_state_dict(both.state_dict())
        calls = count_calls(module)
        out = module(visual, spatial)
        assert torch.equal(out, expected), kwargs
        assert (sum(calls.values()) > 0) == runs, kwargs  # skip / visual-only never run the projection


def test_channel_cat_switches():
    visual, spatial = inputs()
    full = built(tiny("channel_cat"))
    w, b = full.proj.weight, full.proj.bias
    geo = full.project(spatial)
    cases = [({"use_geo": False}, visual @ w[:, :D].T + b, False), ({"use_visual": False}, geo @ w[:, D:].T + b, True),
             ({"skip": True}, visual, False)]
    for kwargs, expected, mlp_runs in cases:
        module = built(tiny("channel_cat", **kwargs))
        module.load_state_dict(full.state_dict())
        calls = count_calls(module)
        assert torch.allclose(module(visual, spatial), expected, rtol=0, atol=1e-12), kwargs
        assert (calls["mlp"] > 0) == mlp_runs, kwargs


@pytest.mark.parametrize("kwargs", [{"skip": True}, {"use_geo": False}])
def test_cross_attn_switches_return_the_2d_tokens_without_running(kwargs):
    module = built(tiny("cross_attn", **kwargs))
    calls = count_calls(module)
    visual, spatial = inputs()
    assert module(visual, spatial) is visual and sum(calls.values()) == 0


# ---- init, gradients, batching, dtypes ---------------------------------------------------------------------------
@pytest.mark.parametrize("config", [tiny("channel_cat"), tiny("cross_attn"), tiny("cross_attn", mlp_ratio=0)],
                         ids=["channel_cat", "cross_attn", "cross_attn-no-ffn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fresh_channel_cat_and_cross_attn_return_the_2d_tokens_exactly(config, dtype):
    torch.manual_seed(1)
    module = build_connector(config)
    visual, spatial = (x.to(dtype) * 5 for x in inputs(n=9, dtype=torch.float32))
    out = module(visual, spatial)
    assert out.dtype == dtype and torch.equal(out, visual)
    with torch.no_grad():  # the zero blocks are what makes it exact: move them and the 3D tokens show
        for name, p in module.named_parameters():
            if name in ("proj.weight", "o_proj.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    assert not torch.equal(module(visual, spatial), visual)


ZERO_INIT_LEARNERS = {"channel_cat": {"proj.weight", "proj.bias"},
                      "cross_attn": {"o_proj.weight", "o_proj.bias", "ffn.2.weight", "ffn.2.bias"}}


@pytest.mark.parametrize("type_", TYPES)
def test_gradients_reach_every_parameter(type_):
    """One backward at init reaches every parameter, except behind the zero-init blocks of channel_cat / cross_attn,
    which learn first; after one SGD step every parameter gets gradient."""
    module = built(tiny(type_), perturb=False)
    visual, spatial = inputs(n=8)
    target = torch.randn(8, D, dtype=torch.float64)

    def grads() -> dict[str, torch.Tensor]:
        module.zero_grad()
        (module(visual, spatial) * target).sum().backward()
        return {name: p.grad for name, p in module.named_parameters()}

    at_init = {name for name, g in grads().items() if g is not None and g.abs().sum() > 0}
    assert at_init == ZERO_INIT_LEARNERS.get(type_, set(dict(module.named_parameters())))
    torch.optim.SGD(module.parameters(), lr=0.5).step()
    assert all(g is not None and g.abs().sum() > 0 for g in grads().values())


@pytest.mark.parametrize("type_", TYPES)
def test_rows_are_independent_unless_per_video(type_):
    module = built(tiny(type_))
    visual, spatial = inputs(n=10)
    whole = module(visual, spatial)
    parts = torch.cat([module(visual[:4], spatial[:4]), module(visual[4:], spatial[4:])])
    assert torch.allclose(whole, parts, rtol=0, atol=1e-12) != module.per_video
    perm = torch.randperm(10)  # no positions inside any connector: permuting the tokens permutes the output
    assert torch.allclose(module(visual[perm], spatial[perm]), whole[perm], rtol=0, atol=1e-12)


@pytest.mark.parametrize("type_", TYPES)
def test_bf16_inputs(type_):
    torch.manual_seed(0)
    module = build_connector(tiny(type_))
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    visual, spatial = inputs(dtype=torch.float32)
    reference = module(visual, spatial)
    for m in (module, module.to(torch.bfloat16)):  # fp32 weights with bf16 tokens, then all bf16
        out = m(visual.bfloat16(), spatial.bfloat16())
        assert out.dtype == torch.bfloat16
        assert torch.allclose(out.float(), reference, rtol=0.05, atol=0.05)


def test_forward_refuses_mismatched_tokens():
    module = build_connector(tiny("add"))
    visual, spatial = inputs(dtype=torch.float32)
    with pytest.raises(ShapeError, match="6 2D tokens but 5 merged spatial tokens"):
        module(visual, spatial[:5])
    with pytest.raises(ShapeError, match="merge them first"):
        module(visual, spatial[:, :8])
    with pytest.raises(ShapeError, match=r"\(N, D=16\)"):
        module(visual[:, :8], spatial)


# ---- keys and state dicts ----------------------------------------------------------------------------------------
KEYS = {
    "add": {"ln_q.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"},
    "v1_0": {"token_merge_ln_q.weight", "token_merge_mlp.0.weight", "token_merge_mlp.0.bias",
             "token_merge_mlp.2.weight", "token_merge_mlp.2.bias", "vgg_to_language_ln_q.weight",
             "vgg_to_language_mlp.0.weight", "vgg_to_language_mlp.0.bias", "vgg_to_language_mlp.2.weight",
             "vgg_to_language_mlp.2.bias"},
    "cross_attn": {"ln_visual.weight", "ln_spatial.weight", "ln_ffn.weight", "ffn.0.weight", "ffn.0.bias",
                   "ffn.2.weight", "ffn.2.bias"} | {f"{n}_proj.{w}" for n in ("spatial", "q", "k", "v", "o")
                                                    for w in ("weight", "bias")},
}
KEYS["sequence_cat"] = KEYS["add"]
KEYS["channel_cat"] = KEYS["add"] | {"proj.weight", "proj.bias"}


@pytest.mark.parametrize("type_", TYPES)
def test_state_dict_round_trip_through_safetensors(type_, tmp_path):
    config = tiny(type_)
    saved = built(config, seed=1)
    assert set(saved.state_dict()) == KEYS[type_]
    save_file(saved.state_dict(), str(tmp_path / "connector.safetensors"))
    loaded = built(config, seed=2)
    loaded.load_state_dict(load_file(str(tmp_path / "connector.safetensors")))
    visual, spatial = inputs()
    assert not torch.equal(built(config, seed=2)(visual, spatial), saved(visual, spatial))
    assert torch.equal(loaded(visual, spatial), saved(visual, spatial))


def test_add_weights_load_into_the_3d_path_of_the_cat_connectors():
    add = built(tiny("add")).state_dict()
    build_connector(tiny("sequence_cat")).double().load_state_dict(add)
    report = build_connector(tiny("channel_cat")).double().load_state_dict(add, strict=False)
    assert sorted(report.missing_keys) == ["proj.bias", "proj.weight"] and not report.unexpected_keys
