"""The evaluation recipe: resolve -> preflight -> infer (score per record) -> report.

Read top to bottom. A run directory is identified by the hash of its full configuration
(``run_config.json``, written once); records are appended per shard and flushed per record, so a
killed run resumes where it stopped (``RunStore`` tolerates a truncated last line). Samples are
grouped by scene so frames decode once per scene; every failure becomes a typed error record and the
run goes on. Sharding comes from ``--shard i/n``, torchrun / accelerate (RANK, WORLD_SIZE) or SLURM
arrays; no collectives are used, ``posevlm report`` merges the shard files.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from posevlm.errors import ConfigError, PosevlmError
from posevlm.eval.errors import MissingInputError, SampleError
from posevlm.eval.frames import FolderManifest, FrameCache, Mp4Fps, Mp4Uniform, preflight
from posevlm.eval.parsing import DEFAULT_MODES, score_record
from posevlm.eval.run_store import RunStore

__all__ = ["EvalConfig", "resolve_records", "frame_request", "run_eval", "EvalSummary", "BACKENDS"]

FRAME_SOURCES = ("mp4_uniform", "mp4_fps", "folder_manifest")
BENCHMARKS = ("vsibench", "synthetic_vsi")
BACKENDS = ("oracle", "hf", "dummy")
#: a sample whose record is an error is retried on resume until it has failed this many times
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class EvalConfig:
    """The full configuration of one evaluation run (hashed into the run id).

    benchmark: ``{"name": vsibench | synthetic_vsi, "source": path or hub id, "config": "full",
    "filters": {"datasets", "question_types", "scenes"}, "limit": int | None}``.
    model: ``{"backend": oracle | hf, "name": label, ...backend options}`` (oracle: ``scenes_root``,
    ``min_pixels``; hf: ``model`` hub id / local dir, ``dtype``, ``attn_implementation``, ...).
    frames: ``{"source": mp4_uniform | mp4_fps | folder_manifest, "root": videos or sampled-slug dir,
    "num_frames": N, "rule": round_full | floor_full | floor_pool128, "fps", "policy", "strategy": label}``.
    """

    benchmark: Mapping[str, Any]
    model: Mapping[str, Any]
    frames: Mapping[str, Any]
    prompt: str = "official"
    parse_modes: tuple[str, ...] = DEFAULT_MODES
    batch_size: int = 1
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.benchmark.get("name") not in BENCHMARKS:
            problems.append(f"benchmark.name must be one of {', '.join(BENCHMARKS)}")
        if self.model.get("backend") not in BACKENDS:
            problems.append(f"model.backend must be one of {', '.join(BACKENDS)}")
        if self.frames.get("source") not in FRAME_SOURCES:
            problems.append(f"frames.source must be one of {', '.join(FRAME_SOURCES)}")
        if not self.frames.get("root"):
            problems.append("frames.root is required (videos root, or the sampled <slug> folder)")
        if self.frames.get("source") != "mp4_fps" and not isinstance(self.frames.get("num_frames"), int):
            problems.append("frames.num_frames must be an int")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        problems += _position_problems(self.model, self.frames)
        if problems:
            raise ConfigError("invalid eval config: " + "; ".join(problems), field="EvalConfig")

    def to_dict(self) -> dict[str, Any]:
        return {"benchmark": dict(self.benchmark), "model": dict(self.model), "frames": dict(self.frames),
                "prompt": self.prompt, "parse_modes": list(self.parse_modes), "batch_size": self.batch_size,
                "schema_version": self.schema_version}


def _position_problems(model: Mapping[str, Any], frames: Mapping[str, Any]) -> list[str]:
    """A pose position mode needs per-frame cameras, which only a sampled frame folder's manifest carries."""
    cams = model.get("camera_attention") is not None or model.get("pose_bias", "none") != "none"
    if model.get("positions") is None and not cams:
        return []
    from posevlm.positions import resolve_position_spec, spec_needs

    family = model.get("family", "auto")
    try:
        spec = resolve_position_spec(model.get("positions") or "thw", "qwen2_5" if family == "auto" else family)
    except ConfigError as exc:
        return [f"model.positions: {exc}"]
    if (spec_needs(spec)["w2c_opencv"] or cams) and frames.get("source") != "folder_manifest":
        what = "model.camera_attention / pose_bias" if cams else f"model.positions {model['positions']!r}"
        return [f"{what} needs one camera per frame; use frames.source folder_manifest (posevlm eval --frames "
                f"folder_manifest --frames-root <sampled slug folder>), not {frames.get('source')!r}"]
    return []


