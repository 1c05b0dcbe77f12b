"""CameraTransform / camera_sdpa: invariances, inverse consistency, oracle parity, GQA, decode (positions.md §5)."""

import pytest
import torch
import torch.nn.functional as F
from camera_attention_cases import HW, batch_K, batch_w2c, camera_index, pad_affine, qkv, random_se3

import posevlm.attention.transform as transform_module
from posevlm.attention import (
    CameraDims,
    alibi_slopes,
    attention_cameras,
    biased_sdpa,
    build_camera_transform,
    camera_sdpa,
    naive_camera_sdpa,
    pose_distance_bias,
    pose_distance_table,
    rope2d,
)
from posevlm.attention.reference import reference_camera_attention, reference_logits
from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import w2c_to_c2w

MODES = ["prope", "gta", "cape"]
B, C, L, H, D = 2, 3, 12, 4, 32
CONTIG = CameraDims.from_range(8, 24)
SCATTERED = CameraDims((3, 17, 30, 0, 9, 12, 25, 6))  # gather path
QUADS = CameraDims(tuple(range(20, 24)) + tuple(range(4, 8)) + tuple(range(8, 12)) + tuple(range(28, 32)))  # runs
F64 = dict(atol=1e-10, rtol=0)


def cams_for(mode, w2c, K=None, **kw):
    return attention_cameras(w2c, K if mode == "prope" else None, HW if mode == "prope" else None, mode=mode, **kw)


def run(mode, w2c, K=None, *, ci=None, dims=CONTIG, seed=0, dtype=torch.float64, **sdpa_kw):
    cams = cams_for(mode, w2c, K)
    ci = camera_index(seed, B, L, C) if ci is None else ci
    tf = build_camera_transform(cams, ci, dims, mode)
    q, k, v = qkv(seed, B, H, L, D, dtype)
    return camera_sdpa(q, k, v, tf, **sdpa_kw)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_cameras_are_exactly_plain_sdpa(mode, dtype):
    w2c = torch.eye(4, dtype=torch.float64).expand(B, C, 4, 4)
    cams = attention_cameras(w2c, mode=mode)
    tf = build_camera_transform(cams, camera_index(0, B, L, C), CONTIG, mode)
    q, k, v = qkv(0, B, H, L, D, dtype)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(camera_sdpa(q, k, v, tf, is_causal=True), expected)
    step = tf.tokens(slice(L - 1, L))  # decode path (full D x D matrices) is exact too
    assert torch.equal(step.apply_q(q[:, :, -1:]), q[:, :, -1:])
    assert torch.equal(step.apply_o(v[:, :, -1:]), v[:, :, -1:])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [CONTIG, SCATTERED, QUADS], ids=["contiguous", "scattered", "quads"])
@pytest.mark.parametrize("path", ["einsum", "matmul", "full"])
def test_fast_path_naive_and_oracle_agree_float64(mode, dims, path, monkeypatch):
    """All three product paths: einsum (prefill), broadcast matmul + gather (small), full D x D (decode)."""
    monkeypatch.setattr(transform_module, "_SMALL_ROWS", 0 if path == "einsum" else 10**9)
    monkeypatch.setattr(transform_module, "_FULL_MATRIX_TOKENS", 10**9 if path == "full" else 0)
    w2c, K = batch_w2c(1, B, C), batch_K(1, B, C)
    cams = cams_for(mode, w2c, K)
    ci = camera_index(1, B, L, C)
    tf = build_camera_transform(cams, ci, dims, mode)
    q, k, v = qkv(1, B, H, L, D)
    fast = camera_sdpa(q, k, v, tf, is_causal=True)
    naive = naive_camera_sdpa(q, k, v, tf, is_causal=True)
    oracle = reference_camera_attention(q, k, v, cams, ci, dims.index, mode, is_causal=True)
    torch.testing.assert_close(fast, oracle, **F64)
    torch.testing.assert_close(naive, oracle, **F64)


