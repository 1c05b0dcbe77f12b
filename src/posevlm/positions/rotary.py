"""MultiAxisRotary: RoPE cos/sin for several position axes, driven by a frequency-slot -> axis map.

Notation: A axes, B batch, L tokens, D head dim; D/2 frequency slots, slot k has ``inv_freq[k]``.
Slot k rotates by ``position[slot_axis[k]] * inv_freq[k]``; both rotary halves (dims k and k + D/2, the
rotate-half convention) carry the same angle, so every slot is a proper rotation whatever the map.

The slot map is the one-hot case of a general per-head frequency matrix W (H, D/2, A): slot k of head h rotates by
``sum_a W[h, k, a] * position[a]`` (:func:`mixed_axis_angles`; MixedRoPE3D's learned axial mixing, RoPE-Mixed).
``MultiAxisRotary.axis_frequency_matrix()`` is W for the slot map, the same for every head. Both forms share
:func:`rotary_tables` (angles -> cos/sin) and :func:`apply_rotary` (rotate-half), so there is one rotary here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError

__all__ = ["MultiAxisRotary", "chunked_slot_axis", "interleaved_qwen3_slot_axis", "mixed_axis_angles", "rotary_tables",
           "apply_rotary", "rotate_half"]


def chunked_slot_axis(sections: Sequence[int]) -> Tensor:
    """Contiguous sections: slots [0, s0) -> axis 0, [s0, s0+s1) -> axis 1, ... (Qwen2.5 [16, 24, 24];
    PTHW [8, 8, 24, 24] gives P the 8 highest-frequency slots taken from T's, H/W untouched)."""
    sections = [int(s) for s in sections]
    if any(s < 0 for s in sections):
        raise ConfigError(f"sections must be >= 0; got {sections}", field="sections", value=sections)
    return torch.repeat_interleave(torch.arange(len(sections)), torch.tensor(sections))


def interleaved_qwen3_slot_axis(sections: Sequence[int] = (24, 20, 20)) -> Tensor:
    """Qwen3-VL interleaving: slot k -> H if k % 3 == 1 and k < 3*sections[1], W if k % 3 == 2 and
    k < 3*sections[2], else T (T keeps the tail). Axis order (T, H, W); P written on the T row inherits T's.
    Slices exactly like transformers' ``apply_interleaved_mrope``, so per-axis counts equal the sections
    only when 3*max(h, w) <= sum(sections) (true for [24, 20, 20])."""
    t, h, w = (int(s) for s in sections)
    n = t + h + w
    slot_axis = torch.zeros(n, dtype=torch.long)
    slot_axis[1: 3 * h: 3] = 1
    slot_axis[2: 3 * w: 3] = 2
    return slot_axis


def mixed_axis_angles(positions: Tensor, axis_freq: Tensor) -> Tensor:
    """Per-head rotary angles from a frequency matrix: ``angle[b, h, l, k] = sum_a axis_freq[h, k, a] * pos[a, b, l]``.

    Args:
        positions: (A, B, L) float positions, one row per axis.
        axis_freq: (H, K, A) inverse frequency of slot k of head h along axis a (K = D/2, or a subset of slots).
    Returns:
        (B, H, L, K) float32 angles (computed in float32 whatever the inputs).
    Raises:
        ShapeError: A differs between the two.
    """
    if positions.ndim != 3 or axis_freq.ndim != 3 or positions.shape[0] != axis_freq.shape[-1]:
        raise ShapeError(f"positions (A, B, L) and axis_freq (H, K, A) must share A; got {tuple(positions.shape)} "
                         f"and {tuple(axis_freq.shape)}", name="axis_freq", shape=tuple(axis_freq.shape))
    pos = positions.to(torch.float32).permute(1, 2, 0)  # (B, L, A)
    w = axis_freq.to(device=pos.device, dtype=torch.float32)
    # (B, 1, L, A) @ (1, H, A, K) -> (B, H, L, K): one batched matmul
    return torch.matmul(pos[:, None], w.transpose(1, 2)[None])


def rotary_tables(angles: Tensor, attention_scaling: float = 1.0,
                  dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """cos, sin of (..., D/2) angles in the rotate-half layout: (..., D), both halves equal, times the scaling.

    The transcendental functions run on the D/2 angles once (the same values as on transformers'
    ``cat([freqs, freqs])``, elementwise), then each half is repeated."""
    return _cat_halves(angles.cos(), attention_scaling, dtype), _cat_halves(angles.sin(), attention_scaling, dtype)


def _cat_halves(half: Tensor, attention_scaling: float, dtype: torch.dtype) -> Tensor:
    if attention_scaling != 1.0:
        half = half * attention_scaling
    return torch.cat([half, half], dim=-1).to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the last dim's halves (the Qwen / Llama pairing of dims k and k + D/2)."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x * cos + rotate_half(x) * sin`` (transformers' ``apply_rotary_pos_emb`` for one tensor).

    x: (B, H, L, D); cos, sin: (B, H, L, D) per-head tables or (B, L, D) shared by every head."""
    if cos.ndim == x.ndim - 1:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


class MultiAxisRotary(nn.Module):
    """cos/sin tables for multi-axis positions.

    Args:
        inv_freq: (D/2,) inverse frequencies.
        slot_axis: (D/2,) int, axis (row index of the positions) of each frequency slot; -1 leaves the slot
            unrotated (cos 1, sin 0), e.g. slots handed to a camera block (``posevlm.attention``).
        attention_scaling: multiplies cos and sin (transformers' rope scaling factor; 1.0 for default RoPE).
        num_axes: A, the number of position rows ``forward`` expects; must exceed every axis of
            ``slot_axis`` (an axis may own no slot, e.g. P,T,H,W with W's slots handed to a camera block).
            None: ``max(slot_axis) + 1``.
    """

    def __init__(self, inv_freq: Tensor, slot_axis: Tensor | Sequence[int], attention_scaling: float = 1.0,
                 num_axes: int | None = None):
        super().__init__()
        inv_freq = torch.as_tensor(inv_freq, dtype=torch.float32).reshape(-1)
        slot_axis = torch.as_tensor(slot_axis, dtype=torch.long).reshape(-1)
        if slot_axis.shape != inv_freq.shape:
            raise ShapeError(f"slot_axis must have one entry per frequency slot ({inv_freq.numel()}); got "
                             f"{slot_axis.numel()}", name="slot_axis", shape=tuple(slot_axis.shape))
        if slot_axis.numel() and slot_axis.min() < -1:
            raise ConfigError("slot_axis entries must be >= 0 (an axis) or -1 (unrotated)", field="slot_axis",
                              value=slot_axis.tolist())
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("slot_axis", slot_axis, persistent=False)
        used = int(slot_axis.max()) + 1 if slot_axis.numel() else 0
        if num_axes is not None:
            if isinstance(num_axes, bool) or int(num_axes) != num_axes or num_axes < 1 or used > num_axes:
                raise ConfigError(f"num_axes={num_axes!r} but slot_axis uses axis {used - 1}; every slot axis "
                                  f"must be < num_axes (the number of position rows)", field="num_axes",
                                  value=num_axes)
            used = int(num_axes)
        self.num_axes = used
        self.unrotated = bool((slot_axis < 0).any())
        self.attention_scaling = float(attention_scaling)

    @classmethod
    def chunked(
        cls, inv_freq: Tensor, sections: Sequence[int], attention_scaling: float = 1.0,
        num_axes: int | None = None,
    ) -> "MultiAxisRotary":
        cls._check_total(inv_freq, sections)
        return cls(inv_freq, chunked_slot_axis(sections), attention_scaling, num_axes=num_axes)

    @classmethod
    def interleaved_qwen3(cls, inv_freq: Tensor, sections: Sequence[int] = (24, 20, 20),
                          attention_scaling: float = 1.0, num_axes: int | None = None) -> "MultiAxisRotary":
        cls._check_total(inv_freq, sections)
        return cls(inv_freq, interleaved_qwen3_slot_axis(sections), attention_scaling, num_axes=num_axes)

    @staticmethod
    def _check_total(inv_freq: Tensor, sections: Sequence[int]) -> None:
        if sum(int(s) for s in sections) != torch.as_tensor(inv_freq).numel():
            raise ConfigError(f"sections {list(sections)} sum to {sum(sections)} but there are "
                              f"{torch.as_tensor(inv_freq).numel()} frequency slots (head_dim / 2)",
                              field="sections", value=list(sections))

    def axis_counts(self) -> list[int]:
        """Number of slots per axis (unrotated slots are not counted)."""
        return torch.bincount(self.slot_axis[self.slot_axis >= 0], minlength=self.num_axes).tolist()

    def axis_frequency_matrix(self) -> Tensor:
        """The slot map as a frequency matrix (D/2, A): ``inv_freq[k]`` in column ``slot_axis[k]``, 0 elsewhere
        (unrotated slots: a zero row). ``mixed_axis_angles(pos, m[None])`` equals :meth:`angles` of every head."""
        m = torch.zeros(self.slot_axis.numel(), self.num_axes, dtype=torch.float32, device=self.inv_freq.device)
        rotated = self.slot_axis >= 0
        m[rotated.nonzero().flatten(), self.slot_axis[rotated]] = self.inv_freq[rotated]
        return m

    def forward(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """positions: (A, B, L) with A == num_axes, or (B, L) (same position on every axis).
        Returns cos, sin: (B, L, D) in ``dtype``, computed in float32 with autocast off."""
        device_type = positions.device.type if positions.device.type != "mps" else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return rotary_tables(self.angles(positions), self.attention_scaling, dtype)

    def angles(self, positions: Tensor) -> Tensor:
        """positions: (A, B, L) or (B, L) as in :meth:`forward`. Returns (B, L, D/2) float32 angles."""
        if positions.ndim == 2:
            positions = positions[None]
        elif positions.ndim != 3:
            raise ShapeError(f"positions must be (A, B, L) or (B, L); got {tuple(positions.shape)}",
                             name="positions", shape=tuple(positions.shape))
        if positions.shape[0] not in (1, self.num_axes):
            raise ShapeError(f"positions has {positions.shape[0]} rows but this rotary expects "
                             f"{self.num_axes} axes (num_axes; or 1 row shared by all)",
                             name="positions", shape=tuple(positions.shape))
        pos = positions.to(torch.float32).permute(1, 2, 0)  # (B, L, A)
        if pos.shape[-1] == 1:
            per_slot = pos.expand(-1, -1, self.slot_axis.numel())
        else:
            per_slot = pos[..., self.slot_axis.clamp(min=0)]
        inv_freq = self.inv_freq.to(pos.device)
        if self.unrotated:
            inv_freq = inv_freq.masked_fill(self.slot_axis < 0, 0.0)
        return per_slot * inv_freq
