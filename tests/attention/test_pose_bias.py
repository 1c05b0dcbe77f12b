"""Geodesic ALiBi bias (positions.md §4, §5.15)."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from camera_attention_cases import batch_w2c, camera_index, pad_affine, qkv, random_se3

from posevlm.attention import (
    CameraDims,
    alibi_slopes,
    attention_cameras,
    bias_dims_width,
    biased_sdpa,
    build_camera_transform,
    camera_sdpa,
    pose_bias_key_dims,
    pose_bias_query_dims,
    pose_distance_bias,
    pose_distance_score_mod,
    pose_distance_table,
)
from posevlm.attention.reference import reference_camera_attention
from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import geodesic_angle, w2c_to_c2w

B, C, L, H, D = 2, 4, 10, 4, 16
F64 = dict(atol=1e-10, rtol=0)


def test_table_is_symmetric_zero_diagonal_and_matches_formula():
    w2c = batch_w2c(20, B, C)
    table = pose_distance_table(w2c, lam=0.7)
    assert table.shape == (B, C, C) and table.dtype == torch.float64
    assert torch.equal(table, table.transpose(-1, -2))
    assert torch.equal(torch.diagonal(table, dim1=-2, dim2=-1), torch.zeros(B, C, dtype=torch.float64))
    centers = w2c_to_c2w(w2c)[..., :3, 3]
    scale = (centers - centers[:, :1]).norm(dim=-1).amax(-1)  # max distance to the first camera
    i, j = 1, 3
    theta = geodesic_angle(w2c[:, i, :3, :3], w2c[:, j, :3, :3])
    dist = (centers[:, i] - centers[:, j]).norm(dim=-1) / scale
    torch.testing.assert_close(table[:, i, j], torch.sqrt(theta**2 + (0.7 * dist) ** 2), **F64)


def test_table_is_se3_invariant_and_scale_normalised():
    w2c = batch_w2c(21, B, C)
    table = pose_distance_table(w2c)
    torch.testing.assert_close(pose_distance_table(w2c @ w2c_to_c2w(random_se3(21))), table, **F64)
    scaled = w2c.clone()
    scaled[..., :3, 3] *= 3.0
    torch.testing.assert_close(pose_distance_table(scaled), table, **F64)
    assert (pose_distance_table(scaled, translation_norm="none") - pose_distance_table(w2c, translation_norm="none")
            ).abs().max() > 1e-3


def test_static_trajectory_has_no_nan():
    w2c = batch_w2c(22, 1, 1).expand(1, C, 4, 4)
    table = pose_distance_table(w2c)
    assert torch.isfinite(table).all()
    torch.testing.assert_close(table, torch.zeros_like(table), atol=1e-12, rtol=0)  # angle rounding of R^T R


def test_bias_zero_slopes_text_pairs_and_gather():
    table = pose_distance_table(batch_w2c(23, B, C))
    ci = camera_index(23, B, L, C)
    assert torch.equal(pose_distance_bias(table, ci, ci, torch.zeros(H, dtype=torch.float64)),
                       torch.zeros(B, H, L, L, dtype=torch.float64))
    slopes = alibi_slopes(H)
    bias = pose_distance_bias(table, ci, ci, slopes)
    assert bias.shape == (B, H, L, L)
    torch.testing.assert_close(bias, bias.transpose(-1, -2), **F64)
    text = ci < 0
    assert torch.equal(bias[:, :, text[0]][0], torch.zeros_like(bias[:, :, text[0]][0]))
    assert (bias.masked_select((text[:, None, :, None] | text[:, None, None, :]).expand_as(bias)) == 0).all()
    same = ci[:, :, None] == ci[:, None, :]
    assert (bias.masked_select(same[:, None].expand_as(bias)) == 0).all()
    b, i, j = 1, *[int(x) for x in torch.nonzero((ci[1, :, None] >= 0) & (ci[1, None, :] >= 0)
                                                  & (ci[1, :, None] != ci[1, None, :]))[0]]
    assert bias[b, 2, i, j] == -slopes[2].double() * table[b, ci[b, i], ci[b, j]]


def test_bias_zero_slopes_reproduce_plain_attention():
    table = pose_distance_table(batch_w2c(24, B, C))
    ci = camera_index(24, B, L, C)
    q, k, v = qkv(24, B, H, L, D)
    bias = pose_distance_bias(table, ci, ci, torch.zeros(H, dtype=torch.float64))
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                               F.scaled_dot_product_attention(q, k, v), **F64)


def test_float_mask_through_camera_sdpa_matches_oracle():
    w2c = batch_w2c(25, B, C)
    cams = attention_cameras(w2c, mode="gta")
    ci = camera_index(25, B, L, C)
    dims = CameraDims.from_range(0, 8)
    q, k, v = qkv(25, B, H, L, D)
    bias = pose_distance_bias(pose_distance_table(w2c), ci, ci, alibi_slopes(H))
    causal = torch.zeros(L, L, dtype=torch.float64).masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), -torch.inf)
    mask = bias + causal
    out = camera_sdpa(q, k, v, build_camera_transform(cams, ci, dims, "gta"), attn_mask=mask)
    oracle = reference_camera_attention(q, k, v, cams, ci, dims.index, "gta", attn_mask=bias, is_causal=True)
    torch.testing.assert_close(out, oracle, **F64)


def test_alibi_slopes():
    assert torch.equal(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    s12 = alibi_slopes(12)
    assert s12.shape == (12,) and (s12 > 0).all() and torch.equal(s12[:8], alibi_slopes(8))
    with pytest.raises(ConfigError):
        alibi_slopes(0)


def test_validation():
    table = pose_distance_table(batch_w2c(26, B, C))
    ci = camera_index(26, B, L, C)
    with pytest.raises(ShapeError):
        pose_distance_bias(table[0], ci, ci, alibi_slopes(H))
    with pytest.raises(ShapeError):
        pose_distance_bias(table, ci.int(), ci, alibi_slopes(H))
    with pytest.raises(ConfigError):
        pose_distance_table(batch_w2c(26, B, C), translation_norm="diameter")


def test_flex_score_mod_matches_dense_bias():
    flex = pytest.importorskip("torch.nn.attention.flex_attention", reason="flex_attention not in this torch")
    w2c = batch_w2c(27, B, C).float()
    table = pose_distance_table(w2c)
    ci_q, ci_k = camera_index(27, B, 8, C), camera_index(28, B, 16, C)
    slopes = alibi_slopes(H)
    g = torch.Generator().manual_seed(27)
    q = torch.randn(B, H, 8, D, generator=g)
    k, v = torch.randn(B, H, 16, D, generator=g), torch.randn(B, H, 16, D, generator=g)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=pose_distance_bias(table, ci_q, ci_k, slopes))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = flex.flex_attention(q, k, v, score_mod=pose_distance_score_mod(table, ci_q, ci_k, slopes))
    except Exception as exc:  # pragma: no cover - depends on the torch build
        pytest.skip(f"flex_attention does not run on CPU in this torch: {type(exc).__name__}: {exc}")
    torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- factored bias = dense reference
def block_diag_tables(seed, b, sizes):
    """(b, C, C) per-row tables of several videos (0 across videos), C = sum(sizes): as the model builds them."""
    return torch.stack([torch.block_diag(*[pose_distance_table(batch_w2c(seed + 13 * r + i, 1, n))[0]
                                           for i, n in enumerate(sizes)]) for r in range(b)])


def causal_mask(lq, lk, dtype=torch.float64):
    keep = torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
    return torch.zeros(lq, lk, dtype=dtype).masked_fill(~keep, -torch.inf)


def test_factored_dims_multiply_to_the_dense_bias():
    """scale * q_dims @ k_dims^T is pose_distance_bias: slope_h * -D within a video, 0 across videos and text."""
    table = block_diag_tables(30, B, (3, 2))
    ci_q, ci_k = camera_index(30, B, 7, 5), camera_index(31, B, 11, 5)
    slopes = alibi_slopes(H).double()
    width = bias_dims_width(5)
    assert width == 8 and bias_dims_width(8) == 8 and bias_dims_width(9) == 16
    q_dims = pose_bias_query_dims(ci_q, slopes, width)
    k_dims = pose_bias_key_dims(table, ci_k, width, scale=0.125)
    assert q_dims.shape == (B, H, 7, 8) and k_dims.shape == (B, 1, 11, 8)
    torch.testing.assert_close(0.125 * q_dims @ k_dims.transpose(-1, -2), pose_distance_bias(table, ci_q, ci_k, slopes),
                               **F64)
    assert (q_dims[..., 5:] == 0).all() and (k_dims[..., 5:] == 0).all()


@pytest.mark.parametrize("h_kv", [4, 2, 1])
@pytest.mark.parametrize("mask", ["causal", "padding_bool", "padding_float", "none"])
def test_factored_bias_equals_the_dense_mask_forward_and_gradients(h_kv, mask):
    """biased_sdpa (bias as extra q/k dims, the stock mask or is_causal) = SDPA with the dense float bias added to
    the mask: outputs and gradients w.r.t. q, k, v, the slopes and the table, float64 (GQA, several videos per
    row, text tokens, left padding)."""
    length, sizes = 13, (3, 2)
    table = block_diag_tables(32, B, sizes).requires_grad_(True)
    ci = camera_index(32, B, length, sum(sizes))
    q, k, v = (t.requires_grad_(True) for t in qkv(32, B, H, length, D, h_kv=h_kv))
    slopes = (alibi_slopes(H).double() * 3).requires_grad_(True)
    pad = torch.ones(B, length, dtype=torch.bool)
    pad[1, :4] = False  # row 1 left-padded by 4 tokens
    keep = torch.ones(length, length, dtype=torch.bool).tril() & pad[:, None, None, :]
    keep = keep | torch.eye(length, dtype=torch.bool)  # padded query rows keep themselves (no all -inf rows)
    kw = {"causal": dict(is_causal=True), "none": {},
          "padding_bool": dict(attn_mask=keep),
          "padding_float": dict(attn_mask=torch.zeros(B, 1, length, length, dtype=torch.float64)
                                .masked_fill(~keep, -torch.inf))}[mask]
    grads = []
    for impl in ("dense", "factored"):
        if impl == "factored":
            out = biased_sdpa(q, k, v, table, ci, ci, slopes, enable_gqa=True, **kw)
        else:
            dense = pose_distance_bias(table, ci, ci, slopes)
            base = kw.get("attn_mask")
            if kw.get("is_causal"):
                base = causal_mask(length, length)
            if base is not None and base.dtype == torch.bool:
                base = torch.zeros(base.shape, dtype=torch.float64).masked_fill(~base, -torch.inf)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=dense if base is None else dense + base,
                                                 enable_gqa=True)
        (out * torch.linspace(-1, 1, D, dtype=torch.float64)).sum().backward()
        grads.append((out.detach(), *(t.grad.clone() for t in (q, k, v, slopes, table))))
        for t in (q, k, v, slopes, table):
            t.grad = None
    for dense_value, factored_value in zip(*grads):
        torch.testing.assert_close(factored_value, dense_value, **F64)
    assert grads[0][4].abs().min() > 0 and grads[0][5].abs().max() > 0  # slopes and table gradients matter


def test_factored_bias_float32_and_rectangular_queries():
    """float32 within 1e-5 of the float64 dense reference; queries that are the last Lq of Lk tokens (a
    continuation) use the bottom-right causal alignment of the dense mask."""
    table = block_diag_tables(33, B, (4,))
    ci_k = camera_index(33, B, 16, 4)
    ci_q = ci_k[:, -6:]
    q, k, v = qkv(33, B, H, 16, D, h_kv=2)
    q = q[:, :, -6:]
    slopes = alibi_slopes(H)
    ref = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, attn_mask=pose_distance_bias(
        table, ci_q, ci_k, slopes.double()) + causal_mask(6, 16))
    keep = torch.ones(6, 16, dtype=torch.bool).tril(10)
    out = biased_sdpa(q.float(), k.float(), v.float(), table.float(), ci_q, ci_k, slopes, attn_mask=keep,
                      enable_gqa=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm,reference", [("max", "first"), ("median", "medoid"), ("none", 1)])
def test_table_gradcheck_float64(norm, reference):
    """float64 gradcheck of the table w.r.t. every w2c entry: the zero diagonal (D = 0, where sqrt'(0) = inf gave
    NaN) and the blocked angle products (in-place ops raised under autograd) included."""
    top = batch_w2c(34, 1, 4)[..., :3, :].clone().requires_grad_(True)
    fn = lambda t: pose_distance_table(pad_affine(t), lam=0.6, translation_norm=norm, reference=reference)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (top,), eps=1e-6, atol=1e-6)
