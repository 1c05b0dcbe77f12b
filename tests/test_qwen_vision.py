"""posevlm.qwen_vision: one copy of the Qwen-VL size and frame-count arithmetic, importable by every layer."""

import pytest

from layering import matching, modules_loaded_by, static_imports
from posevlm import qwen_vision


def test_is_pure_arithmetic():
    """Only ``math``: the position inspector, the frame sources and the hf backend can all import it."""
    names = static_imports("posevlm")["posevlm/qwen_vision.py"]
    assert names <= {"__future__", "__future__.annotations", "math"}


@pytest.mark.slow
def test_importing_it_loads_no_array_library():
    assert matching(modules_loaded_by("import posevlm.qwen_vision"), ("torch", "numpy", "posevlm.eval")) == []


def test_old_import_paths_are_the_same_functions():
    from posevlm.eval import frames
    from posevlm.eval.backends import _qwen_video
    from posevlm.positions import inspect

    assert _qwen_video.video_resize_hw is qwen_vision.video_resize_hw
    assert _qwen_video.QWEN_VL_UTILS_BUDGET is qwen_vision.QWEN_VL_UTILS_BUDGET
    assert frames.qwen_nframes is qwen_vision.qwen_nframes and frames.fps_nframes is qwen_vision.fps_nframes
    assert inspect.smart_resize_hw is qwen_vision.smart_resize_hw


@pytest.mark.parametrize("factor", [28, 32])
def test_smart_resize_is_the_nearest_multiple(factor):
    for h in range(1, 400, 7):
        for w in (1, 13, 644, 641):
            rh, rw = qwen_vision.smart_resize_hw(h, w, factor)
            assert rh % factor == 0 and rw % factor == 0 and rh >= factor and rw >= factor
            assert abs(rh - h) <= factor / 2 or rh == factor
            assert abs(rw - w) <= factor / 2 or rw == factor
    assert qwen_vision.smart_resize_hw(476, 644, 28) == (476, 644)


def test_video_resize_keeps_the_budget_and_the_aspect():
    f = 28
    lo, hi = 128 * f * f, 768 * f * f
    for h, w, n in ((480, 640, 16), (1080, 1920, 16), (48, 64, 4), (2000, 300, 8)):
        rh, rw = qwen_vision.video_resize_hw(h, w, n, patch_size=14)
        assert rh % f == 0 and rw % f == 0
        assert lo <= rh * rw <= hi
        assert abs(rw / rh - w / h) / (w / h) < 0.15
