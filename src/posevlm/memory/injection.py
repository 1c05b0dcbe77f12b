"""Adaptive 3D coordinate injection (VLM², models spec §5.2): ``F + alpha * phi(C)``.

Notation: n tokens of one step (the mh x mw merged grid of a tubelet), D width, F frequencies.

``C`` is the step's point map pooled to its token grid (:func:`posevlm.memory.points.pool_point_maps`), in the
first frame's world frame and divided by the stream's coordinate scale; ``phi`` a sinusoidal encoding of each
axis followed by a 2-layer MLP; ``alpha`` one gate per token in [0, 1] computed from the token and its encoded
coordinate, so noisy or missing geometry can be turned down. Tokens without a valid point get alpha = 0 and are
returned unchanged, as is every token when alpha = 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError

__all__ = ["sinusoidal_encoding", "CoordinateInjection"]


def sinusoidal_encoding(coords: Tensor, num_frequencies: int, min_period: float, max_period: float) -> Tensor:
    """(..., 3) coordinates -> (..., 3 * 2F) features ``[sin(2 pi c / p_k), cos(2 pi c / p_k)]`` per axis
    (x block, then y, then z; each block F sines then F cosines), periods p_k geometric from ``min_period`` to
    ``max_period`` (float32 or wider)."""
    if coords.shape[-1:] != (3,):
        raise ShapeError(f"coords must be (..., 3); got {tuple(coords.shape)}", name="coords",
                         shape=tuple(coords.shape))
    dtype = torch.promote_types(coords.dtype, torch.float32)
    steps = torch.linspace(0.0, 1.0, num_frequencies, dtype=dtype, device=coords.device)
    periods = min_period * (max_period / min_period) ** steps
    angles = 2 * math.pi * coords.to(dtype)[..., None] / periods  # (..., 3, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class CoordinateInjection(nn.Module):
    """``tokens + alpha * phi(coords)`` with a per-token gate ``alpha`` in [0, 1].

    ``phi`` = Linear(6F -> hidden), GELU, Linear(hidden -> D) on :func:`sinusoidal_encoding`; gate logits =
    Linear(2D -> 1) on ``[RMSNorm(tokens); phi]``; ``gate="sigmoid"``: alpha = sigmoid(logit) per token;
    ``gate="softmax"``: alpha = softmax of the logits over the step's valid tokens (sums to 1 over the grid).
    ``zero_init``: phi's last layer starts at zero (a fresh module returns its input tokens exactly).

    Keys: ``encoder.{0,2}.{weight,bias}``, ``token_norm.weight``, ``gate_proj.{weight,bias}``.
    """

    def __init__(self, dim: int, *, num_frequencies: int = 16, min_period: float = 0.01, max_period: float = 10.0,
                 hidden: int | None = None, gate: str = "sigmoid", zero_init: bool = True):
        super().__init__()
        if gate not in ("sigmoid", "softmax"):
            raise ConfigError(f"gate={gate!r} (allowed: sigmoid, softmax)", field="gate", value=gate)
        self.dim, self.gate = dim, gate
        self.num_frequencies, self.min_period, self.max_period = num_frequencies, min_period, max_period
        hidden = hidden or dim
        self.encoder = nn.Sequential(nn.Linear(6 * num_frequencies, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.token_norm = nn.RMSNorm(dim, eps=1e-6)
        self.gate_proj = nn.Linear(2 * dim, 1)
        for layer in (self.encoder[0], self.encoder[2], self.gate_proj):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        if zero_init:
            nn.init.zeros_(self.encoder[2].weight)

    def encode(self, coords: Tensor) -> Tensor:
        """phi: (..., n, 3) -> (..., n, D) in the parameters' dtype."""
        features = sinusoidal_encoding(coords, self.num_frequencies, self.min_period, self.max_period)
        return self.encoder(features.to(self.gate_proj.weight.dtype))

    def gate_values(self, tokens: Tensor, encoded: Tensor, valid: Tensor) -> Tensor:
        """alpha (..., n) in [0, 1]; 0 on invalid tokens (softmax: all 0 for a step without a valid token)."""
        logits = self.gate_proj(torch.cat([self.token_norm(tokens), encoded], dim=-1))[..., 0]
        if self.gate == "sigmoid":
            return torch.sigmoid(logits) * valid
        any_valid = valid.any(dim=-1, keepdim=True)
        logits = torch.where(any_valid, logits.masked_fill(~valid, float("-inf")), torch.zeros_like(logits))
        return torch.softmax(logits, dim=-1) * valid

    def forward(self, tokens: Tensor, coords: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inject coordinates into the tokens of one or more steps.

        Args:
            tokens: (..., n, D) visual tokens F_t. coords: (..., n, 3) their pooled points (any finite value where
                ``valid`` is False). valid: (..., n) bool, tokens with a point (default: all).
        Returns:
            (tokens + alpha * phi(coords) (..., n, D) in the tokens' dtype, alpha (..., n)).
        """
        if tokens.shape[-1] != self.dim or coords.shape[:-1] != tokens.shape[:-1] or coords.shape[-1] != 3:
            raise ShapeError(f"tokens (..., n, D={self.dim}) and coords (..., n, 3) must match; got "
                             f"{tuple(tokens.shape)} and {tuple(coords.shape)}", name="coords",
                             shape=tuple(coords.shape))
        valid = torch.ones(tokens.shape[:-1], dtype=torch.bool, device=tokens.device) if valid is None else valid
        x = tokens.to(self.gate_proj.weight.dtype)
        encoded = self.encode(torch.where(valid[..., None], coords, torch.zeros_like(coords)))
        alpha = self.gate_values(x, encoded, valid)
        return (x + alpha[..., None] * encoded).to(tokens.dtype), alpha
