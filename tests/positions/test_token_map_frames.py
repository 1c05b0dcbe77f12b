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
