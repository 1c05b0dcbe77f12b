"""MixedRoPE3D on stock Qwen2 / Qwen2.5 / Qwen3 decoders (tiny random configs): every trap of the design note
(mixed-rope3d.md) is a test here, plus text = stock exactly, cached decode = full forward, padding on both sides,
GQA 2 and 7, gradients and the save / load round trip."""

import copy
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

from posevlm.attention.masks import causal_padding_mask  # noqa: E402
from posevlm.errors import ConfigError, ShapeError  # noqa: E402
from posevlm.models.mixed_rope3d import (  # noqa: E402
    CONFIG_KEY,
    enable_mixed_rope3d,
    load_mixed_rope3d_model,
    point_positions,
)

POINT = 5  # the point token id of these tiny vocabularies
FAMILIES = ["qwen2", "qwen2_5", "qwen3"]


def _decoder(family="qwen2", heads=4, kv=2, impl="sdpa", seed=0, **extra):
    """Tiny random decoders; ``qwen2_5`` is shaped like Qwen2.5-0.5B / SpatialLM1.1 (14 : 2 heads, tied embeddings)."""
    torch.manual_seed(seed)
    common = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, head_dim=16,
                  max_position_embeddings=512, attn_implementation=impl, pad_token_id=0)
    if family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(num_attention_heads=heads, num_key_value_heads=kv, **common, **extra))
    elif family == "qwen2_5":
        model = Qwen2ForCausalLM(Qwen2Config(num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                                             **common, **extra))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(num_attention_heads=heads, num_key_value_heads=kv, **common, **extra))
    return model.eval()


def _point_model(family="qwen2", heads=4, kv=2, impl="sdpa", spec=None, seed=0):
    model = enable_mixed_rope3d(_decoder(family, heads, kv, impl, seed),
                                spec or {"preset": "mixed_rope3d", "init_noise": 0.2}, point_token_id=POINT)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # trained-looking parameters: away from the initial layout, query and kv sets apart
        for p in model.model.mixed_rope3d.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _batch(counts=(6, 3), length=14, left=True, seed=0):
    """Rows with ``counts[b]`` point tokens after 2 text tokens; row b is padded by its shortfall."""
    g = torch.Generator().manual_seed(seed)
    b = len(counts)
    ids = torch.randint(10, 90, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    coords = []
    for row, n in enumerate(counts):
        pad = max(counts) - n
        start = pad if left else 0
        ids[row, start + 2: start + 2 + n] = POINT
        if pad:
            cols = slice(0, pad) if left else slice(length - pad, length)
            ids[row, cols], mask[row, cols] = 0, 0
        coords.append(torch.randn(n, 3, generator=g) * 3)
    return ids, mask, coords


def _row(ids, mask, b):
    keep = mask[b].bool()
    return ids[b: b + 1, keep], mask[b: b + 1, keep]


# -- trap 5: the mask is ours, checked against the installed transformers -----------------------------------------
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("padding", ["none", "left", "right"])
@pytest.mark.parametrize("past", [0, 5])
def test_owned_mask_equals_transformers_create_causal_mask(impl, padding, past):
    from transformers.masking_utils import create_causal_mask

    model = _decoder(impl=impl)
    q_len = 1 if past else 7
    mask = torch.ones(2, past + q_len, dtype=torch.long)
    if padding == "left":
        mask[1, :3] = 0
    elif padding == "right" and not past:
        mask[1, -2:] = 0
    cache = DynamicCache(config=model.config)
    for layer in range(model.config.num_hidden_layers):
        if past:
            cache.update(torch.randn(2, 2, past, 16), torch.randn(2, 2, past, 16), layer)
    embeds = torch.zeros(2, q_len, 64)
    ref = create_causal_mask(config=model.config, inputs_embeds=embeds, attention_mask=mask, past_key_values=cache,
                             position_ids=point_positions(mask, batch_size=2, length=q_len, past_len=past,
                                                          device=torch.device("cpu")))
    ours = causal_padding_mask(mask, batch_size=2, q_len=q_len, past_len=past, impl=impl, dtype=embeds.dtype)
    if ref is None:
        assert ours is None
    else:
        assert ours is not None and ours.dtype == ref.dtype and torch.equal(ours, ref)


# -- text-only input is the stock model ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_text_only_input_reduces_exactly_to_the_stock_model(family, impl):
    stock = _decoder(family, impl=impl)
    model = _point_model(family, impl=impl)
    model.load_state_dict(stock.state_dict(), strict=False)
    ids = torch.randint(10, 90, (2, 11))
    with torch.no_grad():
        assert torch.equal(stock(ids).logits, model(ids).logits)
        mask = torch.ones_like(ids)
        mask[1, :4] = 0
        pos = point_positions(mask, batch_size=2, length=11, past_len=0, device=torch.device("cpu"))
        assert torch.equal(stock(ids, attention_mask=mask, position_ids=pos).logits,
                           model(ids, attention_mask=mask, position_ids=pos).logits)
    ref = stock.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False), ref)


