"""Layout-script targets from synthetic scans, the parser, oriented 3D IoU and F1 at IoU 0.25 / 0.5."""

import math

import numpy as np
import pytest

from posevlm.errors import ConfigError
from posevlm.eval.layout_data import layout_sample, read_layout_dataset, write_layout_dataset
from posevlm.eval.layout_script import (
    Box,
    Layout,
    Wall,
    aggregate_layout_scores,
    box_iou_3d,
    layout_from_metadata,
    max_matching,
    parse_layout_script,
    score_layout,
    walls_as_boxes,
)


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory):
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 1, SynthConfig(seed=4, num_frames=30, image_hw=(48, 64)))
    return next(root.glob("synth_*"))


def _rotate(boxes, yaw):
    """Rotate (N, 7) boxes about the origin's z axis by ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = boxes.copy()
    out[:, 0], out[:, 1] = c * boxes[:, 0] - s * boxes[:, 1], s * boxes[:, 0] + c * boxes[:, 1]
    out[:, 3] += yaw
    return out


def test_box_iou_known_values_and_invariances():
    unit = np.array([[0, 0, 0, 0, 1, 1, 1.0]])
    assert box_iou_3d(unit, unit)[0, 0] == pytest.approx(1.0)
    assert box_iou_3d(unit, unit + [[0.5, 0, 0, 0, 0, 0, 0]])[0, 0] == pytest.approx(1 / 3)
    assert box_iou_3d(unit, unit + [[0, 0, 0.5, 0, 0, 0, 0]])[0, 0] == pytest.approx(1 / 3)
    assert box_iou_3d(unit, unit + [[0, 0, 0, math.pi / 4, 0, 0, 0]])[0, 0] == pytest.approx(1 / math.sqrt(2))
    assert box_iou_3d(unit, unit + [[3, 0, 0, 0, 0, 0, 0]])[0, 0] == 0.0
    long = np.array([[0, 0, 0, 0, 2, 1, 1.0]])
    assert box_iou_3d(long, long + [[0, 0, 0, math.pi, 0, 0, 0]])[0, 0] == pytest.approx(1.0)
    assert box_iou_3d(long, [[0, 0, 0, math.pi / 2, 1, 2, 1]])[0, 0] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.normal(size=(6, 3)), rng.uniform(-3, 3, 6), rng.uniform(0.3, 2, (6, 3))])
    b = np.column_stack([rng.normal(size=(5, 3)), rng.uniform(-3, 3, 5), rng.uniform(0.3, 2, (5, 3))])
    iou = box_iou_3d(a, b)
    assert iou.shape == (6, 5) and (iou >= 0).all() and (iou <= 1).all() and iou.max() > 0
    np.testing.assert_allclose(box_iou_3d(b, a), iou.T, atol=1e-12)
    np.testing.assert_allclose(box_iou_3d(_rotate(a, 0.7), _rotate(b, 0.7)), iou, atol=1e-9)
    np.testing.assert_allclose(box_iou_3d(a + [1, -2, 3, 0, 0, 0, 0], b + [1, -2, 3, 0, 0, 0, 0]), iou, atol=1e-9)


def test_matching_is_maximal_where_greedy_is_not():
    # greedy by row would give prediction 0 the first target and leave prediction 1 unmatched
    assert max_matching(np.array([[True, True], [True, False]])) == 2
    assert max_matching(np.zeros((3, 0), dtype=bool)) == 0
    assert max_matching(np.ones((3, 2), dtype=bool)) == 2


def test_script_round_trip_and_parse_errors():
    layout = Layout((Wall((0, 0, 0), (3.5, 0, 0), 2.7, 0.1),),
                    (Box("chair", (1.234, 2.0, 0.4), 0.5, (0.5, 0.6, 0.8)), Box("tv", (0.0, -0.001, 1), 0, (1, 1, 1))))
    text = layout.to_script()
    assert text.splitlines()[0] == "wall_0=Wall(0.00,0.00,0.00,3.50,0.00,0.00,2.70,0.10)"
    assert "bbox_1=Bbox(tv,0.00,0.00,1.00," in text  # no "-0.00"
    parsed, bad = parse_layout_script(text + "\ndoor_0=Door(wall_0,1,0,1,0.9,2)\nnot a line\nbbox_9=Bbox(x,1,2)")
    assert bad == ["not a line", "bbox_9=Bbox(x,1,2)"] and parsed.unscored == ("door_0=Door(wall_0,1,0,1,0.9,2)",)
    assert parsed.boxes[0] == Box("chair", (1.23, 2.0, 0.4), 0.5, (0.5, 0.6, 0.8))
    assert parse_layout_script("bbox_0=Bbox(chair,nan,0,0,0,1,1,1)")[1]


def test_scores_perfect_missing_shifted_and_wrong_class():
    target = Layout((Wall((0, 0, 0), (4, 0, 0), 2.5), Wall((4, 0, 0), (4, 3, 0), 2.5)),
                    (Box("chair", (1, 1, 0.4), 0, (0.5, 0.5, 0.8)), Box("table", (2, 2, 0.4), 0, (1.2, 0.8, 0.8))))
    perfect = score_layout(target.to_script(), target)
    assert all(v["f1"] == 1.0 for kind in ("walls", "boxes") for v in perfect[kind].values())
    missing = score_layout(Layout(target.walls, target.boxes[:1]), target)["boxes"]["0.5"]
    assert (missing["precision"], missing["recall"]) == (1.0, 0.5) and missing["f1"] == pytest.approx(2 / 3)
    shifted = Layout(target.walls, tuple(Box(b.category, (b.center[0] + 0.2, *b.center[1:]), 0, b.size)
                                         for b in target.boxes))
    s = score_layout(shifted, target)["boxes"]
    assert s["0.25"]["tp"] == 2 and s["0.5"]["tp"] == 1  # the 0.5 m chair shifted 0.2 m has IoU 0.43
    renamed = Layout(target.walls, tuple(Box("sofa", b.center, b.angle_z, b.size) for b in target.boxes))
    assert score_layout(renamed, target)["boxes"]["0.25"]["tp"] == 0
    empty = score_layout("", Layout())
    assert empty["boxes"]["0.5"]["f1"] == 1.0 and empty["walls"]["0.25"]["f1"] == 1.0
    assert score_layout("garbage", target)["unparsed"] == 1
    with pytest.raises(ConfigError, match="thresholds"):
        score_layout("", target, thresholds=(0,))
    total = aggregate_layout_scores([perfect, score_layout(Layout(target.walls, target.boxes[:1]), target)])
    assert total["boxes"]["0.5"]["tp"] == 3 and total["boxes"]["0.5"]["n_gt"] == 4 and total["samples"] == 2


def test_walls_are_scored_as_boxes_along_their_segment():
    rows = walls_as_boxes([Wall((0, 0, 0), (0, 3, 0), 2.0, 0.0)], min_thickness=0.2)
    np.testing.assert_allclose(rows, [[0, 1.5, 1.0, math.pi / 2, 3.0, 0.2, 2.0]])
    flipped = walls_as_boxes([Wall((0, 3, 0), (0, 0, 0), 2.0)])
    assert box_iou_3d(rows, flipped)[0, 0] == pytest.approx(1.0)


def test_targets_are_the_exact_ground_truth_in_the_cloud_frame(scan_dir):
    from posevlm.scenes import load_scene

    scene = load_scene(scan_dir)
    cloud, layout = layout_sample(scene, num_frames=12, pixel_stride=2, grid_size=0.05)
    room, objects = scene.metadata["room"], scene.metadata["objects"]
    assert len(layout.walls) == len(room["polygon_xy"]) and len(layout.boxes) == len(objects)
    world = layout_from_metadata(scene.metadata)
    for b, w in zip(layout.boxes, world.boxes):  # same boxes, shifted by the cloud's origin
        np.testing.assert_allclose(np.asarray(b.center) + cloud.origin, w.center)
    # every cloud point lies on the floor, the ceiling, a wall or an object's surface of the target layout
    pts = cloud.xyz.astype(np.float64)
    tol = 0.06
    d = np.full(len(pts), np.inf)
    height = layout.walls[0].height
    d = np.minimum(d, np.abs(pts[:, 2] - layout.walls[0].a[2]))
    d = np.minimum(d, np.abs(pts[:, 2] - layout.walls[0].a[2] - height))
    for w in layout.walls:
        a, b = np.asarray(w.a[:2]), np.asarray(w.b[:2])
        t = np.clip(((pts[:, :2] - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        d = np.minimum(d, np.linalg.norm(pts[:, :2] - (a + t[:, None] * (b - a)), axis=1))
    for box in layout.boxes:
        lo, hi = np.asarray(box.center) - np.asarray(box.size) / 2, np.asarray(box.center) + np.asarray(box.size) / 2
        inside = ((pts >= lo - tol) & (pts <= hi + tol)).all(1)
        to_face = np.minimum(np.abs(pts - lo), np.abs(pts - hi)).min(1)
        d = np.where(inside, np.minimum(d, to_face), d)
    assert (d < tol).mean() > 0.98


def test_dataset_files_round_trip(scan_dir, tmp_path):
    from posevlm.scenes import load_point_cloud

    path = write_layout_dataset([scan_dir], tmp_path / "layout", num_frames=6, grid_size=0.05)
    (record,) = read_layout_dataset(path)
    cloud = load_point_cloud(record["point_cloud"])
    assert record["meta"]["points"] == len(cloud) and record["meta"]["boxes"] > 0
    np.testing.assert_allclose(record["meta"]["origin"], cloud.origin)
    target, bad = parse_layout_script(record["target"])
    assert not bad and len(target.boxes) == record["meta"]["boxes"]
    assert all(v["f1"] == 1.0 for v in score_layout(record["target"], record["target"])["boxes"].values())
