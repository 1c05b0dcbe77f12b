"""VLM2Config: the VLM² stage (3D coordinate injection, viewpoint alignment, cross-attention fusion, dual
memory) as one frozen recipe, saved with the checkpoint.

Every module has a switch; an ablation is a configuration (``VLM2Config(episodic_memory=False)``), and
:meth:`VLM2Config.off` switches everything off, which leaves the tokens of the base composition untouched.
The defaults are the VLM² paper's as far as they could be read (models spec §5.2, unverified details marked
in ``design.md``): sigmoid gate, camera-token view source, L_w = 8, L_e = 32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from posevlm.errors import ConfigError

__all__ = ["VLM2Config", "GATES", "VIEW_SOURCES", "SIMILARITIES", "COORDINATE_SCALES", "POINT_SOURCES",
           "VIEW_DIMS_POSE"]

GATES = ("sigmoid", "softmax")
VIEW_SOURCES = ("camera_token", "pose_encoding")
SIMILARITIES = ("flatten", "mean_token")
COORDINATE_SCALES = ("first_frame", "none")
POINT_SOURCES = ("vggt", "given")
#: width of one frame's view input for ``view_source="pose_encoding"`` (VGGT's ``absT_quaR_FoV``)
VIEW_DIMS_POSE = 9
_SWITCHES = ("coordinate_injection", "viewpoint_alignment", "cross_attention_fusion", "working_memory",
             "episodic_memory")


@dataclass(frozen=True)
class VLM2Config:
    """The VLM² stage of a model, one field per choice (``to_dict`` / ``from_dict`` round-trip through JSON).

    Widths:
        llm_dim: D, the width of the visual tokens the stage reads and writes (the LLM hidden size).
        spatial_dim: DD, the spatial encoder's token width (VGGT: 2 x embed_dim); merged geometry rows are 8 * DD
            wide and the camera token DD wide.
    Coordinate injection (``coordinate_injection``): ``F + alpha * phi(C)``, one gate per token.
        gate: ``sigmoid`` (alpha = sigmoid(Linear([RMSNorm(F); phi(C)])), each token on its own) or ``softmax``
            (the same logits normalised over the valid tokens of the step: alpha sums to 1 over the grid).
        num_frequencies, min_period, max_period: the sinusoidal encoding of each coordinate axis (geometric
            periods from min to max, in units of the coordinate scale).
        coordinate_scale: ``first_frame`` (coordinates divided by the mean distance of the first step's valid
            points from the first camera, so metric depth and VGGT's normalised points look alike) or ``none``.
        injection_hidden: hidden width of phi (default ``llm_dim``).
        point_source: ``vggt`` (the spatial encoder's point head) or ``given`` (``point_maps`` passed with the
            inputs, e.g. from depth + cameras, :mod:`posevlm.point_io`); given maps override VGGT's either way.
    Viewpoint alignment (``viewpoint_alignment``, needs ``cross_attention_fusion``): geometry tokens fused with
        projected view tokens, plus one pooled view token appended to the keys / values.
        view_source: ``camera_token`` (the spatial encoder's per-frame camera token, DD wide) or
            ``pose_encoding`` (its 9-d camera estimate ``absT_quaR_FoV``, or one passed with the inputs).
    Cross-attention fusion (``cross_attention_fusion``): the injected tokens query the (aligned) geometry tokens.
        num_heads: attention heads of the fusion and of the memory retrieval (must divide ``llm_dim``).
        fusion_mlp_ratio: FFN width after the attention as a multiple of ``llm_dim``; 0: no FFN.
    Dual memory (``working_memory``, ``episodic_memory``; Algorithm 1, one step per tubelet):
        working_size: L_w, FIFO capacity. episodic_size: L_e, capacity with similarity replacement.
        similarity: cosine similarity of ``flatten`` (the whole (n, D) entry as one vector) or ``mean_token``
            (the mean token of the entry).
        detach_memory: store entries without gradient (no backpropagation through time across steps).
    zero_init: the residual outputs (phi's last layer, the fusion's output projection and FFN output, the memory
        output projection) start at zero, so a fresh stage returns its input tokens exactly; False: random.
    """

    llm_dim: int = 2048
    spatial_dim: int = 2048
    coordinate_injection: bool = True
    gate: str = "sigmoid"
    num_frequencies: int = 16
    min_period: float = 0.01
    max_period: float = 10.0
    coordinate_scale: str = "first_frame"
    injection_hidden: int | None = None
    point_source: str = "vggt"
    viewpoint_alignment: bool = True
    view_source: str = "camera_token"
    cross_attention_fusion: bool = True
    num_heads: int = 16
    fusion_mlp_ratio: int = 0
    working_memory: bool = True
    episodic_memory: bool = True
    working_size: int = 8
    episodic_size: int = 32
    similarity: str = "flatten"
    detach_memory: bool = False
    zero_init: bool = True
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = []
        for name in ("llm_dim", "spatial_dim", "num_frequencies", "num_heads", "working_size", "episodic_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (an int >= 1)")
        for name in ("fusion_mlp_ratio",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name}={value!r} (an int >= 0)")
        if self.injection_hidden is not None and (isinstance(self.injection_hidden, bool)
                                                  or not isinstance(self.injection_hidden, int)
                                                  or self.injection_hidden < 1):
            problems.append(f"injection_hidden={self.injection_hidden!r} (an int >= 1 or None)")
        for name in _SWITCHES + ("detach_memory", "zero_init"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}={getattr(self, name)!r} (true or false)")
        for name, allowed in (("gate", GATES), ("view_source", VIEW_SOURCES), ("similarity", SIMILARITIES),
                              ("coordinate_scale", COORDINATE_SCALES), ("point_source", POINT_SOURCES)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r} (allowed: {', '.join(allowed)})")
        periods = (self.min_period, self.max_period)
        if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0 for p in periods) \
                or self.min_period > self.max_period:
            problems.append(f"min_period={self.min_period!r}, max_period={self.max_period!r} (0 < min <= max)")
        if isinstance(self.llm_dim, int) and isinstance(self.num_heads, int) and self.num_heads >= 1 \
                and self.llm_dim % self.num_heads:
            problems.append(f"num_heads={self.num_heads} does not divide llm_dim={self.llm_dim}")
        if self.viewpoint_alignment is True and self.cross_attention_fusion is False:
            problems.append("viewpoint_alignment=True needs cross_attention_fusion=True (it aligns the geometry "
                            "tokens the fusion attends to); switch both off, or fusion on")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid VLM2Config: " + "; ".join(problems), field="vlm2", value=problems)

    # -- presets ------------------------------------------------------------------------------------------------
    @classmethod
    def paper(cls, **overrides: Any) -> "VLM2Config":
        """Every module on, the paper's memory sizes (L_w = 8, L_e = 32): the defaults."""
        return cls(**overrides)

    @classmethod
    def off(cls, **overrides: Any) -> "VLM2Config":
        """Every module off: the stage returns its input tokens (the base composition), builds no parameter."""
        return cls(**{**{name: False for name in _SWITCHES}, **overrides})

    # -- derived --------------------------------------------------------------------------------------------
    @property
    def memory(self) -> bool:
        """Some memory is on (working, episodic or both)."""
        return self.working_memory or self.episodic_memory

    @property
    def active(self) -> bool:
        """Some module is on (False: the stage is the identity)."""
        return any(getattr(self, name) for name in _SWITCHES)

    @property
    def merged_dim(self) -> int:
        """8 * DD: one merged geometry row (2 frames x 2 x 2 patches)."""
        return 8 * self.spatial_dim

    @property
    def view_dim(self) -> int:
        """Width of one frame's view input: DD (camera token) or 9 (pose encoding)."""
        return self.spatial_dim if self.view_source == "camera_token" else VIEW_DIMS_POSE

    @property
    def needs_points(self) -> bool:
        return self.coordinate_injection

    @property
    def needs_geometry(self) -> bool:
        return self.cross_attention_fusion

    @property
    def needs_view(self) -> bool:
        return self.viewpoint_alignment

    @property
    def switches(self) -> dict[str, bool]:
        """{module switch: on}."""
        return {name: getattr(self, name) for name in _SWITCHES}

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VLM2Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown VLM2Config keys {unknown}; known: {sorted(known)}", field="vlm2",
                              value=unknown)
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "VLM2Config":
        return replace(self, **changes)
