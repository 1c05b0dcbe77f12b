"""TokenMap.frame_positions / source_frame_ids: the source frames of each video token's tubelet."""

import pytest
import torch
from position_sequences import batch, sample

from posevlm.errors import ShapeError
from posevlm.positions import VIDEO, build_token_map

VID_A, VID_B, IMG = (3, 4, 4), (2, 2, 6), (1, 4, 2)


def _map(padding="left"):
    parts = [[("text", 2), ("video", VID_A), ("text", 1), ("image", IMG)],
             [("image", IMG), ("video", VID_B), ("text", 3), ("video", VID_A)]]
    ids, types, mask, images, videos = batch([sample(p, seed=i) for i, p in enumerate(parts)], padding=padding)
    return build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                           video_grid_thw=videos)


def _naive(tm, frame_ids):
    """Per-token loop: the frames 2 tau, 2 tau + 1 of the token's video (last frame repeated if odd)."""
    out = torch.full((*tm.shape, 2), -1, dtype=torch.long)
    pos = torch.full((*tm.shape, 2), -1, dtype=torch.long)
    for b in range(tm.shape[0]):
        for i in range(tm.shape[1]):
            if int(tm.modality[b, i]) != VIDEO:
                continue
            ids = list(frame_ids[int(tm.media_index[b, i])])
            tau = int(tm.tubelet[b, i])
            for j in range(2):
                f = 2 * tau + j
                pos[b, i, j] = f
                out[b, i, j] = ids[min(f, len(ids) - 1)]
    return pos, out


@pytest.mark.parametrize("padding", ["left", "right"])
def test_frame_positions_and_source_ids_match_naive_loop(padding):
    tm = _map(padding)
    # videos in batch order: A (row 0), B, A (row 1); the last one has an odd count 2T - 1 = 5
    frame_ids = [[10, 11, 20, 21, 30, 31], torch.tensor([7, 9, 100, 200]), [5, 6, 7, 8, 9]]
    pos, ids = _naive(tm, frame_ids)
    got_pos, got_ids = tm.frame_positions(), tm.source_frame_ids(frame_ids)
    assert got_pos.dtype == got_ids.dtype == torch.int64 and got_pos.shape == (*tm.shape, 2)
    assert torch.equal(got_pos, pos) and torch.equal(got_ids, ids)
    non_video = tm.modality != VIDEO
    assert (got_ids[non_video] == -1).all() and (got_pos[non_video] == -1).all()
    last_video = (tm.modality[1] == VIDEO) & (tm.media_index[1] == 2) & (tm.tubelet[1] == 2)
    assert got_ids[1][last_video].unique(dim=0).tolist() == [[9, 9]]  # repeated last frame


def test_source_frame_ids_tensor_input_and_errors():
    tm = _map()
    same_t = build_token_map(torch.full((1, 16), 103), video_grid_thw=torch.tensor([[2, 4, 4], [2, 4, 4]]),
                             video_token_id=103)
    ids = torch.arange(8).view(2, 4) * 3
    got = same_t.source_frame_ids(ids)
    assert got[0, :, 0].tolist() == [0] * 4 + [6] * 4 + [12] * 4 + [18] * 4
    assert got[0, :, 1].tolist() == [3] * 4 + [9] * 4 + [15] * 4 + [21] * 4
    with pytest.raises(ShapeError, match="video_grid_thw has 3"):
        tm.source_frame_ids([[0] * 6, [0] * 4])
    with pytest.raises(ShapeError, match=r"expected S = 2\*T = 4"):
        tm.source_frame_ids([[0] * 6, [0] * 7, [0] * 6])


def test_no_videos_gives_minus_one():
    tm = build_token_map(torch.tensor([[1, 2, 3]]), video_token_id=103)
    assert tm.source_frame_ids([]).tolist() == [[[-1, -1]] * 3]


@pytest.mark.parametrize("padding,qwen3,extra", [("left", False, 1), ("right", False, 2), ("left", True, 1)])
def test_extra_video_tokens_match_a_per_token_loop(padding, qwen3, extra):
    """e extra tokens per merged token after each video's own tokens (Qwen3: in the last tubelet's block): the mask,
    the cell's own token of each extra token (extra j -> cell j mod N) and the per-row counts equal a loop."""
    from posevlm.positions import locate_extra_video_tokens

    parts = [[("text", 2), ("video", VID_A), ("text", 1), ("image", IMG)],
             [("image", IMG), ("video", VID_B), ("text", 3), ("video", VID_A)]]
    expanded = []
    for i, p in enumerate(parts):  # the processor's prompt, then e * N more pads after each video's last pad
        ids, types, images, vids = sample(p, qwen3=qwen3, seed=i)
        counts = [g[0] * (g[1] // 2) * (g[2] // 2) for g in vids]
        video, k, out_ids, out_types = 0, 0, [], []
        for tok, typ in zip(ids, types):
            out_ids.append(tok)
            out_types.append(typ)
            if typ == VIDEO:
                k += 1
                if k == counts[video]:
                    out_ids += [tok] * (extra * counts[video])
                    out_types += [VIDEO] * (extra * counts[video])
                    video, k = video + 1, 0
        expanded.append((out_ids, out_types, images, vids))
    ids, types, mask, _, grid = batch(expanded, padding=padding)
    got = locate_extra_video_tokens((types == VIDEO) & mask.bool(), grid, 2, extra)
    want_mask = torch.zeros_like(mask, dtype=torch.bool)
    want_source = torch.full_like(mask, -1)
    counts = [int(t * (h // 2) * (w // 2)) for t, h, w in grid.tolist()]
    video, k, cells = 0, 0, []
    for b in range(ids.shape[0]):
        for pos in range(ids.shape[1]):
            if not (mask[b, pos] and types[b, pos] == VIDEO):
                continue
            if k < counts[video]:
                cells.append(b * ids.shape[1] + pos)
            else:
                want_mask[b, pos] = True
                want_source[b, pos] = cells[(k - counts[video]) % counts[video]]
            k += 1
            if k == (1 + extra) * counts[video]:
                video, k, cells = video + 1, 0, []
    assert torch.equal(got.mask, want_mask) and torch.equal(got.source, want_source)
    assert got.count.tolist() == want_mask.sum(1).tolist() and int(got.count.sum()) == extra * sum(counts)
    rows_in = torch.randn(3, *ids.shape)
    filled = got.fill_rows(rows_in)
    assert torch.equal(filled[:, ~want_mask], rows_in[:, ~want_mask])
    assert torch.equal(filled[:, want_mask], rows_in.flatten(1)[:, want_source[want_mask]])
    with pytest.raises(ShapeError, match="expand the prompt"):
        locate_extra_video_tokens((types == VIDEO) & mask.bool(), grid, 2, extra + 1)