def test_an_unenabled_config_leaves_the_model_stock():
    model = _decoder()
    forward = model.model.forward
    assert enable_mixed_rope3d(model) is model and model.model.forward == forward
    assert not hasattr(model.model, "mixed_rope3d")


# -- trap 2 (prefill vs decode) and trap 3 (GQA): prefill + cached decode = full forward ----------------------------
@pytest.mark.parametrize("family,heads,kv", [("qwen2", 4, 2), ("qwen2", 14, 2), ("qwen3", 4, 2), ("qwen3", 14, 2),
                                             ("qwen2_5", 14, 2)])
def test_prefill_plus_cached_decode_equals_a_full_forward(family, heads, kv):
    model = _point_model(family, heads, kv)
    ids, mask, coords = _batch((6, 3))
    out = model.generate(ids, attention_mask=mask, point_coords=coords, max_new_tokens=6, do_sample=False,
                         output_logits=True, return_dict_in_generate=True)
    full_mask = torch.cat([mask, torch.ones(2, 6, dtype=torch.long)], 1)
    with torch.no_grad():
        full = model(out.sequences, attention_mask=full_mask, point_coords=coords).logits
    steps = torch.stack(out.logits, 1)
    torch.testing.assert_close(steps, full[:, ids.shape[1] - 1: -1], rtol=1e-4, atol=1e-4)


def test_decode_steps_ignore_point_inputs():
    """generate passes point_coords on every step; a decode step is text and must get the plain 1D rotary."""
    model = _point_model()
    ids, mask, coords = _batch((4, 4), left=False)
    with torch.no_grad():
        prefill = model(ids, attention_mask=mask, point_coords=coords, use_cache=True)
        step_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
        nxt = torch.full((2, 1), POINT)  # even a generated <|point_pad|> id is text here
        with_points = model(nxt, attention_mask=step_mask, past_key_values=copy.deepcopy(prefill.past_key_values),
                            point_coords=coords).logits
        without = model(nxt, attention_mask=step_mask, past_key_values=copy.deepcopy(prefill.past_key_values)).logits
    assert torch.equal(with_points, without)


def test_point_coordinates_change_the_tokens_after_the_points_only():
    model = _point_model()
    ids, mask, coords = _batch((5,), length=12)
    with torch.no_grad():
        a = model(ids, attention_mask=mask, point_coords=coords).logits
        b = model(ids, attention_mask=mask, point_coords=[coords[0] + torch.randn(5, 3)]).logits
    assert torch.equal(a[:, :2], b[:, :2])  # causal: text before the points does not see them
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-4


def test_tables_are_built_once_per_forward_and_shared_by_every_layer():
    model = _point_model()
    rope = model.model.mixed_rope3d
    calls, seen = [], []
    build = rope.tables
    rope.tables = lambda *a, **kw: calls.append(1) or build(*a, **kw)
    for layer in model.model.layers:
        forward = layer.self_attn.forward
        layer.self_attn.forward = (lambda f: lambda *a, **kw: seen.append(kw.get("posevlm_rope3d")) or f(*a, **kw))(
            forward)
    ids, mask, coords = _batch((6, 3))
    with torch.no_grad():
        model(ids, attention_mask=mask, point_coords=coords)
    assert len(calls) == 1 and len(seen) == len(model.model.layers) == 2
    assert seen[0] is not None and all(t is seen[0] for t in seen)


# -- trap 6: batches, padding sides, coordinate shapes -------------------------------------------------------------
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_each_row_of_a_padded_batch_equals_the_row_alone(left, impl):
    model = _point_model(impl=impl)
    ids, mask, coords = _batch((7, 2, 4), left=left)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, point_coords=coords).logits
        for b in range(3):
            row_ids, row_mask = _row(ids, mask, b)
            alone = model(row_ids, attention_mask=row_mask, point_coords=[coords[b]]).logits
            torch.testing.assert_close(batched[b][mask[b].bool()], alone[0], rtol=1e-5, atol=1e-5)


def test_coordinates_as_flat_padded_or_list_give_the_same_output():
    model = _point_model()
    ids, mask, coords = _batch((6, 3))
    padded = torch.zeros(2, 6, 3)
    padded[0], padded[1, :3] = coords[0], coords[1]
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, point_coords=coords).logits
        assert torch.equal(model(ids, attention_mask=mask, point_coords=torch.cat(coords)).logits, ref)
        assert torch.equal(model(ids, attention_mask=mask, point_coords=padded).logits, ref)
        mask_only = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask, point_coords=coords,
                          point_mask=ids == POINT).logits
    torch.testing.assert_close(mask_only, ref, rtol=0, atol=0)
    with pytest.raises(ShapeError, match=r"rows have \[3, 6\] coordinates"):
        model(ids, attention_mask=mask, point_coords=coords[::-1])
    single = _batch((4,))
    with torch.no_grad():  # B = 1 with (N, 3) and (1, N, 3)
        assert torch.equal(model(single[0], point_coords=single[2][0]).logits,
                           model(single[0], point_coords=single[2][0][None]).logits)


