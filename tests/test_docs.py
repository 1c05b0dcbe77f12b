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


def test_readme_point_cloud_example_runs(tmp_path, monkeypatch):
    """The README's point-cloud example, with MODEL a tiny local Qwen2 checkpoint and SCENE a synthetic scan."""
    import sys

    transformers = pytest.importorskip("transformers")
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from tiny_models import QWEN3_VL_CHAT_TEMPLATE, build_tokenizer

    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generate_dataset(tmp_path / "synthetic", 1, SynthConfig(seed=1, num_frames=30, image_hw=(48, 64)))
    tokenizer = build_tokenizer(QWEN3_VL_CHAT_TEMPLATE)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    decoder = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=(len(tokenizer) + 15) // 16 * 16, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    decoder.save_pretrained(tmp_path / "qwen2")
    tokenizer.save_pretrained(tmp_path / "qwen2")
    blocks = re.findall(r"```python\n(.*?)```", _readme_section("Point clouds and MixedRoPE3D"), flags=re.S)
    assert len(blocks) == 1
    printed = []
    namespace = {"MODEL": str(tmp_path / "qwen2"), "SCENE": str(next((tmp_path / "synthetic").glob("synth_*"))),
                 "print": printed.append}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert len(printed) == 1 and isinstance(printed[0], str)
    model, inputs = namespace["model"], namespace["inputs"]
    assert model.decoder.config.posevlm_mixed_rope3d["rope3d"]["learned_mixing"] is True
    tokens = int(inputs["points"].token_counts[0])
    assert tokens > 10 and int((inputs["input_ids"] == model.config.point_pad_id).sum()) == tokens
    assert namespace["out"].shape[1] > inputs["input_ids"].shape[1]


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


def test_readme_spatial_mllm_example_runs(tmp_path, monkeypatch):
    """The Spatial-MLLM section's Python example, with BASE a tiny Qwen2.5-VL, SCENE a sampled folder, OUT new."""
    import sys

    pytest.importorskip("transformers")
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from tiny_models import save_tiny_qwen2_5_vl

    from posevlm.models.spatial_mllm import from_pretrained
    from posevlm.sampling import SamplingConfig
    from posevlm.sampling.runner import run_sampling
    from posevlm.scenes.synthetic import SynthConfig, generate_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generate_dataset(tmp_path / "data" / "synthetic", 1, SynthConfig(seed=1, num_frames=20, image_hw=(48, 64)))
    sampler = SamplingConfig("uniform", 8, {})
    assert run_sampling(tmp_path / "data", [sampler], tmp_path / "sampled").ok
    scene = next((tmp_path / "sampled" / sampler.slug).rglob("selected_frames.json")).parent
    blocks = re.findall(r"```python\n(.*?)```", _readme_section("Spatial-MLLM"), flags=re.S)
    assert len(blocks) == 1
    printed = []
    namespace = {"BASE": str(save_tiny_qwen2_5_vl(tmp_path / "base")), "SCENE": str(scene),
                 "OUT": str(tmp_path / "spatial"), "print": printed.append}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert len(printed) == 1 and isinstance(printed[0], str)
    again = from_pretrained(tmp_path / "spatial", device="cpu", local_files_only=True)
    assert again.config.camera_attention.mode == "prope" and again.processor is not None


def _readme_subsection(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"### {title}\n")
    ends = [i for i in (readme.find("\n## ", start + 1), readme.find("\n### ", start + 1)) if i > 0]
    return readme[start: min(ends) if ends else None]


def _shell_lines(section: str) -> list[str]:
    """The lines of a section's bash block, continuation lines joined, comments dropped."""
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1).replace("\\\n", " ")
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]


@pytest.mark.slow
def test_readme_sqa3d_scanqa_commands_run(tmp_path, monkeypatch):
    """The README's SQA3D / ScanQA commands, with the variables pointing at fixtures in the released formats,
    ScanNet scans sampled with posevlm, and a tiny local Qwen2.5-VL."""
    import os
    import shlex
    import sys

    pytest.importorskip("transformers")
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from qa_world import N, build_qa_world, frames_root
    from tiny_models import save_tiny_qwen2_5_vl
    from typer.testing import CliRunner

    import posevlm.eval.text_metrics as tm
    from posevlm.cli import app

    world = build_qa_world(tmp_path / "world")
    values = {"SQA3D": str(world / "sqa3d"), "SCANQA": str(world / "scanqa"), "FRAMES": str(frames_root(world)),
              "N": str(N), "MODEL": str(save_tiny_qwen2_5_vl(tmp_path / "model"))}
    monkeypatch.setattr(tm, "java_status", lambda timeout_s=30.0: (False, "no java in this test"))  # METEOR: ~15 s
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    lines = _shell_lines(_readme_subsection("SQA3D and ScanQA"))
    assigned = {ln.split("=", 1)[0] for ln in lines if re.fullmatch(r"[A-Z0-9_]+=\S+", ln)}
    assert assigned == set(values)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    commands = [ln for ln in lines if ln.startswith("posevlm ")]
    assert [c.split()[1] for c in commands] == ["eval", "eval", "eval", "report", "report", "compare"]
    outputs = []
    for command in commands:
        result = CliRunner().invoke(app, shlex.split(os.path.expandvars(command))[1:])
        assert result.exit_code == 0, (command, result.output)
        outputs.append(result.output)
    assert "# SQA3D results" in outputs[3] and "| EM@1 | EM-R | What |" in outputs[3]
    assert "# ScanQA results" in outputs[4] and "CIDEr" in outputs[4]
    assert "em_what" in outputs[5]


def test_readme_lmms_eval_command_is_valid():
    """The README's lmms-eval command names the entry point pyproject.toml declares, and its --model_args are
    valid plug-in arguments (a slug folder of 16 frames for $FRAMES)."""
    from posevlm.eval.lmms.requests import LmmsModelConfig

    (command,) = [ln for ln in _shell_lines(_readme_subsection("lmms-eval")) if ln.startswith("lmms-eval ")]
    args = command.split()
    assert args[args.index("--model") + 1] == "posevlm" and args[args.index("--tasks") + 1] == "vsibench"
    assert '[project.entry-points."lmms_eval.models"]\nposevlm = ' in (ROOT / "pyproject.toml").read_text()
    model_args = args[args.index("--model_args") + 1].replace("$MODEL", "Qwen/Qwen2.5-VL-3B-Instruct").replace(
        "$FRAMES", "runs/sampled/pose_fps-distance_center__pool-linspace128__n16__pair-none__seed0")
    config = LmmsModelConfig.from_model_args(dict(kv.split("=", 1) for kv in model_args.split(",")))
    assert config.num_frames == 16 and config.hf == {"positions": "pthw", "camera_attention": "prope"}
