"""Connectors: VGGT patch tokens merged into Qwen's merge-window layout, projected and fused with the 2D tokens.

Notation: S frames, T = S / 2 tubelets, (gh, gw) the 14-px patch grid, (mh, mw) = (gh / 2, gw / 2) the merged grid,
N = T * mh * mw merged tokens (one per ``<|video_pad|>``), DD the spatial token width (2048 for VGGT-1B), D the
LLM hidden size, H attention heads.

**Merge** (models spec §1.7, Spatial-MLLM v1.1): the (S, gh * gw, DD) patch tokens of one video become (N, 8 * DD)
rows in ``[T, mh, mw]`` raster order (the order of Qwen's merger output, so row i belongs to the same video pad
as row i of the 2D tokens), each row holding the 2 frames x 2 x 2 patches of its merge window with the feature
index ``((sh * 2 + sw) * DD + d) * 2 + tm`` (sub-patch major, then channel, then the frame of the pair fastest).
The released connector's ``mlp.0.weight`` columns are indexed by exactly this order. ``merge_order="v1.0"`` is the
previous version's ``[tm, sh, sw, d]`` order. :func:`merge_videos` merges several videos (one ``grid_thw`` row
each) and concatenates them, as the 2D tokens are.

**Connectors** (the ``connectors`` registry; plug-ins: entry-point group ``posevlm.connectors``): a
:class:`ConnectorConfig` names one; ``build_connector(config)`` makes the ``nn.Module``;
``connector_parameters(config)`` counts its parameters on the meta device (no memory). Each module has
``forward(visual (N, D), spatial (N, 8 * DD)) -> (N, D)`` and states, as class attributes:

- ``fuses``: True: the output replaces the 2D tokens (same count); False: the output is extra tokens, which the
  model scatters after each video's 2D tokens, at the positions of their cells' 2D tokens and without camera;
- ``extra_tokens_per_visual_token``: 0 for fusing connectors, 1 for ``sequence_cat`` (visual context doubles);
- ``per_video``: True if the output row i depends on other rows (attention): call it with one video's N tokens
  at a time; False: row-wise, any concatenation of videos works.

::

    type           fuses  extra  per_video  output (N, D)
    add            yes    0      no         visual + MLP(RMSNorm(spatial))                  (released v1.1 keys)
    v1_0           yes    0      no         visual + MLP2(RMSNorm(MLP1(RMSNorm(spatial))))  (released v1.0 keys)
    channel_cat    yes    0      no         Linear([visual, MLP(RMSNorm(spatial))])         (starts as visual)
    sequence_cat   no     1      no         MLP(RMSNorm(spatial)) as extra tokens; the 2D tokens untouched
    cross_attn     yes    0      yes        visual + attention(2D -> 3D tokens) + FFN       (starts as visual)

Switches (fusion flags, spec §2.2): ``use_visual`` / ``use_geo`` drop one term of a fusing connector (the 2D-only
/ 3D-only ablations), ``skip`` bypasses the connector (2D tokens only; VGGT still runs for cameras). A connector
accepts only the switches that keep its token count (``switches``); the others are refused by the config.

Why the variants (research log, spec §2.3 and §2.5): the 2D tubelet mixes the two frames of a pair, which are far
apart under pose-aware sampling, while the VGGT tokens of each frame are world-frame ("enlarging the map");
summing the two (``add``) makes the fused token ambiguous. ``channel_cat`` keeps both in separate channels until
a learned projection, ``sequence_cat`` keeps them as separate tokens (camera attention then applies to the 2D
tokens only, exactly), ``cross_attn`` lets each 2D token read any 3D token of the video instead of only its own
merge window. All three start from (or keep) the stock 2D tokens, so the pretrained alignment is not lost at init.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.registry import Registry

__all__ = ["ConnectorConfig", "MERGE_ORDERS", "SWITCHES", "merge_spatial_tokens", "merge_spatial_tokens_reference",
           "merge_videos", "RMSNorm", "AddConnector", "V10Connector", "ChannelCatConnector", "SequenceCatConnector",
           "CrossAttnConnector", "connectors", "build_connector", "connector_parameters"]

MERGE_ORDERS = ("v1.1", "v1.0")
SWITCHES = ("use_visual", "use_geo", "skip")  # the fusion flags, each named by the value that ablates it below


@dataclass(frozen=True)
class ConnectorConfig:
    """A connector recipe, saved with the checkpoint (``connector_config`` of the model config).

    Attributes:
        type: registry name (``add``, ``v1_0``, ``channel_cat``, ``sequence_cat``, ``cross_attn``).
        spatial_dim: DD, the spatial token width (VGGT: 2 x embed dim = 2048 for VGGT-1B).
        llm_dim: D, the LLM hidden size.
        merge_order: ``v1.1`` (released Spatial-MLLM) or ``v1.0`` (its previous version); default (None): ``v1.0``
            for ``type="v1_0"``, else ``v1.1``.
        use_visual / use_geo: keep the 2D tokens / the 3D term in a fusing connector (False: the ablation).
        skip: bypass the connector: the 2D tokens alone (the cameras can still come from the spatial encoder).
        hidden: hidden width of the 8DD -> D MLP (default ``8 * spatial_dim``, as released); not used by
            ``cross_attn`` (one Linear 8DD -> D).
        num_heads: attention heads of ``cross_attn`` (must divide ``llm_dim``).
        mlp_ratio: FFN width of ``cross_attn`` as a multiple of ``llm_dim`` (spec §2.1: 4); 0: no FFN.
    """

    type: str = "add"
    spatial_dim: int = 2048
    llm_dim: int = 2048
    merge_order: str | None = None
    use_visual: bool = True
    use_geo: bool = True
    skip: bool = False
    hidden: int | None = None
    num_heads: int = 8
    mlp_ratio: int = 4
    schema_version: int = 1

    def __post_init__(self) -> None:
        if self.merge_order is None:
            object.__setattr__(self, "merge_order", "v1.0" if self.type == "v1_0" else "v1.1")
        problems = []
        for name in ("spatial_dim", "llm_dim", "num_heads", "mlp_ratio"):
            value, low = getattr(self, name), 0 if name == "mlp_ratio" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name}={value!r} (an int >= {low})")
        if self.hidden is not None and (isinstance(self.hidden, bool) or not isinstance(self.hidden, int)
                                        or self.hidden < 1):
            problems.append(f"hidden={self.hidden!r} (an int >= 1 or None)")
        sizes_ok = not problems
        if self.merge_order not in MERGE_ORDERS:
            problems.append(f"merge_order={self.merge_order!r} (one of {', '.join(MERGE_ORDERS)})")
        if not (self.use_visual or self.use_geo):
            problems.append("use_visual and use_geo are both False (nothing left to feed the LLM)")
        if self.type not in connectors:
            problems.append(f"type {self.type!r} (registered: {', '.join(connectors.names())})")
        elif sizes_ok:  # the connector's own checks (switches it supports, head count) need valid sizes
            problems += getattr(connectors.get(self.type), "check", lambda config: [])(self)
        if problems:
            raise ConfigError("invalid ConnectorConfig: " + "; ".join(problems), field="connector_config")

    @property
    def merged_dim(self) -> int:
        """8 * DD: the width of one merged row (2 frames x 2 x 2 patches)."""
        return 8 * self.spatial_dim

    @property
    def extra_tokens_per_visual_token(self) -> int:
        """Extra sequence tokens per merged 2D token (``sequence_cat``: 1; fusing connectors: 0)."""
        return int(getattr(connectors.get(self.type), "extra_tokens_per_visual_token", 0))

    @property
    def switched(self) -> list[str]:
        """The switches set away from their default (``use_visual=False``, ``use_geo=False``, ``skip=True``)."""
        return [name for name, on in (("use_visual", not self.use_visual), ("use_geo", not self.use_geo),
                                      ("skip", self.skip)) if on]

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


def merge_videos(tokens_per_video: Sequence[Tensor], grid_thw, order: str = "v1.1") -> Tensor:
    """Several videos: video v's (S_v, gh_v * gw_v, DD) tokens merged with its own ``grid_thw[v]``, concatenated
    -> (sum_v T_v * mh_v * mw_v, 8 * DD), the order of the 2D tokens of a multi-row ``video_grid_thw``.

    Args:
        tokens_per_video: one (S_v, gh_v * gw_v, DD) tensor per video (special tokens already dropped).
        grid_thw: (V, 3) ``video_grid_thw`` (tensor or nested sequence), one row per video.
    Raises:
        ShapeError: V differs between the two, grid_thw is not (V, 3), DD differs between videos, or a video's
            tokens do not fit its row (see :func:`merge_spatial_tokens`).
    """
    rows = [tuple(int(v) for v in row) for row in (grid_thw.tolist() if isinstance(grid_thw, Tensor) else grid_thw)]
    if any(len(row) != 3 for row in rows):
        raise ShapeError(f"grid_thw must be (V, 3) rows of (T, gh, gw); got {rows}", name="grid_thw")
    if len(rows) != len(tokens_per_video):
        raise ShapeError(f"{len(tokens_per_video)} videos of spatial tokens for {len(rows)} grid_thw rows; pass one "
                         "token tensor per video, in the order of video_grid_thw", name="tokens_per_video")
    widths = sorted({int(tokens.shape[-1]) for tokens in tokens_per_video})
    if len(widths) > 1:
        raise ShapeError(f"spatial token widths differ between videos: {widths}; all come from one spatial encoder "
                         "layer", name="tokens_per_video")
    return torch.cat([merge_spatial_tokens(tokens, row, order) for tokens, row in zip(tokens_per_video, rows)])


# ---- building blocks ---------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """Qwen's RMSNorm (statistics in float32, or float64 for float64 inputs; weight applied in the input dtype);
    key ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.to(torch.promote_types(dtype, torch.float32))
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def _init_linear(layer: nn.Linear, *, zero: bool = False) -> nn.Linear:
    """Fresh connector init of the reference (normal std 0.02, zero bias); ``zero``: all zeros (residual branch)."""
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(d_in: int, hidden: int, d_out: int, *, zero_out: bool = False) -> nn.Sequential:
    """Linear d_in -> hidden, GELU, Linear hidden -> d_out (keys ``0.*``, ``2.*``)."""
    return nn.Sequential(_init_linear(nn.Linear(d_in, hidden)), nn.GELU(),
                         _init_linear(nn.Linear(hidden, d_out), zero=zero_out))


