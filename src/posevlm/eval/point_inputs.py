"""The ``point_cloud`` input source of the eval runner: a scene's SpatialLM point cloud instead of its frames.

``posevlm eval --frames point_cloud --frames-root ROOT`` gives every sample of a scene the cloud found first of:

1. ``ROOT/<dataset>/<scene>.npz`` / ``.ply``, ``ROOT/clouds/<scene>.npz`` (the folder
   ``posevlm.eval.layout_data.write_point_task_data`` writes), ``ROOT/<scene>.npz`` / ``.ply``: read with
   :func:`posevlm.scenes.pointcloud.load_point_cloud` (``.npz`` as stored; ``.ply`` grid-sampled at ``grid_size``);
2. a scan folder ``ROOT/<dataset>/<scene>`` or ``ROOT/<scene>`` (anything ``posevlm.scenes.load_scene`` reads, with
   depth and cameras): :func:`~posevlm.scenes.pointcloud.scene_point_cloud` of ``num_frames`` evenly spaced frames
   (``--num-frames``), every ``pixel_stride``-th pixel, grid ``grid_size``.

:class:`PointCloudRequest` is hashable and has the ``check`` / ``load`` / ``to_dict`` of the frame requests of
``posevlm.eval.frames`` (so ``preflight``, ``FrameCache`` and the runner treat it like one); ``load`` returns a
:class:`PointCloudSpec`: the cloud, the frame ids it was built from (empty for a file) and its provenance.
Layout targets are in the cloud's frame (its minimum at 0), so a layout sample must see the cloud its target was
written for; the ``points`` backend checks the origin stored with the target (``meta.origin``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posevlm.errors import ConfigError, PosevlmError
from posevlm.eval.errors import DecodeError, MissingInputError

__all__ = ["PointCloudRequest", "PointCloudSpec", "point_cloud_candidates"]

_SUFFIXES = (".npz", ".ply")


@dataclass(frozen=True, eq=False)
class PointCloudSpec:
    """The input of one scene's samples: ``cloud`` (a ``posevlm.scenes.pointcloud.PointCloud``), ``frame_ids`` (F,)
    int64 of the scan frames back-projected (empty when read from a file), ``provenance`` (JSON-serialisable)."""

    cloud: Any
    frame_ids: np.ndarray
    provenance: dict[str, Any]

    @property
    def n_points(self) -> int:
        return len(self.cloud)


def point_cloud_candidates(root: str | Path, dataset: str, scene: str) -> list[Path]:
    """Where a scene's cloud may be, in lookup order (module docstring): files first, then scan folders."""
    root = Path(root)
    files = [root / dataset / f"{scene}{s}" for s in _SUFFIXES] + [root / "clouds" / f"{scene}.npz"]
    files += [root / f"{scene}{s}" for s in _SUFFIXES]
    return files + [root / dataset / scene, root / scene]


@dataclass(frozen=True)
class PointCloudRequest:
    """The point cloud of scene ``scene`` of ``dataset`` under ``root`` (module docstring).

    ``num_frames``, ``pixel_stride``, ``grid_size``, ``num_bins`` apply when the cloud is built from a scan
    (``grid_size`` / ``num_bins`` also when a ``.ply`` is grid-sampled); a stored ``.npz`` keeps its own grid."""

    root: str
    dataset: str
    scene: str
    num_frames: int = 32
    pixel_stride: int = 4
    grid_size: float = 0.02
    num_bins: int = 1280
    source: str = field(default="point_cloud", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", str(self.root))
        problems = []
        for name in ("num_frames", "pixel_stride", "num_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an int >= 1; got {value!r}")
        if not (isinstance(self.grid_size, (int, float)) and self.grid_size > 0):
            problems.append(f"grid_size must be > 0 metres; got {self.grid_size!r}")
        if problems:
            raise ConfigError("invalid point-cloud input: " + "; ".join(problems), field="frames", value=problems)

    def path(self) -> Path:
        """The first existing candidate. Raises MissingInputError listing where it looked."""
        candidates = point_cloud_candidates(self.root, self.dataset, self.scene)
        for c in candidates:
            if (c.is_file() and c.suffix.lower() in _SUFFIXES) or c.is_dir():
                return c
        shown = ", ".join(str(c) for c in candidates[:4])
        raise MissingInputError(f"no point cloud of scene {self.dataset}/{self.scene} under {self.root} (looked for "
                                f"{shown}, ... and a scan folder); write the clouds with write_point_task_data or point "
                                "--frames-root at the scans", input=str(Path(self.root) / self.dataset / self.scene))

    def check(self) -> int:
        """CPU check without reading points: the cloud file or scan folder exists. Returns the frames a scan
        cloud would use (0 for a file)."""
        path = self.path()
        return self.num_frames if path.is_dir() else 0

    def load(self) -> PointCloudSpec:
        from posevlm.scenes.pointcloud import load_point_cloud, scene_point_cloud

        path = self.path()
        provenance: dict[str, Any] = {**self.to_dict(), "path": str(path)}
        try:
            if path.is_dir():
                from posevlm.scenes import load_scene

                scene = load_scene(path)
                n = max(1, min(self.num_frames, len(scene)))
                pick = np.unique(np.round(np.linspace(0, len(scene) - 1, n))).astype(np.int64)
                frame_ids = np.asarray(scene.frame_ids, dtype=np.int64)[pick]
                cloud = scene_point_cloud(scene, frame_ids.tolist(), pixel_stride=self.pixel_stride,
                                          grid_size=self.grid_size, num_bins=self.num_bins)
                provenance["built_from"] = "scan"
            else:
                cloud = load_point_cloud(path, grid_size=self.grid_size, num_bins=self.num_bins)
                frame_ids = np.zeros(0, dtype=np.int64)
                provenance.update(built_from="file", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        except PosevlmError as exc:
            raise DecodeError(f"cannot build the point cloud of {path}: {exc}", input=str(path)) from exc
        provenance.update(points=len(cloud), origin=[float(v) for v in cloud.origin], cloud_grid_size=cloud.grid_size)
        return PointCloudSpec(cloud, frame_ids, provenance)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
