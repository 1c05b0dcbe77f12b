"""The oracle backend: answers VSI-style questions with perfect perception of the given frames only.

It sees exactly what :func:`posevlm.eval.perception.observe` returns for ``frame_ids``: which
instances have >= ``min_pixels`` pixels in some given frame, when each was first seen, and their
back-projected world points (depth + instance masks; categories from the scene's object list, i.e.
a flawless recogniser). It never reads the boxes or the room outline, so with few frames it knows
less, and with every frame it is an upper bound for a model that perceives perfectly but must still
measure from what it saw. Per question type:

| question_type | answer |
|---|---|
| ``object_counting`` | seen instances of the category |
| ``object_size_estimation`` | longest side of the axis-aligned box of the object's points, cm |
| ``room_size_estimation`` | :func:`floor_area_from_points` of every observed point (structure and objects) |
| ``object_abs_distance`` | :func:`closest_distance` between the two objects' point sets, m |
| ``object_rel_distance`` | choice whose seen instances come closest to the target's points |
| ``object_rel_direction_*`` | ``direction_label`` (synthetic_vsi) of the observed centroids |
| ``route_planning`` | option agreeing with the most turns of the route through the observed centroids (``routes.turn_label``) |
| ``obj_appearance_order`` | option agreeing with the most pairs of first sightings (unseen = last) |

Pose questions (``synthetic_pose``, views shown in the record's own order): the oracle reads the option texts
("frame 3", "frame 1 and frame 4") as positions in the *presented* sequence and the cameras of the presented
views (the ``FrameSpec``'s manifest cameras, else the scan's), so it answers only as well as the views arrive in the
order the question refers to:

| question_type | answer |
|---|---|
| ``pose_view_facing`` | option whose view's optical axis makes the smallest angle with the ray to the object's observed centroid |
| ``pose_rel_direction`` | sign of the target's observed centroid's x in the camera of the view facing the anchor most directly |
| ``pose_view_overlap`` | option pair whose frusta share the most observed points (``pose_tasks.frustum_overlap``) |

Fallbacks (documented, deterministic): a numerical question about anything unseen (or nothing seen
at all) is answered ``FALLBACK_NUMBER`` = "0" (for counting that is simply what was seen); a
multiple-choice question whose needed objects are unseen is answered ``FALLBACK_LETTER`` = "A".
The choices of MC questions are read from ``record["meta"]`` (the categories behind the option
texts), as a model reads the options; ground-truth fields in ``meta`` are never used.

Answers are strings as a model would write them: "3", "62.5", "1.73", "28.1", "B".

Point-cloud runs (``--frames point_cloud``): questions are answered from the frames the cloud was built from (a
scan folder as ``--frames-root``); ``layout`` records (benchmark ``synthetic_layout``) get the scan's exact layout
in the cloud's frame (:func:`answer_layout_oracle`), which scores 1 when cloud, target and scorer agree.

:class:`OracleBackend` is the ``oracle`` backend of the eval runner: it loads each scene once and
perceives each (scene, selected frames) once, caching the :class:`Observation` in a small LRU shared by
every question asked about those frames (a question's answer depends on the frames only, never on
which other questions are in its batch).
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError
from posevlm.eval.backends.base import BackendSpec
from posevlm.eval.benchmarks.pose_tasks import (
    OVERLAP_MAX_DEPTH, facing_angles_deg, frustum_overlap, horizontal_angle_deg,
)  # fmt: skip
from posevlm.eval.benchmarks.routes import route_turn_angles, turn_label
from posevlm.eval.benchmarks.synthetic_vsi import direction_label, format_number, relative_direction_deg
from posevlm.eval.errors import MissingInputError
from posevlm.eval.layout_format import LAYOUT_QUESTION_TYPE
from posevlm.eval.layout_script import layout_from_metadata
from posevlm.eval.perception import Observation, PerceptionConfig, observe, perception_config_problems
from posevlm.scenes import Scene

__all__ = [
    "OracleConfig", "FALLBACK_NUMBER", "FALLBACK_LETTER", "OBSERVATION_CACHE_SIZE", "OracleBackend",
    "answer_oracle", "answer_oracle_many", "answer_pose_oracle", "answer_layout_oracle", "points_extent_cm",
    "closest_distance", "floor_area_from_points",
]  # fmt: skip

FALLBACK_NUMBER = "0"
FALLBACK_LETTER = "A"
#: loaded scenes an ``OracleBackend`` keeps (LRU)
SCENE_CACHE_SIZE = 8
#: observations an ``OracleBackend`` keeps (LRU); the runner groups samples by scene, so few are needed
OBSERVATION_CACHE_SIZE = 8
_LETTERS = "ABCD"


@dataclass(frozen=True)
class OracleConfig:
    """Oracle perception and measurement settings.

    Attributes:
        min_pixels: an object counts as seen in a frame with >= this many pixels (full resolution).
        pixel_stride: back-project every ``pixel_stride``-th row and column.
        voxel_m: keep one observed point per voxel of this side (metres; 0 = all points).
        floor_cell_m: raster cell for the room area (metres).
        closing_cells: morphological closing radius (cells) bridging gaps between sparse far-floor
            samples before enclosed holes are filled.
        batch_frames: frames back-projected per batch.
    """

    min_pixels: int = 20
    pixel_stride: int = 1
    voxel_m: float = 0.01
    floor_cell_m: float = 0.1
    closing_cells: int = 2
    batch_frames: int = 32
    schema_version: int = 1

    def __post_init__(self) -> None:
        problems = perception_config_problems(self)
        if not self.floor_cell_m > 0:
            problems.append(f"floor_cell_m must be > 0 metres; got {self.floor_cell_m!r}")
        if not isinstance(self.closing_cells, int) or self.closing_cells < 0:
            problems.append(f"closing_cells must be an int >= 0; got {self.closing_cells!r}")
        if problems:
            raise ConfigError("invalid OracleConfig: " + "; ".join(problems), field="OracleConfig")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OracleConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            valid = [f.name for f in fields(cls)]
            raise ConfigError(f"unknown OracleConfig keys {sorted(unknown)}; valid: {valid}.",
                              field="OracleConfig", value=sorted(unknown))
        return cls(**d)


# ----------------------------------------------------------------------------- measurements


def _bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of (M, D) points: one 1-D pass per column, ~6x faster than ``min(0)``
    (which walks (M, 3) row by row); exact, like any min/max."""
    return np.array([c.min() for c in points.T]), np.array([c.max() for c in points.T])


