"""Scene loaders, one per on-disk format, behind one entry point :func:`load_scene`.

Every loader converts cameras to the library convention (``w2c_opencv``) and records what it
converted in ``scene.provenance``. Loaders register lazily ("module:function"), so importing this
package imports no dataset code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from posevlm.errors import InputFileError
from posevlm.registry import Registry
from posevlm.scenes.scene import Scene

__all__ = ["scene_loaders", "detect_format", "load_scene", "FORMATS"]

#: name -> ("module:loader", "module:detector"); detection runs in this order.
FORMATS: dict[str, tuple[str, str]] = {
    "native": ("posevlm.scenes.native:load_native_scene", "posevlm.scenes.native:detect_native_scene"),
    "scannet": ("posevlm.scenes.loaders.scannet:load_scannet", "posevlm.scenes.loaders.scannet:detect_scannet"),
    "scannetpp": ("posevlm.scenes.loaders.scannetpp:load_scannetpp",
                  "posevlm.scenes.loaders.scannetpp:detect_scannetpp"),
    "arkitscenes": ("posevlm.scenes.loaders.arkitscenes:load_arkitscenes",
                    "posevlm.scenes.loaders.arkitscenes:detect_arkitscenes"),
    "video": ("posevlm.scenes.loaders.video:load_video", "posevlm.scenes.loaders:_detect_video"),
    "frames": ("posevlm.scenes.loaders.video:load_frame_folder", "posevlm.scenes.loaders:_detect_frame_folder"),
}

scene_loaders: Registry[str] = Registry("scene format")
for _name, (_loader, _) in FORMATS.items():
    scene_loaders.register(_name)(_loader)


def _resolve(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _detect_video(path: Path) -> bool:
    from posevlm.scenes.loaders.video import VIDEO_SUFFIXES

    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _detect_frame_folder(path: Path) -> bool:
    from posevlm.scenes.frames import IMAGE_SUFFIXES

    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def detect_format(path: str | Path) -> str:
    """Name of the first format whose detector accepts ``path``."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path} does not exist", path=path)
    for name, (_, detector) in FORMATS.items():
        if _resolve(detector)(path):
            return name
    raise InputFileError(
        f"cannot tell the format of {path}. Supported: {', '.join(FORMATS)} (a posevlm scene dir with scene.json, "
        "a ScanNet export with color/ pose/ intrinsic/, a ScanNet++ scene with dslr/nerfstudio/, an ARKitScenes "
        "<id>_frames dir, a video file, or a folder of frame images). Pass format= to force one.",
        path=path,
    )


def load_scene(path: str | Path, format: str | None = None, **options: Any) -> Scene:
    """Load any supported scan. ``format`` forces a loader; ``options`` go to that loader."""
    name = format or detect_format(path)
    return _resolve(scene_loaders.get(name))(Path(path), **options)
