"""The geometry recipe (``posevlm geometry predict``): scans -> a geometry model on each scan's pool frames ->
``OUT/<dataset>/<scene>.npz`` predictions (cameras as ``w2c_opencv`` + ``K_pixels``, depth, point maps and their
confidences), the files ``posevlm sample --geometry predictions --predictions OUT`` reads.

Read top to bottom: discover the scans (the sampling runner's rules for ids), pick this shard, skip what is
done, then per scan: its candidate pool, the model, one atomic write. A prediction file records the
``GeometryPredictConfig`` that made it (``meta.predict_config``); a file made with another configuration is
reported, never overwritten on a guess. One failing scan is recorded and the run goes on; the caller exits
non-zero if anything failed. ``posevlm sample --geometry vggt`` runs the same :func:`predict_scene` on demand.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from posevlm.errors import ConfigError, InputFileError, PosevlmError
from posevlm.sampling.pool import PoolConfig, candidate_pool

__all__ = ["GeometryPredictConfig", "predict_scene", "run_geometry_predict"]


@dataclass(frozen=True)
class GeometryPredictConfig:
    """What makes a predictions file (recorded in it).

    Attributes:
        model: ``vggt`` (posevlm's own implementation) or ``da3`` (the ``depth-anything-3`` package).
        weights: hub id, local directory or ``.safetensors`` file; None = the model's released checkpoint
            (``facebook/VGGT-1B``).
        pool: the frames the model sees (the sampling runner's candidate pool: 128 linspace frames by default).
        chunk: frames per forward (vggt; longer pools run in chunks aligned on frame 0, see
            ``posevlm.sampling.geometry_models.predict_vggt_chunked``).
        image_width: model input width (vggt: 518 as released; a multiple of 14).
        device: None = CUDA if available. dtype: aggregator storage dtype (``bfloat16`` halves its memory;
            None = float32 storage, bf16 autocast on CUDA).
    """

    model: str = "vggt"
    weights: str | None = None
    pool: PoolConfig = PoolConfig()
    chunk: int = 48
    image_width: int = 518
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        from posevlm.sampling.geometry_models import GEOMETRY_MODELS

        problems = []
        if self.model not in GEOMETRY_MODELS:
            problems.append(f"model {self.model!r} (choose {', '.join(GEOMETRY_MODELS)})")
        if not isinstance(self.chunk, int) or self.chunk < 2:
            problems.append(f"chunk={self.chunk!r} (frames per forward, >= 2)")
        if not isinstance(self.image_width, int) or self.image_width < 14 or self.image_width % 14:
            problems.append(f"image_width={self.image_width!r} (a multiple of the 14-pixel patch)")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            problems.append(f"dtype={self.dtype!r} (float32, bfloat16 or float16)")
        if problems:
            raise ConfigError("invalid geometry config: " + "; ".join(problems), field="GeometryPredictConfig")

    @property
    def resolved_weights(self) -> str:
        from posevlm.sampling.geometry_models import GEOMETRY_MODELS

        return self.weights or GEOMETRY_MODELS[self.model]

    def identity(self) -> dict[str, Any]:
        """The fields that shape the output (not the device), stored as ``meta.predict_config``."""
        out = {"model": self.model, "weights": self.resolved_weights, "pool": self.pool.to_dict()}
        if self.model == "vggt":
            out.update(chunk=self.chunk, image_width=self.image_width, dtype=self.dtype)
        return out

    @property
    def cache_name(self) -> str:
        """``<model>-<8 hex of the identity>``: the folder of on-demand predictions (``posevlm sample --geometry``)."""
        import hashlib

        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.model}-{digest}"

    def options(self) -> dict[str, Any]:
        """Keyword options of :func:`posevlm.sampling.geometry_models.predict_geometry`."""
        return {"chunk": self.chunk, "image_width": self.image_width, "dtype": self.dtype} \
            if self.model == "vggt" else {}


def _stored_identity(path: Path) -> dict[str, Any] | None:
    from posevlm.scenes import load_predictions

    return load_predictions(path).meta.get("predict_config")


def predict_scene(scene, config: GeometryPredictConfig, target: Path) -> tuple[Path, bool]:
    """Predictions of ``scene``'s pool frames at ``target`` (written atomically); ``(path, written)``. An
    existing file made with this configuration is kept (``written=False``).

    Raises:
        InputFileError: ``target`` exists but was made with another configuration (or without one).
    """
    from posevlm.sampling.geometry_models import predict_geometry
    from posevlm.scenes import save_predictions

    if target.is_file():
        stored = _stored_identity(target)
        if stored == config.identity():
            return target, False
        raise InputFileError(f"{target} holds predictions made with another configuration ({stored}); move it away "
                             "or choose another --out (nothing is overwritten automatically)", path=target)
    ids = candidate_pool(scene.frame_ids, config.pool)
    out = predict_geometry(config.model, scene.read_rgb(ids), model_id=config.resolved_weights,
                           device=config.device, **config.options())
    out["meta"] = {**out.get("meta", {}), "predict_config": config.identity(), "scene": scene.name}
    return save_predictions(target, frame_ids=ids, **out), True


def run_geometry_predict(data_root: str | Path, out_root: str | Path,
                         config: GeometryPredictConfig = GeometryPredictConfig(), *, shard: str | None = None,
                         on_scene: Callable[[dict[str, Any]], None] | None = None,
                         env: Mapping[str, str] = os.environ):
    """Predict geometry for every scan of this shard under ``data_root`` into ``out_root/<dataset>/<scene>.npz``;
    returns the sampling runner's ``RunSummary`` (scans, written, skipped, failures)."""
    from posevlm.atomic import atomic_write_text
    from posevlm.paths import writable_dir
    from posevlm.provenance import provenance
    from posevlm.sampling.runner import RunSummary, discover_scenes, resolve_shard
    from posevlm.scenes import load_scene

    out_root = writable_dir(out_root, "--out")
    run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    shard_info = resolve_shard(shard, env)
    refused: list[dict[str, Any]] = []
    refs = discover_scenes(data_root, problems=refused)[shard_info[0] :: shard_info[1]]
    summary = RunSummary(run_id, shard_info, len(refs), failures=refused if shard_info[0] == 0 else [])
    for ref in refs:
        result = {"scene": ref.name, "dataset": ref.dataset, "path": ref.path, "written": 0, "skipped": 0,
                  "failures": []}
        try:
            path, written = predict_scene(load_scene(ref.path, format=ref.format), config,
                                          out_root / ref.dataset / f"{ref.name}.npz")
            result["written" if written else "skipped"] = 1
            result["output"] = str(path)
        except Exception as exc:  # noqa: BLE001 - one scan fails, the run goes on
            result["failures"].append({
                "scene": ref.name, "dataset": ref.dataset, "path": ref.path, "slug": None,
                "error": type(exc).__name__, "message": str(exc),
                "traceback": None if isinstance(exc, PosevlmError) else traceback.format_exc(limit=6)})
        summary.written += result["written"]
        summary.skipped += result["skipped"]
        summary.failures.extend(result["failures"])
        if on_scene is not None:
            on_scene(result)
    summary.seconds = round(time.perf_counter() - t0, 3)
    run_dir = out_root / "_runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "summary.json", json.dumps(
        {**summary.to_dict(), "config": {**config.identity(), "device": config.device}, "data_root": str(data_root),
         "provenance": provenance()}, indent=1))
    return summary