class _Connector(nn.Module):
    """Shared by the built-in connectors: the token-count attributes, the switch check and the input check."""

    fuses: bool = True
    extra_tokens_per_visual_token: int = 0
    per_video: bool = False
    switches: frozenset[str] = frozenset(SWITCHES)  # the switches that keep this connector's token count

    def __init__(self, config: ConnectorConfig):
        super().__init__()
        self.config = config

    @classmethod
    def check(cls, config: ConnectorConfig) -> list[str]:
        """Problems of ``config`` for this connector (reported with the generic ones by ConnectorConfig)."""
        refused = [name for name in config.switched if name not in cls.switches]
        return [f"{config.type} does not support {', '.join(refused)} (it supports: "
                f"{', '.join(sorted(cls.switches)) or 'none'})"] if refused else []

    def _check_inputs(self, visual: Tensor, spatial: Tensor) -> None:
        c = self.config
        if visual.dim() != 2 or visual.shape[-1] != c.llm_dim:
            raise ShapeError(f"visual tokens must be (N, D={c.llm_dim}); got {tuple(visual.shape)}", name="visual",
                             shape=tuple(visual.shape))
        if spatial.dim() != 2 or spatial.shape[-1] != c.merged_dim:
            raise ShapeError(f"merged spatial tokens must be (N, 8*DD={c.merged_dim}); got {tuple(spatial.shape)}: "
                             "merge them first (merge_spatial_tokens / merge_videos)", name="spatial",
                             shape=tuple(spatial.shape))
        if visual.shape[0] != spatial.shape[0]:
            raise ShapeError(f"{visual.shape[0]} 2D tokens but {spatial.shape[0]} merged spatial tokens; both come from "
                             "the same frames and grid", name="spatial", shape=tuple(spatial.shape))

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


