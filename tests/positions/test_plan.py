"""PositionPlan properties: text invariance, pose-index invariances, frame bookkeeping, spec."""

import pytest
import torch
from position_sequences import batch, sample
from strategies import random_w2c

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import se3_inverse, w2c_to_c2w
from posevlm.positions import (IMAGE, PAD, TEXT, VIDEO, PositionSpec, build_position_plan, build_token_map,
                               merge_tubelet_scalars)

VID = (4, 6, 4)  # 8 frames, 3x2 merged tokens per tubelet
IMG = (1, 4, 6)

MODES = {
    "stock": PositionSpec(),
    "index": PositionSpec(temporal="index", next_segment="max_plus_one"),
    "zero": PositionSpec(temporal="zero"),
    "frame_ids": PositionSpec(temporal="frame_ids", frame_rounding="none", next_segment="max_plus_one"),
    "pthw": PositionSpec(pose="scalar", next_segment="max_plus_one"),
    "pthw_raw": PositionSpec(pose="scalar", pose_offset="raw", pose_range="fixed", pose_merge="median"),
    "phw": PositionSpec(pose="scalar", pose_axis="replace_t", temporal="zero"),
    "qwen3": PositionSpec(layout="qwen3"),
    "qwen3_phw": PositionSpec(layout="qwen3", pose="scalar", pose_axis="replace_t"),
}


def _map(parts_list, qwen3=False, padding="left"):
    samples = [sample(p, qwen3=qwen3, seed=i) for i, p in enumerate(parts_list)]
    ids, types, mask, images, videos = batch(samples, padding=padding)
    return build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                           video_grid_thw=videos)


def _extras(n_videos, frames=8, seed=0):
    cams = [random_w2c(seed + i, frames).to(torch.float32) for i in range(n_videos)]
    ids = [torch.sort(torch.randperm(200, generator=torch.Generator().manual_seed(i))[:frames]).values
           for i in range(n_videos)]
    return {"w2c_opencv": cams, "frame_ids": ids}


PARTS = [[("text", 4), ("video", VID), ("text", 3)],
         [("text", 2), ("image", IMG), ("text", 2), ("video", VID)]]


def test_token_map_matches_naive_loop():
    tm = _map(PARTS)
    for b in range(tm.shape[0]):
        counters = {IMAGE: -1, VIDEO: -1}
        media_seen = {IMAGE: 0, VIDEO: 0}
        k = {IMAGE: 0, VIDEO: 0}
        prev = None
        for pos in range(tm.shape[1]):
            kind = int(tm.modality[b, pos])
            if kind in (IMAGE, VIDEO):
                grid = (tm.image_grid_thw if kind == IMAGE else tm.video_grid_thw)
                if prev != kind:
                    counters[kind] = int(tm.media_index[b, pos])
                    k[kind] = 0
                    media_seen[kind] += 1
                t, h, w = grid[counters[kind]].tolist()
                h, w = h // 2, w // 2
                kk = k[kind]
                assert int(tm.tubelet[b, pos]) == kk // (h * w)
                assert int(tm.row[b, pos]) == (kk % (h * w)) // w
                assert int(tm.col[b, pos]) == kk % w
                k[kind] += 1
            else:
                assert int(tm.media_index[b, pos]) == -1 and int(tm.camera_index[b, pos]) == -1
            prev = kind
    assert tm.media_index[tm.modality == VIDEO].unique().tolist() == [0, 1]
    vid_cams = tm.camera_index[tm.modality == VIDEO]
    assert vid_cams.unique().tolist() == list(range(8))  # two videos x 4 tubelets
    assert int((tm.modality == PAD).sum()) == int((~tm.valid).sum())


def test_token_map_count_mismatch_is_a_clear_error():
    ids, types, mask, images, videos = batch([sample(PARTS[0])])
    with pytest.raises(ShapeError, match="video_grid_thw describes 32 tokens"):
        build_token_map(ids, attention_mask=mask, mm_token_type_ids=types,
                        video_grid_thw=torch.tensor([[4, 8, 4]]))


