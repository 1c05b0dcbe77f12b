"""VLM2Stage: the whole VLM² stage over streams of steps, with streaming state per video.

Notation: V videos of a call, T steps (tubelets) of a video, n tokens per step (its mh x mw merged grid), D width,
8DD merged geometry width, F frames per step (2), Cv view width.

Per video, steps in order, each module only if switched on (:class:`~posevlm.memory.config.VLM2Config`)::

    X_t   = the step's visual tokens (the base composition's: Qwen's 2D tokens, or the connector's output)
    X_t  += alpha_t * phi(C_t / scale)                          CoordinateInjection (C_t: pooled points)
    G_t   = geometry_proj(RMSNorm(merged_t))                    CrossAttentionFusion.geometry_tokens
    KV_t  = [G_t + MLP([RMSNorm(G_t); v_t]); v_t]               ViewpointAlignment (else KV_t = G_t)
    H_t   = X_t + o_proj(Attn(X_t -> KV_t)) [+ FFN]             CrossAttentionFusion
    out_t = H_t + out_proj(M_t), memories updated               DualMemory (Algorithm 1)

The stage runs step by step, all videos of one token grid batched at each step (the memory is a recurrence anyway;
running the per-step modules on one step at a time too keeps every tensor's shape independent of how a video is
chunked, which is what makes chunked streaming bit-exact). With every module off the stage returns its inputs (the
base composition's tokens).

Streaming: each video carries a :class:`VLM2State` (its memories, its coordinate scale and how many steps it has
seen). ``states=None`` (or a None entry) starts a video afresh -- the reset at a video boundary; passing the
returned states back with the next chunk of the same video continues it, and processing a video in chunks gives
exactly the outputs and final state of one pass (tested bit for bit). Videos of one call never share memories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from posevlm.errors import ShapeError
from posevlm.memory.alignment import ViewpointAlignment
from posevlm.memory.config import VLM2Config
from posevlm.memory.dual import DualMemory, DualMemoryState
from posevlm.memory.fusion import CrossAttentionFusion
from posevlm.memory.injection import CoordinateInjection
from posevlm.memory.points import first_step_scale

__all__ = ["VideoSteps", "VLM2State", "VLM2Stage"]


@dataclass(frozen=True)
class VideoSteps:
    """One video's (or one chunk's) inputs to the stage, one row per step.

    Fields:
        tokens: (T, n, D) visual tokens, steps in order, each step's grid in raster order.
        geometry: (T, n, 8DD) merged spatial-encoder rows (needed with cross-attention fusion).
        view: (T, F, Cv) each step's per-frame view inputs: camera tokens (Cv = DD) or pose encodings (Cv = 9)
            (needed with viewpoint alignment).
        coords: (T, n, 3) pooled points in the first frame's world frame; coords_valid (T, n) bool (needed with
            coordinate injection; :func:`posevlm.memory.points.pool_point_maps` makes both).
    """

    tokens: Tensor
    geometry: Tensor | None = None
    view: Tensor | None = None
    coords: Tensor | None = None
    coords_valid: Tensor | None = None

    @property
    def steps(self) -> int:
        return int(self.tokens.shape[0])

    def chunk(self, start: int, stop: int) -> "VideoSteps":
        """Steps ``start .. stop - 1`` (a chunk for streaming)."""
        return VideoSteps(*(None if x is None else x[start:stop] for x in
                            (self.tokens, self.geometry, self.view, self.coords, self.coords_valid)))


@dataclass(frozen=True)
class VLM2State:
    """A video's stream state after some steps.

    Fields:
        memory: its memories (a :class:`~posevlm.memory.dual.DualMemoryState` of one stream), or None without
            memory.
        coord_scale: () its coordinate scale, set by the first step with a valid point (NaN before that; None
            without coordinate injection or with ``coordinate_scale="none"``).
        steps: steps seen so far.
    """

    memory: DualMemoryState | None = None
    coord_scale: Tensor | None = None
    steps: int = 0

    def state_dict(self) -> dict[str, Tensor]:
        """Flat tensors (``memory.working.entries``, ..., ``coord_scale``, ``steps``), e.g. for ``torch.save``."""
        out = {f"memory.{k}": v for k, v in (self.memory.state_dict() if self.memory is not None else {}).items()}
        if self.coord_scale is not None:
            out["coord_scale"] = self.coord_scale
        out["steps"] = torch.tensor(self.steps, dtype=torch.long)
        return out

    @classmethod
    def from_state_dict(cls, data: dict[str, Tensor]) -> "VLM2State":
        memory = {k[len("memory."):]: v for k, v in data.items() if k.startswith("memory.")}
        return cls(DualMemoryState.from_state_dict(memory) if memory else None, data.get("coord_scale"),
                   int(data["steps"]) if "steps" in data else 0)


class VLM2Stage(nn.Module):
    """Coordinate injection, viewpoint alignment, cross-attention fusion and dual memory, each optional.

    Submodules (None when switched off): ``injection`` (:class:`CoordinateInjection`), ``alignment``
    (:class:`ViewpointAlignment`), ``fusion`` (:class:`CrossAttentionFusion`), ``memory`` (:class:`DualMemory`).
    """

    def __init__(self, config: VLM2Config):
        super().__init__()
        self.config = c = config
        self.injection = CoordinateInjection(c.llm_dim, num_frequencies=c.num_frequencies, min_period=c.min_period,
                                             max_period=c.max_period, hidden=c.injection_hidden, gate=c.gate,
                                             zero_init=c.zero_init) if c.coordinate_injection else None
        self.alignment = ViewpointAlignment(c.llm_dim, c.view_dim, normalise_view=c.view_source == "camera_token",
                                            zero_init=c.zero_init) if c.viewpoint_alignment else None
        self.fusion = CrossAttentionFusion(c.llm_dim, c.merged_dim, c.num_heads, mlp_ratio=c.fusion_mlp_ratio,
                                           zero_init=c.zero_init) if c.cross_attention_fusion else None
        self.memory = DualMemory(c.llm_dim, c.num_heads, working_size=c.working_size, episodic_size=c.episodic_size,
                                 working=c.working_memory, episodic=c.episodic_memory, similarity=c.similarity,
                                 detach=c.detach_memory, zero_init=c.zero_init) if c.memory else None

    # -- checks -----------------------------------------------------------------------------------------------
    def _check(self, video: VideoSteps, index: int) -> None:
        c = self.config
        t = video.tokens
        name = f"videos[{index}]"
        if t.dim() != 3 or t.shape[-1] != c.llm_dim or t.shape[0] < 1:
            raise ShapeError(f"{name}.tokens must be (T >= 1, n, D={c.llm_dim}); got {tuple(t.shape)}",
                             name=f"{name}.tokens", shape=tuple(t.shape))
        steps, n = t.shape[:2]
        need = []
        if c.needs_geometry:
            need.append(("geometry", (steps, n, c.merged_dim)))
        if c.needs_view:
            view = video.view
            frames = view.shape[1] if isinstance(view, Tensor) and view.dim() == 3 else 2
            need.append(("view", (steps, frames, c.view_dim)))
        if c.needs_points:
            need += [("coords", (steps, n, 3)), ("coords_valid", (steps, n))]
        for field, shape in need:
            value = getattr(video, field)
            if not isinstance(value, Tensor) or tuple(value.shape) != shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else None
                raise ShapeError(f"{name}.{field} must be {shape} for this VLM² configuration; got {got}",
                                 name=f"{name}.{field}", shape=got)

    # -- forward ------------------------------------------------------------------------------------------------
    def forward(self, videos: Sequence[VideoSteps], states: Sequence[VLM2State | None] | None = None
                ) -> tuple[list[Tensor], list[VLM2State]]:
        """Run the stage over the next steps of V videos.

        Args:
            videos: per video its :class:`VideoSteps` (the fields this configuration needs).
            states: per video the state its previous chunk returned, or None to start afresh (default: all None).
        Returns:
            (per video (T, n, D) output tokens in the input dtype, per video its new :class:`VLM2State`).
        Raises:
            ShapeError: a missing or mis-shaped input, or a state from another token grid (names the video).
        """
        states = [None] * len(videos) if states is None else list(states)
        if len(states) != len(videos):
            raise ShapeError(f"{len(states)} states for {len(videos)} videos; pass one (or None) per video",
                             name="states")
        for i, video in enumerate(videos):
            self._check(video, i)
        outputs: list[Tensor | None] = [None] * len(videos)
        new_states: list[VLM2State | None] = [None] * len(videos)
        groups: dict[int, list[int]] = {}
        for i, video in enumerate(videos):
            groups.setdefault(int(video.tokens.shape[1]), []).append(i)
        for idx in groups.values():
            outs, ends = self._run([videos[i] for i in idx], [states[i] for i in idx])
            for j, i in enumerate(idx):
                outputs[i], new_states[i] = outs[j], ends[j]
        return outputs, new_states

    @staticmethod
    def _scales(coords: Tensor, valid: Tensor, states: list[VLM2State | None]) -> Tensor:
        """(B,) coordinate scale per stream: its state's, else that of its first step here with a valid point;
        NaN while unknown (no valid point yet)."""
        nan = torch.full((), float("nan"), dtype=coords.dtype, device=coords.device)
        prior = torch.stack([s.coord_scale.to(coords) if s is not None and s.coord_scale is not None else nan
                             for s in states])
        return torch.where(torch.isnan(prior), first_step_scale(coords, valid), prior)

    def _run(self, videos: list[VideoSteps], states: list[VLM2State | None]) -> tuple[list[Tensor], list[VLM2State]]:
        """Videos with one token grid (n tokens per step), batched; shorter ones padded at the end."""
        c = self.config
        lengths = [v.steps for v in videos]
        steps = max(lengths)
        device = videos[0].tokens.device
        active = torch.arange(steps, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]

        def stack(field: str) -> Tensor:
            parts = [getattr(v, field) for v in videos]
            if all(p.shape[0] == steps for p in parts):
                return torch.stack(parts)
            return torch.stack([torch.cat([p, p.new_zeros(steps - p.shape[0], *p.shape[1:])]) for p in parts])

        x = stack("tokens")
        n = x.shape[2]
        scales = coords = valid = geometry = view = memory = None
        if self.injection is not None:
            coords, valid = stack("coords"), stack("coords_valid").bool() & active[..., None]
            if c.coordinate_scale == "first_frame":
                scales = self._scales(coords, valid, states)
                coords = coords / torch.where(torch.isnan(scales), 1, scales)[:, None, None, None]
        if self.fusion is not None:
            geometry = stack("geometry")
            view = stack("view") if self.alignment is not None else None
        if self.memory is not None:
            parts = []
            for i, s in enumerate(states):
                if s is not None and s.memory is not None:
                    self.memory.check_state(s.memory, x[i:i + 1, 0])
                    parts.append(s.memory)
                else:
                    parts.append(self.memory.init_state(1, n, device=device, dtype=self.memory.out_proj.weight.dtype))
            memory = DualMemoryState.cat(parts)
        steps_out = []
        for t in range(steps):  # one step at a time: the same shapes whatever the chunking, so chunks are exact
            h = x[:, t]
            if self.injection is not None:
                h, _ = self.injection(h, coords[:, t], valid[:, t])
            if self.fusion is not None:
                keys = self.fusion.geometry_tokens(geometry[:, t])
                if self.alignment is not None:
                    keys = self.alignment(keys, view[:, t])
                h = self.fusion(h, keys)
            if self.memory is not None:
                h, _, memory = self.memory.step(memory, h, active[:, t])
            steps_out.append(h)
        x = torch.stack(steps_out, dim=1)
        outs, ends = [], []
        for i, (length, state) in enumerate(zip(lengths, states)):
            ends.append(VLM2State(memory.select(slice(i, i + 1)) if memory is not None else None,
                                  None if scales is None else scales[i],
                                  (state.steps if state is not None else 0) + length))
            outs.append(x[i, :length])
        return outs, ends