@pytest.mark.parametrize("mode", MODES)
def test_float32_matches_oracle(mode):
    w2c, K = batch_w2c(2, B, C), batch_K(2, B, C)
    cams = cams_for(mode, w2c.float(), K.float())
    assert cams.dtype == torch.float32
    ci = camera_index(2, B, L, C)
    tf = build_camera_transform(cams, ci, SCATTERED, mode)
    q, k, v = qkv(2, B, H, L, D, torch.float32)
    out = camera_sdpa(q, k, v, tf, is_causal=True)
    assert out.dtype == torch.float32
    oracle = reference_camera_attention(q, k, v, cams, ci, SCATTERED.index, mode, is_causal=True)
    torch.testing.assert_close(out.double(), oracle, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_global_rigid_transform_leaves_outputs_unchanged(mode):
    w2c, K = batch_w2c(3, B, C), batch_K(3, B, C)
    g_inv = w2c_to_c2w(random_se3(3))
    out = run(mode, w2c, K, seed=3, is_causal=True)
    moved = run(mode, w2c @ g_inv, K, seed=3, is_causal=True)  # text tokens (-1) included
    torch.testing.assert_close(moved, out, **F64)


@pytest.mark.parametrize("mode", MODES)
def test_global_scale_only_matters_without_translation_norm(mode):
    w2c = batch_w2c(4, B, C)
    scaled = w2c.clone()
    scaled[..., :3, 3] *= 2.5
    ci = camera_index(4, B, L, C)
    q, k, v = qkv(4, B, H, L, D)

    def out(x, norm):
        cams = attention_cameras(x, mode=mode, translation_norm=norm)
        return camera_sdpa(q, k, v, build_camera_transform(cams, ci, CONTIG, mode))

    torch.testing.assert_close(out(scaled, "max"), out(w2c, "max"), **F64)
    torch.testing.assert_close(out(scaled, "median"), out(w2c, "median"), **F64)
    assert (out(scaled, "none") - out(w2c, "none")).abs().max() > 1e-3


@pytest.mark.parametrize("mode", MODES)
def test_logits_depend_only_on_relative_camera_products(mode):
    """Replace every P̃ by P̃ A for a random invertible affine A: P̃_i P̃_j^-1 is unchanged, so are the logits."""
    cams = cams_for(mode, batch_w2c(5, B, C), batch_K(5, B, C))
    a = torch.eye(4, dtype=torch.float64)
    a[:3, :] = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    a[:3, :3] += 2 * torch.eye(3, dtype=torch.float64)
    ci = camera_index(5, B, L, C, text=False)
    q, k, v = qkv(5, B, H, L, D)

    def logits(p):
        tf = build_camera_transform(p, ci, SCATTERED, mode)
        return tf.apply_q(q) @ tf.apply_k(k).transpose(-1, -2)

    torch.testing.assert_close(logits(cams @ a), logits(cams), atol=1e-9, rtol=0)
    torch.testing.assert_close(logits(cams), reference_logits(q, k, v, cams, ci, SCATTERED.index, mode) * D**0.5,
                               **F64)
    assert (logits(a @ cams) - logits(cams)).abs().max() > 1e-3  # left-multiplying is not a frame change


@pytest.mark.parametrize("mode", ["prope", "gta"])
@pytest.mark.parametrize("dims", [CONTIG, SCATTERED, QUADS], ids=["contiguous", "scattered", "quads"])
def test_diagonal_mask_returns_values(mode, dims):
    cams = cams_for(mode, batch_w2c(6, B, C), batch_K(6, B, C))
    tf = build_camera_transform(cams, camera_index(6, B, L, C), dims, mode)
    q, k, v = qkv(6, B, H, L, D)
    out = camera_sdpa(q, k, v, tf, attn_mask=torch.eye(L, dtype=torch.bool))
    torch.testing.assert_close(out, v, **F64)
    torch.testing.assert_close(tf.apply_o(tf.apply_kv(v)), v, **F64)


def test_cape_leaves_values_and_outputs_alone():
    cams = cams_for("cape", batch_w2c(7, B, C))
    tf = build_camera_transform(cams, camera_index(7, B, L, C), CONTIG, "cape")
    _, _, v = qkv(7, B, H, L, D)
    assert tf.mat_o is None and tf.apply_v(v) is v and tf.apply_o(v) is v
    assert not torch.equal(tf.apply_k(v), v)


@pytest.mark.parametrize("mode", MODES)
def test_per_image_and_per_token_cameras_agree(mode):
    w2c, K = batch_w2c(8, B, C), batch_K(8, B, C)
    ci = torch.sort(camera_index(8, B, L, C, text=False), dim=1).values
    ci[:, 0] = 0  # the first token belongs to camera 0, so both re-reference to the same camera
    gather = lambda x: torch.gather(x, 1, ci[..., None, None].expand(B, L, *x.shape[-2:]))  # noqa: E731
    cams_img = cams_for(mode, w2c, K)
    cams_tok = cams_for(mode, gather(w2c), gather(K))  # C = L, one camera per token
    token_ci = torch.arange(L).expand(B, L)
    q, k, v = qkv(8, B, H, L, D)
    out_img = camera_sdpa(q, k, v, build_camera_transform(cams_img, ci, CONTIG, mode), is_causal=True)
    out_tok = camera_sdpa(q, k, v, build_camera_transform(cams_tok, token_ci, CONTIG, mode), is_causal=True)
    torch.testing.assert_close(out_tok, out_img, **F64)


@pytest.mark.parametrize("h_kv", [2, 4])
@pytest.mark.parametrize("mode", MODES)
def test_gqa_matches_repeated_kv_heads(h_kv, mode):
    cams = cams_for(mode, batch_w2c(9, B, C), batch_K(9, B, C))
    ci = camera_index(9, B, L, C)
    tf = build_camera_transform(cams, ci, SCATTERED, mode)
    q, k, v = qkv(9, B, 8, L, D, h_kv=h_kv)
    gqa = camera_sdpa(q, k, v, tf, is_causal=True, enable_gqa=True)
    rep = 8 // h_kv
    repeated = camera_sdpa(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), tf, is_causal=True)
    torch.testing.assert_close(gqa, repeated, **F64)
    torch.testing.assert_close(naive_camera_sdpa(q, k, v, tf, is_causal=True, enable_gqa=True), repeated, **F64)
    oracle = reference_camera_attention(q, k, v, cams, ci, SCATTERED.index, mode, is_causal=True)
    torch.testing.assert_close(gqa, oracle, **F64)