# ---- connectors --------------------------------------------------------------------------------------------------
class _SpatialMLP(_Connector):
    """The released 3D path: ``ln_q`` RMSNorm(8DD), ``mlp`` Linear 8DD -> hidden, GELU, Linear hidden -> D."""

    def __init__(self, config: ConnectorConfig):
        super().__init__(config)
        self.ln_q = RMSNorm(config.merged_dim)
        self.mlp = _mlp(config.merged_dim, config.hidden or config.merged_dim, config.llm_dim)

    def project(self, spatial: Tensor) -> Tensor:
        """(N, 8 * DD) -> (N, D) in the parameters' dtype."""
        return self.mlp(self.ln_q(spatial.to(self._param_dtype())))


def _add_fusion(module: _Connector, visual: Tensor, spatial: Tensor) -> Tensor:
    """``[visual] + [project(spatial)]`` as the switches say; ``skip`` / ``use_geo=False`` never run the projection."""
    module._check_inputs(visual, spatial)
    c = module.config
    if c.skip or not c.use_geo:
        return visual
    geo = module.project(spatial).to(visual.dtype)
    return visual + geo if c.use_visual else geo


class AddConnector(_SpatialMLP):
    """``add`` (v1.1): ``fused = [visual] + [MLP(RMSNorm(spatial))]`` (the bracketed terms as ``use_visual`` /
    ``use_geo`` say); ``skip`` returns the 2D tokens. Keys ``ln_q.weight``, ``mlp.0.{weight,bias}``,
    ``mlp.2.{weight,bias}`` (Linear 8DD -> hidden, GELU, Linear hidden -> D)."""

    def forward(self, visual: Tensor, spatial: Tensor) -> Tensor:
        """visual (N, D), spatial (N, 8 * DD) -> (N, D) in visual's dtype."""
        return _add_fusion(self, visual, spatial)


