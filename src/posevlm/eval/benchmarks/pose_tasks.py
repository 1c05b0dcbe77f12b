"""Pose-dependent questions about a set of views, where the order the views are shown in carries no information.

The research's thesis is that a video MLLM doing spatial reasoning should condition on view perspective, not on
frame index. These questions test exactly that: their answers are functions of the *cameras* of the selected
views and the scan's object boxes (exact ground truth, no rendering), and the views are presented in a seeded
random order of their own per scene (``presentation_order``), so frame index / temporal position is uninformative
by construction.

Question types (all multiple choice, letters A..D):

* ``pose_view_facing`` - "Which frame looks most directly at the X?": the view whose optical axis (OpenCV +z of
  ``c2w_opencv``) makes the smallest angle with the ray from its centre to the object's centre, with a margin of
  ``FACING_MARGIN_DEG`` to the runner-up, at most 60 degrees, and the object's centre inside that view's image
  (occlusion ignored). Options name frames by their position in the presented sequence, so
  the answer *follows the camera* when the order is permuted (the answered camera never changes).
* ``pose_rel_direction`` - "Standing where the frame that looks most directly at the X was taken, looking the
  same way, is the Y to the left or to the right?": the sign of Y's centre's x in that camera's frame (OpenCV: x
  right), kept when the horizontal angle is at least ``SIDE_MARGIN_DEG`` from straight ahead / behind. The
  answer does not depend on the presentation order at all.
* ``pose_view_overlap`` - "Which two frames overlap most?": the pair with the largest intersection-over-union of
  the room points inside both view frusta (a fixed grid of points filling the room's bounding box, in front of
  the camera, projecting inside the image, nearer than ``max_depth``; occlusion ignored), with a relative margin
  of ``OVERLAP_MARGIN`` to the runner-up pair. Options are pairs of presented positions (the answer follows
  the cameras under permutation).

The pure core is :func:`pose_questions` (arrays in, records out); :func:`scene_pose_questions` is its thin shell
over a posed scan (cameras and object boxes from the scene, the views of a selection shown in
``presentation_order``). Records use VSI-Bench's schema (id, dataset, scene_name, question_type, question,
options, ground_truth, meta) plus ``frame_ids``: the views the question is asked over, in the order they are
shown. ``posevlm eval`` presents exactly those views in that order (``FrameSpec.take``; every id must be among
the frames of the selection evaluated), and the training records carry the same field.

Benchmark ``synthetic_pose`` (task format ``pose_views``, ``posevlm.eval.pose_format``): a ``.jsonl`` of these
records, as ``posevlm train``'s synthetic set writes (``test_pose_benchmark.jsonl``); evaluate it with
``--frames folder_manifest`` on the selection the questions were generated for.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError, InputFileError, ShapeError
from posevlm.eval.benchmarks.base import BenchmarkSpec
from posevlm.eval.metrics import POSE_QUESTION_TYPES

__all__ = ["BENCHMARK", "read_pose_benchmark", "selection_pose_questions", "scene_pose_questions", "POSE_QUESTION_TYPES", "FACING_MARGIN_DEG", "SIDE_MARGIN_DEG", "OVERLAP_MARGIN", "OVERLAP_MAX_DEPTH", "presentation_order", "in_view",
           "facing_angles_deg", "horizontal_angle_deg", "frustum_overlap", "pose_questions"]

FACING_MARGIN_DEG = 10.0
SIDE_MARGIN_DEG = 15.0
OVERLAP_MARGIN = 0.1
#: views see points up to this depth (m) in the overlap question
OVERLAP_MAX_DEPTH = 6.0
_LETTERS = "ABCD"


def _check_poses(c2w_opencv: np.ndarray) -> np.ndarray:
    c2w = np.asarray(c2w_opencv, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) < 2:
        raise ShapeError(f"c2w_opencv must be (S, 4, 4) with S >= 2 views; got {c2w.shape}")
    return c2w


def presentation_order(num_views: int, seed: int, *, scene_name: str = "") -> np.ndarray:
    """A seeded random permutation of ``range(num_views)``: the order the views are shown in. (S,) int64.

    ``scene_name`` enters the seed, so every scene is shuffled its own way: with one permutation per seed for all
    scenes, the k-th view shown would have the same temporal rank in every scene, and position would tell the
    temporal order again."""
    scene_key = [int.from_bytes(hashlib.sha256(scene_name.encode()).digest()[:8], "big")] if scene_name else []
    return np.random.default_rng([seed, num_views, *scene_key]).permutation(num_views)


def _in_camera(c2w_opencv: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points (I, 3) world -> (S, I, 3) in each camera's OpenCV frame."""
    R, t = c2w_opencv[:, :3, :3], c2w_opencv[:, :3, 3]
    return np.einsum("sji,snj->sni", R, points[None] - t[:, None])  # R^T (p - t)


