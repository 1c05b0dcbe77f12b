"""Install posevlm position plans and a multi-axis rotary on a stock transformers 5.x Qwen2.5-VL / Qwen3-VL.

Notation: A position axes (``spec.axes``), B batch, L tokens, D head dim.

Position transport (pitfall 1 of positions.md section 6.3): the position ids handed to the text model are
always ``(1 + A, B, L)`` float32 rows ``[text; axes...]``.

* A = 3 (stock ``T,H,W``, ``P,H,W``): exactly transformers' 4-row ``[text; T; H; W]`` convention; the text
  model strips row 0 (text row, used for masks) and our rotary receives the 3 axis rows.
* A = 4 (``P,T,H,W``): 5 rows. transformers 5.23 strips only 4-row tensors, so the 5 rows reach our rotary
  unchanged and the rotary drops row 0 itself. A 4-row tensor is never PTHW: if one reaches a PTHW model it
  is stripped to 3 rows and the rotary raises ``ShapeError`` instead of mis-reading it.

Everything is patched on the instance (no class is modified): ``model.model.forward`` (builds the rows when
``position_ids`` is None and consumes the extra inputs ``w2c_opencv`` / ``frame_ids``),
``model._prepare_position_ids_for_generation`` (``generate``), and the rotary module instance
``model.model.language_model.rotary_emb``. Decode steps continue from the last prompt token (``last + 1``
per row, the rule ``generate`` applies to 3-D position ids), so cached decoding equals a full forward over
prompt plus generated tokens; ``model.model.rope_deltas`` holds the matching delta
``position(last valid token) + 1 - valid tokens`` and is reset at every prefill.
"""

from __future__ import annotations

import inspect
import types
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.positions import (
    VIDEO,
    MultiAxisRotary,
    PositionSpec,
    build_position_plan,
    build_token_map,
    chunked_slot_axis,
    interleaved_qwen3_slot_axis,
    locate_extra_video_tokens,
)

__all__ = ["CONFIG_KEY", "PoseRotaryEmbedding", "enable_pose_positions", "load_pose_model", "load_learned_slopes",
           "pose_positions_config"]

CONFIG_KEY = "posevlm_positions"
_POSE_INPUTS = ("w2c_opencv", "frame_ids", "K_pixels", "image_hw")
_STATIC_ROPE_TYPES = ("default", "linear", "yarn", "llama3")


class PoseRotaryEmbedding(nn.Module):
    """Drop-in replacement of the Qwen text rotary: ``forward(x, position_ids) -> (cos, sin)`` in x.dtype.

    position_ids: (A, B, L) axis rows, (1 + A, B, L) ``[text; axes]`` rows when A != 3 (row 0 dropped),
    or (B, L). Any other row count raises ``ShapeError``."""

    def __init__(self, rotary: MultiAxisRotary, axes: Sequence[str]):
        super().__init__()
        self.rotary = rotary
        self.axes = tuple(axes)

    @property
    def inv_freq(self) -> Tensor:
        return self.rotary.inv_freq

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        a = len(self.axes)
        if position_ids.ndim == 3 and a != 3 and position_ids.shape[0] == a + 1:
            position_ids = position_ids[1:]
        if position_ids.ndim == 3 and position_ids.shape[0] != a:
            raise ShapeError(
                f"the pose rotary expects {a} position rows {self.axes} (or {a + 1} with a leading text row); "
                f"got {position_ids.shape[0]}. A transformers [text; T; H; W] tensor is not a "
                f"{'/'.join(self.axes)} tensor; let posevlm build the positions (position_ids=None).",
                name="position_ids", shape=tuple(position_ids.shape))
        return self.rotary(position_ids, dtype=x.dtype)


