"""The bad-sample log: samples that could not become model inputs, counted per kind and named, never silent.

:class:`posevlm.train.data.SFTDataset` calls :meth:`BadSampleLog.add` for every sample it skips (with
``on_error="skip"``): one warning on the ``posevlm.train`` logger, one entry in memory and, when the log has
a ``path``, one JSON line appended to that file. DataLoader workers and DDP ranks hold their own copy of the
dataset, so the file is the place where all of them meet: the trainer points every rank at one
``<run dir>/bad_samples.jsonl`` and summarises it with :meth:`BadSampleLog.read` + :meth:`summary` (counts
per error kind over *distinct* sample ids: a sample met by two workers counts once).

Entry: ``{"sample_id", "index", "kind", "message", "input", "pid"}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from posevlm.eval.errors import SampleError

__all__ = ["BadSampleLog", "LOGGER_NAME"]

LOGGER_NAME = "posevlm.train"


class BadSampleLog:
    """Bad samples met so far (in this process), optionally mirrored to an append-only JSONL ``path``."""

    def __init__(self, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.entries: list[dict[str, Any]] = []

    def add(self, *, index: int, sample_id: str, error: SampleError) -> dict[str, Any]:
        """Record one skipped sample; logs a warning and appends a line to ``path`` (one write per line)."""
        entry = {"sample_id": sample_id, "index": int(index), "kind": error.kind, "message": error.message,
                 "input": error.input, "pid": os.getpid()}
        self.entries.append(entry)
        logging.getLogger(LOGGER_NAME).warning("skipped training sample %s (index %d, %s): %s", sample_id, index,
                                               error.kind, error.message)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry

    @property
    def sample_ids(self) -> list[str]:
        """Distinct bad sample ids, in the order first met."""
        return list(dict.fromkeys(e["sample_id"] for e in self.entries))

    @property
    def counts(self) -> dict[str, int]:
        """Distinct bad samples per error kind."""
        first = {e["sample_id"]: e["kind"] for e in reversed(self.entries)}
        return dict(sorted(Counter(first.values()).items()))

    def summary(self) -> dict[str, Any]:
        """``{"n_bad": int, "counts": {kind: n}, "sample_ids": [...], "by_kind": {kind: [ids]}}``."""
        by_kind: dict[str, list[str]] = {}
        for sid in self.sample_ids:
            kind = next(e["kind"] for e in self.entries if e["sample_id"] == sid)
            by_kind.setdefault(kind, []).append(sid)
        return {"n_bad": len(self.sample_ids), "counts": self.counts, "sample_ids": self.sample_ids,
                "by_kind": by_kind}

    def __len__(self) -> int:
        return len(self.sample_ids)

    @classmethod
    def read(cls, path: str | Path) -> "BadSampleLog":
        """The log written at ``path`` by every worker / rank (an empty log if the file does not exist)."""
        log = cls(None)
        path = Path(path)
        if path.is_file():
            log.entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        log.path = path
        return log