class V10Connector(_Connector):
    """``v1_0`` (Spatial-MLLM v1.0, spec §1.9): ``visual + MLP2(RMSNorm(MLP1(RMSNorm(spatial))))`` with
    MLP1 8DD -> hidden -> D and MLP2 D -> D -> D, on rows merged in the ``v1.0`` order (the config's default for this
    type). Same switches as ``add``.

    Keys as in v1.0's ``VGGTEmbeddingMerger`` (``vggt_embedding_merger.*`` of ``Diankun/Spatial-MLLM-subset-sft``,
    read from upstream previous_version/src/models/modeling_qwen2_5_vl.py; the loader strips the prefix):
    ``token_merge_ln_q.weight``, ``token_merge_mlp.{0,2}.{weight,bias}``, ``vgg_to_language_ln_q.weight``,
    ``vgg_to_language_mlp.{0,2}.{weight,bias}``.
    """

    def __init__(self, config: ConnectorConfig):
        super().__init__(config)
        d = config.llm_dim
        self.token_merge_ln_q = RMSNorm(config.merged_dim)
        self.token_merge_mlp = _mlp(config.merged_dim, config.hidden or config.merged_dim, d)
        self.vgg_to_language_ln_q = RMSNorm(d)
        self.vgg_to_language_mlp = _mlp(d, d, d)

    def project(self, spatial: Tensor) -> Tensor:
        """(N, 8 * DD) -> (N, D) in the parameters' dtype."""
        x = self.token_merge_mlp(self.token_merge_ln_q(spatial.to(self._param_dtype())))
        return self.vgg_to_language_mlp(self.vgg_to_language_ln_q(x))

    def forward(self, visual: Tensor, spatial: Tensor) -> Tensor:
        """visual (N, D), spatial (N, 8 * DD) -> (N, D) in visual's dtype."""
        return _add_fusion(self, visual, spatial)


class ChannelCatConnector(_SpatialMLP):
    """``channel_cat`` (spec §2.3, "channel CAT", the safe variant): ``proj([visual, MLP(RMSNorm(spatial))])``,
    the concatenation (N, 2D) projected back to (N, D) by ``proj`` initialised to ``[I, 0]`` with zero bias, so a
    fresh connector returns the 2D tokens exactly ("visual only") and training moves it. Keys: those of ``add``
    (``ln_q``, ``mlp.0``, ``mlp.2``; a trained ``add`` 3D path loads into it) plus ``proj.{weight,bias}``.

    Switches: ``use_visual=False`` / ``use_geo=False`` feed zeros for that half (the MLP does not run without
    ``use_geo``); ``skip`` returns the 2D tokens.

    Caveats (spec §2.3): (1) at init only ``proj`` receives gradient (the MLP's gradient passes through the zero
    block); the 3D path starts learning after the first step, as a LoRA B = 0 does. (2) The research note's
    "half 2D, half 3D" split (2D projected to D/2) is not used: it would discard the pretrained alignment of the
    merger output with the LLM. (3) "PRoPE on the 2D half" has no meaning after this projection, since every head's
    q/k mixes all channels; the implementable analogue is camera attention on a sub-range of head_dim, or
    ``sequence_cat`` (camera attention on the 2D tokens only). (4) The 3D path still merges a frame pair per row.
    """

    def __init__(self, config: ConnectorConfig):
        super().__init__(config)
        d = config.llm_dim
        self.proj = nn.Linear(2 * d, d)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.weight[:, :d].copy_(torch.eye(d))
            self.proj.bias.zero_()

    def forward(self, visual: Tensor, spatial: Tensor) -> Tensor:
        """visual (N, D), spatial (N, 8 * DD) -> (N, D) in visual's dtype."""
        self._check_inputs(visual, spatial)
        c = self.config
        if c.skip:
            return visual
        x = visual.to(self._param_dtype())
        geo = self.project(spatial) if c.use_geo else torch.zeros_like(x)
        return self.proj(torch.cat([x if c.use_visual else torch.zeros_like(x), geo], dim=-1)).to(visual.dtype)


