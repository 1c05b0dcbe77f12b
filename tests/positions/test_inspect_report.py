"""The position inspector's report: the token-shapes worked example and the positions spec section 2.4."""

import json

import numpy as np
import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.positions.inspect import inspect_positions, smart_resize_hw, uniform_frame_ids
from posevlm.scenes.synthetic import synthetic_scan_w2c


def inspect(*, seed=0, **kw):
    """inspect_positions with the CLI's default cameras: a seeded synthetic scan at the default frame ids
    (ignored by modes without a pose row)."""
    frames, video_frames = kw.get("frames", 16), kw.get("video_frames", 300)
    kw.setdefault("w2c_opencv", synthetic_scan_w2c(uniform_frame_ids(frames, video_frames), video_frames, seed))
    return inspect_positions(**kw)


@pytest.fixture(scope="module")
def pthw():
    return inspect(frames=16, size_wh=(644, 476), mode="pthw")


def _video(report):
    return [s for s in report["segments"] if s["kind"] == "video"]


def test_worked_example_token_layout(pthw):
    tl = pthw["token_layout"]
    assert (
        tl["image_hw"] == tl["resized_hw"] == [476, 644] and not tl["resized"] and not pthw["size"]["resized"]
    )
    assert tl["grid_thw"] == [8, 34, 46]
    assert tl["patches_per_frame"] == 1564 and tl["tubelets"] == 8
    assert tl["pixel_tokens"] == 12512 and tl["pixel_token_dim"] == 1176 == 3 * 2 * 14 * 14
    assert tl["pixel_values_shape"] == [12512, 1176]
    assert tl["merged_hw"] == [17, 23] and tl["tokens_per_tubelet"] == 391
    assert tl["llm_video_tokens"] == 3128 and tl["spatial_mllm_connector_dim"] == "8·DD"
    assert tl["merger_input_dim"] == "4·C_vit" and tl["merger_output_dim"] == "LLM hidden size"
    assert "2×2 merge" in tl["llm_token_note"] and "8·DD" not in tl["llm_token_note"]
    assert inspect_positions(mode="thw", embed_dim=1280)["token_layout"]["spatial_mllm_connector_dim"] == 8 * 1280


def test_pthw_matches_spec_worked_example(pthw):
    assert pthw["axes"] == ["P", "T", "H", "W"] and pthw["video_start"] == 10
    video = _video(pthw)
    assert [s["tubelet"] for s in video] == list(range(8)) and all(s["count"] == 391 for s in video)
    assert [s["rows"]["T"] for s in video] == [[10 + 2 * t, 10 + 2 * t] for t in range(8)]
    assert all(s["rows"]["H"] == [10, 26] and s["rows"]["W"] == [10, 32] for s in video)
    ps = [s["P"] for s in video]
    assert all(s["rows"]["P"] == [s["P"], s["P"]] for s in video)  # one P per tubelet
    assert all(10 <= p <= 25 for p in ps) and min(ps) == 10 and max(ps) == 25  # hard reset, 10 + 15 * P̄
    assert ps[0] == 10  # the reference (first) tubelet
    assert pthw["next_text_start"] == 33 and pthw["segments"][-1]["rows"]["T"] == [33, 37]
    assert pthw["rope_deltas_transformers"] == 38 - pthw["sequence"]["total"] and pthw["decode_start"] == 38
    assert pthw["continuation_delta"] == pthw["rope_deltas_transformers"]  # text after: last == max
    assert pthw["segments"][0]["rows"] == {a: [0, 9] for a in "PTHW"}


def test_thw_rows_match_hand_computed_mrope():
    r = inspect_positions(mode="thw", text_before=10, text_after=5)
    assert r["axes"] == ["T", "H", "W"] and r["spec"]["pose"] == "none" and r["cameras"] is None
    for s in _video(r):  # T = s + floor(tau * tokens_per_second * second_per_grid) = 10 + 2 tau
        t = s["tubelet"]
        assert s["rows"] == {"T": [10 + 2 * t, 10 + 2 * t], "H": [10, 26], "W": [10, 32]}
        assert s["first_token"] == 10 + 391 * t and s["last_token"] == 10 + 391 * t + 390
    assert r["next_text_start"] == 33  # spatial extent: 10 + max(17, 23)
    # tokens_per_second 25: T reaches 10 + 7 * 25; transformers 5.x still continues at 33, legacy at max + 1
    fast = inspect_positions(mode="thw", tokens_per_second=25)
    assert _video(fast)[-1]["rows"]["T"] == [185, 185] and fast["next_text_start"] == 33
    assert inspect_positions(mode="thw", tokens_per_second=25, legacy=True)["next_text_start"] == 186
    assert inspect_positions(mode="thw", overrides={"temporal": "index"})["segments"][2]["rows"]["T"] == [
        11,
        11,
    ]


