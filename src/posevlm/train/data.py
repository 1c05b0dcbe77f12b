"""The supervised fine-tuning dataset: records -> per-sample model inputs, bad samples skipped by rule.

Notation: L tokens, V videos, S frames of one video, P patches, D = 3 * temporal_patch * patch², h w the
resized frame size.

``SFTDataset(items, processor, config)`` is a ``torch.utils.data.Dataset``; ``dataset[i]`` builds one sample
the way the hf eval backend builds a prompt (one copy of each rule):

1. frames of every video (:mod:`posevlm.train.media`: mp4 uniform ``round_full``, frame folder, sampling
   manifest folder with its cameras); a record with ``frame_ids`` (one video) sees exactly those views in that
   order (``FrameSpec.take``, as ``posevlm eval`` does: the shuffled pose questions), cameras following their frames;
2. resize to the qwen-vl-utils pixel budget (``posevlm.qwen_vision.video_resize_hw``, the eval's
   ``resize_frames``), then the checkpoint's video processor with ``do_resize=False`` (rescale, normalise,
   patchify; the torch-only stand-in when torchvision is missing); images go through its image processor;
3. the video metadata the eval hands the processor (:func:`posevlm.eval.backends._qwen_video.video_metadata`,
   ``frame_metadata``): ``source`` = the source fps, the frame ids and the frame count of the video; when the fps
   or the count is unknown (image folders, manifests without a ``video.fps``) or with ``qwen_vl_utils_list``, the
   list form qwen-vl-utils fakes for a list of frames (fps 2, ids 0..S'-1, S' = S rounded up to even). From it:
   Qwen2.5-VL (layout ``qwen2_5``): ``second_per_grid_ts`` per video = ``temporal_patch_size / sampled_fps``;
   Qwen3-VL (layout ``qwen3``): the ``<t seconds>`` of each temporal patch in the text
   (:func:`posevlm.qwen_vision.qwen3_timestamps`) and no ``second_per_grid_ts`` (its processor returns none);
4. ChatML with assistant-only labels (:mod:`posevlm.train.tokenize`, the layout of the family).

Sample (``dataset[i]``; every tensor on CPU)::

    sample_id           str, "<dataset>/<record id>"; index: int, the index actually served (after skips)
    input_ids, labels, mm_token_type_ids     (L,) int64; labels -100 outside assistant answers
    pixel_values_videos (P, D) float32       video_grid_thw (V, 3) int64
    second_per_grid_ts  (V,) float32, layout qwen2_5 only
    frame_ids           list of V (S,) int64 source frame ids, in processor order
    video_metadata      list of V dicts: fps, frames_indices, total_num_frames, mode (what the processor is given)
    w2c_opencv          list of V (S, 4, 4) float64 world-to-camera (OpenCV) or None (no cameras)
    K_pixels, image_hw  list of V (S, 3, 3) float64 / (S, 2) int64 (intrinsics of the *source* image size) or None
    video_tchw          list of V (S, 3, h, w) float32 in [0, 1], the resized frames (``with_video_tchw``)
    pixel_values (P, D), image_grid_thw (I, 3)   only for image records

Bad samples: a sample whose inputs fail (``posevlm.eval.errors.SampleError``: missing media, decode error,
frame count, processor error; and :mod:`posevlm.train.errors`: too long, no assistant turn, missing cameras)
is never returned silently. ``on_error="raise"`` raises it (debugging). ``on_error="skip"`` records it in the
:class:`~posevlm.train.bad_samples.BadSampleLog` (warning, counts per kind, sample ids, optional JSONL file)
and serves the next index (i+1, i+2, ... modulo the length): deterministic, so a resumed run sees the same
substitutes. A sample known bad in this process is not rebuilt. More than ``max_skips`` bad samples in a row
raise ``PosevlmError`` (the data, not a few samples, is broken). Anything else (a bug) propagates.

Trainer note: ``TrainingArguments(remove_unused_columns=False)`` is required -- transformers otherwise
strips the keys ``forward`` does not name (cameras, ``video_tchw``) before the collator sees them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from posevlm.errors import ConfigError, PosevlmError
from posevlm.eval.backends._qwen_video import resize_frames, video_metadata
from posevlm.eval.errors import InvalidInputError, ProcessorError, SampleError
from posevlm.eval.frames import COUNT_POLICIES, UNIFORM_RULES, FrameSpec
from posevlm.qwen_vision import qwen3_timestamps, video_resize_hw
from posevlm.train.bad_samples import BadSampleLog
from posevlm.train.datasets import DataItem, load_mix
from posevlm.train.errors import MissingCamerasError, NoAssistantTurnError
from posevlm.train.media import FrameConfig, load_image, load_video, resolve_media
from posevlm.train.tokenize import TEMPLATE_SYSTEM_PROMPT, ChatFormat, SpecialTokens, tokenize_conversation

__all__ = ["DataConfig", "SFTDataset", "load_train_processor", "sampled_fps", "build_sample"]


@dataclass(frozen=True)
class DataConfig:
    """Everything that shapes the training samples; serialised into the run directory.

    ``datasets``: a mix (``posevlm.train.datasets``), ``dataset_root`` else ``$DATASET_ROOT``, ``seed`` for
    ``%N``. Frames: ``num_frames`` / ``frame_rule`` / ``manifest_policy`` (:class:`~posevlm.train.media.
    FrameConfig`). Pixels: ``min_pixels`` / ``max_pixels`` per frame and ``total_pixels`` per video override
    the qwen-vl-utils budget (None: the eval's defaults). ``frame_metadata``: as the hf eval backend.
    ``model_max_length``: longer samples are bad samples (never truncated). ``system_prompt``: the system turn
    added to a conversation without one: ``auto`` (the chat template's: Qwen2.5-VL's "You are a helpful
    assistant.", none for Qwen3-VL), a text, or None (none). ``with_video_tchw``: keep the resized frames (Spatial-MLLM's VGGT input).
    ``require_cameras``: a video without per-frame cameras is a bad sample (pose-aware training).
    ``on_error``: ``skip`` or ``raise``; ``max_skips``: consecutive bad samples tolerated.
    """

    datasets: str = ""
    dataset_root: str | None = None
    seed: int = 0
    num_frames: int = 16
    frame_rule: str = "round_full"
    manifest_policy: str = "fail_sample"
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    frame_metadata: Literal["source", "qwen_vl_utils_list"] = "source"
    model_max_length: int = 8192
    system_prompt: str | None = TEMPLATE_SYSTEM_PROMPT
    with_video_tchw: bool = False
    require_cameras: bool = False
    on_error: Literal["skip", "raise"] = "skip"
    max_skips: int = 64
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = []
        choices = {"frame_rule": UNIFORM_RULES, "manifest_policy": COUNT_POLICIES,
                   "frame_metadata": ("source", "qwen_vl_utils_list"), "on_error": ("skip", "raise")}
        problems += [f"{k}={getattr(self, k)!r} (allowed: {', '.join(v)})" for k, v in choices.items()
                     if getattr(self, k) not in v]
        for name in ("num_frames", "model_max_length", "max_skips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (an int >= 1)")
        problems += [f"{k}={getattr(self, k)!r} (None or an int >= 1)" for k in ("min_pixels", "max_pixels",
                     "total_pixels") if getattr(self, k) is not None and getattr(self, k) < 1]
        if not isinstance(self.datasets, str):
            problems.append(f"datasets={self.datasets!r} (a mix like 'name%50,other')")
        if problems:
            raise ConfigError("invalid DataConfig: " + "; ".join(problems), field="data")

    @property
    def frames(self) -> FrameConfig:
        return FrameConfig(self.num_frames, self.frame_rule, self.manifest_policy)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DataConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown DataConfig key(s) {unknown}; known: {sorted(f.name for f in fields(cls))}",
                              field="data")
        return cls(**dict(data))


def load_train_processor(source: str | Path, family: str = "qwen2_5_vl", **hub_kwargs: Any):
    """The checkpoint's processor (transformers' own when torchvision imports, else the eval backend's assembly
    around the torch-only video processor)."""
    import transformers

    from posevlm.models.families import model_families

    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or built for another torch
        from posevlm.eval.backends._qwen_video import build_processor_without_torchvision

        cls = model_families.get(family).transformers_class("processor")
        return build_processor_without_torchvision(str(source), cls, hub_kwargs)
    return transformers.AutoProcessor.from_pretrained(str(source), **hub_kwargs)


def sampled_fps(metadata: Mapping[str, Any]) -> float:
    """transformers' ``VideoMetadata.sampled_fps``: ``len(frames_indices) / total_num_frames * fps``."""
    return len(metadata["frames_indices"]) / metadata["total_num_frames"] * metadata["fps"]


def _video_inputs(spec: FrameSpec, processor, config: DataConfig) -> dict[str, Any]:
    """Pixel values, grid, video metadata, seconds per grid step and the resized frames of one decoded video."""
    vp = processor.video_processor
    hw = video_resize_hw(*spec.frames.shape[1:3], spec.n_frames, patch_size=int(vp.patch_size),
                         min_pixels=config.min_pixels, max_pixels=config.max_pixels, total_pixels=config.total_pixels)
    video = resize_frames(spec.frames, hw)  # (S, 3, h, w) uint8
    try:
        out = vp(videos=[video], do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False,
                 return_tensors="pt")
    except Exception as exc:  # noqa: BLE001 - whatever the processor raises is this input's problem
        raise ProcessorError(f"the video processor rejected {spec.n_frames} frames of {hw} ({type(exc).__name__}: "
                             f"{exc})", input=spec.provenance.get("path") or spec.provenance.get("scene_dir")) from exc
    meta = video_metadata(spec.frame_ids, spec.source_fps, spec.total_frames, config.frame_metadata)
    return {"pixel_values_videos": out["pixel_values_videos"].to(torch.float32),
            "video_grid_thw": out["video_grid_thw"].to(torch.int64).reshape(1, 3), "video_metadata": meta,
            "second_per_grid_ts": int(vp.temporal_patch_size) / sampled_fps(meta), "video": video}


def _image_inputs(image: np.ndarray, processor, path: Path) -> dict[str, Any]:
    try:
        out = processor.image_processor(images=[image], return_tensors="pt")
    except Exception as exc:  # noqa: BLE001
        raise ProcessorError(f"the image processor rejected {path} ({type(exc).__name__}: {exc})", input=path) from exc
    return {"pixel_values": out["pixel_values"].to(torch.float32),
            "image_grid_thw": out["image_grid_thw"].to(torch.int64).reshape(1, 3)}


def _as_tensor(x, dtype: torch.dtype) -> torch.Tensor | None:
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)


