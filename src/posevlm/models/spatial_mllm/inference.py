"""``answer``: one question about one video with a Spatial-MLLM (models spec §4), as a short recipe.

load (a directory / hub id, or a loaded :class:`SpatialMLLM`) -> read frames (:mod:`posevlm.frames_io`: frames in
memory, an mp4, a frame folder or a sampling manifest) -> :func:`~posevlm.models.spatial_mllm.processing.
prepare_inputs` (``pixel_values_videos`` and ``video_tchw`` from the same resized frames, training pixel budget)
-> :meth:`SpatialMLLM.expand_inputs` (extra pads for ``sequence_cat``) -> cameras -> greedy ``generate`` -> the
decoded continuation.

Cameras (when the model's positions or camera attention read them): ``w2c_opencv`` given here wins; otherwise the
model's ``pose_source`` decides: ``vggt`` (its own camera head, nothing to pass) or ``manifest`` (the frame folder's
``selected_frames.json`` cameras; an error without them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.models.spatial_mllm.model import SpatialMLLM
from posevlm.models.spatial_mllm.processing import TRAINING_PIXELS, prepare_inputs

__all__ = ["answer"]


def _cameras(model: SpatialMLLM, frames, w2c_opencv, K_pixels, image_hw) -> dict[str, Any]:
    """The camera keyword arguments of ``generate`` (per video lists), or {}."""
    if w2c_opencv is None and model.config.needs_cameras and model.config.pose_source == "manifest":
        if frames.w2c_opencv is None:
            raise ShapeError("this model reads cameras from the frame manifest (pose_source='manifest') but the frames "
                             "carry none; pass w2c_opencv (S, 4, 4), frames sampled from a scene with poses, or load "
                             "the model with pose_source='vggt'", name="w2c_opencv")
        w2c_opencv, K_pixels, image_hw = frames.w2c_opencv, frames.K_pixels, frames.image_hw
    if w2c_opencv is None:
        return {}
    out = {"w2c_opencv": [torch.as_tensor(w2c_opencv, dtype=torch.float32, device=model.device)]}
    if K_pixels is not None and image_hw is not None:
        out["K_pixels"] = [torch.as_tensor(K_pixels, dtype=torch.float32, device=model.device)]
        out["image_hw"] = [torch.as_tensor(image_hw, dtype=torch.long, device=model.device)]
    return out


@torch.no_grad()
def answer(model_or_path: SpatialMLLM | str | Path, frames_or_video: Any, question: str, *,
           max_new_tokens: int = 1024, num_frames: int = 16, w2c_opencv=None, K_pixels=None, image_hw=None,
           min_pixels: int | None = TRAINING_PIXELS["min_pixels"], max_pixels: int | None = TRAINING_PIXELS["max_pixels"],
           system_prompt: str | None = None, do_sample: bool = False, device: str | torch.device | None = None,
           dtype: torch.dtype | str | None = None, local_files_only: bool = False, **generate_kwargs: Any) -> str:
    """The model's answer to ``question`` about one video.

    Args:
        model_or_path: a :class:`SpatialMLLM` (with ``processor``), or a checkpoint directory / hub id for
            :func:`~posevlm.models.spatial_mllm.from_pretrained` (``device``, ``dtype``, ``local_files_only``).
        frames_or_video: a list of PIL images / (H, W, 3) uint8 arrays, an (S, H, W, 3) array, an (S, 3, H, W)
            tensor, an mp4 path (``num_frames`` uniform frames), a frame folder or its ``selected_frames.json``.
        question: the full user text (a VSI-Bench question with its answer-format suffix, e.g. from
            ``posevlm.eval.prompts``).
        max_new_tokens: generation budget (spec §4: 1,024). Decoding is greedy unless ``do_sample``; other
            ``generate`` arguments pass through.
        w2c_opencv: (S, 4, 4) world-to-camera, OpenCV axes, one per frame in the given order, with optional
            ``K_pixels`` (S, 3, 3) and ``image_hw`` (2,) / (S, 2) for PRoPE; overrides VGGT / manifest cameras.
        min_pixels / max_pixels: per-frame resize budget (default: the training budget, 640x480 -> 644x476).
        system_prompt: a system turn (default: the chat template's).
    Returns:
        the decoded new text (special tokens removed).
    Raises:
        ConfigError: the model has no processor. ShapeError / InputFileError: bad frames or cameras (the fix named).
    """
    if isinstance(model_or_path, SpatialMLLM):
        model = model_or_path
    else:
        from posevlm.models.spatial_mllm.loading import from_pretrained

        model = from_pretrained(model_or_path, device=device, dtype=dtype, local_files_only=local_files_only)
    if model.processor is None:
        raise ConfigError("the model has no processor (model.processor is None); load it with processor=True or set "
                          "model.processor (posevlm.models.qwen_video.load_processor)", field="processor")
    from posevlm import frames_io  # a thin input module above posevlm.models: imported on use

    frames = frames_io.read_frames(frames_or_video, num_frames=num_frames)
    inputs = prepare_inputs(model.processor, frames.frames, question, frame_ids=frames.frame_ids,
                            source_fps=frames.source_fps, total_frames=frames.total_frames, min_pixels=min_pixels,
                            max_pixels=max_pixels, system_prompt=system_prompt)
    video_tchw = [v.to(model.device) for v in inputs.pop("video_tchw")]
    inputs.pop("resized_hw")
    inputs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in model.expand_inputs(inputs).items()}
    inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
    cameras = _cameras(model, frames, w2c_opencv, K_pixels, image_hw)
    tokenizer = model.processor.tokenizer
    generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    if not do_sample:
        generate_kwargs.update(temperature=None, top_p=None, top_k=None)
    out = model.generate(**inputs, video_tchw=video_tchw, **cameras, max_new_tokens=max_new_tokens,
                         do_sample=do_sample, **generate_kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    return model.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
