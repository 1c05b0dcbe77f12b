"""The result type shared by every selector, the selector interface, and the selector registry.

Index spaces: selectors work on **pool indices** 0..P-1 (positions in a candidate pool); the pool maps
them to **frame ids** of the source. Selectors never see frame ids, files or devices.

Adding a selector: write a pure function over arrays, wrap it in a :class:`SamplerSpec` (what it needs from
the pool, every parameter with its default) and register the spec in ``samplers`` (built-ins below; other
packages through the entry-point group ``posevlm.samplers``, see ``posevlm.registry``). The runner, the
config validation, ``posevlm sample --strategy`` and ``posevlm list samplers`` all read the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from posevlm.errors import ConfigError, ShapeError
from posevlm.registry import Registry

__all__ = ["Selection", "PoolView", "SamplerSpec", "SAMPLER_NEEDS", "samplers"]


@dataclass(frozen=True)
class Selection:
    """Output of a selector.

    Attributes:
        pool_indices: (K,) int64 pool indices, strictly ascending (temporal order of the pool).
        selection_order: (K,) int64 the same indices in the order the selector picked them.
        stats: JSON-serialisable statistics (coverage ratio, min-distance stats, ...); keys are
            documented by each selector.
        n_returned_before_fill: how many indices the selector chose on its own before a fill policy
            topped the selection up to K (== K when no fill was needed).
    """

    pool_indices: np.ndarray
    selection_order: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    n_returned_before_fill: int | None = None

    def __post_init__(self) -> None:
        idx = np.asarray(self.pool_indices, dtype=np.int64)
        order = np.asarray(self.selection_order, dtype=np.int64)
        object.__setattr__(self, "pool_indices", idx)
        object.__setattr__(self, "selection_order", order)
        if idx.ndim != 1 or order.shape != idx.shape:
            raise ShapeError(f"pool_indices and selection_order must be equal-length 1-D; got {idx.shape}, {order.shape}")
        if idx.size and np.any(np.diff(idx) <= 0):
            raise ShapeError("pool_indices must be strictly ascending (sorted, no repeats)")
        if not np.array_equal(np.sort(order), idx):
            raise ShapeError("selection_order must be a permutation of pool_indices")
        if self.n_returned_before_fill is None:
            object.__setattr__(self, "n_returned_before_fill", int(idx.size))

    @classmethod
    def from_order(cls, selection_order: np.ndarray, stats: dict[str, Any] | None = None,
                   n_returned_before_fill: int | None = None) -> "Selection":
        order = np.asarray(selection_order, dtype=np.int64)
        return cls(np.sort(order), order, dict(stats or {}), n_returned_before_fill)

    def __len__(self) -> int:
        return int(self.pool_indices.size)


class PoolView(Protocol):
    """What a selector may read about one candidate pool (the runner provides it).

    Attributes:
        frame_ids: (P,) int64 frame ids of the pool, ascending.
        w2c_opencv: (P, 4, 4) world-to-camera poses, OpenCV axes, or None when the source has no cameras
            (only for selectors that do not declare the need ``cameras``).
    """

    frame_ids: np.ndarray

    @property
    def w2c_opencv(self) -> Any: ...

    def voxels(self, params: Mapping[str, Any]) -> Any:
        """Voxel sets of the pool (``posevlm.sampling.voxel_coverage.VoxelSets``) built with ``params`` (from
        point maps + confidence, or depth + cameras), cached per parameter set."""


#: what a selector can ask of the pool: camera poses, voxelised points (point maps or depth + cameras)
SAMPLER_NEEDS = ("cameras", "voxels")


@dataclass(frozen=True)
class SamplerSpec:
    """A registered frame selector.

    Attributes:
        name: registry name (``--strategy``).
        select: ``(pool: PoolView, k: int, *, seed: int, **params) -> Selection`` with exactly k indices
            (or fewer, which the runner reports); ``seed`` is the per-scene seed.
        defaults: every parameter with its default; configs store all of them, so slugs and manifests stay
            exact even if a default changes later.
        needs: subset of ``SAMPLER_NEEDS``; the runner checks the pool has them before calling ``select``.
        description: one line for ``posevlm list samplers``.
        check: optional ``params -> [problems]`` for values (unknown keys are checked from ``defaults``).
        uses_all_frames: optional ``params -> bool``: these params make the pool every frame of the scan
            (``uniform`` ``round_full`` / ``floor_full``), whatever pool was asked for.
    """

    name: str
    select: Callable[..., Selection]
    defaults: Mapping[str, Any]
    needs: tuple[str, ...] = ()
    description: str = ""
    check: Callable[[Mapping[str, Any]], list[str]] | None = None
    uses_all_frames: Callable[[Mapping[str, Any]], bool] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(SAMPLER_NEEDS)
        if unknown:
            raise ConfigError(f"sampler {self.name!r}: unknown needs {sorted(unknown)}; choose from {SAMPLER_NEEDS}",
                              field="needs", value=sorted(unknown))

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        """Every problem with ``params`` (unknown keys, then the spec's own value checks)."""
        unknown = sorted(set(params) - set(self.defaults))
        out = [f"{self.name} does not take {', '.join(unknown)}; it takes {', '.join(self.defaults) or 'nothing'}"] \
            if unknown else []
        return out + (list(self.check({**self.defaults, **params})) if self.check else [])


#: Selectors by name (``SamplerSpec``); built-ins load with their module on first use.
samplers: Registry[SamplerSpec] = Registry("sampler", "samplers")
for _name in ("uniform", "voxel_coverage", "pose_fps", "farness2d"):
    samplers.register_lazy(_name, f"posevlm.sampling.{_name}:SAMPLER")
