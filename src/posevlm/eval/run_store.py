"""The eval run directory: ``run_config.json`` written once, append-only per-rank JSONL records.

Layout (format ``posevlm.eval_run``, schema_version 1)::

    RUN/
      run_config.json                         {format, schema_version, run_id, config, expected_ids,
                                               created, provenance}
      records/rank{r:05d}-of-{n:05d}.jsonl    one JSON object per finished sample attempt
      backend/rank{r:05d}-of-{n:05d}.json     what the rank's loaded backend resolved (model class, dtype,
                                              resolved position / camera specs, versions): one entry per
                                              start that resolved something different
      preflight/rank{r:05d}-of-{n:05d}.json   the last ``--stage preflight`` report (no records written)
      locks/rank{r:05d}-of-{n:05d}.lock       held (flock) by the process evaluating that shard: pid, host

``run_id`` = first 16 hex of sha256 over the canonical config JSON (sorted keys, compact, UTF-8).
Records are keyed by ``id``; for the same id a later line wins over an earlier one (within a file:
line order; across files: the later ``written`` time, then the higher ``attempt``, then the later
file name). A killed writer leaves a torn last line: ``scan`` ignores it and the next ``append``
to that file cuts it off first, so files never hold garbage in the middle. Records of different
world sizes may coexist (a run resumed on another number of GPUs); the shard only decides who
works on an id, never what a record means, because the config, not the sharding, defines the run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from posevlm.atomic import atomic_write_text, write_new_file
from posevlm.errors import ConfigError, InputFileError, PosevlmError, SchemaVersionError

__all__ = [
    "RUN_FORMAT", "RUN_SCHEMA_VERSION", "RUN_CONFIG_NAME", "RECORDS_DIR", "RECORD_STATUSES",
    "canonical_json", "run_id_for", "shard_file_name", "ScanStats", "RunStore", "RunData", "load_run",
    "RunLockedError",
]  # fmt: skip

RUN_FORMAT = "posevlm.eval_run"
RUN_SCHEMA_VERSION = 1
RUN_CONFIG_NAME = "run_config.json"
RECORDS_DIR = "records"
RECORD_STATUSES: tuple[str, ...] = ("ok", "error")
_SHARD_RE = re.compile(r"rank(\d{5})-of-(\d{5})\.jsonl")


class RunLockedError(PosevlmError):
    """Another live process is evaluating the same run directory and shard. ``path`` is the lock file."""

    def __init__(self, message: str, *, path: Path):
        super().__init__(message)
        self.path = path


def _lock_holder(fd: int) -> dict[str, Any]:
    """The JSON a lock holder wrote into its lock file ({} when empty or unreadable)."""
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays and paths, so the runner can append what it has without converting."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Sorted keys, compact separators, UTF-8 text, no NaN/inf: the text hashed into ``run_id``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_json_default)


def run_id_for(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of sha256(canonical_json(config))."""
    try:
        text = canonical_json(config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"eval config is not JSON-serialisable ({exc}); store names and numbers, not "
                          "objects", field="config", value=None) from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def shard_file_name(rank: int, world: int) -> str:
    """``rank{r:05d}-of-{n:05d}.jsonl``; raises ConfigError unless 0 <= rank < world."""
    if not (isinstance(rank, int) and isinstance(world, int) and 0 <= rank < world):
        raise ConfigError(f"rank/world must be ints with 0 <= rank < world; got rank={rank!r}, "
                          f"world={world!r}", field="rank", value=rank)
    return f"rank{rank:05d}-of-{world:05d}.jsonl"


def _timestamp(text: Any) -> float:
    try:
        t = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return -math.inf
    return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).timestamp()


