"""The sampling recipe: scenes x configurations -> frame folders + manifests, crash-safe.

Read top to bottom: discover scenes, pick this shard, skip what is complete, then per scene load it
once, build each pool's geometry once, select, pair, and write each output atomically. One bad scene
(or configuration) is recorded and the run goes on; the caller exits non-zero if anything failed.

Output layout (the evaluator's contract): ``OUT/<slug>/<dataset>/<scene>/`` holding
``selected_frames.json``, ``pool_geometry.npz`` and ``<scene>_frame_<id:06d>.png`` files, plus
``OUT/_runs/<run_id>/{summary.json, failures.json}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from posevlm.errors import ConfigError, InputFileError, PosevlmError
from posevlm.provenance import provenance
from posevlm.sampling.config import SamplingConfig
from posevlm.sampling.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    POOL_GEOMETRY_NAME,
    frame_file_names,
    manifest_is_complete,
)
from posevlm.sampling.pairing import PairedFrames, anchors_needed, pair_frames
from posevlm.sampling.pool import PoolConfig, candidate_pool
from posevlm.sampling.stats import min_distance_stats

__all__ = ["SceneRef", "scene_name_of", "discover_scenes", "resolve_shard", "scene_seed", "run_sampling", "RunSummary"]

@dataclass(frozen=True)
class SceneRef:
    dataset: str
    name: str
    path: str
    format: str


def scene_name_of(path: Path) -> str:
    """A scene's id: a folder's full name (``room.1`` stays ``room.1``), a video file's name without its video
    suffix (``scene0011_00.mp4`` -> ``scene0011_00``, the benchmark's ``scene_name``)."""
    from posevlm.scenes.loaders.video import VIDEO_SUFFIXES

    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return path.name[: -len(path.suffix)]
    return path.name


def discover_scenes(root: str | Path, *, problems: list[dict[str, Any]] | None = None) -> list[SceneRef]:
    """Scenes under ``root``: ``root`` itself, ``root/<scene>`` or ``root/<dataset>/<scene>`` (a
    directory any loader recognises, or a video file). Sorted by (dataset, name).

    Scene ids become output folders, so an id that is not one plain path component (``...mp4`` would be
    ``..``) or that collides with another scene of its dataset (``a.mp4`` next to ``a/``; names equal up to
    case) is refused, naming both inputs: appended to ``problems`` (then the scene is left out and the
    caller reports it) or raised as ``InputFileError`` when ``problems`` is None.
    """
    from posevlm.paths import name_key, name_problem
    from posevlm.scenes.loaders import detect_format

    root = Path(root)
    if not root.exists():
        raise InputFileError(f"data root {root} does not exist", path=root)

    def fmt(p: Path) -> str | None:
        try:
            return detect_format(p)
        except InputFileError:
            return None

    def hidden(p: Path) -> bool:
        """``_runs``, ``_geometry`` (posevlm's own folders) and dot entries are not scenes, except that a hidden
        *video file* (``...mp4``, ``.clip.mp4``) is refused below rather than skipped without a word."""
        return p.name.startswith("_") or (p.name.startswith(".") and fmt(p) != "video")

    found: list[SceneRef] = []
    if (f := fmt(root)) and f not in ("frames",):
        found = [SceneRef(root.parent.name or "data", scene_name_of(root), str(root), f)]
    else:
        for child in sorted(root.iterdir()):
            if hidden(child):
                continue
            if (f := fmt(child)) and f != "frames":
                found.append(SceneRef(root.name, scene_name_of(child), str(child), f))
            elif child.is_dir():
                for grandchild in sorted(child.iterdir()):
                    if not hidden(grandchild) and (g := fmt(grandchild)):
                        found.append(SceneRef(child.name, scene_name_of(grandchild), str(grandchild), g))
    if not found:
        raise InputFileError(f"no scenes found under {root} (looked at depth 0-2 for scene folders and videos)",
                             path=root)
    refused: dict[str, str] = {}
    by_key: dict[tuple[str, str], SceneRef] = {}
    for ref in found:
        if Path(ref.path).name.startswith("."):
            refused[ref.path] = f"video {ref.path} is hidden (its name starts with '.'); rename it to sample it"
        elif (problem := name_problem(ref.name)) is not None:
            refused[ref.path] = (f"scene id {problem} (from {ref.path}); rename the file or folder so that its "
                                 "name (without a video suffix) is a plain folder name")
            continue
        key = (name_key(ref.dataset), name_key(ref.name))
        if key in by_key:
            other = by_key[key]
            message = (f"scenes {other.path} and {ref.path} both get the id {ref.dataset}/{ref.name} (ids are folder "
                       "names; equal up to case collide on macOS / Windows); rename one of them")
            refused[other.path] = refused[ref.path] = message
        else:
            by_key[key] = ref
    for ref in found:
        if ref.path in refused:
            if problems is None:
                raise InputFileError(refused[ref.path], path=ref.path)
            problems.append({"scene": ref.name, "dataset": ref.dataset, "path": ref.path, "slug": None,
                             "error": "InputFileError", "message": refused[ref.path], "traceback": None})
    return sorted((r for r in found if r.path not in refused), key=lambda r: (r.dataset, r.name))


def resolve_shard(shard: str | None = None, env: Mapping[str, str] = os.environ) -> tuple[int, int, str]:
    """(index, count, source): ``--shard i/n`` wins, then torchrun (RANK / WORLD_SIZE), then SLURM arrays
    (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT), else (0, 1)."""
    if shard:
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like 2/8 (index/count); got {shard!r}", field="shard") from None
        source = "--shard"
    elif "WORLD_SIZE" in env and int(env["WORLD_SIZE"]) > 1:
        i, n, source = int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), "torchrun"
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        i = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        n, source = int(env["SLURM_ARRAY_TASK_COUNT"]), "slurm_array"
    else:
        return 0, 1, "none"
    if not 0 <= i < n:
        raise ConfigError(f"shard index {i} is outside 0..{n - 1} (from {source})", field="shard")
    return i, n, source


