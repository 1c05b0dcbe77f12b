"""Seeds and determinism switches (two seeded runs of a tiny Qwen2.5-VL forward / backward / update are bitwise
equal, another seed is not) and the run provenance block (keys, git hash and dirty flag, versions)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.train.determinism import CUBLAS_WORKSPACE, git_state, run_provenance, seed_everything  # noqa: E402

from models_tiny_batches import make_batch, tiny_models  # noqa: E402


@pytest.fixture()
def torch_switches(monkeypatch):
    """Restore the process-wide switches seed_everything changes."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("FLASH_ATTENTION_DETERMINISTIC", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:]


@pytest.fixture(scope="module")
def qwen_config(tmp_path_factory):
    path = tiny_models.save_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_det") / "q")
    return transformers.AutoConfig.from_pretrained(path)


def seeded_run(config, seed):
    """Seed, build a randomly initialised tiny Qwen2.5-VL, draw a video batch, run 3 SGD steps with dropout on
    the merger input (a random op in the step); returns the losses, the last gradients and the weights."""
    seed_everything(seed, deterministic=True)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config).train()
    dropout = torch.nn.Dropout(0.3)
    model.model.visual.merger.register_forward_pre_hook(lambda m, args: (dropout(args[0]),))
    kwargs, _ = make_batch(model, "qwen2_5", [(4, (2, 4, 4), 3), (2, (1, 4, 6), 2)], seed=random.randrange(1000))
    kwargs["labels"] = kwargs["input_ids"].masked_fill(kwargs["attention_mask"] == 0, -100)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = model(**kwargs).loss
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return torch.stack(losses), grads, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_two_seeded_runs_are_bitwise_equal(qwen_config, torch_switches):
    a, b, c = seeded_run(qwen_config, 3), seeded_run(qwen_config, 3), seeded_run(qwen_config, 4)
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][n], b[1][n]) for n in a[1])
    assert all(torch.equal(a[2][n], b[2][n]) for n in a[2])
    assert not torch.equal(a[0], c[0])  # the seed matters: the comparison is not vacuous
    assert len(a[1]) > 50  # vision tower, merger and LLM all got gradients


def test_seed_everything_sets_every_rng_and_the_switches(torch_switches):
    record = seed_everything(11, deterministic=True)
    draws = (random.random(), np.random.rand(), torch.rand(2))
    assert record == {"seed": 11, "deterministic": True, "use_deterministic_algorithms": True,
                      "cudnn_deterministic": True, "cudnn_benchmark": False,
                      "cublas_workspace_config": CUBLAS_WORKSPACE}
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    assert os.environ["FLASH_ATTENTION_DETERMINISTIC"] == "1"
    seed_everything(11)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])
    assert not torch.are_deterministic_algorithms_enabled()  # deterministic=False switches it back off
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    assert seed_everything(0, True)["cublas_workspace_config"] == ":16:8"  # a launcher's choice is kept
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(ConfigError, match="an integer in"):
            seed_everything(bad)


def test_run_provenance_keys_and_values():
    block = run_provenance(seed=5)
    keys = {"posevlm", "git", "git_dirty", "git_branch", "python", "torch", "transformers", "numpy", "accelerate",
            "peft", "deepspeed", "date", "hostname", "platform", "argv", "launch_env", "cuda", "seed"}
    assert keys <= set(block)
    assert json.loads(json.dumps(block)) == block  # JSON-ready
    assert block["argv"] == sys.argv and block["seed"] == 5
    for dist in ("torch", "transformers", "accelerate", "peft"):
        assert block[dist] == metadata.version(dist)
    assert block["cuda"]["available"] == torch.cuda.is_available()
    assert len(block["cuda"]["devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    import posevlm

    root = Path(posevlm.__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert block["git"] == head.stdout.strip() and isinstance(block["git_dirty"], bool)


def test_git_state_sees_commits_and_edits(tmp_path):
    assert git_state(tmp_path) == {"git": None, "git_dirty": None, "git_branch": None}
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True,
                              env=env).stdout.strip()

    git("init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-qm", "first")
    (tmp_path / "untracked.txt").write_text("ignored")
    assert git_state(tmp_path) == {"git": git("rev-parse", "HEAD"), "git_dirty": False, "git_branch": "main"}
    (tmp_path / "a.txt").write_text("two")
    assert git_state(tmp_path)["git_dirty"] is True
