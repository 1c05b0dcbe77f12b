"""Camera attention (PRoPE / GTA / CaPE) and the pose-distance bias inside the Qwen text decoders.

Notation: B batch, L tokens of this call, H query heads, D head dim, S frames of a video, T its tubelets,
N tubelet cameras of the whole batch (all videos concatenated, ``TokenMap.camera_index``).

How it is wired (transformers 5.23, instance-level patches only; :func:`install` / :func:`uninstall`):

* every decoder layer's ``self_attn.forward`` is replaced by :func:`qwen_attention_forward`, the stock forward
  (projections, Qwen3's q/k norms, RoPE, cache update, ``ALL_ATTENTION_FUNCTIONS`` dispatch, ``o_proj``) with
  ``q <- M^T q``, ``k <- M^-1 k``, ``v <- M^-1 v`` between RoPE and the cache update and ``o <- M o`` before
  ``o_proj`` (CaPE: q and k only). Cached keys and values are stored transformed, so a decode step
  transforms only its new tokens;
* the per-token matrices are built once per prefill from the per-video cameras (``w2c_opencv``, and for
  PRoPE ``K_pixels`` + ``image_hw``) merged per tubelet, re-referenced to each video's reference tubelet and
  translation-normalised per video (``posevlm.attention.attention_cameras``); they travel to the layers as
  the keyword argument ``posevlm_camera`` (a :class:`CameraContext`);
* text and image tokens have no camera: they use the identity, which is the reference camera of every video
  after re-referencing, so decode steps (text) need no transform and prefill + cached decode equals one
  full forward; global SE(3) invariance then holds for every pair of tokens;
* the bias ``-m_h * D(camera_i, camera_j)`` (``posevlm.attention.pose_distance_table``; 0 for pairs with
  text and across videos) is added to the logits at prefill in factored form: per batch row, a (C, C)
  table of its cameras; after the cache update every query gets ``m_h * onehot(camera_i)`` and every key
  ``-D(:, camera_j) / scaling`` as E = C (rounded up to 8) extra head dims (v: zeros), so the stock attention
  function (sdpa with its causal fast path, or eager) computes the biased logits with the stock mask, and the
  output's extra dims are dropped (``bias_impl="dense"`` keeps the (B, H, L, L) float mask as the reference).
  The cache holds the plain K/V. Decode queries are text, so their bias row is 0 and they run unchanged.
  ``m_h``: ``learned`` (a parameter per layer and head, initialised at 0 so a pretrained model is unchanged;
  saved with the checkpoint) or ``alibi`` (fixed geometric slopes).

Camera dims: by default the head dims of the rotary slots of the ``T`` axis (Qwen2.5 THW: slots 0-15 ->
dims 0-15 and 64-79, 8 groups of 4; PTHW: T's 8 slots; Qwen3: T's 24 interleaved slots). With
``rotary_on_camera_dims="off"`` (default) those slots are not rotated any more, so the camera block and RoPE
act on disjoint dims and both relative properties hold exactly; ``"keep"`` composes the camera block after
RoPE on the same dims (the fork's layout: identity cameras give the stock model, but logits are no longer
functions of relative pose and relative position alone).
"""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.overrides import parse_overrides

__all__ = ["CameraAttentionSpec", "CameraContext", "parse_camera_overrides", "camera_slots", "build_camera_context",
           "qwen_attention_forward", "install", "uninstall", "patch_attention_layer", "SLOPES_NAME"]

SLOPES_NAME = "posevlm_pose_slopes"
_CHOICES = {
    "rotary_on_camera_dims": ("off", "keep"),
    "reference": ("first", "medoid"),
    "translation_norm": ("max", "median", "mean", "none"),
    "camera_merge": ("mean", "first"),
    "bias": ("none", "learned", "alibi"),
    "bias_impl": ("factored", "dense"),
}


