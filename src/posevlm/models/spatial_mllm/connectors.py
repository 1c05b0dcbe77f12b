"""Connectors: VGGT patch tokens merged into Qwen's merge-window layout, projected and fused with the 2D tokens.

Notation: S frames, T = S / 2 tubelets, (gh, gw) the 14-px patch grid, (mh, mw) = (gh / 2, gw / 2) the merged grid,
N = T * mh * mw merged tokens (one per ``<|video_pad|>``), DD the spatial token width (2048 for VGGT-1B), D the
LLM hidden size.

**Merge** (models spec §1.7, Spatial-MLLM v1.1): the (S, gh * gw, DD) patch tokens of one video become (N, 8 * DD)
rows in ``[T, mh, mw]`` raster order (the order of Qwen's merger output, so row i belongs to the same video pad
as row i of the 2D tokens), each row holding the 2 frames x 2 x 2 patches of its merge window with the feature
index ``((sh * 2 + sw) * DD + d) * 2 + tm`` (sub-patch major, then channel, then the frame of the pair fastest).
The released connector's ``mlp.0.weight`` columns are indexed by exactly this order. ``merge_order="v1.0"`` is the
previous version's ``[tm, sh, sw, d]`` order.

**Connectors** (the ``connectors`` registry; plug-ins: entry-point group ``posevlm.connectors``): a
:class:`ConnectorConfig` names one; ``build_connector(config)`` makes the ``nn.Module``. Each module has
``fuses`` (True: its output replaces the 2D tokens, same count; False: its output is extra tokens) and
``forward(visual (N, D), spatial (N, 8 * DD)) -> (N, D)``.

- ``add`` (v1.1 parity, key names ``ln_q.weight``, ``mlp.0.*``, ``mlp.2.*``): ``visual + MLP(RMSNorm(spatial))``
  with ``use_visual`` / ``use_geo`` switches (the 2D-only / 3D-only ablations) and ``skip`` (2D tokens only,
  the connector bypassed: VGGT still runs for cameras).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.registry import Registry

__all__ = ["ConnectorConfig", "MERGE_ORDERS", "merge_spatial_tokens", "merge_spatial_tokens_reference",
           "RMSNorm", "AddConnector", "connectors", "build_connector"]

MERGE_ORDERS = ("v1.1", "v1.0")


@dataclass(frozen=True)
class ConnectorConfig:
    """A connector recipe, saved with the checkpoint (``connector_config`` of the model config).

    Attributes:
        type: registry name (``add``, ...).
        spatial_dim: DD, the spatial token width (VGGT: 2 x embed dim = 2048 for VGGT-1B).
        llm_dim: D, the LLM hidden size.
        merge_order: ``v1.1`` (released Spatial-MLLM) or ``v1.0`` (its previous version).
        use_visual / use_geo: keep the 2D tokens / the connector output in a fusing connector's sum.
        skip: bypass the connector: the 2D tokens alone (the cameras can still come from the spatial encoder).
        hidden: hidden width of the MLP (default ``8 * spatial_dim``, as released).
        num_heads: attention heads of attention-based connectors.
    """

    type: str = "add"
    spatial_dim: int = 2048
    llm_dim: int = 2048
    merge_order: str = "v1.1"
    use_visual: bool = True
    use_geo: bool = True
    skip: bool = False
    hidden: int | None = None
    num_heads: int = 8
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.type not in connectors:
            problems.append(f"type {self.type!r} (registered: {', '.join(connectors.names())})")
        for name in ("spatial_dim", "llm_dim", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (an int >= 1)")
        if self.hidden is not None and (isinstance(self.hidden, bool) or not isinstance(self.hidden, int)
                                        or self.hidden < 1):
            problems.append(f"hidden={self.hidden!r} (an int >= 1 or None)")
        if self.merge_order not in MERGE_ORDERS:
            problems.append(f"merge_order={self.merge_order!r} (one of {', '.join(MERGE_ORDERS)})")
        if not (self.use_visual or self.use_geo):
            problems.append("use_visual and use_geo are both False (nothing left to feed the LLM)")
        if problems:
            raise ConfigError("invalid ConnectorConfig: " + "; ".join(problems), field="connector_config")

    @property
    def merged_dim(self) -> int:
        """8 * DD: the width of one merged row (2 frames x 2 x 2 patches)."""
        return 8 * self.spatial_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConnectorConfig":
        """From a saved dict; the released ``connector_type="mlp_add"`` spelling is read as ``add``."""
        data = dict(data)
        if "connector_type" in data:
            legacy = data.pop("connector_type")
            data.setdefault("type", {"mlp_add": "add"}.get(legacy, legacy))
        data.pop("spatial_embeds_layer_idx", None)  # a model setting (which layer), not the connector's
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ConnectorConfig keys {unknown}; valid: {sorted(known)}",
                              field="connector_config", value=unknown)
        return cls(**data)


# ---- merge -------------------------------------------------------------------------------------------------------
def _check_merge(tokens: Tensor, grid_thw) -> tuple[int, int, int, int, int]:
    t, gh, gw = (int(v) for v in grid_thw)
    if tokens.dim() != 3:
        raise ShapeError(f"spatial patch tokens must be (S, gh*gw, DD); got {tuple(tokens.shape)}", name="tokens",
                         shape=tuple(tokens.shape))
    s, p, dd = tokens.shape
    if s != 2 * t:
        raise ShapeError(f"{s} frames of spatial tokens for a video grid with T={t} tubelets (needs S = 2T = {2 * t}); "
                         "the spatial encoder must see the frames the vision tower saw, padded the same way",
                         name="tokens", shape=tuple(tokens.shape))
    if p != gh * gw or gh % 2 or gw % 2:
        raise ShapeError(f"{p} spatial patch tokens per frame for a {gh}x{gw} patch grid (needs {gh * gw}, even sides): "
                         "feed the spatial encoder the frames resized exactly as for the vision tower", name="tokens",
                         shape=tuple(tokens.shape))
    return t, gh, gw, dd, s


def merge_spatial_tokens(tokens: Tensor, grid_thw, order: str = "v1.1") -> Tensor:
    """(S, gh * gw, DD) patch tokens of one video (raster order per frame) -> (T * mh * mw, 8 * DD) rows in
    ``[T, mh, mw]`` order, one per merged 2D token; ``order`` ``v1.1`` or ``v1.0`` (module docstring).

    Raises:
        ShapeError: S != 2T, P != gh * gw, or odd grid sides (names the fix).
    """
    t, gh, gw, dd, _ = _check_merge(tokens, grid_thw)
    mh, mw = gh // 2, gw // 2
    x = tokens.reshape(t, 2, mh, 2, mw, 2, dd)  # [T, tm, mh, sh, mw, sw, DD]
    if order == "v1.1":
        x = x.permute(0, 2, 4, 3, 5, 6, 1)  # [T, mh, mw, sh, sw, DD, tm]
    elif order == "v1.0":
        x = x.permute(0, 2, 4, 1, 3, 5, 6)  # [T, mh, mw, tm, sh, sw, DD]
    else:
        raise ConfigError(f"merge order must be one of {', '.join(MERGE_ORDERS)}; got {order!r}", field="merge_order",
                          value=order)
    return x.reshape(t * mh * mw, 8 * dd)


def merge_spatial_tokens_reference(tokens: Tensor, grid_thw, order: str = "v1.1") -> Tensor:
    """The merge written index by index from the spec's formula (slow; the test oracle)."""
    t, gh, gw, dd, _ = _check_merge(tokens, grid_thw)
    mh, mw = gh // 2, gw // 2
    out = torch.empty(t * mh * mw, 8 * dd, dtype=tokens.dtype)
    for tau in range(t):
        for i in range(mh):
            for j in range(mw):
                row = (tau * mh + i) * mw + j
                for tm in range(2):
                    for sh in range(2):
                        for sw in range(2):
                            patch = (2 * i + sh) * gw + (2 * j + sw)
                            for d in range(dd):
                                col = (((sh * 2 + sw) * dd + d) * 2 + tm if order == "v1.1"
                                       else ((tm * 2 + sh) * 2 + sw) * dd + d)
                                out[row, col] = tokens[2 * tau + tm, patch, d]
    return out


