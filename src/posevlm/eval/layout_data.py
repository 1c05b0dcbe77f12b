"""Point-cloud task data from synthetic scans: point-cloud -> layout-script samples and point-cloud QA (thin I/O).

Each sample: the scan's SpatialLM point cloud (``posevlm.scenes.pointcloud.scene_point_cloud``, saved as ``.npz``)
and the layout script of its exact ground truth in the same frame (``layout_script.layout_from_metadata`` shifted
by the cloud's origin), with the instruction :data:`~posevlm.eval.layout_script.LAYOUT_PROMPT`. Records (one JSON
line each, ``LAYOUT_DATA_VERSION``)::

    {"id", "dataset", "scene_name", "point_cloud": "clouds/<scene>.npz", "prompt", "target", "meta": {...}}

``meta`` holds the cloud recipe (frames, pixel stride, grid size, bins), the cloud's origin and the counts of walls
and boxes. Scoring a model's outputs: ``layout_script.score_layout(output, record["target"])``; as a benchmark:
``synthetic_layout`` (``posevlm.eval.benchmarks.point_tasks``, task format ``layout``).

:func:`write_point_task_data` writes both point-cloud tasks of some scans into one folder: ``clouds/``,
``layout.jsonl`` and ``point_qa.jsonl`` (the synthetic VSI questions that need no views,
``point_tasks.POINT_QA_TYPES``, in the VSI-Bench schema: benchmark ``synthetic_point_qa``), so
``posevlm eval --frames point_cloud --frames-root <folder>`` finds every scene's cloud.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from posevlm.atomic import atomic_write_text
from posevlm.errors import InputFileError, SchemaVersionError
from posevlm.eval.layout_script import LAYOUT_PROMPT, Layout, layout_from_metadata

__all__ = ["LAYOUT_DATA_VERSION", "layout_sample", "write_layout_dataset", "read_layout_dataset",
           "write_point_task_data"]

LAYOUT_DATA_VERSION = 1


def layout_sample(scene, *, num_frames: int = 32, pixel_stride: int = 4, grid_size: float = 0.02,
                  num_bins: int = 1280):
    """(PointCloud, Layout) of one synthetic scan, both in the cloud's frame."""
    from posevlm.scenes.pointcloud import scene_point_cloud

    cloud = scene_point_cloud(scene, num_frames=num_frames, pixel_stride=pixel_stride, grid_size=grid_size,
                              num_bins=num_bins)
    layout: Layout = layout_from_metadata(scene.metadata, origin=cloud.origin)
    return cloud, layout


def write_layout_dataset(scene_dirs: Iterable[str | Path], out_dir: str | Path, *, num_frames: int = 32,
                         pixel_stride: int = 4, grid_size: float = 0.02, num_bins: int = 1280,
                         decimals: int = 2, dataset: str = "synthetic") -> Path:
    """Write ``out_dir/clouds/<scene>.npz`` and ``out_dir/layout.jsonl`` (one record per scan, in the given order).
    Returns the JSONL path. Scans are read with ``posevlm.scenes.load_scene``."""
    from posevlm.scenes import load_scene
    from posevlm.scenes.pointcloud import save_point_cloud

    out = Path(out_dir)
    (out / "clouds").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, scene_dir in enumerate(scene_dirs):
        scene = load_scene(scene_dir)
        cloud, layout = layout_sample(scene, num_frames=num_frames, pixel_stride=pixel_stride, grid_size=grid_size,
                                      num_bins=num_bins)
        rel = f"clouds/{scene.name}.npz"
        save_point_cloud(out / rel, cloud)
        record: dict[str, Any] = {
            "id": index, "dataset": dataset, "scene_name": scene.name, "point_cloud": rel, "prompt": LAYOUT_PROMPT,
            "target": layout.to_script(decimals),
            "meta": {"layout_data_version": LAYOUT_DATA_VERSION, "num_frames": num_frames,
                     "pixel_stride": pixel_stride, "grid_size": grid_size, "num_bins": num_bins,
                     "origin": [float(v) for v in cloud.origin], "points": len(cloud),
                     "walls": len(layout.walls), "boxes": len(layout.boxes)}}
        lines.append(json.dumps(record))
    return atomic_write_text(out / "layout.jsonl", "\n".join(lines) + ("\n" if lines else ""))


def read_layout_dataset(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``layout.jsonl``; ``point_cloud`` made absolute. Raises InputFileError /
    SchemaVersionError for a missing file or a newer version."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; write it with write_layout_dataset", path=path)
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{n} is not JSON ({exc})", path=path) from exc
        version = record.get("meta", {}).get("layout_data_version", LAYOUT_DATA_VERSION)
        if version > LAYOUT_DATA_VERSION:
            raise SchemaVersionError(f"{path}: layout_data_version {version} is newer than {LAYOUT_DATA_VERSION}; "
                                     "upgrade posevlm")
        record["point_cloud"] = str(path.parent / record["point_cloud"])
        records.append(record)
    return records


def write_point_task_data(scene_dirs: Iterable[str | Path], out_dir: str | Path, *, seed: int = 0,
                          max_per_type: int = 4, dataset: str = "synthetic", num_frames: int = 32,
                          pixel_stride: int = 4, grid_size: float = 0.02, num_bins: int = 1280,
                          decimals: int = 2) -> dict[str, Path]:
    """Both point-cloud tasks of some synthetic scans in ``out_dir``: ``clouds/<scene>.npz`` + ``layout.jsonl``
    (:func:`write_layout_dataset`) and ``point_qa.jsonl`` (the view-independent synthetic VSI questions of the same
    scans, ``generate_benchmark(..., seed, max_per_type)`` restricted to ``POINT_QA_TYPES``).
    Returns ``{"layout": path, "point_qa": path, "clouds": folder}``."""
    from posevlm.eval.benchmarks.point_tasks import POINT_QA_TYPES
    from posevlm.eval.benchmarks.synthetic_vsi import generate_benchmark, write_benchmark_jsonl

    scene_dirs = [Path(d) for d in scene_dirs]
    out = Path(out_dir)
    layout = write_layout_dataset(scene_dirs, out, num_frames=num_frames, pixel_stride=pixel_stride,
                                  grid_size=grid_size, num_bins=num_bins, decimals=decimals, dataset=dataset)
    questions = [r for r in generate_benchmark(scene_dirs, seed=seed, dataset=dataset, max_per_type=max_per_type)
                 if r["question_type"] in POINT_QA_TYPES]
    qa = write_benchmark_jsonl(questions, out / "point_qa.jsonl")
    return {"layout": layout, "point_qa": qa, "clouds": out / "clouds"}
