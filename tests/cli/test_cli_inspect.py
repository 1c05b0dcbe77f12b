"""``posevlm inspect positions`` through typer's CliRunner."""

import json

import pytest
import torch
from typer.testing import CliRunner

from posevlm.cli import app
from posevlm.positions.inspect import inspect_positions, uniform_frame_ids
from posevlm.scenes.synthetic import synthetic_scan_w2c

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["inspect", "positions", *map(str, args)])


def test_human_output_shows_worked_example_numbers():
    res = invoke("--frames", 16, "--size", "644x476", "--mode", "pthw")
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in (
        "(8, 34, 46)",
        "34·46 = 1564",
        "12512",
        "1176",
        "17x23 = 391",
        "3128",
        "8·DD",
        "video starts at 10",
        "next text starts at 33",
        "10..26",
        "10..32",
        "tubelet 7",
    ):
        assert text in out, text
    # Qwen's token dim is the main line; the notes' 8·DD only on the labelled Spatial-MLLM line
    assert "each LLM token = one 2×2 merge of tubelet patches (merger input 4·C_vit, output the LLM hidden size)" in out
    dd_lines = [line for line in out.splitlines() if "8·DD" in line]
    assert len(dd_lines) == 1 and "Spatial-MLLM VGGT connector" in dd_lines[0] and "LLM video tokens" not in dd_lines[0]


def test_first_decode_step_is_the_model_continuation():
    res = invoke("--frames", 64, "--mode", "thw")
    assert res.exit_code == 0, res.output
    assert "first decode step at position 38 (posevlm models continue from the last token)" in res.stdout
    assert "first decode step at position 73" not in res.stdout
    assert "would decode at 73" in res.stdout  # transformers' max + 1, labelled
    report = json.loads(invoke("--frames", 64, "--mode", "thw", "--json").stdout)
    assert report["decode_start"] == 38 and report["decode_start_transformers"] == 73
    assert report["continuation_delta"] == 38 - report["sequence"]["total"]
    assert report["rope_deltas_transformers"] == 73 - report["sequence"]["total"]


def synthetic_cameras(frames=16, video_frames=300, seed=0):
    """What the CLI passes the inspector for a pose mode without --manifest."""
    return {"w2c_opencv": synthetic_scan_w2c(uniform_frame_ids(frames, video_frames), video_frames, seed),
            "camera_source": f"synthetic hand-held scan (seed {seed}, {video_frames} frames)"}