@dataclass(frozen=True)
class CameraAttentionSpec:
    """Camera attention recipe; serialised into ``model.config.posevlm_positions["camera_attention"]``.

    Fields:
        mode: ``prope`` (normalised intrinsics x w2c; needs ``K_pixels`` and ``image_hw``), ``gta`` (SE(3)
            w2c only), ``cape`` (queries and keys only; values and outputs untouched) or ``none`` (no camera
            transform: the bias alone).
        dims: ``"t_slots"`` (the head dims of the T axis's rotary slots) or explicit head-dim indices, a
            multiple of 4, grouped by 4 in the given order.
        rotary_on_camera_dims: ``off`` (those dims lose their rotary; disjoint) or ``keep`` (fork layout).
        reference / translation_norm: per video, the camera made the identity and the translation scale
            (max / median / mean camera-centre distance to the reference, or none).
        camera_merge: tubelet camera from its two frames: ``mean`` (SLERP midpoint, mean centre) or ``first``.
        bias: pose-distance bias ``none``, ``learned`` (slopes initialised at 0) or ``alibi`` (fixed).
        bias_lam: lambda weighting normalised translation against the geodesic angle in D.
        bias_impl: how the bias reaches the logits: ``factored`` (extra q/k head dims, one per camera of a
            batch row, rounded up to 8; no L x L tensor, SDPA keeps its causal fast path) or ``dense`` (the
            reference: a (B, H, L, L) float mask per layer, ≈ 2x a causal prefill). Same outputs to rounding.
    """

    mode: str = "gta"
    dims: str | tuple[int, ...] = "t_slots"
    rotary_on_camera_dims: str = "off"
    reference: str = "first"
    translation_norm: str = "max"
    camera_merge: str = "mean"
    bias: str = "none"
    bias_lam: float = 1.0
    bias_impl: str = "factored"
    schema_version: int = 1

    def __post_init__(self):
        from posevlm.attention import camera_modes

        problems = [f"{k}={getattr(self, k)!r} (allowed: {', '.join(v)})" for k, v in _CHOICES.items()
                    if getattr(self, k) not in v]
        if self.mode != "none" and self.mode not in camera_modes:
            problems.append(f"mode={self.mode!r} (allowed: {', '.join(camera_modes.names())}, none)")
        if isinstance(self.dims, str):
            if self.dims != "t_slots":
                problems.append(f"dims={self.dims!r} (use 't_slots' or a list of head dims)")
        else:
            dims = tuple(int(d) for d in self.dims)
            object.__setattr__(self, "dims", dims)
            if not dims or len(dims) % 4 or len(set(dims)) != len(dims) or min(dims) < 0:
                problems.append(f"dims={list(dims)[:8]}... (unique head dims >= 0, a multiple of 4 of them)")
        if not isinstance(self.bias_lam, (int, float)) or self.bias_lam < 0:
            problems.append(f"bias_lam={self.bias_lam!r} (a number >= 0)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid CameraAttentionSpec: " + "; ".join(problems), field="camera_attention",
                              value=problems)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not isinstance(self.dims, str):
            out["dims"] = list(self.dims)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CameraAttentionSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown CameraAttentionSpec keys {unknown}; known: {sorted(known)}",
                              field="camera_attention", value=unknown)
        data = dict(data)
        if isinstance(data.get("dims"), list):
            data["dims"] = tuple(data["dims"])
        return cls(**data)


def _head_dims(text: str) -> str | tuple[int, ...]:
    """'t_slots' or comma-separated head-dim integers"""
    return text if text == "t_slots" else tuple(int(d) for d in text.split(","))


