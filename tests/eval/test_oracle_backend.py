"""The runner's oracle backend: one observation per (scene, selected frames), answers and reports
identical to perceiving anew for every question (the behaviour before the cache)."""

import json
from pathlib import Path

import numpy as np
import pytest

import posevlm.eval.backends.oracle as oracle_module
from posevlm.errors import ConfigError
from posevlm.eval.backends.oracle import OracleBackend, OracleConfig, answer_oracle
from posevlm.eval.benchmarks import generate_benchmark, write_benchmark_jsonl
from posevlm.eval.errors import MissingInputError
from posevlm.eval.frames import FrameSpec
from posevlm.eval.perception import observe
from posevlm.eval.report import write_report
from posevlm.eval.run_store import RunStore
from posevlm.eval.runner import EvalConfig, run_eval
from posevlm.sampling import SamplingConfig
from posevlm.sampling.runner import run_sampling
from posevlm.scenes import load_scene
from posevlm.scenes.synthetic import SynthConfig, generate_dataset

N = 8
SAMPLERS = (SamplingConfig("uniform", N), SamplingConfig("pose_fps", N))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracleworld")
    synth = SynthConfig(seed=5, num_frames=45, image_hw=(48, 64), fps=3.0)
    scenes = generate_dataset(root / "data" / "synthetic", 3, synth)
    assert run_sampling(root / "data", list(SAMPLERS), root / "sampled").ok
    write_benchmark_jsonl(generate_benchmark(scenes, seed=0, dataset="synthetic", max_per_type=2),
                          root / "bench.jsonl")
    return root


def config(world: Path, sampler: SamplingConfig = SAMPLERS[0], batch_size: int = 1) -> EvalConfig:
    return EvalConfig(benchmark={"name": "synthetic_vsi", "source": str(world / "bench.jsonl")},
                      model={"backend": "oracle", "name": "oracle", "scenes_root": str(world / "data")},
                      frames={"source": "folder_manifest", "root": str(world / "sampled" / sampler.slug),
                              "num_frames": N, "strategy": sampler.strategy},
                      batch_size=batch_size)


@pytest.fixture
def observe_calls(monkeypatch):
    """Every (scene, distinct frame ids) the oracle perceives, in call order."""
    calls = []

    def counting(scene, frame_ids, config=OracleConfig()):
        calls.append((scene.name, tuple(np.unique(np.asarray(frame_ids, dtype=np.int64)).tolist())))
        return observe(scene, frame_ids, config)

    monkeypatch.setattr(oracle_module, "observe", counting)
    return calls


def _spec(frame_ids) -> FrameSpec:
    ids = np.asarray(frame_ids, dtype=np.int64)
    return FrameSpec(ids, np.zeros((len(ids), 2, 2, 3), np.uint8), None, None, None, {})


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.strategy)
def test_a_run_perceives_each_scene_and_frame_set_once(world, tmp_path, observe_calls, sampler):
    summary = run_eval(config(world, sampler), tmp_path / "run")
    records = RunStore(tmp_path / "run").scan().values()
    frame_sets = {(r["scene_name"], tuple(sorted(set(r["frames"]["frame_ids"])))) for r in records}
    assert summary.complete and summary.n_ok > 3 * len(frame_sets)
    assert sorted(observe_calls) == sorted(frame_sets)  # once each, never once per question


def test_report_is_identical_to_perceiving_for_every_question(world, tmp_path, observe_calls, monkeypatch):
    cached = run_eval(config(world), tmp_path / "cached")
    n_cached = len(observe_calls)
    monkeypatch.setattr(oracle_module, "OBSERVATION_CACHE_SIZE", 0)  # the behaviour before the cache
    uncached = run_eval(config(world), tmp_path / "uncached")
    assert len(observe_calls) - n_cached == uncached.n_ok > n_cached  # really one perception per question
    assert cached.run_id == uncached.run_id
    a, b = (write_report([tmp_path / name], tmp_path / f"report_{name}", plot=False)
            for name in ("cached", "uncached"))
    assert a["csv"].read_bytes() == b["csv"].read_bytes()
    assert a["markdown"].read_bytes() == b["markdown"].read_bytes()
    metrics = []
    for files, name in ((a, "cached"), (b, "uncached")):
        doc = json.loads(files["metrics"].read_text())
        doc.pop("provenance")
        for run in doc["runs"]:
            assert run.pop("run_dir") == str(tmp_path / name)
            run.pop("provenance")
        metrics.append(doc)
    assert metrics[0] == metrics[1]


