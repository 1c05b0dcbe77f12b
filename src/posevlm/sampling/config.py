"""``SamplingConfig``: everything that determines a sampling output, and its slug."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.sampling.pairing import PairingConfig, anchors_needed
from posevlm.sampling.pool import PoolConfig

__all__ = ["SamplingConfig", "STRATEGIES", "ALLOWED_PARAMS", "DEFAULT_PARAMS", "GEOMETRY_SOURCES", "UNIFORM_FLAVOURS"]

#: strategy -> what it needs from the geometry source
STRATEGIES: dict[str, str] = {
    "uniform": "nothing (frame count only)",
    "voxel_coverage": "point maps + confidence, or depth + cameras",
    "pose_fps": "cameras",
    "farness2d": "cameras",
}
GEOMETRY_SOURCES = ("gt", "predictions", "vggt", "da3")
#: every parameter of each strategy with its default; configs store all of them, so slugs and
#: manifests stay exact even if a default changes later (tests pin these to the selectors' signatures)
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "uniform": {"flavour": "round_full"},
    "voxel_coverage": {"conf_percentile": 50.0, "conf_floor": 0.1, "voxels_on_short_axis": 20, "depth_stride": 4,
                       "fill": "pose_fps"},
    "pose_fps": {"distance": "center", "weighting": "max_norm", "start": "medoid", "reorth": True},
    "farness2d": {"mode": "hybrid", "normalization": "std_norm", "start": "farthest", "diagonal_priority": 0.0,
                  "grid_density": 1.5, "skip_first_frame": False},
}
ALLOWED_PARAMS: dict[str, tuple[str, ...]] = {name: tuple(d) for name, d in DEFAULT_PARAMS.items()}
#: uniform flavour -> (pool policy it implies, rounding)
UNIFORM_FLAVOURS = {"round_full": ("all", "round"), "floor_full": ("all", "floor"), "floor_pool": (None, "floor")}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("/", "_")


@dataclass(frozen=True)
class SamplingConfig:
    """One sampling configuration.

    ``params`` are the selector's keyword arguments (JSON-serialisable). ``geometry`` says where
    cameras / point maps come from: ``gt`` (the scene's own), ``predictions`` (a stored npz),
    ``vggt`` / ``da3`` (run a geometry model on the pool frames).
    """

    strategy: str
    num_frames: int
    params: Mapping[str, Any] = field(default_factory=dict)
    pool: PoolConfig = PoolConfig()
    pairing: PairingConfig = PairingConfig()
    seed: int = 0
    geometry: str = "gt"
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy {self.strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1; got {self.num_frames}")
        if self.geometry not in GEOMETRY_SOURCES:
            problems.append(f"geometry must be one of {', '.join(GEOMETRY_SOURCES)}; got {self.geometry!r}")
        unknown = sorted(set(self.params) - set(ALLOWED_PARAMS.get(self.strategy, ())))
        if self.strategy in STRATEGIES and unknown:
            problems.append(f"{self.strategy} does not take {', '.join(unknown)}; it takes "
                            f"{', '.join(ALLOWED_PARAMS[self.strategy])}")
        if self.strategy == "uniform":
            flavour = self.params.get("flavour", "round_full")
            if flavour not in UNIFORM_FLAVOURS:
                problems.append(f"uniform flavour must be one of {', '.join(UNIFORM_FLAVOURS)}; got {flavour!r}")
        try:
            json.dumps(dict(self.params))
        except TypeError as exc:
            problems.append(f"params must be JSON-serialisable ({exc})")
        if problems:
            raise ConfigError("invalid sampling config: " + "; ".join(problems), field="SamplingConfig")
        anchors_needed(self.num_frames, self.pairing)  # raises for odd N with pairs
        full = {**DEFAULT_PARAMS.get(self.strategy, {}), **dict(self.params)}
        object.__setattr__(self, "params", dict(sorted(full.items())))

    @property
    def effective_pool(self) -> PoolConfig:
        """The pool actually used: ``round_full`` / ``floor_full`` uniform always use every frame."""
        if self.strategy == "uniform":
            policy, _ = UNIFORM_FLAVOURS[self.params.get("flavour", "round_full")]
            if policy == "all":
                return PoolConfig("all")
        return self.pool

    @property
    def slug(self) -> str:
        """One folder name encoding every parameter, e.g.
        ``pose_fps-start_medoid__pool-linspace128__n16__pair-nbr-rnd-s1-pool__seed0``."""
        params = "".join(f"-{k}_{_fmt(v)}" for k, v in self.params.items())
        geo = "" if self.geometry == "gt" else f"__geo-{self.geometry}"
        return (f"{self.strategy}{params}__pool-{self.effective_pool.slug}__n{self.num_frames}"
                f"__pair-{self.pairing.slug}__seed{self.seed}{geo}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "num_frames": self.num_frames,
            "params": dict(self.params),
            "pool": self.pool.to_dict(),
            "pairing": self.pairing.to_dict(),
            "seed": self.seed,
            "geometry": self.geometry,
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplingConfig":
        return cls(
            strategy=d["strategy"],
            num_frames=int(d["num_frames"]),
            params=dict(d.get("params", {})),
            pool=PoolConfig(**d.get("pool", {})),
            pairing=PairingConfig(**d.get("pairing", {})),
            seed=int(d.get("seed", 0)),
            geometry=d.get("geometry", "gt"),
            schema_version=int(d.get("schema_version", 1)),
        )
