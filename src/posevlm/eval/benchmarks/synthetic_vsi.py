"""VSI-Bench-style questions with exact ground truth, generated from synthetic scenes' ``scene.json``.

All ten VSI-Bench question types. Records follow the VSI-Bench schema (spec eval.md §5.1: ``id``, ``dataset``, ``scene_name``,
``question_type``, ``question``, ``options``, ``ground_truth``) plus ``meta``, the machine-readable
facts behind the answer (instance ids, categories, exact values). Wording follows VSI-Bench.

Ground truth (world metres, z up; objects are axis-aligned boxes from ``metadata.objects``):

- ``object_counting``: instances of the category (integer);
- ``object_size_estimation``: longest box side, cm, 1 decimal;
- ``room_size_estimation``: ``room.floor_area_m2``, 2 decimals (exactly one per scene);
- ``object_abs_distance``: gap between the two boxes (closest points), m, 2 decimals;
- ``object_rel_distance``: letter of the choice closest to the target (box gap, min over instances);
- ``object_rel_direction_{easy,medium,hard}``: letter; floor plane, observer at the positioning
  object's centre facing the orienting object's centre (:func:`direction_label`);
- ``route_planning``: letter of the turn sequence (``Turn Left`` / ``Turn Right`` / ``Turn Back``) of a
  walk through object centres, VSI-Bench's wording (:mod:`~posevlm.eval.benchmarks.routes`): from the
  start object facing the facing object, straight legs >= 1 m inside the floor (through doorways in
  multi-room scenes) and >= 0.1 m from every other footprint, two turns, each >= 15 degrees from
  the 45 / 135 degree boundaries;
- ``obj_appearance_order``: letter of the order of the categories' first frames with >= ``min_pixels``
  pixels (instance masks of the full video).

Never ambiguous: questions involve only objects seen in the full video (>= ``min_pixels`` pixels in
some frame; counting: every instance of the category); size, distance and direction questions use
categories with one instance in the room. Candidates are dropped (a type may get none) when a
direction is within ``DIRECTION_MARGIN_DEG`` of a label boundary or its objects are closer than
``MIN_DIRECTION_DISTANCE_M``, an absolute distance is below ``MIN_ABS_DISTANCE_M``, the two nearest
relative-distance choices differ by less than max(0.2 m, 20 %), or first sightings are less than
max(3 frames, 5 % of the video) apart or would reorder at a 1-pixel threshold.

Determinism: each (seed, scene, question type) has its own numpy generator, so a record depends on
nothing else. ``id`` = the first 48 bits of sha256("dataset/scene/seed/type/index") (index within
the type): stable, JSON-safe, and unique unless the same scene appears twice (which
:func:`generate_benchmark` refuses).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from posevlm.errors import ConfigError, InputFileError, PosevlmError
from posevlm.eval.benchmarks import routes
from posevlm.eval.benchmarks.base import BenchmarkSpec
from posevlm.eval.perception import scene_pixel_counts
from posevlm.scenes import Scene, load_scene

__all__ = [
    "BENCHMARK_NAME", "BENCHMARK_VERSION", "QUESTION_TYPES", "DIRECTION_CHOICES", "VISIBLE_MIN_PIXELS",
    "DIRECTION_MARGIN_DEG", "MIN_DIRECTION_DISTANCE_M", "MIN_ABS_DISTANCE_M", "question_id",
    "format_number", "box_distance", "relative_direction_deg", "direction_label",
    "questions_from_ground_truth", "generate_questions", "generate_benchmark", "validate_record",
    "write_benchmark_jsonl", "read_benchmark_jsonl",
]  # fmt: skip

BENCHMARK_NAME = "posevlm.synthetic_vsi"
BENCHMARK_VERSION = 2  # 2: route_planning questions
QUESTION_TYPES: tuple[str, ...] = (
    "object_counting", "object_size_estimation", "room_size_estimation", "object_abs_distance",
    "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
    "object_rel_direction_hard", "route_planning", "obj_appearance_order",
)  # fmt: skip
#: difficulty -> option texts before shuffling.
DIRECTION_CHOICES: dict[str, tuple[str, ...]] = {
    "easy": ("left", "right"), "medium": ("left", "right", "back"),
    "hard": ("front-left", "front-right", "back-left", "back-right"),
}  # fmt: skip
_BOUNDARIES_DEG = {"easy": (0.0, 180.0), "medium": (0.0, 135.0, -135.0), "hard": (0.0, 90.0, -90.0, 180.0)}
VISIBLE_MIN_PIXELS = 20
DIRECTION_MARGIN_DEG = 15.0
MIN_DIRECTION_DISTANCE_M = 0.5
MIN_ABS_DISTANCE_M = 0.3
_REL_GAP_M, _REL_GAP_FRACTION = 0.2, 0.2
_LETTERS = "ABCD"
_TEXT_FIELDS = ("dataset", "scene_name", "question_type", "question", "ground_truth")
_FIELDS: dict[str, tuple[type, ...]] = {"id": (int,), **dict.fromkeys(_TEXT_FIELDS, (str,)),
                                        "options": (list, type(None))}
_STANDING = "If I am standing by the {0} and facing the {1}, is the {2} to "
_CLOSEST = "Measuring from the closest point of each object, "
_QUESTIONS = {
    "object_counting": "How many {0}(s) are in this room?",
    "object_size_estimation": "What is the length of the longest dimension (length, width, or height) of the "
                              "{0}, measured in centimeters?",
    "room_size_estimation": "What is the size of this room (in square meters)? If multiple rooms are shown, "
                            "estimate the size of the combined space.",
    "object_abs_distance": _CLOSEST + "what is the direct distance between the {0} and the {1} (in meters)?",
    "object_rel_distance": _CLOSEST + "which of these objects ({1}) is the closest to the {0}?",
    "easy": _STANDING + "the left or the right of the {1}?",
    "medium": _STANDING + "my left, right, or back? An object is to my back if I would have to turn at least "
                          "135 degrees in order to face it.",
    "hard": _STANDING + "my front-left, front-right, back-left, or back-right? The directions refer to the "
                        "quadrants of a Cartesian plane (if I am standing at the origin and facing along the "
                        "positive y-axis).",
    "obj_appearance_order": "What will be the first-time appearance order of the following categories in the "
                            "video: {0}?",
}  # fmt: skip


def question_id(dataset: str, scene_name: str, seed: int, question_type: str, index: int) -> int:
    """Stable 48-bit id of the ``index``-th question of a type in a scene."""
    key = f"{dataset}/{scene_name}/{seed}/{question_type}/{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:6], "big")


def format_number(value: float, decimals: int) -> str:
    """Decimal string with at most ``decimals`` decimals, trailing zeros dropped: 62.50 -> "62.5"."""
    text = f"{round(float(value), decimals):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def box_distance(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> float:
    """Distance between the closest points of two axis-aligned boxes (0 when they touch or overlap)."""
    gap = np.maximum(0.0, np.maximum(np.asarray(lo_b) - hi_a, np.asarray(lo_a) - hi_b))
    return float(np.linalg.norm(gap))


def relative_direction_deg(positioning_xy: Sequence[float], orienting_xy: Sequence[float],
                           querying_xy: Sequence[float]) -> float:
    """Signed floor-plane angle in (-180, 180] degrees of the querying object for an observer at
    ``positioning_xy`` facing ``orienting_xy``; positive = counter-clockwise seen from above (world z
    up) = to the observer's left."""
    f = np.asarray(orienting_xy, float)[:2] - np.asarray(positioning_xy, float)[:2]
    v = np.asarray(querying_xy, float)[:2] - np.asarray(positioning_xy, float)[:2]
    return float(np.degrees(np.arctan2(f[0] * v[1] - f[1] * v[0], f @ v)))