def _default_slot_axis(layout: str, spec: PositionSpec, sections: Sequence[int]) -> list[int]:
    """Stock maps for 3 axes; PTHW takes P's slots from T's (first half of T's chunk, H/W untouched)."""
    sections = [int(s) for s in sections]
    if layout == "qwen3":
        return interleaved_qwen3_slot_axis(sections).tolist()
    if len(spec.axes) == 4:
        t = sections[0]
        if t < 2:
            raise ConfigError(f"cannot split T's {t} slots between P and T; pass slot_axis explicitly",
                              field="slot_axis", value=sections)
        return chunked_slot_axis([t // 2, t - t // 2, *sections[1:]]).tolist()
    return chunked_slot_axis(sections).tolist()


def pose_positions_config(model) -> dict | None:
    """The stored ``{"spec": ..., "slot_axis": ...}`` dict of ``model.config``, or None (stock model)."""
    value = getattr(model.config, CONFIG_KEY, None)
    return dict(value) if value else None


class _Controller:
    """Builds the ``[text; axes]`` rows for one model (prefill, decode, generate)."""

    def __init__(self, model, spec: PositionSpec, family, camera=None, camera_dims=None, extra_video_tokens: int = 0):
        self.model = model
        self.spec = spec
        self.camera, self.camera_dims = camera, camera_dims
        self.extra_video_tokens = int(extra_video_tokens)
        self.last_token_map: tuple[Tensor | None, Any] = (None, None)
        self.generating = 0  # > 0 inside generate(): position rows come from generation_positions
        self.family = family
        self.axes = spec.axes
        self.merge = family.spatial_merge_size(model.config)
        self.image_token_id, self.video_token_id = family.visual_token_ids(model.config)

    # -- helpers -------------------------------------------------------------------------------------
    def _stack(self, text: Tensor, rows: Tensor) -> Tensor:
        return torch.cat([text.to(torch.float32)[None], rows.to(torch.float32)], 0)

    @property
    def needs_inputs(self) -> bool:
        """The spec reads per-video cameras / frame ids, or camera attention is on."""
        return self.spec.pose != "none" or self.spec.temporal == "frame_ids" or self.camera is not None

    def check_given_positions(self, a: dict[str, Any]) -> None:
        """Warn when a forward outside ``generate()`` (whose rows posevlm builds itself) gets position rows at
        prefill although the spec needs per-video inputs: e.g. a training collator's stock (T, H, W) rows
        reaching a PHW model, where the cameras would be ignored."""
        cache = a.get("past_key_values")
        if self.generating or (cache is not None and cache.get_seq_length() != 0):
            return
        if self.spec.pose != "none" or self.spec.temporal == "frame_ids":
            warnings.warn(f"position_ids passed to a model with pose-aware positions {self.spec.axes} that need "
                          "cameras / frame ids: posevlm uses them as given and ignores w2c_opencv / frame_ids. "
                          "Drop position_ids (e.g. in the training collator) so posevlm builds them.", stacklevel=4)

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, *, image_grid_thw=None,
                video_grid_thw=None, second_per_grid_ts=None, mm_token_type_ids=None, w2c_opencv=None,
                frame_ids=None, K_pixels=None, image_hw=None) -> Tensor:
        """``[text; axes]`` rows of a prompt (``K_pixels`` / ``image_hw`` are camera-attention inputs, unused here).

        Extra video tokens (``extra_video_tokens`` > 0, e.g. Spatial-MLLM's ``sequence_cat``) are left out of the
        token map and the plan, as if absent, and then take the rows of their cell's own token: text and own video
        tokens sit exactly where they sit without the extra tokens."""
        tm, extra = self._token_map(input_ids, attention_mask, mm_token_type_ids, image_grid_thw=image_grid_thw,
                                    video_grid_thw=video_grid_thw)
        self.last_token_map = (input_ids, tm)  # generate() pops video_grid_thw before the forward pass
        plan = build_position_plan(tm, self.spec, second_per_grid_ts=second_per_grid_ts, frame_ids=frame_ids,
                                   w2c_opencv=w2c_opencv)
        # decode token k sits at position(last valid token) + k: the plan's continuation convention
        if extra is None:
            self.model.model.rope_deltas = plan.continuation_deltas
            return self._stack(plan.text_row, plan.rows)
        self.model.model.rope_deltas = plan.continuation_deltas - extra.count[:, None].to(plan.continuation_deltas)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        return self._stack(text, extra.fill_rows(plan.rows))

    def _token_map(self, input_ids: Tensor, attention_mask: Tensor | None, mm_token_type_ids: Tensor | None,
                   **grids) -> tuple[Any, Any]:
        """(TokenMap, ExtraVideoTokens or None): with extra video tokens the map sees them as padding (no
        position of their own, no camera: camera attention and the pose-distance bias leave them untouched)."""
        extra = None
        if self.extra_video_tokens and grids.get("video_grid_thw") is not None:
            valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
            video = (mm_token_type_ids == VIDEO) if mm_token_type_ids is not None else input_ids == self.video_token_id
            extra = locate_extra_video_tokens(video & valid, grids["video_grid_thw"], self.merge,
                                              self.extra_video_tokens)
            attention_mask = (valid & ~extra.mask).long()
        tm = build_token_map(input_ids, spatial_merge_size=self.merge, attention_mask=attention_mask,
                             mm_token_type_ids=mm_token_type_ids, image_token_id=self.image_token_id,
                             video_token_id=self.video_token_id, **grids)
        return tm, extra

    def continuation(self, text_row: Tensor) -> Tensor:
        deltas = self.model.model.rope_deltas
        b = text_row.shape[0]
        deltas = deltas.repeat_interleave(b // deltas.shape[0], dim=0).to(text_row.device)
        rows = (text_row + deltas)[None].expand(len(self.axes), -1, -1)
        return self._stack(text_row, rows)

    def text_only(self, text_row: Tensor) -> Tensor:
        return self._stack(text_row, text_row[None].expand(len(self.axes), -1, -1))

    def camera_context(self, a: dict[str, Any], pose_inputs: dict[str, Any]):
        """The per-call CameraContext (prefill with video tokens), or None (no camera attention / decode)."""
        if self.camera is None:
            return None
        input_ids, cache = a.get("input_ids"), a.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        if input_ids is None:
            if a.get("video_grid_thw") is not None and past == 0:
                raise ShapeError("camera attention needs input_ids at prefill (to find the video tokens); "
                                 "inputs_embeds alone are not supported", name="input_ids")
            return None
        if past != 0:
            if bool((input_ids == self.video_token_id).any()):
                raise ShapeError("camera attention: video tokens after the prefill (chunked prefill) are not "
                                 "supported; pass the whole prompt in one call", name="input_ids",
                                 shape=tuple(input_ids.shape))
            return None
        from posevlm.models.camera_attention import build_camera_context

        found = self._prompt_token_map(a, input_ids)
        if found is None:
            return None
        tm, repeats, extra = found
        # generate() may have repeated stacked per-video tensors with the prompts: one entry per video
        n_vid = tm.video_grid_thw.shape[0]
        inputs = {k: v[::repeats] if isinstance(v, Tensor) and repeats > 1 and v.shape[0] == repeats * n_vid else v
                  for k, v in pose_inputs.items()}
        context = build_camera_context(self.camera, self.camera_dims, tm, w2c_opencv=inputs.get("w2c_opencv"),
                                       K_pixels=inputs.get("K_pixels"), image_hw=inputs.get("image_hw"))
        # use_cache=False: every step re-runs the prompt plus the generated (text, identity camera) tokens
        return context.repeat_interleave(repeats).extend(extra)

    def _prompt_token_map(self, a: dict[str, Any], input_ids: Tensor):
        """(token map, row repeats, trailing text tokens) of a prefill's prompt, or None without video tokens.

        The prefill's own token map is reused when ``input_ids`` are that prompt, possibly with every row
        repeated (beams, ``num_return_sequences``) and generated text appended (``use_cache=False``): generate()
        pre-encodes the media and drops the grids before the forward pass. Otherwise it is built from the grids."""
        grids = {k: a.get(k) for k in ("image_grid_thw", "video_grid_thw")}
        ids, tm = self.last_token_map
        if ids is not None and ids.shape[0] and input_ids.shape[0] % ids.shape[0] == 0 \
                and input_ids.shape[1] >= ids.shape[1]:
            repeats, length = input_ids.shape[0] // ids.shape[0], ids.shape[1]
            prompt = ids.to(input_ids.device).repeat_interleave(repeats, 0)
            same_grids = all(g is None or torch.equal(g.to(t.device), t)
                             for g, t in ((grids["image_grid_thw"], tm.image_grid_thw),
                                          (grids["video_grid_thw"], tm.video_grid_thw)))
            if same_grids and torch.equal(input_ids[:, :length], prompt) \
                    and not bool((input_ids[:, length:] == self.video_token_id).any()):
                return tm, repeats, input_ids.shape[1] - length
        if all(g is None for g in grids.values()):
            if not bool((input_ids == self.video_token_id).any()):
                return None
            raise ShapeError("camera attention needs the whole prompt in one call: chunked prefill "
                             "(generate(prefill_chunk_size=...)) and prompts whose video grids are unknown are not "
                             "supported; use prefill_chunk_size=None and pass video_grid_thw", name="input_ids",
                             shape=tuple(input_ids.shape))
        tm, _ = self._token_map(input_ids, a.get("attention_mask"), a.get("mm_token_type_ids"), **grids)
        return tm, 1, 0

    # -- the two hooks -------------------------------------------------------------------------------
    def forward_positions(self, a: dict[str, Any], pose_inputs: dict[str, Any]) -> Tensor | None:
        input_ids, mask, cache = a.get("input_ids"), a.get("attention_mask"), a.get("past_key_values")
        embeds = a.get("inputs_embeds")
        past = cache.get_seq_length() if cache is not None else 0
        if mask is not None and mask.ndim != 2:
            raise ShapeError("with pose positions enabled, pass a 2-D attention_mask (or the position_ids "
                             "yourself); a prepared 4-D mask does not tell which tokens are padding",
                             name="attention_mask", shape=tuple(mask.shape))
        if input_ids is None and past == 0 and (a.get("video_grid_thw") is not None
                                                or a.get("image_grid_thw") is not None):
            raise ShapeError("pose-aware positions need input_ids at prefill to locate the vision tokens; with "
                             "inputs_embeds alone the cameras / frame ids would be ignored. Pass input_ids (or the "
                             "position_ids built by posevlm)", name="input_ids")
        if input_ids is not None and past == 0:
            return self.prefill(input_ids, mask, image_grid_thw=a.get("image_grid_thw"),
                                video_grid_thw=a.get("video_grid_thw"),
                                second_per_grid_ts=a.get("second_per_grid_ts"),
                                mm_token_type_ids=a.get("mm_token_type_ids"), **pose_inputs)
        ref = input_ids if input_ids is not None else embeds
        b, length = ref.shape[0], ref.shape[1]
        if mask is not None:
            text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, -length:]
        else:
            text = torch.arange(past, past + length, device=ref.device)[None].expand(b, -1)
        text = text.to(ref.device)
        if self.model.model.rope_deltas is None:
            return self.text_only(text)
        return self.continuation(text)

    def generation_positions(self, inputs_tensor: Tensor, model_kwargs: dict) -> Tensor:
        from transformers.generation.utils import GenerationMixin

        text = GenerationMixin._prepare_position_ids_for_generation(self.model, inputs_tensor, model_kwargs)
        cache = model_kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        types = model_kwargs.get("mm_token_type_ids")
        new_vision = types is not None and bool(types[:, past:].any())
        if past != 0 and self.model.model.rope_deltas is not None and not new_vision:
            return self.continuation(text)
        if "input_ids" in model_kwargs and model_kwargs["input_ids"].shape[1] > 0:
            inputs_tensor = model_kwargs["input_ids"]
        is_ids = inputs_tensor.ndim == 2 and inputs_tensor.dtype in (torch.int, torch.long)
        media = any(model_kwargs.get(k) is not None for k in ("video_grid_thw", "image_grid_thw", *_POSE_INPUTS))
        if not is_ids and media and self.needs_inputs:
            raise ShapeError("pose-aware positions / camera attention need input_ids in generate() to locate the "
                             "vision tokens; with inputs_embeds alone the cameras / frame ids would be ignored",
                             name="input_ids")
        if is_ids:
            return self.prefill(inputs_tensor, model_kwargs.get("attention_mask"),
                                image_grid_thw=model_kwargs.get("image_grid_thw"),
                                video_grid_thw=model_kwargs.get("video_grid_thw"),
                                second_per_grid_ts=model_kwargs.get("second_per_grid_ts"),
                                mm_token_type_ids=types,
                                **{k: model_kwargs.get(k) for k in _POSE_INPUTS})
        self.model.model.rope_deltas = torch.zeros(inputs_tensor.shape[0], 1, dtype=torch.long,
                                                   device=inputs_tensor.device)
        return self.text_only(text)


def _inner_forward(self, *args, **kwargs):
    """``Qwen*VLModel.forward`` that builds the ``[text; axes]`` rows when ``position_ids`` is None."""
    pose_inputs = {k: kwargs.pop(k, None) for k in _POSE_INPUTS}
    forward = type(self).forward
    arguments = dict(inspect.signature(forward).bind(self, *args, **kwargs).arguments)
    arguments.pop("self")
    arguments.update(arguments.pop("kwargs", {}))
    controller = self._posevlm_controller
    if arguments.get("position_ids") is None:
        arguments["position_ids"] = controller.forward_positions(arguments, pose_inputs)
    else:
        controller.check_given_positions(arguments)
    context = controller.camera_context(arguments, pose_inputs)
    if context is not None:
        arguments["posevlm_camera"] = context
    return forward(self, **arguments)


def _prepare_position_ids(self, inputs_tensor, model_kwargs):
    return self._posevlm_controller.generation_positions(inputs_tensor, model_kwargs)


def _generate(self, *args, **kwargs):
    """``generate`` that tells the controller its position rows come from ``_prepare_position_ids``."""
    controller = self._posevlm_controller
    controller.generating += 1
    try:
        return type(self).generate(self, *args, **kwargs)
    finally:
        controller.generating -= 1


_OUTER_FORWARDS: dict[tuple[type, tuple[str, ...]], Any] = {}


def forward_declaring(cls, names: tuple[str, ...]):
    """``cls.forward`` whose signature also declares the keyword-only inputs ``names`` (generate() validates its
    kwargs against the forward signature); they travel in ``**kwargs`` to the inner model. One function per
    (class, names), shared by every instance (pose inputs here, point inputs in ``mixed_rope3d``)."""
    key = (cls, tuple(names))
    if key not in _OUTER_FORWARDS:
        def forward(self, *args, **kwargs):
            return cls.forward(self, *args, **kwargs)

        signature = inspect.signature(cls.forward)
        params = list(signature.parameters.values())
        extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in key[1]]
        forward.__signature__ = signature.replace(parameters=params[:-1] + extra + params[-1:])
        forward.__doc__ = cls.forward.__doc__
        _OUTER_FORWARDS[key] = forward
    return _OUTER_FORWARDS[key]