def build_sample(item: DataItem, processor, config: DataConfig, *, chat: ChatFormat,
                 tokens: SpecialTokens | None = None) -> dict[str, Any]:
    """The model inputs of one item (module docstring); raises ``SampleError`` subclasses."""
    record = item.record
    if not record.has_assistant_turn:  # fail before decoding anything
        raise NoAssistantTurnError("the conversation has no assistant turn, so nothing would be trained; fix or drop "
                                   f"the record ({record.source})")
    merge2 = int(processor.video_processor.merge_size) ** 2
    sample: dict[str, Any] = {}
    videos = []
    views = record.extra.get("frame_ids")
    if views is not None and len(record.videos) != 1:
        raise InvalidInputError(f"frame_ids (the views of the question, in the order shown) needs exactly one video; "
                                f"the record has {len(record.videos)} ({record.source})")
    for rel in record.videos:
        spec = load_video(resolve_media(item.media_root, rel), config.frames)
        if views is not None:  # the record's own views in its own order (shuffled pose questions)
            spec = spec.take(views)
        if config.require_cameras and spec.w2c_opencv is None:
            raise MissingCamerasError(f"video {rel} has no per-frame cameras but require_cameras is on; point the "
                                      "record at a `posevlm sample` folder (selected_frames.json with w2c_opencv)",
                                      input=str(resolve_media(item.media_root, rel)))
        videos.append((spec, _video_inputs(spec, processor, config)))
    if videos:
        sample["pixel_values_videos"] = torch.cat([v["pixel_values_videos"] for _, v in videos])
        sample["video_grid_thw"] = torch.cat([v["video_grid_thw"] for _, v in videos])
        if chat.layout == "qwen2_5":
            sample["second_per_grid_ts"] = torch.tensor([v["second_per_grid_ts"] for _, v in videos],
                                                        dtype=torch.float32)
    sample["video_metadata"] = [v["video_metadata"] for _, v in videos]
    sample["frame_ids"] = [torch.as_tensor(s.frame_ids, dtype=torch.int64) for s, _ in videos]
    sample["w2c_opencv"] = [_as_tensor(s.w2c_opencv, torch.float64) for s, _ in videos]
    sample["K_pixels"] = [_as_tensor(s.K_pixels, torch.float64) for s, _ in videos]
    sample["image_hw"] = [_as_tensor(s.image_hw, torch.int64) for s, _ in videos]
    if config.with_video_tchw:
        sample["video_tchw"] = [v["video"].to(torch.float32).div_(255.0) for _, v in videos]
    images = [_image_inputs(load_image(resolve_media(item.media_root, rel)), processor, Path(rel))
              for rel in record.images]
    if images:
        sample["pixel_values"] = torch.cat([i["pixel_values"] for i in images])
        sample["image_grid_thw"] = torch.cat([i["image_grid_thw"] for i in images])
    video_tokens = [int(v["video_grid_thw"].prod()) // merge2 for _, v in videos]
    temporal_patch = int(processor.video_processor.temporal_patch_size)
    timestamps = [qwen3_timestamps(v["video_metadata"]["frames_indices"], v["video_metadata"]["fps"], temporal_patch)
                  for _, v in videos] if chat.layout == "qwen3" else []
    image_tokens = [int(i["image_grid_thw"].prod()) // int(processor.image_processor.merge_size) ** 2 for i in images]
    tok = tokenize_conversation(record.turns, processor.tokenizer, video_tokens=video_tokens, image_tokens=image_tokens,
                                video_timestamps=timestamps, chat=chat, max_length=config.model_max_length,
                                tokens=tokens)
    return {"sample_id": item.sample_id, "input_ids": tok.input_ids, "labels": tok.labels,
            "mm_token_type_ids": tok.mm_token_type_ids, **sample}


class SFTDataset(Dataset):
    """Map-style dataset of training samples (module docstring). ``bad_samples``: the log skipped samples go
    to (a fresh in-memory log by default; give it a path to share it across workers and ranks).
    ``extra_video_tokens``: extra pads per merged video token of the model (a Spatial-MLLM's
    ``extra_tokens_per_visual_token``: ``sequence_cat`` 1), as :class:`~posevlm.train.tokenize.ChatFormat`."""

    def __init__(self, items: Sequence[DataItem], processor, config: DataConfig = DataConfig(), *,
                 family: str = "qwen2_5_vl", bad_samples: BadSampleLog | None = None, extra_video_tokens: int = 0):
        if not items:
            raise ConfigError(f"no training samples in {config.datasets!r}; check the names and the %N percentages",
                              field="datasets", value=config.datasets)
        self.items = list(items)
        self.processor = processor
        self.config = config
        self.chat = ChatFormat.for_family(family, system_prompt=config.system_prompt,
                                          extra_video_tokens=extra_video_tokens)
        self.tokens = SpecialTokens.from_tokenizer(processor.tokenizer)
        self.bad_samples = bad_samples if bad_samples is not None else BadSampleLog()
        self._known_bad: set[int] = set()

    @classmethod
    def from_config(cls, config: DataConfig, processor, *, family: str = "qwen2_5_vl",
                    bad_samples: BadSampleLog | str | Path | None = None, extra_video_tokens: int = 0
                    ) -> "SFTDataset":
        """Load the mix ``config.datasets`` (under ``config.dataset_root`` or ``$DATASET_ROOT``)."""
        items = load_mix(config.datasets, root=config.dataset_root, seed=config.seed)
        log = bad_samples if isinstance(bad_samples, BadSampleLog) or bad_samples is None else BadSampleLog(bad_samples)
        return cls(items, processor, config, family=family, bad_samples=log, extra_video_tokens=extra_video_tokens)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_tokens(self) -> list[int | None]:
        """Each record's ``num_tokens`` (None where the record has none), for length grouping."""
        return [item.record.num_tokens for item in self.items]

    def build(self, index: int) -> dict[str, Any]:
        """Sample ``index`` exactly, no skipping; raises its ``SampleError`` with the sample id attached."""
        item = self.items[index]
        try:
            sample = build_sample(item, self.processor, self.config, chat=self.chat, tokens=self.tokens)
        except SampleError as exc:
            raise exc.for_sample(item.sample_id)
        return {**sample, "index": index}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.config.on_error == "raise":
            return self.build(index)
        n, first_error = len(self.items), None
        for step in range(min(n, self.config.max_skips + 1)):
            j = (index + step) % n
            if j in self._known_bad:
                continue
            try:
                return self.build(j)
            except SampleError as exc:
                self._known_bad.add(j)
                self.bad_samples.add(index=j, sample_id=self.items[j].sample_id, error=exc)
                first_error = first_error or exc
        raise PosevlmError(f"no usable training sample from index {index} on: {min(n, self.config.max_skips + 1)} in a "
                           f"row failed (bad samples so far: {json.dumps(self.bad_samples.counts)}; first: "
                           f"{first_error}); fix the data or raise max_skips")