@pytest.mark.parametrize("mode", MODES)
def test_prefill_then_cached_decode_equals_full_forward(mode):
    cams = cams_for(mode, batch_w2c(10, B, C), batch_K(10, B, C))
    ci = camera_index(10, B, L, C)
    tf = build_camera_transform(cams, ci, SCATTERED, mode)
    q, k, v = qkv(10, B, 8, L, D, h_kv=2)
    full = camera_sdpa(q, k, v, tf, is_causal=True, enable_gqa=True)
    n0 = 7
    pre = tf.tokens(slice(0, n0))
    k_cache, v_cache = pre.apply_k(k[:, :, :n0]), pre.apply_v(v[:, :, :n0])  # cache holds transformed K/V
    outs = [camera_sdpa(q[:, :, :n0], k_cache, v_cache, pre, kv_transform=None, is_causal=True, enable_gqa=True)]
    for t in range(n0, L):
        step = tf.tokens(torch.tensor([t]))
        k_cache = torch.cat([k_cache, step.apply_k(k[:, :, t : t + 1])], dim=2)
        v_cache = torch.cat([v_cache, step.apply_v(v[:, :, t : t + 1])], dim=2)
        outs.append(camera_sdpa(q[:, :, t : t + 1], k_cache, v_cache, step, kv_transform=None, enable_gqa=True))
    torch.testing.assert_close(torch.cat(outs, dim=2), full, **F64)


def test_tokens_slice_and_index_agree():
    tf = build_camera_transform(cams_for("prope", batch_w2c(11, B, C)), camera_index(11, B, L, C), CONTIG, "prope")
    a, b = tf.tokens(slice(3, 6)), tf.tokens(torch.arange(3, 6))
    assert a.num_tokens == 3
    assert torch.equal(a.mat_q, b.mat_q) and torch.equal(a.mat_kv, b.mat_kv) and torch.equal(a.mat_o, b.mat_o)


@pytest.mark.parametrize("mode", ["prope", "gta"])
def test_c2w_passed_as_w2c_breaks_rigid_invariance(mode):
    """Convention guard (§5.7): a world change right-multiplies w2c; if c2w is fed as w2c, it left-multiplies."""
    w2c = batch_w2c(12, B, C)
    g = random_se3(12)
    c2w, c2w_moved = w2c_to_c2w(w2c), g @ w2c_to_c2w(w2c)  # the same world change, c2w side
    assert (run(mode, c2w_moved, seed=12) - run(mode, c2w, seed=12)).abs().max() > 1e-3
    torch.testing.assert_close(run(mode, w2c_to_c2w(c2w_moved), seed=12), run(mode, w2c, seed=12), **F64)


def test_camera_dims_constructors_and_validation():
    dims = CameraDims.from_rotary_slots(range(16), 128)
    assert dims.index == tuple(range(16)) + tuple(range(64, 80)) and dims.num_groups == 8
    assert not dims.is_contiguous and CameraDims.from_range(0, 32).is_contiguous
    assert dims.runs == ((0, 16), (64, 80)) and QUADS.runs == ((4, 12), (20, 24), (28, 32)) and SCATTERED.runs is None
    assert CameraDims.from_rotary_slots([0, 1], 8).index == (0, 1, 4, 5)
    for bad in [(0, 1, 2), (0, 1, 1, 2), (-1, 0, 1, 2)]:
        with pytest.raises(ConfigError):
            CameraDims(bad)
    with pytest.raises(ConfigError):
        CameraDims.from_rotary_slots([0], 8)  # 2 dims, not a multiple of 4
    with pytest.raises(ConfigError):
        CameraDims.from_range(0, 8, head_dim=4)
    tf = build_camera_transform(torch.eye(4).expand(1, 1, 4, 4), torch.zeros(1, 3, dtype=torch.long),
                                CameraDims.from_range(4, 12), "gta")
    with pytest.raises(ShapeError):
        tf.apply_q(torch.randn(1, 2, 3, 8))


def test_build_validates_inputs():
    cams = torch.eye(4).expand(1, 2, 4, 4)
    with pytest.raises(ShapeError):
        build_camera_transform(cams, torch.full((1, 3), 2), CONTIG, "gta")  # index out of range
    with pytest.raises(ShapeError):
        build_camera_transform(cams, torch.zeros(1, 3, dtype=torch.int32), CONTIG, "gta")
    with pytest.raises(ConfigError):
        build_camera_transform(cams, torch.zeros(1, 3, dtype=torch.long), CONTIG, "prope4")
    projective = cams.clone()
    projective[..., 3, 0] = 1
    with pytest.raises(ShapeError):
        build_camera_transform(projective, torch.zeros(1, 3, dtype=torch.long), CONTIG, "gta")


