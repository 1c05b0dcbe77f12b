"""The demo recipe at a tiny size: presets keep their scans apart, the report carries bands and paired deltas."""

import json

import pytest

from posevlm.errors import ConfigError
from posevlm.eval.benchmarks import read_benchmark_jsonl
from posevlm.eval.demo import DemoConfig, run_demo


def test_demo_config_lists_every_problem_and_tags_what_made_it():
    with pytest.raises(ConfigError) as err:
        DemoConfig(preset="harder", scenes=0, questions_per_task=0, frames_per_scene=4)
    assert all(k in str(err.value) for k in ("preset", "scenes", "questions_per_task", "frames_per_scene"))
    assert DemoConfig().preset == "hard" and DemoConfig().num_frames == 600 and DemoConfig().dataset == "synthetic_hard"
    assert DemoConfig(preset="standard").num_frames == 300
    assert DemoConfig().tag != DemoConfig(questions_per_task=4).tag != DemoConfig(preset="standard").tag


def test_tiny_hard_demo_writes_a_report_with_bands_and_paired_deltas(tmp_path):
    cfg = DemoConfig(scenes=1, frames_per_scene=40, size_hw=(48, 64), strategies=("uniform", "pose_fps"),
                     frame_counts=(8,), questions_per_task=2)
    report = run_demo(tmp_path, cfg, log=lambda _: None)
    assert (tmp_path / "data_hard" / "synthetic_hard" / "synth_0000" / "scene.json").is_file()
    records = read_benchmark_jsonl(tmp_path / f"benchmark_{cfg.tag}.jsonl")
    assert {r["dataset"] for r in records} == {"synthetic_hard"}
    doc = json.loads((report / "metrics.json").read_text())
    assert [d["sampler"].split("__")[0] for d in doc["paired_deltas"]] == ["pose_fps"]
    for run in doc["runs"]:
        avg = run["aggregate"]["columns"]["macro_official_all"]
        lo, hi = run["bootstrap"]["columns"]["macro_official_all"]
        assert lo - 1e-12 <= avg <= hi + 1e-12  # (the band is computed as w @ per-type means: ulp apart)
    assert "Paired deltas vs uniform" in (report / "table.md").read_text()
