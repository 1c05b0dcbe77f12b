"""Sampling report: self-contained HTML, camera centres as -R^T t (not the translation column, spec
F10), frustums along camera +z, graceful fallbacks, the PNG figure and the ``viz sampling`` CLI."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from posevlm.cli.viz import viz_app
from posevlm.errors import InputFileError
from posevlm.geometry import K_from_params, axis_angle_to_matrix, c2w_to_w2c, camera_centers, se3_from_Rt, w2c_to_c2w
from posevlm.viz.sampling_report import (
    frustum_vertices,
    load_sampling_output,
    trajectory_figure,
    write_sampling_report_html,
    write_sampling_report_png,
)

HW = (48, 64)


def random_trajectory(seed: int, n: int) -> torch.Tensor:
    """(n, 4, 4) w2c_opencv of a smooth random walk: rotations drift, centres take random steps."""
    g = np.random.default_rng(seed)
    rotvec = np.array([1.2, 0.3, 0.5]) + np.cumsum(g.normal(scale=0.08, size=(n, 3)), axis=0)
    centers = np.cumsum(g.normal(scale=0.1, size=(n, 3)), axis=0) + np.array([2.0, -1.0, 1.5])
    c2w = se3_from_Rt(axis_angle_to_matrix(torch.from_numpy(rotvec)), torch.from_numpy(centers))
    return c2w_to_w2c(c2w)


def make_output(root: Path, *, seed: int = 0, pool_size: int = 40, num_frames: int = 8, with_pool: bool = True,
                with_frame_cameras: bool = True, strategy: str = "pose_fps") -> Path:
    """A scene output dir as the sampler writes it: PNGs, selected_frames.json, pool_geometry.npz.
    Neighbor pairing; the last pair is a duplicate (anchor repeated)."""
    root.mkdir(parents=True)
    w2c = random_trajectory(seed, pool_size)
    K = K_from_params(torch.full((pool_size,), 70.0), 70.0, HW[1] / 2, HW[0] / 2)
    frame_ids = np.arange(pool_size, dtype=np.int64) * 7
    anchors = np.linspace(0, pool_size - 2, num_frames // 2).round().astype(int)
    selected = []
    for pair_id, a in enumerate(anchors):
        last = pair_id == len(anchors) - 1
        for k, (row, role) in enumerate([(a, "anchor"), (a, "duplicate") if last else (a + 1, "companion")]):
            suffix = "_2" if role == "duplicate" else ""
            file = f"scene0_frame_{frame_ids[row]:06d}{suffix}.png"
            Image.fromarray(np.full((*HW, 3), (row * 6, 80 + 40 * k, 200), np.uint8)).save(root / file)
            cams = with_frame_cameras and row % 3 != 0  # some entries rely on pool_geometry
            selected.append(dict(
                position=len(selected), frame_id=int(frame_ids[row]), pool_index=int(row), timestamp_s=row / 30,
                role=role, pair_id=pair_id, file=file, w2c_opencv=w2c[row].tolist() if cams else None,
                K_pixels=K[row].tolist() if cams else None, image_hw=list(HW) if cams else None))
    manifest = dict(
        schema_version=2, format="posevlm.sampling_manifest", scene_name="scene0", dataset="synthetic",
        slug=f"{strategy}_n{num_frames}_neighbor_s0", strategy=dict(name=strategy, params=dict(start="medoid")),
        pairing=dict(name="neighbor", params=dict(step=1)), seed=0, num_frames=num_frames,
        video=dict(n_frames=pool_size * 7, fps=30.0, height=HW[0], width=HW[1]),
        pool=dict(policy="uniform", size=pool_size, frame_ids=frame_ids.tolist()), selected=selected,
        anchors=[int(frame_ids[a]) for a in anchors], pose_source="gt", pose_convention="w2c_opencv",
        stats=dict(coverage_ratio=0.8125, n_fallbacks=1, duplicate_ratio=0.125), timings_ms=dict(select=1.5),
        provenance=dict(posevlm="0.1.0", git="abc123"), selected_frames=[e["frame_id"] for e in selected],
        selected_pool_indices=[e["pool_index"] for e in selected])
    (root / "selected_frames.json").write_text(json.dumps(manifest))
    if with_pool:
        np.savez(root / "pool_geometry.npz", frame_ids=frame_ids, w2c_opencv=w2c.numpy(), K_pixels=K.numpy(),
                 image_hw=np.tile(np.array(HW, np.int64), (pool_size, 1)))
    return root


def thumbnails(page: str) -> list[str]:
    """Base64 payloads of the page's <img> tags (the plotly bundle holds a data URI of its own)."""
    return re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def without_plotly_bundle(page: str) -> str:
    return re.sub(r"<script[^>]*>[^<]*plotly\.js v.*?</script>", "<script></script>", page, count=1, flags=re.S)


