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

from posevlm.errors import ConfigError, InputFileError, PosevlmError
from posevlm.eval.errors import MissingInputError, SampleError
from posevlm.eval.frames import (
    FolderManifest, FrameCache, Mp4Fps, Mp4Uniform, check_record_names, preflight, record_frames,
)  # fmt: skip
from posevlm.eval.parsing import DEFAULT_MODES
from posevlm.eval.run_store import RunStore, shard_file_name

__all__ = ["EvalConfig", "resolve_records", "frame_request", "make_backend", "run_eval", "EvalSummary"]

FRAME_SOURCES = ("mp4_uniform", "mp4_fps", "folder_manifest", "point_cloud")
#: task formats whose records name views of frames (never a point cloud) / are answered over a point cloud only
_VIEW_FORMATS = ("pose_views",)
_CLOUD_FORMATS = ("layout",)
#: a sample whose record is an error is retried on resume until it has failed this many times
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class EvalConfig:
    """The full configuration of one evaluation run (hashed into the run id).

    benchmark: ``{"name": vsibench | synthetic_vsi | sqa3d | scanqa, "source": path or hub id, "config": "full",
    "filters": {"datasets", "question_types", "scenes"}, "limit": int | None}``.
    model: ``{"backend": oracle | hf, "name": label, ...backend options}`` (oracle: ``scenes_root``,
    ``min_pixels``; hf: ``model`` hub id / local dir, ``dtype``, ``attn_implementation``, ...).
    frames: ``{"source": mp4_uniform | mp4_fps | folder_manifest | point_cloud, "root": videos or sampled-slug dir
    (point_cloud: cloud files or scans, ``posevlm.eval.point_inputs``), "num_frames": N, "rule": round_full |
    floor_full | floor_pool128, "fps", "policy", "strategy": label}`` (point_cloud also reads ``pixel_stride``,
    ``grid_size``, ``num_bins``).
    """

    benchmark: Mapping[str, Any]
    model: Mapping[str, Any]
    frames: Mapping[str, Any]
    prompt: str = "official"
    parse_modes: tuple[str, ...] = DEFAULT_MODES
    batch_size: int = 1
    schema_version: int = 1

    def __post_init__(self) -> None:
        from posevlm.eval.backends import backends
        from posevlm.eval.benchmarks import benchmarks

        problems = []
        try:
            bench = benchmarks.get(self.benchmark.get("name"))
        except ConfigError as exc:
            bench = None
            problems.append(f"benchmark.name: {exc}")
        source = self.frames.get("source")
        if bench is not None and bench.task_format in _VIEW_FORMATS and source == "point_cloud":
            problems.append(f"benchmark {bench.name} asks about views of frames: frames.source must be a frame source "
                            "(--frames folder_manifest), not point_cloud")
        if bench is not None and bench.task_format in _CLOUD_FORMATS and source in FRAME_SOURCES \
                and source != "point_cloud":
            problems.append(f"benchmark {bench.name} is answered over a point cloud: frames.source must be "
                            f"point_cloud (--frames point_cloud), not {source}")
        try:
            backend = backends.get(self.model.get("backend"))
        except ConfigError as exc:
            backend = None
            problems.append(f"model.backend: {exc}")
        if self.frames.get("source") not in FRAME_SOURCES:
            problems.append(f"frames.source must be one of {', '.join(FRAME_SOURCES)}")
        if not self.frames.get("root"):
            problems.append("frames.root is required (videos root, or the sampled <slug> folder)")
        n = self.frames.get("num_frames")
        if self.frames.get("source") != "mp4_fps" and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            problems.append(f"frames.num_frames must be an int >= 1 (--num-frames); got {n!r}")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if backend is not None and backend.check is not None:
            problems += backend.check(self.model, self.frames)
        if problems:
            raise ConfigError("invalid eval config: " + "; ".join(problems), field="EvalConfig")

    def to_dict(self) -> dict[str, Any]:
        return {"benchmark": dict(self.benchmark), "model": dict(self.model), "frames": dict(self.frames),
                "prompt": self.prompt, "parse_modes": list(self.parse_modes), "batch_size": self.batch_size,
                "schema_version": self.schema_version}