@dataclass(frozen=True)
class ScanStats:
    """What ``scan`` found: shard ``files``, parsed ``lines``, ``superseded`` records (an id written
    again), ``truncated`` files (torn last line ignored), and the ``world_sizes`` seen."""

    files: int = 0
    lines: int = 0
    superseded: int = 0
    truncated: tuple[str, ...] = ()
    world_sizes: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class RunStore:
    """Reader and writer of one run directory (see module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.config_path = self.run_dir / RUN_CONFIG_NAME
        self.records_dir = self.run_dir / RECORDS_DIR
        self._repaired: set[Path] = set()
        self._unsynced: set[Path] = set()

    # ---- backend/<shard>.json ----------------------------------------------------------------
    def write_backend_info(self, info: Mapping[str, Any], rank: int, world: int) -> Path:
        """Record what this rank's backend resolved (``HFBackend.info``) in ``backend/<shard>.json``, a list
        with one entry per start that resolved something different (a resume under another transformers
        version keeps both), written atomically. The run id stays the hash of the requested config."""
        path = self.run_dir / "backend" / shard_file_name(rank, world).replace(".jsonl", ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = json.loads(json.dumps(dict(info), sort_keys=True, default=_json_default))
        starts = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
        if starts and starts[-1] == entry:
            return path
        atomic_write_text(path, json.dumps(starts + [entry], indent=1, sort_keys=True))
        return path

    def write_json(self, relative: str, doc: Mapping[str, Any]) -> Path:
        """Write ``RUN/<relative>`` atomically (folders created); returns its path."""
        path = self.run_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, default=_json_default))

    # ---- locks/<shard>.lock ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, rank: int, world: int) -> Iterator[dict[str, Any] | None]:
        """Hold ``RUN/locks/<shard>.lock`` (an exclusive ``flock``, released by the kernel if the process dies)
        for the body; yields the stale holder's info if a dead process held it before (taken over).

        Raises:
            RunLockedError: another live process holds this shard's lock (names its pid, host and start).
        """
        path = self.run_dir / "locks" / shard_file_name(rank, world).replace(".jsonl", ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                raise RunLockedError(
                    f"run directory {self.run_dir} shard {rank}/{world} is being evaluated by pid "
                    f"{holder.get('pid', '?')} on host {holder.get('host', '?')} (since {holder.get('started', '?')}); "
                    "wait for it to finish, or use another --out / --shard", path=path) from None
            except OSError as exc:  # e.g. ENOLCK on a file system without locks: say so, do not pretend
                warnings.warn(f"cannot lock {path} ({exc.strerror}): concurrent runs of this shard are not "
                              "detected on this file system", stacklevel=3)
                yield None
                return
            stale = _lock_holder(fd) or None
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
            try:
                yield stale
            finally:
                os.ftruncate(fd, 0)  # released: an empty file is a free lock (never unlinked: no unlink race)
        finally:
            os.close(fd)

    def backend_info(self) -> dict[str, list[dict[str, Any]]]:
        """``{shard file name: [info per distinct start]}`` of every rank that loaded a backend (files of other
        world sizes included: a run resumed on another number of GPUs keeps its history)."""
        folder = self.run_dir / "backend"
        return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))} \
            if folder.is_dir() else {}

    # ---- run_config.json ---------------------------------------------------------------------
    def create_or_verify(self, config: Mapping[str, Any], expected_ids: Sequence[int], *,
                         provenance: Mapping[str, Any] | None = None) -> str:
        """Write ``run_config.json`` once (atomically); on later calls check it holds this config.

        Returns:
            the run_id.
        Raises:
            ConfigError: the directory holds a different config or a different expected-id set;
                expected_ids are not unique ints.
        """
        run_id = run_id_for(config)
        ids = _check_ids(expected_ids)
        if not self.config_path.exists():
            from posevlm.provenance import provenance as _provenance

            doc = {"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION, "run_id": run_id,
                   "config": config, "expected_ids": ids,
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "provenance": dict(provenance) if provenance is not None else _provenance()}
            self.records_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(doc, indent=1, sort_keys=True, default=_json_default)
            if write_new_file(self.config_path, text):
                return run_id
        doc = self.read_config()
        if run_id_for(doc["config"]) != run_id:
            raise ConfigError(f"run directory {self.run_dir} holds a different configuration (run_id "
                              f"{doc['run_id']} != {run_id}); choose another --out",
                              field="config", value=run_id)
        if sorted(doc["expected_ids"]) != sorted(ids):
            raise ConfigError(f"run directory {self.run_dir} has the same configuration but a different set "
                              f"of expected ids ({len(doc['expected_ids'])} stored, {len(ids)} now): the "
                              "benchmark data changed under the run; choose another --out",
                              field="expected_ids", value=len(ids))
        return run_id

    def read_config(self) -> dict[str, Any]:
        """The ``run_config.json`` document, format and schema version checked."""
        try:
            doc = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputFileError(f"{self.run_dir} has no {RUN_CONFIG_NAME}: not a posevlm eval run "
                                 "directory (pass the directory given to posevlm eval --out)",
                                 path=self.run_dir) from None
        except (OSError, ValueError) as exc:
            raise InputFileError(f"cannot read {self.config_path}: {exc}", path=self.config_path) from None
        if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise InputFileError(f"{self.config_path} is not a {RUN_FORMAT} file (format={found!r})",
                                 path=self.config_path)
        if doc.get("schema_version", 0) > RUN_SCHEMA_VERSION:
            raise SchemaVersionError(f"{self.config_path} has schema_version {doc['schema_version']}, newer "
                                     f"than {RUN_SCHEMA_VERSION}; upgrade posevlm to read it")
        return doc

    # ---- records -----------------------------------------------------------------------------
    def shard_path(self, rank: int, world: int) -> Path:
        return self.records_dir / shard_file_name(rank, world)

    def append(self, record: Mapping[str, Any], rank: int, world: int, *, durable: bool = True) -> None:
        """Append one record as one JSON line to this rank's file; flush it to the OS before returning, and fsync
        it too when ``durable`` (else :meth:`sync` does, e.g. once per scene: a killed process loses nothing
        either way, only a machine crash can lose records written since the last sync, which a resume redoes).

        Strict JSON: non-finite floats (a model answering "nan" parses to NaN) are written as null.

        The first append to a file in this process first repairs a torn last line (a killed writer):
        a complete JSON object is kept and newline-terminated, anything else is cut off.
        """
        rid = record.get("id") if isinstance(record, Mapping) else None
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise ConfigError(f"record id must be an int; got {rid!r}", field="id", value=rid)
        if record.get("status") not in RECORD_STATUSES:
            raise ConfigError(f"record {rid}: status must be one of {RECORD_STATUSES}; got "
                              f"{record.get('status')!r}", field="status", value=record.get("status"))
        try:
            try:
                line = _record_line(record)
            except ValueError:  # NaN/inf, e.g. the parsed answer of a model that said "nan"
                line = _record_line(_finite(record))
        except TypeError as exc:
            raise ConfigError(f"record {rid} is not JSON-serialisable ({exc})", field="record",
                              value=rid) from None
        path = self.shard_path(rank, world)
        if path not in self._repaired:
            path.parent.mkdir(parents=True, exist_ok=True)
            _repair_tail(path)
            self._repaired.add(path)
        try:
            with open(path, "ab") as f:
                f.write(line.encode("utf-8"))
                f.flush()
                if durable:
                    os.fsync(f.fileno())
                else:
                    self._unsynced.add(path)
        except OSError as exc:  # disk full, quota, file size limit: name the file (a torn line is repaired on resume)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc

    def sync(self) -> None:
        """fsync every shard file appended to with ``durable=False`` since the last sync."""
        for path in sorted(self._unsynced):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._unsynced.clear()

    def shard_files(self) -> list[Path]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.iterdir() if _SHARD_RE.fullmatch(p.name))

    def scan_with_stats(self) -> tuple[dict[int, dict[str, Any]], ScanStats]:
        """Read every shard file: ``{id: latest record}`` and what was found (see module docstring)."""
        best: dict[int, tuple[float, int, int, dict]] = {}
        lines = superseded = 0
        truncated, worlds = [], set()
        files = self.shard_files()
        for file_index, path in enumerate(files):
            worlds.add(int(_SHARD_RE.fullmatch(path.name).group(2)))  # type: ignore[union-attr]
            records, torn = _read_shard(path)
            if torn:
                truncated.append(path.name)
            lines += len(records)
            latest: dict[int, dict] = {}
            for rec in records:
                superseded += rec["id"] in latest
                latest[rec["id"]] = rec
            for rid, rec in latest.items():
                key = (_timestamp(rec.get("written")), int(rec.get("attempt") or 0), file_index, rec)
                if rid in best:
                    superseded += 1
                    if key[:3] < best[rid][:3]:
                        continue
                best[rid] = key
        stats = ScanStats(len(files), lines, superseded, tuple(truncated), tuple(sorted(worlds)))
        return {rid: best[rid][3] for rid in sorted(best)}, stats

    def scan(self) -> dict[int, dict[str, Any]]:
        """``{id: record}`` over all shard files, latest record per id, sorted by id."""
        return self.scan_with_stats()[0]

    def done_ids(self, *, include_errors: bool = True) -> set[int]:
        """Ids with a record (``status == "ok"`` only when ``include_errors=False``)."""
        return {rid for rid, rec in self.scan().items() if include_errors or rec.get("status") == "ok"}

    def missing_ids(self, *, include_errors: bool = True) -> list[int]:
        """Expected ids without a record, in expected order (error records count as done by default)."""
        done = self.done_ids(include_errors=include_errors)
        return [i for i in self.read_config()["expected_ids"] if i not in done]

    def is_complete(self) -> bool:
        """Every expected id has a record (errors included: they are scored 0 and reported)."""
        return not self.missing_ids()


def _record_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_json_default) + "\n"


def _finite(obj: Any) -> Any:
    """Non-finite floats -> None, recursively (strict JSON has no NaN/inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    return obj


def _check_ids(expected_ids: Iterable[int]) -> list[int]:
    ids = list(expected_ids)
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)]
    if bad:
        raise ConfigError(f"expected_ids must be ints; got {bad[:5]!r}", field="expected_ids", value=bad[:5])
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
        raise ConfigError(f"expected_ids has duplicates (e.g. {dup}); sample ids must be unique",
                          field="expected_ids", value=dup)
    return ids