def direction_label(angle_deg: float, difficulty: str) -> str:
    """VSI-Bench label of a signed angle from :func:`relative_direction_deg`.

    easy: left (> 0) / right; medium: back when |angle| >= 135 (turning at least 135 degrees), else
    left / right; hard: quadrants with front = |angle| < 90 (observer facing +y, left = -x).
    """
    if difficulty not in DIRECTION_CHOICES:
        raise ConfigError(f"difficulty must be one of {list(DIRECTION_CHOICES)}; got {difficulty!r}.",
                          field="difficulty", value=difficulty)
    side = "left" if angle_deg > 0 else "right"
    if difficulty == "medium" and abs(angle_deg) >= 135.0:
        return "back"
    if difficulty == "hard":
        return f"{'front' if abs(angle_deg) < 90.0 else 'back'}-{side}"
    return side


def _margin_deg(angle_deg: float, difficulty: str) -> float:
    d = np.abs((angle_deg - np.asarray(_BOUNDARIES_DEG[difficulty]) + 180.0) % 360.0 - 180.0)
    return float(d.min())


def _name(category: str) -> str:
    return category.replace("_", " ")


def _lettered(texts: Sequence[str]) -> list[str]:
    return [f"{_LETTERS[k]}. {t}" for k, t in enumerate(texts)]


