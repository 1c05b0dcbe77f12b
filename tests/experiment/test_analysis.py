"""The experiment report: per seed it reproduces ``posevlm compare`` of the two eval runs number for number, for
each task (the pose questions with their own format, the VSI control); pooled over seeds it is ``compare_records``
on the (seed, question) pairs (means = the means of all pairs); verdicts say when a difference is not significant;
unfinished runs are left out and named."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from test_run_store import answers, eval_config, make_run, vsi_rows  # noqa: E402

from posevlm.eval.compare import compare_runs  # noqa: E402
from posevlm.eval.metrics import POSE_QUESTION_TYPES  # noqa: E402
from posevlm.eval.run_store import load_run  # noqa: E402
from posevlm.experiment import expand_runs, load_spec  # noqa: E402
from posevlm.experiment.analysis import experiment_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ACCURACY = {("thw", 0): 0.4, ("thw", 1): 0.5, ("pthw", 0): 0.9, ("pthw", 1): 0.95, ("thw+gta", 0): 0.4,
            ("thw+gta", 1): 0.5}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    path = root / "exp.yaml"
    path.write_text(f"name: t\ntrain_config: {ROOT / 'configs/train/tiny_synthetic.yaml'}\noutput_dir: {root / 'out'}\n"
                    "grid:\n  sampler: [uniform]\n  num_frames: [4]\n"
                    "  variants: [{}, {positions: pthw}, {camera_attention: gta}, {positions: phw}]\n"
                    "  seeds: [0, 1]\nanalysis: {bootstrap: 500, seed: 3}\n")
    spec = load_spec(path)
    rows = vsi_rows(3)
    pose_rows = [{**r, "id": 10_000 + i, "question_type": POSE_QUESTION_TYPES[i % 3]}
                 for i, r in enumerate(r for r in rows if r["options"])]
    pose_config = {**eval_config("uniform", 4), "benchmark": {"name": "synthetic_pose", "filters": {}}}
    for run in expand_runs(spec):
        if run.variant_name == "phw":
            continue  # never finished
        p = ACCURACY[(run.variant_name, run.seed)]
        same_as_base = run.variant_name == "thw+gta"  # identical answers to the baseline: delta 0
        seed = 10 * run.seed + len("thw" if same_as_base else run.variant_name)
        make_run(run.eval_dir, rows, answers(rows, p, seed=seed), config=eval_config("uniform", 4, model=run.name))
        # the pose task: the variants' advantage reversed, so the two tasks cannot be mixed up
        make_run(run.train_dir / "eval_pose", pose_rows, answers(pose_rows, 1.3 - p, seed=seed),
                 config={**pose_config, "model": {"backend": "hf", "name": run.name}})
        (run.run_dir / "done.json").write_text(json.dumps({"config_hash": run.config_hash}))
    files = experiment_report(spec, plot=True)
    return spec, files, json.loads(files["report.json"].read_text())


def _runs(spec):
    return {(r.variant_name, r.seed): r for r in expand_runs(spec, resolve=False)}


def test_per_seed_numbers_are_posevlm_compare_of_the_two_runs(experiment):
    spec, _, report = experiment
    runs = _runs(spec)
    assert report["tasks"] == ["pose", "vsi"]
    folder = {"pose": "eval_pose", "vsi": "eval"}
    for comp in report["comparisons"]:
        for seed, got in comp["per_seed"].items():
            a, b = runs[("thw", int(seed))], runs[(comp["variant"], int(seed))]
            ref = compare_runs(a.train_dir / folder[comp["task"]], b.train_dir / folder[comp["task"]],
                               n_bootstrap=500, seed=3).to_dict()
            assert got["columns"] == ref["columns"]  # means, deltas, CIs, McNemar: exactly
            assert got["n_paired"] == ref["n_paired"]
    pose = {c["column"] for c in next(c for c in report["comparisons"] if c["task"] == "pose")["pooled"]["columns"]}
    assert "pose_macro" in pose and "macro_official_all" not in pose


def test_pooled_comparison_is_over_the_seed_question_pairs(experiment):
    spec, _, report = experiment
    runs = _runs(spec)
    pthw = next(c for c in report["comparisons"] if c["variant"] == "pthw" and c["task"] == "vsi")
    col = {c["column"]: c for c in pthw["pooled"]["columns"]}["micro_all"]
    scores = {v: np.concatenate([[r["scores"]["official"]["score"] for r in load_run(runs[(v, s)].eval_dir).records]
                                 for s in (0, 1)]) for v in ("thw", "pthw")}
    assert pthw["pooled"]["n_paired"] == len(scores["thw"]) == 2 * len(load_run(runs[("thw", 0)].eval_dir).records)
    assert col["mean_a"] == pytest.approx(scores["thw"].mean(), abs=1e-12)
    assert col["mean_b"] == pytest.approx(scores["pthw"].mean(), abs=1e-12)
    assert col["ci_low"] > 0  # 0.45 -> 0.93 accuracy on every pair: clearly significant


def test_verdicts_and_unfinished_runs(experiment):
    _, files, report = experiment
    verdicts = {c["variant"]: c["verdict"] for c in report["comparisons"] if c["task"] == "vsi"}
    pose = {c["variant"]: c["verdict"] for c in report["comparisons"] if c["task"] == "pose"}
    assert "significant - the variant is better" in verdicts["pthw"]
    assert "pose_macro" in pose["pthw"] and "significant - the variant is worse" in pose["pthw"]
    assert "+0.0 points" in verdicts["thw+gta"] and "NOT significant" in verdicts["thw+gta"]
    assert "phw" not in verdicts and report["missing"] == ["uniform-f4--phw--s0", "uniform-f4--phw--s1"]
    md = files["report.md"].read_text()
    assert "Not finished (left out): uniform-f4--phw--s0, uniform-f4--phw--s1" in md
    assert verdicts["pthw"] in md and pose["pthw"] in md and md.index("# Task `pose`") < md.index("# Task `vsi`")
    assert files["score_vs_frames.png"].stat().st_size > 1000 and files["score_vs_frames_pose.png"].stat().st_size > 1000