@pytest.mark.parametrize("mode,layout", [("thw", "qwen2_5"), ("pthw", "qwen2_5"), ("phw", "qwen3")])
def test_counts_sum_to_sequence_length(mode, layout):
    r = inspect(mode=mode, layout=layout, text_before=7, text_after=3)
    seq = r["sequence"]
    assert sum(s["count"] for s in r["segments"]) == seq["total"]
    assert (
        seq["total"] == seq["text_before"] + seq["timestamp_tokens"] + seq["video_tokens"] + seq["text_after"]
    )
    # segments tile the sequence without gaps
    assert [s["first_token"] for s in r["segments"]] == [0] + [
        s["last_token"] + 1 for s in r["segments"][:-1]
    ]
    assert json.loads(json.dumps(r)) == r


def test_qwen3_one_rope_segment_per_tubelet():
    r = inspect(mode="phw", layout="qwen3", frames=16, size_wh=(640, 480), timestamp_tokens=4)
    assert r["token_layout"]["patch_size"] == 16 and r["token_layout"]["grid_thw"] == [8, 30, 40]
    video = _video(r)
    assert r["rope_segments"] == 8 and [s["segment"] for s in video] == list(range(8))
    kinds = [s["kind"] for s in r["segments"]]
    assert kinds == ["text"] + ["timestamp", "video"] * 8 + ["text"]
    for a, b in zip(video, video[1:]):  # each tubelet starts its own H/W block after the previous one
        assert b["rows"]["H"][0] > a["rows"]["H"][1] and b["rows"]["W"][0] > a["rows"]["W"][1]
        assert b["rows"]["W"][1] - b["rows"]["W"][0] == 19 and b["rows"]["H"][1] - b["rows"]["H"][0] == 14
    # anchored P uses the start of the first tubelet for all tubelets: P in [s0, s0 + 15]
    s0 = video[0]["rows"]["H"][0]
    assert min(s["P"] for s in video) == s0 and max(s["P"] for s in video) == s0 + 15
    stock = inspect_positions(mode="thw", layout="qwen3", frames=16, size_wh=(640, 480))
    assert all(s["rows"]["T"][0] == s["rows"]["H"][0] for s in _video(stock))  # T = segment start
    q25 = inspect(mode="phw", layout="qwen2_5")
    assert q25["rope_segments"] == 1 and {s["segment"] for s in _video(q25)} == {0}


def test_odd_frame_count_pads_the_last_tubelet():
    r = inspect(mode="pthw", frames=15)
    tl = r["token_layout"]
    assert tl["grid_thw"] == [8, 34, 46] and tl["padded_frames"] == 16 and tl["pixel_tokens"] == 12512
    last = _video(r)[-1]
    assert last["frames"] == [14, 15] and last["padded_frames"] == [15]
    assert last["frame_ids"] == [r["frame_ids"][14]] * 2 and len(r["frame_ids"]) == 15
    assert r["sequence"]["video_tokens"] == 3128


def test_size_rounding_and_errors():
    assert smart_resize_hw(476, 644, 28) == (476, 644) and smart_resize_hw(480, 640, 28) == (476, 644)
    r = inspect_positions(size_wh=(640, 480))
    assert r["size"] == {"asked_wh": [640, 480], "used_wh": [644, 476], "resized": True}
    assert "rounded to 644x476" in r["token_layout"]["size_note"]
    with pytest.raises(ConfigError, match="frames"):
        inspect_positions(frames=0)
    with pytest.raises(ConfigError, match="not defined for layout 'qwen3'"):
        inspect_positions(mode="pthw", layout="qwen3")
    with pytest.raises(ConfigError, match="w2c_opencv"):
        inspect_positions(mode="pthw", frames=4, w2c_opencv=torch.eye(4).repeat(3, 1, 1))


