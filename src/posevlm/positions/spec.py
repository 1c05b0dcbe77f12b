"""PositionSpec: the frozen, serialisable recipe of a position plan (layout, temporal, pose, next segment)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from posevlm.errors import ConfigError

__all__ = ["PositionSpec"]

_CHOICES = {
    "layout": ("qwen2_5", "qwen3"),
    "temporal": ("hf_time", "index", "zero", "frame_ids"),
    "frame_merge": ("mean", "first", "last", "median"),
    "frame_range": ("frames", "fixed"),
    "frame_rounding": ("floor", "round", "none"),
    "pose": ("none", "scalar"),
    "pose_reference": ("first", "medoid"),
    "pose_merge": ("mean", "first", "last", "median"),
    "pose_range": ("frames", "fixed"),
    "pose_offset": ("anchored", "raw"),
    "pose_axis": ("extra", "replace_t"),
    "next_segment": ("max_plus_one", "spatial_extent"),
}


@dataclass(frozen=True)
class PositionSpec:
    """How position rows are built. Defaults reproduce transformers 5.23 Qwen2.5-VL ``get_rope_index``.

    Fields:
        layout: ``qwen2_5`` (one segment per media item, T spaced by the temporal policy) or ``qwen3``
            (every video tubelet is its own segment, T row = segment start; requires temporal ``hf_time``).
        temporal: T offset of tubelet tau inside a video: ``hf_time`` floor(tau * tokens_per_second *
            second_per_grid_t) (stock); ``index`` tau; ``zero`` 0 ("without T"); ``frame_ids`` source frame
            ids merged per tubelet (``frame_merge``), shifted to start at 0 and scaled so the range is S - 1
            (``frame_range="frames"``) or ``frame_range_fixed``, rounded by ``frame_rounding``.
        tokens_per_second: the ``hf_time`` multiplier, recorded explicitly (released Qwen2.5-VL configs: 2).
        pose: ``none`` or ``scalar`` (Lie scalar pose index P, positions spec section 2.3).
        pose_lam, pose_reference: lambda and reference frame of the pose index.
        pose_merge: per-tubelet reduction of the two frames' P.
        pose_hard_reset: min-max renormalise the merged P to [0, 1] (skipped when the range is 0).
        pose_range / pose_range_fixed: P scaled to [0, S - 1] (``frames``) or [0, pose_range_fixed].
        pose_offset: ``anchored`` adds the video's start position to P, ``raw`` does not (raw P never moves
            the next segment start).
        pose_axis: ``extra`` adds a P row before T (qwen2_5: P,T,H,W) ; ``replace_t`` writes P in place of T
            (qwen2_5: P,H,W; qwen3: P,H,W with P on T's slots). In qwen3, anchored P uses the start of the
            video's first tubelet as anchor (all tubelets of a video share it).
        next_segment: ``max_plus_one`` (next start = max of all rows of the block + 1) or ``spatial_extent``
            (transformers 5.x: start + max(h', w')).
    """

    layout: str = "qwen2_5"
    temporal: str = "hf_time"
    tokens_per_second: float = 2.0
    frame_merge: str = "mean"
    frame_range: str = "frames"
    frame_range_fixed: float = 16.0
    frame_rounding: str = "floor"
    pose: str = "none"
    pose_lam: float = 1.0
    pose_reference: str = "first"
    pose_merge: str = "mean"
    pose_hard_reset: bool = True
    pose_range: str = "frames"
    pose_range_fixed: float = 16.0
    pose_offset: str = "anchored"
    pose_axis: str = "extra"
    next_segment: str = "spatial_extent"
    schema_version: int = 1

    def __post_init__(self):
        problems = []
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                problems.append(f"{name}={value!r} (allowed: {', '.join(allowed)})")
        for name in ("tokens_per_second", "frame_range_fixed", "pose_range_fixed", "pose_lam"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                problems.append(f"{name}={value!r} (expected a number >= 0)")
        if self.layout == "qwen3" and self.temporal != "hf_time":
            problems.append(f"temporal={self.temporal!r} with layout='qwen3' (qwen3 positions each tubelet "
                            "as its own segment; use temporal='hf_time')")
        if self.layout == "qwen3" and self.pose == "scalar" and self.pose_axis != "replace_t":
            problems.append("pose_axis='extra' with layout='qwen3' (Qwen3 keeps 3 rows; "
                            "use pose_axis='replace_t')")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid PositionSpec: " + "; ".join(problems), field="PositionSpec",
                              value=problems)

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the position rows, e.g. ("T","H","W"), ("P","T","H","W"), ("P","H","W")."""
        if self.pose == "none":
            return ("T", "H", "W")
        return ("P", "T", "H", "W") if self.pose_axis == "extra" else ("P", "H", "W")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PositionSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown PositionSpec keys {unknown}; known: {sorted(known)}",
                              field="PositionSpec", value=unknown)
        return cls(**data)
