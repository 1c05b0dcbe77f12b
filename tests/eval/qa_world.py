"""A small SQA3D / ScanQA world: two ScanNet scans in the SensReader layout, their frame selections, and
annotation files in the released formats (SQA3D balanced questions + annotations pair, ScanQA_v1.0_val.json).

The scans are the ScanNet loader fixture (tests/scenes/loaders/fixtures/scannet) without its tracking-failure
frame, copied under two scene ids; the questions are made up but follow the released field names and types.
"""

import json
import shutil
from pathlib import Path

from posevlm.sampling import SamplingConfig
from posevlm.sampling.runner import run_sampling

FIXTURE = Path(__file__).parents[1] / "scenes" / "loaders" / "fixtures" / "scannet" / "scene0000_00"
SCENES = ("scene0000_00", "scene0001_00")
N = 2
SAMPLER = SamplingConfig("uniform", N, {"flavour": "floor_pool"})

#: (question_id, scene, situation, question, answers) in SQA3D's shapes.
SQA3D = [
    (220602000000, "scene0000_00", "I am facing a window and there is a desk on my right.", "What color is the desk to my right?", ["brown"]),
    (220602000001, "scene0000_00", "I am sitting on the bed facing the door.", "Is the lamp on my left turned on?", ["no"]),
    (220602000002, "scene0000_00", "I just entered the room.", "How many chairs are in front of me?", ["two"]),
    (220602000003, "scene0001_00", "I am standing by the sink.", "Can I reach the towel without walking?", ["yes"]),
    (220602000004, "scene0001_00", "I am facing the mirror.", "Which direction should I go to leave the room?", ["left"]),
    (220602000005, "scene0001_00", "I am in front of the shower.", "Where is the trash can?", ["Brown bin by the door"]),
    (220602000006, "scene0001_00", "I turned around from the toilet.", "What is brown and in front of me?", ["brown cabinet"]),
]  # fmt: skip
#: (question_id, scene, question, answers, object ids, object names) in ScanQA's shapes.
SCANQA = [
    ("val-scene0000-0", "scene0000_00", "What color is the chair in the kitchen?", ["dark brown", "brown"], [4, 5], ["chair", "chair"]),
    ("val-scene0000-1", "scene0000_00", "What is placed on the table?", ["a laptop"], [9], ["laptop"]),
    ("val-scene0000-2", "scene0000_00", "Where is the tv located?", ["on the wall above the desk"], [2], ["tv"]),
    ("val-scene0001-0", "scene0001_00", "What is the shape of the table?", ["round", "circular"], [3], ["table"]),
    ("val-scene0001-1", "scene0001_00", "What color is the sofa?", ["brown"], [7], ["sofa"]),
]  # fmt: skip


def write_scannet(root: Path) -> Path:
    """``root/scannet/<scene>`` SensReader folders (three valid frames each); returns ``root``."""
    for scene in SCENES:
        target = root / "scannet" / scene
        shutil.copytree(FIXTURE, target)
        for f in target.glob("*/5.*"):  # the fixture's tracking failure (pose all -inf)
            f.unlink()
    return root


def sqa3d_documents(rows=SQA3D) -> tuple[dict, dict]:
    """(questions document, annotations document) of the released balanced files."""
    questions = {"info": {"description": "test fixture"}, "data_type": "scannetv2", "task_type": "sqa",
                 "questions": [{"alternative_situation": [f"{sit} (alt)"], "question": q, "question_id": qid,
                                "scene_id": scene, "situation": sit} for qid, scene, sit, q, _ in rows]}
    annotations = {"info": {"description": "test fixture"}, "annotations": [
        {"answer_type": "other", "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                             for k, a in enumerate(answers)],
         "position": {"x": 0.1, "y": -0.2, "z": 0}, "question_id": qid, "question_type": "N/A",
         "rotation": {"_w": 1.0, "_x": 0, "_y": 0, "_z": 0}, "scene_id": scene}
        for qid, scene, _, _, answers in rows]}
    return questions, annotations


def write_sqa3d(folder: Path, split: str = "test", rows=SQA3D) -> Path:
    """The released pair of ``split`` under ``folder/sqa_task/balanced``; returns ``folder``."""
    balanced = folder / "sqa_task" / "balanced"
    balanced.mkdir(parents=True, exist_ok=True)
    questions, annotations = sqa3d_documents(rows)
    (balanced / f"v1_balanced_questions_{split}_scannetv2.json").write_text(json.dumps(questions))
    (balanced / f"v1_balanced_sqa_annotations_{split}_scannetv2.json").write_text(json.dumps(annotations))
    return folder


def scanqa_items(rows=SCANQA) -> list[dict]:
    return [{"answers": answers, "object_ids": ids, "object_names": names, "question": q, "question_id": qid,
             "scene_id": scene} for qid, scene, q, answers, ids, names in rows]


def write_scanqa(folder: Path, split: str = "val", rows=SCANQA) -> Path:
    """``folder/ScanQA_v1.0_<split>.json``; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ScanQA_v1.0_{split}.json"
    path.write_text(json.dumps(scanqa_items(rows)))
    return path


def build_qa_world(root: Path) -> Path:
    write_scannet(root / "data")
    assert run_sampling(root / "data", [SAMPLER], root / "sampled").ok
    write_sqa3d(root / "sqa3d")
    write_scanqa(root / "scanqa")
    return root


def frames_root(world: Path) -> Path:
    return world / "sampled" / SAMPLER.slug