def test_given_cameras_drive_p():
    # identity rotations, centres moving at constant speed along x: P of tubelet tau is tau / 7 after reset
    w2c = torch.eye(4, dtype=torch.float64).repeat(16, 1, 1)
    w2c[:, 0, 3] = -torch.arange(16, dtype=torch.float64)
    r = inspect_positions(mode="pthw", frame_ids=list(range(100, 116)), w2c_opencv=w2c, camera_source="test")
    assert r["cameras"] == "test" and r["frame_ids"] == list(range(100, 116))
    assert [s["P"] for s in _video(r)] == pytest.approx([10 + 15 * t / 7 for t in range(8)], abs=1e-3)


def test_deterministic_synthetic_cameras():
    ids = uniform_frame_ids(16, 300)
    np.testing.assert_array_equal(synthetic_scan_w2c(ids, 300, 3), synthetic_scan_w2c(ids, 300, 3))
    a, b = inspect(mode="phw", seed=3), inspect(mode="phw", seed=3)
    assert a == b
    assert [s["P"] for s in _video(a)] != [s["P"] for s in _video(inspect(mode="phw", seed=4))]
    with pytest.raises(ConfigError, match="outside the 300-frame synthetic video"):
        synthetic_scan_w2c([0, 300], 300)


def test_pose_modes_need_cameras_from_the_caller():
    """The inspector generates no scene: a pose mode without w2c_opencv names the argument and the fix."""
    for mode, layout in (("pthw", "qwen2_5"), ("phw", "qwen3")):
        with pytest.raises(ConfigError, match="needs cameras: pass w2c_opencv") as err:
            inspect_positions(mode=mode, layout=layout)
        assert err.value.field == "w2c_opencv" and "synthetic_scan_w2c" in str(err.value)
    assert inspect_positions(mode="thw")["cameras"] is None  # modes without P need none
    ids = uniform_frame_ids(16, 300)
    given = inspect_positions(mode="pthw", w2c_opencv=synthetic_scan_w2c(ids, 300, 0), camera_source="scan")
    assert given["cameras"] == "scan" and given["frame_ids"] == ids


def test_decode_start_is_the_model_continuation_not_max_plus_one():
    """64 frames, hf_time: T reaches 10 + 2 * 31 = 72, text ends at 37; posevlm models decode at 38
    (continuation), transformers' rope_deltas would give 73."""
    r = inspect_positions(frames=64, mode="thw")
    total = r["sequence"]["total"]
    assert r["segments"][-1]["rows"]["T"] == [33, 37]
    assert r["decode_start"] == 38 and r["continuation_delta"] == 38 - total
    assert r["decode_start_transformers"] == 73 and r["rope_deltas_transformers"] == 73 - total
    assert "rope_deltas" not in r  # only the clearly labelled keys


def test_qwen_vl_utils_size_rule_matches_the_hf_backend_resize():
    from posevlm.eval.backends._qwen_video import video_resize_hw

    r = inspect_positions(frames=12, size_wh=(160, 120), size_rule="qwen_vl_utils", size_source="manifest x")
    h, w = video_resize_hw(120, 160, 12, patch_size=14)
    tl = r["token_layout"]
    assert (h, w) != (112, 168)  # not the plain rounding of 120x160
    assert tl["image_hw"] == [120, 160] and tl["resized_hw"] == [h, w] and tl["size_rule"] == "qwen_vl_utils"
    assert tl["grid_thw"] == [6, h // 14, w // 14] and r["size"]["used_wh"] == [w, h]
    assert "video_resize_hw" in tl["size_note"] and "manifest x" in tl["size_note"]
    assert inspect_positions(size_wh=(160, 120))["token_layout"]["resized_hw"] == [112, 168]
    with pytest.raises(ConfigError, match="size_rule"):
        inspect_positions(size_rule="bogus")


@pytest.mark.slow
def test_qwen_vl_utils_rule_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys; from posevlm.positions.inspect import inspect_positions; "
            "inspect_positions(frames=4, size_wh=(160, 120), size_rule='qwen_vl_utils'); "
            "print(any(m == 'transformers' or m.startswith('transformers.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
