"""Third-party extensions through entry points, as a plug-in package would ship them: a sampler and a backend
defined outside posevlm, installed (a dist-info folder on the path), then used by `posevlm list`, `posevlm sample`
and `posevlm eval` without touching posevlm."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posevlm.eval.run_store import RunStore
from posevlm.sampling import read_manifest
from posevlm.scenes.synthetic import SynthConfig, generate_dataset

PLUGIN = '''
"""A posevlm plug-in: the 'every_other' sampler and the 'ground_truth' backend."""
import numpy as np

from posevlm.eval.backends.base import BackendSpec
from posevlm.sampling.selection import SamplerSpec, Selection


def _every_other(pool, k, *, seed, offset):
    order = np.arange(offset, pool.frame_ids.size, 2)[:k]
    return Selection.from_order(order, {"offset": offset})


SAMPLER = SamplerSpec("every_other", _every_other, {"offset": 1}, description="every second pool frame")


class GroundTruthBackend:
    def __init__(self, model):
        self.info = {"backend": "ground_truth", "config": dict(model)}

    def generate(self, batch, generation=None):
        return [{"text": record["ground_truth"], "video_grid_thw": None, "n_visual_tokens": None}
                for record, _, _ in batch]


BACKEND = BackendSpec("ground_truth", GroundTruthBackend, "answers the ground truth (a plug-in test)")
'''
ENTRY_POINTS = """
[posevlm.samplers]
every_other = posevlm_testplugin:SAMPLER
uniform = posevlm_testplugin:SAMPLER

[posevlm.backends]
ground_truth = posevlm_testplugin:BACKEND
"""


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    (root / "posevlm_testplugin").mkdir()
    (root / "posevlm_testplugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "posevlm_testplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: posevlm-testplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posevlm", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.slow
def test_list_shows_plugins_and_builtins_cannot_be_replaced(plugin_env):
    proc = cli(plugin_env, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    samplers = {e["name"]: e for e in table["samplers"]}
    assert samplers["every_other"]["origin"] == "entry point (posevlm-testplugin)"
    assert samplers["every_other"]["description"] == "every second pool frame"
    assert samplers["uniform"]["origin"] == "builtin"  # a plug-in cannot take a built-in name
    assert {e["name"] for e in table["backends"]} == {"dummy", "hf", "oracle", "points", "ground_truth"}
    assert {"thw", "pthw", "phw"} <= {e["name"] for e in table["positions"]}
    assert {e["name"] for e in table["rope3d"]} == {"mixed_rope3d", "rope3d", "rope3d_full"}
    assert {e["name"] for e in table["point-encoders"]} == {"voxel_mlp"}
    assert {e["name"] for e in table["models"]} == {"qwen2_5_vl", "qwen3_vl", "spatial_mllm", "spatial_mllm_qwen3",
                                                      "vlm2"}
    assert {e["name"] for e in table["train-families"]} == {"qwen2_5_vl", "qwen3_vl", "spatial_mllm", "vlm2",
                                                             "point_lm"}
    assert {e["name"] for e in table["task-formats"]} == {"vsibench", "sqa3d", "scanqa", "pose_views", "layout"}
    assert {"vsibench", "synthetic_vsi", "sqa3d", "scanqa"} <= {e["name"] for e in table["benchmarks"]}
    plain = cli(plugin_env, "list", "samplers")
    assert "every_other" in plain.stdout and "[entry point (posevlm-testplugin)]" in plain.stdout


@pytest.mark.slow
def test_a_plugin_sampler_and_backend_run_through_the_cli(plugin_env, tmp_path):
    data = tmp_path / "data"
    generate_dataset(data / "synthetic", 2, SynthConfig(seed=3, num_frames=30, image_hw=(48, 64), fps=3.0))
    sampled = cli(plugin_env, "sample", "--data", data, "--strategy", "every_other", "--frames", 4, "--param",
                  "offset=0", "--out", tmp_path / "sampled")
    assert sampled.returncode == 0, sampled.stdout + sampled.stderr
    (slug,) = [p for p in (tmp_path / "sampled").iterdir() if not p.name.startswith("_")]
    doc = read_manifest(slug / "synthetic" / "synth_0000")
    assert doc["strategy"] == {"name": "every_other", "params": {"offset": 0}}
    assert doc["selected_pool_indices"] == [0, 2, 4, 6]
    bad = cli(plugin_env, "sample", "--data", data, "--strategy", "every_other", "--param", "offest=1", "--out",
              tmp_path / "x")
    assert bad.returncode == 2 and "every_other does not take offest" in bad.stderr

    from posevlm.eval.benchmarks import generate_benchmark, write_benchmark_jsonl

    bench = write_benchmark_jsonl(generate_benchmark(sorted((data / "synthetic").iterdir()), seed=0,
                                                     dataset="synthetic", max_per_type=1), tmp_path / "b.jsonl")
    run = cli(plugin_env, "eval", "--benchmark", "synthetic_vsi", "--source", bench, "--backend", "ground_truth",
              "--frames", "folder_manifest", "--frames-root", slug, "--num-frames", 4, "--out", tmp_path / "run")
    assert run.returncode == 0, run.stdout + run.stderr
    records = RunStore(tmp_path / "run").scan().values()
    assert records and all(r["status"] == "ok" and r["scores"]["official"]["score"] == 1.0 for r in records)
    foreign = cli(plugin_env, "eval", "--benchmark", "synthetic_vsi", "--source", bench, "--backend", "ground_truth",
                  "--model", "x", "--frames-root", slug, "--out", tmp_path / "run2")
    assert foreign.returncode == 2 and "--model is an option of --backend hf" in foreign.stderr
