"""Generate synthetic posed scans and write them in the native layout.

Scene ``i`` of a dataset with global seed ``s`` is fully determined by ``(s, i)`` and the config:
``numpy.random.SeedSequence([s, i])`` seeds layout and trajectory, and the renderer is deterministic.
Reruns write byte-identical files (``rgb.mp4`` included: the video encoder runs on one thread), so the
provenance of a synthetic scene records no wall-clock date (``"date": null``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from posevlm.errors import ConfigError
from posevlm.geometry import Cameras, K_from_params
from posevlm.scenes.native import SCENE_JSON, load_native_scene, write_native_scene
from posevlm.scenes.synthetic.layout import ROOM_SHAPES, Layout, generate_layout
from posevlm.scenes.synthetic.raycast import render
from posevlm.scenes.synthetic.trajectory import generate_trajectory

__all__ = ["SynthConfig", "scene_name", "scene_rng", "synthetic_intrinsics", "generate_scene", "generate_dataset"]

#: Frames rendered per batch while streaming to disk (bounds memory for long scans).
RENDER_CHUNK = 16


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a synthetic dataset; stored in every scene.json.

    ``num_frames=None`` draws a length in [300, 3000] per scene. ``image_hw`` is (H, W), both even.
    ``hfov_deg`` is the horizontal field of view of the centred pinhole camera (square pixels).
    ``room_shape``: "rect", "L", "multi" (2-3 rooms joined by doorways) or None (random rect / L);
    ``clutter``: more and smaller objects (see :func:`~posevlm.scenes.synthetic.layout.generate_layout`).
    Named settings live in :data:`~posevlm.scenes.synthetic.presets.SYNTH_PRESETS`.
    """

    seed: int = 0
    num_frames: int | None = None
    image_hw: tuple[int, int] = (240, 320)
    fps: float = 30.0
    hfov_deg: float = 60.0
    num_objects: int | None = None
    room_shape: str | None = None
    clutter: bool = False
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.num_frames is not None and not 2 <= self.num_frames <= 100_000:
            problems.append(f"num_frames must be in [2, 100000] or None; got {self.num_frames}")
        h, w = self.image_hw
        if h < 16 or w < 16 or h % 2 or w % 2:
            problems.append(f"image_hw must be even and at least 16x16 (video encoding); got {w}x{h}")
        if not 0 < self.fps <= 240:
            problems.append(f"fps must be in (0, 240]; got {self.fps}")
        if not 20 <= self.hfov_deg <= 140:
            problems.append(f"hfov_deg must be in [20, 140]; got {self.hfov_deg}")
        if self.num_objects is not None and not 5 <= self.num_objects <= 60:
            problems.append(f"num_objects must be in [5, 60] or None; got {self.num_objects}")
        if self.room_shape not in (None, *ROOM_SHAPES):
            problems.append(f"room_shape must be one of {list(ROOM_SHAPES)} or None; got {self.room_shape!r}")
        if not isinstance(self.clutter, bool):
            problems.append(f"clutter must be True or False; got {self.clutter!r}")
        if problems:
            raise ConfigError("invalid SynthConfig: " + "; ".join(problems), field="SynthConfig")

    def to_dict(self) -> dict:
        """JSON-ready fields; ``clutter`` only when True, so standard scenes keep the scene.json (and the
        resume check) of versions before it existed."""
        d = asdict(self)
        d["image_hw"] = list(self.image_hw)
        if not self.clutter:
            del d["clutter"]
        return d


def scene_name(index: int) -> str:
    return f"synth_{index:04d}"


def scene_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def synthetic_intrinsics(config: SynthConfig) -> np.ndarray:
    """(3, 3) centred pinhole with square pixels for ``config.image_hw`` and ``config.hfov_deg``."""
    h, w = config.image_hw
    f = (w / 2) / math.tan(math.radians(config.hfov_deg) / 2)
    return K_from_params(f, f, w / 2, h / 2).numpy()


def _frames(layout: Layout, w2c: np.ndarray, K: np.ndarray, hw: tuple[int, int],
            on_frame: Callable[[int], None] | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for start in range(0, len(w2c), RENDER_CHUNK):
        out = render(layout, w2c[start : start + RENDER_CHUNK], K, hw)
        for i in range(out.rgb.shape[0]):
            yield out.rgb[i], out.depth[i], out.instance[i]
        if on_frame is not None:
            on_frame(out.rgb.shape[0])


def generate_scene(
    out_root: str | Path,
    index: int,
    config: SynthConfig = SynthConfig(),
    *,
    on_frame: Callable[[int], None] | None = None,
) -> Path:
    """Generate scene ``index`` into ``out_root/synth_{index:04d}`` (atomic). Returns its directory."""
    rng = scene_rng(config.seed, index)
    layout = generate_layout(rng, num_objects=config.num_objects, room_shape=config.room_shape,  # type: ignore[arg-type]
                             clutter=config.clutter)
    w2c = generate_trajectory(layout, rng, num_frames=config.num_frames, fps=config.fps)
    K = synthetic_intrinsics(config)
    cameras = Cameras.create(w2c, K, config.image_hw, source=f"synthetic scene {index}")
    name = scene_name(index)
    metadata = layout.to_dict()
    metadata["generator"] = {"name": "posevlm.synthetic", "index": index, "config": config.to_dict()}
    return write_native_scene(
        Path(out_root) / name,
        name=name,
        cameras=cameras,
        fps=config.fps,
        frames=_frames(layout, w2c, K, config.image_hw, on_frame),
        metadata=metadata,
        provenance={"seed": config.seed, "scene_index": index, "date": None},  # byte-identical reruns
        world={"up": "+z", "units": "m", "floor_z": 0.0},
    )


def _is_complete(scene_dir: Path, config: SynthConfig, index: int) -> bool:
    """True if ``scene_dir`` holds this exact scene; raises if it holds a different configuration."""
    if not (scene_dir / SCENE_JSON).is_file():
        return False
    try:
        scene = load_native_scene(scene_dir)
    except Exception:  # noqa: BLE001 - any failure means "not complete"; the caller never deletes it
        return False
    made_with = scene.metadata.get("generator", {})
    if made_with.get("config") != config.to_dict() or made_with.get("index") != index:
        raise ConfigError(
            f"{scene_dir} was generated with a different configuration ({made_with.get('config')}); "
            "choose another --out or move the old scenes away",
            field="out",
            value=str(scene_dir),
        )
    return True


def generate_dataset(
    out_root: str | Path,
    num_scenes: int,
    config: SynthConfig = SynthConfig(),
    *,
    start_index: int = 0,
    on_scene: Callable[[int, Path, bool], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> list[Path]:
    """Generate ``num_scenes`` scenes; complete scenes already on disk are kept, not regenerated.

    ``on_scene(index, path, skipped)`` is called after each scene. A directory that exists but does
    not load is reported as an error rather than deleted.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(start_index, start_index + num_scenes):
        target = out_root / scene_name(index)
        skipped = _is_complete(target, config, index)
        if target.exists() and not skipped:
            raise ConfigError(
                f"{target} exists but is not a complete scene; move it away (it is not deleted automatically)",
                field="out",
                value=str(target),
            )
        if not skipped:
            generate_scene(out_root, index, config, on_frame=on_frame)
        paths.append(target)
        if on_scene is not None:
            on_scene(index, target, skipped)
    return paths
