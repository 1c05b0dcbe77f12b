"""Frame sources: which frames of a scene a sample sees, decoded once per scene (eval.md §5.3-5.4).

A *request* (``Mp4Uniform``, ``Mp4Fps``, ``FolderManifest``; frozen, hashable) names a source and its
parameters; ``request.load()`` returns a ``FrameSpec``; ``preflight(request)`` checks the inputs on CPU
without decoding pixels. ``mp4_uniform``, ``mp4_fps`` and ``folder_manifest`` are one-call forms.
``FrameCache`` keeps the last few ``FrameSpec`` so the ~18 questions of a scene decode once.

Uniform rules, with the 1,000-frame / N = 8 vector of eval.md §5.3:

- ``round_full`` = ``uniform_round_full``: ``round(linspace(0, T-1, N))``, half to even, after
  rounding N to even (qwen-vl-utils on an mp4) -> [0, 143, 285, 428, 571, 714, 856, 999]. The
  linspace is torch's in float32, as qwen-vl-utils' readers compute it: a float64 linspace rounds
  differently at some frames of long videos (46,367 frames, N = 236: frame 36,896, not 36,895).
- ``floor_full`` = ``uniform_floor_full``: ``floor(linspace(0, T-1, N))`` (lmms-eval multi-image)
  -> [0, 142, 285, 428, 570, 713, 856, 999].
- ``floor_pool128`` = ``uniform_floor_pool128``: pool ``floor(linspace(0, T-1, 128))``, then
  ``pool[floor(linspace(0, 127, N))]`` (pre-sampled uniform folders)
  -> [0, 141, 283, 424, 566, 707, 849, 999].

The frame-count rules ``qwen_nframes`` / ``fps_nframes`` are pure arithmetic shared with the rest of the
library; they live in :mod:`posevlm.qwen_vision` and are re-exported here.

Errors are ``posevlm.eval.errors.SampleError`` subclasses with ``sample_id=None`` (a request serves a
whole scene); the caller attaches the id with ``err.for_sample(id)``.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import numpy as np
from PIL import Image

from posevlm.errors import ConfigError, InputFileError, SchemaVersionError, ShapeError
from posevlm.eval.errors import DecodeError, FrameCountMismatchError, MissingInputError, SampleError
from posevlm.qwen_vision import FRAME_FACTOR, fps_nframes, qwen_nframes
from posevlm.sampling.manifest import MANIFEST_NAME, read_manifest
from posevlm.sampling.pool import PoolConfig, candidate_pool
from posevlm.sampling.uniform import select_uniform

__all__ = [
    "UNIFORM_RULES", "COUNT_POLICIES", "FrameSpec", "Mp4Uniform", "Mp4Fps", "FolderManifest", "FrameRequest",
    "uniform_frame_ids", "qwen_nframes", "fps_nframes", "mp4_uniform", "mp4_fps", "folder_manifest",
    "PreflightResult", "preflight", "check_record_names", "FrameCache", "record_frames",
]  # fmt: skip

UniformRule = Literal["round_full", "floor_full", "floor_pool128"]
CountPolicy = Literal["fail_sample", "pad_repeat_last", "allow_fewer"]
UNIFORM_RULES: tuple[str, ...] = ("round_full", "floor_full", "floor_pool128")
COUNT_POLICIES: tuple[str, ...] = ("fail_sample", "pad_repeat_last", "allow_fewer")
_FRAME_FILE = re.compile(r"_frame_(\d+)(?:_(\d+))?\.png$")


# ------------------------------------------------------------------------------------ pure rules
def uniform_frame_ids(total_frames: int, n: int, rule: UniformRule) -> np.ndarray:
    """(n,) ascending int64 frame ids of a ``total_frames``-frame video under ``rule`` (module docstring).

    Raises:
        ConfigError: unknown rule. FrameCountMismatchError: fewer than n candidate frames.
    """
    if rule not in UNIFORM_RULES:
        raise ConfigError(f"uniform rule must be one of {UNIFORM_RULES}; got {rule!r}", field="rule",
                          value=rule)
    candidates = total_frames if rule != "floor_pool128" else min(128, total_frames)
    if n < 1 or n > candidates:
        raise FrameCountMismatchError(
            f"cannot take {n} frames from {candidates} candidates ({total_frames}-frame video, rule {rule}); "
            "ask for fewer frames", expected=n, found=candidates)
    if rule == "floor_pool128":
        pool = candidate_pool(np.arange(total_frames, dtype=np.int64), PoolConfig(size=128))
        return pool[select_uniform(pool.size, n, rounding="floor").pool_indices]
    if rule == "round_full":
        return select_uniform(total_frames, n, rounding="round").pool_indices  # qwen-vl-utils' reader indices
    return select_uniform(total_frames, n, rounding="floor").pool_indices


# ------------------------------------------------------------------------------------- FrameSpec
@dataclass(frozen=True, eq=False)
class FrameSpec:
    """The frames one sample sees, in model order. S = number of frames after padding.

    Attributes:
        frame_ids: (S,) int64 original video frame indices (repeats allowed).
        frames: (S, H, W, 3) uint8 RGB, made read-only (shared through ``FrameCache``).
        timestamps_s: (S,) float64 ``frame_ids / source_fps``, or None when the fps is unknown.
        source_fps, total_frames: of the source video; None when unknown (legacy folders).
        provenance: source name, rule and parameters, paths, manifest sha256 (JSON-serialisable).
        n_padded: frames appended by the ``pad_repeat_last`` policy.
        w2c_opencv (S, 4, 4), K_pixels (S, 3, 3), image_hw (S, 2): per-frame cameras from a manifest,
            or None. ``K_pixels`` refers to ``image_hw``, not necessarily to the size of ``frames``.
    """

    frame_ids: np.ndarray
    frames: np.ndarray
    timestamps_s: np.ndarray | None
    source_fps: float | None
    total_frames: int | None
    provenance: dict[str, Any]
    n_padded: int = 0
    w2c_opencv: np.ndarray | None = None
    K_pixels: np.ndarray | None = None
    image_hw: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids, frames = np.asarray(self.frame_ids, dtype=np.int64).reshape(-1), np.asarray(self.frames)
        if frames.ndim != 4 or frames.shape[0] != ids.size or frames.shape[3] != 3 \
                or frames.dtype != np.uint8:
            raise ShapeError(f"FrameSpec.frames must be ({ids.size}, H, W, 3) uint8 to match frame_ids; got "
                             f"{frames.shape} {frames.dtype}", name="frames", shape=frames.shape)
        frames.setflags(write=False)
        object.__setattr__(self, "frame_ids", ids)
        object.__setattr__(self, "frames", frames)

    @property
    def n_frames(self) -> int:
        return int(self.frame_ids.size)

    def take(self, frame_ids: Any) -> "FrameSpec":
        """The views ``frame_ids`` (K,) in that order: a permutation or subset of this spec's frames (a question
        asked over views shown in its own order, e.g. ``synthetic_pose``). Pixels, timestamps and cameras follow
        their frames; ``provenance["order"]`` records the ids taken.

        Raises:
            FrameCountMismatchError: an id this spec does not hold (names it), or an empty / non-integer list.
        """
        want = np.asarray(frame_ids).reshape(-1)
        if want.size == 0 or not np.issubdtype(want.dtype, np.integer):
            raise FrameCountMismatchError(f"frame_ids {list(np.asarray(frame_ids).reshape(-1)[:8])!r} must be a "
                                          "non-empty list of ints (the views of the question, in the order shown)",
                                          expected=1, found=int(want.size))
        order = np.argsort(self.frame_ids, kind="stable")
        at = np.searchsorted(self.frame_ids[order], want).clip(max=self.n_frames - 1)
        rows = order[at]
        missing = want[self.frame_ids[rows] != want]
        if missing.size:
            raise FrameCountMismatchError(
                f"frame_ids {missing[:5].tolist()} are not among the {self.n_frames} loaded frames "
                f"{self.frame_ids[:8].tolist()}{' ...' if self.n_frames > 8 else ''}; the record's views must come "
                "from the frame selection it is evaluated on (re-generate the questions for this selection)",
                expected=int(want.size), found=int(want.size - missing.size),
                input=self.provenance.get("scene_dir") or self.provenance.get("path"))
        pick = (lambda a: None if a is None else np.asarray(a)[rows])
        return FrameSpec(want.astype(np.int64), self.frames[rows], pick(self.timestamps_s), self.source_fps,
                         self.total_frames, {**self.provenance, "order": want.astype(int).tolist()}, 0,
                         pick(self.w2c_opencv), pick(self.K_pixels), pick(self.image_hw))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-serialisable (goes into every prediction record)."""
        ts = None if self.timestamps_s is None else np.asarray(self.timestamps_s).tolist()
        return {"frame_ids": self.frame_ids.tolist(), "n_frames": self.n_frames, "n_padded": self.n_padded,
                "decoded_hw": list(self.frames.shape[1:3]), "source_fps": self.source_fps,
                "total_frames": self.total_frames, "timestamps_s": ts,
                "has_cameras": self.w2c_opencv is not None, "provenance": self.provenance}