class SequenceCatConnector(_SpatialMLP):
    """``sequence_cat`` (spec §2.3, "sequence CAT"): the projected 3D tokens ``MLP(RMSNorm(spatial))`` (N, D) as
    **extra** tokens (``fuses=False``, ``extra_tokens_per_visual_token=1``); the 2D tokens stay untouched.

    The prompt holds 2N pads per video (:func:`~posevlm.models.spatial_mllm.expand_video_pads`, or
    ``SpatialMLLM.expand_inputs``): the N 2D tokens, then the N 3D tokens right after them. Each 3D token takes the
    position of its cell's 2D token (same ``(t, h, w)`` rows; text and 2D tokens sit where they sit without the
    extra tokens; transformers' ``get_rope_index`` cannot place extra pads, so posevlm's ``thw`` builder is always
    installed) and no camera: camera attention (PRoPE / GTA / CaPE, pose bias) applies to the view-dependent 2D
    tokens only, none to the VGGT tokens, which are already in the first frame's world frame. Pose-index positions
    (P axis) are refused: P cannot be given to the 2D tokens only. Cost: twice the visual context (3,128 -> 6,256
    tokens for 16 frames at 644x476). Keys: those of ``add``.

    No switches (each would change the token count): for 2D-only use ``type="add", skip=True``; since the keys are
    those of ``add``, a trained ``sequence_cat`` loads as ``add`` with ``use_visual=False`` (3D tokens only, in
    place of the 2D ones).
    """

    fuses = False
    extra_tokens_per_visual_token = 1
    switches = frozenset()

    def forward(self, visual: Tensor, spatial: Tensor) -> Tensor:
        """visual (N, D) (only checked), spatial (N, 8 * DD) -> (N, D) extra tokens in visual's dtype."""
        self._check_inputs(visual, spatial)
        return self.project(spatial).to(visual.dtype)


