"""Experiment specs: grid expansion and run naming are deterministic and complete; every run carries its full
resolved training config; the baseline is required; shards partition the runs; errors name the key."""

from pathlib import Path

import pytest

from posevlm.errors import ConfigError
from posevlm.experiment import BASELINE, Variant, expand_runs, load_spec, select_shard, variant_name
from posevlm.experiment.runner import slurm_array_script

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "experiments" / "tiny.yaml"
CLUSTER = ROOT / "configs" / "experiments" / "qwen25vl_3b.yaml"


def _spec(tmp_path, grid: str, extra: str = "") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: t\ntrain_config: {ROOT / 'configs/train/tiny_synthetic.yaml'}\n{extra}grid:\n{grid}")
    return path


def test_expansion_is_deterministic_complete_and_named_from_the_grid(tmp_path):
    spec = load_spec(TINY, output_dir=tmp_path / "out")
    first, second = expand_runs(spec), expand_runs(load_spec(TINY, output_dir=tmp_path / "out"))
    assert [r.name for r in first] == [r.name for r in second]
    assert [r.config_hash for r in first] == [r.config_hash for r in second]
    g = spec.grid
    assert len(first) == len(g["sampler"]) * len(g["num_frames"]) * len(spec.variants) * len(g["seeds"]) == 36
    assert len({r.name for r in first}) == len(first) and [r.index for r in first] == list(range(36))
    assert first[0].name == "uniform-f2--thw--s0" and first[-1].name == "pose_fps-f4--thw+prope--s2"
    assert len({r.config_hash for r in first}) == 36  # every run differs from every other
    for r in first:  # the resolved config is the run's coordinates
        c = r.config
        assert (c["synthetic"]["sampler"], c["data"]["num_frames"], c["synthetic"]["num_frames"]) == \
            (r.sampler, r.num_frames, r.num_frames)
        assert (c["model"]["positions"], c["model"]["camera_attention"], c["model"]["pose_bias"]) == \
            (r.variant.positions, r.variant.camera_attention, r.variant.pose_bias)
        assert c["run"]["seed"] == r.seed and c["run"]["evaluate"] is True and c["run"]["max_steps"] == spec.overrides["run.max_steps"]
        assert Path(c["run"]["output_dir"]) == tmp_path / "out" / "runs" / r.name / "train"
        assert Path(c["data"]["dataset_root"]) == tmp_path / "out" / "data" / r.condition
    # runs of one condition share the data set, so the baseline and a variant answer the same questions
    assert len({r.data_root for r in first}) == 4


def test_product_grid_names_and_the_baseline_is_required(tmp_path):
    spec = load_spec(_spec(tmp_path, "  sampler: [uniform]\n  num_frames: [4]\n  positions: [null, pthw, phw]\n"
                                     "  camera_attention: [null, gta]\n  pose_bias: [none, alibi]\n  seeds: [3]\n"))
    names = [r.name for r in expand_runs(spec, resolve=False)]
    assert names[:4] == ["uniform-f4--thw--s3", "uniform-f4--thw+bias-alibi--s3", "uniform-f4--thw+gta--s3",
                         "uniform-f4--thw+gta+bias-alibi--s3"]
    assert len(names) == 12 and "uniform-f4--phw+gta+bias-alibi--s3" in names
    assert variant_name(BASELINE) == "thw" and variant_name(Variant("pthw", "prope", "learned")) == \
        "pthw+prope+bias-learned"
    with pytest.raises(ConfigError, match="lacks the stock THW baseline"):
        load_spec(_spec(tmp_path, "  sampler: [uniform]\n  num_frames: [4]\n  positions: [pthw]\n"))


