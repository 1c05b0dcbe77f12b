import numpy as np
import pytest
from PIL import Image

from posevlm.errors import InputFileError
from posevlm.scenes import ArrayStore, ImageFolderStore, VideoStore, load_scene, write_video
from posevlm.scenes.loaders import detect_format


def coded_frame(i: int, hw=(32, 48)) -> np.ndarray:
    """A frame whose mean brightness encodes its index (survives lossy coding)."""
    return np.full((*hw, 3), (i * 7) % 200 + 20, np.uint8)


def test_frame_folder_numeric_order_with_ids_over_10000(tmp_path):
    ids = [10070, 1008, 5, 99999, 10000]
    for i in ids:
        Image.fromarray(coded_frame(i % 30)).save(tmp_path / f"frame_{i}.png")
    scene = load_scene(tmp_path)
    assert scene.provenance["loader"] == "frame_folder"
    assert scene.frame_ids.tolist() == sorted(ids)
    frames = scene.read_rgb([10070, 1008])
    assert frames[0].mean() == coded_frame(10070 % 30).mean() and frames[1].mean() == coded_frame(1008 % 30).mean()
    with pytest.raises(KeyError, match="no frame id"):
        scene.read_rgb([1009])


def test_duplicate_frame_numbers_are_reported(tmp_path):
    Image.fromarray(coded_frame(1)).save(tmp_path / "a_7.png")
    Image.fromarray(coded_frame(1)).save(tmp_path / "b_7.png")
    with pytest.raises(InputFileError, match="share frame number 7"):
        ImageFolderStore.from_folder(tmp_path)


def test_video_round_trip_random_access(tmp_path):
    path = tmp_path / "v.mp4"
    assert write_video(path, (coded_frame(i) for i in range(150)), fps=30) == 150
    store = VideoStore(path)
    assert store.info() == {"num_frames": 150, "fps": 30.0, "height": 32, "width": 48}
    order = [149, 0, 77, 77, 3, 120]  # out of order, repeated, far apart (forces seeks)
    frames = store.read_many(order)
    means = frames.reshape(len(order), -1).mean(1)
    expected = np.array([coded_frame(i).mean() for i in order])
    assert np.abs(means - expected).max() < 3
    assert detect_format(path) == "video"
    scene = load_scene(path)
    assert scene.num_frames == 150 and scene.fps == 30.0 and scene.timestamps_s[30] == pytest.approx(1.0)


def test_broken_video_names_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(InputFileError, match="broken.mp4"):
        VideoStore(bad)
    with pytest.raises(InputFileError, match="does not exist"):
        VideoStore(tmp_path / "missing.mp4")


def test_array_store_sorts_and_reads_by_id():
    store = ArrayStore(np.arange(4)[:, None] * np.ones((4, 2)), [30, 10, 20, 0])
    assert store.frame_ids.tolist() == [0, 10, 20, 30]
    assert store.read_many([30, 0])[:, 0].tolist() == [0.0, 3.0]


_ENCODE_IN_CHILD = "import sys, numpy as np; from posevlm.scenes.video import write_video; " \
                   "write_video(sys.argv[1], np.load(sys.argv[2]), fps=30)"


@pytest.mark.slow
def test_video_bytes_do_not_depend_on_heap_garbage(tmp_path):
    """Issue 10 item 7: x264's macroblock tree reads uninitialised memory, so the same frames gave other
    bytes (decoded pixels up to ~40 levels apart) as heap contents changed. Two children encode the same
    frames with glibc filling fresh heap memory differently (MALLOC_PERTURB_)."""
    import os
    import subprocess
    import sys

    from posevlm.scenes.synthetic import SynthConfig, generate_layout, generate_trajectory, render, scene_rng
    from posevlm.scenes.synthetic import synthetic_intrinsics

    cfg = SynthConfig(seed=3, num_frames=24, image_hw=(120, 160))  # a scan whose bitstream did vary
    rng = scene_rng(cfg.seed, 0)
    layout = generate_layout(rng)
    w2c = generate_trajectory(layout, rng, num_frames=cfg.num_frames, fps=cfg.fps)
    np.save(tmp_path / "frames.npy", render(layout, w2c, synthetic_intrinsics(cfg), cfg.image_hw).rgb)
    outputs = []
    for perturb in ("1", "165"):
        out = tmp_path / f"perturb_{perturb}.mp4"
        subprocess.run([sys.executable, "-c", _ENCODE_IN_CHILD, str(out), str(tmp_path / "frames.npy")],
                       env={**os.environ, "MALLOC_PERTURB_": perturb}, check=True, timeout=120)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
