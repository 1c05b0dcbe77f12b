"""Docs stay true: the code blocks of docs/conventions.md run, and CI runs the README's test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_conventions_page_asserts_hold():
    text = (ROOT / "docs" / "conventions.md").read_text()
    blocks = [(m.start(1), m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]
    assert len(blocks) >= 5
    namespace: dict = {}
    for start, code in blocks:  # one shared namespace, tracebacks point at the page's own line numbers
        padded = "\n" * text.count("\n", 0, start) + code
        exec(compile(padded, "docs/conventions.md", "exec"), namespace)  # noqa: S102


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\w*\n(.*?)```", readme, flags=re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.split("#")[0].strip()]
    assert len(commands) == 2, "the README opens with exactly two commands: the demo and the tests"
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands[1] in ci


def _readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start: end if end > 0 else None]


def test_readme_inspector_commands_run():
    import shlex

    from typer.testing import CliRunner

    from posevlm.cli import app

    section = _readme_section("Pose-aware positions")
    lines = [ln.split("#")[0].strip() for ln in section.splitlines() if ln.startswith("posevlm inspect ")]
    assert len(lines) >= 2
    for line in lines:
        result = CliRunner().invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.output)
    assert "3128" in CliRunner().invoke(app, shlex.split(lines[0])[1:]).output


@pytest.mark.parametrize("title", ["Pose-aware positions", "Camera attention"])
def test_readme_python_examples_run(title, tmp_path, monkeypatch):
    """The README's Python examples, with MODEL a tiny local checkpoint and SCENE a sampled folder."""
    import sys

    pytest.importorskip("transformers")
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from tiny_models import save_tiny_qwen2_5_vl

    from posevlm.sampling import SamplingConfig
    from posevlm.sampling.runner import run_sampling
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generate_dataset(tmp_path / "data" / "synthetic", 1, SynthConfig(seed=1, num_frames=30, image_hw=(48, 64)))
    sampler = SamplingConfig("pose_fps", 16, {})
    assert run_sampling(tmp_path / "data", [sampler], tmp_path / "sampled").ok
    scene = next((tmp_path / "sampled" / sampler.slug).rglob("selected_frames.json")).parent
    blocks = re.findall(r"```python\n(.*?)```", _readme_section(title), flags=re.S)
    assert len(blocks) == 1
    printed = []
    namespace = {"MODEL": str(save_tiny_qwen2_5_vl(tmp_path / "model")), "SCENE": str(scene),
                 "print": printed.append}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert len(printed) == 1 and isinstance(printed[0], str)
    info = namespace["backend"].info
    assert info["positions"]["spec"]["pose"] == ("scalar" if title == "Pose-aware positions" else "none")
    if title == "Camera attention":
        assert info["camera_attention"]["mode"] == "prope" and info["camera_attention"]["bias"] == "alibi"


def test_readme_plugin_example_defines_working_entries():
    """The README's plug-in example: its sampler selects, its backend answers, through the spec types."""
    import numpy as np

    blocks = re.findall(r"```python\n(.*?)```", _readme_section("Extending posevlm"), flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    sampler, backend = namespace["SAMPLER"], namespace["BACKEND"]

    class Pool:
        frame_ids = np.arange(10) * 5

    got = sampler.select(Pool(), 3, seed=0, **{**sampler.defaults, "offset": 0})
    assert got.pool_indices.tolist() == [0, 2, 4] and sampler.problems({"offest": 1})
    record = {"ground_truth": "B"}
    assert backend.factory({}).generate([(record, "prompt", None)])[0]["text"] == "B"
    assert backend.model_config({"set": {"x": 1}}) == {"backend": "ground_truth", "name": "ground_truth", "x": 1}