def points_extent_cm(points: np.ndarray) -> float:
    """Longest side (cm) of the axis-aligned box of (M, 3) points (world axes)."""
    lo, hi = _bounds(points)
    return float((hi - lo).max() * 100.0)


def _min_pairwise(a: np.ndarray, b: np.ndarray, block: int = 1 << 22) -> float:
    """Smallest distance between rows of (n, 3) ``a`` and (m, 3) ``b``: blocked |p|² + |q|² - 2 p.q
    (callers centre the points, which keeps the rounding error below a micrometre)."""
    best = np.inf
    b2 = (b * b).sum(1)
    step = max(1, block // max(len(b), 1))
    for k in range(0, len(a), step):
        c = a[k:k + step]
        best = min(best, float(((c * c).sum(1)[:, None] + b2[None] - 2.0 * (c @ b.T)).min()))
    return float(np.sqrt(max(best, 0.0)))


def _distance_to_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(M,) Euclidean distance of (M, 3) points to the box [lo, hi]; the squares are summed in
    ``np.linalg.norm``'s order ((x² + y²) + z²), column by column."""
    d = np.maximum(0.0, np.maximum(lo - points, points - hi))
    x, y, z = d.T
    return np.sqrt(x * x + y * y + z * z)


def closest_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the closest points of two (M, 3) point sets (exact up to ~1e-6 m).

    Coarse-to-fine: an upper bound ``ub`` from <= 256 strided points of each set prunes each set to
    the points within ``ub`` of the other set's bounding box (the closest pair always survives);
    repeated while that shrinks the sets, then a blocked exhaustive search over the survivors.
    """
    origin = a.mean(0)
    a, b = a - origin, b - origin
    ub = np.inf
    while True:
        ub = min(ub, _min_pairwise(a[:: max(1, len(a) // 256)], b[:: max(1, len(b) // 256)]))
        slack = ub + 1e-6
        a_near = a[_distance_to_box(a, *_bounds(b)) <= slack]
        b_near = b[_distance_to_box(b, *_bounds(a)) <= slack]
        if len(a_near) * len(b_near) <= 1 << 16 or len(a_near) + len(b_near) == len(a) + len(b):
            return _min_pairwise(a_near, b_near)
        a, b = a_near, b_near


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Chebyshev dilation by r cells (outside the array counts as empty)."""
    out = mask
    for axis in (0, 1):
        acc = out.copy()
        n = out.shape[axis]
        for k in range(1, r + 1):
            lo, hi = [slice(None)] * 2, [slice(None)] * 2
            lo[axis], hi[axis] = slice(k, n), slice(0, n - k)
            acc[tuple(lo)] |= out[tuple(hi)]
            acc[tuple(hi)] |= out[tuple(lo)]
        out = acc
    return out


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every empty cell not 4-connected to the array border through empty cells."""
    free = ~mask
    outside = np.zeros_like(mask)
    outside[[0, -1], :], outside[:, [0, -1]] = free[[0, -1], :], free[:, [0, -1]]
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= free
        if np.array_equal(grown, outside):
            return ~outside
        outside = grown


def floor_area_from_points(points_xy: np.ndarray, *, cell_m: float = 0.1, closing_cells: int = 2) -> float:
    """Area (m²) of the floor region covered by observed points, without knowing the room outline.

    Every observed point lies inside the room, so its floor-plane position marks covered floor:
    points are rasterised on a ``cell_m`` grid, closed morphologically (radius ``closing_cells``, which
    keeps rectilinear outlines larger than the radius) to bridge sparse far-floor samples, and holes
    enclosed by covered cells (under furniture, shadows) are filled; floor never seen and not enclosed
    is left out, so partial views give smaller rooms. Cells on the outline are on average half inside,
    so they count half: area = (cells + interior cells) / 2 x cell², unbiased for walls along the grid
    axes and monotone (more observed points never shrink the area, since closing, hole filling and
    the interior are all monotone in the set of occupied cells).
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return 0.0
    pad = closing_cells + 2
    ij = np.floor(pts / cell_m).astype(np.int64)
    lo, hi = _bounds(ij)
    ij -= lo - pad
    occupied = np.zeros(tuple(hi - lo + 2 * pad + 1), dtype=bool)
    occupied[ij[:, 0], ij[:, 1]] = True
    closed = ~_dilate(~_fill_holes(_dilate(occupied, closing_cells)), closing_cells) | occupied
    interior = closed.copy()
    interior[1:-1, 1:-1] &= closed[:-2, 1:-1] & closed[2:, 1:-1] & closed[1:-1, :-2] & closed[1:-1, 2:]
    return float(0.5 * (np.count_nonzero(closed) + np.count_nonzero(interior)) * cell_m**2)


# ----------------------------------------------------------------------------- answering


class _Seen:
    """Observation indexed by category."""

    def __init__(self, obs: Observation, categories: dict[int, str]):
        self.obs = obs
        self.first = obs.first_seen()
        self.by_cat: dict[str, list[int]] = {}
        for i in obs.seen_ids():
            if i in categories:
                self.by_cat.setdefault(categories[i], []).append(i)

    def ids(self, category: str) -> list[int]:
        return self.by_cat.get(category, [])

    def main_points(self, category: str) -> np.ndarray | None:
        """Points of the seen instance of ``category`` with the most points (unique categories: the one)."""
        ids = [i for i in self.ids(category) if i in self.obs.points]
        return max((self.obs.points[i] for i in ids), key=len) if ids else None


def _counting(rec, seen, cfg):
    return str(len(seen.ids(rec["meta"]["category"])))


def _size(rec, seen, cfg):
    pts = seen.main_points(rec["meta"]["category"])
    return FALLBACK_NUMBER if pts is None else format_number(points_extent_cm(pts), 1)


def _room(rec, seen, cfg):
    pts = [p for p in seen.obs.points.values() if len(p)]
    if not pts:
        return FALLBACK_NUMBER
    area = floor_area_from_points(np.concatenate(pts)[:, :2], cell_m=cfg.floor_cell_m,
                                  closing_cells=cfg.closing_cells)
    return format_number(area, 1)


def _abs_distance(rec, seen, cfg):
    a, b = (seen.main_points(c) for c in rec["meta"]["categories"])
    return FALLBACK_NUMBER if a is None or b is None else format_number(closest_distance(a, b), 2)


def _rel_distance(rec, seen, cfg):
    target = seen.main_points(rec["meta"]["target_category"])
    if target is None:
        return FALLBACK_LETTER
    d = [min((closest_distance(target, seen.obs.points[i]) for i in seen.ids(c) if i in seen.obs.points),
             default=np.inf) for c in rec["meta"]["choices"]]
    return FALLBACK_LETTER if not np.isfinite(min(d)) else _LETTERS[int(np.argmin(d))]


def _rel_direction(rec, seen, cfg):
    meta = rec["meta"]
    pts = [seen.main_points(meta[role]["category"]) for role in ("positioning", "orienting", "querying")]
    if any(p is None for p in pts):
        return FALLBACK_LETTER
    angle = relative_direction_deg(*(p[:, :2].mean(0) for p in pts))
    label = direction_label(angle, rec["question_type"].rsplit("_", 1)[1])
    return _LETTERS[meta["choices"].index(label)]


def _route(rec, seen, cfg):
    meta = rec["meta"]
    roles = [meta["start"], meta["facing"], *meta["waypoints"]]
    pts = [seen.main_points(r["category"]) for r in roles]
    if any(p is None for p in pts):
        return FALLBACK_LETTER
    xy = [p[:, :2].mean(0) for p in pts]
    turns = [turn_label(a) for a in route_turn_angles(meta["template"], xy[0], xy[1], np.array(xy[2:]))]
    agreement = [sum(a == b for a, b in zip(choice, turns)) for choice in meta["choices"]]
    return _LETTERS[int(np.argmax(agreement))]


def _appearance(rec, seen, cfg):
    listed = rec["meta"]["categories"]
    first = {c: min((seen.first[i] for i in seen.ids(c)), default=np.inf) for c in listed}
    if all(not np.isfinite(v) for v in first.values()):
        return FALLBACK_LETTER
    rank = {c: r for r, c in enumerate(sorted(listed, key=lambda c: (first[c], listed.index(c))))}

    def agreement(order: list[str]) -> int:
        return sum(rank[a] < rank[b] for a, b in itertools.combinations(order, 2))

    scores = [agreement(order) for order in rec["meta"]["choices"]]
    return _LETTERS[int(np.argmax(scores))]


_ANSWER = {"object_counting": _counting, "object_size_estimation": _size, "room_size_estimation": _room,
           "object_abs_distance": _abs_distance, "object_rel_distance": _rel_distance,
           "object_rel_direction_easy": _rel_direction, "object_rel_direction_medium": _rel_direction,
           "object_rel_direction_hard": _rel_direction, "route_planning": _route,
           "obj_appearance_order": _appearance}


_FRAME_REF = re.compile(r"frame (\d+)")


def _option_frames(option: str) -> list[int]:
    """0-based presented positions an option names ("B. frame 1 and frame 4" -> [0, 3])."""
    return [int(k) - 1 for k in _FRAME_REF.findall(option)]


def _pose_facing(rec, seen, cfg, c2w, K, hw):
    pts = seen.main_points(rec["meta"]["category"])
    if pts is None:
        return FALLBACK_LETTER
    angles = facing_angles_deg(c2w, pts.mean(0, keepdims=True))[:, 0]  # (S,) per presented view
    return _LETTERS[int(np.argmin([angles[_option_frames(o)[0]] for o in rec["options"]]))]


def _pose_rel_direction(rec, seen, cfg, c2w, K, hw):
    anchor, target = (seen.main_points(rec["meta"][k]) for k in ("anchor", "target"))
    if anchor is None or target is None:
        return FALLBACK_LETTER
    view = int(np.argmin(facing_angles_deg(c2w, anchor.mean(0, keepdims=True))[:, 0]))
    side = "right" if horizontal_angle_deg(c2w, target.mean(0, keepdims=True))[view, 0] > 0 else "left"
    return next((o[0] for o in rec["options"] if o[3:].strip() == side), FALLBACK_LETTER)


def _pose_overlap(rec, seen, cfg, c2w, K, hw):
    pts = [p for p in seen.obs.points.values() if len(p)]
    if not pts:
        return FALLBACK_LETTER
    iou = frustum_overlap(c2w, K, hw, np.concatenate(pts), max_depth=OVERLAP_MAX_DEPTH)
    pairs = [_option_frames(o) for o in rec["options"]]
    return _LETTERS[int(np.argmax([iou[a, b] for a, b in pairs]))]


_POSE_ANSWER = {"pose_view_facing": _pose_facing, "pose_rel_direction": _pose_rel_direction,
                "pose_view_overlap": _pose_overlap}


def _presented_cameras(scene: Scene, spec) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(S, 4, 4) c2w_opencv, (S, 3, 3) K_pixels and the image (H, W) of the views in ``spec``'s order: the spec's
    own (manifest) cameras, else the scan's for its frame ids."""
    if spec.w2c_opencv is not None:
        w2c, K, hw = spec.w2c_opencv, spec.K_pixels, spec.image_hw[0]
    else:
        cams = scene.cameras_for(np.asarray(spec.frame_ids, np.int64))
        w2c, K, hw = cams.w2c_opencv.double().numpy(), cams.K_pixels.double().numpy(), cams.image_hw[0]
    return np.linalg.inv(np.asarray(w2c, np.float64)), np.asarray(K, np.float64), tuple(int(v) for v in hw)


def _categories(scene: Scene) -> dict[int, str]:
    objects = scene.metadata.get("objects")
    if objects is None:
        raise ConfigError(f"scene {scene.name!r} has no metadata.objects (instance id -> category); the "
                          "oracle needs it to recognise instances. Use synthetic scenes (`posevlm synth`).",
                          field="scene", value=scene.name)
    return {int(o["instance_id"]): o["category"] for o in objects}


def answer_oracle_many(records: Sequence[dict], scene: Scene, frame_ids: Sequence[int],
                       config: OracleConfig = OracleConfig(), *,
                       observation: Observation | None = None) -> list[str]:
    """Answers for several records of one scene from a single observation of ``frame_ids``.

    Raises:
        ConfigError: a record of another scene, an unsupported question type, or a scene without
            object categories, depth, instance masks or cameras.
    """
    for rec in records:
        if rec.get("scene_name") != scene.name:
            raise ConfigError(f"record {rec.get('id')} is about scene {rec.get('scene_name')!r}, not "
                              f"{scene.name!r}; group records by scene_name.", field="scene_name",
                              value=rec.get("scene_name"))
        if rec.get("question_type") not in _ANSWER:
            raise ConfigError(f"record {rec.get('id')}: the oracle cannot answer question_type "
                              f"{rec.get('question_type')!r}; supported: {', '.join(_ANSWER)}.",
                              field="question_type", value=rec.get("question_type"))
    if observation is None:
        observation = observe(scene, frame_ids, config)
    seen = _Seen(observation, _categories(scene))
    return [_ANSWER[rec["question_type"]](rec, seen, config) for rec in records]


def answer_pose_oracle(records: Sequence[dict], scene: Scene, specs: Sequence[Any],
                       config: OracleConfig = OracleConfig(), *, observation: Observation) -> list[str]:
    """Answers to pose questions (module docstring), each from its own ``FrameSpec`` (the views in the order
    shown) and one ``observation`` of those views' frames."""
    seen = _Seen(observation, _categories(scene))
    out = []
    for rec, spec in zip(records, specs):
        c2w, K, hw = _presented_cameras(scene, spec)
        out.append(_POSE_ANSWER[rec["question_type"]](rec, seen, config, c2w, K, hw))
    return out


def answer_oracle(record: dict, scene: Scene, frame_ids: Sequence[int],
                  config: OracleConfig = OracleConfig(), *, observation: Observation | None = None) -> str:
    """The oracle's answer to one record given only ``frame_ids`` of ``scene`` (see the module docstring).

    Pass ``observation=observe(scene, frame_ids, config)`` to reuse one observation across records.
    """
    return answer_oracle_many([record], scene, frame_ids, config, observation=observation)[0]


# ----------------------------------------------------------------------------- eval backend


class OracleBackend:
    """The eval runner's ``oracle`` backend: the oracle answers, one observation per (scene, frames).

    Args:
        model: the run's ``model`` config: ``scenes_root`` (folder holding ``<dataset>/<scene>`` or
            ``<scene>`` scene folders), optional ``min_pixels`` and ``pixel_stride`` (``OracleConfig``).
        cache_size: observations kept, least recently used dropped first; 0 perceives anew for every
            ``generate`` call (the behaviour before the cache; answers are the same either way).
            None: ``OBSERVATION_CACHE_SIZE``, read when the backend is made.

    ``generate(batch)`` takes ``(record, prompt, FrameSpec)`` triples of one scene (the runner's batches; a
    record with its own ``frame_ids`` has its own spec, so a batch may hold several frame sets) and returns one ``{"text", "video_grid_thw", "n_visual_tokens"}`` dict per record.
    Observations are keyed by (dataset, scene, distinct ascending frame ids, perception config): the
    observation of a frame set does not depend on the order or repeats of its ids. ``n_observed`` and
    ``n_reused`` count perceptions made and observations served from the cache.
    """

    def __init__(self, model: Mapping[str, Any], *, cache_size: int | None = None):
        cache_size = OBSERVATION_CACHE_SIZE if cache_size is None else cache_size
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"cache_size must be an int >= 0; got {cache_size!r}", field="cache_size",
                              value=cache_size)
        self.root = Path(model.get("scenes_root", ""))
        self.config = OracleConfig(**{k: model[k] for k in ("min_pixels", "pixel_stride") if k in model})
        self.info = {"backend": "oracle", "config": dict(model)}
        self.cache_size = cache_size
        self.n_observed = self.n_reused = 0
        cfg = self.config
        self._perception = PerceptionConfig(cfg.min_pixels, cfg.pixel_stride, cfg.voxel_m, cfg.batch_frames)
        self._scenes: OrderedDict[tuple[str, str], Scene] = OrderedDict()
        self._observations: OrderedDict[tuple, Observation] = OrderedDict()

    def _scene(self, dataset: str, name: str) -> Scene:
        """The loaded scene (an LRU of ``SCENE_CACHE_SIZE``: scenes load lazily, so a few cost little memory and
        a backend shared by several runs over the same scans loads each once)."""
        from posevlm.eval.frames import check_record_names
        from posevlm.scenes import load_scene

        key = (dataset, name)
        if key in self._scenes:
            self._scenes.move_to_end(key)
            return self._scenes[key]
        check_record_names(dataset, name, self.root, "--scenes")
        for cand in (self.root / dataset / name, self.root / name):
            if cand.exists():
                self._scenes[key] = load_scene(cand)
                break
        else:
            raise MissingInputError(f"oracle: scene {dataset}/{name} not found under {self.root}",
                                    input=str(self.root / dataset / name))
        while len(self._scenes) > SCENE_CACHE_SIZE:
            self._scenes.popitem(last=False)
        return self._scenes[key]

    def observation(self, dataset: str, scene: Scene, frame_ids: Sequence[int]) -> Observation:
        """The observation of ``frame_ids`` of ``scene``, perceived once and then served from the LRU."""
        ids = np.unique(np.asarray(frame_ids, dtype=np.int64).reshape(-1))
        key = (dataset, scene.name, tuple(ids.tolist()), self._perception)
        if key in self._observations:
            self.n_reused += 1
            self._observations.move_to_end(key)
            return self._observations[key]
        obs = observe(scene, ids, self._perception)
        self.n_observed += 1
        if self.cache_size:
            self._observations[key] = obs
            while len(self._observations) > self.cache_size:
                self._observations.popitem(last=False)
        return obs

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation=None) -> list[dict[str, Any]]:
        """Answers for a runner batch (one scene; each record answered from the frames of its own spec: records that
        show their own views are grouped by frame set, one observation each); ``generation`` is ignored.

        Raises:
            MissingInputError: the scene folder is not under ``scenes_root``.
            ConfigError: see :func:`answer_oracle_many`.
        """
        record, _, spec = batch[0]
        scene = self._scene(record["dataset"], record["scene_name"])
        records = [r for r, _, _ in batch]
        kinds = ["layout" if r.get("question_type") == LAYOUT_QUESTION_TYPE else "pose"
                 if r["question_type"] in _POSE_ANSWER else "vsi" for r in records]
        script = answer_layout_oracle(scene, spec) if "layout" in kinds else None
        texts: list[str | None] = [script if k == "layout" else None for k in kinds]
        by_views: dict[tuple[int, ...], list[int]] = {}  # records of one frame set (a record may show its own views)
        for i, ((_, _, sp), k) in enumerate(zip(batch, kinds)):
            if k != "layout":
                by_views.setdefault(tuple(np.unique(np.asarray(sp.frame_ids, np.int64)).tolist()), []).append(i)
        for views, rows in by_views.items():
            if not views:
                raise ConfigError("the oracle answers questions from the frames a point cloud was built from; a cloud "
                                  "read from a file has none: point --frames-root at the scans", field="frames.root")
            obs = self.observation(record["dataset"], scene, views)  # one frame set: order and repeats aside
            vsi = [i for i in rows if kinds[i] == "vsi"]
            pose = [i for i in rows if kinds[i] == "pose"]
            if vsi:
                done = answer_oracle_many([records[i] for i in vsi], scene, obs.frame_ids, self.config,
                                          observation=obs)
                for i, text in zip(vsi, done):
                    texts[i] = text
            if pose:
                done = answer_pose_oracle([records[i] for i in pose], scene, [batch[i][2] for i in pose], self.config,
                                          observation=obs)
                for i, text in zip(pose, done):
                    texts[i] = text
        return [{"text": t, "video_grid_thw": None, "n_visual_tokens": None} for t in texts]


def answer_layout_oracle(scene: Scene, spec: Any, decimals: int = 2) -> str:
    """The oracle's answer to a layout record: the scan's exact layout (``scene.json``) in the frame of the point
    cloud the sample sees (``spec``: a ``posevlm.eval.point_inputs.PointCloudSpec``), written as the targets are.
    It scores F1 = 1 exactly when the cloud, the target and the scorer agree: an end-to-end check of the layout
    path, not a perception upper bound (unlike the questions, it reads the boxes)."""
    cloud = getattr(spec, "cloud", None)
    if cloud is None:
        raise ConfigError("layout records are answered in a point cloud's frame: run posevlm eval with --frames "
                          "point_cloud", field="frames.source", value=getattr(spec, "source", None))
    return layout_from_metadata(scene.metadata, origin=cloud.origin).to_script(decimals)


def _from_cli(values):
    return {"name": "oracle", "scenes_root": str(values.get("scenes") or values["frames_root"]),
            **dict(values.get("set") or {})}


BACKEND = BackendSpec("oracle", OracleBackend, "perfect perception of the selected frames (synthetic scans: depth + "
                      "instance masks): how much spatial information a selection keeps", from_cli=_from_cli,
                      cli_options=("scenes",))
