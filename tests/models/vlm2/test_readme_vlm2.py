"""The README's VLM² section: its configuration table names real VLM2Config fields, and its Python example runs with
MODEL a tiny local Qwen2.5-VL checkpoint (kept here rather than in tests/test_docs.py so the branch merges alone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TITLE = "VLM² (3D-aware fusion and memory)"


def readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start: end if end > 0 else None]


def test_readme_vlm2_table_and_example(tmp_path):
    pytest.importorskip("transformers")
    from spatial_mllm_tiny import tiny_models

    from posevlm.memory import VLM2Config

    section = readme_section(TITLE)
    fields = re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", section, flags=re.M)
    names = {n for pair in fields for n in pair if n}
    assert len(names) >= 10 and names <= set(VLM2Config().to_dict())
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    printed = []
    namespace = {"MODEL": str(tiny_models.save_tiny_qwen2_5_vl(tmp_path / "model")), "OUT": str(tmp_path / "vlm2"),
                 "print": printed.append}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert printed[0]["num_heads"] == 4 and printed[0]["working_size"] == 8 and printed[0]["episodic_size"] == 32
