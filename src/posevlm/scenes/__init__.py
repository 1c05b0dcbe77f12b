"""Posed scans: the ``Scene`` container, lazy frame stores, loaders and the synthetic generator.

``load_scene(path)`` detects the format (native posevlm layout, ScanNet, ScanNet++, ARKitScenes,
video file, frame folder) and returns a ``Scene`` whose cameras follow the library convention
(``w2c_opencv``). Video decoding (PyAV) happens lazily, only when frames are read.
"""

from posevlm.scenes.frames import ArrayStore, FrameStore, ImageFolderStore, numeric_frame_id, sorted_numerically
from posevlm.scenes.loaders import detect_format, load_scene, scene_loaders
from posevlm.scenes.native import load_native_scene, write_native_scene
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
]  # fmt: skip
