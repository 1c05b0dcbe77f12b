"""Shared inputs of the training-data tests: tiny Qwen2.5-VL / Qwen3-VL checkpoints and their processors, a small
synthetic training set (manifest variant, 4 frames per scene, cameras included) plus a 6-frame selection of the same
scans."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from train_world import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    return tiny_models.save_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen25"))


@pytest.fixture(scope="session")
def processor(tiny_qwen):
    from posevlm.train import load_train_processor

    return load_train_processor(tiny_qwen)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory):
    """The ``tiny`` preset's Qwen3-VL checkpoint (posevlm.train.tiny), as ``posevlm train`` builds it."""
    from posevlm.train.tiny import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen3") / "ckpt", "qwen3_vl")


@pytest.fixture(scope="session")
def processor3(tiny_qwen3):
    from posevlm.train import load_train_processor

    return load_train_processor(tiny_qwen3, "qwen3_vl")


@pytest.fixture(scope="session")
def train_world(tmp_path_factory):
    """DATASET_ROOT-style folder: ``synthetic_train_posed/`` (the registered layout, 3 scans, 4-frame uniform
    manifests) and ``sampled6/`` (6-frame uniform manifests of the same scans)."""
    from posevlm.sampling import SamplingConfig
    from posevlm.sampling.runner import run_sampling
    from posevlm.train import SyntheticTrainConfig, build_synthetic_training_set

    root = tmp_path_factory.mktemp("train_world")
    config = SyntheticTrainConfig(num_scenes=3, num_test_scenes=1, frames_per_scene=30, image_hw=(48, 64), fps=5.0,
                                  questions_per_type=1, media="manifest", num_frames=4)
    built = build_synthetic_training_set(root / "synthetic_train_posed", config)
    six = SamplingConfig("uniform", 6)
    assert run_sampling(root / "synthetic_train_posed" / "scenes", [six], root / "sampled6").ok
    return {"root": root, "built": built, "config": config, "six_slug": six.slug,
            "four_slug": json.loads((built.root / "synthetic_train.json").read_text())["sampling"]["slug"]}