# -- resolve ---------------------------------------------------------------------------------------
def resolve_records(config: EvalConfig) -> list[dict[str, Any]]:
    """The benchmark records of the run after filters, sorted by (dataset, scene, id).

    Raises:
        InputFileError: the benchmark holds no records, or records of question types its task format does not
            score.
        ConfigError: a ``question_types`` filter names an unknown type, or the filters keep nothing.
    """
    from posevlm.eval.benchmarks import benchmarks
    from posevlm.eval.benchmarks.vsibench import filter_records
    from posevlm.eval.task_format import task_formats

    b = config.benchmark
    bench = benchmarks.get(b["name"])
    fmt = task_formats.get(bench.task_format)
    records = bench.load(b)
    source = b.get("source", b["name"])
    if not records:
        raise InputFileError(f"benchmark {source} holds no records; point --source at a non-empty benchmark file",
                             path=str(source))
    known = set(fmt.question_types)
    unknown: dict[str, list[int]] = {}
    for r in records:
        if r["question_type"] not in known:
            unknown.setdefault(r["question_type"], []).append(r["id"])
    if unknown:
        listed = "; ".join(f"{q!r} (ids {', '.join(map(str, ids[:3]))}{', ...' if len(ids) > 3 else ''})"
                           for q, ids in sorted(unknown.items()))
        raise InputFileError(f"benchmark {source} has records of unknown question types: {listed}. Known types: "
                             f"{', '.join(fmt.question_types)}; fix or drop those records", path=str(source))
    f = b.get("filters") or {}
    bad = [q for q in f.get("question_types") or () if q not in known]
    if bad:
        raise ConfigError(f"--question-type {', '.join(map(repr, bad))} is not a {fmt.title} question type; known: "
                          f"{', '.join(fmt.question_types)}", field="benchmark.filters.question_types", value=bad)
    kept = filter_records(records, datasets=f.get("datasets"), question_types=f.get("question_types"),
                          scenes=f.get("scenes"), limit=b.get("limit"))
    if not kept:
        active = {k: v for k, v in {**f, "limit": b.get("limit")}.items() if v}
        raise ConfigError(f"no record of benchmark {source} ({len(records)} records) matches the filters {active}; "
                          "check --dataset / --question-type / --scene / --limit", field="benchmark.filters")
    return sorted(kept, key=lambda r: (r["dataset"], r["scene_name"], r["id"]))


def frame_request(config: EvalConfig, dataset: str, scene: str):
    """The frame request of one scene (hashable: the cache key); ``point_cloud``: its point-cloud request."""
    fr = config.frames
    root = Path(fr["root"])
    check_record_names(dataset, scene, root, "--frames-root")
    if fr["source"] == "point_cloud":
        from posevlm.eval.point_inputs import PointCloudRequest

        opts = {k: fr[k] for k in ("pixel_stride", "grid_size", "num_bins") if fr.get(k) is not None}
        return PointCloudRequest(str(root), dataset, scene, int(fr["num_frames"]), **opts)
    if fr["source"] == "folder_manifest":
        return FolderManifest(str(root / dataset / scene), int(fr["num_frames"]), fr.get("policy", "fail_sample"))
    candidates = [root / dataset / f"{scene}.mp4", root / dataset / scene / "rgb.mp4", root / scene / "rgb.mp4",
                  root / f"{scene}.mp4"]
    video = next((c for c in candidates if c.is_file()), candidates[0])
    if fr["source"] == "mp4_uniform":
        return Mp4Uniform(str(video), int(fr["num_frames"]), fr.get("rule", "round_full"))
    return Mp4Fps(str(video), float(fr.get("fps", 2.0)), int(fr.get("min_frames", 4)), fr.get("max_frames"))


# -- backends --------------------------------------------------------------------------------------
def make_backend(model: Mapping[str, Any]):
    """The registered backend ``model["backend"]`` built from the run's model config."""
    from posevlm.eval.backends import backends

    return backends.get(model["backend"]).factory(model)


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class EvalSummary:
    """What one ``run_eval`` call did, and the state of its shard afterwards.

    ``n_ok`` / ``n_errors``: records written by this call (``errors_by_kind`` splits the latter).
    ``failed``: ``{id: error kind}`` of this shard's samples whose latest record is an error, whether
    written now or kept from an earlier call (final after ``MAX_ATTEMPTS``; ``--retry-errors`` reruns them).
    ``shard_complete``: every sample of this shard has a record; ``complete``: every sample of the run.
    ``preflight``: the preflight stage's report file (preflight writes no records).
    """

    run_dir: str
    run_id: str
    shard: tuple[int, int, str]
    stage: str = "infer"
    n_expected: int = 0
    n_shard: int = 0
    n_skipped: int = 0
    n_ok: int = 0
    n_errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    shard_complete: bool = False
    complete: bool = False
    preflight: str | None = None

    @property
    def ok(self) -> bool:
        """The exit status: no failed sample, and (except for preflight) every sample of the shard recorded."""
        return not self.failed and (self.stage == "preflight" or self.shard_complete)


def _error_record(record: dict, exc: BaseException, frames: dict | None, modes: Sequence[str]) -> dict[str, Any]:
    kind = _error_kind(exc)
    scored = {m: {"answer": None, "text": None, "status": "error", "score": 0.0, "hits": 0, "flags": []} for m in modes}
    return {**_base(record), "status": "error", "error": {"kind": kind, "message": str(exc), "type": type(exc).__name__},
            "raw_output": None, "scores": scored, "frames": frames}