# -- resolve ---------------------------------------------------------------------------------------
def resolve_records(config: EvalConfig) -> list[dict[str, Any]]:
    """The benchmark records of the run after filters, sorted by (dataset, scene, id)."""
    from posevlm.eval.benchmarks import read_benchmark_jsonl
    from posevlm.eval.benchmarks.vsibench import filter_records, load_vsibench

    b = config.benchmark
    if b["name"] == "vsibench":
        records = load_vsibench(b.get("source", "nyu-visionx/VSI-Bench"), config=b.get("config", "full"))
    else:
        records = read_benchmark_jsonl(b["source"])
    f = b.get("filters") or {}
    records = filter_records(records, datasets=f.get("datasets"), question_types=f.get("question_types"),
                             scenes=f.get("scenes"), limit=b.get("limit"))
    return sorted(records, key=lambda r: (r["dataset"], r["scene_name"], r["id"]))


def frame_request(config: EvalConfig, dataset: str, scene: str):
    """The frame request of one scene (hashable: the cache key)."""
    fr = config.frames
    root = Path(fr["root"])
    if fr["source"] == "folder_manifest":
        return FolderManifest(str(root / dataset / scene), int(fr["num_frames"]), fr.get("policy", "fail_sample"))
    candidates = [root / dataset / f"{scene}.mp4", root / dataset / scene / "rgb.mp4", root / scene / "rgb.mp4",
                  root / f"{scene}.mp4"]
    video = next((c for c in candidates if c.is_file()), candidates[0])
    if fr["source"] == "mp4_uniform":
        return Mp4Uniform(str(video), int(fr["num_frames"]), fr.get("rule", "round_full"))
    return Mp4Fps(str(video), float(fr.get("fps", 2.0)), int(fr.get("min_frames", 4)), fr.get("max_frames"))


# -- backends --------------------------------------------------------------------------------------
def _oracle_backend(model: Mapping[str, Any]):
    """``posevlm.eval.backends.oracle.OracleBackend`` (imported on first use: it loads torch)."""
    from posevlm.eval.backends.oracle import OracleBackend

    return OracleBackend(model)


class _HFAdapter:
    """Qwen2.5-VL / Qwen3-VL through transformers; per-sample errors come back as ``SampleError``."""

    def __init__(self, model: Mapping[str, Any]):
        from posevlm.eval.backends.hf import HFBackend, HFBackendConfig

        opts = {k: v for k, v in model.items() if k not in ("backend", "name")}
        self.backend = HFBackend(HFBackendConfig(**opts))
        self.info = self.backend.info

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation=None) -> list[Any]:
        results = self.backend.generate_each([(prompt, spec) for _, prompt, spec in batch], generation=generation,
                                             sample_ids=[r["id"] for r, _, _ in batch])
        return [r if isinstance(r, SampleError) else
                {"text": r.text, "video_grid_thw": r.video_grid_thw, "n_visual_tokens": r.n_visual_tokens}
                for r in results]


class _DummyAdapter:
    """Answers every question with ``model["answer"]`` (default "A"): drives the whole pipeline without a
    model, for smoke tests and for measuring the runner's own overhead."""

    def __init__(self, model: Mapping[str, Any]):
        self.answer = str(model.get("answer", "A"))
        self.info = {"backend": "dummy", "config": dict(model)}

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation=None) -> list[dict[str, Any]]:
        return [{"text": self.answer, "video_grid_thw": None, "n_visual_tokens": None} for _ in batch]