def test_json_round_trips_and_equals_the_report():
    res = invoke("--frames", 16, "--size", "644x476", "--mode", "pthw", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == inspect_positions(frames=16, size_wh=(644, 476), mode="pthw",
                                                       **synthetic_cameras())
    res = invoke(
        "--mode",
        "phw",
        "--model-family",
        "qwen3",
        "--qwen3-timestamp-tokens",
        2,
        "--set",
        "pose_hard_reset=false",
        "--text-after",
        0,
        "--json",
    )
    report = json.loads(res.stdout)
    assert report == inspect_positions(
        mode="phw", layout="qwen3", timestamp_tokens=2, overrides={"pose_hard_reset": False}, text_after=0,
        **synthetic_cameras(),
    )
    assert report["layout"] == "qwen3" and report["spec"]["pose_hard_reset"] is False
    assert report["sequence"]["timestamp_tokens"] == 16 and report["rope_segments"] == 8


def test_cli_passes_seeded_synthetic_cameras_to_pose_modes():
    report = json.loads(invoke("--mode", "phw", "--seed", 3, "--video-frames", 120, "--json").stdout)
    assert report == inspect_positions(mode="phw", video_frames=120, **synthetic_cameras(video_frames=120, seed=3))
    assert report["cameras"] == "synthetic hand-held scan (seed 3, 120 frames)"
    other = json.loads(invoke("--mode", "phw", "--seed", 4, "--video-frames", 120, "--json").stdout)
    assert [s["P"] for s in other["segments"]] != [s["P"] for s in report["segments"]]
    assert json.loads(invoke("--mode", "thw", "--json").stdout)["cameras"] is None  # no cameras without P
    res = invoke("--mode", "pthw", "--video-frames", 10)  # the count error, not a camera error
    assert res.exit_code == 2 and "--frames: frames=16 exceeds video_frames=10" in res.output


@pytest.mark.parametrize("size", ["644", "axb", "644x"])
def test_bad_size_names_the_option(size):
    res = invoke("--size", size)
    assert res.exit_code != 0 and "--size" in res.output and "644x476" in res.output


def test_bad_inputs_are_clear_errors():
    res = invoke("--frames", 0)
    assert res.exit_code != 0 and "--frames" in res.output and ">= 1" in res.output
    res = invoke("--mode", "pthw", "--layout", "qwen3")
    assert res.exit_code == 2
    assert (
        "not defined for layout 'qwen3'" in res.output
        and "phw" in res.output
        and "Traceback" not in res.output
    )
    res = invoke("--set", "nope=1")
    assert res.exit_code == 2 and "--set" in res.output
    res = invoke("--mode", "bogus")
    assert res.exit_code == 2 and "unknown position mode" in res.output


def _write_manifest(path, n=12, hw=None):
    w2c = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    w2c[:, 0, 3] = -0.1 * torch.arange(n, dtype=torch.float64)  # constant-speed slide along x
    ids = list(range(5, 5 + 7 * n, 7))
    doc = {
        "format": "posevlm.selected_frames",
        "schema_version": 2,
        "scene_name": "toy",
        "selected_frames": ids,
        "num_frames": n,
        "selected": [
            {"position": i, "frame_id": f, "w2c_opencv": w2c[i].tolist()} for i, f in enumerate(ids)
        ],
    }
    if hw is not None:
        doc["video"] = {"path": "toy.mp4", "n_frames": 200, "height": hw[0], "width": hw[1]}
        for s in doc["selected"]:
            s["image_hw"] = list(hw)
    path.mkdir(parents=True, exist_ok=True)
    (path / "selected_frames.json").write_text(json.dumps(doc))
    return ids


def test_manifest_supplies_frames_ids_and_cameras(tmp_path):
    ids = _write_manifest(tmp_path / "scene")
    res = invoke("--mode", "pthw", "--manifest", tmp_path / "scene", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["token_layout"]["frames"] == 12 and report["token_layout"]["grid_thw"][0] == 6
    assert report["frame_ids"] == ids and "manifest" in report["cameras"]
    video = [s for s in report["segments"] if s["kind"] == "video"]
    assert video[1]["frame_ids"] == ids[2:4]
    # P from the manifest's linear trajectory: 10 + 11 * tau / 5 (dynamic range S - 1 = 11)
    assert [s["P"] for s in video] == pytest.approx([10 + 11 * t / 5 for t in range(6)], abs=1e-3)
    res = invoke("--mode", "pthw", "--manifest", tmp_path / "scene", "--frames", 16)
    assert res.exit_code != 0 and "--frames" in res.output and "12 frames" in res.output
    res = invoke("--mode", "pthw", "--manifest", tmp_path / "missing")
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.parametrize("where", ["video", "selected"])
def test_manifest_frame_size_uses_the_hf_backend_resize(tmp_path, where):
    from posevlm.eval.backends._qwen_video import video_resize_hw

    _write_manifest(tmp_path / "scene", hw=(120, 160))
    if where == "selected":  # only selected[].image_hw records the size
        path = tmp_path / "scene" / "selected_frames.json"
        doc = json.loads(path.read_text())
        del doc["video"]
        path.write_text(json.dumps(doc))
    res = invoke("--mode", "pthw", "--manifest", tmp_path / "scene", "--json")
    assert res.exit_code == 0, res.output
    tl = json.loads(res.stdout)["token_layout"]
    h, w = video_resize_hw(120, 160, 12, patch_size=14)
    assert tl["image_hw"] == [120, 160] and tl["resized_hw"] == [h, w] and tl["size_rule"] == "qwen_vl_utils"
    assert tl["grid_thw"] == [6, h // 14, w // 14] and "manifest" in tl["size_source"]
    res = invoke("--mode", "pthw", "--manifest", tmp_path / "scene")
    assert "160x120" in res.stdout and f"{w}x{h}" in res.stdout and "video_resize_hw" in res.stdout
    # an explicit --size keeps the plain rounding
    res = invoke("--mode", "pthw", "--manifest", tmp_path / "scene", "--size", "160x120", "--json")
    tl = json.loads(res.stdout)["token_layout"]
    assert tl["resized_hw"] == [112, 168] and tl["size_rule"] == "round"