def parse_camera_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["rotary_on_camera_dims=keep", "bias_lam=0.5"]`` -> typed dict of CameraAttentionSpec fields (mode and
    bias come from ``--camera-attention`` / ``--pose-bias``)."""
    defaults = CameraAttentionSpec().to_dict()
    out = parse_overrides(items, defaults, what="camera-attention", field="camera_set",
                          reserved=("mode", "bias", "schema_version"), casts={"dims": _head_dims})
    CameraAttentionSpec.from_dict({**defaults, **out})  # validate now, naming the bad value
    return out


def camera_slots(spec: CameraAttentionSpec, slot_axis: Sequence[int], axes: Sequence[str], head_dim: int):
    """(head dims carrying the camera block, rotary slots they occupy) for a model's slot map."""
    from posevlm.attention import CameraDims

    slot_axis = torch.as_tensor(list(slot_axis), dtype=torch.long)
    half = head_dim // 2
    if spec.dims == "t_slots":
        if "T" not in axes:
            raise ConfigError(f"dims='t_slots' but the position rows {tuple(axes)} have no T axis (P replaced it); "
                              "pass explicit head dims in CameraAttentionSpec.dims", field="dims", value=list(axes))
        slots = (slot_axis == list(axes).index("T")).nonzero().flatten()
        if (2 * slots.numel()) % 4 or slots.numel() == 0:
            raise ConfigError(f"dims='t_slots': the T axis owns {slots.numel()} rotary slots = {2 * slots.numel()} "
                              "head dims, not a positive multiple of 4 (PTHW gives half of T's slots to P); pass "
                              "explicit head dims in CameraAttentionSpec.dims or a slot_axis giving T an even "
                              "number of slots", field="dims", value=slots.tolist())
        dims = CameraDims.from_rotary_slots(slots.tolist(), head_dim)
    else:
        if max(spec.dims) >= head_dim:
            raise ConfigError(f"camera dims reach {max(spec.dims)} but head_dim is {head_dim}", field="dims",
                              value=max(spec.dims))
        dims = CameraDims(torch.as_tensor(spec.dims, dtype=torch.long))
        slots = torch.unique(torch.as_tensor(spec.dims) % half)
    return dims, slots


@dataclass
class CameraContext:
    """What every patched layer needs for one prefill: the per-token transform and the pose distances.

    transform: ``posevlm.attention.CameraTransform`` over the B x L tokens of the call, or None.
    table: (B, C, C) float32 pose distances between the cameras of each batch row (0 across videos; C the
        largest number of tubelet cameras in a row), or None without the bias.
    camera_index: (B, L) int64 camera of each token in its row's ``table`` (-1: text, image, padding), or None.
    bias_impl: ``factored`` (the bias as extra q/k head dims; no L x L tensor) or ``dense`` (the reference:
        a (B, H, L, L) float mask per layer).
    """

    transform: Any
    table: Tensor | None = None
    camera_index: Tensor | None = None
    bias_impl: str = "factored"
    dense: dict = field(default_factory=dict, repr=False)  # bias_impl="dense": the (B, 1, L, L) -D, built once

    @property
    def has_bias(self) -> bool:
        return self.table is not None

    def repeat_interleave(self, n: int) -> "CameraContext":
        """The context for a batch whose rows were each repeated ``n`` times (beam search,
        ``num_return_sequences``), as ``generate`` expands its inputs."""
        if n == 1:
            return self
        t = self.transform
        rep = lambda m: None if m is None else m.repeat_interleave(n, 0)  # noqa: E731
        if t is not None:
            t = replace(t, mat_q=rep(t.mat_q), mat_kv=rep(t.mat_kv), mat_o=rep(t.mat_o))
        return CameraContext(t, rep(self.table), rep(self.camera_index), self.bias_impl)

    def extend(self, n: int) -> "CameraContext":
        """The context with ``n`` more tokens at the end, all without a camera (text: identity transform, no
        bias), e.g. the generated tokens a ``use_cache=False`` step runs again with the prompt."""
        if n <= 0:
            return self
        t = self.transform
        if t is not None:
            eye = torch.eye(4, dtype=t.mat_q.dtype, device=t.mat_q.device).expand(t.mat_q.shape[0], n, 4, 4)
            grow = lambda m: None if m is None else torch.cat([m, eye], 1)  # noqa: E731
            t = replace(t, mat_q=grow(t.mat_q), mat_kv=grow(t.mat_kv), mat_o=grow(t.mat_o))
        ci = None if self.camera_index is None else torch.nn.functional.pad(self.camera_index, (0, n), value=-1)
        return CameraContext(t, self.table, ci, self.bias_impl)

    def neg_distance(self) -> Tensor:
        """(B, 1, L, L) float32 ``-D(camera_i, camera_j)`` (0 for text and cross-video pairs): the dense
        reference's input, built once per forward on first use."""
        if "neg" not in self.dense:
            from posevlm.attention import pose_distance_bias

            ones = torch.ones(1, dtype=self.table.dtype, device=self.table.device)
            self.dense["neg"] = pose_distance_bias(self.table, self.camera_index, self.camera_index, ones)
        return self.dense["neg"]