def make_backend(model: Mapping[str, Any]):
    return {"oracle": _oracle_backend, "hf": _HFAdapter, "dummy": _DummyAdapter}[model["backend"]](model)


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class EvalSummary:
    run_dir: str
    run_id: str
    shard: tuple[int, int, str]
    n_expected: int = 0
    n_shard: int = 0
    n_skipped: int = 0
    n_ok: int = 0
    n_errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = False


def _error_record(record: dict, exc: BaseException, frames: dict | None, modes: Sequence[str]) -> dict[str, Any]:
    kind = exc.kind if isinstance(exc, SampleError) else ("config" if isinstance(exc, PosevlmError) else "generation")
    scored = {m: {"answer": None, "text": None, "status": "error", "score": 0.0, "hits": 0, "flags": []} for m in modes}
    return {**_base(record), "status": "error", "error": {"kind": kind, "message": str(exc), "type": type(exc).__name__},
            "raw_output": None, "scores": scored, "frames": frames}


def _base(record: dict) -> dict[str, Any]:
    return {k: record.get(k) for k in ("id", "dataset", "scene_name", "question_type", "ground_truth", "options")}


def run_eval(config: EvalConfig, out: str | Path, *, shard: str | None = None, env: Mapping[str, str] | None = None,
             stage: str = "infer", on_record: Callable[[dict], None] | None = None) -> EvalSummary:
    """Run (or resume) one evaluation into ``out``.

    ``stage``: ``preflight`` stops after the CPU checks; ``infer`` (default) runs everything pending;
    ``score`` re-scores the stored raw outputs with the current parsers and appends a record only
    where a score changed (idempotent; the later record wins in every reader).
    """
    import os

    from posevlm.eval.prompts import prompts
    from posevlm.sampling.runner import resolve_shard

    t0 = time.perf_counter()
    records = resolve_records(config)
    store = RunStore(out)
    run_id = store.create_or_verify(config.to_dict(), [r["id"] for r in records])
    rank, world, source = resolve_shard(shard, os.environ if env is None else env)
    if stage == "score":
        return _rescore(config, store, run_id, len(records), (rank, world, source), on_record, t0)
    if stage not in ("preflight", "infer"):
        raise ConfigError(f"stage must be preflight, infer or score; got {stage!r}", field="stage", value=stage)
    scenes = sorted({(r["dataset"], r["scene_name"]) for r in records})
    mine = set(scenes[rank::world])
    shard_records = [r for r in records if (r["dataset"], r["scene_name"]) in mine]
    # resume: ok records are final; an error record is retried (the input may have been restored, an
    # OOM or decode failure may be transient) until it has failed MAX_ATTEMPTS times
    stored = store.scan()
    attempts = {i: int(r.get("attempt", 1)) for i, r in stored.items()}

    def final(i: int) -> bool:
        r = stored.get(i)
        return r is not None and (r["status"] == "ok" or attempts[i] >= MAX_ATTEMPTS)

    pending = [r for r in shard_records if not final(r["id"])]
    summary = EvalSummary(str(out), run_id, (rank, world, source), len(records), len(shard_records),
                          len(shard_records) - len(pending))
    prompt = prompts.get(config.prompt)
    modes = tuple(config.parse_modes)

    def emit(rec: dict) -> None:
        rec["written"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        rec["attempt"] = attempts.get(rec["id"], 0) + 1
        store.append(rec, rank, world)
        if rec["status"] == "ok":
            summary.n_ok += 1
        else:
            summary.n_errors += 1
            kind = rec["error"]["kind"]
            summary.errors_by_kind[kind] = summary.errors_by_kind.get(kind, 0) + 1
        if on_record is not None:
            on_record(rec)

    # preflight: CPU checks of every scene's inputs before any model loads
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in pending:
        groups.setdefault((r["dataset"], r["scene_name"]), []).append(r)
    requests, failed = {}, {}
    for key in groups:
        try:
            req = frame_request(config, *key)
        except PosevlmError as exc:
            failed[key] = exc
            continue
        check = preflight(req)
        if check.ok:
            requests[key] = req
        else:
            failed[key] = MissingInputError(check.message or "input check failed") if check.error_type == "missing_input" \
                else _as_sample_error(check)
    for key, exc in failed.items():
        for r in groups[key]:
            emit(_error_record(r, exc, None, modes))
    if stage == "preflight" or not requests:
        return _finish(summary, store, t0)

    backend = make_backend(config.model)
    store.write_backend_info(getattr(backend, "info", {"backend": type(backend).__name__}), rank, world)
    cache = FrameCache(max_entries=2)
    for key, req in requests.items():
        try:
            spec = cache.get(req)
        except Exception as exc:  # noqa: BLE001 - a scene's frames failed: its samples fail, the run goes on
            for r in groups[key]:
                emit(_error_record(r, exc, None, modes))
            continue
        frames_info = {"frame_ids": spec.frame_ids.tolist(), "source": req.source,
                       "provenance": spec.provenance, "video_grid_thw": None, "n_visual_tokens": None}
        batch_records = groups[key]
        for start in range(0, len(batch_records), config.batch_size):
            batch = batch_records[start : start + config.batch_size]
            t1 = time.perf_counter()
            try:
                outputs = backend.generate([(r, prompt.render(r), spec) for r in batch], generation=prompt.generation)
            except Exception as exc:  # noqa: BLE001 - one batch fails: its samples are error records
                for r in batch:
                    emit(_error_record(r, exc, frames_info, modes))
                continue
            ms = (time.perf_counter() - t1) * 1e3 / len(batch)
            for r, o in zip(batch, outputs):
                if isinstance(o, SampleError):
                    emit(_error_record(r, o, frames_info, modes))
                    continue
                info = {**frames_info, "video_grid_thw": o.get("video_grid_thw"),
                        "n_visual_tokens": o.get("n_visual_tokens")}
                scored = score_record(r, o["text"], modes=modes)
                emit({**_base(r), "status": "ok", "error": None, "raw_output": o["text"], "kind": scored["kind"],
                      "flags": scored["flags"], "scores": scored["modes"], "frames": info,
                      "timings_ms": {"generate": round(ms, 3)}})
    return _finish(summary, store, t0)


def _rescore(config: EvalConfig, store: RunStore, run_id: str, n_expected: int, shard: tuple[int, int, str],
             on_record: Callable[[dict], None] | None, t0: float) -> EvalSummary:
    """Re-score ok records of this shard's scenes from their raw outputs; append only what changed."""
    rank, world, _ = shard
    summary = EvalSummary(store.run_dir.as_posix(), run_id, shard, n_expected)
    scenes = sorted({(r["dataset"], r["scene_name"]) for r in store.scan().values()})
    mine = set(scenes[rank::world])
    for rec in store.scan().values():
        if (rec["dataset"], rec["scene_name"]) not in mine or rec["status"] != "ok":
            continue
        summary.n_shard += 1
        scored = score_record(rec, rec["raw_output"], modes=tuple(config.parse_modes))
        if scored["modes"] == rec["scores"]:
            summary.n_skipped += 1
            continue
        new = {**rec, "scores": scored["modes"], "kind": scored["kind"], "flags": scored["flags"],
               "attempt": int(rec.get("attempt", 0)) + 1,
               "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        store.append(new, rank, world)
        summary.n_ok += 1
        if on_record is not None:
            on_record(new)
    return _finish(summary, store, t0)


def _as_sample_error(check) -> SampleError:
    from posevlm.eval import errors as E

    by_kind = {cls.kind: cls for cls in (E.MissingInputError, E.FrameCountMismatchError, E.DecodeError)}
    return by_kind.get(check.error_type, E.DecodeError)(check.message or "input check failed")


def _finish(summary: EvalSummary, store: RunStore, t0: float) -> EvalSummary:
    summary.complete = store.is_complete()
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary
