"""rope2d against the published PRoPE maths (Li et al. 2025, "Cameras as Relative Positional Encoding";
positions.md §3.1-3.2): a hand-computed golden vector, a transcription of the published 2D RoPE, and the
whole per-image PRoPE attention (projective half + 2D RoPE half) against a transcription of it."""

import math

import torch
import torch.nn.functional as F
from camera_attention_cases import HW, batch_K, batch_w2c, qkv

from posevlm.attention import CameraDims, attention_cameras, build_camera_transform, camera_sdpa, rope2d

F64 = dict(atol=1e-12, rtol=0)


def published_rope(x, pos, base=100.0, inverse=False):
    """PRoPE's 2D RoPE block on (..., L, f) features at (L,) patch positions, transcribed from the paper's
    code description: 'split' pairing (feature j with j + f/2), f/2 frequencies base^(-k/(f/2)); q, k and v
    get the transpose of the rotation, (x, y) -> (x cos + y sin, -x sin + y cos), the output the rotation."""
    n = x.shape[-1] // 2
    angle = pos.to(x.dtype)[:, None] * base ** (-torch.arange(n, dtype=x.dtype) / n)  # (L, n)
    c, s = angle.cos(), angle.sin()
    x1, x2 = x[..., :n], x[..., n:]
    if inverse:
        return torch.cat([c * x1 - s * x2, s * x1 + c * x2], -1)
    return torch.cat([c * x1 + s * x2, -s * x1 + c * x2], -1)


def test_golden_vector_rotates_like_prope():
    # 4 dims: (0, 1) rotate with the patch column, (2, 3) with the patch row; one frequency: 1 rad/patch
    x = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64).view(1, 1, 1, 4)
    rc = torch.tensor([[[2, 1]]])  # row 2, column 1
    got = rope2d(x, rc, [0, 1, 2, 3]).flatten().tolist()
    # (1, 0) at 1 rad -> (cos 1, -sin 1); (0, 1) at 2 rad -> (sin 2, cos 2)
    expected = [math.cos(1), -math.sin(1), math.sin(2), math.cos(2)]
    assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-15
    back = rope2d(rope2d(x, rc, [0, 1, 2, 3]), rc, [0, 1, 2, 3], inverse=True)
    torch.testing.assert_close(back, x, **F64)


def test_matches_the_published_2d_rope_on_prope_dims():
    """PRoPE's layout: head dims [d/2, 3d/4) rotate with the patch x (column), [3d/4, d) with y (row)."""
    b, h, py, px, d = 2, 3, 3, 4, 32
    length = 2 * py * px  # two images, row-major patches
    rows = torch.arange(py).repeat_interleave(px).repeat(2)
    cols = torch.arange(px).repeat(py * 2)
    rc = torch.stack([rows, cols], -1).expand(b, length, 2)
    dims = list(range(d // 2, d))
    for dtype, tol in ((torch.float64, F64), (torch.float32, dict(atol=1e-6, rtol=0))):
        g = torch.Generator().manual_seed(3)
        x = torch.randn(b, h, length, d, generator=g, dtype=torch.float64).to(dtype)
        for inverse in (False, True):
            expected = torch.cat([x[..., : d // 2],
                                  published_rope(x[..., d // 2: 3 * d // 4], cols, inverse=inverse),
                                  published_rope(x[..., 3 * d // 4:], rows, inverse=inverse)], -1)
            torch.testing.assert_close(rope2d(x, rc, dims, inverse=inverse), expected, **tol)


def published_prope_attention(q, k, v, w2c, K, image_hw, py, px):
    """Per-image PRoPE attention, transcribed from the paper (positions.md §3.1, 3.2, 3.5): P = lift(K̂) V
    with K̂ = (fx/W, fy/H, cx/W - 1/2, cy/H - 1/2); q <- D^T q, k <- D^-1 k, v <- D^-1 v, o <- D o with
    D = blockdiag(I (x) P, R_x(col), R_y(row)); tokens are cameras x rows x columns."""
    b, heads, length, d = q.shape
    h_img, w_img = image_hw
    kn = torch.zeros_like(K)
    kn[..., 0, 0], kn[..., 1, 1] = K[..., 0, 0] / w_img, K[..., 1, 1] / h_img
    kn[..., 0, 2], kn[..., 1, 2], kn[..., 2, 2] = K[..., 0, 2] / w_img - 0.5, K[..., 1, 2] / h_img - 0.5, 1.0
    lift = torch.eye(4, dtype=K.dtype).repeat(*K.shape[:-2], 1, 1)
    lift[..., :3, :3] = kn
    proj = lift @ w2c  # (b, C, 4, 4) image <- world
    cam = torch.arange(length) // (py * px)
    rows = (torch.arange(length) % (py * px)) // px
    cols = torch.arange(length) % px

    def transform(x, mats, inverse_rope):
        groups = x[..., : d // 2].reshape(b, heads, length, d // 8, 4)
        first = torch.einsum("blij,bhlgj->bhlgi", mats[:, cam], groups).flatten(-2)
        return torch.cat([first, published_rope(x[..., d // 2: 3 * d // 4], cols, inverse=inverse_rope),
                          published_rope(x[..., 3 * d // 4:], rows, inverse=inverse_rope)], -1)

    p_inv = torch.linalg.inv(proj)
    out = F.scaled_dot_product_attention(transform(q, proj.transpose(-1, -2), False),
                                         transform(k, p_inv, False), transform(v, p_inv, False))
    return transform(out, proj, True)


def test_prope_attention_with_rope2d_equals_the_published_prope():
    """Camera transform (mode prope, no translation normalisation) on [0, d/2) + rope2d on [d/2, d): PRoPE."""
    b, c, heads, py, px, d = 2, 3, 2, 2, 3, 32
    length = c * py * px
    w2c, K = batch_w2c(4, b, c), batch_K(4, b, c)
    q, k, v = qkv(4, b, heads, length, d)
    cams = attention_cameras(w2c, K, HW, mode="prope", translation_norm="none")
    token = torch.arange(length)
    camera_of_token = (token // (py * px)).expand(b, length)
    tf = build_camera_transform(cams, camera_of_token, CameraDims.from_range(0, d // 2), "prope")
    rc = torch.stack([(token % (py * px)) // px, token % px], -1).expand(b, length, 2)
    rope_dims = list(range(d // 2, d))
    qr, kr, vr = (rope2d(x, rc, rope_dims) for x in (q, k, v))
    ours = rope2d(camera_sdpa(qr, kr, vr, tf), rc, rope_dims, inverse=True)
    expected = published_prope_attention(q, k, v, w2c, K, HW, py, px)
    torch.testing.assert_close(ours, expected, atol=1e-10, rtol=0)
