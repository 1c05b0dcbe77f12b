"""Synthetic posed scans, the built-in default dataset.

Procedural rooms (rectangular, L-shaped, or several rooms joined by doorways) with furniture, hand-held
scan trajectories, and a vectorised ray-cast renderer producing RGB, metric depth and instance ids, all deterministic from a
seed and written in the native scene layout (``posevlm synth``). ``synthetic_scan_w2c`` gives the cameras
of a seeded scan without rendering (the default cameras of ``posevlm inspect positions``).
``SYNTH_PRESETS`` / ``synth_config`` name settings: ``standard`` and ``hard`` (multi-room, cluttered, long
walks).
"""

from posevlm.scenes.synthetic.categories import CATEGORIES, Category
from posevlm.scenes.synthetic.generate import (
    SynthConfig,
    generate_dataset,
    generate_scene,
    scene_name,
    scene_rng,
    synthetic_intrinsics,
)
from posevlm.scenes.synthetic.layout import Layout, Room, SceneObject, generate_layout
from posevlm.scenes.synthetic.presets import SYNTH_PRESETS, synth_config
from posevlm.scenes.synthetic.raycast import RenderOutput, render
from posevlm.scenes.synthetic.scan_cameras import synthetic_scan_w2c
from posevlm.scenes.synthetic.trajectory import generate_trajectory

__all__ = [
    "CATEGORIES", "Category", "Layout", "Room", "SceneObject", "generate_layout", "generate_trajectory",
    "RenderOutput", "render", "SynthConfig", "generate_scene", "generate_dataset", "scene_name", "scene_rng",
    "synthetic_intrinsics", "synthetic_scan_w2c", "SYNTH_PRESETS", "synth_config",
]  # fmt: skip