def _pick(rng: np.random.Generator, candidates: list, k: int,
          key: Callable[[Any], Any] = lambda c: None) -> list:
    """Up to k candidates in random order, distinct ``key`` values first."""
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    fresh, rest, seen = [], [], set()
    for c in order:
        (rest if key(c) in seen else fresh).append(c)
        seen.add(key(c))
    return (fresh + rest)[:k]


class _Facts:
    """Per-scene ground truth: boxes by instance, categories, first sightings."""

    def __init__(self, metadata: dict, frame_ids: np.ndarray, pixel_counts: np.ndarray, min_pixels: int):
        objs = sorted(metadata["objects"], key=lambda o: o["instance_id"])
        self.room = metadata["room"]
        self.category = {o["instance_id"]: o["category"] for o in objs}
        c, s = (np.array([o[k] for o in objs], float).reshape(-1, 3) for k in ("center", "size"))
        self.lo = dict(zip(self.category, c - s / 2))
        self.hi = dict(zip(self.category, c + s / 2))
        self.center = dict(zip(self.category, c))
        self.size = dict(zip(self.category, s))
        counts = np.zeros((len(frame_ids), max(self.category, default=0) + 1), np.int64)
        width = min(counts.shape[1], pixel_counts.shape[1])
        counts[:, :width] = pixel_counts[:, :width]
        self.first = {i: _first(frame_ids, counts[:, i] >= min_pixels) for i in self.category}
        self.glimpse = {i: _first(frame_ids, counts[:, i] >= 1) for i in self.category}
        self.by_cat: dict[str, list[int]] = {}
        for i, cat in self.category.items():
            self.by_cat.setdefault(cat, []).append(i)
        self.full = sorted(c for c, ids in self.by_cat.items() if all(self.first[i] is not None for i in ids))
        self.unique = [c for c in self.full if len(self.by_cat[c]) == 1]

    def dist(self, a: int, b: int) -> float:
        return box_distance(self.lo[a], self.hi[a], self.lo[b], self.hi[b])

    def cat_first(self, cat: str, table: dict) -> float:
        return min((table[i] for i in self.by_cat[cat] if table[i] is not None), default=np.inf)


def _first(frame_ids: np.ndarray, mask: np.ndarray) -> int | None:
    return int(frame_ids[np.argmax(mask)]) if mask.any() else None


def _counting(f: _Facts, rng, k, _):
    chosen = _pick(rng, f.full, len(f.full))
    chosen.sort(key=lambda c: len(f.by_cat[c]) < 2)  # stable: counts >= 2 first
    return [(_QUESTIONS["object_counting"].format(_name(c)), None, str(len(f.by_cat[c])),
             {"category": c, "instance_ids": f.by_cat[c]}) for c in chosen[:k]]


def _size(f: _Facts, rng, k, _):
    out = []
    for c in _pick(rng, f.unique, k):
        i = f.by_cat[c][0]
        out.append((_QUESTIONS["object_size_estimation"].format(_name(c)), None,
                    format_number(f.size[i].max() * 100.0, 1),
                    {"category": c, "instance_id": i, "size_m": f.size[i].tolist()}))
    return out


def _room(f: _Facts, rng, k, _):
    return [(_QUESTIONS["room_size_estimation"], None, format_number(f.room["floor_area_m2"], 2),
             {"floor_area_m2": f.room["floor_area_m2"]})]


def _abs_distance(f: _Facts, rng, k, _):
    pairs = [(a, b) for a, b in itertools.combinations(f.unique, 2)
             if f.dist(f.by_cat[a][0], f.by_cat[b][0]) >= MIN_ABS_DISTANCE_M]
    out = []
    for a, b in _pick(rng, pairs, k, key=lambda p: p[0]):
        a, b = (b, a) if rng.random() < 0.5 else (a, b)
        ia, ib = f.by_cat[a][0], f.by_cat[b][0]
        out.append((_QUESTIONS["object_abs_distance"].format(_name(a), _name(b)), None,
                    format_number(f.dist(ia, ib), 2),
                    {"categories": [a, b], "instance_ids": [ia, ib], "distance_m": f.dist(ia, ib)}))
    return out


