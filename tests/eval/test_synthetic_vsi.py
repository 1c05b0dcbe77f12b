"""Synthetic VSI-style questions: schema, determinism, and ground truth recomputed from scene.json."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posevlm.errors import InputFileError, PosevlmError
from posevlm.eval.benchmarks import (
    QUESTION_TYPES,
    direction_label,
    generate_benchmark,
    generate_questions,
    question_id,
    questions_from_ground_truth,
    read_benchmark_jsonl,
    relative_direction_deg,
    validate_record,
    write_benchmark_jsonl,
)
from posevlm.scenes import load_scene
from posevlm.scenes.synthetic import SynthConfig, generate_dataset, synth_config

CFG = SynthConfig(seed=3, num_frames=60, image_hw=(48, 64), fps=3.0)  # 20 s walks: most of each room is seen
OPTION_COUNTS = {"object_rel_direction_easy": 2, "object_rel_direction_medium": 3,
                 "object_rel_direction_hard": 4, "object_rel_distance": 4, "obj_appearance_order": 4,
                 "route_planning": 4}
ROLES = ("positioning", "orienting", "querying")
NA_TYPES = {"object_counting", "object_size_estimation", "room_size_estimation", "object_abs_distance"}


@pytest.fixture(scope="module")
def scene_dirs(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("vsi"), 4, CFG)


@pytest.fixture(scope="module")
def scenes(scene_dirs):
    return [load_scene(p) for p in scene_dirs]


@pytest.fixture(scope="module")
def records(scenes):
    return {s.name: generate_questions(s, seed=7) for s in scenes}


def _objects(scene):
    return {o["instance_id"]: o for o in scene.metadata["objects"]}


def _first_frames(scene, min_pixels=20):
    """Reference: instance id -> first frame id with >= min_pixels pixels, one frame at a time."""
    first = {}
    for fid in scene.frame_ids.tolist():
        ids, counts = np.unique(scene.instances.read(fid), return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            if c >= min_pixels and i not in first:
                first[i] = fid
    return first


def _gap(a, b):
    """Closest-point distance of two boxes from their centres and sizes, axis by axis."""
    d = np.maximum(0.0, np.abs(np.subtract(a["center"], b["center"])) - (np.add(a["size"], b["size"]) / 2))
    return float(np.sqrt((d**2).sum()))


def _camera_direction(p, o, q, difficulty):
    """Reference label from an OpenCV camera at p looking at o (horizontal): x right, z forward."""
    z = np.array([*(np.subtract(o, p)[:2]), 0.0])
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])  # with y = down, right = forward x up
    v = np.array([*(np.subtract(q, p)[:2]), 0.0])
    right, front = v @ x, v @ z
    side = "right" if right > 0 else "left"
    turn = np.degrees(np.arctan2(abs(right), front))
    if difficulty == "medium" and turn >= 135:
        return "back"
    return f"{'front' if front > 0 else 'back'}-{side}" if difficulty == "hard" else side


def test_schema_option_counts_and_letters(records):
    for recs in records.values():
        for r in recs:
            assert validate_record(r) == [], r
            assert r["question_type"] in QUESTION_TYPES and r["dataset"] == "synthetic"
            assert isinstance(r["meta"], dict) and r["meta"]["benchmark"] == "posevlm.synthetic_vsi"
            if r["question_type"] in NA_TYPES:
                assert r["options"] is None and float(r["ground_truth"]) > 0
            else:
                n = OPTION_COUNTS[r["question_type"]]
                assert [o[:3] for o in r["options"]] == [f"{c}. " for c in "ABCD"[:n]]
                assert r["ground_truth"] in "ABCD"[:n] and len(r["ground_truth"]) == 1
                assert len(set(r["options"])) == n
            json.dumps(r)  # serialisable as is


def test_every_type_is_generated_and_room_size_once_per_scene(records):
    types = {r["question_type"] for recs in records.values() for r in recs}
    assert types == set(QUESTION_TYPES)
    for recs in records.values():
        per_type = {t: sum(r["question_type"] == t for r in recs) for t in QUESTION_TYPES}
        assert per_type["room_size_estimation"] == 1
        assert max(per_type.values()) <= 4


def test_deterministic_per_seed_and_ids_unique(scenes, records):
    again = generate_questions(scenes[1], seed=7)
    assert again == records[scenes[1].name]
    other = generate_questions(scenes[1], seed=8)
    assert {r["id"] for r in other}.isdisjoint(r["id"] for r in again)
    ids = [r["id"] for recs in records.values() for r in recs]
    assert len(ids) == len(set(ids)) and all(0 <= i < 2**53 for i in ids)
    assert question_id("synthetic", "synth_0000", 7, "object_counting", 0) == records["synth_0000"][0]["id"]


def test_benchmark_over_scenes_and_jsonl_round_trip(scene_dirs, scenes, records, tmp_path):
    bench = generate_benchmark(scene_dirs[:2], seed=7)
    assert bench == records[scenes[0].name] + records[scenes[1].name]
    with pytest.raises(PosevlmError, match="pass every scene once"):
        generate_benchmark([scene_dirs[0], scene_dirs[0]], seed=7)
    path = write_benchmark_jsonl(bench, tmp_path / "bench.jsonl")
    assert read_benchmark_jsonl(path) == bench
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["ground_truth"] = "E" if bad["options"] else 3
    path.write_text("\n".join([lines[0], json.dumps(bad)]) + "\n")
    with pytest.raises(InputFileError, match=r"bench.jsonl:2: .*ground_truth"):
        read_benchmark_jsonl(path)


def test_ground_truth_matches_scene_json(scenes, records):
    for scene in scenes:
        objs, first = _objects(scene), _first_frames(scene)
        by_cat = {}
        for i, o in objs.items():
            by_cat.setdefault(o["category"], []).append(o)
        name = {c.replace("_", " "): c for c in by_cat}
        for r in records[scene.name]:
            qt, meta, gt = r["question_type"], r["meta"], r["ground_truth"]
            if qt == "object_counting":
                cat = name[r["question"].split("How many ")[1].split("(s)")[0]]
                assert int(gt) == len(by_cat[cat])
                assert all(o["instance_id"] in first for o in by_cat[cat])  # every instance visible
            elif qt == "object_size_estimation":
                (o,) = by_cat[meta["category"]]
                assert float(gt) == pytest.approx(max(o["size"]) * 100, abs=0.05)
            elif qt == "room_size_estimation":
                assert float(gt) == pytest.approx(scene.metadata["room"]["floor_area_m2"], abs=0.005)
            elif qt == "object_abs_distance":
                (a,), (b,) = (by_cat[c] for c in meta["categories"])
                assert float(gt) == pytest.approx(_gap(a, b), abs=0.005) and float(gt) >= 0.3
            elif qt == "object_rel_distance":
                (t,) = by_cat[meta["target_category"]]
                d = sorted((min(_gap(t, o) for o in by_cat[c]), k) for k, c in enumerate(meta["choices"]))
                assert gt == "ABCD"[d[0][1]] and d[1][0] - d[0][0] >= max(0.2, 0.2 * d[0][0])
                assert r["options"][d[0][1]].endswith(meta["choices"][d[0][1]].replace("_", " "))
            elif qt.startswith("object_rel_direction"):
                difficulty = qt.rsplit("_", 1)[1]
                p, o, q = (by_cat[meta[k]["category"]][0]["center"] for k in ROLES)
                assert r["options"]["ABCD".index(gt)][3:] == _camera_direction(p, o, q, difficulty)
            elif qt == "obj_appearance_order":
                cat_first = {c: min(first[o["instance_id"]] for o in by_cat[c] if o["instance_id"] in first)
                             for c in meta["categories"]}
                order = ", ".join(c.replace("_", " ") for c in sorted(cat_first, key=cat_first.get))
                assert r["options"]["ABCD".index(gt)][3:] == order
                assert len(set(cat_first.values())) == 4


def test_questions_only_about_visible_unique_objects_far_from_boundaries(scenes, records):
    for scene in scenes:
        objs, first = _objects(scene), _first_frames(scene)
        count = {}
        for o in objs.values():
            count[o["category"]] = count.get(o["category"], 0) + 1
        for r in records[scene.name]:
            meta = r["meta"]
            involved = [meta[k] for k in ("instance_id",) if k in meta] + meta.get("instance_ids", [])
            involved += [meta[k]["instance_id"] for k in ROLES if k in meta]
            assert all(i in first for i in involved)
            if r["question_type"] != "object_counting":
                assert all(count[objs[i]["category"]] == 1 for i in involved)
            if r["question_type"].startswith("object_rel_direction"):
                p, o, q = (np.array(objs[meta[k]["instance_id"]]["center"][:2]) for k in ROLES)
                f, v = o - p, q - p
                ang = np.degrees(np.arctan2(f[0] * v[1] - f[1] * v[0], f @ v))
                bounds = {"easy": [0, 180, -180], "medium": [0, 135, -135], "hard": [0, 90, -90, 180, -180]}
                assert min(abs(ang - b) for b in bounds[r["question_type"].rsplit("_", 1)[1]]) >= 15
                assert min(np.linalg.norm(f), np.linalg.norm(v)) >= 0.5


def _metadata(objects):
    return {"room": {"boxes_xy": [[-5, -5, 5, 5]], "height": 2.5, "polygon_xy": [], "floor_area_m2": 100.0},
            "objects": [{"instance_id": k + 1, "category": c, "center": [x, y, 0.4], "size": [0.5, 0.5, 0.8]}
                        for k, (c, x, y) in enumerate(objects)]}


def test_direction_questions_skip_near_boundary_triples():
    # the table is 1.9 degrees left of the sofa->tv line: easy and hard must not ask about it
    meta = _metadata([("sofa", 0.0, 0.0), ("tv", 3.0, 0.0), ("table", 1.5, 0.05)])
    counts = np.full((1, 4), 100)
    recs = questions_from_ground_truth(meta, np.array([0]), counts, scene_name="s", seed=0)
    for r in recs:
        if r["question_type"] in ("object_rel_direction_easy", "object_rel_direction_hard"):
            roles = (r["meta"]["positioning"]["category"], r["meta"]["orienting"]["category"])
            assert roles not in {("sofa", "tv"), ("tv", "sofa"), ("sofa", "table"), ("table", "sofa"),
                                 ("tv", "table"), ("table", "tv")}
    assert not any(r["question_type"] == "object_rel_direction_easy" for r in recs)
    # invisible objects are never asked about
    counts = np.array([[100, 100, 100, 5]])
    hidden = questions_from_ground_truth(meta, np.array([0]), counts, scene_name="s", seed=0)
    assert all("table" not in r["question"] for r in hidden)


@given(st.floats(-10, 10), st.floats(-10, 10), st.floats(0, 2 * np.pi), st.floats(-179, 179),
       st.floats(0.5, 5))
def test_direction_angle_is_rigid_invariant_and_labels_agree(tx, ty, rot, angle, r):
    p, o = np.zeros(2), np.array([1.0, 0.0])
    q = r * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    R = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    moved = [R @ x + [tx, ty] for x in (p, o, q)]
    assert relative_direction_deg(*moved) == pytest.approx(angle, abs=1e-6)
    mirrored = [x * [1, -1] for x in (p, o, q)]
    assert relative_direction_deg(*mirrored) == pytest.approx(-angle, abs=1e-6)
    easy, medium, hard = (direction_label(angle, d) for d in ("easy", "medium", "hard"))
    assert hard.endswith(easy) and (medium == "back") == (abs(angle) >= 135)
    assert hard.startswith("back") == (abs(angle) >= 90) and (medium == "back") <= hard.startswith("back")


def test_counting_prefers_multi_instance_categories(records):
    for recs in records.values():
        counts = [int(r["ground_truth"]) for r in recs if r["question_type"] == "object_counting"]
        assert counts == sorted(counts, key=lambda c: c < 2)


def test_appearance_distractors_are_distinct_orders(records):
    for recs in records.values():
        for r in recs:
            if r["question_type"] == "obj_appearance_order":
                orders = [tuple(ch) for ch in r["meta"]["choices"]]
                assert len(set(orders)) == 4
                assert all(sorted(o) == sorted(r["meta"]["categories"]) for o in orders)
                assert set(itertools.chain(*orders)) == set(r["meta"]["categories"])


# ----------------------------------------------------------------------------- route planning

HARD = synth_config("hard", seed=1, num_frames=60, image_hw=(48, 64), fps=2.0)  # 30 s walks through 2-3 rooms


@pytest.fixture(scope="module")
def hard_scenes(tmp_path_factory):
    return [load_scene(p) for p in generate_dataset(tmp_path_factory.mktemp("vsi_hard"), 2, HARD)]


def _robot_turn(heading_xy, new_xy):
    """Reference turn: the new direction in a robot frame (z forward along the heading, x = z x up = right)."""
    z = np.array([*heading_xy, 0.0]) / np.linalg.norm(heading_xy)
    x = np.cross(z, [0.0, 0.0, 1.0])
    v = np.array([*new_xy, 0.0])
    right, front = v @ x, v @ z
    turn = np.degrees(np.arctan2(abs(right), front))  # 0 = straight on, 180 = straight back
    label = "back" if turn >= 135 else ("right" if right > 0 else "left")
    return label, turn


def _walkable(room, objs, a, b, ends, n=4001):
    """Dense reference: every sample of leg a-b inside a floor box and >= 0.1 m from other footprints."""
    p = np.asarray(a)[:2] + np.linspace(0, 1, n)[:, None] * (np.asarray(b)[:2] - np.asarray(a)[:2])
    boxes = np.asarray(room["boxes_xy"])
    inside = ((p[:, None] >= boxes[None, :, :2]) & (p[:, None] <= boxes[None, :, 2:])).all(-1).any(1).all()
    clear = True
    for i, o in objs.items():
        if i not in ends:
            half = np.divide(o["size"], 2)
            lo, hi = np.subtract(o["center"], half)[:2], np.add(o["center"], half)[:2]
            g = np.maximum(0.0, np.maximum(lo - p, p - hi))
            clear &= np.hypot(g[:, 0], g[:, 1]).min() >= 0.1 - 1e-9
    return inside and clear


def test_route_ground_truth_from_scene_json(scenes, records, hard_scenes):
    routes = [(s, r) for s in scenes for r in records[s.name] if r["question_type"] == "route_planning"]
    routes += [(s, r) for s in hard_scenes for r in generate_questions(s, seed=7)
               if r["question_type"] == "route_planning"]
    assert len(routes) >= 8 and {r["meta"]["template"] for _, r in routes} == {"facing_first", "turn_first"}
    for scene, r in routes:
        objs, meta, first = _objects(scene), r["meta"], _first_frames(scene)
        count = {}
        for o in objs.values():
            count[o["category"]] = count.get(o["category"], 0) + 1
        roles = [meta["start"], meta["facing"], *meta["waypoints"]]
        assert all(count[x["category"]] == 1 and x["instance_id"] in first for x in roles)  # unique, visible
        xy = [np.array(objs[x["instance_id"]]["center"][:2]) for x in roles]
        start, facing, way = xy[0], xy[1], xy[2:]
        path = [start, *way]
        for (a, b), (ia, ib) in zip(zip(path, path[1:]), zip([roles[0], *roles[2:]], roles[2:])):
            assert np.linalg.norm(b - a) >= 1.0
            assert _walkable(scene.metadata["room"], objs, a, b, {ia["instance_id"], ib["instance_id"]})
        headings = [b - a for a, b in zip(path, path[1:])]
        if meta["template"] == "facing_first":
            assert meta["facing"] == meta["waypoints"][0]
            pairs = list(zip(headings, headings[1:]))
        else:
            assert meta["facing"] not in meta["waypoints"]
            pairs = [(facing - start, headings[0])] + list(zip(headings, headings[1:]))
        turns = [_robot_turn(h, n) for h, n in pairs]
        assert [t[0] for t in turns] == meta["turns"]
        for _, turn in turns:  # clear of the 45 / 135 degree boundaries, never straight on
            assert 60 - 1e-9 <= turn <= 120 + 1e-9 or turn >= 150 - 1e-9
        correct = ", ".join(f"Turn {t.capitalize()}" for t in meta["turns"])
        assert r["options"]["ABCD".index(r["ground_truth"])][3:] == correct
        assert len(set(r["options"])) == 4 and sum(o[3:] == correct for o in r["options"]) == 1
        names = [x["category"].replace("_", " ") for x in roles]
        assert r["question"].startswith(f"You are a robot beginning at the {names[0]} facing the {names[1]}. "
                                        f"You want to navigate to the {names[-1]}.")
