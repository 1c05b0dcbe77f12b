"""Posed scans: the ``Scene`` container, lazy frame stores, loaders and the synthetic generator.

``load_scene(path)`` detects the format (native posevlm layout, ScanNet, ScanNet++, ARKitScenes,
video file, frame folder) and returns a ``Scene`` whose cameras follow the library convention
(``w2c_opencv``). Video decoding (PyAV) happens lazily, only when frames are read. ``scene_point_cloud(scene)``
back-projects an RGB-D scan into a SpatialLM ``[N, 9]`` point cloud (also read from ``.ply`` / ``.npz``).
"""

from posevlm.scenes.frames import ArrayStore, FrameStore, ImageFolderStore, numeric_frame_id, sorted_numerically
from posevlm.scenes.loaders import detect_format, load_scene, scene_loaders
from posevlm.scenes.native import load_native_scene, write_native_scene
from posevlm.scenes.pointcloud import (
    PointCloud,
    grid_sample_points,
    load_point_cloud,
    read_ply,
    save_point_cloud,
    scene_point_cloud,
    write_ply,
)
from posevlm.scenes.predictions import GeometryPredictions, load_predictions, save_predictions
from posevlm.scenes.scene import PointMaps, Scene
from posevlm.scenes.summary import scene_summary
from posevlm.scenes.video import VideoStore, VideoWriter, write_video

__all__ = [
    "Scene", "PointMaps",
    "FrameStore", "ImageFolderStore", "ArrayStore", "VideoStore", "VideoWriter", "write_video",
    "numeric_frame_id", "sorted_numerically",
    "load_scene", "detect_format", "scene_loaders", "load_native_scene", "write_native_scene",
    "GeometryPredictions", "load_predictions", "save_predictions",
    "scene_summary",
    "PointCloud", "scene_point_cloud", "grid_sample_points", "load_point_cloud", "save_point_cloud", "read_ply",
    "write_ply",
]  # fmt: skip
