"""Helpers of the training-data tests (not a test module): the tiny checkpoints module, the test pixel budget and a
JSONL writer."""

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_tiny_models", Path(__file__).parents[1] / "eval" / "tiny_models.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)

#: Pixel budget of the tests: 48x64 synthetic frames become 56x56 (2x2 merged tokens per temporal patch).
PIXELS = {"min_pixels": 28 * 28 * 4, "max_pixels": 56 * 84}


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
