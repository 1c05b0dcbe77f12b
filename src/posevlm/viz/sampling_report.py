"""Visual report of frame selections: a self-contained HTML page (3-D trajectory with frustums,
thumbnail strip, statistics) and a matplotlib PNG for papers, read from sampler output directories.

Notation: P pool frames, S selected frames (``num_frames`` in the manifest). Camera centres are
``-R^T t`` of ``w2c_opencv`` (:func:`posevlm.geometry.camera_centers`), never the translation
column, which is ``-R c`` (the research plots' bug, spec sampling.md F10). Frustums point along the
camera +z axis (OpenCV forward) of ``c2w_opencv``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from posevlm.errors import ConfigError, InputFileError
from posevlm.geometry import camera_centers, transform_points, w2c_to_c2w
from posevlm.sampling.manifest import MANIFEST_NAME, POOL_GEOMETRY_NAME, read_manifest

__all__ = [
    "SamplingOutput", "resolve_manifest_path", "load_sampling_output", "frustum_vertices",
    "trajectory_figure", "write_sampling_report_html", "write_sampling_report_png",
]  # fmt: skip

ROLE_COLORS = {"anchor": "#1f77b4", "companion": "#ff7f0e", "duplicate": "#d62728"}
DEFAULT_HFOV_DEG = 60.0  # frustums of cameras without K_pixels
THUMB_WIDTH = 160
_POOL_KEYS = ("frame_ids", "w2c_opencv", "K_pixels", "image_hw")
_EDGES = ((1, 2), (2, 3), (3, 4), (4, 1), (0, 1), (0, 2), (0, 3), (0, 4))  # of a (5, 3) frustum


@dataclass(frozen=True)
class SamplingOutput:
    """One scene's sampler output as read from disk.

    Attributes:
        manifest_path: the ``selected_frames.json`` read.
        manifest: the parsed manifest (schema 2, ``format="posevlm.sampling_manifest"``).
        pool_geometry: ``frame_ids`` (P,), ``w2c_opencv`` (P, 4, 4), ``K_pixels`` (P, 3, 3),
            ``image_hw`` (P, 2) as numpy arrays, or None when ``pool_geometry.npz`` is absent.
        notes: what is missing or inconsistent, shown in the report.
    """

    manifest_path: Path
    manifest: dict[str, Any]
    pool_geometry: dict[str, np.ndarray] | None
    notes: list[str] = field(default_factory=list)


def resolve_manifest_path(path: str | Path) -> Path:
    """A manifest file, or a scene output directory holding ``selected_frames.json``."""
    path = Path(path)
    candidate = path / MANIFEST_NAME if path.is_dir() else path
    if not candidate.is_file():
        raise InputFileError(f"no sampling manifest at {candidate}. Pass a {MANIFEST_NAME} or the scene "
                             "output directory written by `posevlm sample`.", path=candidate)
    return candidate


def load_sampling_output(path: str | Path) -> SamplingOutput:
    """Read a manifest (file or scene directory) and the ``pool_geometry.npz`` beside it, if any.

    Raises:
        InputFileError: naming the path, if the manifest is missing, not JSON or has no ``selected``
            list (schema 1), or the pool geometry lacks a key.
        SchemaVersionError: if the manifest is newer than this posevlm reads.
    """
    manifest_path = resolve_manifest_path(path)
    manifest = read_manifest(manifest_path)
    if not isinstance(manifest.get("selected"), list):
        raise InputFileError(f"{manifest_path} is not a posevlm sampling manifest (schema 2): it has no "
                             "'selected' list. Manifests of the research code carry only 'selected_frames'; "
                             "re-run `posevlm sample` to get cameras and roles.", path=manifest_path)
    geometry_path = manifest_path.parent / POOL_GEOMETRY_NAME
    if not geometry_path.is_file():
        return SamplingOutput(manifest_path, manifest, None,
                              [f"{POOL_GEOMETRY_NAME} not found: the pool trajectory is not drawn"])
    with np.load(geometry_path) as npz:
        missing = [k for k in _POOL_KEYS if k not in npz.files]
        if missing:
            raise InputFileError(f"{geometry_path} lacks {missing}; expected keys {list(_POOL_KEYS)}",
                                 path=geometry_path)
        pool = {k: np.asarray(npz[k]) for k in _POOL_KEYS}
    listed = (manifest.get("pool") or {}).get("frame_ids")
    notes = []
    if listed is not None and not np.array_equal(np.asarray(listed), pool["frame_ids"]):
        notes.append(f"{POOL_GEOMETRY_NAME} frame ids differ from the manifest's pool.frame_ids")
    return SamplingOutput(manifest_path, manifest, pool, notes)


def frustum_vertices(w2c_opencv: np.ndarray, K_pixels: np.ndarray, image_hw: np.ndarray,
                     depth: float) -> np.ndarray:
    """Camera pyramids in world coordinates.

    Args:
        w2c_opencv: (S, 4, 4) world-to-camera, OpenCV axes.
        K_pixels: (S, 3, 3) intrinsics in pixels of an ``image_hw`` image.
        image_hw: (S, 2) image (H, W).
        depth: distance of the base plane from the apex along the camera +z axis (world units).
    Returns:
        (S, 5, 3): the apex (camera centre) then the image corners top-left, top-right, bottom-right,
        bottom-left back-projected to camera z = ``depth``; the field of view sets the base size.
    """
    w2c = torch.as_tensor(np.asarray(w2c_opencv, dtype=np.float64))
    K = np.asarray(K_pixels, dtype=np.float64)
    h, w = np.asarray(image_hw, dtype=np.float64).T
    zero, one = np.zeros_like(w), np.ones_like(w)
    pixels = np.stack([np.stack([zero, w, w, zero], -1), np.stack([zero, zero, h, h], -1),
                       np.stack([one] * 4, -1)], -1)  # (S, 4, 3) homogeneous corners (u, v, 1)
    rays = pixels @ np.linalg.inv(K).transpose(0, 2, 1)  # camera z == 1
    base = transform_points(w2c_to_c2w(w2c), torch.as_tensor(rays * depth))
    return torch.cat([camera_centers(w2c)[:, None], base], dim=1).numpy()


def _pair_id(entry: Mapping[str, Any]) -> int:
    pair = entry.get("pair_id")
    return int(pair) if pair is not None else int(entry["position"]) // 2


def _selected_cameras(manifest: Mapping[str, Any], pool: Mapping[str, np.ndarray] | None):
    """(S, 4, 4) w2c (NaN where unknown), (S, 3, 3) K, (S, 2) hw, (S,) has-pose mask, notes. Cameras
    come from the manifest entry, else from the pool geometry row with the same frame id."""
    selected, video = manifest["selected"], manifest.get("video") or {}
    n = len(selected)
    w2c, K, hw = np.full((n, 4, 4), np.nan), np.full((n, 3, 3), np.nan), np.zeros((n, 2))
    row_of = {int(f): i for i, f in enumerate(pool["frame_ids"])} if pool is not None else {}
    no_pose, no_K = [], []
    for s, entry in enumerate(selected):
        row = row_of.get(int(entry["frame_id"]))
        for key, dest in (("w2c_opencv", w2c), ("K_pixels", K), ("image_hw", hw)):
            value = entry.get(key)
            if value is None and row is not None:
                value = pool[key][row]
            if value is not None:
                dest[s] = value
        if not hw[s].all():
            hw[s] = (video.get("height") or 3, video.get("width") or 4)
        if not np.isfinite(w2c[s]).all():
            no_pose.append(entry["frame_id"])
        elif not np.isfinite(K[s]).all():
            no_K.append(entry["frame_id"])
        if not np.isfinite(K[s]).all():
            f = (hw[s, 1] / 2) / np.tan(np.radians(DEFAULT_HFOV_DEG) / 2)
            K[s] = [[f, 0, hw[s, 1] / 2], [0, f, hw[s, 0] / 2], [0, 0, 1]]
    notes = []
    if no_pose:
        notes.append(f"{len(no_pose)} of {n} selected frames have no camera and are not plotted "
                     f"(frame ids {no_pose})")
    if no_K:
        notes.append(f"no K_pixels for frame ids {no_K}: frustums assume a {DEFAULT_HFOV_DEG:.0f} deg "
                     "horizontal field of view")
    return w2c, K, hw, np.isfinite(w2c).all(axis=(1, 2)), notes


def _up_axis(w2c_opencv: np.ndarray) -> tuple[int, float]:
    """World axis (and sign) closest to the mean camera up (-y of c2w_opencv); +z when unknown."""
    if len(w2c_opencv) == 0:
        return 2, 1.0
    up = -w2c_to_c2w(torch.as_tensor(w2c_opencv)).numpy()[:, :3, 1].mean(axis=0)
    axis = int(np.argmax(np.abs(up)))
    return axis, float(np.sign(up[axis]) or 1.0)


@dataclass(frozen=True)
class _Drawing:
    """What both plots draw, in world coordinates (only selected frames with a camera)."""

    pool_centers: np.ndarray  # (P', 3)
    pool_ids: np.ndarray  # (P',)
    entries: list[dict]  # manifest entries of the plotted selected frames
    centers: np.ndarray  # (S', 3)
    frusta: np.ndarray  # (S', 5, 3)
    segments: list[np.ndarray]  # (2, 3) per pair with two plotted frames
    up: tuple[int, float]
    notes: list[str]

    def role_mask(self, role: str) -> np.ndarray:
        return np.array([e.get("role", "anchor") == role for e in self.entries], dtype=bool)


def _drawing(manifest: Mapping[str, Any], pool: Mapping[str, np.ndarray] | None,
             frustum_scale: float = 0.06) -> _Drawing:
    w2c, K, hw, has_pose, notes = _selected_cameras(manifest, pool)
    pool_w2c, pool_ids = np.zeros((0, 4, 4)), np.zeros(0, dtype=np.int64)
    if pool is not None:
        finite = np.isfinite(pool["w2c_opencv"]).all(axis=(1, 2))
        pool_w2c, pool_ids = pool["w2c_opencv"][finite], pool["frame_ids"][finite]
    pool_c = camera_centers(torch.as_tensor(pool_w2c)).numpy()
    sel_c = camera_centers(torch.as_tensor(w2c[has_pose])).numpy()
    all_c = np.concatenate([pool_c, sel_c])
    extent = float(np.ptp(all_c, axis=0).max()) if len(all_c) else 0.0
    depth = frustum_scale * (extent if extent > 0 else 1.0)
    entries = [e for e, ok in zip(manifest["selected"], has_pose) if ok]
    pairs: dict[int, list[np.ndarray]] = {}
    for e, c in zip(entries, sel_c):
        pairs.setdefault(_pair_id(e), []).append(c)
    frusta = frustum_vertices(w2c[has_pose], K[has_pose], hw[has_pose], depth)
    segments = [np.stack(p[:2]) for p in pairs.values() if len(p) >= 2]
    up = _up_axis(pool_w2c if len(pool_w2c) else w2c[has_pose])
    return _Drawing(pool_c, pool_ids, entries, sel_c, frusta, segments, up, notes)


def _polyline(segments: Sequence[np.ndarray]) -> tuple[list, list, list]:
    """Segments (k, 2, 3) as one plotly line with None breaks."""
    xyz: list[list] = [[], [], []]
    for a, b in segments:
        for axis in range(3):
            xyz[axis] += [float(a[axis]), float(b[axis]), None]
    return xyz[0], xyz[1], xyz[2]


def trajectory_figure(manifest: Mapping[str, Any], pool_geometry: Mapping[str, np.ndarray] | None = None,
                      *, frustum_scale: float = 0.06):
    """3-D plotly figure of one selection (a ``plotly.graph_objects.Figure``).

    Traces: ``pool`` (grey line through the pool's camera centres; without pool geometry a dashed
    ``selected path`` joins the selected frames instead), one marker trace per role present
    (``anchor``, ``companion``, ``duplicate``; ``customdata`` holds manifest positions),
    ``pairs (temporal patch)`` (segments joining the two frames of one ``pair_id``) and
    ``frustums <role>`` (pyramids of depth ``frustum_scale`` x trajectory extent, base sized by the
    field of view). Equal aspect ratio, orthographic view, world up from the mean camera up.
    """
    return _figure(manifest, _drawing(manifest, pool_geometry, frustum_scale))


def _figure(manifest: Mapping[str, Any], d: _Drawing):
    import plotly.graph_objects as go

    fig = go.Figure()

    def line(points: np.ndarray, name: str, **style):
        fig.add_trace(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], mode="lines", name=name,
                                   line=style, hoverinfo="skip"))

    if len(d.pool_centers):
        line(d.pool_centers, "pool", color="#9a9a9a", width=3)
        fig.data[-1].update(text=[f"frame {i}" for i in d.pool_ids], hoverinfo="text")
    elif len(d.centers):
        line(d.centers, "selected path", color="#9a9a9a", width=2, dash="dash")
    if d.segments:
        x, y, z = _polyline(d.segments)
        fig.add_trace(go.Scatter3d(x=x, y=y, z=z, mode="lines", name="pairs (temporal patch)",
                                   hoverinfo="skip", line=dict(color="black", width=5)))
    for role, color in ROLE_COLORS.items():
        mask = d.role_mask(role)
        if not mask.any():
            continue
        c, picked = d.centers[mask], [e for e, m in zip(d.entries, mask) if m]
        dup = role == "duplicate"
        fig.add_trace(go.Scatter3d(
            x=c[:, 0], y=c[:, 1], z=c[:, 2], mode="markers", name=role, legendgroup=role,
            customdata=[e["position"] for e in picked], hoverinfo="text",
            marker=dict(color=color, size=7 if dup else 5, symbol="diamond-open" if dup else "circle"),
            text=[f"#{e['position']} frame {e['frame_id']} pair {_pair_id(e)}" for e in picked]))
        x, y, z = _polyline([f[[a, b]] for f in d.frusta[mask] for a, b in _EDGES])
        fig.add_trace(go.Scatter3d(x=x, y=y, z=z, mode="lines", name=f"frustums {role}", hoverinfo="skip",
                                   legendgroup=role, showlegend=False, line=dict(color=color, width=2)))
    axis, sign = d.up
    camera = dict(up=dict(zip("xyz", [sign * (i == axis) for i in range(3)])),
                  eye=dict(zip("xyz", [sign if i == axis else -1.4 for i in range(3)])),
                  projection=dict(type="orthographic"))
    fig.update_layout(
        scene=dict(aspectmode="data", xaxis_title="world x", yaxis_title="world y", zaxis_title="world z",
                   camera=camera),
        margin=dict(l=0, r=0, t=30, b=0), height=560, legend=dict(itemsizing="constant"),
        title=dict(text=f"{manifest.get('scene_name', '?')}: camera centres (-R^T t of w2c)", x=0.02))
    return fig


def _thumbnail_png(path: Path, width: int = THUMB_WIDTH) -> bytes | None:
    """PNG bytes of the image shrunk to ``width`` pixels wide (never enlarged); None if absent."""
    from PIL import Image

    if not path.is_file():
        return None
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((width, 10 * width))
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _frame_file(out: SamplingOutput, entry: Mapping[str, Any]) -> Path:
    return out.manifest_path.parent / Path(str(entry.get("file") or "")).name  # stay inside the scene dir


def _shown_positions(selected: Sequence[Mapping[str, Any]], cap: int) -> list[int]:
    """Up to ``cap`` manifest positions: whole pairs, evenly spread over the selection."""
    groups: dict[int, list[int]] = {}
    for s, e in enumerate(selected):
        groups.setdefault(_pair_id(e), []).append(s)
    pairs = list(groups.values())
    per = max((len(g) for g in pairs), default=1)
    if len(selected) <= cap or cap < per:
        return list(range(min(len(selected), cap)))
    keep = np.unique(np.linspace(0, len(pairs) - 1, cap // per).round().astype(int))
    return [s for k in keep for s in pairs[k]]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return "—" if value is None else str(value)


def _pool_size(m: Mapping[str, Any]) -> Any:
    """Frames in the candidate pool (``pool.size`` is the linspace setting, not a count)."""
    pool = m.get("pool") or {}
    return len(pool["frame_ids"]) if pool.get("frame_ids") is not None else pool.get("size")


def _stat_rows(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the statistics table: config, sizes, every stat and timing present."""
    strategy, pairing = m.get("strategy") or {}, m.get("pairing") or {}
    video, pool = m.get("video") or {}, m.get("pool") or {}
    rows = [("scene", f"{m.get('scene_name')} ({m.get('dataset')})"), ("slug", m.get("slug")),
            ("strategy", strategy.get("name")), ("strategy params", strategy.get("params")),
            ("pairing", pairing.get("name")), ("pairing params", pairing.get("params")),
            ("seed", m.get("seed")), ("N (num_frames)", m.get("num_frames", len(m["selected"]))),
            ("pool", f"{_pool_size(m)} frames, " + _fmt({k: v for k, v in pool.items() if k != "frame_ids"})),
            ("video", f"{video.get('n_frames')} frames, {_fmt(video.get('fps'))} fps, "
                      f"{video.get('height')}x{video.get('width')} (HxW)"),
            ("pose source", f"{_fmt(m.get('pose_source'))} ({m.get('pose_convention', 'w2c_opencv')})")]
    rows += [(f"stat: {k}", v) for k, v in (m.get("stats") or {}).items()]
    rows += [(f"time: {k}", f"{_fmt(v)} ms") for k, v in (m.get("timings_ms") or {}).items()]
    return [(label, _fmt(value)) for label, value in rows]


