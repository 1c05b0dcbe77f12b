"""Point clouds -> voxel tokens: vectorised voxelisation and a small pure-torch point encoder.

Notation: B clouds in a batch, N_b points of cloud b, P = sum N_b points, T tokens of the batch (T_b of cloud b),
C the encoder's output width.

Input layout (SpatialLM's ``[N, 9]``): per point the integer grid coordinates (3; voxel indices >= 0 at the
cloud's grid size), xyz (3; metres, z up, the cloud's minimum at 0) and rgb (3; in [0, 1]). posevlm builds such
clouds from posed RGB-D scans and ``.ply`` / ``.npz`` files in :mod:`posevlm.scenes.pointcloud`.

Tokens: a token voxel is ``token_stride`` grid cells on a side; every occupied token voxel is one token, and
its **coordinate** is the token voxel's integer index ``grid // token_stride`` (one coordinate per token: what
MixedRoPE3D rotates by; never the raw points'). Tokens of a cloud are ordered lexicographically by (x, y, z).

Encoders implement :class:`PointEncoder` (``forward(PointBatch) -> (T, C)``, ``out_size``) and register in
``point_encoders``; ``voxel_mlp`` (:class:`VoxelMLPEncoder`: per-point MLP, max-pool per token voxel with
``scatter_reduce``, token MLP; trainable on CPU) is the built-in. A Sonata-style encoder can follow behind the
same interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.registry import Registry

__all__ = ["PointBatch", "voxelize_points", "PointEncoderConfig", "PointEncoder", "VoxelMLPEncoder",
           "point_encoders", "build_point_encoder", "POINT_COLUMNS"]

#: the columns of a SpatialLM point row
POINT_COLUMNS = ("grid_x", "grid_y", "grid_z", "x", "y", "z", "r", "g", "b")


@dataclass(frozen=True)
class PointBatch:
    """Voxelised clouds of a batch (:func:`voxelize_points`).

    Fields:
        points: (P, 9) float32, the clouds concatenated (SpatialLM layout).
        point_cloud: (P,) long, which cloud each point belongs to.
        token_index: (P,) long, the token (row of ``token_coords``) each point pools into.
        token_coords: (T, 3) long, token voxel index (x, y, z) of every token, clouds in order.
        token_counts: (B,) long, T_b.
        token_stride: grid cells per token voxel side.
    """

    points: Tensor
    point_cloud: Tensor
    token_index: Tensor
    token_coords: Tensor
    token_counts: Tensor
    token_stride: int

    @property
    def num_clouds(self) -> int:
        return int(self.token_counts.shape[0])

    def coords_per_cloud(self) -> list[Tensor]:
        """[(T_b, 3)] token coordinates of each cloud (what MixedRoPE3D gets, one per point token)."""
        return list(torch.split(self.token_coords, self.token_counts.tolist()))

    def to(self, device: torch.device | str) -> "PointBatch":
        return PointBatch(self.points.to(device), self.point_cloud.to(device), self.token_index.to(device),
                          self.token_coords.to(device), self.token_counts.to(device), self.token_stride)


def voxelize_points(clouds: Sequence[Tensor], token_stride: int) -> PointBatch:
    """Pool the points of each cloud into token voxels, all clouds in one vectorised pass (no loop over points).

    Args:
        clouds: B tensors (N_b, 9) in the SpatialLM layout (N_b >= 1; grid coordinates integers >= 0).
        token_stride: grid cells per token voxel side (>= 1).
    Returns:
        :class:`PointBatch`; tokens sorted by (cloud, x, y, z).
    Raises:
        ShapeError: a cloud that is not (N, 9) with N >= 1, or negative / non-integer grid coordinates.
        ConfigError: token_stride < 1.
    """
    if isinstance(token_stride, bool) or int(token_stride) != token_stride or token_stride < 1:
        raise ConfigError(f"token_stride={token_stride!r} (grid cells per token side, an integer >= 1)",
                          field="token_stride", value=token_stride)
    if not len(clouds):
        raise ShapeError("no point clouds given", name="clouds", shape=(0,))
    for i, cloud in enumerate(clouds):
        if cloud.ndim != 2 or cloud.shape[1] != 9 or cloud.shape[0] < 1:
            raise ShapeError(f"cloud {i} must be (N >= 1, 9) = grid coords, xyz, rgb (SpatialLM layout); got "
                             f"{tuple(cloud.shape)}", name="clouds", shape=tuple(cloud.shape))
    points = torch.cat([c.to(torch.float32) for c in clouds], 0)
    device = points.device
    counts = torch.tensor([int(c.shape[0]) for c in clouds], device=device)
    point_cloud = torch.repeat_interleave(torch.arange(len(clouds), device=device), counts)
    grid = points[:, :3]
    if bool((grid < 0).any()) or not bool((grid == grid.round()).all()):
        raise ShapeError("grid coordinates (columns 0-2) must be integers >= 0 (SpatialLM layout: voxel indices "
                         "after shifting the cloud's minimum to 0)", name="clouds", shape=tuple(points.shape))
    voxel = torch.div(grid.long(), int(token_stride), rounding_mode="floor")  # (P, 3)
    dims = voxel.amax(0) + 1  # (3,)
    key = ((point_cloud * dims[0] + voxel[:, 0]) * dims[1] + voxel[:, 1]) * dims[2] + voxel[:, 2]
    unique, token_index = torch.unique(key, sorted=True, return_inverse=True)
    token_coords = torch.stack([unique // (dims[1] * dims[2]) % dims[0], unique // dims[2] % dims[1],
                                unique % dims[2]], -1)
    token_cloud = unique // (dims[0] * dims[1] * dims[2])
    token_counts = torch.bincount(token_cloud, minlength=len(clouds))
    return PointBatch(points, point_cloud, token_index, token_coords, token_counts, int(token_stride))


@dataclass(frozen=True)
class PointEncoderConfig:
    """A point encoder's recipe (saved with the point-cloud LM's checkpoint).

    Fields:
        kind: registry name in ``point_encoders`` (built in: ``voxel_mlp``).
        token_stride: grid cells per token voxel side (SpatialLM's 2 cm grid x 8 = 16 cm tokens).
        hidden_size: per-point MLP width; out_size: C, the token width the projector reads.
        reduce: pooling of a token voxel's points, ``amax`` or ``mean``.
    """

    kind: str = "voxel_mlp"
    token_stride: int = 8
    hidden_size: int = 64
    out_size: int = 128
    reduce: str = "amax"
    schema_version: int = 1

    def __post_init__(self):
        problems = []
        for name in ("token_stride", "hidden_size", "out_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (an integer >= 1)")
        if self.reduce not in ("amax", "mean"):
            problems.append(f"reduce={self.reduce!r} (allowed: amax, mean)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid PointEncoderConfig: " + "; ".join(problems), field="PointEncoderConfig",
                              value=problems)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PointEncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown PointEncoderConfig keys {unknown}; known: {sorted(known)}",
                              field="PointEncoderConfig", value=unknown)
        return cls(**data)


@runtime_checkable
class PointEncoder(Protocol):
    """A module that encodes a :class:`PointBatch` into one feature per token: ``forward(batch) -> (T, C)``.

    Attributes: ``config`` (a :class:`PointEncoderConfig`), ``out_size`` (C)."""

    config: PointEncoderConfig
    out_size: int

    def forward(self, batch: PointBatch) -> Tensor:
        ...


class VoxelMLPEncoder(nn.Module):
    """Per-point MLP, pooled per token voxel (``scatter_reduce``), then a token MLP.

    Per-point input (9): the point's offset inside its token voxel in [-0.5, 0.5) (3), rgb (3) and xyz divided by
    its cloud's largest extent (3; aspect kept). Returns (T, out_size)."""

    def __init__(self, config: PointEncoderConfig):
        super().__init__()
        self.config = config
        self.out_size = config.out_size
        h = config.hidden_size
        self.point_mlp = nn.Sequential(nn.Linear(9, h), nn.GELU(), nn.Linear(h, h))
        self.token_mlp = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, config.out_size), nn.GELU(),
                                       nn.Linear(config.out_size, config.out_size))

    def point_features(self, batch: PointBatch) -> Tensor:
        """(P, 9) per-point inputs (class docstring)."""
        pts = batch.points.to(self.point_mlp[0].weight.dtype)
        stride = float(batch.token_stride)
        local = (torch.remainder(pts[:, :3], stride) + 0.5) / stride - 0.5
        xyz = pts[:, 3:6]
        extent = torch.zeros(batch.num_clouds, device=xyz.device, dtype=xyz.dtype).scatter_reduce(
            0, batch.point_cloud, xyz.amax(-1), reduce="amax", include_self=False)
        xyz = xyz / extent.clamp_min(1e-6)[batch.point_cloud, None]
        return torch.cat([local, pts[:, 6:9], xyz], -1)

    def forward(self, batch: PointBatch) -> Tensor:
        h = self.point_mlp(self.point_features(batch))  # (P, hidden)
        t = int(batch.token_coords.shape[0])
        index = batch.token_index[:, None].expand(-1, h.shape[-1])
        pooled = torch.zeros(t, h.shape[-1], device=h.device, dtype=h.dtype).scatter_reduce(
            0, index, h, reduce=self.config.reduce, include_self=False)
        return self.token_mlp(pooled)


#: Point encoders: name -> ``factory(config) -> PointEncoder``; plug-ins: entry-point group ``posevlm.point_encoders``.
point_encoders: Registry[Callable[[PointEncoderConfig], nn.Module]] = Registry("point encoder", "point_encoders")
point_encoders.register("voxel_mlp", VoxelMLPEncoder, description=(
    "per-point MLP, max-pooled per token voxel (scatter_reduce), token MLP: small, pure torch, trainable on CPU"))


def build_point_encoder(config: PointEncoderConfig | Mapping[str, Any] | None = None) -> nn.Module:
    """The encoder registered as ``config.kind``, built from ``config`` (a dict or None: defaults)."""
    if config is None:
        config = PointEncoderConfig()
    elif isinstance(config, Mapping):
        config = PointEncoderConfig.from_dict(config)
    return point_encoders.get(config.kind)(config)