def _rel_distance(f: _Facts, rng, k, _):
    valid = []
    for target in f.unique:
        t = f.by_cat[target][0]
        dist = {c: min(f.dist(t, i) for i in f.by_cat[c]) for c in f.full if c != target}
        for combo in itertools.combinations(sorted(dist), 4):
            d = sorted(dist[c] for c in combo)
            if d[1] - d[0] >= max(_REL_GAP_M, _REL_GAP_FRACTION * d[0]):
                valid.append((target, combo, dist))
    out = []
    for target, combo, dist in _pick(rng, valid, k, key=lambda v: v[0]):
        choices = [combo[i] for i in rng.permutation(4)]
        d = [dist[c] for c in choices]
        listed = ", ".join(_name(c) for c in choices)
        out.append((_QUESTIONS["object_rel_distance"].format(_name(target), listed),
                    _lettered([_name(c) for c in choices]), _LETTERS[int(np.argmin(d))],
                    {"target_category": target, "target_instance_id": f.by_cat[target][0], "choices": choices,
                     "choice_instance_ids": [f.by_cat[c] for c in choices], "choice_distances_m": d}))
    return out


def _rel_direction(f: _Facts, rng, k, difficulty):
    valid = []
    for p, o, q in itertools.permutations(f.unique, 3):
        cp, co, cq = (f.center[f.by_cat[c][0]][:2] for c in (p, o, q))
        if min(np.linalg.norm(co - cp), np.linalg.norm(cq - cp)) < MIN_DIRECTION_DISTANCE_M:
            continue
        angle = relative_direction_deg(cp, co, cq)
        if _margin_deg(angle, difficulty) >= DIRECTION_MARGIN_DEG:
            valid.append((p, o, q, angle))
    out = []
    for p, o, q, angle in _pick(rng, valid, k, key=lambda v: v[0]):
        base = DIRECTION_CHOICES[difficulty]
        choices = [base[i] for i in rng.permutation(len(base))]
        role = {r: {"category": c, "instance_id": f.by_cat[c][0]}
                for r, c in (("positioning", p), ("orienting", o), ("querying", q))}
        out.append((_QUESTIONS[difficulty].format(_name(p), _name(o), _name(q)), _lettered(choices),
                    _LETTERS[choices.index(direction_label(angle, difficulty))],
                    {**role, "angle_deg": angle, "choices": choices}))
    return out


def _route_legs(f: _Facts, cats: list[str]) -> np.ndarray:
    """(U, U) bool: a walkable leg from the centre of unique category i to that of j (see routes.py)."""
    ids = [f.by_cat[c][0] for c in cats]
    xy = np.array([f.center[i][:2] for i in ids]).reshape(-1, 2)
    all_ids = sorted(f.category)
    rects = np.array([[*f.lo[i][:2], *f.hi[i][:2]] for i in all_ids]).reshape(-1, 4)
    boxes = np.asarray(f.room["boxes_xy"], float)
    ok = np.zeros((len(ids), len(ids)), bool)
    for a, b in itertools.combinations(range(len(ids)), 2):
        if np.linalg.norm(xy[b] - xy[a]) < routes.MIN_LEG_M or not routes.segment_in_floor(boxes, xy[a], xy[b]):
            continue
        others = [k for k, i in enumerate(all_ids) if i not in (ids[a], ids[b])]
        gap = routes.segment_rect_distance(xy[a], xy[b], rects[others]) if others else np.array([np.inf])
        ok[a, b] = ok[b, a] = bool(gap.min() >= routes.LEG_CLEARANCE_M)
    return ok


def _route(f: _Facts, rng, k, _):
    cats = list(f.unique)
    legs = _route_legs(f, cats)
    xy = {c: f.center[f.by_cat[c][0]][:2] for c in cats}
    valid = []

    def add(template: str, start: str, facing: str, waypoints: tuple[str, ...]) -> None:
        angles = routes.route_turn_angles(template, xy[start], xy[facing], np.array([xy[c] for c in waypoints]))
        if min(routes.turn_margin_deg(a) for a in angles) >= routes.TURN_MARGIN_DEG:
            valid.append((template, start, facing, waypoints, angles))

    for s, w1 in zip(*np.nonzero(legs)):  # facing_first: start -> w1 (faced) -> w2 -> goal, turns at w1, w2
        for w2 in np.flatnonzero(legs[w1]):
            for g in np.flatnonzero(legs[w2]):
                if len({s, w1, w2, g}) == 4:
                    add("facing_first", cats[s], cats[w1], (cats[w1], cats[w2], cats[g]))
    for s, w1 in zip(*np.nonzero(legs)):  # turn_first: facing f off the route, turns at the start and w1
        for g in np.flatnonzero(legs[w1]):
            for fc in range(len(cats)):
                far = np.linalg.norm(xy[cats[fc]] - xy[cats[s]]) >= MIN_DIRECTION_DISTANCE_M
                if len({s, w1, g, fc}) == 4 and far:
                    add("turn_first", cats[s], cats[fc], (cats[w1], cats[g]))
    out = []
    for template, start, facing, waypoints, angles in _pick(rng, valid, k, key=lambda v: v[1]):
        turns = [routes.turn_label(a) for a in angles]
        combos = [list(c) for c in itertools.product(routes.TURNS, repeat=len(turns)) if list(c) != turns]
        choices = [turns] + [combos[i] for i in rng.choice(len(combos), 3, replace=False)]
        choices = [choices[i] for i in rng.permutation(4)]
        role = lambda c: {"category": c, "instance_id": f.by_cat[c][0]}  # noqa: E731
        out.append((routes.route_question(template, _name(start), _name(facing), [_name(c) for c in waypoints]),
                    _lettered([routes.turn_option_text(ch) for ch in choices]), _LETTERS[choices.index(turns)],
                    {"template": template, "start": role(start), "facing": role(facing),
                     "waypoints": [role(c) for c in waypoints], "turn_angles_deg": angles, "turns": turns,
                     "choices": choices}))
    return out


def _appearance(f: _Facts, rng, k, gap):
    cats = [c for c in sorted(f.by_cat) if np.isfinite(f.cat_first(c, f.first))]
    first = {c: f.cat_first(c, f.first) for c in cats}
    glimpse = {c: f.cat_first(c, f.glimpse) for c in cats}
    valid = []
    for combo in itertools.combinations(cats, 4):
        order = sorted(combo, key=first.get)
        if all(first[b] - first[a] >= gap and glimpse[b] > first[a] for a, b in zip(order, order[1:])):
            valid.append(order)
    out = []
    for order in _pick(rng, valid, k, key=lambda v: v[0]):
        perms = [list(p) for p in itertools.permutations(order) if list(p) != order]
        choices = [order] + [perms[i] for i in rng.choice(len(perms), 3, replace=False)]
        choices = [choices[i] for i in rng.permutation(4)]
        listed = [order[i] for i in rng.permutation(4)]
        out.append((_QUESTIONS["obj_appearance_order"].format(", ".join(_name(c) for c in listed)),
                    _lettered([", ".join(_name(c) for c in ch) for ch in choices]),
                    _LETTERS[choices.index(order)],
                    {"categories": listed, "first_frame_ids": {c: int(first[c]) for c in order},
                     "choices": choices}))
    return out


_MAKERS = {"object_counting": (_counting, None), "object_size_estimation": (_size, None),
           "room_size_estimation": (_room, None), "object_abs_distance": (_abs_distance, None),
           "object_rel_distance": (_rel_distance, None),
           **{f"object_rel_direction_{d}": (_rel_direction, d) for d in DIRECTION_CHOICES},
           "route_planning": (_route, None), "obj_appearance_order": (_appearance, None)}