def facing_angles_deg(c2w_opencv: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Angle between each view's optical axis and the ray to each point. c2w_opencv (S,4,4), points (I,3) ->
    (S, I) degrees in [0, 180]."""
    c = _in_camera(_check_poses(c2w_opencv), np.asarray(points, np.float64).reshape(-1, 3))
    cos = c[..., 2] / np.maximum(np.linalg.norm(c, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def horizontal_angle_deg(c2w_opencv: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed angle of each point in each view's x-z plane, 0 = straight ahead, + = right (OpenCV x). (S, I)."""
    c = _in_camera(_check_poses(c2w_opencv), np.asarray(points, np.float64).reshape(-1, 3))
    return np.degrees(np.arctan2(c[..., 0], c[..., 2]))


def in_view(c2w_opencv: np.ndarray, K_pixels: np.ndarray, image_hw: Sequence[int], points: np.ndarray, *,
            max_depth: float = np.inf) -> np.ndarray:
    """Whether each view sees each point (in front, projecting inside the image, depth <= ``max_depth``; no
    occlusion). c2w_opencv (S,4,4), K_pixels (S,3,3) or (3,3) for ``image_hw``, points (I,3) -> (S, I) bool."""
    c = _in_camera(_check_poses(c2w_opencv), np.asarray(points, np.float64).reshape(-1, 3))
    K = np.broadcast_to(np.asarray(K_pixels, np.float64), (len(c), 3, 3))
    z = c[..., 2]
    uvw = np.einsum("sij,snj->sni", K, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uvw[..., 0] / z, uvw[..., 1] / z
    h, w = image_hw
    return (z > 1e-6) & (z <= max_depth) & (u >= 0) & (u < w) & (v >= 0) & (v < h)


def frustum_overlap(c2w_opencv: np.ndarray, K_pixels: np.ndarray, image_hw: Sequence[int], points: np.ndarray,
                    *, max_depth: float) -> np.ndarray:
    """IoU of the sets of ``points`` each pair of views sees (:func:`in_view`). c2w_opencv (S,4,4), K_pixels
    (S,3,3) or (3,3) for ``image_hw`` -> (S, S)."""
    s = in_view(c2w_opencv, K_pixels, image_hw, points, max_depth=max_depth).astype(np.float64)
    inter = s @ s.T
    union = s.sum(1)[:, None] + s.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def _room_grid(objects: Sequence[Mapping[str, Any]], spacing: float) -> np.ndarray:
    lo = np.min([np.subtract(o["center"], np.divide(o["size"], 2)) for o in objects], axis=0)
    hi = np.max([np.add(o["center"], np.divide(o["size"], 2)) for o in objects], axis=0)
    axes = [np.arange(a, b + spacing / 2, spacing) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def _id(dataset: str, scene: str, seed: int, qtype: str, index: int) -> int:
    key = f"pose|{dataset}|{scene}|{seed}|{qtype}|{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:6], "big")


def _frame(k: int) -> str:
    return f"frame {k + 1}"


def pose_questions(objects: Sequence[Mapping[str, Any]], c2w_opencv: np.ndarray, K_pixels: np.ndarray,
                   image_hw: Sequence[int], frame_ids: Sequence[int], *, scene_name: str, seed: int,
                   dataset: str = "synthetic", max_per_type: int = 4, grid_spacing: float = 0.25,
                   max_depth: float = OVERLAP_MAX_DEPTH) -> list[dict]:
    """Records of the three pose question types for views shown in the given order.

    Args:
        objects: scan objects (``instance_id``, ``category``, ``center`` (3,), ``size`` (3,), metres); only
            categories with a single instance are asked about.
        c2w_opencv: (S, 4, 4) cameras of the views, in presentation order (S >= 2). Answers are over all S views;
            options list the answer and up to 3 other views (pairs), in presentation order.
        K_pixels: (S, 3, 3) or (3, 3) intrinsics for ``image_hw``; frame_ids: (S,) the views' frame ids.
    Returns:
        Records (``POSE_QUESTION_TYPES`` order); ``frame_ids`` is the presented order and ``meta`` names the
        answered view(s) by frame id, so answers can be checked against the cameras.
    Raises:
        ShapeError: bad pose / intrinsics shapes. ConfigError: bad seed or ``max_per_type``.
    """
    c2w = _check_poses(c2w_opencv)
    frame_ids = [int(f) for f in frame_ids]
    if len(frame_ids) != len(c2w):
        raise ShapeError(f"frame_ids has {len(frame_ids)} entries for {len(c2w)} views")
    if not isinstance(seed, int) or seed < 0 or not isinstance(max_per_type, int) or max_per_type < 1:
        raise ConfigError(f"seed must be an int >= 0 and max_per_type >= 1; got {seed!r}, {max_per_type!r}",
                          field="seed", value=(seed, max_per_type))
    by_cat: dict[str, list[Mapping[str, Any]]] = {}
    for o in sorted(objects, key=lambda o: o["instance_id"]):
        by_cat.setdefault(o["category"], []).append(o)
    unique = sorted(c for c, objs in by_cat.items() if len(objs) == 1)
    centers = np.array([by_cat[c][0]["center"] for c in unique], np.float64).reshape(-1, 3)
    n_views = len(c2w)
    out: list[dict] = []

    def add(qtype: str, question: str, options: list[str], truth: int, meta: dict) -> None:
        index = sum(r["question_type"] == qtype for r in out)
        out.append({"id": _id(dataset, scene_name, seed, qtype, index), "dataset": dataset,
                    "scene_name": scene_name, "question_type": qtype, "question": question,
                    "options": [f"{_LETTERS[i]}. {t}" for i, t in enumerate(options)],
                    "ground_truth": _LETTERS[truth], "frame_ids": frame_ids, "meta": meta})

    def choices(answer: int, n_candidates: int, rng: np.random.Generator) -> list[int]:
        """The answer plus up to 3 other candidates, in candidate order (all candidates when there are <= 4)."""
        others = [k for k in rng.permutation(n_candidates) if k != answer][:len(_LETTERS) - 1]
        return sorted([answer, *map(int, others)])

    intro = f"These {n_views} frames show one room from different viewpoints, in no particular order."
    # facing: the best of all views per object, with a margin to the runner-up
    facing = facing_angles_deg(c2w, centers) if len(unique) else np.zeros((n_views, 0))
    ranked = np.sort(facing, axis=0)
    best = np.argmin(facing, axis=0)
    visible = in_view(c2w, np.broadcast_to(np.asarray(K_pixels, np.float64), (n_views, 3, 3)), image_hw, centers)
    clear = (ranked[1] - ranked[0] >= FACING_MARGIN_DEG) & (ranked[0] <= 60.0) \
        & visible[best, np.arange(len(unique))]  # the answer view has the object's centre in its image
    facing_ok = [i for i in range(len(unique)) if clear[i]]
    rng = np.random.default_rng([seed, 1])
    for i in [facing_ok[j] for j in rng.permutation(len(facing_ok))][:max_per_type]:
        shown = choices(int(best[i]), n_views, rng)
        add("pose_view_facing", f"{intro} Which frame looks most directly at the {unique[i].replace('_', ' ')}?",
            [_frame(k) for k in shown], shown.index(int(best[i])),
            {"category": unique[i], "answer_frame_id": frame_ids[int(best[i])],
             "angles_deg": facing[:, i].round(3).tolist()})
    # relative direction from the view that faces an anchor object
    side = horizontal_angle_deg(c2w, centers) if len(unique) else np.zeros((n_views, 0))
    pairs = [(a, b) for a, b in itertools.permutations(facing_ok, 2)
             if SIDE_MARGIN_DEG <= abs(side[best[a], b]) <= 180.0 - SIDE_MARGIN_DEG]
    rng = np.random.default_rng([seed, 2])
    for a, b in [pairs[j] for j in rng.permutation(len(pairs))][:max_per_type]:
        angle = float(side[best[a], b])
        options = ["left", "right"] if rng.random() < 0.5 else ["right", "left"]
        add("pose_rel_direction", f"{intro} Standing where the frame that looks most directly at the "
            f"{unique[a].replace('_', ' ')} was taken, and looking the same way, is the {unique[b].replace('_', ' ')}"
            " to my left or to my right?", options, options.index("right" if angle > 0 else "left"),
            {"anchor": unique[a], "target": unique[b], "viewpoint_frame_id": frame_ids[int(best[a])],
             "angle_deg": round(angle, 3)})
    # overlap: the pair of views whose frusta share most of the room
    if n_views >= 3 and objects:
        grid = _room_grid(objects, grid_spacing)
        iou = frustum_overlap(c2w, np.broadcast_to(np.asarray(K_pixels, np.float64), (n_views, 3, 3)), image_hw,
                              grid, max_depth=max_depth)
        cand = list(itertools.combinations(range(n_views), 2))
        scores = np.array([iou[i, j] for i, j in cand])
        order = np.argsort(-scores, kind="stable")
        top, second = scores[order[0]], scores[order[1]]
        if top > 0 and top - second >= OVERLAP_MARGIN * top:
            rng = np.random.default_rng([seed, 3])
            shown = choices(int(order[0]), len(cand), rng)
            pair = cand[int(order[0])]
            add("pose_view_overlap", f"{intro} Which two frames show the most of the same part of the room?",
                [f"{_frame(cand[k][0])} and {_frame(cand[k][1])}" for k in shown], shown.index(int(order[0])),
                {"answer_frame_ids": [frame_ids[pair[0]], frame_ids[pair[1]]], "iou": round(float(top), 4),
                 "runner_up_iou": round(float(second), 4)})
    return out


def scene_pose_questions(scene_dir, frame_ids: Sequence[int], *, seed: int, dataset: str = "synthetic",
                         max_per_type: int = 4) -> list[dict]:
    """:func:`pose_questions` for the views ``frame_ids`` of a posed synthetic scan, shown in
    ``presentation_order(len(frame_ids), seed, scene_name=scene.name)`` (so frame index says nothing about
    where a view looks).

    Raises:
        ConfigError: the scene has no cameras or no synthetic ground truth (``metadata.objects``).
    """
    from posevlm.scenes import load_scene

    scene = load_scene(scene_dir)
    if scene.cameras is None or "objects" not in scene.metadata:
        raise ConfigError(f"scene {scene.name!r} has no cameras or no metadata.objects: pose questions need a "
                          "posed synthetic scan (posevlm synth)", field="scene", value=scene.name)
    ids = np.asarray(frame_ids, np.int64)[presentation_order(len(frame_ids), seed, scene_name=scene.name)]
    cams = scene.cameras_for(ids)
    c2w = np.linalg.inv(cams.w2c_opencv.double().numpy())
    hw = tuple(int(v) for v in cams.image_hw[0])
    return pose_questions(scene.metadata["objects"], c2w, cams.K_pixels.double().numpy(), hw, ids.tolist(),
                          scene_name=scene.name, seed=seed, dataset=dataset, max_per_type=max_per_type)


def selection_pose_questions(scene_dirs, selection_dir, *, dataset: str, seed: int = 0, orders: int = 1,
                             max_per_type: int = 4) -> list[dict]:
    """The pose questions of every scene over the views a frame selection chose for it: ``selection_dir`` is a
    ``posevlm sample`` output for one selection (``<selection_dir>/<dataset>/<scene>/selected_frames.json``), each
    scene's views shown in ``orders`` seeded random orders (seeds ``seed .. seed + orders - 1``).

    Raises:
        MissingInputError: a scene has no manifest under ``selection_dir`` (names the scene and the path).
        ConfigError: see :func:`scene_pose_questions`; ``orders`` < 1.
    """
    from pathlib import Path

    from posevlm.eval.errors import MissingInputError
    from posevlm.sampling.manifest import MANIFEST_NAME, read_manifest

    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 1:
        raise ConfigError(f"orders must be an int >= 1; got {orders!r}", field="orders", value=orders)
    out = []
    for scene_dir in map(Path, scene_dirs):
        manifest = Path(selection_dir) / dataset / scene_dir.name / MANIFEST_NAME
        if not manifest.is_file():
            raise MissingInputError(f"scene {scene_dir.name} has no selection at {manifest}; run `posevlm sample` on "
                                    "these scenes first and pass its <out>/<slug> folder", input=manifest)
        selected = read_manifest(manifest)["selected_frames"]
        for s in range(seed, seed + orders):
            out += scene_pose_questions(scene_dir, selected, seed=s, dataset=dataset, max_per_type=max_per_type)
    return out


def read_pose_benchmark(path) -> list[dict]:
    """The records of a ``synthetic_pose`` ``.jsonl``: VSI-Bench fields valid, a pose question type, ``frame_ids``
    a non-empty list of distinct ints, unique ids, options naming frames 1..len(frame_ids) only ("frame k" is the k-th
    view shown).

    Raises:
        InputFileError: missing file, bad JSON or an invalid record (names the line and the problem).
    """
    from pathlib import Path

    from posevlm.eval.benchmarks.synthetic_vsi import read_benchmark_jsonl

    path = Path(path)
    records = read_benchmark_jsonl(path)
    for n, r in enumerate(records, start=1):
        ids = r.get("frame_ids")
        problems = [] if r["question_type"] in POSE_QUESTION_TYPES else [
            f"question_type {r['question_type']!r} is not a pose question type ({', '.join(POSE_QUESTION_TYPES)})"]
        if not (isinstance(ids, list) and ids and all(isinstance(f, int) and not isinstance(f, bool) for f in ids)
                and len(set(ids)) == len(ids)):
            problems.append(f"frame_ids must be a non-empty list of distinct ints (the views shown); got {ids!r}")
        else:
            named = sorted({int(k) for o in r.get("options") or () for k in re.findall(r"frame (\d+)", str(o))})
            outside = [k for k in named if not 1 <= k <= len(ids)]
            if outside:
                problems.append(f"options name frame {', '.join(map(str, outside))}, but frames are numbered "
                                f"1..{len(ids)} (positions in frame_ids, the {len(ids)} views shown)")
        if problems:
            raise InputFileError(f"{path}: record {n} (id {r['id']}): " + "; ".join(problems), path=path)
    return records


BENCHMARK = BenchmarkSpec(
    "synthetic_pose", lambda benchmark: read_pose_benchmark(benchmark["source"]),
    "pose-dependent questions over views shown shuffled, exact answers from the cameras (a .jsonl written by "
    "posevlm synth --pose-benchmark / posevlm train's synthetic set); --frames folder_manifest of that selection",
    task_format="pose_views")