# ---- modules -----------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """Qwen's RMSNorm (statistics in float32, weight applied in the input dtype); key ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def _init_linear(layer: nn.Linear) -> None:
    """Fresh connector init of the reference (normal std 0.02, zero bias)."""
    nn.init.normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)


class AddConnector(nn.Module):
    """``add`` (v1.1): ``fused = [visual] + [MLP(RMSNorm(spatial))]`` (the bracketed terms as ``use_visual`` /
    ``use_geo`` say); ``skip`` returns the 2D tokens. Keys ``ln_q.weight``, ``mlp.0.{weight,bias}``,
    ``mlp.2.{weight,bias}`` (Linear 8DD -> hidden, GELU, Linear hidden -> D)."""

    fuses = True

    def __init__(self, config: ConnectorConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden or config.merged_dim
        self.ln_q = RMSNorm(config.merged_dim)
        self.mlp = nn.Sequential(nn.Linear(config.merged_dim, hidden), nn.GELU(), nn.Linear(hidden, config.llm_dim))
        _init_linear(self.mlp[0])
        _init_linear(self.mlp[2])

    def project(self, spatial: Tensor) -> Tensor:
        """(N, 8 * DD) -> (N, D)."""
        return self.mlp(self.ln_q(spatial))

    def forward(self, visual: Tensor, spatial: Tensor) -> Tensor:
        """visual (N, D), spatial (N, 8 * DD) -> (N, D)."""
        if visual.shape[0] != spatial.shape[0]:
            raise ShapeError(f"{visual.shape[0]} 2D tokens but {spatial.shape[0]} merged spatial tokens; both come from "
                             "the same frames and grid", name="spatial", shape=tuple(spatial.shape))
        if self.config.skip:
            return visual
        geo = self.project(spatial.to(self.mlp[0].weight.dtype)).to(visual.dtype) if self.config.use_geo else None
        if geo is None:
            return visual
        return visual + geo if self.config.use_visual else geo


#: Connectors by name: a factory ``ConnectorConfig -> nn.Module``; plug-ins: entry-point group ``posevlm.connectors``.
connectors: Registry[Callable[[ConnectorConfig], nn.Module]] = Registry("connector", "connectors")
connectors.register("add", AddConnector,
                    description="v1.1 parity: RMSNorm(8DD) + MLP + add (use_visual / use_geo / skip switches)")


def build_connector(config: ConnectorConfig) -> nn.Module:
    """The ``nn.Module`` of ``config.type``."""
    return connectors.get(config.type)(config)
