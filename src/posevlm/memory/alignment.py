"""Viewpoint-aware geometry alignment (VLM², models spec §5.2).

Notation: n geometry tokens of one step, F frames per step (2: a tubelet), Cv the width of one frame's view input
(the spatial encoder's camera token, DD wide, or its 9-d pose encoding), D width.

Geometry tokens of a step are view-dependent; the step's view tells which view. Each frame's view input is
projected, ``psi_v(z_f)`` (D), and pooled over the step's frames into one view token ``v``; every geometry token
is fused with it, ``G' = G + MLP([RMSNorm(G); v])``, and ``v`` itself is appended as one extra token, so the
fusion's keys / values are ``[G'; v]`` (n + 1 tokens). ``zero_init`` starts the MLP's last layer at zero
(G' = G; the appended token still changes the keys, which a zero-initialised fusion output ignores).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from posevlm.errors import ShapeError

__all__ = ["ViewpointAlignment"]


class ViewpointAlignment(nn.Module):
    """Geometry tokens fused with projected view tokens, plus one pooled view token.

    Keys: ``view_norm.weight`` (camera tokens only), ``view_proj.{0,2}.{weight,bias}`` (psi_v: Linear Cv -> D,
    GELU, Linear D -> D), ``geometry_norm.weight``, ``fuse.{0,2}.{weight,bias}`` (Linear 2D -> D, GELU,
    Linear D -> D).
    """

    def __init__(self, dim: int, view_dim: int, *, normalise_view: bool = True, zero_init: bool = True):
        super().__init__()
        self.dim, self.view_dim = dim, view_dim
        self.view_norm = nn.RMSNorm(view_dim, eps=1e-6) if normalise_view else None
        self.view_proj = nn.Sequential(nn.Linear(view_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.geometry_norm = nn.RMSNorm(dim, eps=1e-6)
        self.fuse = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        for layer in (self.view_proj[0], self.view_proj[2], self.fuse[0], self.fuse[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        if zero_init:
            nn.init.zeros_(self.fuse[2].weight)

    def view_token(self, view: Tensor) -> Tensor:
        """(..., F, Cv) per-frame view inputs -> (..., D) the step's pooled view token (mean over frames)."""
        x = view.to(self.fuse[0].weight.dtype)
        if self.view_norm is not None:
            x = self.view_norm(x)
        return self.view_proj(x).mean(dim=-2)

    def forward(self, geometry: Tensor, view: Tensor) -> Tensor:
        """Align a step's geometry tokens with its view.

        Args:
            geometry: (..., n, D) geometry tokens G. view: (..., F, Cv) the step's per-frame view inputs.
        Returns:
            (..., n + 1, D): ``[G + MLP([RMSNorm(G); v]); v]`` in the parameters' dtype.
        """
        if geometry.shape[-1] != self.dim or view.shape[-1] != self.view_dim or geometry.shape[:-2] != view.shape[:-2]:
            raise ShapeError(f"geometry (..., n, D={self.dim}) and view (..., F, Cv={self.view_dim}) must share their "
                             f"leading dims; got {tuple(geometry.shape)} and {tuple(view.shape)}", name="view",
                             shape=tuple(view.shape))
        g = geometry.to(self.fuse[0].weight.dtype)
        v = self.view_token(view)
        fused = g + self.fuse(torch.cat([self.geometry_norm(g), v[..., None, :].expand_as(g)], dim=-1))
        return torch.cat([fused, v[..., None, :]], dim=-2)
