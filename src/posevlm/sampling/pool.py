"""Candidate pools: which frames of a scan the selectors choose from.

A pool maps **pool indices** 0..P-1 to **frame ids** of the scan. Policies:
``linspace`` (P frames at ``floor(linspace(first, last, P))``, the reference's 128-frame pool),
``all`` (every frame) and ``stride`` (every ``stride``-th frame).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from posevlm.errors import ConfigError

__all__ = ["PoolConfig", "candidate_pool"]


@dataclass(frozen=True)
class PoolConfig:
    """``policy``: linspace | all | stride. ``size`` is used by linspace, ``stride`` by stride."""

    policy: Literal["linspace", "all", "stride"] = "linspace"
    size: int = 128
    stride: int = 1

    def __post_init__(self) -> None:
        if self.policy not in ("linspace", "all", "stride"):
            raise ConfigError(f"pool policy must be linspace, all or stride; got {self.policy!r}", field="pool.policy")
        if self.size < 1 or self.stride < 1:
            raise ConfigError(f"pool size and stride must be >= 1; got size={self.size}, stride={self.stride}",
                              field="pool")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def slug(self) -> str:
        return {"linspace": f"linspace{self.size}", "all": "all", "stride": f"stride{self.stride}"}[self.policy]


def candidate_pool(frame_ids: np.ndarray, config: PoolConfig = PoolConfig()) -> np.ndarray:
    """(P,) frame ids of the pool, ascending, drawn from the scan's ascending ``frame_ids`` (S,).

    ``linspace`` floors positions ``linspace(0, S - 1, min(size, S))`` (the reference truncates with
    ``astype(int)``), so the first and last frames are always in the pool.
    """
    ids = np.asarray(frame_ids, dtype=np.int64)
    s = ids.size
    if s == 0:
        raise ConfigError("cannot build a candidate pool from zero frames", field="frame_ids")
    if config.policy == "all":
        return ids.copy()
    if config.policy == "stride":
        return ids[:: config.stride].copy()
    positions = np.linspace(0, s - 1, min(config.size, s)).astype(np.int64)
    return ids[positions]
