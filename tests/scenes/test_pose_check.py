"""The pose-direction check in the loaders: synthetic scans written in each format, correct and inverted.

A correct scan must load silently (no false positives, several seeds); the same scan with its poses stored
in the other direction must warn ``ConventionWarning`` naming the pose file and the option that fixes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posevlm.errors import ConfigError, ConventionWarning
from posevlm.geometry import matrix_to_axis_angle
from posevlm.scenes import load_predictions, load_scene, save_predictions, scene_summary
from posevlm.scenes.loaders.arkitscenes import load_arkitscenes
from posevlm.scenes.loaders.scannet import load_scannet
from posevlm.scenes.pose_check import POSE_CHECK_FRAMES
from posevlm.scenes.synthetic import (SynthConfig, generate_layout, generate_scene, generate_trajectory, render,
                                      scene_rng, synthetic_intrinsics)

# 40 frames at 5 fps: 8 s of walking, enough motion for the check to tell the two readings apart
CFG = SynthConfig(num_frames=40, image_hw=(48, 64), fps=5.0)


def synthetic_scan(seed: int, n: int = 12):
    """(w2c (n, 4, 4), K (3, 3), rgb (n, H, W, 3), depth (n, H, W) metres) of synthetic scene ``seed``,
    ``n`` frames spread over a 40-frame, 5 fps walk."""
    cfg = SynthConfig(seed=seed, num_frames=CFG.num_frames, image_hw=CFG.image_hw, fps=CFG.fps)
    rng = scene_rng(seed, 0)
    layout = generate_layout(rng)
    w2c = generate_trajectory(layout, rng, num_frames=cfg.num_frames, fps=cfg.fps)
    w2c = w2c[np.linspace(0, cfg.num_frames - 1, n).round().astype(int)]
    K = synthetic_intrinsics(cfg)
    out = render(layout, w2c, K, cfg.image_hw)
    return w2c, K, out.rgb, out.depth


def loads_silently(load, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConventionWarning)
        return load(*args, **kw)


def _rows(m: np.ndarray) -> str:
    return "".join(" ".join(f"{v:.9f}" for v in row) + "\n" for row in m)


# -- native layout (posevlm synth) -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_scenes_load_silently_and_inverted_ones_warn(tmp_path, seed):
    cfg = SynthConfig(seed=seed, num_frames=CFG.num_frames, image_hw=CFG.image_hw, fps=CFG.fps)
    path = generate_scene(tmp_path, 0, cfg)
    scene = loads_silently(load_scene, path)
    check = scene.provenance["pose_direction_check"]
    assert check["inverted_likely"] is False and check["agreement_as_given"] > 0.6
    assert len(check["frame_ids"]) == POSE_CHECK_FRAMES and check["frame_ids"][0] == 0 and check["frame_ids"][-1] == 39
    summary = scene_summary(scene)
    assert summary["poses_look_inverted"] is False and summary["pose_check_agreement"][0] > 0.6

    arrays = dict(np.load(path / "cameras.npz"))
    arrays["w2c_opencv"] = np.linalg.inv(arrays["w2c_opencv"])  # camera-to-world stored by mistake
    np.savez(path / "cameras.npz", **arrays)
    with pytest.warns(ConventionWarning, match=r"cameras\.npz: the poses look inverted .*c2w_to_w2c"):
        inverted = load_scene(path)
    assert scene_summary(inverted)["poses_look_inverted"] is True


# -- ScanNet layout ----------------------------------------------------------------------------------------
def write_scannet(root: Path, seed: int, *, poses: str) -> None:
    """A ScanNet SensReader-layout scan of synthetic scene ``seed``; ``poses`` "c2w" (correct) or "w2c"."""
    w2c, K, rgb, depth = synthetic_scan(seed)
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True)
    for i in range(len(w2c)):
        fid = 10 * i
        Image.fromarray(rgb[i]).save(root / "color" / f"{fid}.jpg", quality=95)
        Image.fromarray(np.round(depth[i] * 1000).astype(np.uint16)).save(root / "depth" / f"{fid}.png")
        pose = np.linalg.inv(w2c[i]) if poses == "c2w" else w2c[i]
        (root / "pose" / f"{fid}.txt").write_text(_rows(pose))
    K4 = np.eye(4)
    K4[:3, :3] = K
    for name in ("color", "depth"):
        (root / "intrinsic" / f"intrinsic_{name}.txt").write_text(_rows(K4))


@pytest.mark.parametrize("seed", [3, 4])
def test_scannet_world_to_camera_pose_files_warn_naming_the_option(tmp_path, seed):
    write_scannet(tmp_path / "right", seed, poses="c2w")
    scene = loads_silently(load_scannet, tmp_path / "right")
    assert scene.provenance["pose_direction_check"]["inverted_likely"] is False

    write_scannet(tmp_path / "wrong", seed, poses="w2c")
    with pytest.warns(ConventionWarning) as record:
        load_scannet(tmp_path / "wrong")
    msg = str(record[0].message)
    assert msg.startswith(f"{tmp_path / 'wrong' / 'pose'}: the poses look inverted")
    assert "pass pose_convention='w2c_opencv' to load_scannet" in msg
    fixed = loads_silently(load_scannet, tmp_path / "wrong", pose_convention="w2c_opencv")
    assert torch.allclose(fixed.cameras.w2c_opencv, scene.cameras.w2c_opencv, atol=1e-6)


# -- ARKitScenes layout ------------------------------------------------------------------------------------
def write_arkitscenes(root: Path, seed: int, *, traj: str) -> Path:
    """An ARKitScenes-layout scan of synthetic scene ``seed``; ``traj`` "w2c" (correct) or "c2w"."""
    w2c, K, rgb, depth = synthetic_scan(seed)
    frames = root / "4207_frames"
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (frames / sub).mkdir(parents=True)
    poses = w2c if traj == "w2c" else np.linalg.inv(w2c)
    rotvec = matrix_to_axis_angle(torch.from_numpy(poses[:, :3, :3])).numpy()
    lines = []
    for i in range(len(w2c)):
        ts = 100.0 + 0.5 * i
        name = f"4207_{ts:.3f}"
        Image.fromarray(rgb[i]).save(frames / "lowres_wide" / f"{name}.png")
        Image.fromarray(np.round(depth[i] * 1000).astype(np.uint16)).save(frames / "lowres_depth" / f"{name}.png")
        (frames / "lowres_wide_intrinsics" / f"{name}.pincam").write_text(
            f"{rgb.shape[2]} {rgb.shape[1]} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
        lines.append(f"{ts:.3f} " + " ".join(f"{v:.9f}" for v in (*rotvec[i], *poses[i, :3, 3])))
    (frames / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    return frames


def test_arkitscenes_camera_to_world_trajectory_warns_naming_the_option(tmp_path):
    right = loads_silently(load_arkitscenes, write_arkitscenes(tmp_path / "right", 5, traj="w2c"))
    assert right.provenance["pose_direction_check"]["inverted_likely"] is False
    wrong = write_arkitscenes(tmp_path / "wrong", 5, traj="c2w")
    with pytest.warns(ConventionWarning, match=r"lowres_wide\.traj: the poses look inverted.*"
                                               r"pass pose_convention='c2w_opencv' to load_arkitscenes"):
        load_arkitscenes(wrong)
    fixed = loads_silently(load_arkitscenes, wrong, pose_convention="c2w_opencv")
    assert torch.allclose(fixed.cameras.w2c_opencv, right.cameras.w2c_opencv, atol=1e-6)
    with pytest.raises(ConfigError, match="pose_convention"):
        load_arkitscenes(wrong, pose_convention="c2w_opengl")


# -- geometry predictions with depth maps -----------------------------------------------------------------
def test_predictions_with_depth_are_checked(tmp_path):
    w2c, K, _, depth = synthetic_scan(6)
    n = len(w2c)
    common = dict(frame_ids=np.arange(n), image_hw=CFG.image_hw, K_pixels=np.broadcast_to(K, (n, 3, 3)),
                  depth=depth[:, ::2, ::2])  # maps at half resolution: K is rescaled for the check
    loads_silently(load_predictions, save_predictions(tmp_path / "right.npz", w2c_opencv=w2c, **common))
    path = save_predictions(tmp_path / "wrong.npz", w2c_opencv=np.linalg.inv(w2c), **common)
    with pytest.warns(ConventionWarning, match=r"wrong\.npz: the poses look inverted"):
        load_predictions(path)


def test_scans_without_depth_are_not_checked(tmp_path):
    path = generate_scene(tmp_path, 0, CFG)
    for f in (path / "depth").iterdir():
        f.unlink()
    (path / "depth").rmdir()
    assert "pose_direction_check" not in load_scene(path).provenance
