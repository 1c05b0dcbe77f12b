"""``posevlm train`` + ``posevlm eval`` of the tiny point-cloud LM as the README launches them (subprocesses, CPU
fp32, one thread): the README's commands run in order (training shortened by overrides, generation capped), the
loss falls, the final checkpoint is a PointCloudLM that ``posevlm eval --backend points`` evaluates on the held-out
scans' ``synthetic_layout`` and ``synthetic_point_qa``, and ``posevlm report`` tabulates the layout run."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from posevlm.eval.run_store import RunStore
from posevlm.train.config import load_train_config
from posevlm.train.trainer import LossLog

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "tiny_point_lm_synthetic.yaml"
#: what the test adds to the README's commands: a short run, capped generation
SHORT = {"train": ["run.max_steps=24", "run.save_steps=12", "run.batch_size=2", "run.logging_steps=1"],
         "eval": ["--backend-set", "max_new_tokens=48"], "report": []}


def _readme_commands() -> tuple[dict[str, str], list[str]]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Point clouds and MixedRoPE3D\n")
    section = readme[start: readme.index("\n## ", start + 1)]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [ln.split("#")[0].strip() for ln in block.replace("\\\n", " ").splitlines()]
    lines = [ln for ln in lines if ln]
    env = dict(ln.split("=", 1) for ln in lines if re.fullmatch(r"[A-Z_]+=\S+", ln))
    return env, [ln for ln in lines if ln.startswith("posevlm ")]


def test_shipped_config_is_the_point_lm_family():
    config = load_train_config(CONFIG)
    assert config.model.family == "point_lm" and config.model.source == "tiny"
    assert config.model.point_lm["rope3d"] == "mixed_rope3d" and config.data.datasets == "synthetic_train_points"


@pytest.mark.slow
def test_point_lm_refuses_run_evaluate():
    """run.evaluate is the video evaluation (hf backend on the synthetic VSI / pose test split): a PointCloudLM is
    refused when the config is read, not after training when the hf backend cannot load it."""
    from posevlm.errors import ConfigError

    with pytest.raises(ConfigError, match="run.evaluate.*point_lm.*--backend points"):
        load_train_config(CONFIG, ["run.evaluate=true", "synthetic.media=manifest"])


def test_readme_point_lm_train_and_eval_commands_run(tmp_path):
    env_vars, commands = _readme_commands()
    assert [c.split()[1] for c in commands] == ["train", "eval", "eval", "report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           **env_vars}
    for command in commands:
        args = shlex.split(os.path.expandvars(command.replace("$T", env_vars["T"])))
        args = [str(ROOT / a) if a.startswith("configs/") else a for a in args]
        proc = subprocess.run([sys.executable, "-m", *args, *SHORT[args[1]]], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=900)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
    out = tmp_path / "runs" / "train" / "tiny_point_lm_synthetic"
    losses = [e["loss"] for e in LossLog.read(out)]
    assert len(losses) == 24 and sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["family"] == "point_lm" and record["model"]["mixed_rope3d"] is not None
    layout = RunStore(tmp_path / "runs" / "point_layout").scan().values()
    assert len(layout) == 2 and all(r["status"] == "ok" and r["kind"] == "layout" for r in layout)
    qa = RunStore(tmp_path / "runs" / "point_qa").scan().values()
    assert qa and all(r["status"] == "ok" and r["frames"]["n_visual_tokens"] > 10 for r in qa)
    assert "Box F1@.25" in (tmp_path / "runs" / "point_layout" / "report" / "table.md").read_text()