def _thumb_strip(out: SamplingOutput, cap: int) -> str:
    selected, esc = out.manifest["selected"], html.escape
    shown = _shown_positions(selected, cap)
    cells = []
    for s in shown:
        e = selected[s]
        role, t = str(e.get("role", "anchor")), e.get("timestamp_s")
        data = _thumbnail_png(_frame_file(out, e))
        img = (f'<img alt="frame {esc(str(e["frame_id"]))}" src="data:image/png;base64,'
               f'{base64.b64encode(data).decode()}">' if data else
               f'<div class="missing">missing {esc(str(e.get("file")))}</div>')
        caption = esc(f"#{e['position']} · frame {e['frame_id']}") + "<br>" + esc(
            f"{role} · pair {_pair_id(e)}" + (f" · {t:.2f}s" if t is not None else ""))
        cells.append(f'<figure style="border-color:{ROLE_COLORS.get(role, "#888")}">{img}'
                     f"<figcaption>{caption}</figcaption></figure>")
    more = (f"<p class='note'>showing {len(shown)} of {len(selected)} frames (whole pairs)</p>"
            if len(shown) < len(selected) else "")
    return f'<div class="strip">{"".join(cells)}</div>{more}'


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}section{border-top:2px solid #ccc}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.row{display:grid;grid-template-columns:minmax(0,1fr) 380px;gap:1em}.plot{min-width:0;overflow:hidden}
@media(max-width:1000px){.row{grid-template-columns:minmax(0,1fr)}}
.strip{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;border-top:4px solid;width:160px;font-size:11px}
figure img{width:160px;display:block}.missing{height:90px;background:#eee;font-size:10px;overflow:hidden}
.note{background:#fff4d6;padding:2px 8px;font-size:13px}code,pre{font-size:12px}.wide{overflow-x:auto}"""


def _section(out: SamplingOutput, index: int, cap: int) -> str:
    m, esc = out.manifest, html.escape
    drawing = _drawing(m, out.pool_geometry)
    plot = _figure(m, drawing).to_html(full_html=False, include_plotlyjs=index == 0,
                                       config={"displaylogo": False})  # the bundle once, inlined
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _stat_rows(m))
    strategy, pairing = (m.get("strategy") or {}).get("name"), (m.get("pairing") or {}).get("name")
    title = f"{m.get('scene_name')} — {strategy} / {pairing}"
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in out.notes + drawing.notes)
    return (f'<section id="s{index}"><h2>{esc(title)}</h2><p><code>{esc(str(m.get("slug")))}</code> · '
            f"{esc(str(out.manifest_path))}</p>{notes}<div class='row'><div class='plot'>{plot}</div>"
            f"<div class='stats'><table>{table}</table></div></div><h3>Selected frames (manifest order)</h3>"
            f"{_thumb_strip(out, cap)}<details><summary>provenance</summary>"
            f"<pre>{esc(json.dumps(m.get('provenance') or {}, indent=1))}</pre></details></section>")


def _comparison(outputs: Sequence[SamplingOutput]) -> str:
    """One row per manifest: config and the union of stats, for comparing strategies."""
    keys = list(dict.fromkeys(k for o in outputs for k in (o.manifest.get("stats") or {})))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["section", "strategy", "pairing", "N", *keys])
    rows = []
    for i, o in enumerate(outputs):
        m, stats = o.manifest, o.manifest.get("stats") or {}
        cells = [(m.get("strategy") or {}).get("name"), (m.get("pairing") or {}).get("name"),
                 m.get("num_frames"), *(stats.get(k) for k in keys)]
        link = f'<td><a href="#s{i}">{html.escape(str(m.get("scene_name")))}</a></td>'
        rows.append(f"<tr>{link}{''.join(f'<td>{html.escape(_fmt(c))}</td>' for c in cells)}</tr>")
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def write_sampling_report_html(manifest_paths: Sequence[Path], out_html: Path, *,
                               max_thumbnails: int = 32) -> Path:
    """Write one self-contained HTML page (plotly inlined, thumbnails as data URIs; opens offline)
    with one section per manifest (file or scene output directory), plus a comparison table when
    there are several. At most ``max_thumbnails`` frames per section (whole pairs, evenly spread).
    Returns ``out_html``."""
    if not manifest_paths:
        raise ConfigError("manifest_paths is empty; pass at least one selected_frames.json or scene "
                          "directory", field="manifest_paths")
    outputs = [load_sampling_output(p) for p in manifest_paths]
    from posevlm import __version__

    body = "".join(_section(o, i, max_thumbnails) for i, o in enumerate(outputs))
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>posevlm sampling report</title>'
            f"<style>{_CSS}</style></head><body><h1>Sampling report</h1><p>posevlm {__version__} · "
            f"{len(outputs)} selection(s). Camera centres are -R<sup>T</sup>t of w2c_opencv; frustums point "
            f"along camera +z.</p>{_comparison(outputs) if len(outputs) > 1 else ''}{body}</body></html>")
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(page, encoding="utf-8")
    return out_html


