"""Top-down PNG of a posed scan: room outline and objects (when known), camera path coloured by time,
view directions, and a strip of frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posevlm.errors import ConfigError
from posevlm.geometry import camera_centers
from posevlm.scenes.scene import Scene

__all__ = ["plot_scene_topdown"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("plotting needs matplotlib: pip install 'posevlm[viz]'", field="plot") from exc
    return plt


def plot_scene_topdown(scene: Scene, out_path: str | Path, *, num_thumbnails: int = 6, arrows: int = 24) -> Path:
    """Write a PNG: left, the x-y plane seen from above (world +z up for synthetic scenes; other
    datasets are drawn in their own world x-y plane); right, evenly spaced frames."""
    if scene.cameras is None:
        raise ConfigError(f"scene {scene.name!r} has no cameras to plot", field="scene")
    plt = _pyplot()
    from matplotlib.patches import Polygon, Rectangle

    c = camera_centers(scene.cameras.w2c_opencv).numpy()
    forward = scene.cameras.c2w_opencv[:, :3, 2].numpy()  # camera +z (OpenCV forward) in world
    fig = plt.figure(figsize=(13, 6))
    ax = fig.add_axes([0.04, 0.08, 0.46, 0.84])
    room = scene.metadata.get("room")
    if room:
        ax.add_patch(Polygon(np.asarray(room["polygon_xy"]), closed=True, fill=False, lw=2, color="black"))
    for obj in scene.metadata.get("objects", []):
        (x, y, _), (sx, sy, _) = obj["center"], obj["size"]
        color = np.asarray(obj.get("color_rgb", (120, 120, 120))) / 255.0
        ax.add_patch(Rectangle((x - sx / 2, y - sy / 2), sx, sy, color=color, alpha=0.6))
        ax.text(x, y, f"{obj['category']}#{obj['instance_id']}", fontsize=6, ha="center", va="center")
    sc = ax.scatter(c[:, 0], c[:, 1], c=np.arange(len(c)), cmap="viridis", s=3)
    step = max(1, len(c) // arrows)
    ax.quiver(c[::step, 0], c[::step, 1], forward[::step, 0], forward[::step, 1], color="crimson", width=0.003,
              scale=12)
    ax.set_aspect("equal")
    ax.set_xlabel("world x")
    ax.set_ylabel("world y")
    ax.set_title(f"{scene.name}: {scene.num_frames} frames, path {np.linalg.norm(np.diff(c, axis=0), axis=1).sum():.1f}")
    fig.colorbar(sc, ax=ax, label="frame position", fraction=0.04)
    picks = np.linspace(0, scene.num_frames - 1, num_thumbnails).round().astype(int)
    frames = scene.read_rgb(scene.frame_ids[picks])
    cols = 2
    rows = int(np.ceil(num_thumbnails / cols))
    for k, (pos, img) in enumerate(zip(picks, frames)):
        r, col = divmod(k, cols)
        tax = fig.add_axes([0.54 + col * 0.23, 0.92 - (r + 1) * (0.84 / rows), 0.22, 0.84 / rows - 0.05])
        tax.imshow(img)
        tax.set_axis_off()
        tax.set_title(f"frame {int(scene.frame_ids[pos])}", fontsize=8)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
