"""A small synthetic eval world shared by the runner tests: 3 scans, one uniform selection, a benchmark."""

import json
from pathlib import Path

from posevlm.eval.benchmarks import generate_benchmark, write_benchmark_jsonl
from posevlm.eval.run_store import RunStore
from posevlm.eval.runner import EvalConfig
from posevlm.sampling import SamplingConfig
from posevlm.sampling.runner import run_sampling
from posevlm.scenes.synthetic import SynthConfig, generate_dataset

N = 8
SAMPLER = SamplingConfig("uniform", N, {"flavour": "floor_pool"})


def build_world(root: Path) -> Path:
    scenes = generate_dataset(root / "data" / "synthetic", 3, SynthConfig(seed=2, num_frames=45, image_hw=(48, 64),
                                                                         fps=3.0))
    assert run_sampling(root / "data", [SAMPLER], root / "sampled").ok
    write_benchmark_jsonl(generate_benchmark(scenes, seed=0, dataset="synthetic", max_per_type=2),
                          root / "bench.jsonl")
    return root


def config(world: Path, backend: str = "oracle", frames_root: Path | None = None, source: Path | None = None,
           **model) -> EvalConfig:
    m = {"backend": backend, "name": backend, **model}
    if backend == "oracle":
        m["scenes_root"] = str(world / "data")
    return EvalConfig(benchmark={"name": "synthetic_vsi", "source": str(source or world / "bench.jsonl")}, model=m,
                      frames={"source": "folder_manifest", "root": str(frames_root or world / "sampled" / SAMPLER.slug),
                              "num_frames": N, "strategy": "uniform"})


def final(run_dir: Path) -> dict:
    return {i: (r["status"], r["raw_output"], json.dumps(r["scores"], sort_keys=True))
            for i, r in RunStore(run_dir).scan().items()}
