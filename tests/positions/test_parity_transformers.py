"""Parity of the stock plans with transformers 5.23's own ``get_rope_index`` on tiny random configs."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
from position_sequences import IMAGE_ID, VIDEO_ID, VISION_END, VISION_START, batch, sample  # noqa: E402

from posevlm.positions import PositionSpec, build_position_plan, build_token_map  # noqa: E402

PINNED = "5.23.0"
TPS = 2


def _ids():
    return {"image_token_id": IMAGE_ID, "video_token_id": VIDEO_ID, "vision_start_token_id": VISION_START,
            "vision_end_token_id": VISION_END}


def _text(**extra):
    return {"vocab_size": 128, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, **extra}


@pytest.fixture(scope="module")
def qwen2_5():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

    cfg = Qwen2_5_VLConfig(
        text_config=_text(rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                           "mrope_section": [2, 3, 3]}),
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                       "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32,
                       "tokens_per_second": TPS, "fullatt_block_indexes": [0], "window_size": 56},
        **_ids())
    return Qwen2_5_VLModel(cfg).eval()


@pytest.fixture(scope="module")
def qwen3():
    from transformers import Qwen3VLConfig, Qwen3VLModel

    cfg = Qwen3VLConfig(
        text_config=_text(head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                        "mrope_section": [2, 3, 3],
                                                        "mrope_interleaved": True}),
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                       "patch_size": 16,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32,
                       "num_position_embeddings": 16, "deepstack_visual_indexes": [0]},
        **_ids())
    return Qwen3VLModel(cfg).eval()


IMG = (1, 4, 6)
IMG2 = (1, 6, 2)
VID = (4, 6, 4)
VID2 = (3, 2, 8)
CASES = {
    "text_only": [[("text", 7)]],
    "one_image": [[("text", 5), ("image", IMG), ("text", 4)]],
    "several_images": [[("text", 3), ("image", IMG), ("text", 2), ("image", IMG2), ("text", 4)]],
    "one_video": [[("text", 6), ("video", VID), ("text", 5)]],
    "image_and_video": [[("text", 2), ("image", IMG), ("text", 3), ("video", VID), ("text", 3)]],
    "left_padded_batch": [[("text", 2), ("video", VID), ("text", 2)], [("text", 9)],
                          [("text", 1), ("image", IMG2), ("text", 3), ("video", VID2), ("image", IMG),
                           ("text", 2)]],
}


def _inputs(case, padding, qwen3=False):
    return batch([sample(p, qwen3=qwen3, seed=i) for i, p in enumerate(CASES[case])], padding=padding)


def test_transformers_version_pinned():
    assert transformers.__version__ == PINNED


@pytest.mark.parametrize("spg", [None, [0.75, 3.0, 0.5]])
@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("case", list(CASES))
def test_qwen2_5_stock_matches_get_rope_index(qwen2_5, case, padding, spg):
    ids, types, mask, images, videos = _inputs(case, padding)
    n_vid = 0 if videos is None else len(videos)
    spg_t = None if spg is None or n_vid == 0 else torch.tensor(spg[:n_vid], dtype=torch.float32)
    ref_pos, ref_delta = qwen2_5.get_rope_index(ids, types, images, videos, second_per_grid_ts=spg_t,
                                                attention_mask=mask)
    tm = build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                         video_grid_thw=videos, spatial_merge_size=2)
    plan = build_position_plan(tm, PositionSpec(tokens_per_second=TPS), second_per_grid_ts=spg_t)
    assert plan.axes == ("T", "H", "W")
    assert plan.rows.dtype == torch.float32
    assert torch.equal(plan.rows.long(), ref_pos)
    assert torch.equal(plan.rows, plan.rows.round())
    assert torch.equal(plan.rope_deltas, ref_delta.long())


@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("case", list(CASES))
def test_qwen3_stock_matches_get_rope_index(qwen3, case, padding):
    ids, types, mask, images, videos = _inputs(case, padding, qwen3=True)
    ref_pos, ref_delta = qwen3.get_rope_index(ids, types, images, None if videos is None else videos.clone(),
                                              attention_mask=mask)
    tm = build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                         video_grid_thw=videos, spatial_merge_size=2)
    plan = build_position_plan(tm, PositionSpec(layout="qwen3"))
    assert torch.equal(plan.rows.long(), ref_pos)
    assert torch.equal(plan.rope_deltas, ref_delta.long())


def test_token_ids_path_equals_mm_token_type_ids_path():
    ids, types, mask, images, videos = _inputs("left_padded_batch", "left")
    a = build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                        video_grid_thw=videos)
    b = build_token_map(ids, attention_mask=mask, image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
                        image_grid_thw=images, video_grid_thw=videos)
    for name in ("modality", "media_index", "tubelet", "row", "col", "camera_index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def _random_parts(g, qwen3):
    parts = [("text", int(torch.randint(0, 4, (1,), generator=g)))]
    for _ in range(int(torch.randint(0, 4, (1,), generator=g))):
        def draw(lo, hi):
            return int(torch.randint(lo, hi, (1,), generator=g))

        t = 1 if draw(0, 2) else draw(1, 5)
        grid = (t, 2 * draw(1, 5), 2 * draw(1, 5))
        as_image = t == 1 and grid[1] > 2 and not qwen3
        parts.append(("image", grid) if as_image else ("video", grid))
        parts.append(("text", int(torch.randint(0, 5, (1,), generator=g))))
    return [p for p in parts if p != ("text", 0)] or [("text", 1)]


@pytest.mark.parametrize("layout", ["qwen2_5", "qwen3"])
def test_random_batches_match_get_rope_index(qwen2_5, qwen3, layout):
    g = torch.Generator().manual_seed(11)
    ref_model = qwen2_5 if layout == "qwen2_5" else qwen3
    for trial in range(40):
        n_rows = int(torch.randint(1, 4, (1,), generator=g))
        parts = [_random_parts(g, layout == "qwen3") for _ in range(n_rows)]
        padding = "left" if trial % 2 else "right"
        samples = [sample(p, qwen3=layout == "qwen3", seed=trial * 7 + i) for i, p in enumerate(parts)]
        ids, types, mask, images, videos = batch(samples, padding=padding)
        spg = None
        if videos is not None and layout == "qwen2_5":
            spg = torch.rand(len(videos), generator=g) * 3
        kwargs = {"second_per_grid_ts": spg} if layout == "qwen2_5" else {}
        ref_pos, ref_delta = ref_model.get_rope_index(ids, types, images,
                                                      None if videos is None else videos.clone(),
                                                      attention_mask=mask, **kwargs)
        tm = build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                             video_grid_thw=videos)
        spec = PositionSpec(layout=layout, tokens_per_second=TPS)
        plan = build_position_plan(tm, spec, second_per_grid_ts=spg)
        assert torch.equal(plan.rows.long(), ref_pos), (trial, parts)
        assert torch.equal(plan.rope_deltas, ref_delta.long()), (trial, parts)


# second_per_grid_ts = 31/7 puts tubelet 7 one position apart in float32 and float64; 2.3 does so at tubelet 25
ODD_SPG = [31 / 7, 2.3, 1.05]
ODD_VIDEOS = [[("text", 3), ("video", (8, 2, 2)), ("text", 2), ("video", (27, 2, 4)), ("text", 1),
               ("video", (31, 2, 2)), ("text", 2)]]


@pytest.mark.parametrize("form", ["float64", "float32", "bfloat16", "float16", "int64", "list"])
def test_qwen2_5_temporal_positions_in_the_dtype_of_second_per_grid_ts(qwen2_5, form):
    """transformers multiplies ``tokens_per_second * second_per_grid_t`` and ``arange(t)`` in the dtype of
    the second_per_grid_ts it is given (a Python float list: default float32 after a double product)."""
    ids, types, mask, images, videos = batch([sample(p, seed=3) for p in ODD_VIDEOS])
    values = [3, 1, 2] if form == "int64" else ODD_SPG
    spg = values if form == "list" else torch.tensor(values, dtype=getattr(torch, form))
    ref_pos, ref_delta = qwen2_5.get_rope_index(ids, types, images, videos, second_per_grid_ts=spg,
                                                attention_mask=mask)
    tm = build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                         video_grid_thw=videos, spatial_merge_size=2)
    plan = build_position_plan(tm, PositionSpec(tokens_per_second=TPS), second_per_grid_ts=spg)
    assert torch.equal(plan.rows.long(), ref_pos)
    assert torch.equal(plan.rope_deltas, ref_delta.long())


def test_float64_and_float32_second_per_grid_ts_really_differ_here(qwen2_5):
    ids, types, mask, images, videos = batch([sample(p, seed=3) for p in ODD_VIDEOS])
    spg = torch.tensor(ODD_SPG, dtype=torch.float64)
    pos64, _ = qwen2_5.get_rope_index(ids, types, images, videos, second_per_grid_ts=spg, attention_mask=mask)
    pos32, _ = qwen2_5.get_rope_index(ids, types, images, videos, second_per_grid_ts=spg.float(),
                                      attention_mask=mask)
    assert not torch.equal(pos64, pos32)  # the test above would pass trivially otherwise


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_random_float_second_per_grid_ts_match_get_rope_index(qwen2_5, dtype):
    g = torch.Generator().manual_seed(5)
    for trial in range(25):
        grids = [(int(torch.randint(1, 40, (1,), generator=g)), 2, 2) for _ in range(3)]
        parts = [[("text", 2)] + [x for grid in grids for x in (("video", grid), ("text", 1))]]
        ids, types, mask, images, videos = batch([sample(p, seed=trial) for p in parts])
        spg = (torch.rand(3, generator=g, dtype=torch.float64) * 5).to(dtype)
        ref_pos, _ = qwen2_5.get_rope_index(ids, types, images, videos, second_per_grid_ts=spg,
                                            attention_mask=mask)
        tm = build_token_map(ids, attention_mask=mask, mm_token_type_ids=types, image_grid_thw=images,
                             video_grid_thw=videos, spatial_merge_size=2)
        plan = build_position_plan(tm, PositionSpec(tokens_per_second=TPS), second_per_grid_ts=spg)
        assert torch.equal(plan.rows.long(), ref_pos), (trial, grids, spg.tolist())