def traces(fig, name):
    return [t for t in fig.data if t.name == name]


def xyz(trace) -> np.ndarray:
    return np.array([trace.x, trace.y, trace.z], dtype=float).T


def test_html_is_self_contained_with_one_thumbnail_per_frame(tmp_path):
    out = make_output(tmp_path / "scene0")
    page = write_sampling_report_html([out / "selected_frames.json"], tmp_path / "r.html").read_text()
    assert "plotly.js v" in page and "Plotly.newPlot" in page  # bundle inlined, not fetched
    assert re.search(r"<script[^>]*\bsrc=|<link\b|<iframe\b|@import", page) is None
    ours = without_plotly_bundle(page)  # the bundle's map-attribution strings mention https links
    assert len(ours) < 0.2 * len(page) and re.search(r"https?://|=\s*[\"']//", ours) is None
    assert re.findall(r"<img [^>]*src=\"(?!data:)", page) == []
    assert len(thumbnails(page)) == 8
    assert "coverage_ratio" in page and "0.8125" in page and "pose_fps_n8_neighbor_s0" in page and "abc123" in page
    capped = write_sampling_report_html([out], tmp_path / "capped.html", max_thumbnails=4).read_text()
    assert len(thumbnails(capped)) == 4 and "showing 4 of 8 frames" in capped


def test_thumbnails_are_downscaled(tmp_path):
    out = make_output(tmp_path / "scene0", num_frames=2)
    Image.new("RGB", (1280, 960), "white").save(out / json.loads((out / "selected_frames.json").read_text())
                                                ["selected"][0]["file"])
    page = write_sampling_report_html([out], tmp_path / "r.html").read_text()
    sizes = [Image.open(io.BytesIO(base64.b64decode(t))).size for t in thumbnails(page)]
    assert sizes == [(160, 120), HW[::-1]]  # large frames shrink to 160 px wide; small ones are kept


def test_plotted_centres_are_minus_RT_t_not_the_translation_column(tmp_path):
    loaded = load_sampling_output(make_output(tmp_path / "scene0"))
    pool_w2c = torch.from_numpy(loaded.pool_geometry["w2c_opencv"])
    fig = trajectory_figure(loaded.manifest, loaded.pool_geometry)
    (pool,) = traces(fig, "pool")
    np.testing.assert_allclose(xyz(pool), camera_centers(pool_w2c).numpy(), atol=1e-9)
    assert np.abs(xyz(pool) - pool_w2c[:, :3, 3].numpy()).max() > 0.5  # the research plots' F10 bug
    rows = [e["pool_index"] for e in loaded.manifest["selected"]]
    seen = set()
    for role in ("anchor", "companion", "duplicate"):
        (trace,) = traces(fig, role)
        positions = list(trace.customdata)
        seen.update(positions)
        expected = camera_centers(pool_w2c[[rows[p] for p in positions]]).numpy()
        np.testing.assert_allclose(xyz(trace), expected, atol=1e-9)
    assert seen == set(range(8))
    (pairs,) = traces(fig, "pairs (temporal patch)")
    assert len(pairs.x) == 3 * 4  # one segment (a, b, None) per pair, the duplicate's has zero length
    assert fig.layout.scene.aspectmode == "data"


