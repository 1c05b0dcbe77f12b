"""MixedRoPE3D: rotary positions for point-cloud tokens (x, y, z) beside the LLM's 1D text positions.

Notation: B batch, L tokens, H query heads, Hk key/value heads, D head dim, K = D/2 rotary slots (slot k pairs
head dims k and k + K), Ks spatial slots, A spatial axes (default x, y, z).

Definition (models spec §5.3; research note mixed-rope3d.md):

* A **text token** at sequence index s rotates every slot k by ``s * inv_freq[k]``: the LLM's own 1D RoPE, so
  text-only input is the stock model exactly.
* A **point token** at sequence index s with normalised coordinates c (A,) rotates
  - its Ks *spatial slots* (slots 0 .. Ks-1, the high-frequency end of the head) in head h by
    ``sum_a W[h, k, a] * c[a]`` with ``W = mixing * frequencies`` (per head, per slot, per axis);
  - its other slots by ``s * inv_freq[k]``: the sequence part, identical to a text token at s.
  ``split``: ``half_spatial_half_temp`` (Ks = K/2, the default), ``full_spatial`` (Ks = K: no sequence part),
  ``ratio`` (Ks = spatial_ratio * K; the ratio must give an even number of head dims).
* Spatial slot -> axis (the *named-axes layout*): ``chunked`` (contiguous sections in axis order, the first axis
  on the highest frequencies, Qwen2.5-style), ``interleaved`` (round robin x, y, z, x, ... while an axis has slots
  left, Qwen3-style: every axis spans the spectrum) or ``per_axis_spectrum`` (interleaved slots, each axis with its
  own ladder: the SpatialLM fork's choice). ``sections`` sets the slots per axis (default: as equal as possible).
* Ladders, base ``theta = rope_theta_3d`` (default 100, the note's) or the LLM's ``rope_theta`` when None:
  chunked / interleaved: the spatial slot of rank j gets ``theta^(-2j / Ds)`` (Ds = 2 Ks spatial head dims);
  per_axis_spectrum: the i-th slot of axis a gets ``theta^(-2i / Da)`` (Da = 2 x the slots of a).
* Initial parameters: ``frequencies[a, h, k]`` = the ladder value of slot k for every axis a; ``mixing[h, k, a]``
  one-hot on the slot's axis (``mixing_init="axis"``: at initialisation the encoding *is* the named-axes layout, of
  which Qwen2.5 mRoPE [16, 24, 24], PTHW [8, 8, 24, 24] and Qwen3's interleaving are special cases) or all ones
  (``"uniform"``, the note's: every slot sees x + y + z, so ``init_noise`` must break the symmetry).
  ``learned_frequencies`` / ``learned_mixing`` make each an ``nn.Parameter`` or a fixed buffer.
* GQA (``qk_params``): ``separate`` keeps query parameters (A, H, Ks) / (H, Ks, A) and key/value-head parameters
  (A, Hk, Ks) / (Hk, Ks, A); query head h starts equal to kv head h // (H / Hk) (init noise is drawn per kv head),
  so q.k of two point tokens depends only on their coordinate difference at initialisation; training the two sets
  apart makes it depend on absolute coordinates too. ``shared`` keeps only the kv-head set, read by every query
  head of its group: relative always.
* Coordinates, rule ``max_extent`` (per sample, over its point tokens): ``c = (p - min) / E * resolution`` with
  ``E = max over axes of (max - min)``: one scale for all axes (aspect kept), the sample's box starts at 0 and its
  longest side spans ``resolution``. ``none``: ``c = p * resolution`` (caller-normalised coordinates).

The tables are computed once per forward (:meth:`MixedRoPE3D.tables`) and shared by every layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.positions.rotary import MultiAxisRotary, _cat_halves, chunked_slot_axis, mixed_axis_angles
from posevlm.registry import Registry

__all__ = ["MixedRoPE3DConfig", "MixedRoPE3D", "Rope3DLayout", "RotaryTables", "rope3d_layout", "rope3d_presets",
           "rope3d_config", "normalize_point_coords", "interleaved_sections_slot_axis", "mixed_rope3d_reference",
           "SPLITS", "LAYOUTS"]

SPLITS = ("half_spatial_half_temp", "full_spatial", "ratio")
LAYOUTS = ("chunked", "interleaved", "per_axis_spectrum")
_CHOICES = {
    "split": SPLITS,
    "layout": LAYOUTS,
    "mixing_init": ("axis", "uniform"),
    "qk_params": ("separate", "shared"),
    "normalization": ("max_extent", "none"),
}


@dataclass(frozen=True)
class MixedRoPE3DConfig:
    """How point tokens are rotated (module docstring). Saved in ``config.json`` with the checkpoint.

    Fields:
        split / spatial_ratio: which share of each head the coordinates rotate (``spatial_ratio`` for ``ratio``).
        axes: names of the coordinate axes, in the order of the coordinates given (default x, y, z).
        sections: spatial slots per axis (sum = Ks); None: as equal as possible, the first axes get the remainder.
        layout: ``chunked`` / ``interleaved`` / ``per_axis_spectrum``.
        rope_theta_3d: base of the spatial ladders; None: the LLM's ``rope_theta``.
        learned_frequencies / learned_mixing: parameters (True) or fixed buffers (False).
        mixing_init: ``axis`` (one-hot: the named-axes layout) or ``uniform`` (all ones; needs init_noise > 0).
        qk_params: ``separate`` (query and key/value-head parameters) or ``shared`` (kv-head parameters only).
        init_noise: relative Gaussian noise on the initial frequencies (drawn per kv head, seeded by ``seed``).
        normalization / resolution: the coordinate rule and the length the longest side of a sample maps to.
    """

    split: str = "half_spatial_half_temp"
    spatial_ratio: float = 0.5
    axes: tuple[str, ...] = ("x", "y", "z")
    sections: tuple[int, ...] | None = None
    layout: str = "interleaved"
    rope_theta_3d: float | None = 100.0
    learned_frequencies: bool = True
    learned_mixing: bool = True
    mixing_init: str = "axis"
    qk_params: str = "separate"
    init_noise: float = 0.0
    seed: int = 0
    normalization: str = "max_extent"
    resolution: float = 32.0
    schema_version: int = 1

    def __post_init__(self):
        problems = [f"{k}={getattr(self, k)!r} (allowed: {', '.join(v)})" for k, v in _CHOICES.items()
                    if getattr(self, k) not in v]
        axes = tuple(str(a) for a in self.axes) if isinstance(self.axes, (list, tuple)) else ()
        object.__setattr__(self, "axes", axes)
        if not axes or len(set(axes)) != len(axes) or "seq" in axes:
            problems.append(f"axes={list(axes)} (distinct names, at least one; 'seq' is the sequence axis)")
        if self.sections is not None:
            sections = tuple(int(s) for s in self.sections)
            object.__setattr__(self, "sections", sections)
            if len(sections) != len(axes) or min(sections, default=0) < 0 or sum(sections) == 0:
                problems.append(f"sections={list(sections)} (one count >= 0 per axis {list(axes)}, not all 0)")
        if not isinstance(self.spatial_ratio, (int, float)) or not 0 < self.spatial_ratio <= 1:
            problems.append(f"spatial_ratio={self.spatial_ratio!r} (a number in (0, 1])")
        if self.rope_theta_3d is not None and (not isinstance(self.rope_theta_3d, (int, float))
                                               or self.rope_theta_3d <= 1):
            problems.append(f"rope_theta_3d={self.rope_theta_3d!r} (a base > 1, or None for the LLM's rope_theta)")
        for name in ("resolution", "init_noise"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or not math.isfinite(value):
                problems.append(f"{name}={value!r} (a finite number >= 0)")
        if self.mixing_init == "uniform" and not self.init_noise:
            problems.append("mixing_init='uniform' with init_noise=0 rotates every spatial slot by x + y + z (only "
                            "the diagonal direction is seen); set init_noise > 0 or use mixing_init='axis'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed={self.seed!r} (an integer >= 0)")
        for name in ("learned_frequencies", "learned_mixing"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}={getattr(self, name)!r} (true or false)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid MixedRoPE3DConfig: " + "; ".join(problems), field="MixedRoPE3DConfig",
                              value=problems)

    @property
    def learned(self) -> bool:
        return self.learned_frequencies or self.learned_mixing

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["axes"] = list(self.axes)
        out["sections"] = None if self.sections is None else list(self.sections)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MixedRoPE3DConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown MixedRoPE3DConfig keys {unknown}; known: {sorted(known)}",
                              field="MixedRoPE3DConfig", value=unknown)
        data = dict(data)
        if "axes" in data and isinstance(data["axes"], list):
            data["axes"] = tuple(data["axes"])
        return cls(**data)


#: Named MixedRoPE3D configurations; plug-ins add more through the entry-point group ``posevlm.rope3d``.
rope3d_presets: Registry[MixedRoPE3DConfig] = Registry("3D rotary preset", "rope3d")
rope3d_presets.register("mixed_rope3d", MixedRoPE3DConfig(), description=(
    "the note's MixedRoPE3D: half the head on (x, y, z), learned per-axis x per-head frequencies and axial mixing, "
    "theta 100"))
rope3d_presets.register("rope3d", MixedRoPE3DConfig(layout="per_axis_spectrum", learned_frequencies=False,
                                                    learned_mixing=False), description=(
    "fixed 3D RoPE with a 1D part (the SpatialLM fork's 3D_with_1D): half the head, one ladder per axis"))
rope3d_presets.register("rope3d_full", MixedRoPE3DConfig(split="full_spatial", layout="per_axis_spectrum",
                                                         learned_frequencies=False, learned_mixing=False),
                        description="fixed 3D RoPE on the whole head (the fork's 3D_only): no sequence part")


def rope3d_config(value: "str | MixedRoPE3DConfig | Mapping[str, Any]", **overrides: Any) -> MixedRoPE3DConfig:
    """A config from a preset name (``rope3d_presets``), a dict (optionally with ``preset``) or a config, with
    field overrides. Raises ConfigError for unknown names (suggesting the closest) or invalid fields."""
    if isinstance(value, MixedRoPE3DConfig):
        base = value.to_dict()
    elif isinstance(value, str):
        base = rope3d_presets.get(value).to_dict()
    elif isinstance(value, Mapping):
        data = dict(value)
        preset = data.pop("preset", None)
        base = {**(rope3d_presets.get(preset).to_dict() if preset else {}), **data}
    else:
        raise ConfigError(f"rope3d must be a preset name, a dict or a MixedRoPE3DConfig; got {type(value).__name__}",
                          field="rope3d", value=value)
    return MixedRoPE3DConfig.from_dict({**base, **overrides})


def interleaved_sections_slot_axis(sections: Sequence[int]) -> Tensor:
    """Round robin over the axes, skipping an axis once its section is used up: (2, 1, 1) -> [0, 1, 2, 0].

    With sections (24, 20, 20) this is Qwen3-VL's map (``interleaved_qwen3_slot_axis``): 60 slots in turn, then T's
    remaining 4 at the tail."""
    sections = [int(s) for s in sections]
    axis = torch.arange(len(sections)).repeat(max(sections, default=0))
    turn = torch.arange(max(sections, default=0)).repeat_interleave(len(sections))
    return axis[turn < torch.tensor(sections)[axis]]


class Rope3DLayout(NamedTuple):
    """The fixed named-axes layout of a config for one head size.

    axes: ("seq", *spatial axes); slot_axis (K,) long (0 = seq, 1.. = spatial axes); inv_freq (K,) float32 (the
    ladder of each slot: spatial ladders on spatial slots, the LLM's on the others); text_inv_freq (K,) the LLM's
    ladder; num_spatial Ks (the spatial slots are 0 .. Ks-1)."""

    axes: tuple[str, ...]
    slot_axis: Tensor
    inv_freq: Tensor
    text_inv_freq: Tensor
    num_spatial: int


def _ladder(base: float, dims: int) -> Tensor:
    """transformers' ladder ``1 / base^(arange(0, dims, 2) / dims)`` (dims/2 values, float32, same arithmetic)."""
    return 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.int64).to(dtype=torch.float) / dims))