def build_camera_context(spec: CameraAttentionSpec, dims, token_map, *, w2c_opencv, K_pixels=None,
                         image_hw=None) -> CameraContext:
    """Per-token camera transform (and pose distances when the bias is on) for one tokenised batch.

    w2c_opencv: per video (S, 4, 4) world-to-camera, OpenCV axes; K_pixels: per video (S, 3, 3) in pixels of
    image_hw: per video (S, 2) or (2,) (H, W) (required by ``prope``). Videos with equal T are batched."""
    from posevlm.attention import attention_cameras, build_camera_transform, camera_modes, pose_distance_table
    from posevlm.geometry import merge_temporal_pairs
    from posevlm.positions.plan import pad_to_tubelets, per_video

    grid = token_map.video_grid_thw
    n_vid = grid.shape[0]
    device = token_map.modality.device
    if n_vid == 0:
        return CameraContext(None, None)
    if w2c_opencv is None:
        raise ShapeError("camera attention needs w2c_opencv: one (S, 4, 4) world-to-camera (OpenCV) tensor per "
                         "video, e.g. posevlm.models.pose_inputs.model_kwargs(...)", name="w2c_opencv")
    if spec.mode == "none" and spec.bias == "none":
        return CameraContext(None, None)
    intrinsics = spec.mode != "none" and camera_modes.get(spec.mode).intrinsics
    if intrinsics and (K_pixels is None or image_hw is None):
        raise ShapeError(f"camera attention {spec.mode!r} needs K_pixels (per video (S, 3, 3)) and image_hw (the (H, W) "
                         "they refer to); use mode 'gta' for SE(3) cameras without intrinsics", name="K_pixels")
    t_list = grid[:, 0].tolist()
    cams = per_video(w2c_opencv, n_vid, "w2c_opencv")
    ks = per_video(K_pixels, n_vid, "K_pixels", required=False)
    hws = per_video(image_hw, n_vid, "image_hw", required=False)
    merged, k_first, hw_first = [], [], []
    for i, t in enumerate(t_list):
        c = pad_to_tubelets(torch.as_tensor(cams[i]).to(device=device, dtype=torch.float32), t, f"w2c_opencv[{i}]")
        merged.append(merge_temporal_pairs(c, spec.camera_merge))
        if ks[i] is not None and intrinsics:
            k = pad_to_tubelets(torch.as_tensor(ks[i]).to(device=device, dtype=torch.float32), t, f"K_pixels[{i}]")
            k_first.append(k[0::2])
            hw = torch.as_tensor(hws[i], device=device)
            hw_first.append(hw.expand(2 * t, 2)[0::2] if hw.ndim == 1 else pad_to_tubelets(hw, t, "image_hw")[0::2])
    by_t: dict[int, list[int]] = {}
    for i, t in enumerate(t_list):
        by_t.setdefault(t, []).append(i)
    per_video_p: list[Tensor | None] = [None] * n_vid
    per_video_d: list[Tensor | None] = [None] * n_vid
    for t, idx in by_t.items():
        w2c = torch.stack([merged[i] for i in idx])
        k = torch.stack([k_first[i] for i in idx]) if k_first else None
        hw = torch.stack([hw_first[i] for i in idx]) if hw_first else None
        if spec.mode != "none":
            p = attention_cameras(w2c, k, hw, mode=spec.mode, reference=spec.reference,
                                  translation_norm=spec.translation_norm)
            for j, i in enumerate(idx):
                per_video_p[i] = p[j]
        if spec.bias != "none":
            d = pose_distance_table(w2c, lam=spec.bias_lam, translation_norm=spec.translation_norm,
                                    reference=spec.reference)
            for j, i in enumerate(idx):
                per_video_d[i] = d[j]
    b = token_map.modality.shape[0]
    cam_index = token_map.camera_index
    transform = None if spec.mode == "none" else \
        build_camera_transform(torch.cat(per_video_p, 0)[None].expand(b, -1, -1, -1), cam_index, dims, spec.mode)
    if spec.bias == "none":
        return CameraContext(transform)
    table, local = _row_tables(torch.block_diag(*per_video_d), cam_index)
    return CameraContext(transform, table, local, spec.bias_impl)


