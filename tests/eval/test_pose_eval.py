"""Pose questions end to end: the synthetic set writes them with their views' shuffled order (training records and
the ``synthetic_pose`` benchmark), ``posevlm eval`` presents exactly those views in that order (pixels and cameras
follow their frames), the oracle answers them from the presented cameras, and answers follow the shown order:
rolling every record's order breaks the order-dependent types and leaves the order-free one unchanged. The
``pose_views`` format's bootstrap weights reproduce its columns; the VSI-Bench aggregate refuses pose types."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval.aggregate import aggregate_vsibench
from posevlm.eval.benchmarks.pose_tasks import read_pose_benchmark
from posevlm.eval.errors import FrameCountMismatchError
from posevlm.eval.frames import FolderManifest
from posevlm.eval.metrics import POSE_QUESTION_TYPES
from posevlm.eval.pose_format import FORMAT, pose_columns
from posevlm.eval.run_store import load_run

N = 6


@pytest.fixture(scope="module")
def pose_set(tmp_path_factory):
    from posevlm.train.synthetic import SyntheticTrainConfig, build_synthetic_training_set

    root = tmp_path_factory.mktemp("pose_set")
    config = SyntheticTrainConfig(num_scenes=4, num_test_scenes=2, frames_per_scene=48, image_hw=(72, 96), fps=5.0,
                                  questions_per_type=1, media="manifest", sampler="pose_fps", num_frames=N,
                                  pose_questions_per_type=4, pose_orders_per_scene=2)
    built = build_synthetic_training_set(root / "set", config)
    slug = json.loads((built.root / "synthetic_train.json").read_text())["sampling"]["slug"]
    return built, built.root / "sampled" / slug


def _selected(frames_root: Path, scene: str) -> list[int]:
    doc = json.loads((frames_root / "synthetic_train" / scene / "selected_frames.json").read_text())
    return doc["selected_frames"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_take_reorders_pixels_and_cameras_together(pose_set):
    built, frames_root = pose_set
    spec = FolderManifest(str(frames_root / "synthetic_train" / built.test_scenes[0]), N).load()
    order = spec.frame_ids[[3, 0, 5, 1]]
    view = spec.take(order.tolist())
    rows = [3, 0, 5, 1]
    assert view.frame_ids.tolist() == order.tolist()
    np.testing.assert_array_equal(view.frames, spec.frames[rows])
    np.testing.assert_array_equal(view.w2c_opencv, spec.w2c_opencv[rows])
    np.testing.assert_array_equal(view.K_pixels, spec.K_pixels[rows])
    assert view.provenance["order"] == order.tolist()
    np.testing.assert_array_equal(spec.take(spec.frame_ids.tolist()).frames, spec.frames)  # identity order
    absent = int(spec.frame_ids.max()) + 1
    with pytest.raises(FrameCountMismatchError, match=f"frame_ids \\[{absent}\\] are not among"):
        spec.take([int(spec.frame_ids[0]), absent])


def test_pose_records_show_the_selection_shuffled(pose_set):
    built, frames_root = pose_set
    train = [r for r in _jsonl(built.train) if r["question_type"] in POSE_QUESTION_TYPES]
    test = [r for r in _jsonl(built.test) if r["question_type"] in POSE_QUESTION_TYPES]
    bench = read_pose_benchmark(built.test_pose_benchmark)
    assert train and test and built.counts["train_pose"] == len(train) and built.counts["test_pose"] == len(test)
    assert sorted(str(r["id"]) for r in bench) == sorted(r["id"] for r in test)
    for r in train + test:
        selected = _selected(frames_root, r["scene_name"])
        assert sorted(r["frame_ids"]) == sorted(selected) and r["conversations"][0]["value"].startswith("<video>")
    orders = {}
    for r in train:
        orders.setdefault(r["scene_name"], set()).add(tuple(r["frame_ids"]))
    assert all(len(o) == 2 for o in orders.values())  # two shuffles of each scene's views
    assert any(tuple(r["frame_ids"]) != tuple(_selected(frames_root, r["scene_name"])) for r in bench)


def test_pose_benchmark_file_is_validated(tmp_path, pose_set):
    built, _ = pose_set
    record = _jsonl(built.test_pose_benchmark)[0]
    for bad, message in (({k: v for k, v in record.items() if k != "frame_ids"}, "frame_ids must be"),
                         ({**record, "frame_ids": [1, 1]}, "distinct ints"),
                         ({**record, "question_type": "object_rel_distance"}, "not a pose question type")):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InputFileError, match=message):
            read_pose_benchmark(path)


def _eval(built, frames_root, source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_pose", "--source",
                           str(source), "--backend", "oracle", "--scenes", str(built.root / "scenes"), "--frames",
                           "folder_manifest", "--frames-root", str(frames_root), "--num-frames", str(N), "--out",
                           str(out)], capture_output=True, text=True)


def _accuracy(out: Path) -> dict[str, float]:
    agg = FORMAT.aggregate(load_run(out).records, "official")
    return {q: v["score"] for q, v in agg["per_question_type"].items()}


def test_oracle_answers_follow_the_shown_order(pose_set, tmp_path):
    built, frames_root = pose_set
    done = _eval(built, frames_root, built.test_pose_benchmark, tmp_path / "shown")
    assert done.returncode == 0, done.stderr
    run = load_run(tmp_path / "shown")
    bench = {r["id"]: r for r in _jsonl(built.test_pose_benchmark)}
    assert len(run.records) == len(bench) and all(r["status"] == "ok" for r in run.records)
    assert all(r["frames"]["frame_ids"] == bench[r["id"]]["frame_ids"] for r in run.records)  # views as shown
    shown = _accuracy(tmp_path / "shown")
    assert set(shown) == set(POSE_QUESTION_TYPES) and min(shown.values()) >= 0.75, shown
    rolled = tmp_path / "rolled.jsonl"  # the same questions, the views arriving in another order
    rolled.write_text("".join(json.dumps({**r, "frame_ids": np.roll(r["frame_ids"], 1).tolist()}) + "\n"
                              for r in bench.values()))
    assert _eval(built, frames_root, rolled, tmp_path / "rolled").returncode == 0
    moved = _accuracy(tmp_path / "rolled")
    assert moved["pose_rel_direction"] == shown["pose_rel_direction"]  # its answer never names a position
    assert moved["pose_view_facing"] < shown["pose_view_facing"] - 0.3
    report = subprocess.run([sys.executable, "-m", "posevlm", "report", str(tmp_path / "shown"), "--out",
                             str(tmp_path / "report")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "table.md").read_text()
    assert "Pose views" in table and "Dir@view" in table


def test_bootstrap_weights_reproduce_the_columns():
    rng = np.random.default_rng(0)
    types = rng.choice(POSE_QUESTION_TYPES[:2], 40).tolist()  # one type absent: it leaves the macro
    scores = rng.integers(0, 2, 40).astype(float)
    columns = pose_columns(types, scores)
    counts = {q: types.count(q) for q in set(types)}
    means = np.array([scores[np.asarray(types) == q].mean() for q in sorted(counts)])
    weights = FORMAT.column_weights(counts)
    for column in FORMAT.compare_columns:
        w = weights[column]
        assert (w is None) == (columns[column] is None), column
        if w is not None:
            assert w @ means == pytest.approx(columns[column], abs=1e-12), column
    assert columns["pose_macro"] == pytest.approx(means.mean())


def test_vsibench_aggregate_refuses_pose_types():
    with pytest.raises(ConfigError, match="own task format"):
        aggregate_vsibench(["pose_view_facing", "object_counting"], [1.0, 0.5])


def test_synth_writes_pose_questions_for_a_selection(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "posevlm", *map(str, args)], capture_output=True, text=True)

    scans, sampled = tmp_path / "scans", tmp_path / "sampled"
    scan = ("--preset", "hard", "--frames", 200, "--size", "96x72")  # hard: more categories with one instance
    assert cli("synth", "--out", scans, "--scenes", 2, *scan).returncode == 0
    assert cli("sample", "--data", scans, "--strategy", "pose_fps", "--frames", 6, "--out", sampled).returncode == 0
    (slug,) = [p for p in sampled.iterdir() if not p.name.startswith("_")]
    out = tmp_path / "pose.jsonl"
    done = cli("synth", "--out", scans, "--scenes", 2, *scan, "--pose-benchmark", out, "--selection", slug,
               "--pose-orders", 2)
    assert done.returncode == 0, done.stderr
    records = read_pose_benchmark(out)
    assert records and {r["dataset"] for r in records} == {"scans"}
    for r in records:
        assert sorted(r["frame_ids"]) == sorted(_selected_in(slug / "scans", r["scene_name"]))
    orders = {}
    for r in records:
        orders.setdefault(r["scene_name"], set()).add(tuple(r["frame_ids"]))
    assert max(map(len, orders.values())) == 2 and len({r["id"] for r in records}) == len(records)  # 2 orders
    alone = cli("synth", "--out", scans, "--scenes", 2, "--pose-benchmark", out)
    assert alone.returncode == 2 and "--pose-benchmark and --selection go together" in alone.stderr
    missing = cli("synth", "--out", scans, "--scenes", 3, *scan, "--pose-benchmark", out, "--selection", slug)
    assert missing.returncode != 0 and "synth_0002 has no selection" in missing.stderr + missing.stdout


def _selected_in(folder: Path, scene: str) -> list[int]:
    return json.loads((folder / scene / "selected_frames.json").read_text())["selected_frames"]


def test_oracle_answers_each_record_from_its_own_views(pose_set):
    """A runner batch holds records of one scene whose views may differ (``FrameSpec.take`` allows a subset): each
    answer equals the answer to that record alone, whichever record comes first in the batch."""
    from posevlm.eval.backends.oracle import OracleBackend
    from posevlm.eval.benchmarks.synthetic_vsi import read_benchmark_jsonl
    from posevlm.eval.frames import record_frames

    built, frames_root = pose_set
    backend = OracleBackend({"scenes_root": str(built.root / "scenes")})
    bench = read_pose_benchmark(built.test_pose_benchmark)
    vsi = read_benchmark_jsonl(built.test_benchmark)
    checked = 0
    for scene in built.test_scenes:
        spec = FolderManifest(str(frames_root / "synthetic_train" / scene), N).load()
        first = {**next(r for r in vsi if r["scene_name"] == scene)}
        first["frame_ids"] = spec.frame_ids[:2].tolist()  # a record over two of the views only
        others = [r for r in bench + vsi if r["scene_name"] == scene and r["id"] != first["id"]]
        for r in others:
            alone = backend.generate([(r, "", record_frames(spec, r))])[0]["text"]
            after = backend.generate([(first, "", record_frames(spec, first)), (r, "", record_frames(spec, r))])
            assert after[1]["text"] == alone, (r["question_type"], r["id"])
            checked += 1
    assert checked > 0


def test_eval_config_refuses_views_questions_on_point_clouds(pose_set, tmp_path):
    """Pose questions name views of frames (they cannot be asked over a point cloud) and layout targets need the
    cloud: the mismatch is refused when the config is made, not mid-run."""
    from posevlm.eval.runner import EvalConfig, run_eval

    built, frames_root = pose_set
    oracle = {"backend": "oracle", "name": "oracle", "scenes_root": str(built.root / "scenes")}
    with pytest.raises(ConfigError, match="synthetic_pose.*folder_manifest"):
        run_eval(EvalConfig(benchmark={"name": "synthetic_pose", "source": str(built.test_pose_benchmark)},
                            model=oracle, frames={"source": "point_cloud", "root": str(built.root / "scenes"),
                                                  "num_frames": N}), tmp_path / "pose_on_cloud", shard="0/1")
    with pytest.raises(ConfigError, match="synthetic_layout.*point_cloud"):
        EvalConfig(benchmark={"name": "synthetic_layout", "source": str(tmp_path)}, model=oracle,
                   frames={"source": "folder_manifest", "root": str(frames_root), "num_frames": N})


def test_pose_benchmark_refuses_options_naming_views_not_shown(tmp_path, pose_set):
    """Options name views by 1-based position in ``frame_ids``: "frame 0" or a position past the last view is refused
    when the file is read (the oracle indexed past the presented cameras and failed the whole batch)."""
    built, _ = pose_set
    bench = _jsonl(built.test_pose_benchmark)
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bench))
    assert len(read_pose_benchmark(path)) == len(bench)  # every generated record names shown views only
    record = next(r for r in bench if r["question_type"] == "pose_view_facing")
    k = len(record["frame_ids"])
    for options in (["A. frame 1", f"B. frame {k + 1}"], ["A. frame 0", "B. frame 2"]):
        path.write_text(json.dumps({**record, "options": options, "ground_truth": "A"}) + "\n")
        with pytest.raises(InputFileError, match=f"options name frame .* 1..{k}"):
            read_pose_benchmark(path)


def test_each_scene_is_shuffled_its_own_way(pose_set):
    """The shown order is a per-scene shuffle: with one permutation for every scene of a seed, presented position k
    would be the same temporal rank in every scene, so position would again tell the temporal order (e.g. which
    views are adjacent in time, hence overlap) and frame index would not be uninformative."""
    from posevlm.eval.benchmarks.pose_tasks import presentation_order

    built, frames_root = pose_set
    records = [r for path in (built.train, built.test) for r in _jsonl(path)
               if r["question_type"] in POSE_QUESTION_TYPES]
    patterns: dict[str, set[tuple[int, ...]]] = {}
    for r in records:
        selected = _selected(frames_root, r["scene_name"])
        patterns.setdefault(r["scene_name"], set()).add(tuple(selected.index(f) for f in r["frame_ids"]))
    assert len(patterns) >= 2 and all(len(p) == 2 for p in patterns.values())  # two orders per scene
    assert len({frozenset(p) for p in patterns.values()}) == len(patterns)  # no two scenes shuffled alike
    orders = {tuple(presentation_order(8, 0, scene_name=f"s{i}").tolist()) for i in range(6)}
    assert len(orders) == 6 and all(sorted(o) == list(range(8)) for o in orders)