# -- trap 4: one coordinate per token --------------------------------------------------------------------------------
def test_raw_cloud_coordinates_are_refused_with_the_fix():
    model = _point_model()
    ids, mask, _ = _batch((6, 3))
    with pytest.raises(ShapeError, match="not the raw cloud"):
        model(ids, attention_mask=mask, point_coords=torch.randn(1000, 3))
    with pytest.raises(ShapeError, match="no point_coords"):
        model(ids, attention_mask=mask)
    with pytest.raises(ShapeError, match="pass point_mask"):
        model(inputs_embeds=torch.zeros(2, 14, 64), point_coords=torch.randn(9, 3))


# -- trap 1: the mask counts every cached token ----------------------------------------------------------------------
def test_a_mask_shorter_than_the_cache_is_an_error_not_a_silent_misalignment():
    """SpatialLM's generate grew the text-length mask (232) while the cache held 786 entries."""
    model = _point_model()
    ids, mask, coords = _batch((6, 6), left=False)
    with torch.no_grad():
        prefill = model(ids, attention_mask=mask, point_coords=coords, use_cache=True)
        text_mask = torch.ones(2, ids.shape[1] - 6 + 1 + 1, dtype=torch.long)  # counted in text tokens
        with pytest.raises(ShapeError, match="must count every token in the KV cache"):
            model(torch.tensor([[11], [12]]), attention_mask=text_mask, past_key_values=prefill.past_key_values)
    with pytest.raises(ShapeError, match="2-D padding mask"):
        model(ids, attention_mask=torch.ones(2, 1, 14, 14), point_coords=coords)


def test_chunked_prefill_of_point_tokens_is_refused():
    model = _point_model()
    ids, mask, coords = _batch((6, 6), left=False)
    with torch.no_grad():
        first = model(ids[:, :4], point_coords=[c[:2] for c in coords], use_cache=True)
        with pytest.raises(ShapeError, match="chunked prefill"):
            model(ids[:, 4:], past_key_values=first.past_key_values, point_coords=coords)


# -- parameters: gradients, save / load --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_learned_parameters_get_gradients_through_the_decoder(family):
    model = _point_model(family).train()
    ids, mask, coords = _batch((6, 3))
    out = model(ids, attention_mask=mask, point_coords=coords, labels=ids.masked_fill(mask == 0, -100))
    out.loss.backward()
    grads = {n: p.grad for n, p in model.model.mixed_rope3d.named_parameters()}
    assert set(grads) == {"frequencies_q", "frequencies_k", "mixing_q", "mixing_k"}
    assert all(g is not None and torch.isfinite(g).all() and g.abs().max() > 0 for g in grads.values())


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_learned_parameters_and_spec_round_trip_through_a_checkpoint(family, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _point_model(family, spec={"preset": "mixed_rope3d", "resolution": 12.0, "init_noise": 0.1})
    model.save_pretrained(tmp_path / "ckpt")
    stored = json.loads((tmp_path / "ckpt" / "config.json").read_text())[CONFIG_KEY]
    assert stored["point_token_id"] == POINT and stored["rope3d"]["resolution"] == 12.0
    loaded = load_mixed_rope3d_model(tmp_path / "ckpt").eval()
    for name, p in model.model.mixed_rope3d.named_parameters():
        assert torch.equal(p, dict(loaded.model.mixed_rope3d.named_parameters())[name])
    ids, mask, coords = _batch((6, 3))
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask, point_coords=coords).logits,
                           loaded(ids, attention_mask=mask, point_coords=coords).logits)
    weights = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if "mixed_rope3d.mixing_q" not in k},
              str(tmp_path / "ckpt" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"incomplete"):
        load_mixed_rope3d_model(tmp_path / "ckpt")


# -- what is refused -----------------------------------------------------------------------------------------------
def test_unsupported_decoders_are_refused_with_the_reason():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ConfigError, match="Qwen2 / Qwen2.5 / Qwen3 text decoder"):
        enable_mixed_rope3d(llama, "mixed_rope3d")
    sliding = _decoder("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)
    with pytest.raises(ConfigError, match="sliding-window"):
        enable_mixed_rope3d(sliding, "mixed_rope3d")
    flex = _decoder("qwen3")
    flex.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="attn_implementation"):
        enable_mixed_rope3d(flex, "mixed_rope3d")
    with pytest.raises(ConfigError, match="spatial_ratio"):
        enable_mixed_rope3d(_decoder(), {"split": "ratio", "spatial_ratio": 0.3})