def scene_seed(seed: int, dataset: str, name: str) -> int:
    """Per-scene seed derived from the global seed and the scene identity (stable across runs)."""
    digest = hashlib.sha256(f"{seed}:{dataset}/{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass
class RunSummary:
    run_id: str
    shard: tuple[int, int, str]
    scenes: int = 0
    written: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    stale_partials: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- one scene ------------------------------------------------------------------------------------
class _PoolGeometry:
    """One pool as selectors see it (``posevlm.sampling.selection.PoolView``): frame ids, cameras and (lazily,
    cached per parameter set) voxel sets."""

    def __init__(self, scene, pool_ids: np.ndarray, cameras, points=None, source: str = "gt"):
        self.scene, self.frame_ids, self.cameras, self.points, self.source = scene, pool_ids, cameras, points, source
        self._voxels: dict[tuple, Any] = {}
        self._normalizers: tuple[float, float] | None = None

    @property
    def w2c_opencv(self):
        return None if self.cameras is None else self.cameras.w2c_opencv

    def normalizers(self) -> tuple[float, float]:
        """(max centre distance, max angle) over all pool pairs, computed once per pool."""
        if self._normalizers is None:
            from posevlm.sampling.stats import pool_normalizers

            self._normalizers = pool_normalizers(self.cameras.w2c_opencv)
        return self._normalizers

    def has(self, need: str) -> bool:
        """Whether this pool can provide ``need`` (``posevlm.sampling.selection.SAMPLER_NEEDS``)."""
        if need == "cameras":
            return self.cameras is not None
        return self.points is not None or (self.scene.depth is not None and self.cameras is not None)

    def voxels(self, params: Mapping[str, Any]):
        """Voxel sets built with ``params`` (``conf_percentile``, ``conf_floor``, ``voxels_on_short_axis``;
        ``depth_stride`` for depth)."""
        from posevlm.sampling.voxel_coverage import voxel_sets_from_depth, voxel_sets_from_points

        key = tuple(sorted(params.items()))
        if key not in self._voxels:
            kw = {k: v for k, v in key if k != "depth_stride"}
            if self.points is not None:
                self._voxels[key] = voxel_sets_from_points(self.points[0], self.points[1], **kw)
            else:
                depth = self.scene.depth.read_many(self.frame_ids)
                self._voxels[key] = voxel_sets_from_depth(depth, self.cameras.K_pixels.numpy(),
                                                          self.cameras.w2c_opencv.numpy(),
                                                          image_hw=self.cameras.image_hw.numpy(),
                                                          stride=int(params.get("depth_stride", 4)), **kw)
        return self._voxels[key]


def _pool_geometry(scene, config: SamplingConfig, pool: PoolConfig, predictions: Path | None) -> _PoolGeometry:
    from posevlm.scenes import load_predictions

    if config.geometry == "gt" or not config.sampler.needs:
        ids = candidate_pool(scene.frame_ids, pool)
        cams = scene.cameras_for(ids) if scene.cameras is not None else None
        return _PoolGeometry(scene, ids, cams, None, "gt" if cams is not None else "none")
    if predictions is None or not predictions.is_file():
        raise InputFileError(f"no geometry predictions for scene {scene.name!r} (looked for {predictions}); pass "
                             "--predictions DIR holding <dataset>/<scene>.npz (posevlm geometry predict writes them), or "
                             "--geometry vggt / da3 to run a model", path=predictions)
    pred = load_predictions(predictions)
    ids = pred.frame_ids
    unknown = ~np.isin(ids, scene.frame_ids)
    if unknown.any():  # every predicted frame must exist in the scan
        raise InputFileError(f"predictions {predictions} name {int(unknown.sum())} frame id(s) that scene "
                             f"{scene.name!r} does not have (e.g. {ids[unknown][:5].tolist()}; the scan has ids "
                             f"{int(scene.frame_ids[0])}..{int(scene.frame_ids[-1])}): the predictions were made for "
                             "another scan or frame numbering; regenerate them for this scene", path=predictions)
    cams = pred.cameras_in_source_frame() if pred.source_image_hw is not None else pred.cameras
    pts = pred.point_maps
    points = None if pts is None else (pts.world_points.astype(np.float32),
                                       None if pts.confidence is None else pts.confidence.astype(np.float32))
    return _PoolGeometry(scene, ids, cams, points, f"predictions:{pred.meta.get('model', predictions.name)}")


_NEED_FIX = {"cameras": "give a pose file (--geometry gt), predictions (--geometry predictions) or run a geometry model "
                        "(--geometry vggt | da3)",
             "voxels": "it needs point maps (--geometry predictions / vggt / da3) or depth + cameras in the scan"}


def _select(config: SamplingConfig, geo: _PoolGeometry, k: int, seed: int):
    """Check the pool has what the registered sampler needs, then call it."""
    spec = config.sampler
    for need in spec.needs:
        if not geo.has(need):
            raise ConfigError(f"strategy {config.strategy!r} needs {need}; scene {geo.scene.name!r} has none "
                              f"({geo.source} geometry): {_NEED_FIX[need]}", field="strategy")
    return spec.select(geo, k, seed=seed, **config.params)


def _manifest(ref: SceneRef, scene, config: SamplingConfig, pool: PoolConfig, geo: _PoolGeometry, sel,
              paired: PairedFrames, files: list[str], stats: dict, timings: dict, seed: int) -> dict[str, Any]:
    ids = paired.frame_ids
    # per-frame cameras from the geometry the selection used: scene GT, or the predictions (then frames
    # outside the predicted pool have none)
    if geo.source == "gt" and scene.cameras is not None:
        cams, has = scene.cameras_for(ids), np.ones(ids.size, dtype=bool)
    elif geo.cameras is not None:
        has = paired.pool_indices >= 0
        cams = geo.cameras[np.where(has, paired.pool_indices, 0)]
    else:
        cams, has = None, np.zeros(ids.size, dtype=bool)
    fps = scene.fps
    selected = []
    for pos, (fid, pidx, role, name) in enumerate(zip(ids.tolist(), paired.pool_indices.tolist(), paired.roles, files)):
        cam = cams is not None and bool(has[pos])
        selected.append({
            "position": pos, "frame_id": fid, "pool_index": None if pidx < 0 else pidx,
            "timestamp_s": None if not fps else fid / fps, "role": role, "pair_id": pos // 2, "file": name,
            "w2c_opencv": cams.w2c_opencv[pos].tolist() if cam else None,
            "K_pixels": cams.K_pixels[pos].tolist() if cam else None,
            "image_hw": cams.image_hw[pos].tolist() if cam else None,
        })
    h, w = scene.image_hw()
    anchor_pool = np.asarray([p for p, r in zip(paired.pool_indices.tolist(), paired.roles) if r == "anchor"])
    return {
        "format": MANIFEST_FORMAT, "schema_version": MANIFEST_SCHEMA_VERSION,
        "scene_name": ref.name, "dataset": ref.dataset, "slug": config.slug, "config": config.to_dict(),
        "strategy": {"name": config.strategy, "params": dict(config.params)},
        "pairing": {"name": config.pairing.name, "params": config.pairing.to_dict()},
        "seed": config.seed, "scene_seed": seed,
        "video": {"path": ref.path, "format": ref.format, "n_frames": int(scene.num_frames), "fps": fps,
                  "height": h, "width": w},
        "pool": {**pool.to_dict(), "size": int(geo.frame_ids.size), "requested_size": pool.size,
                 "frame_ids": geo.frame_ids.tolist()},
        "selected": selected,
        "anchors": paired.anchor_frame_ids.tolist(),
        "selection_order": geo.frame_ids[sel.selection_order].tolist(),
        "pose_source": "none" if cams is None else geo.source, "pose_convention": "w2c_opencv",
        "stats": stats, "timings_ms": timings,
        "provenance": provenance(seed=config.seed, scene_seed=seed, run_host=socket.gethostname()),
        # legacy keys (existing evaluators read these)
        "sampling_type": config.strategy if config.pairing.name == "none" else f"mergeaware_{config.strategy}",
        "selected_frames": ids.tolist(), "num_frames": config.num_frames,
        "selected_pool_indices": paired.pool_indices.tolist(),
        "selected_prediction_indices": paired.pool_indices.tolist(),
        "initial_selected_frames": paired.anchor_frame_ids.tolist(),
        "initial_pool_indices": anchor_pool.tolist(),
    }


def _write_output(target: Path, run_id: str, manifest: dict, frames: list[np.ndarray], files: list[str],
                  geo: _PoolGeometry) -> bool:
    """Write into a private partial dir, then rename. Returns False if another run got there first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{run_id}"
    tmp.mkdir()
    try:
        for frame, name in zip(frames, files):
            Image.fromarray(frame).save(tmp / name, compress_level=1)
        if geo.cameras is not None:
            np.savez(tmp / POOL_GEOMETRY_NAME, frame_ids=geo.frame_ids, **geo.cameras.to_numpy())
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
        try:
            tmp.rename(target)
        except OSError:
            if target.exists():  # a concurrent run finished the same output first: keep theirs
                shutil.rmtree(tmp)
                return False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def sample_scene(ref: SceneRef, configs: Sequence[SamplingConfig], out_root: str, run_id: str,
                 predictions_dir: str | None = None, geometry_device: str | None = None) -> dict[str, Any]:
    """Process one scene for every pending configuration; never raises (errors are returned).
    ``geometry_device``: where a geometry model (``--geometry vggt | da3``) runs (default CUDA if available)."""
    out = {"scene": ref.name, "dataset": ref.dataset, "written": 0, "skipped": 0, "failures": []}
    pending = []
    for cfg in configs:
        done, _ = manifest_is_complete(Path(out_root) / cfg.slug / ref.dataset / ref.name, cfg)
        if done:
            out["skipped"] += 1
        else:
            pending.append(cfg)
    if not pending:
        return out

    def fail(cfg: SamplingConfig | None, exc: BaseException) -> None:
        out["failures"].append({
            "scene": ref.name, "dataset": ref.dataset, "path": ref.path, "slug": None if cfg is None else cfg.slug,
            "error": type(exc).__name__, "message": str(exc),
            "traceback": None if isinstance(exc, PosevlmError) else traceback.format_exc(limit=6),
        })

    try:
        from posevlm.scenes import load_scene

        t0 = time.perf_counter()
        scene = load_scene(ref.path, format=ref.format)
        load_ms = (time.perf_counter() - t0) * 1e3
    except Exception as exc:  # noqa: BLE001 - isolate the scene
        for cfg in pending:
            fail(cfg, exc)
        return out
    seed_cache: dict[int, int] = {}
    geos: dict[tuple, _PoolGeometry] = {}
    frame_cache: dict[int, np.ndarray] = {}
    pred_path = None
    if predictions_dir:
        cands = [Path(predictions_dir) / ref.dataset / f"{ref.name}.npz", Path(predictions_dir) / f"{ref.name}.npz"]
        pred_path = next((c for c in cands if c.is_file()), cands[0])
    for cfg in pending:
        try:
            seed = seed_cache.setdefault(cfg.seed, scene_seed(cfg.seed, ref.dataset, ref.name))
            pool = cfg.effective_pool
            t0 = time.perf_counter()
            key = (pool, cfg.geometry if cfg.sampler.needs else "gt")
            if key not in geos:
                src = pred_path
                if cfg.geometry_model is not None and cfg.sampler.needs:  # run the model once, cached on disk
                    from dataclasses import replace

                    from posevlm.sampling.geometry_runner import predict_scene

                    model = replace(cfg.geometry_model, device=geometry_device)
                    src, _ = predict_scene(scene, model, Path(out_root) / "_geometry" / model.cache_name / ref.dataset
                                           / f"{ref.name}.npz")
                geos[key] = _pool_geometry(scene, cfg, pool, src)
            geo = geos[key]
            t1 = time.perf_counter()
            k = anchors_needed(cfg.num_frames, cfg.pairing)
            if k > geo.frame_ids.size:
                raise ConfigError(f"--frames {cfg.num_frames} needs {k} pool frames but the pool of scene "
                                  f"{ref.name!r} has only {geo.frame_ids.size} ({pool.slug}); ask for fewer frames or "
                                  "a larger pool (--pool-size, --pool all)", field="num_frames")
            sel = _select(cfg, geo, k, seed)
            t2 = time.perf_counter()
            if len(sel) != k:
                raise ConfigError(
                    f"{cfg.strategy} returned {len(sel)} of {k} frames for scene {ref.name!r} (coverage saturated "
                    f"with fill={cfg.params.get('fill')!r}); outputs always hold exactly N frames: use "
                    "--param fill=pose_fps or fill=uniform", field="params.fill")
            paired = pair_frames(sel.pool_indices, geo.frame_ids, cfg.pairing,
                                 num_source_frames=int(scene.frame_ids[-1]) + 1, seed=seed,
                                 valid_frame_ids=scene.frame_ids)
            stats = {**sel.stats, "n_returned_before_fill": sel.n_returned_before_fill,
                     "n_fallbacks": paired.n_fallbacks, "duplicate_ratio": paired.duplicate_ratio}
            if geo.cameras is not None and geo.frame_ids.size > 1:
                in_pool = paired.pool_indices[paired.pool_indices >= 0]
                stats.update(min_distance_stats(geo.cameras.w2c_opencv, in_pool, normalizers=geo.normalizers()))
            t3 = time.perf_counter()
            need = [int(i) for i in np.unique(paired.frame_ids) if int(i) not in frame_cache]
            if need:
                frame_cache.update(zip(need, scene.read_rgb(need)))
            files = frame_file_names(ref.name, paired.frame_ids)
            frames = [frame_cache[int(i)] for i in paired.frame_ids]
            t4 = time.perf_counter()
            timings = {"load_scene": round(load_ms, 2), "geometry": round((t1 - t0) * 1e3, 2),
                       "select": round((t2 - t1) * 1e3, 2), "stats": round((t3 - t2) * 1e3, 2),
                       "decode": round((t4 - t3) * 1e3, 2)}
            manifest = _manifest(ref, scene, cfg, pool, geo, sel, paired, files, stats, timings, seed)
            target = Path(out_root) / cfg.slug / ref.dataset / ref.name
            if target.exists() and manifest_is_complete(target, cfg)[0]:  # a concurrent run finished it
                out["skipped"] += 1
                continue
            if target.exists():
                raise InputFileError(f"{target} exists but is not a complete output of this configuration "
                                     f"({manifest_is_complete(target, cfg)[1]}); move it away (nothing is deleted "
                                     "automatically)", path=target)
            if _write_output(target, run_id, manifest, frames, files, geo):
                out["written"] += 1
            else:
                out["skipped"] += 1
        except Exception as exc:  # noqa: BLE001 - isolate the configuration
            fail(cfg, exc)
    return out


def _worker_init(threads: int, parent_pid: int) -> None:
    """Worker process setup: torch threads, and a watchdog that ends the worker as soon as its parent is gone
    (killed with SIGKILL, or by a scheduler), instead of finishing the queue for nobody."""
    import threading

    torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="posevlm-parent-watchdog", daemon=True).start()


# -- the run --------------------------------------------------------------------------------------
def run_sampling(
    data_root: str | Path,
    configs: Sequence[SamplingConfig],
    out_root: str | Path,
    *,
    shard: str | None = None,
    workers: int = 1,
    predictions_dir: str | Path | None = None,
    geometry_device: str | None = None,
    on_scene: Callable[[dict[str, Any]], None] | None = None,
    env: Mapping[str, str] = os.environ,
) -> RunSummary:
    """Run every configuration over the scenes of this shard. See the module docstring."""
    if not configs:
        raise ConfigError("no sampling configurations given", field="configs")
    from posevlm.paths import writable_dir

    out_root = writable_dir(out_root, "--out")
    run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t_start = time.perf_counter()
    shard_info = resolve_shard(shard, env)
    refused: list[dict[str, Any]] = []
    scenes = discover_scenes(data_root, problems=refused)[shard_info[0] :: shard_info[1]]
    summary = RunSummary(run_id=run_id, shard=shard_info, scenes=len(scenes))
    if shard_info[0] == 0:  # refused scenes belong to no shard: the first one reports them
        summary.failures.extend(refused)
    summary.stale_partials = sum(1 for _ in out_root.glob("*/*/.*.partial-*"))
    args = [(ref, list(configs), str(out_root), run_id, None if predictions_dir is None else str(predictions_dir),
             geometry_device) for ref in scenes]

    def record(result: dict[str, Any]) -> None:
        summary.written += result["written"]
        summary.skipped += result["skipped"]
        summary.failures.extend(result["failures"])
        if on_scene is not None:
            on_scene(result)

    if workers <= 1:
        for a in args:
            record(sample_scene(*a))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_init,
                                   initargs=(threads, os.getpid()))
        try:
            futures = {pool.submit(sample_scene, *a): a[0] for a in args}
            for fut in as_completed(futures):
                ref = futures[fut]
                try:
                    record(fut.result())
                except Exception as exc:  # noqa: BLE001 - a worker died: report the scene, keep going
                    record({"scene": ref.name, "dataset": ref.dataset, "written": 0, "skipped": 0,
                            "failures": [{"scene": ref.name, "dataset": ref.dataset, "path": ref.path, "slug": None,
                                          "error": type(exc).__name__, "message": str(exc), "traceback": None}]})
        except BaseException:  # Ctrl-C / an error here: stop the workers now instead of draining the queue
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            raise
        pool.shutdown()
    summary.seconds = round(time.perf_counter() - t_start, 3)
    run_dir = out_root / "_runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(
        {**summary.to_dict(), "configs": [c.to_dict() for c in configs], "data_root": str(data_root),
         "provenance": provenance()}, indent=1))
    (run_dir / "failures.json").write_text(json.dumps(summary.failures, indent=1))
    return summary
