"""A scene's summary: what ``posevlm info`` prints (frames, fps, resolution, convention, trajectory
length, scene extent, and for scans with depth the pose-direction check)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posevlm.geometry import camera_centers, pairwise_geodesic_angle
from posevlm.scenes.scene import Scene

__all__ = ["scene_summary"]


def scene_summary(scene: Scene) -> dict[str, Any]:
    """JSON-serialisable summary. Trajectory figures need cameras; extent uses the room metadata when
    present (synthetic scenes), else the camera centres' bounding box. ``pose_check_agreement``
    ([as given, inverted]) and ``poses_look_inverted`` come from the loader's pose-direction check
    (``provenance["pose_direction_check"]``, scans with depth only)."""
    h, w = scene.image_hw()
    out: dict[str, Any] = {
        "name": scene.name,
        "loader": scene.provenance.get("loader"),
        "source": scene.provenance.get("source"),
        "num_frames": scene.num_frames,
        "frame_id_range": [int(scene.frame_ids[0]), int(scene.frame_ids[-1])],
        "fps": scene.fps,
        "duration_s": (float(scene.timestamps_s[-1] - scene.timestamps_s[0]) if scene.timestamps_s is not None else None),
        "resolution_hw": [h, w],
        "convention": "w2c_opencv" if scene.cameras is not None else None,
        "has_depth": scene.depth is not None,
        "has_instances": scene.instances is not None,
        "has_point_maps": scene.point_maps is not None,
    }
    if scene.cameras is not None:
        cams = scene.cameras
        c = camera_centers(cams.w2c_opencv)
        steps = (c[1:] - c[:-1]).norm(dim=-1) if len(c) > 1 else torch.zeros(1, dtype=c.dtype)
        rot = cams.w2c_opencv[:, :3, :3]
        turn = pairwise_geodesic_angle(rot[:: max(1, len(rot) // 512)])  # subsample for very long scans
        fx, fy = cams.K_pixels[0, 0, 0].item(), cams.K_pixels[0, 1, 1].item()
        out.update(
            trajectory_length_m=float(steps.sum()),
            max_step_m=float(steps.max()),
            camera_center_min=[round(float(v), 4) for v in c.min(0).values],
            camera_center_max=[round(float(v), 4) for v in c.max(0).values],
            max_view_angle_deg=float(np.degrees(float(turn.max()))),
            fov_deg_hw=[float(np.degrees(2 * np.arctan(h / 2 / fy))), float(np.degrees(2 * np.arctan(w / 2 / fx)))],
        )
        extent_lo, extent_hi = c.min(0).values, c.max(0).values
        out["extent_source"] = "camera_centers"
    room = scene.metadata.get("room") if isinstance(scene.metadata, dict) else None
    if room:
        boxes = np.asarray(room["boxes_xy"], dtype=np.float64)
        extent_lo = np.array([boxes[:, 0].min(), boxes[:, 1].min(), 0.0])
        extent_hi = np.array([boxes[:, 2].max(), boxes[:, 3].max(), float(room["height"])])
        out["extent_source"] = "room"
        out["room_area_m2"] = float(room["floor_area_m2"])
        out["num_objects"] = len(scene.metadata.get("objects", []))
    check = scene.provenance.get("pose_direction_check")
    if check:
        out["pose_check_agreement"] = [round(check["agreement_as_given"], 4), round(check["agreement_inverted"], 4)]
        out["poses_look_inverted"] = bool(check["inverted_likely"])
    if "extent_source" in out:
        ext = np.asarray(extent_hi, dtype=np.float64) - np.asarray(extent_lo, dtype=np.float64)
        out["scene_extent_m"] = [round(float(v), 4) for v in ext]
    return out
