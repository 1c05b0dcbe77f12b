"""Pose-dependent questions: answers are functions of the cameras, not of the order the frames are shown in.
Permuting the presented order leaves every answer's camera (and the relative-direction answers verbatim)
unchanged; changing a camera (a 180 degree roll, swapping two poses) changes the answers; the geometry matches
an explicit per-view reference."""

import numpy as np
import pytest

from posevlm.eval.benchmarks.pose_tasks import (
    POSE_QUESTION_TYPES, facing_angles_deg, frustum_overlap, pose_questions, presentation_order,
)  # fmt: skip

K = np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])
HW = (48, 64)
OBJECTS = [{"instance_id": 1, "category": "chair", "center": [0, 0, 3], "size": [0.5, 0.8, 0.5]},
           {"instance_id": 2, "category": "lamp", "center": [2, 0, 3], "size": [0.3, 1.5, 0.3]},
           {"instance_id": 3, "category": "sofa", "center": [0, 0, -3], "size": [2.0, 0.8, 0.9]},
           {"instance_id": 4, "category": "table", "center": [3, 0, 0], "size": [1.2, 0.7, 0.8]}]


def _c2w(R, t):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, t
    return m


PLUS_Z, MINUS_Z = np.eye(3), np.diag([-1.0, 1, -1])
PLUS_X = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])  # columns: camera x, y, z axes in the world
ROLLED = np.diag([-1.0, -1, 1])  # +z camera turned upside down: its right is the world's -x
CAMERAS = np.stack([_c2w(PLUS_Z, [0, 0, 0]), _c2w(PLUS_Z, [1.0, 0, 0]), _c2w(MINUS_Z, [0, 0, 0]),
                    _c2w(PLUS_X, [0, 0, 0])])
FRAME_IDS = [10, 20, 30, 40]


def _ask(cams, frame_ids, seed=0):
    return pose_questions(OBJECTS, cams, K, HW, frame_ids, scene_name="s", seed=seed)


def _by_type(records):
    out = {}
    for r in records:
        out.setdefault(r["question_type"], []).append(r)
    return out


def test_every_type_is_asked_with_the_exact_answer_of_the_construction():
    q = _by_type(_ask(CAMERAS, FRAME_IDS))
    assert set(q) == set(POSE_QUESTION_TYPES)
    facing = {r["meta"]["category"]: r["meta"]["answer_frame_id"] for r in q["pose_view_facing"]}
    assert facing == {"chair": 10, "lamp": 20, "sofa": 30, "table": 40}
    for r in q["pose_view_facing"]:
        answered = FRAME_IDS.index(facing[r["meta"]["category"]]) + 1
        assert r["options"][ord(r["ground_truth"]) - 65].endswith(f"frame {answered}")
    side = {(r["meta"]["anchor"], r["meta"]["target"]): r for r in q["pose_rel_direction"]}
    table_from_chair_view = side[("chair", "table")]  # from the chair's view (+z at origin) the table (3,0,0) is right
    assert table_from_chair_view["options"][ord(table_from_chair_view["ground_truth"]) - 65].endswith("right")
    (overlap,) = q["pose_view_overlap"]
    assert sorted(overlap["meta"]["answer_frame_ids"]) == [10, 20]  # the two +z views 1 m apart


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permuting_the_presented_order_keeps_every_answer(seed):
    order = presentation_order(4, seed + 5)
    assert sorted(order) == [0, 1, 2, 3]
    base = _by_type(_ask(CAMERAS, FRAME_IDS, seed))
    perm = _by_type(_ask(CAMERAS[order], [FRAME_IDS[i] for i in order], seed))
    assert {k: len(v) for k, v in base.items()} == {k: len(v) for k, v in perm.items()}
    for a, b in zip(base["pose_view_facing"], perm["pose_view_facing"]):
        assert a["meta"]["answer_frame_id"] == b["meta"]["answer_frame_id"]
        shown = b["frame_ids"]  # the letter points at the same camera in the new order
        answered = shown.index(b["meta"]["answer_frame_id"]) + 1
        assert b["options"][ord(b["ground_truth"]) - 65].endswith(f"frame {answered}")
    for a, b in zip(base["pose_rel_direction"], perm["pose_rel_direction"]):  # verbatim the same question
        assert (a["id"], a["question"], a["options"], a["ground_truth"]) == \
            (b["id"], b["question"], b["options"], b["ground_truth"])
    for a, b in zip(base["pose_view_overlap"], perm["pose_view_overlap"]):
        assert sorted(a["meta"]["answer_frame_ids"]) == sorted(b["meta"]["answer_frame_ids"])


