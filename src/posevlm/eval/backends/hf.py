"""Hugging Face transformers backend: Qwen2.5-VL, Qwen3-VL and Spatial-MLLM answering from decoded frames.

``HFBackend(HFBackendConfig(model=...))`` loads a checkpoint (hub id or local directory) with
``from_pretrained``; ``generate([(prompt_text, FrameSpec), ...])`` returns one ``GenerationResult`` per
item. For each item the frames are resized to the qwen-vl-utils 0.0.14 video pixel budget
(``_qwen_video.video_resize_hw``), one user turn ``[video, text]`` goes through the checkpoint's chat
template, and the processor runs with ``do_resize=False, do_sample_frames=False`` plus the video
metadata: Qwen3-VL renders ``<t seconds>`` from it, Qwen2.5-VL derives ``second_per_grid_ts`` from it
(``frame_metadata="source"``: real fps and frame ids; ``"qwen_vl_utils_list"``: the fake metadata
qwen-vl-utils uses for frame lists). Batches are left-padded; decoding is greedy unless the
``GenerationSettings`` say otherwise.

The model family (``HFBackendConfig.family``, ``posevlm eval --model-type``; default from ``config.json``'s
``model_type``) comes from ``posevlm.models.families.model_families``: a stock family loads with its transformers
class and gets positions / camera attention installed here; a wrapper family (``spatial_mllm``,
``spatial_mllm_qwen3``: stock Qwen + VGGT + connector; ``vlm2``: the same + the VLM² stage) loads through the
family's loader, which installs them, and gets the processor's resized frames as ``video_tchw`` plus the prompt its
connector needs (``expand_inputs``). A VLM² model gets no ``memory_state``: every prompt is a new video.

Failures raise ``posevlm.eval.errors``: ``ProcessorError``, ``GenerationError``, ``OutOfMemoryError``
(after one retry at batch size 1), ``ModelLoadError`` (construction). Without torchvision the
transformers video processors cannot be imported; the processor is then assembled around a torch-only
stand-in (``_qwen_video``) and ``info["video_processor"]`` says so.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import torch

from posevlm.errors import ConfigError
from posevlm.eval.backends.base import BackendSpec
from posevlm.eval.backends._qwen_video import (
    QWEN_VL_UTILS_BUDGET, resize_frames, video_metadata, video_resize_hw,
)  # fmt: skip
from posevlm.eval.errors import (
    GenerationError, MissingInputError, ModelLoadError, OutOfMemoryError, ProcessorError, SampleError,
)  # fmt: skip
from posevlm.eval.frames import FrameSpec
from posevlm.eval.prompts import GenerationSettings
from posevlm.hub import hub_offline, hub_status

__all__ = ["HFBackendConfig", "HFBackend", "GenerationResult", "video_resize_hw", "resize_frames",
           "QWEN_VL_UTILS_BUDGET"]

Family = str  # a name of posevlm.models.families.model_families (qwen2_5_vl, qwen3_vl, ...)
Item = tuple[str, FrameSpec]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")


@dataclass(frozen=True)
class HFBackendConfig:
    """How to load and drive a transformers Qwen-VL checkpoint; serialised into every run.

    ``dtype="auto"`` is bfloat16 on CUDA and float32 on CPU; ``device=None`` picks CUDA when present.
    ``local_files_only`` (or ``HF_HUB_OFFLINE=1``) never touches the network. ``min_pixels`` /
    ``max_pixels`` (per frame) and ``total_pixels`` (per video) override the qwen-vl-utils budget.
    ``model_generation_defaults``: transformers fills decoding fields the settings leave unset from
    the checkpoint's ``generation_config.json`` (e.g. Qwen2.5-VL's ``repetition_penalty=1.05``, as in
    lmms-eval and the fork); ``False`` pins those fields to neutral values.
    ``positions``: None (the stock model, untouched) or a pose-aware position mode — a name of
    ``posevlm.positions.POSITION_MODES`` (``pthw``, ``phw``, ``thw_readapt_t``, ...) or a dict (``{"mode": ...,
    "legacy": bool, **field overrides}`` or a full PositionSpec dict); installed with
    ``posevlm.models.enable_pose_positions``. Pose modes read each sample's cameras from its frame manifest
    (``FrameSpec.w2c_opencv``); ``position_slot_axis`` overrides the default frequency-slot map.
    ``camera_attention``: None, a mode (``prope``, ``gta``, ``cape``) or a ``CameraAttentionSpec`` dict;
    ``pose_bias``: ``none``, ``alibi`` (fixed slopes) or ``learned`` (slopes from the checkpoint, else 0).
    Either one installs the positions too (``positions`` default ``thw``: stock positions, our builder).
    ``family`` (``posevlm eval --model-type``): a name of ``posevlm.models.families.model_families`` or ``auto``
    (from ``config.json``'s ``model_type``). Spatial-MLLM families (``spatial_mllm``, ``spatial_mllm_qwen3``,
    ``vlm2``) load through the family's loader (stock Qwen + VGGT + connector) with the positions / camera
    attention above as load options (a difference from what the checkpoint stores warns); their VGGT branch reads
    the same resized frames as the processor (``video_tchw``); ``pose_source`` (``vggt``: the model's camera head;
    ``manifest``: the frame manifest's cameras; None: what the checkpoint stores, VGGT by default) says where their
    cameras come from.
    """

    model: str
    family: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    device: str | None = None
    batch_size: int = 1
    local_files_only: bool = False
    revision: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    frame_metadata: Literal["source", "qwen_vl_utils_list"] = "source"
    model_generation_defaults: bool = True
    positions: str | dict | None = None
    position_slot_axis: list[int] | None = None
    camera_attention: str | dict | None = None
    pose_bias: str = "none"
    pose_source: str | None = None
    schema_version: int = 1

    def __post_init__(self) -> None:
        from posevlm.models.families import model_families

        choices = {"family": ("auto", *model_families.names()), "dtype": ("auto", *_DTYPES),
                   "attn_implementation": ("sdpa", "eager", "flash_attention_2"),
                   "frame_metadata": ("source", "qwen_vl_utils_list")}
        problems = [f"{k}={getattr(self, k)!r} (allowed: {', '.join(v)})" for k, v in choices.items()
                    if getattr(self, k) not in v]
        if not isinstance(self.model, str) or not self.model:
            problems.append(f"model={self.model!r} (a hub id or a local directory)")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size!r} (an int >= 1)")
        pixels = {k: getattr(self, k) for k in ("min_pixels", "max_pixels", "total_pixels")}
        problems += [f"{k}={v!r} (None or >= 1)" for k, v in pixels.items() if v is not None and v < 1]
        if self.pose_bias not in ("none", "alibi", "learned"):
            problems.append(f"pose_bias={self.pose_bias!r} (allowed: none, alibi, learned)")
        if self.pose_source not in (None, "vggt", "manifest"):
            problems.append(f"pose_source={self.pose_source!r} (allowed: vggt, manifest, or None for the checkpoint's)")
        elif self.pose_source is not None and self.family in model_families.names() \
                and not model_families.get(self.family).wraps:
            problems.append(f"pose_source={self.pose_source!r} is a Spatial-MLLM option; family {self.family!r} reads "
                            "cameras from the frame manifest only")
        try:
            self.camera_spec()
        except ConfigError as exc:
            problems.append(f"camera_attention={self.camera_attention!r} ({exc})")
        if self.positions is not None:
            from posevlm.positions import resolve_position_spec

            try:
                resolve_position_spec(self.positions, _layout(self.family))
            except ConfigError as exc:
                problems.append(f"positions={self.positions!r} ({exc})")
        if problems:
            raise ConfigError("invalid HFBackendConfig: " + "; ".join(problems), field="hf_backend")

    def camera_spec(self):
        """The CameraAttentionSpec of ``camera_attention`` + ``pose_bias``, or None."""
        if self.camera_attention is None and self.pose_bias == "none":
            return None
        from posevlm.models.camera_attention import CameraAttentionSpec

        value = self.camera_attention
        data = {"mode": value} if isinstance(value, str) else dict(value or {})
        if value is None:  # the bias alone
            data["mode"] = "none"
        data.setdefault("bias", self.pose_bias)
        return CameraAttentionSpec.from_dict(data)

    @property
    def offline(self) -> bool:
        return self.local_files_only or hub_offline()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HFBackendConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown HFBackendConfig key(s) {unknown}", field="hf_backend")
        return cls(**dict(data))


@dataclass
class GenerationResult:
    """One answer. ``n_input_tokens`` excludes left padding and includes the ``n_visual_tokens`` video
    placeholders (``prod(video_grid_thw) // merge**2``, times 1 + e for a Spatial-MLLM connector with e extra tokens
    per merged token, ``sequence_cat``); ``video_grid_thw`` is (T, h, w) in patches;
    ``prompt`` is the chat-templated text before placeholder expansion; ``timings_ms`` are those of
    the batch the sample ran in (``batch_size``)."""

    text: str
    n_input_tokens: int
    n_output_tokens: int
    n_visual_tokens: int
    video_grid_thw: list[int]
    frame_ids: list[int]
    resized_hw: list[int]
    video_metadata: dict[str, Any]
    second_per_grid_ts: float | None
    prompt: str
    batch_size: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    sample_id: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -------------------------------------------------------------------------------------- loading
def _resolve_source(cfg: HFBackendConfig) -> tuple[str, dict, bool]:
    """(local dir or hub id, its config.json, offline); ``ModelLoadError`` with the fix when unavailable. When the
    hub does not answer quickly, a cached copy is used offline (with a warning), else it fails at once."""
    from transformers.utils import cached_file

    path = Path(cfg.model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json; pass a checkpoint directory (what "
                                 "save_pretrained writes)", model=cfg.model)
        return str(path), json.loads((path / "config.json").read_text()), True
    if path.exists() or not _HUB_ID.match(cfg.model):
        raise ModelLoadError(f"model directory {cfg.model} does not exist (or is not a directory); pass a "
                             "checkpoint directory or a hub id such as Qwen/Qwen2.5-VL-7B-Instruct",
                             model=cfg.model)
    offline = cfg.offline
    if not offline and (problem := hub_status()) is not None:  # fail (or fall back) now, not after ~30 s of retries
        try:
            config_path = cached_file(cfg.model, "config.json", local_files_only=True, revision=cfg.revision)
        except OSError:
            raise ModelLoadError(f"model {cfg.model} is not in the local cache and the hub is unreachable: {problem}; "
                                 "fix the network / proxy, or download the model elsewhere and pass its directory",
                                 model=cfg.model) from None
        warnings.warn(f"hub unreachable ({problem}): loading the cached copy of {cfg.model}; set HF_HUB_OFFLINE=1 "
                      "to skip this check", stacklevel=3)
        return cfg.model, json.loads(Path(config_path).read_text()), True
    try:
        config_path = cached_file(cfg.model, "config.json", local_files_only=offline,
                                  revision=cfg.revision)
    except OSError as exc:
        where = "locally" if cfg.offline else "locally or on the hub"
        raise ModelLoadError(f"model {cfg.model} not found {where}; download it with "
                             f"`hf download {cfg.model}` (older huggingface_hub: `huggingface-cli download "
                             f"{cfg.model}`) or pass a local directory ({type(exc).__name__}: {exc})",
                             model=cfg.model) from exc
    return cfg.model, json.loads(Path(config_path).read_text()), offline


def _layout(family: str) -> str:
    """The position layout of a family name (``auto``: Qwen2.5-VL's, for checks before the checkpoint is read)."""
    from posevlm.models.families import model_families

    return model_families.get("qwen2_5_vl" if family == "auto" else family).layout


def _stored_spatial_positions(model_config: dict) -> dict | None:
    """What a Spatial-MLLM ``config.json`` stores about positions: posevlm's block, or the fork's
    ``pose_rope_config``; None when it stores neither."""
    block = model_config.get("posevlm_spatial_mllm") or {}
    stored = {k: block.get(k) for k in ("positions", "slot_axis", "camera_attention", "pose_source")
              if block.get(k) is not None}
    if model_config.get("pose_rope_config"):
        stored["pose_rope_config"] = model_config["pose_rope_config"]
    return stored or None


def _resolve_family(cfg: HFBackendConfig, model_config: dict):
    """The ``ModelFamily`` of the checkpoint (``config.json``'s ``model_type``), or the forced one."""
    from posevlm.models.families import family_for_model_type, model_families

    model_type = model_config.get("model_type")
    try:
        found = family_for_model_type(model_type)
    except ConfigError as exc:
        if cfg.family == "auto":
            raise ModelLoadError(f"{cfg.model}: {exc}; pass family= to force one", model=cfg.model) from None
        return model_families.get(cfg.family)
    if cfg.family not in ("auto", found.name):
        raise ModelLoadError(f"{cfg.model} is a {model_type} checkpoint but family={cfg.family!r}; "
                             "use family='auto'", model=cfg.model)
    return found


def _load_processor(source: str, family, hub_kwargs: dict) -> tuple[Any, str]:
    """(processor, video processor implementation): transformers' own when torchvision works."""
    from posevlm.models.qwen_video import load_processor

    return load_processor(source, family.transformers_class("processor"), hub_kwargs)


class HFBackend:
    """A loaded Qwen-VL checkpoint. ``info`` records everything that shapes its inputs and outputs."""

    def __init__(self, config: HFBackendConfig):
        import transformers

        self.config = config
        source, model_config, offline = _resolve_source(config)
        self.model_family = _resolve_family(config, model_config)
        self.family: Family = self.model_family.name
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = _DTYPES.get(config.dtype) or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        hub_kwargs = {"local_files_only": offline, "revision": config.revision}
        if config.pose_source is not None and not self.model_family.wraps:
            raise ModelLoadError(f"pose_source={config.pose_source!r} is a Spatial-MLLM option but {config.model} is a "
                                 f"{self.family} checkpoint; drop it (cameras come from the frame manifest)",
                                 model=config.model)
        try:
            if self.model_family.wraps:  # a posevlm model around a transformers one (Spatial-MLLM)
                model, video_impl, pose_info = self._load_wrapper(source, model_config, dtype, hub_kwargs)
                model_class = type(model).__name__
            else:
                self.processor, video_impl = _load_processor(source, self.model_family, hub_kwargs)
                model_cls = self.model_family.transformers_class("model")
                model = model_cls.from_pretrained(source, dtype=dtype, device_map=str(self.device),
                                                  attn_implementation=config.attn_implementation, **hub_kwargs)
                model_class = model_cls.__name__
        except (OSError, ImportError, ValueError) as exc:
            raise ModelLoadError(f"cannot load {config.model} as {self.family} ({type(exc).__name__}: "
                                 f"{exc}); check the checkpoint is complete, the attention backend is "
                                 "installed and, offline, that every file is in the local cache",
                                 model=config.model) from exc
        if not self.model_family.wraps:
            model, pose_info = self._enable_pose(model, source, hub_kwargs)
        self.model = model.eval()
        self.inner_model = self.model_family.inner_model(self.model)
        self.tokenizer = self.processor.tokenizer
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(self.processor.video_token)
        vp = self.processor.video_processor
        self.patch_size, self.merge_size = int(vp.patch_size), int(vp.merge_size)
        self.info = {
            "backend": "hf", "config": config.to_dict(), "family": self.family, "source": source,
            "model_class": model_class, "processor_class": type(self.processor).__name__,
            "video_processor": video_impl, "dtype": str(dtype).removeprefix("torch."),
            "device": str(self.device),
            "patch_size": self.patch_size, "merge_size": self.merge_size,
            "temporal_patch_size": int(vp.temporal_patch_size),
            "tokens_per_second": getattr(self.inner_model.config.vision_config, "tokens_per_second", None),
            "pixel_budget": {**QWEN_VL_UTILS_BUDGET, "min_pixels": config.min_pixels,
                             "max_pixels": config.max_pixels, "total_pixels": config.total_pixels,
                             "resize": "torch_bicubic_antialias_uint8"},
            "frame_metadata": config.frame_metadata, "offline": config.offline,
            **pose_info,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }

    def _load_wrapper(self, source: str, model_config: dict, dtype: torch.dtype,
                      hub_kwargs: dict) -> tuple[Any, str, dict[str, Any]]:
        """A wrapper family's checkpoint (Spatial-MLLM) through its loader, with the processor (the checkpoint's,
        else the base Qwen repo's) and the positions / camera attention of the config as load options. Returns
        (model, video processor implementation, the pose entries of ``info``)."""
        from posevlm.models import pose_positions_config
        from posevlm.models.qwen_video import load_processor
        from posevlm.positions import PositionSpec

        config, family = self.config, self.model_family
        impl = []
        processor_cls = family.transformers_class("processor")

        def processor(where: str, kwargs: dict):
            built, how = load_processor(where, processor_cls, kwargs)
            impl.append(how)
            return built

        camera = config.camera_spec()
        model = family.load(source, dtype=dtype, device=self.device, attn_implementation=config.attn_implementation,
                            processor=processor, positions=config.positions, slot_axis=config.position_slot_axis,
                            camera_attention=camera, pose_source=config.pose_source, **hub_kwargs)
        if model.processor is None:
            raise OSError(f"no processor for {config.model} (looked in {model.processor_source}); add the processor "
                          "files to the checkpoint directory")
        self.processor = model.processor
        stored = pose_positions_config(family.inner_model(model))
        self.position_spec = None if stored is None else PositionSpec.from_dict(stored["spec"])
        self.camera_spec = model.config.camera_attention
        requested = config.positions is not None or camera is not None
        slopes = None
        if self.camera_spec is not None and self.camera_spec.bias == "learned":
            from posevlm.models.camera_attention import SLOPES_NAME

            report = model.load_report
            slopes = "checkpoint" if report is not None and any(k.endswith(SLOPES_NAME) for k in report.loaded) \
                else "zeros"
            if slopes == "zeros":
                warnings.warn(f"pose_bias='learned' but {config.model} holds no learned slopes: they start at 0, "
                              "so the bias changes nothing", stacklevel=3)
        return model, impl[0] if impl else "transformers", {
            "positions": stored, "positions_origin": ("backend config" if requested else "checkpoint") if stored else None,
            "checkpoint_positions": _stored_spatial_positions(model_config),
            "camera_attention": None if self.camera_spec is None
            else self.camera_spec.to_dict(), "learned_slopes": slopes,
            "spatial_mllm": {**model.config.to_dict(), "cameras_from": (
                model.config.pose_source if model.config.needs_cameras else None),
                "extra_tokens_per_visual_token": model.extra_tokens_per_visual_token,
                "processor_source": model.processor_source, "load_report": model.load_report.summary()
                if model.load_report is not None else None}}

    def _enable_pose(self, model, source: str, hub_kwargs: dict) -> tuple[Any, dict[str, Any]]:
        """Install the position spec / camera attention the config asks for, else the checkpoint's own
        (``config.posevlm_positions``, as ``load_pose_model`` does); load learned bias slopes. Returns the model
        and the resolved specs for ``info``."""
        from posevlm.models import enable_pose_positions, load_learned_slopes, pose_positions_config
        from posevlm.models.camera_attention import CameraAttentionSpec
        from posevlm.positions import PositionSpec, resolve_position_spec

        config = self.config
        stored = pose_positions_config(model)
        self.position_spec, self.camera_spec = None, config.camera_spec()
        origin = None
        if config.positions is not None or self.camera_spec is not None:
            tps = self.model_family.tokens_per_second(model.config)
            defaults = {"tokens_per_second": tps} if tps is not None else {}
            slot_axis = config.position_slot_axis
            if config.positions is None and stored is not None:  # camera flags only: keep the checkpoint's positions
                self.position_spec = PositionSpec.from_dict(stored["spec"])
                slot_axis = slot_axis or stored.get("slot_axis")
            else:
                self.position_spec = resolve_position_spec(config.positions or "thw", self.model_family.layout,
                                                           **defaults)
            if stored is not None:
                warnings.warn(f"{config.model} carries its own posevlm spec; the backend config replaces "
                              f"{'its camera attention' if config.positions is None else 'it'} (run info records "
                              "both)", stacklevel=3)
            model = enable_pose_positions(model, self.position_spec, slot_axis=slot_axis,
                                          camera_attention=self.camera_spec)
            origin = "backend config"
        elif stored is not None:  # a posevlm checkpoint: its own spec, never silently stock
            model = enable_pose_positions(model)
            self.position_spec = PositionSpec.from_dict(stored["spec"])
            cam = stored.get("camera_attention")
            self.camera_spec = None if cam is None else CameraAttentionSpec.from_dict(cam)
            origin = "checkpoint"
        slopes = None
        if self.camera_spec is not None and self.camera_spec.bias == "learned":
            loaded = load_learned_slopes(model, source, revision=hub_kwargs["revision"],
                                         local_files_only=hub_kwargs["local_files_only"])
            slopes = "checkpoint" if loaded else "zeros"
            if not loaded:
                warnings.warn(f"pose_bias='learned' but {config.model} holds no learned slopes: they start at 0, "
                              "so the bias changes nothing", stacklevel=3)
        resolved = pose_positions_config(model) if origin else None
        return model, {"positions": resolved, "positions_origin": origin, "checkpoint_positions": stored,
                       "camera_attention": None if self.camera_spec is None else self.camera_spec.to_dict(),
                       "learned_slopes": slopes}

    def effective_generation(self, settings: GenerationSettings) -> dict[str, Any]:
        """The decoding values ``generate`` uses (``kwargs``: the call). transformers fills every field
        the call leaves unset from the checkpoint's generation config; with
        ``model_generation_defaults=False`` the fields that change the output are pinned first."""
        kwargs = settings.generate_kwargs()
        if not self.config.model_generation_defaults:
            sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": 0} if settings.do_sample else {}
            kwargs = {"repetition_penalty": 1.0, **sampling, **kwargs}
        kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        defaults = self.model.generation_config.to_dict()
        keys = ("max_new_tokens", "do_sample", "num_beams", "temperature", "top_p", "top_k",
                "repetition_penalty", "eos_token_id", "pad_token_id")
        merged = {k: kwargs.get(k, defaults.get(k)) for k in keys}
        if merged["eos_token_id"] is None:
            merged["eos_token_id"] = self.tokenizer.eos_token_id
        if not merged["do_sample"]:
            merged.update(temperature=None, top_p=None, top_k=None)
        return {**merged, "kwargs": kwargs}

    # ----------------------------------------------------------------------------------- quirks
    def _prepare(self, batch: Sequence[Item]) -> tuple[Any, list[dict]]:
        """Resize, template and process a batch; returns (processor output, per-item records)."""
        cfg, videos, metas, texts, per = self.config, [], [], [], []
        for prompt, spec in batch:
            hw = video_resize_hw(*spec.frames.shape[1:3], spec.n_frames, patch_size=self.patch_size,
                                 min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                                 total_pixels=cfg.total_pixels)
            videos.append(resize_frames(spec.frames, hw))
            meta = video_metadata(spec.frame_ids, spec.source_fps, spec.total_frames, cfg.frame_metadata)
            metas.append({k: v for k, v in meta.items() if k != "mode"})
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
            texts.append(self.processor.apply_chat_template(messages, tokenize=False,
                                                            add_generation_prompt=True))
            per.append({"resized_hw": list(hw), "video_metadata": meta, "prompt": texts[-1],
                        "frame_ids": spec.frame_ids.tolist()})
        inputs = self.processor(text=texts, videos=videos, video_metadata=metas, do_resize=False,
                                do_sample_frames=False, cap_pixels_per_frame=False, padding=True,
                                padding_side="left", return_tensors="pt")
        if self.model_family.wraps:  # Spatial-MLLM: its connector's prompt, and the frames the processor got
            inputs = self.model.expand_inputs(dict(inputs))
            inputs["video_tchw"] = videos
        return inputs, per

    def _run(self, batch: Sequence[Item], settings: GenerationSettings,
             ids: Sequence[Any]) -> list[GenerationResult]:
        one = ids[0] if len(ids) == 1 else None
        t0 = time.perf_counter()
        try:
            inputs, per = self._prepare(batch)
        except Exception as exc:  # noqa: BLE001 - whatever the processor raises is this input's problem
            raise ProcessorError(f"the {self.family} processor rejected the input ({type(exc).__name__}: "
                                 f"{exc}); check the frames (size, count) and the prompt", sample_id=one,
                                 input=self.config.model) from exc
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else
                  [x.to(self.device) for x in v] if k == "video_tchw" else v for k, v in inputs.items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        pose_kwargs = self._pose_kwargs(batch, ids)
        generation = self.effective_generation(settings)
        t1 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = self.model.generate(**inputs, **pose_kwargs, **generation["kwargs"])
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
                raise _OOM() from exc
            raise GenerationError(f"generate failed ({type(exc).__name__}: {exc})", sample_id=one,
                                  input=self.config.model) from exc
        t2 = time.perf_counter()
        new = out[:, inputs["input_ids"].shape[1]:].cpu()
        texts = self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        timings = {"preprocess": (t1 - t0) * 1e3, "generate": (t2 - t1) * 1e3,
                   "decode": (time.perf_counter() - t2) * 1e3}
        grid, spg = inputs["video_grid_thw"].cpu().tolist(), inputs.get("second_per_grid_ts")
        eos = generation["eos_token_id"]
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        return [GenerationResult(
            text=texts[i], n_input_tokens=int(inputs["attention_mask"][i].sum()),
            n_output_tokens=_n_generated(new[i].tolist(), eos, self.tokenizer.pad_token_id),
            n_visual_tokens=int((inputs["input_ids"][i] == self.video_token_id).sum()),
            video_grid_thw=grid[i],
            second_per_grid_ts=None if spg is None else float(spg[i]), batch_size=len(batch),
            timings_ms=dict(timings), sample_id=ids[i], **per[i]) for i in range(len(batch))]

    def _pose_kwargs(self, batch: Sequence[Item], ids: Sequence[Any]) -> dict[str, Any]:
        """Per-video ``w2c_opencv`` / ``frame_ids`` (and ``K_pixels`` / ``image_hw`` for PRoPE) for the position
        spec and camera attention; empty for a stock model."""
        if self.position_spec is None:
            return {}
        from posevlm.models.pose_inputs import model_kwargs
        from posevlm.pose_io import from_frame_spec
        from posevlm.positions import spec_needs

        needs = spec_needs(self.position_spec)
        if self.model_family.wraps and self.model.config.pose_source == "vggt":  # the model's camera head
            needs, cameras = {**needs, "w2c_opencv": False}, False
        else:
            cameras = self.camera_spec is not None
        if not needs["w2c_opencv"] and not cameras:
            return {"frame_ids": [torch.as_tensor(s.frame_ids, device=self.device) for _, s in batch]} \
                if needs["frame_ids"] else {}
        want_k = self.camera_spec is not None and self.camera_spec.mode == "prope"
        poses = []
        for (_, spec), sid in zip(batch, ids):
            pose = from_frame_spec(spec)
            if pose is None or (want_k and pose.K_pixels is None):
                what = "intrinsics (K_pixels)" if pose is not None else "one camera per frame"
                raise MissingInputError(
                    f"{self._pose_label()} need {what}, but this sample's frames carry none; evaluate with "
                    "--frames folder_manifest on a folder sampled from scenes with poses (or geometry "
                    "predictions)", sample_id=sid, input=self.config.model)
            poses.append(pose)
        return model_kwargs(poses, device=self.device)  # frame ids and, when every video has them, intrinsics

    def _pose_label(self) -> str:
        parts = [f"positions {self.config.positions!r}"] if self.config.positions else []
        if self.camera_spec is not None:
            parts.append(f"camera attention {self.camera_spec.mode!r} (bias {self.camera_spec.bias!r})")
        return " and ".join(parts)

    # ------------------------------------------------------------------------------- public API
    def generate(self, batch: Sequence[Item], *, generation: GenerationSettings | None = None,
                 sample_ids: Sequence[Any] | None = None) -> list[GenerationResult]:
        """Answer every ``(prompt_text, FrameSpec)`` in chunks of ``config.batch_size`` (greedy by
        default). A chunk that runs out of memory is retried once sample by sample; running out again
        raises ``OutOfMemoryError``. Processor and generation failures raise at once."""
        settings = generation or GenerationSettings()
        ids = list(sample_ids) if sample_ids is not None else [None] * len(batch)
        if len(ids) != len(batch):
            raise ConfigError(f"sample_ids has {len(ids)} entries for {len(batch)} inputs",
                              field="sample_ids")
        size, results = self.config.batch_size, []
        for start in range(0, len(batch), size):
            chunk, chunk_ids = batch[start:start + size], ids[start:start + size]
            try:
                results += self._run(chunk, settings, chunk_ids)
                continue
            except _OOM:
                self._free_memory()
            for item, sid in zip(chunk, chunk_ids):
                try:
                    results += self._run([item], settings, [sid])
                except _OOM as exc:
                    self._free_memory()
                    raise OutOfMemoryError(f"out of memory at batch size 1 on {self.device} "
                                           f"({exc.__cause__}); lower max_pixels/total_pixels or the frame "
                                           "count", sample_id=sid, input=self.config.model) from exc.__cause__
        return results

    def generate_each(self, batch: Sequence[Item], *, generation: GenerationSettings | None = None,
                      sample_ids: Sequence[Any] | None = None) -> list[GenerationResult | SampleError]:
        """``generate`` with per-sample error isolation: a failing chunk is split and each sample retried
        alone, so one bad sample never takes its batch-mates with it; failures come back as
        ``SampleError`` objects carrying their sample id."""
        ids = list(sample_ids) if sample_ids is not None else [None] * len(batch)
        size, out = self.config.batch_size, []
        for start in range(0, len(batch), size):
            chunk, chunk_ids = batch[start:start + size], ids[start:start + size]
            try:
                out += self.generate(chunk, generation=generation, sample_ids=chunk_ids)
                continue
            except SampleError as exc:
                if len(chunk) == 1:
                    out.append(exc.for_sample(chunk_ids[0]))
                    continue
            for item, sid in zip(chunk, chunk_ids):
                try:
                    out += self.generate([item], generation=generation, sample_ids=[sid])
                except SampleError as exc:
                    out.append(exc.for_sample(sid))
        return out

    def _free_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _OOM(Exception):
    """Internal: generation ran out of memory (the cause is chained); becomes a retry or OutOfMemoryError."""


def _n_generated(tokens: list[int], eos: set[int], pad_id: int | None) -> int:
    """New tokens up to and including the first end-of-sequence token; trailing padding not counted."""
    for i, tok in enumerate(tokens):
        if tok in eos:
            return i + 1
    while tokens and pad_id is not None and tokens[-1] == pad_id:
        tokens = tokens[:-1]
    return len(tokens)


# -------------------------------------------------------------------------------------- the eval backend
class HFEvalBackend:
    """The ``hf`` backend of ``posevlm eval``: an :class:`HFBackend` answering ``(record, prompt, FrameSpec)``
    batches; a sample that fails alone comes back as its ``SampleError``."""

    def __init__(self, model: Mapping[str, Any]):
        opts = {k: v for k, v in model.items() if k not in ("backend", "name")}
        self.backend = HFBackend(HFBackendConfig(**opts))
        self.info = self.backend.info

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation=None) -> list[Any]:
        results = self.backend.generate_each([(prompt, spec) for _, prompt, spec in batch], generation=generation,
                                             sample_ids=[r["id"] for r, _, _ in batch])
        return [r if isinstance(r, SampleError) else
                {"text": r.text, "video_grid_thw": r.video_grid_thw, "n_visual_tokens": r.n_visual_tokens}
                for r in results]


def _from_cli(values: Mapping[str, Any]) -> dict[str, Any]:
    """``posevlm eval --backend hf`` flags -> the run's model config."""
    model = values.get("model")
    if not model:
        raise ConfigError("--backend hf needs --model (hub id or local directory)", field="model")
    out: dict[str, Any] = {"name": model, "model": model, "dtype": values.get("dtype") or "auto",
                           "attn_implementation": values.get("attn") or "sdpa",
                           "batch_size": int(values.get("batch_size") or 1)}
    if values.get("model_type") is not None:
        out["family"] = _family_name(values["model_type"])
        if out["family"] != "auto":
            out["name"] += f"+{out['family']}"
    if values.get("positions") is not None:
        from posevlm.positions import parse_spec_overrides

        out["positions"] = {"mode": values["positions"], "legacy": bool(values.get("position_legacy")),
                            **parse_spec_overrides(values.get("position_set") or [])}
        out["name"] += f"+{values['positions']}"
    elif values.get("position_set") or values.get("position_legacy"):
        raise ConfigError("--position-set / --position-legacy need --positions", field="positions")
    if values.get("camera_attention") is not None:
        from posevlm.models.camera_attention import parse_camera_overrides

        over = parse_camera_overrides(values.get("camera_set") or [])
        out["camera_attention"] = {"mode": values["camera_attention"], **over} if over else values["camera_attention"]
        out["name"] += f"+{values['camera_attention']}"
    elif values.get("camera_set"):
        raise ConfigError("--camera-set needs --camera-attention", field="camera_attention")
    if (values.get("pose_bias") or "none") != "none":
        out["pose_bias"] = values["pose_bias"]
        out["name"] += f"+bias-{values['pose_bias']}"
    return {**out, **dict(values.get("set") or {})}


def _family_name(value: str) -> str:
    """``--model-type``: a model family name (``posevlm list models``), ``auto``, or a checkpoint ``model_type``
    (``spatial-mllm``, ``qwen2_5_vl``, ...) -> the family name."""
    from posevlm.models.families import family_for_model_type, model_families

    if value == "auto" or value in model_families.names():
        return value
    try:
        return family_for_model_type(value).name
    except ConfigError:
        raise ConfigError(f"--model-type {value!r}: use a model family ({', '.join(model_families.names())}), auto, "
                          "or a checkpoint model_type such as spatial-mllm", field="model_type", value=value) from None


def _check(model: Mapping[str, Any], frames: Mapping[str, Any]) -> list[str]:
    """A pose position mode or camera attention needs per-frame cameras, which only a sampled frame folder's
    manifest carries (a Spatial-MLLM family reads them from its VGGT camera head unless ``pose_source`` is
    ``manifest``); the position mode must exist for the model family."""
    cams = model.get("camera_attention") is not None or model.get("pose_bias", "none") != "none"
    if model.get("positions") is None and not cams:
        return []
    from posevlm.models.families import model_families
    from posevlm.positions import resolve_position_spec, spec_needs

    family = model.get("family", "auto")
    try:
        spec = resolve_position_spec(model.get("positions") or "thw", _layout(family))
    except ConfigError as exc:
        return [f"model.positions: {exc}"]
    if family in model_families.names() and model_families.get(family).wraps \
            and model.get("pose_source") != "manifest":
        return []  # cameras from the model's own VGGT camera head
    if (spec_needs(spec)["w2c_opencv"] or cams) and frames.get("source") != "folder_manifest":
        what = "model.camera_attention / pose_bias" if cams else f"model.positions {model['positions']!r}"
        return [f"{what} needs one camera per frame; use frames.source folder_manifest (posevlm eval --frames "
                f"folder_manifest --frames-root <sampled slug folder>), not {frames.get('source')!r}"]
    return []


BACKEND = BackendSpec(
    "hf", HFEvalBackend,
    "Qwen2.5-VL / Qwen3-VL / Spatial-MLLM through transformers (hub id or local dir), with pose-aware positions and "
    "camera attention",
    from_cli=_from_cli, check=_check,
    cli_options=("model", "model_type", "dtype", "attn", "positions", "position_set", "position_legacy",
                 "camera_attention", "camera_set", "pose_bias"),
)