def test_frustum_apex_at_centre_pointing_along_camera_plus_z():
    w2c = random_trajectory(3, 5)
    K = K_from_params(torch.full((5,), 50.0), 50.0, HW[1] / 2, HW[0] / 2)  # centred principal point
    hw = np.tile(HW, (5, 1))
    verts = frustum_vertices(w2c.numpy(), K.numpy(), hw, depth=0.3)
    assert verts.shape == (5, 5, 3)
    np.testing.assert_allclose(verts[:, 0], camera_centers(w2c).numpy(), atol=1e-12)
    axis = (verts[:, 1:].mean(axis=1) - verts[:, 0]) / 0.3
    np.testing.assert_allclose(axis, w2c_to_c2w(w2c)[:, :3, 2].numpy(), atol=1e-12)  # unit length, along +z
    top_width = np.linalg.norm(verts[:, 2] - verts[:, 1], axis=1)
    np.testing.assert_allclose(top_width, 0.3 * HW[1] / 50.0, atol=1e-12)  # base size from the field of view
    wide = frustum_vertices(w2c.numpy(), (K * torch.tensor([[0.5], [0.5], [1.0]])).numpy(), hw, depth=0.3)
    assert np.all(np.linalg.norm(wide[:, 2] - wide[:, 1], axis=1) > top_width)


def test_figure_frustums_start_at_selected_centres(tmp_path):
    loaded = load_sampling_output(make_output(tmp_path / "scene0"))
    fig = trajectory_figure(loaded.manifest, loaded.pool_geometry)
    (anchors,) = traces(fig, "anchor")
    (frusta,) = traces(fig, "frustums anchor")
    points = np.array([p for p in zip(frusta.x, frusta.y, frusta.z) if p[0] is not None], dtype=float)
    for centre in xyz(anchors):  # every apex is a vertex of the drawn pyramids
        assert np.min(np.linalg.norm(points - centre, axis=1)) < 1e-9


def test_missing_pool_geometry_and_cameras_are_reported(tmp_path):
    out = make_output(tmp_path / "scene0", with_pool=False)
    loaded = load_sampling_output(out)
    assert loaded.pool_geometry is None
    fig = trajectory_figure(loaded.manifest, None)
    names = {t.name for t in fig.data}
    assert "pool" not in names and "selected path" in names and "anchor" in names
    page = write_sampling_report_html([out], tmp_path / "r.html").read_text()
    assert "pool_geometry.npz not found" in page and "have no camera and are not plotted" in page
    bare = make_output(tmp_path / "bare", with_pool=False, with_frame_cameras=False)
    page = write_sampling_report_html([bare], tmp_path / "bare.html").read_text()
    assert "8 of 8 selected frames have no camera" in page and len(thumbnails(page)) == 8
    assert write_sampling_report_png(bare / "selected_frames.json", tmp_path / "bare.png").stat().st_size > 5_000


def test_png_figure(tmp_path):
    out = make_output(tmp_path / "scene0", num_frames=16)
    png = write_sampling_report_png(out / "selected_frames.json", tmp_path / "fig.png")
    assert png.stat().st_size > 30_000
    with Image.open(png) as img:
        assert img.size[0] > 1000


def test_cli_two_manifests_with_png(tmp_path):
    a = make_output(tmp_path / "uniform" / "scene0", strategy="uniform")
    b = make_output(tmp_path / "pose_fps" / "scene0", seed=1)
    result = CliRunner().invoke(viz_app, ["sampling", str(a), str(b / "selected_frames.json"), "--png"])
    assert result.exit_code == 0, result.output
    page = (a / "report.html").read_text()
    assert page.count("<section") == 2 and page.count("plotly.js v") == 1 and 'href="#s1"' in page
    assert (a / "selected_frames_report.png").is_file() and (b / "selected_frames_report.png").is_file()
    result = CliRunner().invoke(viz_app, ["sampling", str(a), "--out", str(tmp_path / "x" / "one.html")])
    assert result.exit_code == 0 and (tmp_path / "x" / "one.html").is_file()


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"selected_frames": [1, 2]})])
def test_cli_names_a_missing_or_invalid_manifest(tmp_path, content):
    target = tmp_path / "scene0"
    target.mkdir()
    if content is not None:
        (target / "selected_frames.json").write_text(content)
    result = CliRunner().invoke(viz_app, ["sampling", str(target)])
    assert result.exit_code != 0 and isinstance(result.exception, InputFileError)
    assert str(target / "selected_frames.json") in str(result.exception)
