"""VLM2: the Spatial-MLLM composition with the VLM² stage after its connector.

Notation: V videos of a prompt batch (``video_grid_thw`` rows), S = 2T frames of a video, T tubelets (the stage's
steps), (gh, gw) its patch grid, (mh, mw) = (gh / 2, gw / 2) the merged grid, n = mh * mw tokens per tubelet,
N = T * n merged video tokens, D the LLM width, DD the VGGT token width.

``model.qwen``, ``model.spatial_encoder`` and ``model.connector`` are those of
:class:`~posevlm.models.spatial_mllm.SpatialMLLM` (``connector`` may be None); ``model.vlm2`` is a
:class:`~posevlm.memory.VLM2Stage`. At prefill, per video:

1. VGGT runs once on the frames (``video_tchw``) for what the configuration needs: the last-layer patch tokens
   merged to (N, 8DD) rows (connector, fusion keys), the per-frame camera tokens (2T, DD) (view inputs), the camera
   head's (2T, 9) encodings (view inputs with ``view_source="pose_encoding"``, cameras for pose positions), the
   point head's (2T, H, W, 3) point maps in the first frame's camera frame (coordinate injection);
2. the stock vision tower gives the 2D tokens; the connector (if any) fuses; the result X (N, D) is split into
   T steps of (n, D) and passed through the stage with the pooled points, the geometry rows and the view inputs;
   the memories run over the T steps in order, separately per video;
3. the stage's tokens go to the video pads; decoding never runs VGGT, the vision tower or the stage again.

Extra inputs of :meth:`VLM2.forward` / :meth:`VLM2.generate` (besides SpatialMLLM's):
    point_maps: per video (S, H, W, 3) point maps in the first frame's world frame (e.g. from depth + cameras,
        :func:`posevlm.point_io.from_scene`); override VGGT's point head. point_valid: per video (S, H, W) bool.
    pose_encoding: per video (S, 9) view inputs for ``view_source="pose_encoding"`` (e.g.
        :func:`posevlm.memory.pose_encoding_in_first_frame` of scan cameras); override VGGT's camera head.
    memory_state: per video the :class:`~posevlm.memory.VLM2State` its previous prompt ended with
        (``model.memory_states`` after that call), or None to start the video afresh (the default: every prompt is
        a new video). After each prefill ``model.memory_states`` holds every video's new state, in
        ``video_grid_thw`` order.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError
from posevlm.memory import VideoSteps, VLM2Stage, VLM2State, pool_point_maps
from posevlm.models.spatial_mllm.connectors import merge_spatial_tokens
from posevlm.models.spatial_mllm.model import SpatialInputs, SpatialMLLM, _spatial_video_features
from posevlm.models.vlm2.config import VLM2ModelConfig
from posevlm.positions.plan import pad_to_tubelets, per_video

__all__ = ["VLM2", "VLM2Inputs", "VLM2_KWARGS"]

#: per-video inputs of VLM2.forward / generate beyond SpatialMLLM's
VLM2_KWARGS = ("point_maps", "point_valid", "pose_encoding", "memory_state")


@dataclass(frozen=True)
class VLM2Inputs(SpatialInputs):
    """:class:`~posevlm.models.spatial_mllm.SpatialInputs` plus the stage's inputs, per video (None: not needed).

    Fields:
        geometry: per video (N, 8DD) merged VGGT patch tokens (the fusion's geometry rows).
        view: per video (2T, Cv) view inputs (camera tokens, Cv = DD, or pose encodings, Cv = 9).
        points: per video (2T, H, W, 3) point maps in the first frame's world frame; points_valid (2T, H, W) bool
            or None (finite points are valid).
        memory_state: per video its stream state to continue (None entries: a new video).
    """

    geometry: tuple[Tensor, ...] | None = None
    view: tuple[Tensor, ...] | None = None
    points: tuple[Tensor, ...] | None = None
    points_valid: tuple[Tensor | None, ...] | None = None
    memory_state: tuple[VLM2State | None, ...] | None = None


class VLM2(SpatialMLLM):
    """Spatial-MLLM (stock Qwen2.5-VL + VGGT + connector or none) followed by the VLM² stage (``vlm2``).

    Build with :meth:`compose` (bases + fresh connector and stage), :func:`~posevlm.models.vlm2.from_spatial_mllm`
    (a Spatial-MLLM + a fresh stage) or :meth:`from_pretrained`; save with :meth:`save_pretrained`. ``config`` is a
    :class:`~posevlm.models.vlm2.VLM2ModelConfig`. Inputs: those of SpatialMLLM plus :data:`VLM2_KWARGS` (module
    docstring). With every VLM² module off (``VLM2Config.off()``) the model is its base composition exactly.
    """

    def __init__(self, qwen, spatial_encoder, connector, config: VLM2ModelConfig, stage: VLM2Stage | None = None):
        if not isinstance(config, VLM2ModelConfig):
            raise ConfigError(f"VLM2 needs a VLM2ModelConfig; got {type(config).__name__} (wrap it with "
                              "VLM2ModelConfig.from_base(config, vlm2))", field="config")
        super().__init__(qwen, spatial_encoder, connector, config)
        hidden = int(qwen.config.text_config.hidden_size)
        v = config.vlm2
        if v.llm_dim != hidden:
            raise ConfigError(f"vlm2.llm_dim={v.llm_dim} must equal the LLM width {hidden}", field="vlm2.llm_dim",
                              value=v.llm_dim)
        if spatial_encoder is None and self._needs_vggt(given_points=False, given_pose=False):
            raise ConfigError("this VLM² configuration reads VGGT (geometry tokens, camera tokens or point maps); "
                              "pass a spatial encoder", field="spatial_encoder")
        if stage is not None and stage.config != v:
            raise ConfigError("the stage's VLM2Config differs from config.vlm2", field="vlm2")
        self.vlm2 = stage if stage is not None else VLM2Stage(v)
        self.memory_states: tuple[VLM2State, ...] | None = None
        self._call_inputs: dict[str, Any] = {}
        if connector is None:  # SpatialMLLM hooks the vision tower only for a connector; the stage needs it too
            inner = qwen.model
            object.__setattr__(inner, "_posevlm_spatial_mllm", self)
            inner.get_video_features = types.MethodType(_spatial_video_features, inner)

    # -- loading / saving (loading.py) ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source, **kwargs) -> "VLM2":
        """A VLM² checkpoint; see :func:`posevlm.models.vlm2.loading.from_pretrained`."""
        from posevlm.models.vlm2.loading import from_pretrained

        return from_pretrained(source, **kwargs)

    @classmethod
    def compose(cls, qwen, vggt=None, connector=None, **kwargs) -> "VLM2":
        """Bases + a fresh connector and stage; see :func:`posevlm.models.vlm2.loading.compose`."""
        from posevlm.models.vlm2.loading import compose

        return compose(qwen, vggt, connector, **kwargs)

    def save_pretrained(self, directory, **kwargs):
        """The Spatial-MLLM layout plus ``vlm2.*``; see :func:`posevlm.models.vlm2.loading.save_pretrained`."""
        from posevlm.models.vlm2.loading import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    # -- state ------------------------------------------------------------------------------------------------
    def reset_memory(self) -> "VLM2":
        """Forget the states of the last prefill (``memory_states``); the next call starts its videos afresh unless
        it passes ``memory_state``."""
        self.memory_states = None
        return self

    def _needs_vggt(self, *, given_points: bool, given_pose: bool) -> bool:
        v = self.config.vlm2
        return (self.fuses_tokens or v.needs_geometry or (v.needs_view and v.view_source == "camera_token")
                or (v.needs_view and v.view_source == "pose_encoding" and not given_pose)
                or (v.needs_points and v.point_source == "vggt" and not given_points))

    # -- the spatial branch ----------------------------------------------------------------------------------
    def encode_vlm2(self, video_tchw, video_grid_thw: Tensor, *, cameras: bool | None = None, point_maps=None,
                    point_valid=None, pose_encoding=None, memory_state=None) -> VLM2Inputs:
        """Run VGGT once per shape group for everything the configuration reads (module docstring, step 1).

        Args:
            video_tchw, video_grid_thw: as :meth:`SpatialMLLM.encode_spatial`.
            cameras: decode the camera head for the positions / camera attention (default: when they need it).
            point_maps, point_valid, pose_encoding, memory_state: per video, see the module docstring.
        Returns:
            :class:`VLM2Inputs`.
        Raises:
            ShapeError: wrong number of videos or frames (names the input and the fix).
        """
        grid = torch.as_tensor(video_grid_thw).to(device="cpu", dtype=torch.long)
        if grid.ndim != 2 or grid.shape[-1] != 3:
            raise ShapeError(f"video_grid_thw must be (V, 3); got {tuple(grid.shape)}", name="video_grid_thw",
                             shape=tuple(grid.shape))
        rows = grid.tolist()
        n_videos = len(rows)
        v = self.config.vlm2
        reads = {"point_maps": v.needs_points, "point_valid": v.needs_points,
                 "pose_encoding": v.needs_view and v.view_source == "pose_encoding"}
        unused = [name for name, value in (("point_maps", point_maps), ("point_valid", point_valid),
                                           ("pose_encoding", pose_encoding)) if value is not None and not reads[name]]
        if unused:
            raise ConfigError(f"{', '.join(unused)} given but this VLM² configuration does not read them (point maps: "
                              "coordinate_injection; pose encodings: viewpoint_alignment with view_source="
                              "'pose_encoding'); drop them or switch the module on", field="vlm2", value=unused)
        cameras = self.config.needs_cameras if cameras is None else cameras
        points = per_video(point_maps, n_videos, "point_maps", required=False)
        valid = per_video(point_valid, n_videos, "point_valid", required=False)
        poses = per_video(pose_encoding, n_videos, "pose_encoding", required=False)
        states = per_video(memory_state, n_videos, "memory_state", required=False)
        want_points = v.needs_points and any(p is None for p in points)
        if want_points and v.point_source == "given":
            raise ShapeError("point_source='given': pass point_maps (per video (S, H, W, 3) in the first frame's world "
                             "frame, e.g. posevlm.point_io.from_scene)", name="point_maps")
        want_pose = v.needs_view and v.view_source == "pose_encoding" and any(p is None for p in poses)
        want_token = v.needs_view and v.view_source == "camera_token"
        want_rows = self.fuses_tokens or v.needs_geometry
        heads = (("camera",) if cameras or want_pose else ()) + (("point",) if want_points else ())
        merged: list[Tensor | None] = [None] * n_videos
        view: list[Tensor | None] = [None] * n_videos
        w2c: list[Tensor | None] = [None] * n_videos
        k_px: list[Tensor | None] = [None] * n_videos
        hw: list[Tensor | None] = [None] * n_videos
        if want_rows or want_token or heads:
            if video_tchw is None:
                raise ShapeError("video_tchw is required at prefill: VGGT provides this VLM² model's geometry, view "
                                 "or points. Pass the processor's resized frames per video as (S, 3, H, W) floats in "
                                 "[0, 1] (video_tchw=[...])", name="video_tchw")
            videos = per_video(video_tchw, n_videos, "video_tchw")
            device = next(self.spatial_encoder.parameters()).device
            frames = [self._vggt_frames(x.to(device), rows[i], i) for i, x in enumerate(videos)]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, f in enumerate(frames):
                groups.setdefault(tuple(f.shape), []).append(i)
            order = self.config.connector.merge_order if self.config.connector is not None else "v1.1"
            k = self.spatial_encoder.patch_start_idx
            for idx in groups.values():
                pred = self.spatial_encoder(torch.stack([frames[i] for i in idx]), heads=heads,
                                            layers=(self.config.spatial_layer,))
                tokens = pred.aggregated[self.config.spatial_layer]  # (B, 2T, k + gh * gw, DD)
                if cameras:
                    ext, intr = pred.cameras()
                for j, i in enumerate(idx):
                    if want_rows:
                        merged[i] = merge_spatial_tokens(tokens[j, :, k:], rows[i], order)
                    if want_token:
                        view[i] = tokens[j, :, 0]
                    elif want_pose and poses[i] is None:
                        view[i] = pred.pose_enc[j]
                    if want_points and points[i] is None:
                        points[i] = pred.world_points[j]
                    if cameras:
                        w2c[i], k_px[i] = ext[j].float(), intr[j].float()
                        hw[i] = torch.tensor(pred.image_hw, dtype=torch.long)
        for i, row in enumerate(rows):
            t = int(row[0])
            if v.needs_view and view[i] is None:
                view[i] = pad_to_tubelets(torch.as_tensor(poses[i]), t, f"pose_encoding[{i}]")
            if v.needs_points:
                points[i] = pad_to_tubelets(torch.as_tensor(points[i]), t, f"point_maps[{i}]")
                if valid[i] is not None:
                    valid[i] = pad_to_tubelets(torch.as_tensor(valid[i]), t, f"point_valid[{i}]")
        return VLM2Inputs(grid, tuple(merged) if self.fuses_tokens else None,
                          tuple(w2c) if cameras else None, tuple(k_px) if cameras else None,
                          tuple(hw) if cameras else None,
                          geometry=tuple(merged) if v.needs_geometry else None,
                          view=tuple(view) if v.needs_view else None,
                          points=tuple(points) if v.needs_points else None,
                          points_valid=tuple(valid) if v.needs_points else None,
                          memory_state=tuple(states))

    def _encode_prefill(self, video_tchw, video_grid_thw: Tensor, cameras: bool) -> VLM2Inputs:
        return self.encode_vlm2(video_tchw, video_grid_thw, cameras=cameras, **self._call_inputs)

    def _connect(self, visual: tuple[Tensor, ...], video_grid_thw: Tensor) -> tuple[Tensor, ...]:
        """The connector's tokens (or the 2D tokens), then the stage per video (called by the hook at prefill)."""
        base = super()._connect(visual, video_grid_thw) if self.fuses_tokens else visual
        if not self.config.vlm2.active:
            self.memory_states = None
            return base
        state = self._pending
        if not isinstance(state, VLM2Inputs):
            raise ShapeError("the VLM² stage needs this prompt's VGGT outputs: call VLM2.forward / generate with "
                             "video_tchw (calling model.qwen directly skips them)", name="video_tchw")
        grid = torch.as_tensor(video_grid_thw).to(device="cpu", dtype=torch.long)
        if not torch.equal(grid, state.grid_thw):
            raise ShapeError(f"the vision tower got video grids {grid.tolist()} but the VGGT outputs were made for "
                             f"{state.grid_thw.tolist()}; pass the same video_grid_thw and video_tchw",
                             name="video_grid_thw", shape=tuple(grid.shape))
        merge = int(self.qwen.config.vision_config.spatial_merge_size)
        steps = []
        for i, (x, (t, gh, gw)) in enumerate(zip(base, grid.tolist())):
            mh, mw = gh // merge, gw // merge
            n = mh * mw
            device = x.device
            geometry = state.geometry[i].to(device).view(t, n, -1) if state.geometry is not None else None
            view = state.view[i].to(device).reshape(t, -1, state.view[i].shape[-1]) if state.view is not None \
                else None
            coords = valid = None
            if state.points is not None:
                pts = state.points[i].to(device)
                mask = state.points_valid[i]
                coords, valid = pool_point_maps(pts, None if mask is None else mask.to(device), (mh, mw))
            steps.append(VideoSteps(x.view(t, n, -1), geometry, view, coords, valid))
        outs, ends = self.vlm2(steps, state.memory_state)
        self.memory_states = tuple(ends)
        return tuple(o.reshape(-1, o.shape[-1]) for o in outs)

    # -- forward / generate ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _inputs(self, given: dict[str, Any]):
        self._call_inputs = {k: v for k, v in given.items() if v is not None}
        try:
            yield
        finally:
            self._call_inputs = {}

    def forward(self, input_ids: Tensor | None = None, *, point_maps=None, point_valid=None, pose_encoding=None,
                memory_state: Sequence[VLM2State | None] | None = None, **kwargs):
        """SpatialMLLM.forward with the VLM² stage after the connector (inputs: module docstring)."""
        with self._inputs({"point_maps": point_maps, "point_valid": point_valid, "pose_encoding": pose_encoding,
                           "memory_state": memory_state}):
            return super().forward(input_ids, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: Tensor | None = None, *, point_maps=None, point_valid=None, pose_encoding=None,
                 memory_state: Sequence[VLM2State | None] | None = None, **kwargs) -> Tensor:
        """SpatialMLLM.generate with the VLM² stage (run once, in the prefill)."""
        with self._inputs({"point_maps": point_maps, "point_valid": point_valid, "pose_encoding": pose_encoding,
                           "memory_state": memory_state}):
            return super().generate(input_ids, **kwargs)