def test_errors_name_every_bad_key_at_once(tmp_path):
    path = _spec(tmp_path, "  sampler: [uniform, nope]\n  num_frames: [4, -1]\n  colour: [red]\n",
                 extra="overrides: {run.seed: 3}\nbogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    text = str(err.value)
    for needle in ("unknown key 'bogus'", "grid.num_frames has [-1]", "unknown grid axis 'colour'",
                   "overrides.run.seed is set by the grid"):
        assert needle in text, text
    bad_override = _spec(tmp_path, "  sampler: [uniform]\n  num_frames: [4]\n", extra="overrides: {optim.lr: -1}\n")
    with pytest.raises(ConfigError, match=r"(?s)run uniform-f4--thw--s0 .*optim.lr=-1"):
        expand_runs(load_spec(bad_override))


def test_shards_partition_the_runs_and_index_picks_one(tmp_path):
    runs = expand_runs(load_spec(TINY, output_dir=tmp_path), resolve=False)
    shards = [select_shard(runs, f"{k}/5") for k in range(5)]
    assert sorted(r.index for s in shards for r in s) == list(range(len(runs)))
    assert select_shard(runs, index=7) == [runs[7]]
    for bad in ("5/5", "a/b", "1"):
        with pytest.raises(ConfigError, match="--shard"):
            select_shard(runs, bad)
    with pytest.raises(ConfigError, match="--index 36"):
        select_shard(runs, index=36)


def test_cluster_preset_shares_the_format_and_its_slurm_array_covers_every_run(tmp_path):
    spec = load_spec(CLUSTER)
    runs = expand_runs(spec)
    assert spec.launcher[0] == "torchrun"
    assert all(r.config["model"]["source"] == "Qwen/Qwen2.5-VL-3B-Instruct" for r in runs)
    script = slurm_array_script(spec, len(runs))
    assert f"#SBATCH --array=0-{len(runs) - 1}\n" in script and '--index "$SLURM_ARRAY_TASK_ID"' in script


def test_experiment_package_is_light_and_only_the_cli_imports_it():
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from layering import forbidden_static_imports, modules_loaded_by, static_imports

    loaded = modules_loaded_by("import posevlm.experiment.runner, posevlm.experiment.analysis")
    assert not {"torch", "transformers", "matplotlib"} & loaded
    assert forbidden_static_imports("posevlm.experiment", ("posevlm.cli", "posevlm.models")) == {}
    users = {f for pkg in ("posevlm.eval", "posevlm.train", "posevlm.models", "posevlm.sampling")
             for f, names in static_imports(pkg).items() if any(n.startswith("posevlm.experiment") for n in names)}
    assert users == set()


def test_cli_dry_run_status_and_slurm(tmp_path):
    from typer.testing import CliRunner

    from posevlm.cli import app

    out = tmp_path / "o"
    dry = CliRunner().invoke(app, ["experiment", "run", str(TINY), "--out", str(out), "--shard", "1/12", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["[1] uniform-f2--thw--s1", "[13] uniform-f4--pthw--s1",
                                                  "[25] pose_fps-f2--thw+prope--s1"]
    assert "-m posevlm train" in lines[0] and "model.positions=null" in lines[0] and not out.exists()
    status = CliRunner().invoke(app, ["experiment", "status", str(TINY), "--out", str(out)])
    assert status.exit_code == 0 and status.output.splitlines()[-1] == "36 runs: 36 pending"
    slurm = CliRunner().invoke(app, ["experiment", "slurm", str(CLUSTER), "--gpus", "2"])
    assert "#SBATCH --array=0-47" in slurm.output and "#SBATCH --gres=gpu:2" in slurm.output


def test_analysis_headlines_must_be_columns_of_their_task(tmp_path):
    """A headline the report cannot find (a typo) is refused when the spec is read, naming the key and the columns;
    it crashed the report (StopIteration) after every run had finished."""
    grid = "  sampler: [uniform]\n  num_frames: [4]\n"
    spec = load_spec(_spec(tmp_path, grid, extra="analysis: {headline: RelDir, pose_headline: pose_view_facing}\n"))
    assert (spec.analysis["headline"], spec.analysis["pose_headline"]) == ("RelDir", "pose_view_facing")
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, grid, extra="analysis: {headline: macro_all, pose_headline: pose_marco}\n"))
    text = str(err.value)
    assert "analysis.headline='macro_all'" in text and "macro_official_all" in text, text
    assert "analysis.pose_headline='pose_marco'" in text and "pose_macro" in text, text