def record_frames(spec: FrameSpec, record: Mapping[str, Any]) -> FrameSpec:
    """The frames ``record`` is asked over: ``spec`` (the scene's frames, in the source's order), or, when the
    record carries ``frame_ids``, those views in the record's order (``FrameSpec.take``; a question about views
    shown in their own order, e.g. ``synthetic_pose``). Raises ``FrameCountMismatchError`` for a view the spec
    does not hold."""
    ids = record.get("frame_ids")
    return spec if ids is None else spec.take(ids)


def _timestamps(frame_ids: np.ndarray, fps: float | None) -> np.ndarray | None:
    return None if not fps else frame_ids.astype(np.float64) / float(fps)


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1; got {value!r}", field=name, value=value)


# ----------------------------------------------------------------------------------- mp4 sources
def _open_video(path: str):
    from posevlm.scenes.video import VideoStore

    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"video {p} does not exist; expected <video_dir>/<dataset>/<scene>.mp4",
                                input=p)
    try:
        return VideoStore(p)  # indexes packets only; nothing is decoded
    except InputFileError as exc:
        raise DecodeError(str(exc), input=p) from exc


class _Mp4Source(abc.ABC):
    """Shared ``check`` / ``load`` of the mp4 requests; subclasses define ``_ids(store)``."""

    path: str

    def check(self) -> int:
        return int(self._ids(_open_video(self.path)).size)

    def load(self) -> FrameSpec:
        store = _open_video(self.path)
        ids = self._ids(store)
        try:
            frames = store.read_many(ids)
        except InputFileError as exc:
            raise DecodeError(str(exc), input=self.path) from exc
        return FrameSpec(ids, frames, _timestamps(ids, store.fps), float(store.fps),
                         int(store.frame_ids.size), {**self.to_dict(), "decoder": "pyav"})

    @abc.abstractmethod
    def _ids(self, store) -> np.ndarray:
        """(N,) frame ids to decode from ``store``; each source defines its rule."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Mp4Uniform(_Mp4Source):
    """``n`` uniformly spaced frames of an mp4 under ``rule`` (``round_full`` first rounds n to even)."""

    path: str
    n: int
    rule: UniformRule = "round_full"
    source: str = field(default="mp4_uniform", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        _positive_int(self.n, "n")
        if self.rule not in UNIFORM_RULES:
            raise ConfigError(f"rule must be one of {UNIFORM_RULES}; got {self.rule!r}", field="rule")

    @property
    def n_used(self) -> int:
        """Frames actually taken: qwen-vl-utils rounds ``n`` to even for ``round_full``."""
        return qwen_nframes(self.n) if self.rule == "round_full" else self.n

    def _ids(self, store) -> np.ndarray:
        total = int(store.frame_ids.size)
        candidates = min(128, total) if self.rule == "floor_pool128" else total
        if self.n_used < (FRAME_FACTOR if self.rule == "round_full" else 1) or self.n_used > candidates:
            raise FrameCountMismatchError(
                f"video {self.path} has {total} frames; cannot take {self.n_used} (n={self.n}, rule "
                f"{self.rule}: at most {candidates}, qwen-vl-utils also needs n >= 2); ask for fewer frames",
                expected=self.n_used, found=candidates, input=self.path)
        return uniform_frame_ids(total, self.n_used, self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_used": self.n_used, "rule_name": f"uniform_{self.rule}"}


@dataclass(frozen=True)
class Mp4Fps(_Mp4Source):
    """Frames at ``fps`` per second, as qwen-vl-utils' ``fps`` mode (ids as ``round_full``)."""

    path: str
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int | None = None
    source: str = field(default="mp4_fps", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        if not self.fps > 0:
            raise ConfigError(f"fps must be > 0; got {self.fps!r}", field="fps", value=self.fps)

    def _ids(self, store) -> np.ndarray:
        total = int(store.frame_ids.size)
        n = fps_nframes(total, store.fps, self.fps, self.min_frames, self.max_frames)
        if not FRAME_FACTOR <= n <= total:
            raise FrameCountMismatchError(
                f"video {self.path} ({total} frames at {store.fps:.3g} fps) gives {n} frames at "
                f"{self.fps} fps; need 2..{total}", expected=FRAME_FACTOR, found=n, input=self.path)
        return select_uniform(total, n, rounding="round").pool_indices  # qwen-vl-utils' reader indices


# -------------------------------------------------------------------------------- folder source
@dataclass(frozen=True)
class FolderManifest:
    """A pre-sampled frame folder with its ``selected_frames.json`` (schema 2 or legacy).

    Order comes from the manifest (``order="temporal"`` sorts by frame id instead); every listed file
    must exist, the folder's PNG count must equal the manifest's, and that count must equal
    ``n_expected`` unless ``policy`` allows otherwise: ``pad_repeat_last`` repeats the last frame up to
    ``n_expected``, ``allow_fewer`` accepts fewer. More frames than expected always fail.
    """

    scene_dir: str
    n_expected: int
    policy: CountPolicy = "fail_sample"
    order: Literal["manifest", "temporal"] = "manifest"
    source: str = field(default="folder_manifest", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scene_dir", str(self.scene_dir))
        _positive_int(self.n_expected, "n_expected")
        if self.policy not in COUNT_POLICIES:
            raise ConfigError(f"policy must be one of {COUNT_POLICIES}; got {self.policy!r}", field="policy")
        if self.order not in ("manifest", "temporal"):
            raise ConfigError(f"order must be 'manifest' or 'temporal'; got {self.order!r}", field="order")

    def _plan(self) -> tuple[list[dict], dict, dict]:
        """(entries in model order, manifest, provenance) after every file and count check."""
        folder = Path(self.scene_dir)
        path = folder / MANIFEST_NAME
        if not folder.is_dir():
            raise MissingInputError(f"frame folder {folder} does not exist; expected <video_dir>/<dataset>/"
                                    "<scene>/ as written by `posevlm sample`", input=folder)
        if not path.is_file():
            raise MissingInputError(f"{folder} has no {MANIFEST_NAME}; re-run the sampler for this scene",
                                    input=path)
        raw = path.read_bytes()
        try:
            doc = read_manifest(path)
        except (InputFileError, SchemaVersionError) as exc:
            raise DecodeError(str(exc), input=path) from exc
        entries = _manifest_entries(doc, folder)
        missing = [e["file"] for e in entries if not (folder / e["file"]).is_file()]
        if missing:
            raise MissingInputError(f"{len(missing)} frame file(s) listed in {path} are missing, e.g. "
                                    f"{missing[0]}; re-run the sampler for this scene",
                                    input=folder / missing[0])
        pngs, files = sorted(p.name for p in folder.glob("*.png")), [e["file"] for e in entries]
        if len(pngs) != len(entries):
            extra = sorted(set(pngs) - set(files))[:3]
            raise FrameCountMismatchError(
                f"{folder} holds {len(pngs)} PNG files but its manifest lists {len(entries)}"
                f"{f' (not in the manifest: {extra})' if extra else ''}; remove stray files or re-sample",
                expected=len(entries), found=len(pngs), input=folder)
        n = len(entries)
        if n == 0 or n > self.n_expected or (n < self.n_expected and self.policy == "fail_sample"):
            fix = ("pass policy='pad_repeat_last' or 'allow_fewer', or re-sample" if 0 < n < self.n_expected
                   else "point to the folder sampled with this frame budget")
            raise FrameCountMismatchError(f"{folder}: manifest lists {n} frames, expected {self.n_expected}; "
                                          f"{fix}", expected=self.n_expected, found=n, input=folder)
        if self.order == "temporal":
            entries = sorted(entries, key=lambda e: e["frame_id"])
        provenance = {**self.to_dict(), "manifest_path": str(path),
                      "manifest_sha256": hashlib.sha256(raw).hexdigest(),
                      "manifest_schema_version": doc["schema_version"],
                      "sampling_type": doc.get("sampling_type"),
                      "manifest_order_is_file_order": files == sorted(files)}
        return entries, doc, provenance

    def check(self) -> int:
        entries, _, _ = self._plan()
        sizes = {_read_image(Path(self.scene_dir) / e["file"], header_only=True) for e in entries}
        if len(sizes) > 1:
            raise DecodeError(f"frames in {self.scene_dir} differ in size {sorted(sizes)}; re-sample the "
                              "scene", input=self.scene_dir)
        return self.n_expected if self.policy == "pad_repeat_last" else len(entries)

    def load(self) -> FrameSpec:
        entries, doc, provenance = self._plan()
        frames = [_read_image(Path(self.scene_dir) / e["file"]) for e in entries]
        if len({f.shape for f in frames}) > 1:
            shapes = sorted({f.shape for f in frames})
            raise DecodeError(f"frames in {self.scene_dir} differ in size {shapes}; re-sample the scene",
                              input=self.scene_dir)
        n_pad = self.n_expected - len(entries) if self.policy == "pad_repeat_last" else 0
        entries, frames = entries + [entries[-1]] * n_pad, frames + [frames[-1]] * n_pad
        ids = np.asarray([e["frame_id"] for e in entries], dtype=np.int64)
        video = doc.get("video") or {}
        fps, total = video.get("fps"), video.get("n_frames", doc.get("total_frames_in_video"))
        cams = {}
        if all(e.get("w2c_opencv") is not None for e in entries):
            cams = {k: np.asarray([e[k] for e in entries], dtype=np.int64 if k == "image_hw" else np.float64)
                    for k in ("w2c_opencv", "K_pixels", "image_hw")}
        return FrameSpec(ids, np.stack(frames), _timestamps(ids, fps), None if fps is None else float(fps),
                         None if total is None else int(total), provenance, n_padded=n_pad, **cams)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _manifest_entries(doc: dict, folder: Path) -> list[dict]:
    """Per-frame dicts (``frame_id``, ``file``, cameras if any) in manifest order. Schema 2 lists files;
    legacy manifests only list ``selected_frames``, matched to ``*_frame_<id>[_<k>].png`` files."""
    selected = doc.get("selected")
    if isinstance(selected, list) and all(isinstance(s, dict) and "file" in s for s in selected):
        return [dict(s) for s in selected]
    copies: dict[int, list[tuple[int, str]]] = {}
    for p in folder.glob("*.png"):
        if m := _FRAME_FILE.search(p.name):
            copies.setdefault(int(m.group(1)), []).append((int(m.group(2) or 1), p.name))
    queues = {fid: [name for _, name in sorted(v)] for fid, v in copies.items()}
    entries = []
    for fid in doc["selected_frames"]:
        if not queues.get(int(fid)):
            raise MissingInputError(f"{folder}: legacy manifest lists frame {fid} but no (further) "
                                    f"*_frame_{int(fid):06d}[_k].png file exists; re-run the sampler",
                                    input=folder)
        entries.append({"frame_id": int(fid), "file": queues[int(fid)].pop(0)})
    return entries


def _read_image(path: Path, *, header_only: bool = False):
    """(H, W) from the header, or the (H, W, 3) uint8 RGB pixels; ``DecodeError`` if unreadable."""
    try:
        with Image.open(path) as im:
            return (im.size[1], im.size[0]) if header_only else np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DecodeError(f"cannot read image {path} ({exc}); re-export this frame", input=path) from exc


FrameRequest = Union[Mp4Uniform, Mp4Fps, FolderManifest]


def mp4_uniform(path: str | Path, n: int, rule: UniformRule = "round_full") -> FrameSpec:
    """Decode ``n`` uniform frames of ``path`` under ``rule`` (see the module docstring)."""
    return Mp4Uniform(str(path), n, rule).load()


def mp4_fps(path: str | Path, fps: float = 2.0, min_frames: int = 4,
            max_frames: int | None = None) -> FrameSpec:
    """Decode the frames qwen-vl-utils takes at ``fps`` (count clamped to [min_frames, max_frames])."""
    return Mp4Fps(str(path), fps, min_frames, max_frames).load()


def folder_manifest(scene_dir: str | Path, n_expected: int, policy: CountPolicy = "fail_sample",
                    order: Literal["manifest", "temporal"] = "manifest") -> FrameSpec:
    """Load a pre-sampled frame folder (see ``FolderManifest``)."""
    return FolderManifest(str(scene_dir), n_expected, policy, order).load()


# ------------------------------------------------------------------------------------ preflight
@dataclass(frozen=True)
class PreflightResult:
    """Outcome of checking one sample's inputs; ``n_frames`` is what loading would give."""

    sample_id: Any
    ok: bool
    request: dict[str, Any]
    n_frames: int | None = None
    error_type: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "error", **asdict(self)}


def preflight(request: FrameRequest, *, sample_id: Any = None) -> PreflightResult:
    """Check a sample's frame inputs on CPU without decoding pixels: folder or video exists, manifest
    parses and matches the files and the expected count, image headers read and agree in size, the
    mp4 opens and has enough frames (packet index only). Input problems never raise."""
    try:
        n = request.check()
    except SampleError as exc:
        return PreflightResult(sample_id, False, request.to_dict(), error_type=exc.kind, message=exc.message)
    return PreflightResult(sample_id, True, request.to_dict(), n_frames=n)


def check_record_names(dataset: str, scene: str, root: Path, flag: str) -> None:
    """Refuse benchmark ``dataset`` / ``scene_name`` values that are not single path components (``..``,
    separators, absolute paths): they would read inputs outside ``root``."""
    from posevlm.eval.errors import InvalidInputError
    from posevlm.paths import name_problem

    for field_name, value in (("dataset", dataset), ("scene_name", scene)):
        if (problem := name_problem(value)) is not None:
            raise InvalidInputError(f"benchmark {field_name} {problem}: it would resolve outside {flag} {root}; "
                                    f"fix the benchmark record (names must be plain folder names)",
                                    input=str(value))


# -------------------------------------------------------------------------------------- caching
class FrameCache:
    """LRU of decoded ``FrameSpec`` keyed by the hashable request, i.e. by (scene, source parameters).

    Failures are not cached. ``hits`` / ``misses`` count lookups. Frames are read-only, so one decoded
    scene is shared by every question about it.
    """

    def __init__(self, max_entries: int = 4):
        _positive_int(max_entries, "max_entries")
        self.max_entries = max_entries
        self._items: OrderedDict[FrameRequest, FrameSpec] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, request: FrameRequest) -> FrameSpec:
        if request in self._items:
            self.hits += 1
            self._items.move_to_end(request)
            return self._items[request]
        self.misses += 1
        spec = self._items[request] = request.load()
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
        return spec

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, request: object) -> bool:
        return request in self._items

    def clear(self) -> None:
        self._items.clear()
