"""VGGT's position machinery: 2D RoPE against explicit rotation matrices and its relative property, the patch
position layout, the DINOv2 position-table interpolation for sizes other than 518 px, the DPT UV term."""

from __future__ import annotations

import math

import torch

from posevlm.spatial.vggt import (
    VGGT,
    VGGTConfig,
    apply_rope2d,
    interpolate_pos_embed,
    patch_positions,
    rope2d_tables,
    uv_embedding,
)


def _rope_matrix(row: int, col: int, head_dim: int, base: float) -> torch.Tensor:
    """Slow oracle: the (D, D) rotation of one token, written pair by pair from the published definition (first
    half of the head dim turns with the row, second half with the column; pairs (j, j + D/4) inside each half,
    angle pos * base^(-2j / (D/2)))."""
    R = torch.zeros(head_dim, head_dim, dtype=torch.float64)
    half, quarter = head_dim // 2, head_dim // 4
    for offset, pos in ((0, row), (half, col)):
        for j in range(quarter):
            theta = pos * base ** (-2 * j / half)
            a, b = offset + j, offset + j + quarter
            R[a, a], R[a, b] = math.cos(theta), -math.sin(theta)
            R[b, a], R[b, b] = math.sin(theta), math.cos(theta)
    return R


def test_rope2d_equals_explicit_rotation_matrices():
    positions = torch.tensor([[0, 0], [1, 1], [3, 2], [7, 11]])
    x = torch.randn(2, positions.shape[0], 16, dtype=torch.float64)
    cos, sin = rope2d_tables(positions, 16, 100.0)
    got = apply_rope2d(x, cos, sin)
    for i, (r, c) in enumerate(positions.tolist()):
        torch.testing.assert_close(got[:, i], x[:, i] @ _rope_matrix(r, c, 16, 100.0).T)


def test_rope2d_scores_depend_only_on_the_position_difference():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, dtype=torch.float64, generator=g), torch.randn(16, dtype=torch.float64, generator=g)

    def score(pq, pk):
        cos, sin = rope2d_tables(torch.tensor([pq, pk]), 16, 100.0)
        rotated_q = apply_rope2d(q[None], cos[:1], sin[:1])[0]
        rotated_k = apply_rope2d(k[None], cos[1:], sin[1:])[0]
        return float(rotated_q @ rotated_k)

    base = score((2, 5), (4, 1))
    for shift in ((1, 0), (0, 3), (5, 7)):
        moved = score((2 + shift[0], 5 + shift[1]), (4 + shift[0], 1 + shift[1]))
        assert abs(moved - base) < 1e-10
    assert abs(score((2, 5), (4, 2)) - base) > 1e-6  # a different offset changes the score


def test_rope2d_rows_turn_the_first_half_and_columns_the_second():
    x = torch.randn(1, 2, 16, dtype=torch.float64)
    cos, sin = rope2d_tables(torch.tensor([[3, 0], [3, 9]]), 16, 100.0)
    out = apply_rope2d(x.expand(1, 2, 16).clone(), cos, sin)
    same = apply_rope2d(x[:, :1].expand(1, 2, 16).clone(), cos, sin)
    torch.testing.assert_close(same[0, 0, :8], same[0, 1, :8])  # same row: first half equal
    assert not torch.allclose(same[0, 0, 8:], same[0, 1, 8:])  # different column: second half differs
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1).expand(1, 2))  # rotations keep norms


def test_patch_positions_put_specials_at_zero_and_patches_from_one():
    pos = patch_positions((2, 3), 5)
    assert pos.shape == (11, 2)
    assert pos[:5].abs().sum() == 0
    assert pos[5:].tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]


def _table(M: int, C: int = 3) -> torch.Tensor:
    """(1, 1 + M*M, C) table: channel 0 = row index, 1 = column index, 2 = constant 7; class row = -1."""
    rows, cols = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    grid = torch.stack([rows, cols, torch.full_like(rows, 7)], -1).reshape(1, M * M, C).double()
    return torch.cat([torch.full((1, 1, C), -1.0, dtype=torch.float64), grid], dim=1)


def test_pos_embed_is_unchanged_at_the_table_size():
    table = _table(4)
    assert interpolate_pos_embed(table, (4, 4)) is table


def test_pos_embed_interpolation_keeps_rows_as_rows_and_constants_constant():
    table = _table(4)
    out = interpolate_pos_embed(table, (8, 6))  # taller than wide: (gh, gw) = (8, 6)
    assert out.shape == (1, 1 + 48, 3) and out.dtype == torch.float64
    torch.testing.assert_close(out[0, 0], table[0, 0])  # class position untouched
    grid = out[0, 1:].reshape(8, 6, 3)
    torch.testing.assert_close(grid[..., 2], torch.full((8, 6), 7.0, dtype=torch.float64))
    # channel 0 (row index) varies along rows only, channel 1 along columns only
    torch.testing.assert_close(grid[..., 0], grid[:, :1, 0].expand(8, 6))
    torch.testing.assert_close(grid[..., 1], grid[:1, :, 1].expand(8, 6))
    # interior samples reproduce the linear ramp at the half-pixel mapping src = (i + 0.5) * M / n - 0.5
    for i in (3, 4):
        assert abs(float(grid[i, 0, 0]) - ((i + 0.5) * 4 / 8 - 0.5)) < 1e-9
    assert abs(float(grid[0, 2, 1]) - ((2 + 0.5) * 4 / 6 - 0.5)) < 1e-9


def test_dinov2_patch_embed_runs_at_sizes_other_than_its_table():
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny(patch_embed="dinov2", heads=())).eval()  # table 4 x 4 (img_size 56)
    for hw in ((56, 56), (28, 70), (98, 42)):
        out = model.aggregate(torch.rand(1, 2, 3, *hw), layers=-1)
        assert out.tokens[1].shape == (1, 2, 5 + (hw[0] // 14) * (hw[1] // 14), 64)
        assert bool(torch.isfinite(out.tokens[1]).all())


def test_uv_embedding_layout():
    emb = uv_embedding((4, 6), (28, 42), 8)
    assert emb.shape == (8, 4, 6)
    aspect = 42 / 28
    span_u = aspect / math.hypot(aspect, 1) * 5 / 6
    # channel 0 = 0.1 sin(u * 100^0) varies with the column only; channel 4 = 0.1 sin(v) with the row only
    torch.testing.assert_close(emb[0, 0], 0.1 * torch.sin(torch.linspace(-span_u, span_u, 6, dtype=torch.float64)))
    torch.testing.assert_close(emb[0], emb[0, :1].expand(4, 6))
    torch.testing.assert_close(emb[4], emb[4, :, :1].expand(4, 6))
    torch.testing.assert_close(emb[2] ** 2 + emb[0] ** 2,  # blocks of 2: sin u, cos u, sin v, cos v
                                torch.full((4, 6), 0.01, dtype=torch.float64))