def _repair_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        cut = data.rfind(b"\n") + 1
        try:
            keep = isinstance(json.loads(data[cut:]), dict)
        except ValueError:
            keep = False
        if keep:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())


def _read_shard(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Records of one file in line order, and whether a torn last line was ignored."""
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline: an unterminated tail is a killed writer's
    out = []
    for number, line in enumerate([*lines, tail], start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            rid = rec.get("id") if isinstance(rec, dict) else None
            if not isinstance(rid, int) or isinstance(rid, bool):
                raise ValueError(f"no integer 'id' (got {rid!r})")
        except ValueError as exc:
            if number > len(lines):
                return out, True
            raise InputFileError(f"line {number} of {path} is not a posevlm eval record ({str(exc)[:80]}) "
                                 "and not the last line (so not a killed writer): the file was edited or "
                                 "damaged; delete that line to continue (its sample is re-run on resume)",
                                 path=path) from None
        out.append(rec)
    return out, False


@dataclass(frozen=True)
class RunData:
    """A loaded run: config, the latest record per expected id (sorted by id) and what is missing.

    ``unexpected_ids``: ids with records that are not in ``expected_ids`` (ignored everywhere).
    """

    run_dir: Path
    run_id: str
    config: dict[str, Any]
    expected_ids: tuple[int, ...]
    records: tuple[dict[str, Any], ...]
    missing_ids: tuple[int, ...]
    unexpected_ids: tuple[int, ...] = ()
    stats: ScanStats = field(default_factory=ScanStats)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.missing_ids)

    @property
    def n_expected(self) -> int:
        return len(self.expected_ids)

    @property
    def n_done(self) -> int:
        return len(self.records)


def load_run(run_dir: str | Path, *, allow_partial: bool = False) -> RunData:
    """Read a run directory; refuse (InputFileError) a run with missing ids unless ``allow_partial``."""
    store = RunStore(run_dir)
    doc = store.read_config()
    found, stats = store.scan_with_stats()
    expected = tuple(doc["expected_ids"])
    expected_set = set(expected)
    missing = tuple(i for i in expected if i not in found)
    if missing and not allow_partial:
        head = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputFileError(f"run {store.run_dir} is incomplete: {len(missing)} of {len(expected)} expected "
                             f"samples have no record (ids {head}). Resume it with the same posevlm eval "
                             "command, or pass --allow-partial for artefacts labelled PARTIAL",
                             path=store.run_dir)
    records = tuple(rec for rid, rec in found.items() if rid in expected_set)
    unexpected = tuple(rid for rid in found if rid not in expected_set)
    return RunData(store.run_dir, doc["run_id"], doc["config"], expected, records, missing, unexpected, stats,
                   dict(doc.get("provenance") or {}))
