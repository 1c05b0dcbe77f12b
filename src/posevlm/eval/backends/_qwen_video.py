"""The Qwen-VL video inputs of the hf backend; they live in :mod:`posevlm.models.qwen_video` (shared with
Spatial-MLLM's inputs) and are re-exported here under their old import path."""

from posevlm.models.qwen_video import (
    QWEN_VL_UTILS_BUDGET,
    build_processor_without_torchvision,
    load_processor,
    make_torch_video_processor,
    resize_frames,
    video_metadata,
    video_resize_hw,
)

__all__ = ["QWEN_VL_UTILS_BUDGET", "video_resize_hw", "resize_frames", "video_metadata",
           "make_torch_video_processor", "build_processor_without_torchvision", "load_processor"]