def _num_spatial(config: MixedRoPE3DConfig, head_dim: int) -> int:
    k = head_dim // 2
    if config.split == "full_spatial":
        return k
    ratio = 0.5 if config.split == "half_spatial_half_temp" else float(config.spatial_ratio)
    dims = ratio * head_dim
    if abs(dims - 2 * round(dims / 2)) > 1e-9 or round(dims / 2) < 1:
        below, above = 2 * math.floor(dims / 2), 2 * math.ceil(dims / 2)
        options = [f"{d / head_dim:g} ({d} dims)" for d in (below, above) if 0 < d <= head_dim]
        raise ConfigError(f"split={config.split!r} with spatial_ratio={ratio:g} gives {dims:g} spatial head dims of "
                          f"{head_dim}; the ratio must give a whole number of rotary pairs (an even number of head "
                          f"dims), e.g. {' or '.join(options)}", field="spatial_ratio", value=ratio)
    return int(round(dims / 2))


def rope3d_layout(config: MixedRoPE3DConfig, head_dim: int, rope_theta: float,
                  text_inv_freq: Tensor | None = None) -> Rope3DLayout:
    """The slot -> axis map and ladders of ``config`` for heads of ``head_dim`` (module docstring).

    ``text_inv_freq`` (D/2,): the LLM's own inverse frequencies (e.g. its rotary module's ``inv_freq``, which a
    static rope scaling may have changed); None: the default ladder of ``rope_theta``.

    Raises:
        ConfigError: odd head_dim, a split that is not a whole number of rotary pairs, sections that do not sum to
            the spatial slots, fewer spatial slots than axes.
    """
    if head_dim < 2 or head_dim % 2:
        raise ConfigError(f"head_dim={head_dim} must be even (rotary pairs)", field="head_dim", value=head_dim)
    k = head_dim // 2
    ks = _num_spatial(config, head_dim)
    n_axes = len(config.axes)
    if config.sections is None:
        if ks < n_axes:
            raise ConfigError(f"{ks} spatial slots cannot give each of the {n_axes} axes {list(config.axes)} one; "
                              "use a larger split or pass sections", field="sections", value=None)
        sections = [ks // n_axes + (1 if a < ks % n_axes else 0) for a in range(n_axes)]
    else:
        sections = list(config.sections)
        if sum(sections) != ks:
            raise ConfigError(f"sections {sections} sum to {sum(sections)} but split={config.split!r} gives {ks} "
                              f"spatial slots (head_dim {head_dim})", field="sections", value=sections)
    spatial_axis = (chunked_slot_axis(sections) if config.layout == "chunked"
                    else interleaved_sections_slot_axis(sections))
    if text_inv_freq is None:
        text_inv_freq = _ladder(float(rope_theta), head_dim)
    text_inv_freq = torch.as_tensor(text_inv_freq, dtype=torch.float32).reshape(-1)
    if text_inv_freq.numel() != k:
        raise ShapeError(f"text_inv_freq must have head_dim / 2 = {k} entries; got {text_inv_freq.numel()}",
                         name="text_inv_freq", shape=tuple(text_inv_freq.shape))
    base = float(config.rope_theta_3d if config.rope_theta_3d is not None else rope_theta)
    spatial_freq = torch.empty(ks, dtype=torch.float32)
    if config.layout == "per_axis_spectrum":
        for a, n in enumerate(sections):  # a loop over the (3) axes, not over tokens
            if n:
                spatial_freq[spatial_axis == a] = _ladder(base, 2 * n)
    else:
        spatial_freq = _ladder(base, 2 * ks)
    slot_axis = torch.cat([spatial_axis + 1, torch.zeros(k - ks, dtype=torch.long)])
    inv_freq = torch.cat([spatial_freq, text_inv_freq[ks:]])
    return Rope3DLayout(("seq", *config.axes), slot_axis, inv_freq, text_inv_freq, ks)


def normalize_point_coords(coords: Tensor, point_mask: Tensor, *, rule: str = "max_extent",
                           resolution: float = 1.0) -> Tensor:
    """Rotary coordinates of the point tokens, per sample (row).

    Args:
        coords: (B, L, A) coordinates (only the point tokens' rows are read).
        point_mask: (B, L) bool, True at point tokens.
        rule: ``max_extent``: ``(p - min) / max over axes of (max - min) * resolution`` over the row's point tokens
            (aspect kept; a row whose points coincide has extent 1); ``none``: ``p * resolution``.
    Returns:
        (B, L, A) float32, 0 at non-point tokens.
    """
    if coords.ndim != 3 or point_mask.shape != coords.shape[:2]:
        raise ShapeError(f"coords must be (B, L, A) and point_mask (B, L); got {tuple(coords.shape)} and "
                         f"{tuple(point_mask.shape)}", name="coords", shape=tuple(coords.shape))
    c = coords.to(torch.float32)
    m = point_mask.to(torch.bool)[..., None]
    if rule == "max_extent":
        big = torch.finfo(torch.float32).max
        lo = torch.where(m, c, big).amin(1, keepdim=True)  # (B, 1, A)
        hi = torch.where(m, c, -big).amax(1, keepdim=True)
        extent = (hi - lo).amax(-1, keepdim=True)  # (B, 1, 1): one scale for every axis
        extent = torch.where(extent > 0, extent, torch.ones_like(extent))
        c = (torch.where(m, c, lo) - lo) / extent
    elif rule != "none":
        raise ConfigError(f"normalization rule {rule!r} (allowed: max_extent, none)", field="normalization",
                          value=rule)
    return (c * float(resolution)).masked_fill(~m, 0.0)


class RotaryTables(NamedTuple):
    """Per-head cos / sin of one forward, shared by every layer: query (B, H, L, D), key (B, Hk, L, D)."""

    cos_q: Tensor
    sin_q: Tensor
    cos_k: Tensor
    sin_k: Tensor


class MixedRoPE3D(nn.Module):
    """The MixedRoPE3D parameters of one decoder and the per-forward tables (module docstring).

    Args:
        config: a :class:`MixedRoPE3DConfig`.
        head_dim, num_heads, num_kv_heads: the decoder's attention shape (num_heads a multiple of num_kv_heads).
        rope_theta: the LLM's rotary base; attention_scaling: its cos/sin factor (1.0 for default RoPE);
        text_inv_freq: the LLM's inverse frequencies (None: the default ladder of rope_theta).
    Parameters / buffers (state-dict keys): ``frequencies_k`` (A, Hk, Ks), ``mixing_k`` (Hk, Ks, A), and with
    ``qk_params="separate"`` ``frequencies_q`` (A, H, Ks), ``mixing_q`` (H, Ks, A). Learned ones are
    ``nn.Parameter``; fixed ones are buffers rebuilt from the config (not saved).
    """

    def __init__(self, config: MixedRoPE3DConfig, *, head_dim: int, num_heads: int, num_kv_heads: int,
                 rope_theta: float, attention_scaling: float = 1.0, text_inv_freq: Tensor | None = None):
        super().__init__()
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ConfigError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads} (GQA)",
                              field="num_kv_heads", value=num_kv_heads)
        self.config = config
        self.layout = rope3d_layout(config, head_dim, rope_theta, text_inv_freq)
        self.head_dim, self.num_heads, self.num_kv_heads = head_dim, num_heads, num_kv_heads
        self.groups = num_heads // num_kv_heads
        self.attention_scaling = float(attention_scaling)
        k = head_dim // 2
        #: the LLM's 1D RoPE (text tokens, and the sequence slots of point tokens)
        self.text_rotary = MultiAxisRotary(self.layout.text_inv_freq, torch.zeros(k, dtype=torch.long),
                                           attention_scaling)
        freq, mix = self._initial(num_kv_heads)
        self._register("frequencies_k", freq, config.learned_frequencies)
        self._register("mixing_k", mix, config.learned_mixing)
        if config.qk_params == "separate":
            self._register("frequencies_q", freq.repeat_interleave(self.groups, 1), config.learned_frequencies)
            self._register("mixing_q", mix.repeat_interleave(self.groups, 0), config.learned_mixing)

    def _initial(self, heads: int) -> tuple[Tensor, Tensor]:
        ks, n_axes = self.layout.num_spatial, len(self.config.axes)
        ladder = self.layout.inv_freq[:ks]
        freq = ladder.expand(n_axes, heads, ks).clone()
        if self.config.init_noise:
            g = torch.Generator().manual_seed(int(self.config.seed))
            freq = freq * (1.0 + self.config.init_noise * torch.randn(freq.shape, generator=g))
        if self.config.mixing_init == "axis":
            mix = nn.functional.one_hot(self.layout.slot_axis[:ks] - 1, n_axes).to(torch.float32)
            mix = mix.expand(heads, ks, n_axes).clone()
        else:
            mix = torch.ones(heads, ks, n_axes)
        return freq, mix

    def _register(self, name: str, value: Tensor, learned: bool) -> None:
        if learned:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value, persistent=False)

    def layout_rotary(self) -> MultiAxisRotary:
        """The fixed named-axes layout as a :class:`MultiAxisRotary` over rows (seq, *axes): what the point tokens
        get with the initial parameters and ``mixing_init="axis"``."""
        return MultiAxisRotary(self.layout.inv_freq, self.layout.slot_axis, self.attention_scaling,
                               num_axes=len(self.layout.axes))

    def frequency_matrices(self) -> tuple[Tensor, Tensor]:
        """W = mixing * frequencies for queries (H, Ks, A) and key/value heads (Hk, Ks, A)."""
        w_k = self.mixing_k * self.frequencies_k.permute(1, 2, 0)
        if self.config.qk_params == "shared":
            return w_k.repeat_interleave(self.groups, 0), w_k
        return self.mixing_q * self.frequencies_q.permute(1, 2, 0), w_k

    def normalize(self, coords: Tensor, point_mask: Tensor) -> Tensor:
        """:func:`normalize_point_coords` with this config's rule and resolution."""
        return normalize_point_coords(coords, point_mask, rule=self.config.normalization,
                                      resolution=self.config.resolution)

    def tables(self, seq_positions: Tensor, coords: Tensor, point_mask: Tensor,
               dtype: torch.dtype = torch.float32) -> RotaryTables:
        """cos / sin for every token of one forward, per head.

        Args:
            seq_positions: (B, L) sequence index of every token (the text position).
            coords: (B, L, A) raw coordinates (read at point tokens only; normalised here by the config's rule).
            point_mask: (B, L) bool, True at point tokens.
        Returns:
            :class:`RotaryTables` in ``dtype``; text tokens' rows equal the LLM's 1D RoPE in every head.
        """
        b, length = seq_positions.shape
        if coords.shape != (b, length, len(self.config.axes)) or point_mask.shape != (b, length):
            raise ShapeError(f"coords must be (B, L, {len(self.config.axes)}) and point_mask (B, L) = ({b}, {length});"
                             f" got {tuple(coords.shape)} and {tuple(point_mask.shape)}", name="coords",
                             shape=tuple(coords.shape))
        device_type = seq_positions.device.type if seq_positions.device.type != "mps" else "cpu"
        ks = self.layout.num_spatial
        with torch.autocast(device_type=device_type, enabled=False):
            text = self.text_rotary.angles(seq_positions)  # (B, L, K): cos / sin once, shared by every head
            text_trig = (text.cos()[:, None], text.sin()[:, None])  # (B, 1, L, K)
            rows = self.normalize(coords, point_mask).permute(2, 0, 1)  # (A, B, L)
            points = point_mask[:, None, :, None]
            out = []
            for w in self.frequency_matrices():
                spatial = mixed_axis_angles(rows, w)  # (B, H, L, Ks): the only per-head part
                for fn, shared in zip((torch.cos, torch.sin), text_trig):
                    half = torch.cat([torch.where(points, fn(spatial), shared[..., :ks]),
                                      shared[..., ks:].expand(-1, w.shape[0], -1, -1)], -1)
                    out.append(_cat_halves(half, self.attention_scaling, dtype))
        return RotaryTables(*out)

    def extra_repr(self) -> str:
        return (f"split={self.config.split}, layout={self.config.layout}, axes={self.config.axes}, "
                f"spatial_slots={self.layout.num_spatial}/{self.head_dim // 2}, heads={self.num_heads}/"
                f"{self.num_kv_heads}, learned=({self.config.learned_frequencies}, {self.config.learned_mixing})")


