"""The per-video pose inputs of a pose-aware model (cameras and frame ids), as tensors.

One video's inputs are a :class:`PoseInputs`: ``frame_ids`` (S,) source frame ids and ``w2c_opencv``
(S, 4, 4) world-to-camera, OpenCV axes, one per frame *in the order the frames are given to the
processor*, optionally ``K_pixels`` (S, 3, 3) with the ``image_hw`` (S, 2) they refer to.
:func:`model_kwargs` stacks several videos into the extra keyword arguments of ``forward`` / ``generate``
of a model prepared with :func:`posevlm.models.enable_pose_positions`.

Nothing here reads files. The readers (a sampling manifest, a scene, a geometry-predictions npz, an
evaluation ``FrameSpec``) live in the thin input module :mod:`posevlm.pose_io`; ``from_manifest``,
``from_scene``, ``from_predictions`` and ``from_frame_spec`` stay importable from this module as lazy
re-exports of those functions (nothing is imported until one is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import ShapeError
from posevlm.geometry import validate_w2c

__all__ = ["PoseInputs", "model_kwargs", "from_manifest", "from_scene", "from_predictions", "from_frame_spec"]

#: Readers re-exported from :mod:`posevlm.pose_io` (resolved lazily by ``__getattr__``).
_READERS = ("from_manifest", "from_scene", "from_predictions", "from_frame_spec")


@dataclass(frozen=True)
class PoseInputs:
    """Cameras of one video's frames, in processor order. S frames.

    Attributes:
        frame_ids: (S,) int64 source frame ids.
        w2c_opencv: (S, 4, 4) float64 world-to-camera, OpenCV axes.
        K_pixels: (S, 3, 3) float64 intrinsics in pixels of ``image_hw``, or None.
        image_hw: (S, 2) int64 (H, W) the intrinsics refer to, or None.
        source: where the cameras came from (a path or a description).
    """

    frame_ids: Tensor
    w2c_opencv: Tensor
    K_pixels: Tensor | None = None
    image_hw: Tensor | None = None
    source: str = ""

    def __post_init__(self) -> None:
        s = self.frame_ids.shape[0]
        if self.frame_ids.ndim != 1:
            raise ShapeError(f"frame_ids must be (S,); got {tuple(self.frame_ids.shape)}", name="frame_ids",
                             shape=tuple(self.frame_ids.shape))
        if self.w2c_opencv.shape != (s, 4, 4):
            raise ShapeError(f"w2c_opencv must be ({s}, 4, 4) to match {s} frame ids; got "
                             f"{tuple(self.w2c_opencv.shape)} (source: {self.source})", name="w2c_opencv",
                             shape=tuple(self.w2c_opencv.shape))
        if self.K_pixels is not None and self.K_pixels.shape != (s, 3, 3):
            raise ShapeError(f"K_pixels must be ({s}, 3, 3); got {tuple(self.K_pixels.shape)}", name="K_pixels",
                             shape=tuple(self.K_pixels.shape))
        validate_w2c(self.w2c_opencv, source=f"w2c_opencv of {self.source or 'pose inputs'}")

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])

    @classmethod
    def from_arrays(cls, frame_ids, w2c_opencv, K_pixels=None, image_hw=None, *, source: str = "") -> PoseInputs:
        """From array-likes (lists, numpy, tensors): ids and ``image_hw`` as int64, cameras as float64."""
        def as_tensor(x, dtype: torch.dtype) -> Tensor | None:
            return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)

        return cls(as_tensor(frame_ids, torch.int64).reshape(-1), as_tensor(w2c_opencv, torch.float64),
                   as_tensor(K_pixels, torch.float64), as_tensor(image_hw, torch.int64), source)


def model_kwargs(videos: Sequence[PoseInputs], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> dict[str, list[Tensor]]:
    """``{"w2c_opencv": [(S_i, 4, 4)], "frame_ids": [(S_i,)]}`` (plus ``K_pixels`` / ``image_hw`` when every video
    has intrinsics, for PRoPE) for the videos of a batch in processor order (row-major over samples, then
    videos within a sample), ready for ``model.generate(**inputs, **kw)``."""
    out = {"w2c_opencv": [v.w2c_opencv.to(device=device, dtype=dtype) for v in videos],
           "frame_ids": [v.frame_ids.to(device=device) for v in videos]}
    if videos and all(v.K_pixels is not None and v.image_hw is not None for v in videos):
        out["K_pixels"] = [v.K_pixels.to(device=device, dtype=dtype) for v in videos]
        out["image_hw"] = [v.image_hw.to(device=device) for v in videos]
    return out


def __getattr__(name: str) -> Any:
    """``from_manifest`` & co.: the readers of :mod:`posevlm.pose_io`, imported on first use."""
    if name in _READERS:
        from posevlm import pose_io

        return getattr(pose_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
