"""CoordinateInjection, ViewpointAlignment, CrossAttentionFusion: gates, exact identities, shapes, encodings."""

from __future__ import annotations

import math

import pytest
import torch

from posevlm.errors import ShapeError
from posevlm.memory import CoordinateInjection, CrossAttentionFusion, ViewpointAlignment, sinusoidal_encoding


def injection(gate="sigmoid", zero_init=False) -> CoordinateInjection:
    torch.manual_seed(0)
    return CoordinateInjection(16, num_frequencies=4, gate=gate, zero_init=zero_init)


def test_sinusoidal_encoding_layout_and_periods():
    coords = torch.tensor([[0.25, -1.0, 2.0]])
    enc = sinusoidal_encoding(coords, 3, 1.0, 4.0)  # periods 1, 2, 4
    assert enc.shape == (1, 18)
    periods = torch.tensor([1.0, 2.0, 4.0])
    for axis in range(3):
        angles = 2 * math.pi * coords[0, axis] / periods
        torch.testing.assert_close(enc[0, axis * 6: axis * 6 + 3], angles.sin())
        torch.testing.assert_close(enc[0, axis * 6 + 3: axis * 6 + 6], angles.cos())


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_gate_in_unit_interval_and_zero_on_invalid_tokens(gate):
    module = injection(gate)
    with torch.no_grad():
        module.gate_proj.weight.mul_(300)  # large logits: the gate saturates, still within [0, 1]
    tokens, coords = torch.randn(3, 7, 16), torch.randn(3, 7, 3)
    valid = torch.rand(3, 7) > 0.4
    valid[2] = False  # a step without a single valid point
    out, alpha = module(tokens, coords, valid)
    assert bool(((alpha >= 0) & (alpha <= 1)).all())
    assert torch.equal(alpha[~valid], torch.zeros_like(alpha[~valid]))
    assert torch.equal(out[~valid], tokens[~valid])  # tokens without a point are returned exactly
    assert not torch.allclose(out[valid], tokens[valid])
    if gate == "softmax":
        torch.testing.assert_close(alpha[:2].sum(-1), torch.ones(2))


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_zero_gate_gives_the_uninjected_tokens_exactly(gate):
    module = injection(gate)
    tokens, coords = torch.randn(2, 5, 16), 10 * torch.randn(2, 5, 3)
    with torch.no_grad():
        module.gate_proj.bias.fill_(-1e4)  # sigmoid(-1e4) == 0.0 in float32
    if gate == "softmax":  # softmax over tokens is never 0 everywhere; no valid token makes it 0
        out, alpha = module(tokens, coords, torch.zeros(2, 5, dtype=torch.bool))
    else:
        out, alpha = module(tokens, coords)
    assert torch.equal(alpha, torch.zeros_like(alpha))
    assert torch.equal(out, tokens)
    assert module.encode(coords).abs().max() > 0  # the coordinate term itself is not zero


def test_fresh_injection_is_the_identity_and_bf16_tokens_round_trip():
    module = injection(zero_init=True)
    tokens = torch.randn(2, 5, 16).to(torch.bfloat16)
    out, _ = module(tokens, torch.randn(2, 5, 3))
    assert out.dtype == torch.bfloat16 and torch.equal(out, tokens)


def test_alignment_appends_one_pooled_view_token():
    torch.manual_seed(0)
    module = ViewpointAlignment(16, 9, normalise_view=False, zero_init=False)
    geometry, view = torch.randn(4, 6, 16), torch.randn(4, 2, 9)
    keys = module(geometry, view)
    assert keys.shape == (4, 7, 16)
    pooled = module.view_proj(view).mean(1)
    torch.testing.assert_close(keys[:, -1], pooled)
    # the view changes every aligned token; a different view of the same geometry gives different keys
    other = module(geometry, view.flip(0))
    assert not torch.allclose(other[:, :-1], keys[:, :-1])
    fresh = ViewpointAlignment(16, 9, zero_init=True)
    assert torch.equal(fresh(geometry, view)[:, :-1], geometry)
    with pytest.raises(ShapeError, match="leading dims"):
        module(geometry, view[:3])


def test_fusion_is_residual_and_per_step():
    torch.manual_seed(0)
    module = CrossAttentionFusion(16, 32, 4, mlp_ratio=2, zero_init=False)
    tokens, keys = torch.randn(3, 5, 16), torch.randn(3, 6, 16)
    out = module(tokens, keys)
    assert out.shape == (3, 5, 16)
    # each step attends to its own keys only
    changed = keys.clone()
    changed[1] += 1
    out2 = module(tokens, changed)
    assert torch.equal(out2[0], out[0]) and torch.equal(out2[2], out[2]) and not torch.allclose(out2[1], out[1])
    fresh = CrossAttentionFusion(16, 32, 4, mlp_ratio=2)
    assert torch.equal(fresh(tokens, keys), tokens)
    assert fresh.geometry_tokens(torch.randn(3, 5, 32)).shape == (3, 5, 16)
