"""VGGT (Wang et al., "VGGT: Visual Geometry Grounded Transformer", CVPR 2025) in one file.

Aggregator (DINOv2 patch embed, camera + register tokens, alternating frame / global attention with
2D RoPE), camera head (iterative ``absT_quaR_FoV`` refinement) and the DPT depth and point heads. Parameter
names and shapes equal the released ``facebook/VGGT-1B`` state dict (``aggregator.*``, ``camera_head.*``,
``depth_head.*``, ``point_head.*``; the tracking head is not built and its keys are ignored on load), so
:func:`load_vggt` reads that checkpoint unchanged. The code is ours; architecture facts (shapes,
constants, formulas, key names) follow the paper and the reference implementation facebookresearch/vggt
(see /work/shared/specs/models.md sections 1.5, 1.6, 1.11).

Differences from the reference, on purpose: the aggregator computes and keeps only the layers asked for
(the reference keeps all 24, ~2.5 GB in bf16 for 16 frames at 644x476, spec 1.11 item 2) and stops after
the deepest one; each head asks for its own layers (camera: the last; DPT: 4, 11, 17, 23), so
``forward(heads=("camera",))`` never runs the DPT heads (spec 1.11 item 1); no dropout / drop-path /
activation checkpointing (inference only); inputs are validated at the boundary.

Notation: B batch, S frames, H W image size (multiples of the patch size p), gh = H // p, gw = W // p,
P = gh * gw patch tokens per frame, k = 1 + R special tokens per frame (camera token then R registers,
``patch_start_idx``), N = k + P tokens per frame, C aggregator width, DD = 2C output token width
(frame and global block outputs concatenated), D head dim.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry.pose_encoding import POSE_ENCODING_TYPE, pose_encoding_to_extrinsics_intrinsics
from posevlm.spatial.base import SpatialEncoding, resolve_layers
from posevlm.spatial.weights import KeyReport, apply_dtype_policy, load_weights, resolve_precision

__all__ = [
    "VGGTConfig", "VGGT", "AggregatorOutput", "VGGTPrediction", "decode_pose_encoding", "load_vggt", "save_vggt",
    "CONFIG_NAME", "load_vggt_encoder", "rope2d_tables", "apply_rope2d", "patch_positions", "interpolate_pos_embed",
    "IMAGENET_MEAN", "IMAGENET_STD", "VGGT_HEADS",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the aggregator normalises [0, 1] RGB with these (reference _RESNET_MEAN)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGGT_HEADS = ("camera", "depth", "point")
_PATCH_EMBEDS = ("dinov2", "conv")


# ==== config ================================================================================================
@dataclass(frozen=True)
class VGGTConfig:
    """Architecture of a VGGT model. :meth:`vggt_1b` is the released checkpoint, :meth:`tiny` a CPU test size.

    Fields:
        img_size: the DINOv2 position table covers (img_size // patch_size)^2 patches (518 -> 37 x 37); other
            sizes are interpolated. Any H, W that are multiples of ``patch_size`` work.
        patch_size: p, pixels per patch side.
        embed_dim, depth, num_heads, mlp_ratio: C, number of frame/global block pairs, heads, MLP width factor.
        num_register_tokens: R registers per frame in the aggregator (and in the DINOv2 backbone).
        patch_embed: ``dinov2`` (DINOv2 ViT with registers; ViT-L/14 for VGGT-1B) or ``conv`` (one strided
            convolution; tiny test configs).
        backbone_depth, backbone_num_heads: depth and heads of the DINOv2 patch embed (width = embed_dim).
        qk_norm: LayerNorm on queries and keys per head in the aggregator blocks.
        rope_freq: base of the 2D rotary embedding on patch positions (<= 0: no RoPE).
        init_values: LayerScale initial value of aggregator and camera-trunk blocks.
        heads: which heads to build, a subset of ``camera``, ``depth``, ``point``.
        camera_trunk_depth, camera_num_heads, camera_iterations: camera head trunk blocks (width DD), their
            heads, and refinement iterations.
        dpt_features, dpt_out_channels, dpt_layers, dpt_hidden: DPT fusion width, per-level projection
            widths, the aggregator layers each level reads, and the width before the output convolution.
    """

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    patch_embed: str = "dinov2"
    backbone_depth: int = 24
    backbone_num_heads: int = 16
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    heads: tuple[str, ...] = VGGT_HEADS
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_iterations: int = 4
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    dpt_layers: tuple[int, ...] = (4, 11, 17, 23)
    dpt_hidden: int = 32
    schema_version: int = 1

    def __post_init__(self):
        for name in ("heads", "dpt_out_channels", "dpt_layers"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        positive = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "backbone_depth",
                    "backbone_num_heads", "camera_trunk_depth", "camera_num_heads", "camera_iterations",
                    "dpt_features", "dpt_hidden")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (expected an integer >= 1)")
        if problems:
            raise ConfigError("invalid VGGTConfig: " + "; ".join(problems), field="VGGTConfig", value=problems)
        if self.patch_embed not in _PATCH_EMBEDS:
            problems.append(f"patch_embed={self.patch_embed!r} (allowed: {', '.join(_PATCH_EMBEDS)})")
        if isinstance(self.num_register_tokens, bool) or not isinstance(self.num_register_tokens, int) \
                or self.num_register_tokens < 0:
            problems.append(f"num_register_tokens={self.num_register_tokens!r} (expected an integer >= 0)")
        if self.img_size % self.patch_size:
            problems.append(f"img_size={self.img_size} (must be a multiple of patch_size={self.patch_size})")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} (must be divisible by num_heads={self.num_heads})")
        elif self.rope_freq > 0 and (self.embed_dim // self.num_heads) % 4:
            problems.append(f"embed_dim={self.embed_dim} with num_heads={self.num_heads} (head dim "
                            f"{self.embed_dim // self.num_heads}; 2D RoPE needs a head dim divisible by 4)")
        if self.patch_embed == "dinov2" and self.embed_dim % self.backbone_num_heads:
            problems.append(f"backbone_num_heads={self.backbone_num_heads} (must divide embed_dim={self.embed_dim})")
        if (2 * self.embed_dim) % self.camera_num_heads:
            problems.append(f"camera_num_heads={self.camera_num_heads} (must divide 2 * embed_dim = "
                            f"{2 * self.embed_dim})")
        unknown = [h for h in self.heads if h not in VGGT_HEADS]
        if unknown or len(set(self.heads)) != len(self.heads):
            problems.append(f"heads={list(self.heads)} (a subset of {', '.join(VGGT_HEADS)}, each once)")
        if len(self.dpt_out_channels) != 4 or any(not isinstance(c, int) or c < 4 or c % 4
                                                  for c in self.dpt_out_channels):
            problems.append(f"dpt_out_channels={list(self.dpt_out_channels)} (four integers, multiples of 4)")
        if len(self.dpt_layers) != 4 or any(not isinstance(i, int) or not 0 <= i < self.depth
                                            for i in self.dpt_layers):
            problems.append(f"dpt_layers={list(self.dpt_layers)} (four layer indices in 0..{self.depth - 1})")
        if self.dpt_features % 8:
            problems.append(f"dpt_features={self.dpt_features} (must be a multiple of 8: the output stage "
                            "halves it and adds a 4-way sin/cos embedding)")
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            problems.append(f"mlp_ratio={self.mlp_ratio!r} (expected a number > 0)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid VGGTConfig: " + "; ".join(problems), field="VGGTConfig", value=problems)

    @property
    def patch_start_idx(self) -> int:
        """k = 1 camera token + R registers before the patch tokens of every frame."""
        return 1 + self.num_register_tokens

    @property
    def token_dim(self) -> int:
        """DD = 2C, width of the aggregator outputs (frame and global block outputs concatenated)."""
        return 2 * self.embed_dim

    @classmethod
    def vggt_1b(cls, **overrides) -> "VGGTConfig":
        """facebook/VGGT-1B: DINOv2 ViT-L/14-reg patch embed at 518 px, 24 x (frame + global) blocks of width
        1024 with 16 heads, qk-norm, LayerScale 0.01, RoPE base 100; camera trunk of 4 blocks at 2048 with 16
        heads, 4 iterations; DPT features 256, projections [256, 512, 1024, 1024] reading layers 4, 11, 17, 23."""
        return replace(cls(), **overrides)

    @classmethod
    def tiny(cls, **overrides) -> "VGGTConfig":
        """CPU test size (spec models.md section 6.2): width 32 (DD 64), depth 2, 2 heads, ``conv`` patch embed,
        4 registers (patch_start_idx 5), camera trunk depth 1, DPT features 16. ``patch_embed="dinov2"`` gives a
        one-block DINOv2 with a 4 x 4 position table (img_size 56)."""
        base = cls(img_size=56, embed_dim=32, depth=2, num_heads=2, patch_embed="conv", backbone_depth=1,
                   backbone_num_heads=2, camera_trunk_depth=1, camera_num_heads=2, dpt_features=16,
                   dpt_out_channels=(8, 16, 32, 32), dpt_layers=(0, 0, 1, 1), dpt_hidden=8)
        return replace(base, **overrides)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "VGGTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown VGGTConfig keys {unknown}; known: {sorted(known)}", field="VGGTConfig",
                              value=unknown)
        return cls(**data)


# ==== transformer pieces (DINOv2 / VGGT block layout: norm1, attn, ls1, norm2, mlp, ls2) ====================
class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma`` (CaiT), initialised to ``init_values``."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``: qkv projection, optional per-head
    LayerNorm of q and k (qk-norm), optional 2D RoPE on q and k (after the norm, as the reference)."""

    def __init__(self, dim: int, num_heads: int, *, qk_norm: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(dim // num_heads) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(dim // num_heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x: (B, L, C); rope: (cos, sin) tables (L, D) or None. Returns (B, L, C)."""
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope2d(q, *rope), apply_rope2d(k, *rope)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, L, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float, init_values: float, qk_norm: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


# ==== 2D rotary position embedding ==========================================================================
def patch_positions(grid_hw: tuple[int, int], num_special: int) -> Tensor:
    """(num_special + gh * gw, 2) integer (row, col) positions: the special tokens at (0, 0), patch (r, c) of
    the raster-ordered grid at (r + 1, c + 1), so no patch shares the specials' position."""
    gh, gw = grid_hw
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    patches = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1) + 1
    return torch.cat([torch.zeros(num_special, 2, dtype=patches.dtype), patches])


def rope2d_tables(positions: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos, sin tables (L, D) in float64 for (L, 2) (row, col) ``positions``.

    Layout (VGGT's): the first half of the head dim rotates with the row, the second half with the column;
    inside each half of width D/2, rotate-half pairs (j, j + D/4) turn by angle pos * base^(-2j / (D/2)).
    """
    quarter = head_dim // 4
    inv_freq = base ** (-torch.arange(quarter, dtype=torch.float64) * 2 / (head_dim // 2))
    pos = positions.to("cpu", torch.float64)
    rows, cols = pos[:, :1] * inv_freq, pos[:, 1:] * inv_freq
    angles = torch.cat([rows, rows, cols, cols], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope2d(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (..., L, D) ``x`` by the (L, D) tables of :func:`rope2d_tables` (cast to x's dtype)."""
    x1, x2, x3, x4 = x.chunk(4, dim=-1)
    rotated = torch.cat([-x2, x1, -x4, x3], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


# ==== patch embeds ==========================================================================================
class ConvPatchEmbed(nn.Module):
    """One p x p stride-p convolution: (n, 3, H, W) -> (n, P, C) raster-ordered patch tokens."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def interpolate_pos_embed(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """DINOv2 position table (1, 1 + M*M, C) (class token first, then an M x M grid) resized to (gh, gw):
    (1, 1 + gh*gw, C). Bicubic with antialias, output size given explicitly (DINOv2 with
    ``interpolate_offset=0``, as VGGT builds it); returned unchanged when (gh, gw) == (M, M). Computed in float32
    (float64 tables stay float64) and cast back."""
    M = math.isqrt(pos_embed.shape[1] - 1)
    if tuple(grid_hw) == (M, M):
        return pos_embed
    table = pos_embed if pos_embed.dtype == torch.float64 else pos_embed.float()
    grid = table[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(grid_hw), mode="bicubic", antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_hw[0] * grid_hw[1], -1)
    return torch.cat([table[:, :1], grid], dim=1).to(pos_embed.dtype)


class DinoV2(nn.Module):
    """DINOv2 ViT with registers (Oquab et al.; Darcet et al.) used as VGGT's patch embed. Returns the final
    LayerNorm-ed patch tokens (n, P, C); the class token, registers and ``mask_token`` (unused at inference,
    kept for the checkpoint) stay inside."""

    def __init__(self, config: VGGTConfig):
        super().__init__()
        C, R, grid = config.embed_dim, config.num_register_tokens, config.img_size // config.patch_size
        self.num_register_tokens = R
        self.patch_embed = ConvPatchEmbed(config.patch_size, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, C))
        self.register_tokens = nn.Parameter(torch.zeros(1, R, C)) if R else None
        self.mask_token = nn.Parameter(torch.zeros(1, C))
        self.blocks = nn.ModuleList(Block(C, config.backbone_num_heads, mlp_ratio=config.mlp_ratio, init_values=1.0,
                                          eps=1e-6) for _ in range(config.backbone_depth))
        self.norm = nn.LayerNorm(C, eps=1e-6)

    def forward(self, x: Tensor, grid_hw: tuple[int, int]) -> Tensor:
        n = x.shape[0]
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), self.patch_embed(x)], dim=1)
        tokens = tokens + interpolate_pos_embed(self.pos_embed, grid_hw)
        if self.register_tokens is not None:  # registers go after the class token, without position
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(n, -1, -1), tokens[:, 1:]], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 1 + self.num_register_tokens:])


# ==== aggregator ============================================================================================
def _frame_slots(table: Tensor, B: int, S: int) -> Tensor:
    """(1, 2, k, C) learned tokens -> (B*S, k, C): slot 0 for frame 0 of each clip, slot 1 for frames 1..S-1.
    This is what makes the first frame the reference (world) frame."""
    first = table[:, :1].expand(B, 1, *table.shape[2:])
    rest = table[:, 1:].expand(B, S - 1, *table.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(B * S, *table.shape[2:])


class Aggregator(nn.Module):
    """Patch embed + camera/register tokens + ``depth`` rounds of frame attention then global attention."""

    def __init__(self, config: VGGTConfig):
        super().__init__()
        C, R = config.embed_dim, config.num_register_tokens
        self.config = config
        self.patch_embed = DinoV2(config) if config.patch_embed == "dinov2" else ConvPatchEmbed(config.patch_size, C)

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(Block(C, config.num_heads, mlp_ratio=config.mlp_ratio, init_values=config.init_values,
                                       qk_norm=config.qk_norm) for _ in range(config.depth))

        self.frame_blocks = blocks()
        self.global_blocks = blocks()
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, C))
        self.register_token = nn.Parameter(torch.zeros(1, 2, R, C))

    def forward(self, images: Tensor, layers: Sequence[int]) -> tuple[Tensor, ...]:
        """images: (B, S, 3, H, W) in [0, 1]; layers: absolute indices, ascending. Returns one (B, S, N, DD) per
        layer in that order, computing the rounds up to the deepest requested layer only and keeping only the
        requested outputs. (A tuple, not a dict keyed by layer: DeepSpeed ZeRO-3's post-forward hook reads a
        module's non-tuple output by its string keys.)"""
        cfg = self.config
        B, S, _, H, W = images.shape
        grid_hw = (H // cfg.patch_size, W // cfg.patch_size)
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        x = ((images - mean) / std).reshape(B * S, 3, H, W)
        patches = self.patch_embed(x, grid_hw) if isinstance(self.patch_embed, DinoV2) else self.patch_embed(x)
        special = torch.cat([_frame_slots(self.camera_token, B, S), _frame_slots(self.register_token, B, S)], dim=1)
        tokens = torch.cat([special.to(patches.dtype), patches], dim=1)  # (B*S, N, C)
        _, N, C = tokens.shape
        rope_frame = rope_global = None
        if cfg.rope_freq > 0:
            table_dtype = torch.float64 if tokens.dtype == torch.float64 else torch.float32
            cos, sin = (t.to(images.device, table_dtype) for t in rope2d_tables(
                patch_positions(grid_hw, cfg.patch_start_idx), cfg.embed_dim // cfg.num_heads, cfg.rope_freq))
            rope_frame, rope_global = (cos, sin), (cos.repeat(S, 1), sin.repeat(S, 1))
        wanted, out = set(layers), {}
        for i in range(max(layers) + 1):
            tokens = self.frame_blocks[i](tokens.view(B * S, N, C), rope_frame)
            frame_out = tokens if i in wanted else None
            tokens = self.global_blocks[i](tokens.view(B, S * N, C), rope_global)
            if frame_out is not None:
                out[i] = torch.cat([frame_out.view(B, S, N, C), tokens.view(B, S, N, C)], dim=-1)
        return tuple(out[i] for i in layers)


# ==== camera head ===========================================================================================
def activate_pose(raw: Tensor) -> Tensor:
    """absT_quaR_FoV activations of VGGT-1B: translation linear, quaternion linear (not normalised; the decoder
    divides by |q|^2), field of view ReLU (>= 0)."""
    return torch.cat([raw[..., :7], F.relu(raw[..., 7:])], dim=-1)


class CameraHead(nn.Module):
    """Camera tokens of the last layer -> ``iterations`` refined (B, S, 9) ``absT_quaR_FoV`` encodings.

    Each iteration embeds the current raw estimate (a learned empty pose first, detached afterwards), derives
    adaLN shift/scale/gate from it, modulates the normalised camera tokens, runs the trunk (attention across
    the S frames of a clip, no positions), and adds the predicted delta to the raw estimate."""

    def __init__(self, config: VGGTConfig):
        super().__init__()
        dim = config.token_dim
        self.trunk = nn.Sequential(*[Block(dim, config.camera_num_heads, mlp_ratio=config.mlp_ratio,
                                           init_values=config.init_values) for _ in range(config.camera_trunk_depth)])
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, 9))
        self.embed_pose = nn.Linear(9, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, 9)

    def forward(self, camera_tokens: Tensor, iterations: int) -> list[Tensor]:
        """camera_tokens: (B, S, DD). Returns ``iterations`` activated encodings (B, S, 9); the last is the
        prediction."""
        tokens = self.token_norm(camera_tokens)
        raw, encodings = None, []
        for _ in range(iterations):
            pose = self.empty_pose_tokens.expand(*tokens.shape[:2], -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(pose)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else raw + delta
            encodings.append(activate_pose(raw))
        return encodings


# ==== DPT heads =============================================================================================
def uv_embedding(grid_hw: tuple[int, int], image_hw: tuple[int, int], channels: int) -> Tensor:
    """(channels, h, w) float64 sin/cos embedding of a centred UV grid, times 0.1 (VGGT's DPT position term).

    u spans +-a/d * (w-1)/w and v +-1/d * (h-1)/h with a = W/H, d = sqrt(a^2 + 1); channels are four blocks
    [sin(u w_j)]_j, [cos(u w_j)]_j, [sin(v w_j)]_j, [cos(v w_j)]_j with w_j = 100^(-j / (channels/4)),
    j < channels/4."""
    h, w = grid_hw
    aspect = image_hw[1] / image_hw[0]
    diag = math.hypot(aspect, 1.0)
    span_u, span_v = aspect / diag * (w - 1) / w, 1.0 / diag * (h - 1) / h
    u = torch.linspace(-span_u, span_u, w, dtype=torch.float64)
    v = torch.linspace(-span_v, span_v, h, dtype=torch.float64)
    quarter = channels // 4
    omega = 100.0 ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    eu, ev = u[:, None] * omega, v[:, None] * omega  # (w, q), (h, q)
    emb_u = torch.cat([eu.sin(), eu.cos()], dim=-1).T[:, None, :].expand(-1, h, w)
    emb_v = torch.cat([ev.sin(), ev.cos()], dim=-1).T[:, :, None].expand(-1, h, w)
    return 0.1 * torch.cat([emb_u, emb_v], dim=0)


def _add_uv(x: Tensor, image_hw: tuple[int, int]) -> Tensor:
    return x + uv_embedding(tuple(x.shape[-2:]), image_hw, x.shape[1]).to(x.device, x.dtype)


class _ResidualConvUnit(nn.Module):
    """relu -> conv1 -> relu -> conv2, plus the skip. The reference's in-place ReLU rectifies its input before the
    skip is added, so the skip carries relu(x); the released weights were trained that way."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class _FusionBlock(nn.Module):
    """DPT feature fusion: (+ residual unit of the skip) -> residual unit -> bilinear resize -> 1x1 conv."""

    def __init__(self, features: int, *, skip: bool):
        super().__init__()
        if skip:
            self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size or (2 * x.shape[-2], 2 * x.shape[-1])
        return self.out_conv(F.interpolate(x, size=size, mode="bilinear", align_corners=True))


class _Scratch(nn.Module):
    """DPT 'scratch': per-level 3x3 convs to a common width, four fusion blocks, the output convolutions."""

    def __init__(self, in_channels: Sequence[int], features: int, out_dim: int, hidden: int):
        super().__init__()
        self.layer1_rn = nn.Conv2d(in_channels[0], features, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(in_channels[1], features, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(in_channels[2], features, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(in_channels[3], features, 3, padding=1, bias=False)
        self.refinenet1 = _FusionBlock(features, skip=True)
        self.refinenet2 = _FusionBlock(features, skip=True)
        self.refinenet3 = _FusionBlock(features, skip=True)
        self.refinenet4 = _FusionBlock(features, skip=False)
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, hidden, 3, padding=1), nn.ReLU(),
                                          nn.Conv2d(hidden, out_dim, 1))

    def fuse(self, levels: Sequence[Tensor]) -> Tensor:
        """Four maps (finest first) -> one map at twice the finest level's size, after ``output_conv1``."""
        l1, l2, l3, l4 = self.layer1_rn(levels[0]), self.layer2_rn(levels[1]), self.layer3_rn(levels[2]), \
            self.layer4_rn(levels[3])
        x = self.refinenet4(l4, size=tuple(l3.shape[-2:]))
        x = self.refinenet3(x, l3, size=tuple(l2.shape[-2:]))
        x = self.refinenet2(x, l2, size=tuple(l1.shape[-2:]))
        return self.output_conv1(self.refinenet1(x, l1))


class DPTHead(nn.Module):
    """Dense head (Ranftl et al., DPT) over four aggregator layers -> per-pixel prediction + confidence.

    Per level: LayerNorm of the patch tokens, 1x1 projection, UV position term, resize to 4x / 2x / 1x / 0.5x of
    the patch grid; fusion; bilinear upsampling to (H, W); UV term; output convolutions. Activations: ``exp``
    (depth, > 0) or ``inv_log`` (points, sign(y) (e^|y| - 1)) for the values, 1 + exp for the confidence."""

    def __init__(self, config: VGGTConfig, *, out_dim: int, activation: str):
        super().__init__()
        dim, oc = config.token_dim, config.dpt_out_channels
        self.layers, self.activation, self.patch_size = tuple(config.dpt_layers), activation, config.patch_size
        self.norm = nn.LayerNorm(dim)
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = _Scratch(oc, config.dpt_features, out_dim, config.dpt_hidden)

    def forward(self, tokens: dict[int, Tensor], image_hw: tuple[int, int], patch_start_idx: int,
                frames_chunk: int | None = 8) -> tuple[Tensor, Tensor]:
        """tokens: {layer: (B, S, N, DD)} holding ``self.layers``. Frames are processed ``frames_chunk`` at a time
        (memory; results do not depend on it). Returns values (B, S, H, W, out_dim - 1), confidence (B, S, H, W)."""
        B, S = tokens[self.layers[0]].shape[:2]
        step = S if not frames_chunk or frames_chunk >= S else frames_chunk
        chunks = [self._chunk([tokens[i][:, s:s + step, patch_start_idx:] for i in self.layers], image_hw)
                  for s in range(0, S, step)]
        values = torch.cat([c[0] for c in chunks], dim=1) if len(chunks) > 1 else chunks[0][0]
        conf = torch.cat([c[1] for c in chunks], dim=1) if len(chunks) > 1 else chunks[0][1]
        return values, conf

    def _chunk(self, feats: list[Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        B, s, P, dim = feats[0].shape
        H, W = image_hw
        gh, gw = H // self.patch_size, W // self.patch_size
        levels = []
        for project, resize, x in zip(self.projects, self.resize_layers, feats):
            x = self.norm(x.reshape(B * s, P, dim)).transpose(1, 2).reshape(B * s, dim, gh, gw)
            levels.append(resize(_add_uv(project(x), image_hw)))
        x = F.interpolate(self.scratch.fuse(levels), size=(H, W), mode="bilinear", align_corners=True)
        x = self.scratch.output_conv2(_add_uv(x, image_hw)).permute(0, 2, 3, 1)  # (B*s, H, W, out_dim)
        values, conf = x[..., :-1], 1 + x[..., -1].exp()
        values = values.exp() if self.activation == "exp" else values.sign() * values.abs().expm1()
        return values.reshape(B, s, H, W, -1), conf.reshape(B, s, H, W)


# ==== outputs ===============================================================================================
@dataclass(frozen=True)
class AggregatorOutput:
    """Aggregator tokens of the requested layers.

    Fields:
        tokens: absolute layer -> (B, S, N, DD); N = patch_start_idx + gh * gw.
        layers: absolute indices in request order; num_layers: the aggregator depth.
        patch_start_idx, grid_hw (gh, gw), image_hw (H, W).
    """

    tokens: dict[int, Tensor]
    layers: tuple[int, ...]
    num_layers: int
    patch_start_idx: int
    grid_hw: tuple[int, int]
    image_hw: tuple[int, int]

    def __getitem__(self, layer: int) -> Tensor:
        """Tokens of ``layer`` (negative counts from the aggregator's last layer)."""
        index = layer % self.num_layers
        if index not in self.tokens:
            raise ConfigError(f"layer {layer} was not requested; requested: {list(self.layers)}", field="layer",
                              value=layer)
        return self.tokens[index]

    def select(self, layers: Sequence[int]) -> "AggregatorOutput":
        return replace(self, tokens={i: self.tokens[i] for i in layers}, layers=tuple(layers))


@dataclass(frozen=True)
class VGGTPrediction:
    """What :meth:`VGGT.forward` returns; fields of heads that did not run are None.

    Fields:
        image_hw: (H, W) of the frames fed; intrinsics decoded from ``pose_enc`` are in its pixels.
        pose_enc: (B, S, 9) ``absT_quaR_FoV`` (w2c translation, w2c quaternion xyzw, fov_h, fov_w), last iteration.
        pose_enc_list: the encoding after every refinement iteration.
        depth: (B, S, H, W, 1) depth along the camera z axis (> 0, VGGT's normalised scale); depth_conf (B, S, H, W).
        world_points: (B, S, H, W, 3) points in the first frame's camera coordinates (OpenCV axes, normalised
            scale); world_points_conf (B, S, H, W). Confidences are 1 + exp(.) > 1.
        aggregated: tokens of the layers the caller asked for (``layers=``), else None.
    """

    image_hw: tuple[int, int]
    pose_enc: Tensor | None = None
    pose_enc_list: tuple[Tensor, ...] = ()
    depth: Tensor | None = None
    depth_conf: Tensor | None = None
    world_points: Tensor | None = None
    world_points_conf: Tensor | None = None
    aggregated: AggregatorOutput | None = None

    def cameras(self) -> tuple[Tensor, Tensor]:
        """(w2c_opencv (B, S, 4, 4), K_pixels (B, S, 3, 3)) decoded from ``pose_enc`` for ``image_hw``."""
        if self.pose_enc is None:
            raise ConfigError("no camera prediction: run the model with the camera head (heads=('camera', ...))",
                              field="heads")
        return decode_pose_encoding(self.pose_enc, self.image_hw)

    def to_dict(self) -> dict[str, Tensor]:
        """The reference's output keys (``pose_enc``, ``pose_enc_list``, ``depth``, ``depth_conf``,
        ``world_points``, ``world_points_conf``) for the heads that ran."""
        names = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.pose_enc_list:
            out["pose_enc_list"] = list(self.pose_enc_list)
        return out


def decode_pose_encoding(pose_enc: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(..., 9) ``absT_quaR_FoV`` -> (w2c_opencv (..., 4, 4), K_pixels (..., 3, 3) in pixels of ``image_hw``, the
    (H, W) the encoding was predicted for). Half-precision input is decoded in float32. Focal lengths are
    positive and finite for fields of view in (0, pi); the ReLU output of the head can be 0 (focal inf)."""
    if pose_enc.dtype in (torch.float16, torch.bfloat16):
        pose_enc = pose_enc.float()
    return pose_encoding_to_extrinsics_intrinsics(pose_enc, image_hw)


# ==== model =================================================================================================
class VGGT(nn.Module):
    """VGGT: aggregator + optional camera / depth / point heads (``config.heads``), released key layout.

    Use :meth:`aggregate` for tokens, :meth:`forward` / :meth:`predict` for geometry, :meth:`encode` as a
    :class:`posevlm.spatial.SpatialEncoder`. Random initialisation here is ours, not the reference's training
    init; the camera head's last layer starts at a neutral prior (identity rotation, 1 rad field of view after
    all iterations) so an untrained model decodes to finite cameras.
    """

    name = "vggt"

    def __init__(self, config: VGGTConfig | None = None):
        super().__init__()
        cfg = config or VGGTConfig()
        self.config = cfg
        self.aggregator = Aggregator(cfg)
        self.camera_head = CameraHead(cfg) if "camera" in cfg.heads else None
        self.depth_head = DPTHead(cfg, out_dim=2, activation="exp") if "depth" in cfg.heads else None
        self.point_head = DPTHead(cfg, out_dim=4, activation="inv_log") if "point" in cfg.heads else None
        self.load_report: KeyReport | None = None
        self.reset_parameters()

    # ---- SpatialEncoder attributes
    @property
    def token_dim(self) -> int:
        return self.config.token_dim

    @property
    def num_layers(self) -> int:
        return self.config.depth

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def patch_start_idx(self) -> int:
        return self.config.patch_start_idx

    @property
    def checkpoint_ignore(self) -> tuple[str, ...]:
        """Prefixes of released checkpoint keys this model does not build (``track_head.``, unbuilt heads)."""
        return ("track_head.",) + tuple(f"{h}_head." for h in VGGT_HEADS if h not in self.config.heads)

    @property
    def fp32_modules(self) -> tuple[str, ...]:
        """Submodules kept in float32 whatever the storage dtype (the heads, as the reference runs them)."""
        return tuple(f"{h}_head" for h in self.config.heads)

    def reset_parameters(self) -> None:
        """Linear weights truncated-normal(0.02) with zero bias; special tokens normal(1e-6); DINOv2 positions
        truncated-normal(0.02); camera head output: small weights and the neutral prior as bias."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        agg = self.aggregator
        nn.init.normal_(agg.camera_token, std=1e-6)
        nn.init.normal_(agg.register_token, std=1e-6)
        if isinstance(agg.patch_embed, DinoV2):
            nn.init.trunc_normal_(agg.patch_embed.pos_embed, std=0.02)
            nn.init.normal_(agg.patch_embed.cls_token, std=1e-6)
            if agg.patch_embed.register_tokens is not None:
                nn.init.normal_(agg.patch_embed.register_tokens, std=1e-6)
        if self.camera_head is not None:
            out = self.camera_head.pose_branch.fc2
            nn.init.normal_(out.weight, std=1e-3)
            with torch.no_grad():
                prior = torch.zeros(9, device=out.bias.device, dtype=out.bias.dtype)
                prior[6] = prior[7] = prior[8] = 1.0 / self.config.camera_iterations  # quat w, fov_h, fov_w
                out.bias.copy_(prior)

    # ---- boundary checks
    def _check_images(self, images: Tensor, name: str = "images") -> None:
        p = self.config.patch_size
        if not isinstance(images, Tensor) or images.ndim != 5 or images.shape[2] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ShapeError(f"{name} must be (B, S, 3, H, W) RGB in [0, 1]; got {shape}. A single clip (S, 3, H, W): "
                             f"pass {name}[None]", name=name, shape=shape if isinstance(shape, tuple) else None)
        if images.shape[0] < 1 or images.shape[1] < 1:
            raise ShapeError(f"{name} holds no frames: shape {tuple(images.shape)}", name=name,
                             shape=tuple(images.shape))
        H, W = images.shape[-2:]
        if H % p or W % p or H < p or W < p:
            raise ShapeError(f"{name} height and width must be positive multiples of the patch size {p}; got "
                             f"(H, W) = ({H}, {W}). Resize, e.g. to ({max(p, round(H / p) * p)}, "
                             f"{max(p, round(W / p) * p)})", name=name, shape=tuple(images.shape))
        if not images.dtype.is_floating_point:
            raise ShapeError(f"{name} must be floating point in [0, 1]; got {images.dtype}. Use "
                             f"{name}.float() / 255", name=name, shape=tuple(images.shape))
        low, high = torch.aminmax(images.detach())
        if bool(low < -1e-3) or bool(high > 1 + 1e-3):
            raise ShapeError(f"{name} must hold RGB values in [0, 1] (VGGT normalises them itself); got range "
                             f"[{float(low):.3g}, {float(high):.3g}]. Divide 0..255 frames by 255; do not apply "
                             "ImageNet normalisation", name=name, shape=tuple(images.shape))

    def _heads(self, heads: Sequence[str] | None) -> tuple[str, ...]:
        if heads is None:
            return tuple(self.config.heads)
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        unknown = [h for h in heads if h not in VGGT_HEADS]
        if unknown:
            raise ConfigError(f"heads={list(heads)}: unknown {unknown}; choose from {', '.join(VGGT_HEADS)}",
                              field="heads", value=unknown)
        absent = [h for h in heads if h not in self.config.heads]
        if absent:
            raise ConfigError(f"heads {absent} were not built (config.heads={list(self.config.heads)}); build them "
                              "with VGGTConfig(heads=...) or load_vggt(..., heads=...)", field="heads", value=absent)
        return heads

    # ---- forward passes
    def aggregate(self, images: Tensor, layers: int | Sequence[int] = (-1,), *,
                  precision: str = "auto") -> AggregatorOutput:
        """Aggregator tokens of ``layers`` (default: the last) for (B, S, 3, H, W) ``images`` in [0, 1].

        Only the requested layers are kept, and only the rounds up to the deepest one run. ``precision``:
        ``auto`` (bf16 autocast on CUDA, parameter dtype elsewhere), ``fp32``, ``bf16``, ``fp16``."""
        self._check_images(images)
        wanted = resolve_layers(layers, self.config.depth)
        if not wanted:
            raise ConfigError("layers is empty; ask for at least one layer (-1 is the last)", field="layers")
        return self._aggregate(images, wanted, precision)

    def _aggregate(self, images: Tensor, layers: tuple[int, ...], precision: str) -> AggregatorOutput:
        dtype = resolve_precision(precision, images.device)
        context = torch.autocast(images.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with context:
            ordered = sorted(layers)
            tokens = dict(zip(ordered, self.aggregator(images.to(self.aggregator.camera_token.dtype), ordered)))
        H, W = images.shape[-2:]
        p = self.config.patch_size
        return AggregatorOutput({i: tokens[i] for i in layers}, tuple(layers), self.config.depth,
                                self.config.patch_start_idx, (H // p, W // p), (H, W))

    def forward(self, images: Tensor, *, heads: Sequence[str] | None = None, layers: int | Sequence[int] = (),
                precision: str = "auto", camera_iterations: int | None = None,
                frames_chunk: int | None = 8) -> VGGTPrediction:
        """Run the aggregator for the layers the chosen heads need (camera: the last; depth / point: config
        ``dpt_layers``) plus ``layers``, then the heads in float32 with autocast off.

        Args:
            images: (B, S, 3, H, W) RGB in [0, 1]; H, W multiples of the patch size. Frame 0 is the reference.
            heads: heads to run (default: all built); ``()`` runs none.
            layers: aggregator layers to return in ``VGGTPrediction.aggregated`` (default: none kept).
            precision: autocast of the aggregator (see :meth:`aggregate`); the heads always run in float32.
            camera_iterations: refinement iterations (default ``config.camera_iterations``).
            frames_chunk: frames per DPT pass (memory only).
        """
        self._check_images(images)
        heads = self._heads(heads)
        keep = resolve_layers(layers, self.config.depth)
        need = set(keep)
        if "camera" in heads:
            need.add(self.config.depth - 1)
        if "depth" in heads or "point" in heads:
            need.update(self.config.dpt_layers)
        if not need:
            raise ConfigError("nothing to compute: pass heads (camera, depth, point) or layers", field="heads")
        agg = self._aggregate(images, tuple(sorted(need)), precision)
        out: dict = {}
        k, image_hw = agg.patch_start_idx, agg.image_hw
        with torch.autocast(images.device.type, enabled=False):
            if "camera" in heads:
                head_dtype = self.camera_head.token_norm.weight.dtype
                cam = agg.tokens[self.config.depth - 1][:, :, 0].to(head_dtype)
                encodings = self.camera_head(cam, camera_iterations or self.config.camera_iterations)
                out.update(pose_enc=encodings[-1], pose_enc_list=tuple(encodings))
            for name, head in (("depth", self.depth_head), ("point", self.point_head)):
                if name in heads:
                    feats = {i: agg.tokens[i].to(head.norm.weight.dtype) for i in head.layers}
                    values, conf = head(feats, image_hw, k, frames_chunk)
                    out.update({"depth": values, "depth_conf": conf} if name == "depth"
                               else {"world_points": values, "world_points_conf": conf})
        return VGGTPrediction(image_hw=image_hw, aggregated=agg.select(keep) if keep else None, **out)

    def predict(self, images: Tensor, **kwargs) -> VGGTPrediction:
        """:meth:`forward` under ``torch.inference_mode()`` (the model has no dropout; train/eval mode agree)."""
        with torch.inference_mode():
            return self.forward(images, **kwargs)

    def encode(self, frames: Tensor, layers: int | Sequence[int] = (-1,), *, pose: bool = True,
               precision: str = "auto") -> SpatialEncoding:
        """:class:`SpatialEncoder` interface: tokens of ``layers`` (B, S, 5 + P, 2C) and, with ``pose`` and a camera
        head, the (B, S, 9) camera encoding (aggregator + camera head only; the DPT heads never run)."""
        wanted = resolve_layers(layers, self.config.depth)
        if not wanted:
            raise ConfigError("layers is empty; ask for at least one layer (-1 is the last)", field="layers")
        pose = pose and self.camera_head is not None
        pred = self.forward(frames, heads=("camera",) if pose else (), layers=wanted, precision=precision)
        agg = pred.aggregated
        return SpatialEncoding(tokens=agg.tokens, layers=agg.layers,
                               special_tokens=agg.tokens[agg.layers[-1]][:, :, :agg.patch_start_idx],
                               patch_start_idx=agg.patch_start_idx, grid_hw=agg.grid_hw, image_hw=agg.image_hw,
                               pose_enc=pred.pose_enc, pose_encoding=POSE_ENCODING_TYPE if pose else None)


# ==== loading ===============================================================================================
def load_vggt(weights=None, *, config: VGGTConfig | None = None, heads: Sequence[str] | None = None,
              device: str | torch.device | None = None, dtype: torch.dtype | None = None, strict: bool = True,
              revision: str | None = None, offline: bool | None = None) -> VGGT:
    """Build VGGT and load ``weights`` (a ``.safetensors`` file, a directory with ``model.safetensors`` or a
    sharded index, or a hub id such as ``facebook/VGGT-1B``; None: random initialisation).

    Args:
        config: architecture (default: the ``posevlm_vggt.json`` saved next to the weights by :func:`save_vggt`,
            else :meth:`VGGTConfig.vggt_1b`, the released checkpoint).
        heads: heads to build (default ``config.heads``); checkpoint keys of other heads and ``track_head.*``
            are skipped unread and reported as ignored.
        device: default CUDA if available, else CPU. dtype: storage dtype of the aggregator (default float32);
            the heads stay float32 (the reference runs them in float32 with autocast off).
        strict: raise CheckpointError (one line: counts, first names, the fix) on any missing, unexpected or
            mis-shaped key. With strict the model is built on the meta device and receives the checkpoint
            tensors directly (no random initialisation of 1.2B parameters).
        revision, offline: hub revision; read only the local hub cache (default ``HF_HUB_OFFLINE``).
    The key report is kept as ``model.load_report``.
    """
    cfg = config or _stored_config(weights) or VGGTConfig.vggt_1b()
    if heads is not None:
        cfg = replace(cfg, heads=(heads,) if isinstance(heads, str) else tuple(heads))
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                          else "cpu")
    if weights is None:
        model = VGGT(cfg)
    elif strict:
        with torch.device("meta"):
            model = VGGT(cfg)
        model.load_report = load_weights(model, weights, ignore=model.checkpoint_ignore, strict=True, device=device,
                                         revision=revision, offline=offline)
    else:
        model = VGGT(cfg).to(device)
        model.load_report = load_weights(model, weights, ignore=model.checkpoint_ignore, strict=False,
                                         revision=revision, offline=offline)
    apply_dtype_policy(model, dtype, keep_fp32=model.fp32_modules)
    return model.to(device).eval()


#: the VGGTConfig JSON that :func:`save_vggt` writes next to ``model.safetensors``
CONFIG_NAME = "posevlm_vggt.json"


def _stored_config(weights) -> VGGTConfig | None:
    """The config saved with local weights (a directory holding ``CONFIG_NAME``, or a file next to one)."""
    if weights is None or not isinstance(weights, (str, Path)):
        return None
    path = Path(weights)
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG_NAME).is_file():
        return None
    try:
        return VGGTConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder / CONFIG_NAME} is not a readable VGGTConfig ({exc}); fix or delete it",
                          field="config") from None


def save_vggt(model: VGGT, directory: str | Path) -> Path:
    """Write ``model.safetensors`` (the released key layout) and ``posevlm_vggt.json`` (its config) into
    ``directory``; :func:`load_vggt` of that directory rebuilds the same model."""
    from posevlm.atomic import atomic_write_text
    from posevlm.spatial.weights import save_weights

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model, directory / "model.safetensors")
    atomic_write_text(directory / CONFIG_NAME, json.dumps(model.config.to_dict(), indent=1, sort_keys=True))
    return directory


def load_vggt_encoder(weights=None, *, config: VGGTConfig | None = None, heads: Sequence[str] = ("camera",),
                      **kwargs) -> VGGT:
    """The ``vggt`` entry of :data:`posevlm.spatial.spatial_encoders`: :func:`load_vggt` with only the camera head
    by default (what an MLLM needs; ``heads=()`` for tokens only)."""
    return load_vggt(weights, config=config, heads=heads, **kwargs)