class CrossAttnConnector(_Connector):
    """``cross_attn`` (VLM-3R style, spec §5.1 / §2.1): the 2D tokens query the 3D tokens of the same video,

        s = spatial_proj(ln_spatial(spatial))                          # (N, 8DD) -> (N, D), shared by k and v
        h = visual + o_proj(MHA(q_proj(ln_visual(visual)), k_proj(s), v_proj(s)))   # H heads, no mask
        out = h + ffn(ln_ffn(h))                                       # D -> mlp_ratio * D -> D; absent if 0

    **Global** attention: every 2D token attends to all N 3D tokens of its video (as VLM-3R's fusion block), so a
    query is not tied to the 3D token of its own frame pair. ``per_video=True``: ``forward`` takes **one video** at
    a time (the N tokens of one ``grid_thw`` row); the caller splits a batch by video (tokens of two videos must not
    attend to each other). Cost per video: O(N^2 * D) through ``torch.nn.functional.scaled_dot_product_attention``
    (memory-efficient kernels, no (N, N) tensor where the backend has them). At N = 3,128, D = 2,048, 8 heads:
    about 80 GFLOP for scores and values, 0.5 TFLOP for the projections and FFN (the 8DD -> D projection 0.2 of
    it), once per prompt (prefill only); the released ``add`` MLP costs 1.9 TFLOP, a 3B LLM prefill of 3,187 tokens
    about 19 TFLOP.

    Starts as visual only: ``o_proj`` and the FFN's last Linear are zero (weights and biases), so the residual
    branches add exactly 0 at init; at init only those two Linears receive gradient, the rest after the first step.
    Switches: ``use_geo=False`` and ``skip`` return the 2D tokens; ``use_visual=False`` is refused (the 2D tokens are
    the queries). Keys: ``ln_visual.weight``, ``ln_spatial.weight``, ``spatial_proj``, ``q_proj``, ``k_proj``,
    ``v_proj``, ``o_proj`` (each ``.{weight,bias}``), ``ln_ffn.weight``, ``ffn.{0,2}.{weight,bias}``.
    """

    per_video = True
    switches = frozenset({"use_geo", "skip"})

    @classmethod
    def check(cls, config: ConnectorConfig) -> list[str]:
        problems = super().check(config)
        if config.llm_dim % config.num_heads:
            problems.append(f"num_heads={config.num_heads} does not divide llm_dim={config.llm_dim}")
        if config.hidden is not None:
            problems.append(f"hidden={config.hidden} is not used by cross_attn (one Linear 8DD -> D; the FFN width is "
                            "mlp_ratio * llm_dim); leave it None")
        return problems

    def __init__(self, config: ConnectorConfig):
        super().__init__(config)
        d = config.llm_dim
        self.ln_visual = RMSNorm(d)
        self.ln_spatial = RMSNorm(config.merged_dim)
        self.spatial_proj = _init_linear(nn.Linear(config.merged_dim, d))
        self.q_proj, self.k_proj, self.v_proj = (_init_linear(nn.Linear(d, d)) for _ in range(3))
        self.o_proj = _init_linear(nn.Linear(d, d), zero=True)
        if config.mlp_ratio:
            self.ln_ffn = RMSNorm(d)
            self.ffn = _mlp(d, config.mlp_ratio * d, d, zero_out=True)

    def forward(self, visual: Tensor, spatial: Tensor) -> Tensor:
        """visual (N, D), spatial (N, 8 * DD) of **one video** -> (N, D) in visual's dtype."""
        self._check_inputs(visual, spatial)
        c = self.config
        if c.skip or not c.use_geo:
            return visual
        x = visual.to(self._param_dtype())
        s = self.spatial_proj(self.ln_spatial(spatial.to(x.dtype)))

        def heads(t: Tensor) -> Tensor:  # (N, D) -> (1, H, N, D / H)
            return t.view(t.shape[0], c.num_heads, -1).transpose(0, 1).unsqueeze(0)

        attn = F.scaled_dot_product_attention(heads(self.q_proj(self.ln_visual(x))), heads(self.k_proj(s)),
                                              heads(self.v_proj(s)))
        h = x + self.o_proj(attn[0].transpose(0, 1).reshape(x.shape))
        if c.mlp_ratio:
            h = h + self.ffn(self.ln_ffn(h))
        return h.to(visual.dtype)


#: Connectors by name: a factory ``ConnectorConfig -> nn.Module``; plug-ins: entry-point group ``posevlm.connectors``.
connectors: Registry[Callable[[ConnectorConfig], nn.Module]] = Registry("connector", "connectors")
connectors.register("add", AddConnector,
                    description="v1.1 parity: RMSNorm(8DD) + MLP + add (use_visual / use_geo / skip switches)")
connectors.register("v1_0", V10Connector,
                    description="Spatial-MLLM v1.0: v1.0 merge order, RMSNorm + MLP 8DD->D, RMSNorm + MLP D->D, add")
connectors.register("channel_cat", ChannelCatConnector,
                    description="concat [2D, MLP(RMSNorm(8DD))] -> Linear 2D->D initialised [I, 0]: starts as 2D only")
connectors.register("sequence_cat", SequenceCatConnector,
                    description="3D tokens MLP(RMSNorm(8DD)) as extra tokens (a second video block), 2D untouched")
connectors.register("cross_attn", CrossAttnConnector,
                    description="VLM-3R style: 2D queries attend to the video's 3D tokens, zero-init residual + FFN")


def build_connector(config: ConnectorConfig) -> nn.Module:
    """The ``nn.Module`` of ``config.type``."""
    return connectors.get(config.type)(config)


def connector_parameters(config: ConnectorConfig) -> int:
    """Parameter count of ``build_connector(config)``, built on the meta device (no memory, any size)."""
    with torch.device("meta"):
        module = build_connector(config)
    return sum(p.numel() for p in module.parameters())
