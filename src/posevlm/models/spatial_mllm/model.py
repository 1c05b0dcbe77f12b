"""SpatialMLLM: a stock transformers Qwen2.5-VL / Qwen3-VL composed with a spatial encoder (VGGT) and a connector.

Notation: B batch, L tokens, V videos of the batch (``video_grid_thw`` rows, row-major over samples), S frames of a
video (2T after padding an odd count), T tubelets, (gh, gw) the vision patch grid, N = T * gh/2 * gw/2 merged video
tokens (one per ``<|video_pad|>``), D the LLM width, DD the spatial token width (VGGT-1B: 2048).

Composition, not subclassing (models spec §6.1): ``model.qwen`` is an untouched transformers model (vision tower,
decoder, lm_head, positions, masks, KV cache, ``generate``); ``model.spatial_encoder`` a
:class:`~posevlm.spatial.VGGT` (camera head only by default); ``model.connector`` a module of the ``connectors``
registry (None: pose-only). The one seam is an instance-level hook on ``model.qwen.model.get_video_features`` (the
function both ``forward`` and ``generate``'s multimodal pre-encoding call): it runs the stock vision tower, then
hands each video's 2D tokens (N, D) and merged spatial tokens (N, 8 * DD) to the connector and returns the fused
tokens in the stock output type, so the stock ``masked_scatter`` puts them at the video pads.

The forward path of one prompt (:meth:`SpatialMLLM.forward` / :meth:`SpatialMLLM.generate`):

1. :meth:`SpatialMLLM.encode_spatial` (prefill only: the call carries ``pixel_values_videos``): per video, the
   frames ``video_tchw`` (S, 3, H, W) in [0, 1] -- the processor's resized frames -- are padded to 2T frames,
   resized to the vision grid in VGGT patches (gh * 14, gw * 14) (the identity for Qwen2.5-VL, whose patch is 14;
   Qwen3-VL's 16-px grid is resampled), grouped by shape and encoded by VGGT in one batch per group; the patch
   tokens of ``spatial_layer`` are merged into (N, 8 * DD) rows in Qwen's merge-window order
   (:func:`~posevlm.models.spatial_mllm.merge_spatial_tokens`); the camera head's last estimate is decoded for the
   frames fed (w2c_opencv, K_pixels, image_hw) when the positions or camera attention need cameras;
2. the result waits on the wrapper (``_pending``) while the stock Qwen forward / ``generate`` runs; the hook
   consumes it; decode steps have no ``pixel_values_videos``, so neither the vision tower nor VGGT runs again;
3. positions and camera attention: :func:`posevlm.models.enable_pose_positions` on ``model.qwen``, fed the cameras
   of step 1 (or ``w2c_opencv`` passed by the caller, e.g. from a frame manifest).

Connectors that add tokens (``sequence_cat``, e = 1): the prompt needs (1 + e) pads per merged token
(:meth:`SpatialMLLM.expand_inputs`); the hook returns each video's 2D tokens followed by its e * N extra tokens (and
zero DeepStack features for them on Qwen3-VL). transformers 5.23's ``get_rope_index`` gives a video N positions
whatever its pad count (a shape error), so posevlm's position builder is installed (``thw`` by default, equal to
``get_rope_index`` without extra tokens) with ``extra_video_tokens=e``: each extra token takes the rows of its
cell's 2D token and no camera.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.models.spatial_mllm.config import BASE_FAMILIES, SpatialMLLMConfig
from posevlm.models.spatial_mllm.connectors import merge_spatial_tokens
from posevlm.positions.plan import pad_to_tubelets, per_video

__all__ = ["SpatialMLLM", "SpatialInputs", "POSE_KWARGS"]

#: per-video camera / frame inputs forwarded to the pose-aware positions and camera attention
POSE_KWARGS = ("w2c_opencv", "K_pixels", "image_hw", "frame_ids")


@dataclass(frozen=True)
class SpatialInputs:
    """What the spatial encoder gave one prompt (one entry per video, ``video_grid_thw`` order).

    Fields:
        grid_thw: (V, 3) int64 the video grids the tokens were merged for (checked against the vision tower's).
        tokens: per video (N, 8 * DD) merged spatial tokens, or None (no fusing connector).
        w2c_opencv: per video (2T, 4, 4) float32 world-to-camera (OpenCV axes; frame 0 is the identity up to the
            camera head's error, VGGT's normalised scale), or None (cameras not needed).
        K_pixels: per video (2T, 3, 3) float32 intrinsics in pixels of ``image_hw``, or None.
        image_hw: per video (2,) int64 (H, W) of the frames VGGT saw, or None.
    """

    grid_thw: Tensor
    tokens: tuple[Tensor, ...] | None = None
    w2c_opencv: tuple[Tensor, ...] | None = None
    K_pixels: tuple[Tensor, ...] | None = None
    image_hw: tuple[Tensor, ...] | None = None

    def pose_kwargs(self, *, intrinsics: bool) -> dict[str, list[Tensor]]:
        """The cameras as ``forward`` / ``generate`` keyword arguments of a pose-aware Qwen model."""
        if self.w2c_opencv is None:
            return {}
        out = {"w2c_opencv": list(self.w2c_opencv)}
        if intrinsics:
            out.update(K_pixels=list(self.K_pixels), image_hw=list(self.image_hw))
        return out


def _spatial_video_features(self, pixel_values_videos, video_grid_thw=None, **kwargs):
    """``get_video_features`` of the inner Qwen model with the Spatial-MLLM connector after the stock vision tower
    (installed on the instance; ``self`` is ``model.qwen.model``). Same inputs and output type as the stock one."""
    want_tuple = kwargs.get("return_dict") is False
    kwargs["return_dict"] = True
    out = type(self).get_video_features(self, pixel_values_videos, video_grid_thw, **kwargs)
    wrapper = self._posevlm_spatial_mllm
    out.pooler_output = wrapper._connect(tuple(out.pooler_output), video_grid_thw)
    extra = wrapper.extra_tokens_per_visual_token
    if extra and getattr(out, "deepstack_features", None):  # Qwen3-VL: the extra tokens get no DeepStack feature
        out.deepstack_features = [tuple(torch.cat([f, f.new_zeros(extra * f.shape[0], f.shape[1])]) for f in tap)
                                  for tap in out.deepstack_features]
    return out.to_tuple() if want_tuple else out


class SpatialMLLM(nn.Module):
    """Spatial-MLLM = stock Qwen-VL (``qwen``) + spatial encoder (``spatial_encoder``) + connector (``connector``).

    Build it with :meth:`from_pretrained` (a released / saved checkpoint) or :meth:`compose` (bases + a fresh
    connector); save with :meth:`save_pretrained`. ``config`` is the :class:`SpatialMLLMConfig`; ``qwen.config``
    the transformers config; ``processor`` the checkpoint's processor when loaded (else None).

    Inputs of :meth:`forward` and :meth:`generate` (the processor's outputs plus):
        video_tchw: per video (S, 3, H, W) float in [0, 1] (uint8 0..255 accepted), the frames the processor
            resized for ``pixel_values_videos`` (H = gh * patch, W = gw * patch of that video's grid row), not
            normalised; a list (one per ``video_grid_thw`` row) or a (V, S, 3, H, W) tensor. Odd S is padded by
            repeating the last frame (as the processor does). Required at prefill when a connector fuses, or when
            the cameras come from VGGT.
        w2c_opencv: per video (S, 4, 4) world-to-camera, OpenCV axes (e.g. a frame manifest's). Overrides the
            VGGT cameras; required with ``pose_source="manifest"`` when the positions / camera attention read poses.
        K_pixels, image_hw: per video (S, 3, 3) intrinsics and the (H, W) (or (S, 2)) they refer to; PRoPE needs
            them with a given ``w2c_opencv`` (with VGGT cameras they come from the camera head).
        frame_ids: per video (S,) source frame ids (temporal mode ``frame_ids``, the fork's readaptT).
    Every other keyword goes to the stock Qwen model unchanged (``input_ids``, ``attention_mask``,
    ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``, ``mm_token_type_ids``, ``labels``,
    ``past_key_values``, ``use_cache``, generation settings, ...). Camera inputs are accepted only when positions or
    camera attention are enabled (:meth:`enable_pose_positions`).
    """

    def __init__(self, qwen: nn.Module, spatial_encoder: nn.Module | None, connector: nn.Module | None,
                 config: SpatialMLLMConfig):
        super().__init__()
        base_type = getattr(qwen.config, "model_type", None)
        if base_type != config.base_family:
            raise ConfigError(f"config.base_family={config.base_family!r} but the Qwen model is a {base_type!r}",
                              field="base_family", value=base_type)
        if (connector is None) != (config.connector is None):
            raise ConfigError("connector module and config.connector must both be set or both be None",
                              field="connector")
        if config.connector is not None:
            hidden = int(qwen.config.text_config.hidden_size)
            out = int(getattr(qwen.config.vision_config, "out_hidden_size", hidden))
            if config.connector.llm_dim != hidden or out != hidden:
                raise ConfigError(f"connector.llm_dim={config.connector.llm_dim} must equal the LLM width {hidden} "
                                  f"(vision merger output {out})", field="llm_dim", value=config.connector.llm_dim)
        if spatial_encoder is None and (config.connector is not None
                                        or (config.needs_cameras and config.pose_source == "vggt")):
            raise ConfigError("this Spatial-MLLM needs a spatial encoder (a fusing connector, or VGGT cameras); "
                              "pass one", field="spatial_encoder")
        self.qwen = qwen
        self.spatial_encoder = spatial_encoder
        self.connector = connector
        self.config = config
        self.processor = None
        self.processor_source: str | None = None
        self.load_report = None
        self._pending: SpatialInputs | None = None
        if connector is not None:
            inner = qwen.model
            object.__setattr__(inner, "_posevlm_spatial_mllm", self)  # not a submodule: no state-dict entries
            inner.get_video_features = types.MethodType(_spatial_video_features, inner)
        if config.pose_enabled:
            self._install_positions()

    # -- loading / saving (loading.py) ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source, **kwargs) -> "SpatialMLLM":
        """A Spatial-MLLM checkpoint (local directory or hub id); see
        :func:`posevlm.models.spatial_mllm.loading.from_pretrained`."""
        from posevlm.models.spatial_mllm.loading import from_pretrained

        return from_pretrained(source, **kwargs)

    @classmethod
    def compose(cls, qwen, vggt=None, connector="auto", **kwargs) -> "SpatialMLLM":
        """Build from bases (Qwen-VL + VGGT + a fresh connector); see
        :func:`posevlm.models.spatial_mllm.loading.compose`."""
        from posevlm.models.spatial_mllm.loading import compose

        return compose(qwen, vggt, connector, **kwargs)

    def save_pretrained(self, directory, **kwargs):
        """Write the released layout; see :func:`posevlm.models.spatial_mllm.loading.save_pretrained`."""
        from posevlm.models.spatial_mllm.loading import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def qwen_config(self):
        """The transformers config of the base Qwen model."""
        return self.qwen.config

    @property
    def generation_config(self):
        return self.qwen.generation_config

    @property
    def device(self) -> torch.device:
        return self.qwen.device

    @property
    def dtype(self) -> torch.dtype:
        return self.qwen.dtype

    @property
    def fuses_tokens(self) -> bool:
        """The connector changes the video tokens (False: pose-only, ``skip``, or ``use_geo=False``)."""
        cfg = self.config.connector
        return cfg is not None and not cfg.skip and cfg.use_geo

    @property
    def extra_tokens_per_visual_token(self) -> int:
        """Extra sequence tokens per merged 2D token the connector adds (0 for fusing connectors)."""
        if self.connector is None or not self.fuses_tokens:
            return 0
        return int(getattr(self.connector, "extra_tokens_per_visual_token", 0))

    def expand_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The processor output with the video pads this model's connector needs: ``(1 + e)`` per merged token,
        e = :attr:`extra_tokens_per_visual_token` (``sequence_cat``: 1), the extra ones after each video's own
        (:func:`~posevlm.models.spatial_mllm.processing.expand_video_pads`); a copy for other connectors."""
        from posevlm.models.spatial_mllm.processing import expand_video_pads

        cfg = self.qwen.config
        pad = getattr(cfg.get_text_config(), "pad_token_id", None)
        return expand_video_pads(inputs, video_token_id=int(cfg.video_token_id),
                                 spatial_merge_size=int(cfg.vision_config.spatial_merge_size),
                                 extra_per_token=self.extra_tokens_per_visual_token,
                                 pad_token_id=0 if pad is None else int(pad))

    # -- configuration changes -------------------------------------------------------------------------------
    def set_fusion(self, *, use_visual: bool | None = None, use_geo: bool | None = None,
                   skip: bool | None = None) -> "SpatialMLLM":
        """Switch the connector's fusion terms (the 2D-only / 3D-only ablations, models spec §2.2) in place."""
        if self.config.connector is None:
            raise ConfigError("this Spatial-MLLM has no connector (pose-only)", field="connector")
        changes = {k: v for k, v in {"use_visual": use_visual, "use_geo": use_geo, "skip": skip}.items()
                   if v is not None}
        cfg = self.config.connector.__class__.from_dict({**self.config.connector.to_dict(), **changes})
        self.connector.config = cfg
        self.config = self.config.replace(connector=cfg)
        return self

    def enable_pose_positions(self, positions=None, *, slot_axis: Sequence[int] | None = None, camera_attention=None,
                              pose_source: str | None = None) -> "SpatialMLLM":
        """Install posevlm positions and / or camera attention on ``model.qwen`` and record them in ``config``.

        Args:
            positions: a mode name of ``posevlm.positions.POSITION_MODES`` (``pthw``, ``phw``, ``thw_readapt_t``, ...),
                a PositionSpec or its dict (mode dicts as in ``resolve_position_spec``); None: ``thw`` when
                ``camera_attention`` is given.
            slot_axis: the frequency-slot -> axis map (default: the spec's default for the checkpoint's sections).
            camera_attention: a CameraAttentionSpec, its dict, or a mode name (``prope``, ``gta``, ``cape``).
            pose_source: ``vggt`` (cameras from the model's camera head) or ``manifest`` (``w2c_opencv`` required).
        """
        from posevlm.models.camera_attention import CameraAttentionSpec
        from posevlm.positions import resolve_position_spec

        if positions is None and camera_attention is None:
            raise ConfigError("pass positions and / or camera_attention (posevlm positions cannot be uninstalled; "
                              "load the model again for stock positions)", field="positions")
        tps = getattr(self.qwen.config.vision_config, "tokens_per_second", None)
        defaults = {"tokens_per_second": float(tps)} if tps is not None else {}
        spec = resolve_position_spec(positions, self.config.layout, **defaults) if positions is not None else None
        if isinstance(camera_attention, str):
            camera_attention = CameraAttentionSpec(mode=camera_attention)
        elif isinstance(camera_attention, Mapping):
            camera_attention = CameraAttentionSpec.from_dict(dict(camera_attention))
        self.config = self.config.replace(positions=spec, camera_attention=camera_attention,
                                          slot_axis=None if slot_axis is None else tuple(slot_axis),
                                          pose_source=pose_source or self.config.pose_source)
        self._install_positions()
        return self

    def _install_positions(self) -> None:
        from posevlm.models import enable_pose_positions

        cfg = self.config
        if cfg.needs_cameras and cfg.pose_source == "vggt" and self.spatial_encoder is None:
            raise ConfigError("cameras from VGGT need a spatial encoder; pass pose_source='manifest' or build one",
                              field="pose_source")
        enable_pose_positions(self.qwen, cfg.position_spec(),
                              slot_axis=None if cfg.slot_axis is None else list(cfg.slot_axis),
                              camera_attention=cfg.camera_attention,
                              extra_video_tokens=self.extra_tokens_per_visual_token)

    # -- the spatial branch ----------------------------------------------------------------------------------
    def _vggt_frames(self, frames: Tensor, grid_row: Sequence[int], index: int) -> Tensor:
        """One video's frames as VGGT sees them: (2T, 3, gh * p, gw * p) float in [0, 1], p = VGGT's patch."""
        t, gh, gw = (int(v) for v in grid_row)
        name = f"video_tchw[{index}]"
        if not isinstance(frames, Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ShapeError(f"{name} must be (S, 3, H, W) RGB frames; got {shape}", name=name,
                             shape=shape if isinstance(shape, tuple) else None)
        if frames.dtype == torch.uint8:
            frames = frames.float() / 255.0
        elif not frames.dtype.is_floating_point:
            raise ShapeError(f"{name} must be float in [0, 1] (or uint8 0..255); got {frames.dtype}", name=name,
                             shape=tuple(frames.shape))
        qp = int(self.qwen.config.vision_config.patch_size)
        h, w = frames.shape[-2:]
        if (h, w) != (gh * qp, gw * qp):
            raise ShapeError(f"{name} is {h}x{w} but video_grid_thw[{index}] = ({t}, {gh}, {gw}) was made from "
                             f"{gh * qp}x{gw * qp} frames ({qp}-px patches); pass the frames the processor resized "
                             "for pixel_values_videos (same size, same order), rescaled to [0, 1] but not "
                             "normalised", name=name, shape=tuple(frames.shape))
        frames = pad_to_tubelets(frames, t, name)
        vp = self.spatial_encoder.patch_size
        if (h, w) != (gh * vp, gw * vp):  # Qwen3-VL: 16-px grid -> the same grid in 14-px VGGT patches
            frames = F.interpolate(frames.float(), size=(gh * vp, gw * vp), mode="bilinear", align_corners=False,
                                   antialias=True).clamp_(0.0, 1.0)
        return frames

    def encode_spatial(self, video_tchw, video_grid_thw: Tensor, *, tokens: bool | None = None,
                       cameras: bool | None = None) -> SpatialInputs:
        """Run the spatial encoder on every video of a prompt batch (equal-shape videos in one batch).

        Args:
            video_tchw: per video (S, 3, H, W) in [0, 1] (see the class docstring).
            video_grid_thw: (V, 3) the processor's video grids.
            tokens: compute merged connector tokens (default: when the connector fuses).
            cameras: decode the camera head (default: when positions / camera attention need cameras).
        Returns:
            :class:`SpatialInputs`.
        Raises:
            ShapeError: wrong number of videos, frames or sizes for the grids (names the fix).
        """
        grid = torch.as_tensor(video_grid_thw).to(device="cpu", dtype=torch.long)
        if grid.ndim != 2 or grid.shape[-1] != 3:
            raise ShapeError(f"video_grid_thw must be (V, 3); got {tuple(grid.shape)}", name="video_grid_thw",
                             shape=tuple(grid.shape))
        tokens = self.fuses_tokens if tokens is None else tokens
        cameras = self.config.needs_cameras if cameras is None else cameras
        if not (tokens or cameras):
            return SpatialInputs(grid)
        if self.spatial_encoder is None:
            raise ConfigError("this model has no spatial encoder", field="spatial_encoder")
        if video_tchw is None:
            need = "the connector fuses spatial tokens" if tokens else "the cameras come from VGGT"
            raise ShapeError(f"video_tchw is required at prefill: {need}. Pass the processor's resized frames per video "
                             "as (S, 3, H, W) floats in [0, 1] (video_tchw=[...])", name="video_tchw")
        videos = per_video(video_tchw, grid.shape[0], "video_tchw")
        rows = grid.tolist()
        device = next(self.spatial_encoder.parameters()).device
        frames = [self._vggt_frames(v.to(device), rows[i], i) for i, v in enumerate(videos)]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(tuple(f.shape), []).append(i)
        merged: list[Tensor | None] = [None] * len(frames)
        w2c: list[Tensor | None] = [None] * len(frames)
        k_px: list[Tensor | None] = [None] * len(frames)
        hw: list[Tensor | None] = [None] * len(frames)
        order = self.config.connector.merge_order if self.config.connector is not None else "v1.1"
        for shape, idx in groups.items():
            enc = self.spatial_encoder.encode(torch.stack([frames[i] for i in idx]), layers=(self.config.spatial_layer,),
                                              pose=cameras)
            if tokens:
                patches = enc.patch_tokens()  # (B, 2T, gh * gw, DD)
                for j, i in enumerate(idx):
                    merged[i] = merge_spatial_tokens(patches[j], rows[i], order)
            if cameras:
                if enc.pose_enc is None:
                    raise ConfigError("cameras requested but the spatial encoder has no camera head; build it with "
                                      "the camera head or pass w2c_opencv", field="spatial_config")
                from posevlm.spatial.vggt import decode_pose_encoding

                ext, intr = decode_pose_encoding(enc.pose_enc, enc.image_hw)
                size = torch.tensor(enc.image_hw, dtype=torch.long)
                for j, i in enumerate(idx):
                    w2c[i], k_px[i], hw[i] = ext[j].float(), intr[j].float(), size
        return SpatialInputs(grid, tuple(merged) if tokens else None, tuple(w2c) if cameras else None,
                             tuple(k_px) if cameras else None, tuple(hw) if cameras else None)

    def _connect(self, visual: tuple[Tensor, ...], video_grid_thw: Tensor) -> tuple[Tensor, ...]:
        """Per video: the connector's fused tokens (fusing connectors) or the 2D tokens followed by the connector's
        extra tokens (``fuses = False``, e.g. ``sequence_cat``). Called by the hook at prefill."""
        if not self.fuses_tokens:
            return visual
        state = self._pending
        if state is None or state.tokens is None:
            raise ShapeError("the Spatial-MLLM connector needs this prompt's spatial tokens: call SpatialMLLM.forward "
                             "/ generate with video_tchw (calling model.qwen directly skips the spatial encoder)",
                             name="video_tchw")
        grid = torch.as_tensor(video_grid_thw).to(device="cpu", dtype=torch.long)
        if not torch.equal(grid, state.grid_thw):
            raise ShapeError(f"the vision tower got video grids {grid.tolist()} but the spatial tokens were made for "
                             f"{state.grid_thw.tolist()}; pass the same video_grid_thw and video_tchw", name="video_grid_thw",
                             shape=tuple(grid.shape))
        fuses = bool(getattr(self.connector, "fuses", True))
        out = []
        for v, s in zip(visual, state.tokens):
            connected = self.connector(v, s.to(device=v.device))
            out.append(connected if fuses else torch.cat([v, connected.to(v.dtype)], 0))
        return tuple(out)

    # -- forward / generate ----------------------------------------------------------------------------------
    def _check_inputs(self, input_ids: Tensor | None, kw: Mapping[str, Any]) -> None:
        if self.fuses_tokens and kw.get("mm_encoder_outputs") is not None:
            raise ConfigError("mm_encoder_outputs bypass the Spatial-MLLM connector; pass pixel_values_videos with "
                              "video_tchw", field="mm_encoder_outputs")
        if self.fuses_tokens and kw.get("pixel_values") is not None:
            raise ConfigError("Spatial-MLLM fuses video tokens only; pass an image as a 2-frame video (the image "
                              "repeated, as the processor pads it)", field="pixel_values")
        grid = kw.get("video_grid_thw")
        if input_ids is None or grid is None or kw.get("pixel_values_videos") is None:
            return
        grid = torch.as_tensor(grid)
        merge = int(self.qwen.config.vision_config.spatial_merge_size)
        per_video_tokens = grid.prod(-1) // merge ** 2
        expected = int(per_video_tokens.sum()) * (1 + self.extra_tokens_per_visual_token)
        found = int((input_ids == self.qwen.config.video_token_id).sum())
        if found != expected:
            extra = self.extra_tokens_per_visual_token
            what = f" x (1 + {extra} extra per token of the {self.config.connector.type} connector)" if extra else ""
            raise ShapeError(f"input_ids hold {found} video pad tokens but video_grid_thw {grid.tolist()} gives "
                             f"{int(per_video_tokens.sum())} merged tokens{what} = {expected}; tokenise the prompt "
                             "with the processor that made pixel_values_videos (one <|video_pad|> per merged token)",
                             name="input_ids", shape=tuple(input_ids.shape))

    def _pose_kwargs(self, state: SpatialInputs | None, given: dict[str, Any]) -> dict[str, Any]:
        given = {k: v for k, v in given.items() if v is not None}
        if self.config.positions is None and self.config.camera_attention is None:
            if given:
                raise ConfigError(f"{', '.join(sorted(given))} given but this model has stock positions and no camera "
                                  "attention; call model.enable_pose_positions(...) first (or drop them)",
                                  field="positions", value=sorted(given))
            return {}
        if state is None or not self.config.needs_cameras or "w2c_opencv" in given:
            return given
        if self.config.pose_source == "manifest":
            raise ShapeError("pose_source='manifest': pass w2c_opencv (per video (S, 4, 4) world-to-camera, OpenCV "
                             "axes, e.g. posevlm.models.pose_inputs.model_kwargs(...)), or use pose_source='vggt'",
                             name="w2c_opencv")
        return {**state.pose_kwargs(intrinsics=self.config.needs_intrinsics), **given}

    def _prefill_state(self, input_ids: Tensor | None, kw: Mapping[str, Any], video_tchw) -> SpatialInputs | None:
        self._check_inputs(input_ids, kw)
        if kw.get("pixel_values_videos") is None:
            return None
        grid = kw.get("video_grid_thw")
        if grid is None:
            raise ShapeError("pixel_values_videos given without video_grid_thw", name="video_grid_thw")
        cameras = self.config.needs_cameras and self.config.pose_source == "vggt" and kw.get("w2c_opencv") is None
        return self._encode_prefill(video_tchw, grid, cameras)

    def _encode_prefill(self, video_tchw, video_grid_thw: Tensor, cameras: bool) -> SpatialInputs:
        """What one prefill needs from the spatial encoder (compositions built on this one encode more)."""
        return self.encode_spatial(video_tchw, video_grid_thw, tokens=self.fuses_tokens, cameras=cameras)

    @contextlib.contextmanager
    def _armed(self, state: SpatialInputs | None):
        self._pending = state
        try:
            yield
        finally:
            self._pending = None

    def forward(self, input_ids: Tensor | None = None, *, video_tchw=None, w2c_opencv=None, K_pixels=None,
                image_hw=None, frame_ids=None, **kwargs):
        """One forward pass of the stock Qwen model with the spatial tokens fused (see the class docstring for the
        inputs). Prefill (``pixel_values_videos`` given) runs VGGT once; decode steps never do. Returns the stock
        ``CausalLMOutputWithPast`` (``logits`` (B, L, vocab), ``loss`` with ``labels``, ``past_key_values``)."""
        given = {"w2c_opencv": w2c_opencv, "K_pixels": K_pixels, "image_hw": image_hw, "frame_ids": frame_ids}
        state = self._prefill_state(input_ids, {**kwargs, **given}, video_tchw)
        pose = self._pose_kwargs(state, given)
        with self._armed(state):
            return self.qwen(input_ids=input_ids, **kwargs, **pose)

    @torch.no_grad()
    def generate(self, input_ids: Tensor | None = None, *, video_tchw=None, w2c_opencv=None, K_pixels=None,
                 image_hw=None, frame_ids=None, **kwargs) -> Tensor:
        """``generate`` of the stock Qwen model with the spatial branch run once before it (the vision tower runs
        once in generate's multimodal pre-encoding, where the hook fuses). Same inputs as :meth:`forward` plus the
        transformers generation arguments; returns (B, L + new) token ids (prompt included, as transformers)."""
        given = {"w2c_opencv": w2c_opencv, "K_pixels": K_pixels, "image_hw": image_hw, "frame_ids": frame_ids}
        state = self._prefill_state(input_ids, {**kwargs, **given}, video_tchw)
        pose = self._pose_kwargs(state, given)
        if input_ids is not None:
            kwargs["input_ids"] = input_ids
        with self._armed(state):
            return self.qwen.generate(**kwargs, **pose)
