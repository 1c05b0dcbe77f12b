import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_world import build_world  # noqa: E402


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """3 synthetic scans, their uniform 8-frame selection and a synthetic benchmark (see eval_world.py)."""
    return build_world(tmp_path_factory.mktemp("evalworld"))
