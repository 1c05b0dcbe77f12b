"""Qwen-VL video inputs: the frame resize, the video metadata handed to the processor, the processor itself
(transformers' own, or a torch-only stand-in for the video processor when torchvision is missing).

Shared by the hf eval backend (``posevlm.eval.backends.hf``, which re-exports these names from
``posevlm.eval.backends._qwen_video``) and Spatial-MLLM's inputs (``posevlm.models.spatial_mllm.processing``), so
both resize and normalise frames the same way.

Why the stand-in: transformers' ``Qwen2VLVideoProcessor`` / ``Qwen3VLVideoProcessor`` resize, convert
and normalise with ``torchvision.transforms.v2.functional``; with a CPU-only torch build and no
matching torchvision, the first cannot even be imported, so ``AutoProcessor`` fails. posevlm
resizes frames itself and calls the processor with ``do_resize=False, do_sample_frames=False``, so the
video processor only rescales, normalises and patchifies. ``make_torch_video_processor`` subclasses
``Qwen3VLVideoProcessor`` (importable without torchvision) and replaces its three torchvision calls
with torch code; ``_preprocess`` and ``patchify`` stay transformers' own, identical for Qwen2-VL and
Qwen3-VL once resizing is off. Patch, merge and temporal sizes, mean and std come from the
checkpoint's (video) preprocessor config. :func:`load_processor` picks transformers' processor when torchvision
imports, else assembles the stand-in.

The pixel budget and the frame resize rule (``QWEN_VL_UTILS_BUDGET``, ``video_resize_hw``) live in the
neutral :mod:`posevlm.qwen_vision` (pure arithmetic, shared with the position inspector) and are re-exported
here. ``video_resize_hw`` and ``video_metadata`` are tested live against the pinned qwen-vl-utils
(tests/eval/test_qwen_vl_utils_parity.py, dev extra).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posevlm.qwen_vision import QWEN_VL_UTILS_BUDGET, video_resize_hw

__all__ = ["QWEN_VL_UTILS_BUDGET", "video_resize_hw", "resize_frames", "video_metadata",
           "make_torch_video_processor", "build_processor_without_torchvision", "load_processor"]

#: Keys of a (video) preprocessor config the stand-in honours; everything else is ignored.
FALLBACK_VIDEO_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std",
                       "rescale_factor", "do_rescale", "do_normalize")


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """(S, H, W, 3) uint8 -> (S, 3, h, w) uint8: bicubic, antialiased, rounded and clamped, like
    torchvision's uint8 tensor resize that qwen-vl-utils uses. Frames already at ``hw`` are copied."""
    video = torch.from_numpy(np.array(frames, dtype=np.uint8, copy=True)).permute(0, 3, 1, 2)
    if tuple(video.shape[-2:]) == tuple(hw):
        return video.contiguous()
    out = torch.nn.functional.interpolate(video.float(), size=hw, mode="bicubic", align_corners=False,
                                          antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def video_metadata(frame_ids: np.ndarray, source_fps: float | None, total_frames: int | None,
                   mode: str) -> dict[str, Any]:
    """The processor's ``video_metadata`` plus the ``mode`` actually used.

    ``source``: the source fps, original frame ids and total frame count (Qwen3-VL timestamps are
    ``id / fps``; Qwen2.5-VL's ``second_per_grid_ts = 2 / (S / total * fps)``). Falls back to the list
    form when fps or length is unknown. ``qwen_vl_utils_list``: what qwen-vl-utils fakes for a list of
    frames: fps 2, ids 0..S'-1, total S', S' = S rounded up to even.
    """
    if mode == "source" and source_fps and total_frames:
        return {"fps": float(source_fps), "frames_indices": [int(i) for i in frame_ids],
                "total_num_frames": int(total_frames), "mode": "source"}
    n = math.ceil(len(frame_ids) / 2) * 2
    return {"fps": 2.0, "frames_indices": list(range(n)), "total_num_frames": n, "mode": "qwen_vl_utils_list"}


def make_torch_video_processor(config: dict[str, Any], *, video_processor_type: str | None = None):
    """A ``Qwen3VLVideoProcessor`` subclass instance whose torchvision calls are replaced by torch.

    It saves as the checkpoint's own video processor: ``to_dict`` (what ``save_pretrained`` writes) returns
    ``config`` with ``video_processor_type`` = the config's, else ``video_processor_type``, else
    ``Qwen2VLVideoProcessor``, so a checkpoint saved without torchvision loads with transformers' classes."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    saved = {k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    saved["video_processor_type"] = config.get("video_processor_type") or video_processor_type or \
        "Qwen2VLVideoProcessor"

    class TorchQwenVideoProcessor(Qwen3VLVideoProcessor):
        """Rescale + normalise + patchify only; the caller resizes (``do_resize=False``)."""

        def to_dict(self) -> dict[str, Any]:
            return dict(saved)

        def convert_to_rgb(self, video: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if video.shape[-3] == 1:
                return video.expand(*video.shape[:-3], 3, *video.shape[-2:])
            return video[..., :3, :, :]

        def normalize(self, image: torch.Tensor, mean, std, inplace: bool = False) -> torch.Tensor:
            mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            return image.sub_(mean_t).div_(std_t) if inplace else (image - mean_t) / std_t

        def resize(self, *args, **kwargs):
            raise RuntimeError("this video processor cannot resize without torchvision; posevlm resizes "
                               "frames itself and calls the processor with do_resize=False")

    processor = TorchQwenVideoProcessor(**{k: config[k] for k in FALLBACK_VIDEO_KEYS if k in config})
    processor.do_sample_frames = False
    return processor


def _read_file(source: str, name: str, hub_kwargs: dict) -> str | None:
    from transformers.utils import cached_file

    path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def build_processor_without_torchvision(source: str, processor_cls, hub_kwargs: dict):
    """``processor_cls`` (``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor``) assembled from the checkpoint's
    tokenizer, image processor (PIL backend), chat template and the torch-only video processor."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
    image_processor = AutoImageProcessor.from_pretrained(source, **hub_kwargs)
    # the video processor's config: its own file, the composite processor_config.json (transformers 5.x
    # save_pretrained), or the image processor's (older checkpoints)
    video_config = json.loads(_read_file(source, "video_preprocessor_config.json", hub_kwargs) or "{}")
    video_config = video_config or json.loads(_read_file(source, "processor_config.json", hub_kwargs) or "{}").get(
        "video_processor") or json.loads(_read_file(source, "preprocessor_config.json", hub_kwargs) or "{}")
    video_type = "Qwen3VLVideoProcessor" if processor_cls.__name__.startswith("Qwen3") else "Qwen2VLVideoProcessor"
    chat_template = _read_file(source, "chat_template.jinja", hub_kwargs)
    if chat_template is None:
        legacy = json.loads(_read_file(source, "chat_template.json", hub_kwargs) or "{}")
        chat_template = legacy.get("chat_template")
    if chat_template is None:
        chat_template = getattr(tokenizer, "chat_template", None)

    class Processor(processor_cls):
        # transformers checks the video processor against ``VideoProcessorMixin``, which it does not
        # export without torchvision; accept the stand-in, check everything else as usual.
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

        # saved under the stock class names, so the checkpoint loads with transformers' own classes
        def to_dict(self) -> dict[str, Any]:
            return {**super().to_dict(), "processor_class": processor_cls.__name__}

        def save_pretrained(self, save_directory, *args, **kwargs):
            files = super().save_pretrained(save_directory, *args, **kwargs)
            path = Path(save_directory) / "tokenizer_config.json"
            if path.is_file():
                data = json.loads(path.read_text())
                if data.get("processor_class") == type(self).__name__:
                    path.write_text(json.dumps({**data, "processor_class": processor_cls.__name__}, indent=2,
                                               ensure_ascii=False) + "\n")
            return files

    Processor.__name__ = Processor.__qualname__ = f"{processor_cls.__name__}WithTorchVideo"
    return Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
                     video_processor=make_torch_video_processor(video_config, video_processor_type=video_type))


def load_processor(source: str, processor_cls, hub_kwargs: dict) -> tuple[Any, str]:
    """(processor, video processor implementation) of a checkpoint directory or hub id: transformers'
    ``AutoProcessor`` (``"transformers"``) when torchvision imports, else ``processor_cls`` assembled around the
    torch-only video processor (``"posevlm_torch_fallback"``)."""
    import transformers

    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or built for another torch
        return build_processor_without_torchvision(source, processor_cls, hub_kwargs), "posevlm_torch_fallback"
    return transformers.AutoProcessor.from_pretrained(source, **hub_kwargs), "transformers"