def test_answers_equal_the_oracle_asked_per_record_whatever_the_batch_size(world, tmp_path):
    run_eval(config(world, SAMPLERS[1]), tmp_path / "b1")
    run_eval(config(world, SAMPLERS[1], batch_size=5), tmp_path / "b5")
    one, five = (RunStore(tmp_path / name).scan() for name in ("b1", "b5"))
    assert {i: r["raw_output"] for i, r in one.items()} == {i: r["raw_output"] for i, r in five.items()}
    bench = {r["id"]: r for r in map(json.loads, (world / "bench.jsonl").read_text().splitlines())}
    scenes = {}
    for i, r in one.items():
        scene = scenes.setdefault(r["scene_name"], load_scene(world / "data" / "synthetic" / r["scene_name"]))
        assert r["raw_output"] == answer_oracle(bench[i], scene, r["frames"]["frame_ids"])


def test_observation_cache_is_a_bounded_lru_keyed_by_the_distinct_frames(world):
    backend = OracleBackend({"backend": "oracle", "scenes_root": str(world / "data")}, cache_size=2)
    scene = load_scene(world / "data" / "synthetic" / "synth_0000")
    first = backend.observation("synthetic", scene, [9, 3, 3])
    assert backend.observation("synthetic", scene, np.array([3, 9])) is first  # order, repeats: same key
    assert (backend.n_observed, backend.n_reused) == (1, 1)
    fresh = observe(scene, [3, 9], OracleConfig())
    assert np.array_equal(first.frame_ids, fresh.frame_ids)
    assert np.array_equal(first.pixel_counts, fresh.pixel_counts)
    assert first.points.keys() == fresh.points.keys()
    assert all(np.array_equal(first.points[k], fresh.points[k]) for k in fresh.points)
    backend.observation("synthetic", scene, [4])
    backend.observation("synthetic", scene, [5])  # evicts {3, 9}, the least recently used
    assert len(backend._observations) == 2 and backend.n_observed == 3
    assert backend.observation("synthetic", scene, [3, 9]) is not first and backend.n_observed == 4
    backend.observation("synthetic", scene, [5])
    assert backend.n_observed == 4  # {5} was kept
    # the same frames of a scene with the same name in another dataset are another observation
    backend.observation("other", scene, [5])
    assert backend.n_observed == 5


def test_generate_answers_a_batch_from_one_observation_and_names_a_missing_scene(world):
    backend = OracleBackend({"backend": "oracle", "scenes_root": str(world / "data")})
    bench = [json.loads(line) for line in (world / "bench.jsonl").read_text().splitlines()]
    recs = [r for r in bench if r["scene_name"] == "synth_0001"]
    spec = _spec([0, 11, 22, 33, 44])
    out = backend.generate([(r, "prompt", spec) for r in recs])
    scene = load_scene(world / "data" / "synthetic" / "synth_0001")
    assert [o["text"] for o in out] == [answer_oracle(r, scene, spec.frame_ids) for r in recs]
    assert all(o["video_grid_thw"] is None and o["n_visual_tokens"] is None for o in out)
    assert (backend.n_observed, backend.info["backend"]) == (1, "oracle")
    with pytest.raises(MissingInputError, match="synth_0042"):
        backend.generate([({**recs[0], "scene_name": "synth_0042"}, "prompt", spec)])


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_cache_size_must_be_a_non_negative_int(bad):
    with pytest.raises(ConfigError, match="cache_size"):
        OracleBackend({"backend": "oracle"}, cache_size=bad)
