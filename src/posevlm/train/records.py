"""The training record format (spec models.md §3.1): read, validate and normalise annotation files.

A file is a JSON array of records or JSONL (one record per line). One record::

    {"id": "scene0011_00/q3",                      # optional; else "<file stem>:<line>"
     "video": "videos/scene0011_00.mp4",           # or a list; or "image": str | list
     "conversations": [{"from": "human", "value": "<video>\\nHow many chairs?"},
                       {"from": "gpt", "value": "4"}],
     "num_tokens": 1234,                            # optional, for length grouping
     "frame_ids": [40, 8, 72, 24]}                  # optional, one video: the views shown, in this order

Turns are ``{"from": "human" | "gpt" | "system", "value": str}`` or ``{"role": "user" | "assistant" |
"system", "content": str}``; both become :class:`Turn` with ``role`` in (system, user, assistant). Media
paths stay as written (relative to the dataset's media root, resolved when a sample is built).

Normalisation: a record with a ``video`` has every ``<image>`` tag rewritten to ``<video>`` (ViCA-322K and
VSI-590K write ``<image>`` for videos). Validation (all problems of a record at once, naming file, line and
field): turns are objects with a known role and a string text; the ``<video>`` / ``<image>`` tags of the
system and user turns match the number of videos / images one to one; assistant turns hold no tag; a
record has either videos or images, not both. A record without an assistant turn is *valid* here (it is
a bad sample at build time, counted and skipped, see :mod:`posevlm.train.data`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from posevlm.train.errors import RecordError

__all__ = ["VIDEO_TAG", "IMAGE_TAG", "ROLES", "Turn", "Record", "parse_record", "read_records"]

VIDEO_TAG = "<video>"
IMAGE_TAG = "<image>"
Role = Literal["system", "user", "assistant"]
#: Accepted role spellings -> the normalised role.
ROLES: dict[str, Role] = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                          "system": "system"}
_KNOWN = {"id", "video", "image", "conversations", "num_tokens"}
_MAX_REPORTED = 10


@dataclass(frozen=True)
class Turn:
    """One conversation turn: ``role`` in (system, user, assistant) and its text (tags included)."""

    role: Role
    text: str


@dataclass(frozen=True)
class Record:
    """One validated training record.

    Attributes:
        sample_id: the record's ``id`` as a string, else ``"<file stem>:<line>"``.
        turns: the conversation, roles normalised, ``<image>`` rewritten to ``<video>`` for video records.
        videos / images: media paths as written in the file (relative to the media root, or absolute).
        num_tokens: the record's ``num_tokens`` (length grouping), or None.
        source: ``"<file>:<line>"`` where the record starts.
        extra: the record's other fields (e.g. ``question_type``), JSON values; read-only by convention.
    """

    sample_id: str
    turns: tuple[Turn, ...]
    videos: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    num_tokens: int | None = None
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def has_assistant_turn(self) -> bool:
        return any(t.role == "assistant" for t in self.turns)


def _media(value: Any, name: str, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        problems.append((name, f"{name} must be a non-empty string or a non-empty list of strings; got {value!r}"))
        return ()
    return tuple(items)


def _turn(raw: Any, k: int, problems: list[tuple[str, str]]) -> Turn | None:
    where = f"conversations[{k}]"
    if not isinstance(raw, dict):
        problems.append((where, f"{where} must be an object; got {type(raw).__name__}"))
        return None
    role_key, text_key = ("from", "value") if "from" in raw else ("role", "content")
    role, text = raw.get(role_key), raw.get(text_key)
    if role not in ROLES:
        problems.append((f"{where}.{role_key}", f"{where}.{role_key} must be one of {sorted(ROLES)}; got {role!r} "
                         "(turns are {\"from\": human|gpt|system, \"value\": ...} or {\"role\": user|assistant|system, "
                         "\"content\": ...})"))
        return None
    if not isinstance(text, str):
        problems.append((f"{where}.{text_key}", f"{where}.{text_key} must be a string; got {type(text).__name__}"))
        return None
    return Turn(ROLES[role], text)


def parse_record(raw: Any, *, path: str | Path = "<memory>", line: int | None = None) -> Record:
    """Validate and normalise one record (see the module docstring).

    Raises:
        RecordError: every problem of the record in one message; ``field`` is the first bad field.
    """
    where = f"{path}:{line}" if line is not None else str(path)
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: a record must be a JSON object; got {type(raw).__name__}", path=path, line=line)
    problems: list[tuple[str, str]] = []
    videos = _media(raw.get("video"), "video", problems)
    images = _media(raw.get("image"), "image", problems)
    if videos and images:
        problems.append(("image", "a record has either 'video' or 'image', not both"))
    convs = raw.get("conversations")
    turns: list[Turn] = []
    if not isinstance(convs, list) or not convs:
        problems.append(("conversations", "conversations must be a non-empty list of turns"))
    else:
        turns = [t for k, raw_turn in enumerate(convs) if (t := _turn(raw_turn, k, problems)) is not None]
    if videos:  # ViCA-322K / VSI-590K write <image> for their videos
        turns = [Turn(t.role, t.text.replace(IMAGE_TAG, VIDEO_TAG)) for t in turns]
    if isinstance(convs, list) and convs and len(turns) == len(convs):
        for tag, media, name in ((VIDEO_TAG, videos, "video"), (IMAGE_TAG, images, "image")):
            n_tags = sum(t.text.count(tag) for t in turns if t.role != "assistant")
            if n_tags != len(media):
                problems.append((name, f"{len(media)} {name}(s) but {n_tags} {tag} tag(s) in the system/user turns; "
                                 f"put one {tag} where each {name} goes (e.g. \"{tag}\\n<question>\" in the first "
                                 "human turn)"))
        tagged = [k for k, t in enumerate(turns) if t.role == "assistant" and (VIDEO_TAG in t.text or IMAGE_TAG in t.text)]
        if tagged:
            problems.append((f"conversations[{tagged[0]}]", f"assistant turn(s) {tagged} hold a {VIDEO_TAG} / "
                             f"{IMAGE_TAG} tag; media go in system or user turns"))
    num_tokens = raw.get("num_tokens")
    if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0):
        problems.append(("num_tokens", f"num_tokens must be an int >= 0; got {num_tokens!r}"))
    views = raw.get("frame_ids")
    if views is not None and not (isinstance(views, list) and views and len(videos) == 1 and all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in views) and len(set(views)) == len(views)):
        problems.append(("frame_ids", f"frame_ids (the views shown, in order) must be a non-empty list of distinct ints "
                         f">= 0 of a record with one video; got {views!r} with {len(videos)} video(s)"))
    rid = raw.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        problems.append(("id", f"id must be a string or an int; got {rid!r}"))
    if problems:
        raise RecordError(f"{where}: " + "; ".join(f"{f}: {m}" if not m.startswith(f) else m for f, m in problems),
                          path=path, line=line, field=problems[0][0])
    sample_id = str(rid) if rid is not None else f"{Path(path).stem}:{line}"
    return Record(sample_id, tuple(turns), videos, images, num_tokens, where,
                  {k: v for k, v in raw.items() if k not in _KNOWN})


def _json_lines(text: str) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, exc


def _json_array(text: str) -> Iterator[tuple[int, Any]]:
    """(line where each element starts, element) of a JSON array, so errors can name the line."""
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    ws = " \t\r\n"
    while True:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield line, exc
            return
        yield line, value
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            yield text.count("\n", 0, pos) + 1, json.JSONDecodeError("expected ',' or ']'", text, pos)
            return


def read_records(path: str | Path) -> list[Record]:
    """The records of a JSON-array or JSONL annotation file, validated, in file order.

    Raises:
        RecordError: missing file, bad JSON or invalid records (up to 10 problems reported at once, each
            with its line; ``line`` / ``field`` are the first one's), or a repeated ``id``.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"annotation file {path} does not exist", path=path)
    text = path.read_text(encoding="utf-8")
    is_array = text.lstrip().startswith("[")
    records, errors, seen = [], [], {}
    for line, raw in (_json_array(text) if is_array else _json_lines(text)):
        try:
            if isinstance(raw, json.JSONDecodeError):
                raise RecordError(f"{path}:{line}: not JSON ({raw.msg} at column {raw.colno})", path=path, line=line)
            record = parse_record(raw, path=path, line=line)
            if record.sample_id in seen:
                raise RecordError(f"{path}:{line}: id {record.sample_id!r} repeats the record of line "
                                  f"{seen[record.sample_id]}; ids must be unique", path=path, line=line, field="id")
        except RecordError as exc:
            errors.append(exc)
            if len(errors) >= _MAX_REPORTED:
                break
            continue
        seen[record.sample_id] = line
        records.append(record)
    if errors:
        more = " (stopped after 10)" if len(errors) >= _MAX_REPORTED else ""
        raise RecordError(f"{len(errors)} invalid record(s) in {path}{more}:\n  " + "\n  ".join(map(str, errors)),
                          path=path, line=errors[0].line, field=errors[0].field)
    return records
