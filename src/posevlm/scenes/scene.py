"""``Scene``: an ordered posed scan with lazy frame access.

A scene holds S frames addressed by ``frame_ids`` (ascending ints in the source's own index space:
video frame index, ScanNet frame number, ...), per-frame cameras in the library convention
(``w2c_opencv`` + ``K_pixels`` + ``image_hw``), and optional depth, point maps, instance masks and
metadata. Pixels are read only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from posevlm.geometry import Cameras
from posevlm.scenes.frames import FrameStore

__all__ = ["Scene", "PointMaps"]


@dataclass(frozen=True)
class PointMaps:
    """Per-frame world points and confidences, e.g. from VGGT.

    ``world_points``: (S, h, w, 3) float, world frame of the scene cameras (``w2c_opencv``).
    ``confidence``: (S, h, w) float or None. ``frame_ids``: (S,) the frames they belong to.
    ``image_hw``: (h, w) of the maps (may differ from the RGB size).
    """

    frame_ids: np.ndarray
    world_points: np.ndarray
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = self.frame_ids.shape[0]
        if self.world_points.ndim != 4 or self.world_points.shape[0] != s or self.world_points.shape[-1] != 3:
            raise ValueError(f"world_points must be ({s}, h, w, 3); got {self.world_points.shape}")
        if self.confidence is not None and self.confidence.shape != self.world_points.shape[:3]:
            raise ValueError(f"confidence must be {self.world_points.shape[:3]}; got {self.confidence.shape}")

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.world_points.shape[1]), int(self.world_points.shape[2])


@dataclass
class Scene:
    """An ordered posed scan.

    Attributes:
        name: scene name (e.g. ``scene0011_00``; digits-only names stay strings).
        frame_ids: (S,) int64 ascending frame ids.
        rgb: lazy RGB store over (at least) ``frame_ids``; uint8 (H, W, 3).
        cameras: S cameras aligned with ``frame_ids`` or None for an unposed video.
        fps: capture rate in frames per second, or None if unknown.
        timestamps_s: (S,) seconds, or None.
        depth: lazy depth store (float32 metres, 0 = invalid) or None.
        instances: lazy instance-id store (int32) or None.
        point_maps: per-frame world points + confidence or None.
        metadata: source-specific extras (synthetic: room and objects from scene.json).
        provenance: where the data came from and which conversions were applied.
    """

    name: str
    frame_ids: np.ndarray
    rgb: FrameStore
    cameras: Cameras | None = None
    fps: float | None = None
    timestamps_s: np.ndarray | None = None
    depth: FrameStore | None = None
    instances: FrameStore | None = None
    point_maps: PointMaps | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frame_ids = np.asarray(self.frame_ids, dtype=np.int64)
        s = self.frame_ids.shape[0]
        if self.frame_ids.ndim != 1 or s == 0:
            raise ValueError(f"scene {self.name!r}: frame_ids must be a non-empty 1-D array")
        if np.any(np.diff(self.frame_ids) <= 0):
            raise ValueError(f"scene {self.name!r}: frame_ids must be strictly ascending")
        if self.cameras is not None and len(self.cameras) != s:
            raise ValueError(f"scene {self.name!r}: {len(self.cameras)} cameras for {s} frames")
        if self.timestamps_s is not None:
            self.timestamps_s = np.asarray(self.timestamps_s, dtype=np.float64)
            if self.timestamps_s.shape != (s,):
                raise ValueError(f"scene {self.name!r}: timestamps_s must have shape ({s},)")

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])

    @property
    def num_frames(self) -> int:
        return len(self)

    def positions(self, frame_ids: Sequence[int]) -> np.ndarray:
        """Positions 0..S-1 of the given frame ids (raises KeyError for unknown ids)."""
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self.frame_ids, ids)
        ok = (pos < len(self)) & (self.frame_ids[np.minimum(pos, len(self) - 1)] == ids)
        if not ok.all():
            raise KeyError(f"scene {self.name!r} has no frame id(s) {ids[~ok][:8].tolist()}")
        return pos

    def cameras_for(self, frame_ids: Sequence[int]) -> Cameras:
        """Cameras of the given frame ids, in the order asked for."""
        if self.cameras is None:
            raise ValueError(f"scene {self.name!r} has no cameras; load it with a pose file")
        return self.cameras[self.positions(frame_ids)]

    def read_rgb(self, frame_ids: Sequence[int]) -> np.ndarray:
        """(N, H, W, 3) uint8 frames in the order asked for."""
        self.positions(frame_ids)
        return self.rgb.read_many(frame_ids)

    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the RGB frames (from the cameras, else by decoding the first frame)."""
        if self.cameras is not None:
            h, w = self.cameras.image_hw[0].tolist()
            return int(h), int(w)
        frame = self.rgb.read(int(self.frame_ids[0]))
        return int(frame.shape[0]), int(frame.shape[1])
