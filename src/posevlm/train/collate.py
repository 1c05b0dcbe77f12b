"""Batch collation for transformers ``Trainer``: samples of :class:`posevlm.train.data.SFTDataset` -> the keyword
arguments of ``model.forward``.

Notation: B batch, L the longest sample, V videos in the batch (samples in order, then videos within a
sample: the processor's order), S_v frames of video v, P patches.

Batch::

    input_ids           (B, L) int64, right-padded with the tokenizer's pad id
    attention_mask      (B, L) int64, 1 on tokens, 0 on padding
    labels              (B, L) int64, -100 on padding (and wherever the sample had -100)
    mm_token_type_ids   (B, L) int64, 0 text / 1 image / 2 video (transformers 5 builds stock mRoPE from it)
    pixel_values_videos (sum P, D) concatenated; video_grid_thw (V, 3) stacked; second_per_grid_ts (V,) float32
                        (Qwen2.5-VL samples; Qwen3-VL samples carry their timestamps in the text and have none)
    pixel_values, image_grid_thw    the same for images, when a sample has images
    pose_inputs="frame_ids":  frame_ids  list of V (S_v,) int64
    pose_inputs="cameras":    posevlm.models.pose_inputs.model_kwargs of the videos: frame_ids, w2c_opencv
                              (list of V (S_v, 4, 4) float32), and K_pixels (S_v, 3, 3) float32 / image_hw (S_v, 2)
                              when every video has intrinsics
    with_video_tchw:          video_tchw  list of V (S_v, 3, h_v, w_v) float32 in [0, 1] (Spatial-MLLM)
    with_sample_ids:          sample_ids  list of B str (pop it before ``model(**batch)``)

``position_ids`` are never built here: the stock model computes them from ``mm_token_type_ids`` and the
grids, and a posevlm pose-aware model from the cameras inside ``forward`` (dataset-side position ids made
the research code's pose modes silently do nothing). Mixed frame counts and sizes need no padding: the
pixel values are per-patch rows and the cameras per-video lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from posevlm.errors import ConfigError
from posevlm.models.pose_inputs import PoseInputs, model_kwargs
from posevlm.train.tokenize import IGNORE_INDEX

__all__ = ["SFTCollator", "POSE_INPUT_MODES"]

POSE_INPUT_MODES = ("none", "frame_ids", "cameras")


@dataclass(frozen=True)
class SFTCollator:
    """Pad and pack a list of samples (module docstring).

    ``pad_token_id``: the tokenizer's. ``pose_inputs``: ``none`` (stock model), ``frame_ids`` (positions with a
    frame-id temporal axis), ``cameras`` (pose positions / camera attention: every video must have cameras).
    ``pad_to_multiple_of``: round L up (tensor cores).
    """

    pad_token_id: int
    pose_inputs: Literal["none", "frame_ids", "cameras"] = "none"
    with_video_tchw: bool = False
    with_sample_ids: bool = False
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int):
            problems.append(f"pad_token_id={self.pad_token_id!r} (the tokenizer's pad_token_id)")
        if self.pose_inputs not in POSE_INPUT_MODES:
            problems.append(f"pose_inputs={self.pose_inputs!r} (allowed: {', '.join(POSE_INPUT_MODES)})")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            problems.append(f"pad_to_multiple_of={self.pad_to_multiple_of!r} (None or >= 1)")
        if problems:
            raise ConfigError("invalid SFTCollator: " + "; ".join(problems), field="collator")

    def _pad(self, rows: Sequence[torch.Tensor], value: int) -> torch.Tensor:
        out = pad_sequence(list(rows), batch_first=True, padding_value=value)
        if self.pad_to_multiple_of and out.shape[1] % self.pad_to_multiple_of:
            extra = self.pad_to_multiple_of - out.shape[1] % self.pad_to_multiple_of
            out = torch.nn.functional.pad(out, (0, extra), value=value)
        return out

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ConfigError("cannot collate an empty batch", field="samples")
        ids = [s["input_ids"] for s in samples]
        batch: dict[str, Any] = {
            "input_ids": self._pad(ids, self.pad_token_id),
            "attention_mask": self._pad([torch.ones_like(i) for i in ids], 0),
            "labels": self._pad([s["labels"] for s in samples], IGNORE_INDEX),
            "mm_token_type_ids": self._pad([s["mm_token_type_ids"] for s in samples], 0),
        }
        with_video = [s for s in samples if "video_grid_thw" in s]
        if with_video:
            batch["pixel_values_videos"] = torch.cat([s["pixel_values_videos"] for s in with_video])
            batch["video_grid_thw"] = torch.cat([s["video_grid_thw"] for s in with_video])
            timed = ["second_per_grid_ts" in s for s in with_video]
            if all(timed):
                batch["second_per_grid_ts"] = torch.cat([s["second_per_grid_ts"] for s in with_video])
            elif any(timed):
                raise ConfigError("some samples of the batch carry second_per_grid_ts (layout qwen2_5) and others "
                                  "not (qwen3): build every sample for one model family", field="samples")
        with_image = [s for s in samples if "image_grid_thw" in s]
        if with_image:
            batch["pixel_values"] = torch.cat([s["pixel_values"] for s in with_image])
            batch["image_grid_thw"] = torch.cat([s["image_grid_thw"] for s in with_image])
        if self.pose_inputs == "frame_ids":
            batch["frame_ids"] = [f for s in with_video for f in s["frame_ids"]]
        elif self.pose_inputs == "cameras" and with_video:
            batch.update(model_kwargs(self._pose_inputs(with_video)))
        if self.with_video_tchw:
            missing = [s["sample_id"] for s in with_video if "video_tchw" not in s]
            if missing:
                raise ConfigError(f"with_video_tchw is on but samples {missing} carry no video_tchw; build the dataset "
                                  "with DataConfig(with_video_tchw=True)", field="with_video_tchw")
            batch["video_tchw"] = [v for s in with_video for v in s["video_tchw"]]
        if self.with_sample_ids:
            batch["sample_ids"] = [s["sample_id"] for s in samples]
        return batch

    @staticmethod
    def _pose_inputs(samples: Sequence[dict[str, Any]]) -> list[PoseInputs]:
        lacking = [s["sample_id"] for s in samples if any(w is None for w in s["w2c_opencv"])]
        if lacking:
            raise ConfigError(f"pose_inputs='cameras' but the videos of samples {lacking} have no cameras; build the "
                              "dataset with DataConfig(require_cameras=True) so such samples are skipped, or train "
                              "on sampling-manifest folders", field="pose_inputs")
        return [PoseInputs(f, w, k, hw, source=s["sample_id"]) for s in samples
                for f, w, k, hw in zip(s["frame_ids"], s["w2c_opencv"], s["K_pixels"], s["image_hw"])]
