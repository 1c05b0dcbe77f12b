"""The result type shared by every selector, and the selector registry.

Index spaces: selectors work on **pool indices** 0..P-1 (positions in a candidate pool); the pool maps
them to **frame ids** of the source. Selectors never see frame ids, files or devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from posevlm.errors import ShapeError
from posevlm.registry import Registry

__all__ = ["Selection", "samplers"]


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


#: Selectors by name. Each entry is a callable ``(inputs..., k, *, **params) -> Selection``.
samplers: Registry[Callable[..., Selection]] = Registry("sampler")
