"""Live parity with qwen-vl-utils (dev extra, pinned to the version the eval reimplements): frame counts
(``smart_nframes``), frame indices (the ``linspace(...).round()`` of its video readers), the per-frame
pixel budget and resize of ``fetch_video`` (``smart_resize``), and the metadata it fakes for frame lists.

qwen_vl_utils.vision_process imports torchvision at module level for its readers and its resize; none of
the code compared here needs it, so without torchvision a stand-in module satisfies that import. Videos
are stand-ins too: a fake ``decord`` reader reports a length and an fps and returns black frames, and the
final resize is recorded instead of computed; everything in between is qwen-vl-utils' own code.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib import metadata

import numpy as np
import pytest
import torch
from PIL import Image

from posevlm.eval.backends._qwen_video import QWEN_VL_UTILS_BUDGET, video_metadata, video_resize_hw
from posevlm.eval.errors import FrameCountMismatchError
from posevlm.eval.frames import Mp4Fps, Mp4Uniform, fps_nframes, qwen_nframes, uniform_frame_ids

PATCH = 14  # Qwen2.5-VL; Qwen3-VL uses 16


def _import_vision_process():
    stand_ins = {}
    try:
        import torchvision  # noqa: F401
    except ImportError:
        names = ("torchvision", "torchvision.io", "torchvision.transforms")
        tv, io, transforms = (types.ModuleType(name) for name in names)
        tv.__version__ = "0.0.0+posevlm-test-stand-in"
        transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
        transforms.functional = types.SimpleNamespace()
        tv.io, tv.transforms = io, transforms
        stand_ins = {"torchvision": tv, "torchvision.io": io, "torchvision.transforms": transforms}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module("qwen_vl_utils.vision_process")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def vp():
    return _import_vision_process()


@pytest.fixture
def fetch(vp, monkeypatch):
    """``fetch(total_frames, video_fps, height, width, **ele)`` -> (frame indices, resized (h, w), metadata)
    through qwen-vl-utils' ``fetch_video`` with the decord reader."""
    seen = {}

    class Reader:
        def __init__(self, path):
            self.total, self.fps, self.hw = seen["video"]

        def __len__(self):
            return self.total

        def get_avg_fps(self):
            return self.fps

        def get_batch(self, idx):
            seen["idx"] = list(idx)
            black = np.broadcast_to(np.uint8(0), (len(idx), *self.hw, 3))
            return types.SimpleNamespace(asnumpy=lambda: black)

    def resize(video, size, interpolation=None, antialias=None):
        seen["size"] = tuple(size)
        return torch.zeros(()).expand(video.shape[0], video.shape[1], *size)  # no allocation

    decord = types.ModuleType("decord")
    decord.VideoReader = Reader
    monkeypatch.setitem(sys.modules, "decord", decord)
    monkeypatch.setattr(vp, "get_video_reader_backend", lambda: "decord")
    recorder = types.SimpleNamespace(functional=types.SimpleNamespace(resize=resize))
    monkeypatch.setattr(vp, "transforms", recorder)

    def run(total_frames, video_fps, height, width, **ele):
        seen.clear()
        seen["video"] = (total_frames, video_fps, (height, width))
        _, meta = vp.fetch_video({"video": "scene.mp4", **ele}, image_patch_size=PATCH,
                                 return_video_metadata=True)
        return seen["idx"], seen["size"], meta

    return run


def test_pinned_version_is_the_one_reimplemented():
    assert metadata.version("qwen-vl-utils") == QWEN_VL_UTILS_BUDGET["version"]


def _frame_cases(seed, count):
    rng = np.random.default_rng(seed)
    cases = [(1000, 8), (6, 3), (7, 7), (16, 16), (46367, 236), (17859, 1728), (35133, 256), (5, 1)]
    for _ in range(count):
        total = int(rng.choice([rng.integers(2, 400), rng.integers(400, 80000)]))
        cases.append((total, int(rng.integers(1, min(total, 300) + 2))))
    return cases


def test_nframes_mode_counts_and_indices_equal_fetch_video(vp, fetch):
    """``{"nframes": n}``: count = smart_nframes, indices = its reader's float32 linspace, rounded."""
    checked = 0
    for total, n in _frame_cases(0, 400):
        ours_valid = 2 <= qwen_nframes(n) <= total
        try:
            ref_n = vp.smart_nframes({"nframes": n}, total_frames=total, video_fps=30.0)
        except ValueError:
            assert not ours_valid, (total, n)
            with pytest.raises(FrameCountMismatchError):
                Mp4Uniform("scene.mp4", n)._ids(types.SimpleNamespace(frame_ids=np.arange(total), fps=30.0))
            continue
        assert ours_valid and qwen_nframes(n) == ref_n, (total, n)
        idx, _, meta = fetch(total, 30.0, 2, 2, nframes=n)
        ours = Mp4Uniform("scene.mp4", n)._ids(types.SimpleNamespace(frame_ids=np.arange(total), fps=30.0))
        assert ours.tolist() == idx == list(meta["frames_indices"]), (total, n)
        assert uniform_frame_ids(total, ref_n, "round_full").tolist() == idx, (total, n)
        checked += 1
    assert checked > 300


def test_fps_mode_counts_and_indices_equal_fetch_video(vp, fetch):
    rng = np.random.default_rng(1)
    cases = [(300, 30.0, 2.0, 4, None), (30, 30.0, 2.0, 4, None), (3000, 30.0, 2.0, 4, 63),
             (5, 1.0, 2.0, 4, None), (90000, 29.97, 2.0, 4, None), (1201, 59.94, 0.5, 7, 33)]
    for _ in range(300):
        total = int(rng.integers(2, 30000))
        cases.append((total, float(rng.choice([10.0, 23.976, 24.0, 29.97, 30.0, 60.0])),
                      float(rng.choice([0.25, 0.5, 1.0, 2.0, 3.0])), int(rng.integers(1, 9)),
                      None if rng.random() < 0.5 else int(rng.integers(2, 800))))
    checked = 0
    for total, video_fps, fps, min_frames, max_frames in cases:
        ele = {"fps": fps, "min_frames": min_frames}
        if max_frames is not None:
            ele["max_frames"] = max_frames
        store = types.SimpleNamespace(frame_ids=np.arange(total), fps=video_fps)
        request = Mp4Fps("scene.mp4", fps=fps, min_frames=min_frames, max_frames=max_frames)
        try:
            ref_n = vp.smart_nframes(dict(ele), total_frames=total, video_fps=video_fps)
        except ValueError:
            with pytest.raises(FrameCountMismatchError):
                request._ids(store)
            continue
        assert fps_nframes(total, video_fps, fps, min_frames, max_frames) == ref_n, (total, video_fps, ele)
        idx, _, _ = fetch(total, video_fps, 2, 2, **ele)
        assert request._ids(store).tolist() == idx, (total, video_fps, ele)
        checked += 1
    assert checked > 250


def test_resize_budget_equals_fetch_video(fetch):
    """Per-frame pixel budget (min / max / total pixels, the frame count) and smart_resize of fetch_video."""
    rng = np.random.default_rng(2)
    f = 2 * PATCH
    sizes = [(1080, 1920), (968, 1296), (480, 640), (240, 320), (1440, 1920), (100, 2800), (2800, 60),
             (30, 40), (28, 28), (500, 500), (719, 1279), (37, 3001)]
    cases = []
    for h, w in sizes:
        for n in (2, 4, 8, 32):
            if h * w * n <= 9_000_000:
                cases.append((h, w, n, {}))
    for _ in range(250):
        h, w = sizes[int(rng.integers(len(sizes)))]
        n = int(rng.choice([2, 4, 6, 16, 64]))
        if h * w * n > 9_000_000:
            continue
        ele = {}
        if rng.random() < 0.5:
            ele["min_pixels"] = int(rng.integers(4, 400)) * f * f // int(rng.choice([1, 3]))
        if rng.random() < 0.5:
            ele["max_pixels"] = int(rng.integers(16, 2000)) * f * f + int(rng.integers(0, 999))
        if rng.random() < 0.5:
            ele["total_pixels"] = int(rng.integers(64, 20000)) * f * f
        cases.append((h, w, n, ele))
    checked = 0
    for h, w, n, ele in cases:
        kwargs = {k: ele.get(k) for k in ("min_pixels", "max_pixels", "total_pixels")}
        try:
            _, size, _ = fetch(n, 30.0, h, w, nframes=n, **ele)
        except (AssertionError, ValueError):  # qwen-vl-utils refuses max < min
            continue
        assert video_resize_hw(h, w, n, patch_size=PATCH, **kwargs) == size, (h, w, n, ele)
        checked += 1
    assert checked > 200


def test_smart_resize_equals_ours_for_large_frames(vp):
    """The resize rule alone at sizes too large to fake as videos: ours with the budget pinned to [lo, hi]."""
    f = 2 * PATCH
    rng = np.random.default_rng(3)
    for _ in range(2000):
        h, w = int(rng.integers(28, 8000)), int(rng.integers(28, 8000))
        if max(h, w) / min(h, w) > 200:
            continue
        lo = int(rng.integers(4, 512)) * f * f
        hi = lo + int(rng.integers(0, 20000)) * f * f
        # total budget so large that the frame cap is min(768 f², hi) and the floor 1.05 lo never binds
        if hi > QWEN_VL_UTILS_BUDGET["max_tokens"] * f * f or hi < int(lo * 1.05):
            continue
        ours = video_resize_hw(h, w, 2, patch_size=PATCH, min_pixels=lo, max_pixels=hi,
                               total_pixels=10**15)
        assert ours == vp.smart_resize(h, w, f, min_pixels=lo, max_pixels=hi), (h, w, lo, hi)


def test_frame_list_metadata_equals_fetch_video(vp, fetch):
    """For a list of frames qwen-vl-utils pads to an even count and fakes fps 2, ids 0..S'-1, total S'."""
    for count in (1, 2, 5, 8):
        frames = [Image.new("RGB", (56, 56)) for _ in range(count)]
        video, meta = vp.fetch_video({"video": frames}, image_patch_size=PATCH, return_video_metadata=True)
        ours = video_metadata(np.arange(count), None, None, "qwen_vl_utils_list")
        assert ours["fps"] == meta["fps"] and ours["frames_indices"] == meta["frames_indices"]
        assert ours["total_num_frames"] == meta["total_num_frames"] == video.shape[0]
