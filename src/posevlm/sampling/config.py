"""``SamplingConfig``: everything that determines a sampling output, and its slug."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.sampling.pairing import PairingConfig, anchors_needed
from posevlm.sampling.pool import PoolConfig

__all__ = ["SamplingConfig", "GEOMETRY_SOURCES"]

GEOMETRY_SOURCES = ("gt", "predictions", "vggt", "da3")


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
    ``vggt`` / ``da3`` (run a geometry model on the pool frames). ``geometry_options`` (model geometries only):
    ``weights``, ``chunk``, ``image_width``, ``dtype`` of ``posevlm.sampling.geometry_runner.GeometryPredictConfig``;
    they shape the cameras, so they are part of the config, its slug (``__geo-vggt-<hash>``) and completeness.
    """

    strategy: str
    num_frames: int
    params: Mapping[str, Any] = field(default_factory=dict)
    pool: PoolConfig = PoolConfig()
    pairing: PairingConfig = PairingConfig()
    seed: int = 0
    geometry: str = "gt"
    geometry_options: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = 1

    def __post_init__(self) -> None:
        from posevlm.sampling.selection import samplers

        problems = []
        try:
            spec = samplers.get(self.strategy)
        except ConfigError as exc:
            spec = None
            problems.append(f"strategy: {exc}")
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1; got {self.num_frames}")
        if self.geometry not in GEOMETRY_SOURCES:
            problems.append(f"geometry must be one of {', '.join(GEOMETRY_SOURCES)}; got {self.geometry!r}")
        if spec is not None:
            problems += spec.problems(self.params)
        problems += self._geometry_problems()
        try:
            json.dumps(dict(self.params))
        except TypeError as exc:
            problems.append(f"params must be JSON-serialisable ({exc})")
        if problems:
            raise ConfigError("invalid sampling config: " + "; ".join(problems), field="SamplingConfig")
        anchors_needed(self.num_frames, self.pairing)  # raises for odd N with pairs
        full = {**spec.defaults, **dict(self.params)}  # type: ignore[union-attr]
        object.__setattr__(self, "params", dict(sorted(full.items())))

    def _geometry_problems(self) -> list[str]:
        if not self.geometry_options:
            return []
        if self.geometry not in ("vggt", "da3"):
            return [f"geometry_options are for --geometry vggt / da3; got geometry {self.geometry!r}"]
        unknown = sorted(set(self.geometry_options) - {"weights", "chunk", "image_width", "dtype"})
        if unknown:
            return [f"geometry_options takes weights, chunk, image_width, dtype; got {', '.join(unknown)}"]
        try:
            self.geometry_model
        except ConfigError as exc:
            return [str(exc)]
        return []

    @property
    def geometry_model(self):
        """The ``GeometryPredictConfig`` of a model geometry (``vggt`` / ``da3``) on this config's pool, else None."""
        if self.geometry not in ("vggt", "da3"):
            return None
        from posevlm.sampling.geometry_runner import GeometryPredictConfig

        return GeometryPredictConfig(model=self.geometry, pool=self.effective_pool, **dict(self.geometry_options))

    @property
    def sampler(self):
        """The registered ``SamplerSpec`` of ``strategy``."""
        from posevlm.sampling.selection import samplers

        return samplers.get(self.strategy)

    @property
    def effective_pool(self) -> PoolConfig:
        """The pool actually used: some parameters use every frame (``uniform`` ``round_full`` / ``floor_full``)."""
        spec = self.sampler
        if spec.uses_all_frames is not None and spec.uses_all_frames(self.params):
            return PoolConfig("all")
        return self.pool

    @property
    def slug(self) -> str:
        """One folder name encoding every parameter, e.g.
        ``pose_fps-start_medoid__pool-linspace128__n16__pair-nbr-rnd-s1-pool__seed0``."""
        params = "".join(f"-{k}_{_fmt(v)}" for k, v in self.params.items())
        model = self.geometry_model
        geo = "" if self.geometry == "gt" else f"__geo-{model.cache_name if model else self.geometry}"
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
            **({"geometry_options": dict(self.geometry_options)} if self.geometry_options else {}),
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
            geometry_options=dict(d.get("geometry_options", {})),
            schema_version=int(d.get("schema_version", 1)),
        )