def mixed_rope3d_reference(x: Tensor, seq_positions: Tensor, coords: Tensor, point_mask: Tensor, w: Tensor,
                           text_inv_freq: Tensor, attention_scaling: float = 1.0) -> Tensor:
    """Slow, obviously-correct MixedRoPE3D of one tensor (float64; tests compare the fast path with it).

    x: (B, H, L, D); seq_positions (B, L); coords (B, L, A) already normalised; point_mask (B, L); w (H, Ks, A);
    text_inv_freq (D/2,). Every pair (k, k + D/2) of head h at token l is turned by an explicit 2x2 rotation of
    angle ``sum_a w[h, k, a] * coords[l, a]`` (point token, k < Ks) or ``seq[l] * text_inv_freq[k]``."""
    x = x.to(torch.float64)
    b, h, length, d = x.shape
    k_total, ks = d // 2, w.shape[1]
    out = torch.empty_like(x)
    for slot in range(k_total):
        angle = seq_positions.to(torch.float64)[:, None, :] * float(text_inv_freq[slot])  # (B, 1, L)
        angle = angle.expand(b, h, length).clone()
        if slot < ks:
            spatial = torch.zeros(b, h, length, dtype=torch.float64)
            for a in range(w.shape[-1]):
                spatial += w[None, :, slot, a, None].to(torch.float64) * coords[:, None, :, a].to(torch.float64)
            angle = torch.where(point_mask[:, None, :].bool(), spatial, angle)
        c, s = torch.cos(angle) * attention_scaling, torch.sin(angle) * attention_scaling
        x1, x2 = x[..., slot], x[..., slot + k_total]
        out[..., slot] = c * x1 - s * x2
        out[..., slot + k_total] = s * x1 + c * x2
    return out