@pytest.mark.parametrize("mode", list(MODES))
def test_text_only_identical_in_every_mode(mode):
    spec = MODES[mode]
    tm = _map([[("text", 9)], [("text", 5)]], qwen3=spec.layout == "qwen3")
    plan = build_position_plan(tm, spec)
    base = build_position_plan(tm, PositionSpec())
    assert plan.rows.shape[0] == len(spec.axes)
    for r in plan.rows:
        assert torch.equal(r, base.rows[0])
    assert torch.equal(plan.rope_deltas, base.rope_deltas)


@pytest.mark.parametrize("mode", list(MODES))
def test_text_tokens_all_rows_equal_and_before_vision_unchanged(mode):
    spec = MODES[mode]
    qwen3 = spec.layout == "qwen3"
    tm = _map(PARTS, qwen3=qwen3)
    plan = build_position_plan(tm, spec, **_extras(2))
    stock = build_position_plan(tm, PositionSpec(layout=spec.layout))
    text = tm.modality == TEXT
    for r in plan.rows[1:]:
        assert torch.equal(r[text], plan.rows[0][text])
    assert torch.equal(plan.text_row, stock.text_row)
    assert plan.text_row.dtype == torch.int64 and plan.rows.dtype == torch.float32
    # text before the first vision token sits at the same positions in every mode
    first_vis = (tm.modality > 0).int().argmax(-1)
    for b in range(tm.shape[0]):
        idx = torch.arange(tm.shape[1]) < first_vis[b]
        assert torch.equal(plan.rows[0, b][idx & text[b]], stock.rows[0, b][idx & text[b]])
    # text rows stay integer-valued
    assert torch.equal(plan.rows[0][text], plan.rows[0][text].round())


def _p_rows(spec, cams):
    tm = _map([PARTS[0]])
    plan = build_position_plan(tm, spec, w2c_opencv=cams)
    return plan.rows[plan.axes.index("P")][tm.modality == VIDEO]