def test_bfloat16_runs_in_input_dtype():
    cams = cams_for("prope", batch_w2c(13, B, C).float(), batch_K(13, B, C).float())
    tf = build_camera_transform(cams, camera_index(13, B, L, C), CONTIG, "prope")
    assert tf.mat_q.dtype == torch.float32
    q, k, v = qkv(13, B, H, L, D, torch.bfloat16)
    out = camera_sdpa(q, k, v, tf, is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_rope2d_is_relative_and_inverts():
    rope_dims = list(range(16, 32))
    g = torch.Generator().manual_seed(14)
    rc = torch.randint(0, 9, (B, L, 2), generator=g)
    q, k, v = qkv(14, B, H, L, D)

    def logits(pos):
        return rope2d(q, pos, rope_dims) @ rope2d(k, pos, rope_dims).transpose(-1, -2)

    torch.testing.assert_close(logits(rc + torch.tensor([5, -3])), logits(rc), **F64)
    assert (logits(rc.flip(-1)) - logits(rc)).abs().max() > 1e-3  # rows and cols are different axes
    torch.testing.assert_close(rope2d(rope2d(v, rc, rope_dims), rc, rope_dims, inverse=True), v, **F64)
    untouched = [i for i in range(D) if i not in rope_dims]
    assert torch.equal(rope2d(v, rc, rope_dims)[..., untouched], v[..., untouched])
    # composed with a camera transform on disjoint dims: the diagonal mask still returns v
    tf = build_camera_transform(cams_for("gta", batch_w2c(14, B, C)), camera_index(14, B, L, C),
                                CameraDims.from_range(0, 16), "gta")
    qr, kr, vr = (rope2d(x, rc, rope_dims) for x in (q, k, v))
    out = rope2d(camera_sdpa(qr, kr, vr, tf, attn_mask=torch.eye(L, dtype=torch.bool)), rc, rope_dims, inverse=True)
    torch.testing.assert_close(out, v, **F64)


# ------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_camera_transform_float64(mode):
    """float64 gradcheck of build_camera_transform + camera_sdpa w.r.t. q, k, v and the camera matrices
    (closed-form affine inverse, gather, the prefill product path; GQA)."""
    cams = cams_for(mode, batch_w2c(40, 1, 3), batch_K(40, 1, 3))
    top = cams[..., :3, :].clone().requires_grad_(True)
    ci = camera_index(40, 1, 6, 3)
    q, k, v = (t.requires_grad_(True) for t in qkv(40, 1, 4, 6, 8, h_kv=2))
    dims = CameraDims((4, 5, 6, 7))

    def fn(t, q, k, v):
        tf = build_camera_transform(pad_affine(t), ci, dims, mode)
        return camera_sdpa(q, k, v, tf, is_causal=True, enable_gqa=True)

    assert torch.autograd.gradcheck(fn, (top, q, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [CONTIG, SCATTERED], ids=["contiguous", "scattered"])
@pytest.mark.parametrize("inplace", [False, True])
def test_gradients_equal_naive_and_oracle(mode, dims, inplace):
    """Camera attention with the pose-distance bias, from raw w2c (and K) to outputs, as the model layer runs
    it (transforms in place on temporaries, factored bias, GQA): gradients w.r.t. q, k, v, every w2c entry, K
    and the slopes equal the naive implementation's (dense bias mask) and the float64 oracle's (explicit D x D
    matrices, torch.linalg.inv, explicit softmax)."""
    w2c, K = batch_w2c(41, B, C), batch_K(41, B, C)
    ci = camera_index(41, B, L, C)
    slopes0 = alibi_slopes(H).double() * 2
    results = {}
    for impl in ("fast", "naive", "oracle"):
        top = w2c[..., :3, :].clone().requires_grad_(True)
        k_pix = K.clone().requires_grad_(mode == "prope")
        slopes = slopes0.clone().requires_grad_(True)
        q, k, v = (t.requires_grad_(True) for t in qkv(41, B, H, L, D, h_kv=2))
        w2c4 = pad_affine(top)
        cams = cams_for(mode, w2c4, k_pix)
        table = pose_distance_table(w2c4, lam=0.8)
        if impl == "fast":
            tf = build_camera_transform(cams, ci, dims, mode)
            qt, kt, vt = (q.clone(), k.clone(), v.clone()) if inplace else (q, k, v)
            qt, kt, vt = tf.apply_q(qt, inplace=inplace), tf.apply_k(kt, inplace=inplace), \
                tf.apply_v(vt, inplace=inplace)
            out = tf.apply_o(biased_sdpa(qt, kt, vt, table, ci, ci, slopes, is_causal=True, enable_gqa=True))
        else:
            bias = pose_distance_bias(table, ci, ci, slopes)
            if impl == "naive":
                causal = torch.zeros(L, L, dtype=torch.float64).masked_fill(
                    ~torch.ones(L, L, dtype=torch.bool).tril(), -torch.inf)
                out = naive_camera_sdpa(q, k, v, build_camera_transform(cams, ci, dims, mode), attn_mask=bias + causal,
                                        enable_gqa=True)
            else:
                out = reference_camera_attention(q, k, v, cams, ci, dims.index, mode, attn_mask=bias, is_causal=True)
        (out * torch.linspace(-1, 2, D, dtype=torch.float64)).sum().backward()
        results[impl] = [out.detach(), q.grad, k.grad, v.grad, top.grad, slopes.grad] + \
            ([k_pix.grad] if mode == "prope" else [])
    for name in ("naive", "fast"):
        for got, want in zip(results[name], results["oracle"]):
            torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
    assert results["oracle"][4].abs().max() > 1e-3 and results["oracle"][5].abs().min() > 0  # cameras, slopes