#: benchmark record fields copied into every run record; ``_CARRIED`` only when the benchmark has them
#: (``answers``: every reference of a free-text benchmark, which its report needs; ``question_id``: its own id)
_BASE = ("id", "dataset", "scene_name", "question_type", "ground_truth", "options")
_CARRIED = ("answers", "question_id")


def _base(record: dict) -> dict[str, Any]:
    return {**{k: record.get(k) for k in _BASE}, **{k: record[k] for k in _CARRIED if k in record}}


def _error_kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, SampleError) else ("config" if isinstance(exc, PosevlmError) else "generation")


def _preflight(config: EvalConfig, groups: Mapping[tuple[str, str], list[dict]]):
    """CPU checks of every scene's inputs before any model loads: ``(requests, failures)`` keyed by scene."""
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
    return requests, failed


def run_eval(config: EvalConfig, out: str | Path, *, shard: str | None = None, env: Mapping[str, str] | None = None,
             stage: str = "infer", retry_errors: bool = False, on_record: Callable[[dict], None] | None = None,
             backend: Any = None) -> EvalSummary:
    """Run (or resume) one evaluation into ``out``.

    ``stage``: ``preflight`` runs the CPU checks only and writes ``RUN/preflight/<shard>.json`` (no records,
    no retry attempts used); ``infer`` (default) runs everything pending; ``score`` re-scores the stored raw
    outputs with the current parsers and appends a record only where a score changed (idempotent; the later
    record wins in every reader). ``retry_errors``: rerun error records even after ``MAX_ATTEMPTS``.
    ``backend``: an already-built backend of ``config.model`` (a recipe evaluating several frame selections with
    one model, like the demo, builds it once); default: built from the registry after the preflight.
    Holds ``RUN/locks/<shard>.lock`` while it runs, so a second process on the same shard is refused.
    """
    import os

    from posevlm.eval.task_format import task_format_of
    from posevlm.sampling.runner import resolve_shard

    if stage not in ("preflight", "infer", "score"):
        raise ConfigError(f"stage must be preflight, infer or score; got {stage!r}", field="stage", value=stage)
    from posevlm.paths import writable_dir

    t0 = time.perf_counter()
    fmt = task_format_of(config.to_dict())
    records = resolve_records(config)
    store = RunStore(writable_dir(out, "--out"))
    run_id = store.create_or_verify(config.to_dict(), [r["id"] for r in records])
    rank, world, source = resolve_shard(shard, os.environ if env is None else env)
    with store.lock(rank, world):
        if stage == "score":
            return _rescore(config, store, run_id, len(records), (rank, world, source), on_record, t0,
                            fmt.score_record)
        scenes = sorted({(r["dataset"], r["scene_name"]) for r in records})
        mine = set(scenes[rank::world])
        shard_records = [r for r in records if (r["dataset"], r["scene_name"]) in mine]
        # resume: ok records are final; an error record is retried (the input may have been restored, an
        # OOM or decode failure may be transient) until it has failed MAX_ATTEMPTS times, or on request
        stored = store.scan()
        attempts = {i: int(r.get("attempt", 1)) for i, r in stored.items()}

        def final(i: int) -> bool:
            r = stored.get(i)
            return r is not None and (r["status"] == "ok" or (attempts[i] >= MAX_ATTEMPTS and not retry_errors))

        pending = [r for r in shard_records if not final(r["id"])]
        summary = EvalSummary(str(out), run_id, (rank, world, source), stage, len(records), len(shard_records),
                              len(shard_records) - len(pending))
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in pending:
            groups.setdefault((r["dataset"], r["scene_name"]), []).append(r)
        requests, failed = _preflight(config, groups)
        if stage == "preflight":
            summary.preflight = str(_write_preflight(store, rank, world, groups, failed, summary))
            return _finish(summary, store, t0, shard_records)
        try:
            _infer(config, store, summary, groups, requests, failed, attempts, fmt.prompts.get(config.prompt),
                   fmt.score_record, on_record, backend)
        finally:
            store.sync()
        return _finish(summary, store, t0, shard_records)