def _stable_u32(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def questions_from_ground_truth(metadata: dict, frame_ids: np.ndarray, pixel_counts: np.ndarray, *,
                                scene_name: str, seed: int, dataset: str = "synthetic", max_per_type: int = 4,
                                min_pixels: int = VISIBLE_MIN_PIXELS) -> list[dict]:
    """Pure core of :func:`generate_questions`.

    Args:
        metadata: ``scene.json`` metadata with ``room`` and ``objects``.
        frame_ids: (N,) ascending frame ids of the full video; pixel_counts: (N, I) instance pixels per frame.
    Returns:
        Records in ``QUESTION_TYPES`` order (see the module docstring).
    """
    if not isinstance(seed, int) or seed < 0 or not isinstance(max_per_type, int) or max_per_type < 1:
        raise ConfigError(f"seed must be an int >= 0 and max_per_type an int >= 1; got {seed!r}, "
                          f"{max_per_type!r}.", field="seed", value=(seed, max_per_type))
    facts = _Facts(metadata, np.asarray(frame_ids), np.asarray(pixel_counts), min_pixels)
    gap = max(3, int(round(0.05 * len(frame_ids))))
    records = []
    for qtype in QUESTION_TYPES:
        rng = np.random.default_rng([seed, _stable_u32(scene_name), _stable_u32(qtype)])
        maker, arg = _MAKERS[qtype]
        for index, (question, options, truth, meta) in enumerate(maker(facts, rng, max_per_type, arg or gap)):
            meta = {"benchmark": BENCHMARK_NAME, "benchmark_version": BENCHMARK_VERSION, "seed": seed,
                    "min_pixels": min_pixels, **meta}
            records.append({"id": question_id(dataset, scene_name, seed, qtype, index), "dataset": dataset,
                            "scene_name": scene_name, "question_type": qtype, "question": question,
                            "options": options, "ground_truth": truth, "meta": meta})
    return records


def generate_questions(scene: Scene, *, seed: int, dataset: str = "synthetic", max_per_type: int = 4,
                       min_pixels: int = VISIBLE_MIN_PIXELS) -> list[dict]:
    """VSI-Bench-style records for one synthetic scene (reads its instance masks once for visibility).

    Raises:
        ConfigError: the scene has no synthetic ground truth (``metadata.room`` / ``metadata.objects``)
            or no instance masks; bad seed or ``max_per_type``.
    """
    if not {"room", "objects"} <= set(scene.metadata):
        raise ConfigError(f"scene {scene.name!r} has no synthetic ground truth (metadata.room and "
                          "metadata.objects); generate scenes with `posevlm synth`.", field="scene",
                          value=scene.name)
    frame_ids, counts = scene_pixel_counts(scene)
    return questions_from_ground_truth(scene.metadata, frame_ids, counts, scene_name=scene.name, seed=seed,
                                       dataset=dataset, max_per_type=max_per_type, min_pixels=min_pixels)


def generate_benchmark(scene_dirs: Iterable[str | Path], *, seed: int, dataset: str = "synthetic",
                       max_per_type: int = 4, min_pixels: int = VISIBLE_MIN_PIXELS) -> list[dict]:
    """Questions over many scene directories, in the given scene order. Raises ``PosevlmError`` on a
    repeated id (the same scene twice)."""
    records: list[dict] = []
    owner: dict[int, str] = {}
    for scene_dir in scene_dirs:
        scene = load_scene(scene_dir)
        for rec in generate_questions(scene, seed=seed, dataset=dataset, max_per_type=max_per_type,
                                      min_pixels=min_pixels):
            if rec["id"] in owner:
                raise PosevlmError(f"question id {rec['id']} of scene {scene.name!r} repeats one of scene "
                                   f"{owner[rec['id']]!r}; pass every scene once.")
            owner[rec["id"]] = scene.name
            records.append(rec)
    return records


def validate_record(record: dict) -> list[str]:
    """Problems with one record's VSI-Bench fields (empty list when valid)."""
    problems = [f"{k} must be {' or '.join(t.__name__ for t in ts)}; got {type(record.get(k)).__name__}"
                for k, ts in _FIELDS.items() if k not in record or not isinstance(record[k], ts)
                or (k == "id" and isinstance(record[k], bool))]
    options = record.get("options")
    if isinstance(options, list):
        if not 2 <= len(options) <= 4 or any(not isinstance(o, str) or o[:3] != f"{_LETTERS[i]}. "
                                             for i, o in enumerate(options)):
            problems.append(f"options must be 2-4 strings lettered 'A. ', 'B. ', ...; got {options}")
        elif record.get("ground_truth") not in list(_LETTERS[: len(options)]):
            problems.append(f"ground_truth {record.get('ground_truth')!r} is not an option letter")
    return problems


def write_benchmark_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """One record per line (sorted keys, UTF-8); written to a temporary file and renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_benchmark_jsonl(path: str | Path) -> list[dict]:
    """Records written by :func:`write_benchmark_jsonl` (or any VSI-Bench JSONL), validated.

    Raises:
        InputFileError: missing file, bad JSON, invalid fields or a repeated id (names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"benchmark file {path} does not exist; write it with write_benchmark_jsonl().",
                             path=path)
    records, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{n}: not JSON ({exc}).", path=path) from None
        problems = validate_record(rec) if isinstance(rec, dict) else ["a record must be a JSON object"]
        if not problems and rec["id"] in seen:
            problems = [f"id {rec['id']} repeats an earlier record"]
        if problems:
            raise InputFileError(f"{path}:{n}: " + "; ".join(problems), path=path)
        seen.add(rec["id"])
        records.append(rec)
    return records


BENCHMARK = BenchmarkSpec("synthetic_vsi", lambda benchmark: read_benchmark_jsonl(benchmark["source"]),
                          "VSI-style questions with exact ground truth from synthetic scans (a .jsonl written by "
                          "write_benchmark_jsonl / posevlm demo)")