def write_sampling_report_png(manifest_path: Path, out_png: Path) -> Path:
    """Paper figure: top-down and side views (world up axis guessed from the mean camera up) with
    the pool path, selected frames by role, pair segments and projected frustums; a caption line
    with the statistics; up to 16 thumbnails below. Returns ``out_png``."""
    from matplotlib.collections import LineCollection

    from posevlm.viz.scene_plot import _pyplot

    plt = _pyplot()
    out = load_sampling_output(manifest_path)
    m, d = out.manifest, _drawing(out.manifest, out.pool_geometry)
    up_axis = d.up[0]
    horiz = [a for a in range(3) if a != up_axis]
    shown = _shown_positions(m["selected"], 16)
    cols, thumb_rows = 8, -(-len(shown) // 8)
    fig = plt.figure(figsize=(12, 5.6 + 1.5 * thumb_rows))
    outer = fig.add_gridspec(2, 1, height_ratios=[4, max(thumb_rows, 0.01)], hspace=0.2, top=0.88,
                             bottom=0.02)
    for k, (ax_a, ax_b) in enumerate([horiz, (horiz[0], up_axis)]):
        ax = fig.add_subplot(outer[0].subgridspec(1, 2, wspace=0.2)[0, k])
        if len(d.pool_centers):
            ax.plot(d.pool_centers[:, ax_a], d.pool_centers[:, ax_b], color="#9a9a9a", lw=1, label="pool")
        if d.segments:
            pairs = [s[:, [ax_a, ax_b]] for s in d.segments]
            ax.add_collection(LineCollection(pairs, colors="black", lw=1.5, label="pairs (temporal patch)"))
        for role, color in ROLE_COLORS.items():
            mask = d.role_mask(role)
            if not mask.any():
                continue
            segs = [f[[a, b]][:, [ax_a, ax_b]] for f in d.frusta[mask] for a, b in _EDGES]
            ax.add_collection(LineCollection(segs, colors=color, lw=0.6, alpha=0.7))
            style = (dict(s=44, marker="D", facecolors="none", edgecolors=color) if role == "duplicate"
                     else dict(s=16, color=color))
            ax.scatter(d.centers[mask, ax_a], d.centers[mask, ax_b], label=role, zorder=3, **style)
        ax.set_aspect("equal", adjustable="datalim")
        ax.autoscale_view()
        ax.set_xlabel(f"world {'xyz'[ax_a]}")
        ax.set_ylabel(f"world {'xyz'[ax_b]}")
        ax.set_title("top-down" if k == 0 else "side", fontsize=10)
        if k == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    caption = [", ".join(f"{k}={_fmt(v)}" for k, v in (m.get("stats") or {}).items()), *out.notes, *d.notes]
    fig.suptitle(f"{m.get('scene_name')}: {(m.get('strategy') or {}).get('name')} / "
                 f"{(m.get('pairing') or {}).get('name')}, N={m.get('num_frames')}, "
                 f"pool {_pool_size(m)}", fontsize=12, y=0.985)
    fig.text(0.5, 0.935, "; ".join(c for c in caption if c), ha="center", va="top", fontsize=8, wrap=True)
    thumbs = outer[1].subgridspec(max(thumb_rows, 1), cols, wspace=0.05, hspace=0.3)
    for j, s in enumerate(shown):
        e = m["selected"][s]
        ax = fig.add_subplot(thumbs[j // cols, j % cols])
        data = _thumbnail_png(_frame_file(out, e), 240)
        if data:
            ax.imshow(plt.imread(io.BytesIO(data), format="png"))
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(ROLE_COLORS.get(e.get("role"), "#888"))
            spine.set_linewidth(2)
        ax.set_title(f"{e['frame_id']} {e.get('role', '')} p{_pair_id(e)}", fontsize=7)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out_png
