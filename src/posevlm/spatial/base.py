"""The interface every spatial encoder implements, its output, and the ``spatial_encoders`` registry.

A spatial encoder turns a clip of frames into per-frame token grids from one or more of its layers
(Spatial-MLLM feeds VGGT's last aggregator layer to its connector, spec models.md section 1.7) and,
when it has a camera head, a camera estimate per frame. VGGT is the first; CUT3R or Depth-Anything-3
adapters plug in behind the same :class:`SpatialEncoder` protocol and register a loader here.

Notation: B batch, S frames, H W image size, gh gw patch grid, P = gh * gw patch tokens, k special
tokens per frame before the patches (VGGT: 1 camera + 4 registers, so ``patch_start_idx = 5``), C the
token width of the encoder's outputs (VGGT: 2 x 1024 = 2048).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from torch import Tensor

from posevlm.errors import ConfigError
from posevlm.registry import Registry

__all__ = ["SpatialEncoding", "SpatialEncoder", "spatial_encoders", "load_spatial_encoder", "resolve_layers"]


def resolve_layers(layers: int | Sequence[int], num_layers: int, *, name: str = "layers") -> tuple[int, ...]:
    """Absolute layer indices (0 .. num_layers - 1) of ``layers`` (negative counts from the end), duplicates
    dropped, request order kept. Raises ConfigError naming every index out of range."""
    items = (layers,) if isinstance(layers, int) else tuple(layers)
    bad = [i for i in items if isinstance(i, bool) or not isinstance(i, int) or not -num_layers <= i < num_layers]
    if bad:
        raise ConfigError(f"{name}={list(items)}: {bad} out of range for an encoder with {num_layers} layers "
                          f"(use integers in -{num_layers}..{num_layers - 1}; -1 is the last layer)",
                          field=name, value=bad)
    return tuple(dict.fromkeys(i % num_layers for i in items))


@dataclass(frozen=True)
class SpatialEncoding:
    """What :meth:`SpatialEncoder.encode` returns.

    Fields:
        tokens: absolute layer index -> (B, S, k + P, C) tokens of that layer (only the requested layers).
        layers: the requested layers as absolute indices, in request order.
        special_tokens: (B, S, k, C) the special tokens (VGGT: camera token then registers) of the last
            requested layer; a view of ``tokens[layers[-1]]``.
        patch_start_idx: k, index of the first patch token in the token axis.
        grid_hw: (gh, gw); patch tokens are in raster order, row-major over the grid.
        image_hw: (H, W) of the frames fed (the size camera intrinsics refer to).
        pose_enc: (B, S, 9) camera encoding of each frame (``pose_encoding`` layout) or None.
        pose_encoding: the layout name of ``pose_enc`` (VGGT: ``absT_quaR_FoV``, w2c, OpenCV axes) or None.
    """

    tokens: dict[int, Tensor]
    layers: tuple[int, ...]
    special_tokens: Tensor
    patch_start_idx: int
    grid_hw: tuple[int, int]
    image_hw: tuple[int, int]
    pose_enc: Tensor | None = None
    pose_encoding: str | None = None

    def patch_tokens(self, layer: int | None = None) -> Tensor:
        """(B, S, P, C) patch tokens of ``layer`` (absolute, or negative into ``layers``; default: the last
        requested layer)."""
        if layer is None:
            layer = self.layers[-1]
        elif layer < 0:
            layer = self.layers[layer]
        if layer not in self.tokens:
            raise ConfigError(f"layer {layer} was not requested; requested: {list(self.layers)}", field="layer",
                              value=layer)
        return self.tokens[layer][:, :, self.patch_start_idx:]


@runtime_checkable
class SpatialEncoder(Protocol):
    """A module that encodes frames into per-layer token grids (and optionally cameras).

    Attributes:
        name: registry name (``vggt``).
        token_dim: C, width of the returned tokens.
        num_layers: how many layers ``encode`` can return (valid indices -num_layers .. num_layers - 1).
        patch_size: pixels per patch side; H and W must be multiples of it.
        patch_start_idx: k, special tokens before the patches of each frame.
    """

    name: str
    token_dim: int
    num_layers: int
    patch_size: int
    patch_start_idx: int

    def encode(self, frames: Tensor, layers: int | Sequence[int] = (-1,), *, pose: bool = True,
               precision: str = "auto") -> SpatialEncoding:
        """Encode (B, S, 3, H, W) frames with values in [0, 1] (RGB, not normalised)."""
        ...


spatial_encoders: Registry[Callable[..., SpatialEncoder]] = Registry("spatial encoder",
                                                                      entry_point_group="spatial_encoders")
spatial_encoders.register_lazy(
    "vggt", "posevlm.spatial.vggt:load_vggt_encoder",
    description="VGGT (facebook/VGGT-1B layout): aggregator tokens [B,S,5+P,2048] per layer + camera head")


def load_spatial_encoder(name: str, weights: Any = None, **kwargs: Any) -> SpatialEncoder:
    """Build the spatial encoder registered as ``name`` and load ``weights`` (local file / directory / hub id;
    None: random initialisation). Keyword arguments go to the encoder's loader, e.g. for ``vggt``:
    ``config=VGGTConfig.tiny(), heads=("camera",), device="cuda", dtype=torch.bfloat16, strict=True``."""
    return spatial_encoders.get(name)(weights, **kwargs)