def enable_pose_positions(model, spec: PositionSpec | dict | None = None, *,
                          slot_axis: Sequence[int] | None = None, camera_attention=None, extra_video_tokens: int = 0):
    """Make ``model`` build its positions with posevlm and rotate them with a :class:`MultiAxisRotary`.

    Args:
        model: a stock ``Qwen2_5_VLForConditionalGeneration`` (layout ``qwen2_5``) or
            ``Qwen3VLForConditionalGeneration`` (layout ``qwen3``).
        spec: the PositionSpec (or its dict). None: read it from ``model.config.posevlm_positions``; if the
            config has none, the model is returned untouched (stock).
        slot_axis: frequency slot -> axis map (length head_dim / 2, axes indexed as ``spec.axes``). Default:
            the checkpoint's mRoPE sections (chunked for Qwen2.5, interleaved for Qwen3); PTHW splits T's
            chunk into P (first, high-frequency half) and T, e.g. [16, 24, 24] -> [8, 8, 24, 24].
        camera_attention: a ``posevlm.models.camera_attention.CameraAttentionSpec`` (or its dict) installing
            PRoPE / GTA / CaPE and the pose-distance bias in every text attention layer; None: none (or the
            stored one when ``spec`` is None). Extra inputs ``K_pixels`` / ``image_hw`` (per video) for PRoPE.
        extra_video_tokens: e >= 0 extra video tokens per merged video token that a wrapper adds after each
            video's own tokens (Spatial-MLLM's ``sequence_cat``: its 3D tokens); see
            :class:`~posevlm.positions.token_map.ExtraVideoTokens`. They take the position rows of their cell's
            own token and no camera (identity transform, no pose-distance bias); text and own tokens keep the
            positions they have without them. Pose-index specs (P axis) are refused: the extra tokens have no
            pose of their own.
    Returns:
        the same model. Extra forward / generate inputs: ``w2c_opencv`` (per video (S, 4, 4) world-to-camera,
        OpenCV axes, one per sampled frame; required by pose ``scalar``) and ``frame_ids`` (per video (S,);
        required by temporal ``frame_ids``). The spec and slot map are stored in ``model.config`` under
        ``posevlm_positions`` and restored by :func:`load_pose_model`.
    Raises:
        ConfigError: unsupported model, layout of the wrong family, non-static rope type, bad slot map.
    """
    from posevlm.models.families import family_of

    family = family_of(model)
    stored = pose_positions_config(model)
    if spec is None:
        if stored is None:
            return model
        spec, slot_axis = stored["spec"], stored.get("slot_axis") if slot_axis is None else slot_axis
        camera_attention = stored.get("camera_attention") if camera_attention is None else camera_attention
    if isinstance(spec, dict):
        spec = PositionSpec.from_dict(spec)
    if isinstance(extra_video_tokens, bool) or not isinstance(extra_video_tokens, int) or extra_video_tokens < 0:
        raise ConfigError(f"extra_video_tokens={extra_video_tokens!r} (an int >= 0)", field="extra_video_tokens",
                          value=extra_video_tokens)
    if extra_video_tokens and spec.pose != "none":
        raise ConfigError(f"pose-index positions {spec.axes} with {extra_video_tokens} extra video token(s) per "
                          "merged token: the extra tokens have no camera, so the pose index P cannot apply to the "
                          "video's own tokens only. Use a mode without P (thw, thw_index, thw_without_t, "
                          "thw_readapt_t), optionally with camera attention, which does apply to the own tokens only",
                          field="positions", value=spec.to_dict())
    if spec.layout != family.layout:
        raise ConfigError(f"PositionSpec layout {spec.layout!r} does not fit a {type(model).__name__} "
                          f"(use layout={family.layout!r})", field="layout", value=spec.layout)
    inner = model.model
    text_model = family.text_model(model)
    originals = getattr(model, "_posevlm_originals", None)
    if originals is None:
        originals = {"rotary": text_model.rotary_emb}
        object.__setattr__(model, "_posevlm_originals", originals)
    base = originals["rotary"]
    text_cfg = family.text_config(model.config)
    rope = dict(text_cfg.rope_parameters or {})
    if rope.get("rope_type", "default") not in _STATIC_ROPE_TYPES:
        raise ConfigError(f"rope_type {rope.get('rope_type')!r} changes inv_freq at run time; supported: "
                          f"{_STATIC_ROPE_TYPES}", field="rope_type", value=rope.get("rope_type"))
    tps = family.tokens_per_second(model.config)
    if tps is not None and spec.temporal == "hf_time" and tps != float(spec.tokens_per_second):
        warnings.warn(f"PositionSpec.tokens_per_second={spec.tokens_per_second} differs from the "
                      f"checkpoint's vision_config.tokens_per_second={tps}", stacklevel=2)
    sections = rope.get("mrope_section") or base.mrope_section
    if slot_axis is None:
        slot_axis = _default_slot_axis(family.layout, spec, sections)
    slot_axis = [int(s) for s in slot_axis]
    n_axes = len(spec.axes)
    used = set(slot_axis) - {-1}
    if not used <= set(range(n_axes)) or (-1 not in slot_axis and used != set(range(n_axes))):
        raise ConfigError(f"slot_axis must map every slot to an axis of {spec.axes} (indices 0..{n_axes - 1}; -1 "
                          f"= unrotated) and, without -1 entries, use every axis; got {sorted(set(slot_axis))}",
                          field="slot_axis", value=slot_axis)
    from posevlm.models import camera_attention as cam

    if isinstance(camera_attention, dict):
        camera_attention = cam.CameraAttentionSpec.from_dict(camera_attention)
    camera_dims, rotary_slots = None, list(slot_axis)
    if camera_attention is not None and camera_attention.mode != "none":
        head_dim = 2 * len(slot_axis)
        camera_dims, slots = cam.camera_slots(camera_attention, slot_axis, spec.axes, head_dim)
        if camera_attention.rotary_on_camera_dims == "off":
            for k in slots.tolist():
                rotary_slots[k] = -1
    if camera_attention is not None:
        cam.install(model, camera_attention)
    else:
        cam.uninstall(model)
    rotary = MultiAxisRotary(base.inv_freq.detach().clone(), rotary_slots, base.attention_scaling,
                             num_axes=len(spec.axes))
    text_model.rotary_emb = PoseRotaryEmbedding(rotary, spec.axes).to(base.inv_freq.device)

    controller = _Controller(model, spec, family, camera_attention, camera_dims, extra_video_tokens)
    # bound methods (not closures) so that copy.deepcopy(model) rebinds them to the copy
    object.__setattr__(model, "_posevlm_controller", controller)
    object.__setattr__(inner, "_posevlm_controller", controller)
    inner.forward = types.MethodType(_inner_forward, inner)
    model.forward = types.MethodType(forward_declaring(type(model), _POSE_INPUTS), model)
    model._prepare_position_ids_for_generation = types.MethodType(_prepare_position_ids, model)
    model.generate = types.MethodType(_generate, model)
    model.model.rope_deltas = None
    object.__setattr__(model, "posevlm_position_spec", spec)
    setattr(model.config, CONFIG_KEY, {"spec": spec.to_dict(), "slot_axis": slot_axis,
                                       "camera_attention": None if camera_attention is None
                                       else camera_attention.to_dict()})
    return model