@pytest.mark.parametrize("mode", ["pthw", "phw", "pthw_raw"])
def test_pose_rows_invariant_to_global_rigid_transform_and_scale(mode):
    spec = MODES[mode]
    cams = random_w2c(3, 8).to(torch.float64)
    g = random_w2c(99, 1)[0]
    moved = cams @ se3_inverse(g)
    scaled = cams.clone()
    scaled[:, :3, 3] *= 7.5
    ref = _p_rows(spec, [cams])
    torch.testing.assert_close(_p_rows(spec, [moved]), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(_p_rows(spec, [scaled]), ref, atol=1e-4, rtol=0)
    assert (ref.amax() - ref.amin()) > 1.0  # P spans a real range


def test_c2w_passed_as_w2c_changes_pose_rows():
    spec = MODES["pthw"]
    cams = random_w2c(3, 8).to(torch.float64)
    diff = (_p_rows(spec, [w2c_to_c2w(cams)]) - _p_rows(spec, [cams])).abs().max()
    assert diff > 0.1


def test_static_trajectory_gives_anchor_without_error():
    cams = random_w2c(5, 1).expand(8, 4, 4).clone()
    tm = _map([PARTS[0]])
    plan = build_position_plan(tm, MODES["pthw"], w2c_opencv=[cams])
    vid = tm.modality == VIDEO
    assert torch.equal(plan.rows[0][vid], plan.rows[1][vid].amin().expand(int(vid.sum())))
    assert torch.isfinite(plan.rows).all()


def test_odd_frame_count_repeats_last_frame():
    """An odd S = 2T - 1 pads the last frame, but the dynamic range stays the real S - 1 (not 2T - 1)."""
    cams = random_w2c(7, 7).to(torch.float32)
    padded = torch.cat([cams, cams[-1:]], 0)
    tm = _map([PARTS[0]])
    s0 = build_position_plan(tm, PositionSpec()).rows[0][tm.modality == VIDEO].amin()  # video start
    odd, even = _p_rows(MODES["pthw"], [cams]) - s0, _p_rows(MODES["pthw"], [padded]) - s0
    torch.testing.assert_close(odd, even * 6 / 7)  # same merged, reset P; range 6 vs 7
    ids = torch.arange(7) * 10
    a = build_position_plan(tm, MODES["frame_ids"], frame_ids=[ids]).rows
    b = build_position_plan(tm, MODES["frame_ids"], frame_ids=[torch.cat([ids, ids[-1:]])]).rows
    vid = tm.modality == VIDEO
    torch.testing.assert_close(a[0][vid] - s0, (b[0][vid] - s0) * 6 / 7)


def _odd_video_map():
    return _map([[("text", 3), ("video", (8, 4, 4)), ("text", 2)]])


@pytest.mark.parametrize("merge", ["mean", "median"])
def test_odd_frames_pose_range_is_real_s_minus_one(merge):
    """S = 15 frames (T = 8): P = s + P̄ · (S - 1) = s + 14 P̄, P̄ the merged, hard-reset index of the padded
    trajectory (positions spec §2.3 step 4)."""
    from posevlm.geometry import lie_scalar_pose_index

    cams = random_w2c(11, 15).to(torch.float32)
    spec = PositionSpec(pose="scalar", pose_merge=merge, next_segment="max_plus_one")
    tm = _odd_video_map()
    plan = build_position_plan(tm, spec, w2c_opencv=[cams])
    vid = tm.modality[0] == VIDEO
    s0 = plan.rows[plan.axes.index("H"), 0][vid].amin()
    raw = lie_scalar_pose_index(torch.cat([cams, cams[-1:]])[None], lam=spec.pose_lam,
                                reference=spec.pose_reference)[0]
    merged = merge_tubelet_scalars(raw, merge)
    pbar = (merged - merged.min()) / (merged.max() - merged.min())
    expected = s0 + 14.0 * pbar[tm.tubelet[0][vid]]
    got = plan.rows[plan.axes.index("P"), 0][vid]
    torch.testing.assert_close(got, expected)
    assert got.amax() == s0 + 14  # 2T - 1 = 15 would reach s + 15


def test_odd_frames_frame_ids_range_is_real_s_minus_one():
    """S = 15 frame ids: T = s + (a - a_min) · (S - 1) / r with a the per-tubelet mean (spec §2.2)."""
    ids = torch.tensor([0, 3, 7, 20, 21, 22, 40, 41, 60, 70, 71, 90, 95, 99, 120])
    spec = PositionSpec(temporal="frame_ids", frame_rounding="none", next_segment="max_plus_one")
    tm = _odd_video_map()
    plan = build_position_plan(tm, spec, frame_ids=[ids])
    vid = tm.modality[0] == VIDEO
    t_row = plan.rows[0, 0][vid]
    s0 = plan.rows[1, 0][vid].amin()
    a = torch.cat([ids, ids[-1:]]).double().view(8, 2).mean(-1)
    a = (a - a.min()) * (14 / (a.max() - a.min()))
    torch.testing.assert_close(t_row, (s0 + a[tm.tubelet[0][vid]]).float())
    assert t_row.amax() == s0 + 14


def _continuation_formula(plan, tm):
    out = []
    for b in range(tm.shape[0]):
        idx = torch.nonzero(tm.valid[b]).flatten()
        last = int(idx.max())
        out.append(int(plan.rows[:, b, last].max().floor()) + 1 - idx.numel())
    return torch.tensor(out)[:, None]


@pytest.mark.parametrize("mode", ["stock", "pthw", "frame_ids", "qwen3", "pthw_raw"])
def test_continuation_deltas_follow_the_last_valid_token(mode):
    """continuation_deltas = floor(max over rows of the last valid token's position) + 1 - valid tokens,
    per row (left padding); the video ends right before the last token (vision_end), so max != last."""
    spec = MODES[mode]
    parts = [[("text", 3), ("video", VID)], [("text", 1), ("image", IMG), ("text", 5), ("video", VID)],
             [("text", 2), ("video", VID), ("text", 1)]]
    tm = _map(parts, qwen3=spec.layout == "qwen3")
    plan = build_position_plan(tm, spec, **_extras(3))
    expected = _continuation_formula(plan, tm)
    assert plan.continuation_deltas.dtype == torch.int64 and plan.continuation_deltas.shape == (3, 1)
    assert torch.equal(plan.continuation_deltas, expected)
    if mode == "stock":  # hf_time T (0..6) beyond the spatial extent 3: max + 1 differs from last + 1
        assert (plan.rope_deltas > plan.continuation_deltas).all()
    # continuation_positions: first generated token sits at position(last prompt token) + 1
    mask = torch.cat([tm.valid.long(), torch.ones(3, 2, dtype=torch.long)], 1)
    dec = plan.continuation_positions(mask)
    last_pos = torch.stack([plan.rows[:, b, -1].max() for b in range(3)]).floor().long()
    assert torch.equal(dec[:, -2], last_pos + 1) and torch.equal(dec[:, -1], last_pos + 2)
    assert torch.equal(plan.decode_positions(mask) - dec, (plan.rope_deltas - plan.continuation_deltas)
                       .expand_as(dec))


@pytest.mark.parametrize("frames", [6, 10, 3])
def test_frames_must_be_twice_tubelets(frames):
    with pytest.raises(ShapeError, match=r"expected S = 2\*T = 8"):
        _p_rows(MODES["pthw"], [random_w2c(1, frames)])


def test_missing_cameras_is_a_clear_error():
    with pytest.raises(ShapeError, match="w2c_opencv is required"):
        build_position_plan(_map([PARTS[0]]), MODES["pthw"])


def test_worked_example_pthw_positions_spec_2_4():
    """10 text tokens, 16 frames, grid (8, 34, 46), second_per_grid 1, multiplier 2, max+1 rule."""
    tm = _map([[("text", 10), ("video", (8, 34, 46)), ("text", 3)]])
    spec = PositionSpec(pose="scalar", tokens_per_second=2, next_segment="max_plus_one")
    plan = build_position_plan(tm, spec, w2c_opencv=[random_w2c(4, 16)])
    p, t, h, w = plan.rows[:, 0]
    vid = tm.modality[0] == VIDEO
    assert int(vid.sum()) == 3128
    assert t[vid].unique().tolist() == [11.0 + 2 * k for k in range(8)]  # s = 11: 10 text + vision_start
    assert h[vid].unique().tolist() == [float(v) for v in range(11, 28)]
    assert w[vid].unique().tolist() == [float(v) for v in range(11, 34)]
    assert p[vid].amin() == 11.0 and p[vid].amax() == 26.0  # s + 15 * P (hard reset to [0, 1])
    after = torch.nonzero(vid).max() + 1  # vision_end follows at max(all rows) + 1 = 34
    assert plan.rows[:, 0, after].tolist() == [34.0] * 4


def test_frame_ids_readapt_example_spec_2_2():
    tm = _map([[("text", 2), ("video", (8, 4, 4))]])
    ids = torch.arange(16) * 10
    plan = build_position_plan(tm, PositionSpec(temporal="frame_ids"), frame_ids=[ids])
    t = plan.rows[0, 0][tm.modality[0] == VIDEO].unique() - 3
    assert t.tolist() == [0, 2, 4, 6, 8, 10, 12, 15]


def test_merge_tubelet_scalars():
    x = torch.tensor([0.0, 1.0, 4.0, 2.0])
    assert merge_tubelet_scalars(x, "mean").tolist() == [0.5, 3.0]
    assert merge_tubelet_scalars(x, "first").tolist() == [0.0, 4.0]
    assert merge_tubelet_scalars(x, "last").tolist() == [1.0, 2.0]
    assert merge_tubelet_scalars(x, "median").tolist() == [0.0, 2.0]


def test_qwen3_phw_only_changes_video_t_row():
    tm = _map(PARTS, qwen3=True)
    stock = build_position_plan(tm, PositionSpec(layout="qwen3"))
    phw = build_position_plan(tm, MODES["qwen3_phw"], **_extras(2))
    vid = tm.modality == VIDEO
    assert phw.axes == ("P", "H", "W")
    assert torch.equal(phw.rows[1:], stock.rows[1:])
    assert torch.equal(phw.rows[0][~vid], stock.rows[0][~vid])
    assert not torch.equal(phw.rows[0][vid], stock.rows[0][vid])
    assert torch.equal(phw.rope_deltas, stock.rope_deltas)


def test_max_plus_one_decode_continues_prefill():
    """With max_plus_one, text appended after the prompt gets exactly the decode positions."""
    spec = MODES["pthw"]
    parts = [[("text", 3), ("video", VID)], [("text", 1), ("image", IMG), ("video", VID)]]
    longer = [p + [("text", 4)] for p in parts]
    cams = _extras(2)["w2c_opencv"]
    short_tm, long_tm = _map(parts), _map(longer)
    short = build_position_plan(short_tm, spec, w2c_opencv=cams)
    full = build_position_plan(long_tm, spec, w2c_opencv=cams)
    # same left padding structure: extend the short mask by 4 tokens
    mask = torch.cat([short_tm.valid.long(), torch.ones(2, 4, dtype=torch.long)], 1)
    dec = short.decode_positions(mask)[:, -4:].float()
    for a in full.rows:
        assert torch.equal(a[:, -4:], dec)


def test_spec_validation_reports_all_problems_and_round_trips():
    with pytest.raises(ConfigError) as err:
        PositionSpec(layout="qwen4", temporal="frames", pose_merge="avg", tokens_per_second=-1)
    msg = str(err.value)
    for needle in ("layout='qwen4'", "temporal='frames'", "pose_merge='avg'", "tokens_per_second=-1"):
        assert needle in msg
    spec = MODES["pthw_raw"]
    assert PositionSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown PositionSpec keys"):
        PositionSpec.from_dict({"layuot": "qwen3"})
    with pytest.raises(ConfigError, match="use pose_axis='replace_t'"):
        PositionSpec(layout="qwen3", pose="scalar")


@pytest.mark.parametrize("mode", list(MODES))
def test_more_images_than_videos(mode):
    spec = MODES[mode]
    parts = [[("image", IMG), ("text", 2), ("image", IMG), ("video", VID)],
             [("image", (1, 2, 4)), ("text", 3)]]
    tm = _map(parts, qwen3=spec.layout == "qwen3")
    plan = build_position_plan(tm, spec, **_extras(1))
    assert torch.isfinite(plan.rows).all()
    assert tm.camera_index[tm.modality == IMAGE].eq(-1).all()
    assert tm.camera_index[tm.modality == VIDEO].unique().tolist() == [0, 1, 2, 3]


def test_phw_next_start_ignores_dropped_t_row():
    """PHW with max_plus_one: the next segment starts after max(P, H, W), whatever T would have been."""
    tm = _map([[("text", 2), ("video", (4, 2, 2)), ("text", 2)]])
    spec = PositionSpec(pose="scalar", pose_axis="replace_t", tokens_per_second=50,
                        next_segment="max_plus_one")
    plan = build_position_plan(tm, spec, w2c_opencv=[random_w2c(2, 8)])
    vid = tm.modality[0] == VIDEO
    after = int(torch.nonzero(vid).max()) + 1
    expected = plan.rows[:, 0][:, vid].amax().floor() + 1
    assert plan.rows[:, 0, after].tolist() == [float(expected)] * 3
    assert float(expected) == 3 + 7 + 1  # s = 3, P spans [0, S - 1 = 7]