def _row_tables(table: Tensor, camera_index: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row pose-distance tables from the (N, N) table of all the batch's cameras (block diagonal: 0 across
    videos) and the (B, L) global camera index: ((B, C, C), (B, L) index into its row's table, -1 kept), C the
    widest camera range of a row (one host sync per forward)."""
    n = table.shape[0]
    vis = camera_index >= 0
    lo = torch.where(vis, camera_index, n).amin(1)  # (B,); n for a row without video tokens
    hi = torch.where(vis, camera_index + 1, 0).amax(1)
    c = max(int((hi - lo).max()), 1)
    idx = lo[:, None] + torch.arange(c, device=table.device)  # (B, C) global cameras of each row
    inside = idx < hi[:, None]
    safe = idx.clamp(max=n - 1)
    rows = table[safe[:, :, None], safe[:, None, :]] * (inside[:, :, None] & inside[:, None, :])
    return rows.to(torch.float32), torch.where(vis, camera_index - lo[:, None], -1)


# --------------------------------------------------------------------------------------- the layer patch
def _biased_mask(mask: Tensor | None, neg_distance: Tensor, slopes: Tensor, q_len: int, kv_len: int,
                 dtype: torch.dtype) -> Tensor:
    """The dense reference (``bias_impl="dense"``): additive float mask (B, H, q_len, kv_len), ``slopes_h * -D``
    where attention is allowed, min elsewhere. The queries are the last ``q_len`` of the ``kv_len`` tokens."""
    device = neg_distance.device
    if mask is None:
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril(kv_len - q_len)[None, None]
    elif mask.dtype == torch.bool:
        allowed = mask[..., :kv_len]
    else:
        allowed = mask[..., :kv_len] == 0
    neg = neg_distance[..., kv_len - q_len : kv_len, :kv_len]
    slopes = slopes.to(device=device, dtype=neg.dtype).view(1, -1, 1, 1)
    if slopes.requires_grad and torch.is_grad_enabled():  # training the slopes: the differentiable form
        return (slopes * neg).masked_fill(~allowed, torch.finfo(dtype).min).to(dtype)
    # inference: one (B, H, q, kv) allocation in the output dtype, filled in place (the bias's memory cost)
    out = torch.empty((neg.shape[0], slopes.numel(), q_len, kv_len), dtype=dtype, device=device)
    torch.mul(slopes, neg, out=out)
    return out.masked_fill_(~allowed, torch.finfo(dtype).min)


def _with_bias_dims(context: CameraContext, slopes: Tensor, q: Tensor, k: Tensor, v: Tensor, scaling: float):
    """q, k, v with the factored pose-distance bias appended as E extra head dims (v zero-padded): the unchanged
    attention function then adds ``-slope_h * D(c(i), c(j))`` to every logit (0 for text) with its own mask,
    so SDPA keeps its causal fast path and nothing L x L is built."""
    from posevlm.attention import append_bias_dims, bias_dims_width, pose_bias_key_dims, pose_bias_query_dims

    q_len, kv_len = q.shape[2], k.shape[2]
    width = bias_dims_width(context.table.shape[-1])
    ci = context.camera_index.to(q.device)
    q_dims = pose_bias_query_dims(ci[:, kv_len - q_len : kv_len], slopes.to(q.device), width, dtype=q.dtype)
    k_dims = pose_bias_key_dims(context.table.to(k.device), ci[:, :kv_len], width, scale=scaling, dtype=k.dtype)
    return append_bias_dims(q, k, v, q_dims, k_dims)


def qwen_attention_forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None,
                       position_ids: Tensor | None = None, past_key_values=None,
                       position_embeddings: tuple[Tensor, Tensor] | None = None, posevlm_camera=None, **kwargs):
    """Stock Qwen2.5-VL / Qwen3-VL text attention with the camera transform around the cache update."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    q = self.q_proj(hidden_states).view(hidden_shape)
    k = self.k_proj(hidden_states).view(hidden_shape)
    if hasattr(self, "q_norm"):
        q, k = self.q_norm(q), self.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    v = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    cos, sin = position_embeddings
    q, k = self._posevlm_rope(q, k, cos, sin)
    transform = posevlm_camera.transform if posevlm_camera is not None else None
    if transform is not None:  # q, k, v are this call's temporaries: transform their camera dims in place
        q, k, v = (transform.apply_q(q, inplace=True), transform.apply_k(k, inplace=True),
                   transform.apply_v(v, inplace=True))
    if past_key_values is not None:
        k, v = past_key_values.update(k, v, self.layer_idx)
    slopes = getattr(self, SLOPES_NAME, None)
    head_dim = q.shape[-1]
    if posevlm_camera is not None and posevlm_camera.has_bias and slopes is not None:
        if posevlm_camera.bias_impl == "dense":
            attention_mask = _biased_mask(attention_mask, posevlm_camera.neg_distance(), slopes, q.shape[2],
                                          k.shape[2], q.dtype)
        else:
            q, k, v = _with_bias_dims(posevlm_camera, slopes, q, k, v, self.scaling)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                      self._posevlm_eager)
    extra = {"sliding_window": self.sliding_window} if hasattr(self, "sliding_window") else {}
    out, weights = attention(self, q, k, v, attention_mask, dropout=0.0 if not self.training else
                             self.attention_dropout, scaling=self.scaling, position_ids=position_ids,
                             **extra, **kwargs)
    out = out[..., :head_dim]  # (B, L, H, D): drops the factored bias's extra dims (all 0)
    if transform is not None and transform.mat_o is not None:
        out = transform.apply_o(out.transpose(1, 2), inplace=not torch.is_grad_enabled()).transpose(1, 2)
    out = out.reshape(*input_shape, -1).contiguous()
    return self.o_proj(out), weights