def load_pose_model(path, model_class=None, **from_pretrained_kwargs):
    """``from_pretrained`` + :func:`enable_pose_positions` with the spec stored in the config (stock if none).

    model_class: a transformers model class; default: ``config.architectures[0]`` of the checkpoint."""
    import transformers

    if model_class is None:
        config = transformers.AutoConfig.from_pretrained(path)
        names = getattr(config, "architectures", None) or []
        if not names or not hasattr(transformers, names[0]):
            raise ConfigError(f"cannot tell the model class of {path}; pass model_class", field="model_class",
                              value=names)
        model_class = getattr(transformers, names[0])
    model = model_class.from_pretrained(path, **from_pretrained_kwargs)
    model = enable_pose_positions(model)
    load_learned_slopes(model, path, revision=from_pretrained_kwargs.get("revision"),
                        local_files_only=bool(from_pretrained_kwargs.get("local_files_only")))
    return model


def load_learned_slopes(model, path, *, revision: str | None = None, local_files_only: bool = False) -> int:
    """Read learned pose-bias slopes back from a checkpoint (a local directory or hub id) into ``model``.

    They are parameters the stock class does not know, so ``from_pretrained`` drops them as unexpected keys.
    Returns the number of layers whose slopes were loaded: 0 when the model has no learned slopes or the
    checkpoint holds none (the slopes then stay at their initial 0). Raises ConfigError if only some layers
    are in the checkpoint."""
    from pathlib import Path

    from posevlm.models.camera_attention import SLOPES_NAME

    import re

    # keyed by layer: save_pretrained may rename prefixes (Qwen2.5-VL saves model.language_model.* as model.*)
    pattern = re.compile(rf"layers\.(\d+)\.self_attn\.{SLOPES_NAME}$")
    wanted = {int(m.group(1)): p for name, p in model.named_parameters() if (m := pattern.search(name))}
    if not wanted:
        return 0
    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(path), allow_patterns=["*.safetensors"], revision=revision,
                                        local_files_only=local_files_only))
    from safetensors import safe_open

    found = set()
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if (m := pattern.search(key)) and int(m.group(1)) in wanted:
                    with torch.no_grad():
                        wanted[int(m.group(1))].copy_(f.get_tensor(key))
                    found.add(int(m.group(1)))
    if found and found != set(wanted):
        missing = sorted(set(wanted) - found)
        raise ConfigError(f"checkpoint {path} holds learned pose-bias slopes for some layers only (missing "
                          f"layers {missing[:5]}); it is incomplete", field="bias", value=missing)
    return len(found)
