"""The synthetic training set: split by scene (train and test share no scene), scenes numbered from
TRAIN_START_INDEX (disjoint from the demo benchmark's), records in the training format under the registered
dataset names, the test split also as a synthetic_vsi benchmark with the same questions, and a rebuild reuses
everything on disk."""

import json

import pytest

from posevlm.errors import ConfigError
from posevlm.train import TRAIN_START_INDEX, SyntheticTrainConfig, build_synthetic_training_set, load_dataset


def test_split_by_scene_and_disjoint_from_the_demo(train_world):
    built, config = train_world["built"], train_world["config"]
    assert set(built.train_scenes).isdisjoint(built.test_scenes)
    assert sorted(built.train_scenes + built.test_scenes) == [f"synth_{i}" for i in range(TRAIN_START_INDEX,
                                                                                        TRAIN_START_INDEX + 3)]
    train = load_dataset("synthetic_train_posed", root=train_world["root"])
    test = load_dataset("synthetic_test_posed", root=train_world["root"])
    assert len(train) == built.counts["train"] and len(test) == built.counts["test"]
    assert {i.record.extra["scene_name"] for i in train} == set(built.train_scenes)
    assert {i.record.extra["scene_name"] for i in test} == set(built.test_scenes)
    assert all(i.record.videos[0].endswith(i.record.extra["scene_name"]) for i in train + test)  # manifest folders
    bench = [json.loads(line) for line in built.test_benchmark.read_text().splitlines()]
    assert sorted(str(q["id"]) for q in bench) == sorted(i.record.sample_id for i in test)
    assert {q["dataset"] for q in bench} == {"synthetic_train"}
    with pytest.raises(ConfigError, match="share indices"):
        SyntheticTrainConfig(start_index=0)
    with pytest.raises(ConfigError, match="both splits need a scene"):
        SyntheticTrainConfig(num_scenes=2, num_test_scenes=2)


def test_assistant_turn_is_the_exact_answer(train_world):
    for item in load_dataset("synthetic_train_posed", root=train_world["root"]):
        user, assistant = item.record.turns
        assert user.role == "user" and user.text.startswith("<video>")
        assert assistant.role == "assistant" and assistant.text  # the ground truth as text


def test_a_rebuild_reuses_what_is_on_disk(train_world):
    built, config = train_world["built"], train_world["config"]
    before = {p: p.stat().st_mtime_ns for p in (built.root / "scenes").rglob("*") if p.is_file()}
    again = build_synthetic_training_set(built.root, config)
    assert again.counts == built.counts and again.train.read_text() == built.train.read_text()
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_pose_questions_need_manifests_and_a_non_empty_test_split(tmp_path):
    with pytest.raises(ConfigError, match="media=manifest"):
        SyntheticTrainConfig(pose_questions_per_type=2)  # video media: no selection, no cameras per view
    config = SyntheticTrainConfig(num_scenes=2, num_test_scenes=1, frames_per_scene=4, image_hw=(24, 32), fps=5.0,
                                  questions_per_type=1, media="manifest", num_frames=2, pose_questions_per_type=1)
    with pytest.raises(ConfigError, match="no pose question passed the margins"):  # 4-frame scans: views too alike
        build_synthetic_training_set(tmp_path / "set", config)
    assert not (tmp_path / "set" / "test_pose_benchmark.jsonl").exists()