def install(model, spec: CameraAttentionSpec) -> None:
    """Patch every text decoder layer's attention of ``model`` (idempotent; :func:`uninstall` reverts)."""
    from posevlm.models.families import family_of

    if spec.bias != "none" and model.config._attn_implementation not in ("eager", "sdpa"):
        raise ConfigError(f"the pose-distance bias runs inside attn_implementation 'eager' or 'sdpa' (extra q/k "
                          f"head dims, or a float mask with bias_impl='dense'); "
                          f"got {model.config._attn_implementation!r}", field="bias", value=spec.bias)
    family = family_of(model)
    heads = family.text_config(model.config).num_attention_heads
    for layer in family.decoder_layers(model):
        patch_attention_layer(layer.self_attn, family, bias=spec.bias, num_heads=heads)


def patch_attention_layer(attn: nn.Module, family, *, bias: str = "none", num_heads: int | None = None) -> None:
    """Give one text attention module its family's camera-aware forward (``family``: a
    ``posevlm.models.families.ModelFamily``: its ``attention_forward``, and its transformers modeling module's
    ``apply_rotary_pos_emb`` and ``eager_attention_forward``); ``bias`` adds the slopes: ``learned``
    (parameter, zeros) or ``alibi`` (fixed buffer)."""
    from posevlm.attention import alibi_slopes

    modeling = family.modeling()
    # plain functions (not the module) so that copy.deepcopy(model) works
    object.__setattr__(attn, "_posevlm_rope", modeling.apply_rotary_pos_emb)
    object.__setattr__(attn, "_posevlm_eager", modeling.eager_attention_forward)
    attn.forward = types.MethodType(family.attention_forward_fn(), attn)
    if hasattr(attn, SLOPES_NAME):
        delattr(attn, SLOPES_NAME)
    heads = num_heads or attn.config.num_attention_heads
    device = attn.q_proj.weight.device
    if bias == "learned":
        attn.register_parameter(SLOPES_NAME, nn.Parameter(torch.zeros(heads, device=device)))
    elif bias == "alibi":
        attn.register_buffer(SLOPES_NAME, alibi_slopes(heads).to(device), persistent=False)


def uninstall(model) -> None:
    """Restore the stock attention forward of every text decoder layer (drops the slopes)."""
    from posevlm.models.families import family_of

    for layer in family_of(model).decoder_layers(model):
        attn = layer.self_attn
        attn.__dict__.pop("forward", None)
        if hasattr(attn, SLOPES_NAME):
            delattr(attn, SLOPES_NAME)
