import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_world import build_world  # noqa: E402


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """3 synthetic scans, their uniform 8-frame selection and a synthetic benchmark (see eval_world.py)."""
    return build_world(tmp_path_factory.mktemp("evalworld"))


@pytest.fixture(scope="session")
def point_world(tmp_path_factory):
    """2 synthetic scans (``data/synthetic/``) and their point-cloud task folder (``points/``: clouds, layout.jsonl,
    point_qa.jsonl; 8 frames per cloud, 5 cm grid)."""
    from posevlm.eval.layout_data import write_point_task_data
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("pointworld")
    scenes = generate_dataset(root / "data" / "synthetic", 2, SynthConfig(seed=2, num_frames=24, image_hw=(48, 64)))
    write_point_task_data(scenes, root / "points", num_frames=8, grid_size=0.05, max_per_type=2)
    return root