def _write_preflight(store: RunStore, rank: int, world: int, groups, failed, summary: EvalSummary) -> Path:
    """``RUN/preflight/<shard>.json``: every scene checked, and each failure with its samples (no records)."""
    failures = [{"dataset": d, "scene_name": sc, "kind": _error_kind(exc), "message": str(exc),
                 "sample_ids": [r["id"] for r in groups[(d, sc)]]} for (d, sc), exc in sorted(failed.items())]
    for f in failures:
        summary.n_errors += len(f["sample_ids"])
        summary.errors_by_kind[f["kind"]] = summary.errors_by_kind.get(f["kind"], 0) + len(f["sample_ids"])
        summary.failed.update(dict.fromkeys(f["sample_ids"], f["kind"]))
    from posevlm.provenance import provenance

    doc = {"run_id": summary.run_id, "shard": [rank, world], "scenes_checked": len(groups),
           "samples_checked": sum(len(v) for v in groups.values()), "ok": not failures, "failures": failures,
           "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "provenance": provenance()}
    return store.write_json(f"preflight/{shard_file_name(rank, world).replace('.jsonl', '.json')}", doc)


def _infer(config: EvalConfig, store: RunStore, summary: EvalSummary, groups, requests, failed, attempts,
           prompt, score_record, on_record, backend) -> None:
    rank, world, _ = summary.shard
    modes = tuple(config.parse_modes)

    def emit(rec: dict) -> None:
        rec["written"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        rec["attempt"] = attempts.get(rec["id"], 0) + 1
        store.append(rec, rank, world, durable=False)  # flushed per record, fsynced per scene below
        if rec["status"] == "ok":
            summary.n_ok += 1
        else:
            summary.n_errors += 1
            kind = rec["error"]["kind"]
            summary.errors_by_kind[kind] = summary.errors_by_kind.get(kind, 0) + 1
        if on_record is not None:
            on_record(rec)

    for key, exc in failed.items():
        for r in groups[key]:
            emit(_error_record(r, exc, None, modes))
    if not requests:
        return
    backend = make_backend(config.model) if backend is None else backend
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
        batch_records, views = [], {}
        for r in groups[key]:  # a record with its own frame_ids sees those views, in its order
            try:
                views[r["id"]] = record_frames(spec, r)
                batch_records.append(r)
            except SampleError as exc:
                emit(_error_record(r, exc, frames_info, modes))
        for start in range(0, len(batch_records), config.batch_size):
            batch = batch_records[start : start + config.batch_size]
            t1 = time.perf_counter()
            try:
                outputs = backend.generate([(r, prompt.render(r), views[r["id"]]) for r in batch],
                                           generation=prompt.generation)
            except Exception as exc:  # noqa: BLE001 - one batch fails: its samples are error records
                for r in batch:
                    emit(_error_record(r, exc, {**frames_info, "frame_ids": views[r["id"]].frame_ids.tolist()}, modes))
                continue
            ms = (time.perf_counter() - t1) * 1e3 / len(batch)
            for r, o in zip(batch, outputs):
                view = views[r["id"]]
                if isinstance(o, SampleError):
                    emit(_error_record(r, o, {**frames_info, "frame_ids": view.frame_ids.tolist()}, modes))
                    continue
                info = {**frames_info, "frame_ids": view.frame_ids.tolist(),
                        "video_grid_thw": o.get("video_grid_thw"),
                        "n_visual_tokens": o.get("n_visual_tokens")}
                scored = score_record(r, o["text"], modes=modes)
                emit({**_base(r), "status": "ok", "error": None, "raw_output": o["text"], "kind": scored["kind"],
                      "flags": scored["flags"], "scores": scored["modes"], "frames": info,
                      "timings_ms": {"generate": round(ms, 3)}})
        store.sync()  # one fsync per scene


def _rescore(config: EvalConfig, store: RunStore, run_id: str, n_expected: int, shard: tuple[int, int, str],
             on_record: Callable[[dict], None] | None, t0: float, score_record: Callable[..., dict]) -> EvalSummary:
    """Re-score ok records of this shard's scenes from their raw outputs; append only what changed."""
    rank, world, _ = shard
    summary = EvalSummary(store.run_dir.as_posix(), run_id, shard, "score", n_expected)
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
    return _finish(summary, store, t0, None)


def _as_sample_error(check) -> SampleError:
    from posevlm.eval import errors as E

    by_kind = {cls.kind: cls for cls in (E.MissingInputError, E.FrameCountMismatchError, E.DecodeError)}
    return by_kind.get(check.error_type, E.DecodeError)(check.message or "input check failed")


def _finish(summary: EvalSummary, store: RunStore, t0: float, shard_records: Sequence[dict] | None) -> EvalSummary:
    """Fill in the shard's state after the call: failed samples (latest record an error), completeness."""
    stored = store.scan()
    if shard_records is None:  # score stage: this shard's scenes are those of its stored records
        rank, world, _ = summary.shard
        scenes = sorted({(r["dataset"], r["scene_name"]) for r in stored.values()})
        mine = set(scenes[rank::world])
        ids = [i for i, r in stored.items() if (r["dataset"], r["scene_name"]) in mine]
    else:
        ids = [r["id"] for r in shard_records]
    if summary.stage != "preflight":
        summary.failed = {i: stored[i]["error"]["kind"] for i in ids if i in stored and stored[i]["status"] == "error"}
    summary.shard_complete = all(i in stored for i in ids)
    summary.complete = store.is_complete()
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary
