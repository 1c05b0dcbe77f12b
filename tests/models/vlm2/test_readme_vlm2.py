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


@pytest.mark.slow
def test_readme_vlm2_train_and_eval_commands_run(tmp_path, monkeypatch):
    """The section's bash block as written (run from a folder whose configs/ is the repository's): the tiny VLM²
    config trains and evaluates itself, then the eval command answers the test split from its final checkpoint."""
    import json
    import os
    import shlex

    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from posevlm.cli import app
    from posevlm.eval.run_store import RunStore

    block = re.search(r"```bash\n(.*?)```", readme_section(TITLE), flags=re.S).group(1).replace("\\\n", " ")
    commands = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]
    assert [c.split()[:2] for c in commands] == [["posevlm", "train"], ["posevlm", "eval"]]
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for command in commands:
        result = CliRunner().invoke(app, shlex.split(os.path.expandvars(command))[1:])
        assert result.exit_code == 0, (command, result.output)
    summary = json.loads((tmp_path / "runs/train/tiny_vlm2_synthetic/summary.json").read_text())
    assert summary["global_step"] == 20 and summary["last_loss"] < summary["first_loss"]
    records = RunStore(tmp_path / "runs/eval/tiny_vlm2").scan()
    assert records and all(r["status"] == "ok" for r in records.values())
    (info,) = [i for starts in RunStore(tmp_path / "runs/eval/tiny_vlm2").backend_info().values() for i in starts]
    assert info["family"] == "vlm2" and info["model_class"] == "VLM2"