def test_changing_the_cameras_changes_the_answers():
    base = _by_type(_ask(CAMERAS, FRAME_IDS))
    rolled = CAMERAS.copy()
    rolled[0, :3, :3] = ROLLED  # same position and viewing direction, upside down: left and right swap
    r = _by_type(_ask(rolled, FRAME_IDS))
    pick = {(x["meta"]["anchor"], x["meta"]["target"]): x for x in r["pose_rel_direction"]}
    after = pick[("chair", "table")]
    assert after["options"][ord(after["ground_truth"]) - 65].endswith("left")
    swapped = CAMERAS[[2, 1, 0, 3]]  # frame 10 now has the -z pose: same images order, other cameras
    s = {x["meta"]["category"]: x["ground_truth"] for x in _by_type(_ask(swapped, FRAME_IDS))["pose_view_facing"]}
    b = {x["meta"]["category"]: x["ground_truth"] for x in base["pose_view_facing"]}
    assert s["sofa"] != b["sofa"] and s["table"] == b["table"]


def test_geometry_matches_an_explicit_per_view_reference():
    rng = np.random.default_rng(0)
    points = rng.uniform(-3, 3, (50, 3))
    angles = facing_angles_deg(CAMERAS, points)
    iou = frustum_overlap(CAMERAS, K, HW, points, max_depth=4.0)
    seen = []
    for c2w in CAMERAS:
        w2c = np.linalg.inv(c2w)
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        ref = [np.degrees(np.arccos(np.dot(p, [0, 0, 1]) / np.linalg.norm(p))) for p in cam]
        np.testing.assert_allclose(angles[len(seen)], ref, atol=1e-9)
        uv = [(K @ p)[:2] / p[2] if p[2] > 0 else (-1, -1) for p in cam]
        seen.append({i for i, (p, (u, v)) in enumerate(zip(cam, uv))
                     if 0 < p[2] <= 4.0 and 0 <= u < HW[1] and 0 <= v < HW[0]})
    for i in range(4):
        for j in range(4):
            union = len(seen[i] | seen[j])
            assert iou[i, j] == pytest.approx(len(seen[i] & seen[j]) / union if union else 0.0)


def test_more_views_than_options_answers_over_all_views():
    at_lamp = _c2w(PLUS_Z, [2, 0, 1.5])  # the fifth view: straight at the lamp (frame 20 sees it at 18 degrees)
    cams = np.concatenate([CAMERAS[[2, 3, 1, 0]], at_lamp[None]])
    records = _by_type(pose_questions(OBJECTS, cams, K, HW, [30, 40, 20, 10, 50], scene_name="s", seed=0))
    for r in records["pose_view_facing"]:
        assert len(r["options"]) == 4 and r["question"].startswith("These 5 frames")
        answered = r["frame_ids"].index(r["meta"]["answer_frame_id"]) + 1
        assert r["options"][ord(r["ground_truth"]) - 65].endswith(f"frame {answered}")
    facing = {r["meta"]["category"]: r["meta"]["answer_frame_id"] for r in records["pose_view_facing"]}
    assert facing == {"chair": 10, "lamp": 50, "sofa": 30, "table": 40}
