"""Reports: metrics.json equals aggregate_scored on the same records, the paper's column order in
markdown and LaTeX, a definition for every CSV value, plots written, incomplete runs refused or
labelled PARTIAL everywhere, and the CLI verb."""

import csv
import io
import json

import pytest
import typer
from test_run_store import answers, eval_config, make_run, vsi_rows
from typer.testing import CliRunner

from posevlm.errors import ConfigError, InputFileError
from posevlm.eval import TASKS, aggregate_scored, score_record
from posevlm.eval.report import (
    COLUMN_HEADERS,
    MICRO_COLUMNS,
    REPORT_FILES,
    TABLE_COLUMNS,
    format_pct,
    latex_table,
    markdown_table,
    run_facets,
    run_label,
    write_report,
)

PAPER_ORDER = ["ObjCnt", "AbsDist", "ObjSz", "RoomSz", "RelDist", "RelDir", "RoutePl", "ApprOrd"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Six complete runs (2 samplers x 3 frame counts) and one with errors, on the same 68 rows."""
    root = tmp_path_factory.mktemp("sweep")
    rows = vsi_rows(2)
    runs = []
    for s, sampler in enumerate(("uniform", "pose_fps")):
        for k, n in enumerate((8, 16, 32)):
            outputs = answers(rows, 0.3 + 0.1 * k + 0.05 * s, seed=10 * s + k)
            runs.append(make_run(root / f"{sampler}{n}", rows, outputs, config=eval_config(sampler, n)))
    return root, rows, runs


def _table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if not ln.startswith("|---")]


def test_metrics_json_equals_aggregate_scored_on_the_same_records(tmp_path):
    rows = vsi_rows(3)
    outputs = answers(rows, 0.6, seed=3)
    errors = {rows[1]["id"]: "oom", rows[40]["id"]: "missing_input", rows[41]["id"]: "oom"}
    run = make_run(tmp_path / "run", rows, outputs, errors=errors)
    paths = write_report([run], mode="official", plot=False)
    assert paths["metrics"] == run / "report" / "metrics.json"
    doc = json.loads(paths["metrics"].read_text())
    entry = doc["runs"][0]
    scored = []
    for r, o in zip(rows, outputs):
        s = score_record(r, o)
        if r["id"] in errors:  # error records score 0 in every mode
            s["modes"] = {m: {**v, "score": 0.0} for m, v in s["modes"].items()}
        scored.append(s)
    for mode in ("official", "lenient"):
        got = json.loads(write_report([run], tmp_path / mode, mode=mode, plot=False)["metrics"].read_text())
        assert got["runs"][0]["aggregate"] == aggregate_scored(scored, mode=mode).to_dict()
    assert set(entry["aggregate"]["definitions"]) == set(entry["aggregate"]["columns"])
    assert entry["n_errors"] == 3 and entry["errors_by_kind"] == {"oom": 2, "missing_input": 1}
    assert entry["config"] == eval_config() and len(entry["run_id"]) == 16 and entry["partial"] is False
    assert sum(c["n"] for d in entry["counts"].values() for c in d.values()) == len(rows)
    assert sum(c["n_error"] for d in entry["counts"].values() for c in d.values()) == 3
    assert entry["parse_status"]["error"] == 3 and doc["format"] == "posevlm.eval_report"


def test_markdown_and_latex_follow_the_paper_column_order(sweep, tmp_path):
    _, _, runs = sweep
    paths = write_report(runs[:3], tmp_path, micro=True, plot=False)
    md = paths["markdown"].read_text()
    header, *body = _table_rows(md.split("## Per dataset")[0])
    assert TABLE_COLUMNS == ("macro_official_all", *PAPER_ORDER) and list(TASKS) == PAPER_ORDER
    assert header == ["Run", "Avg (official macro)", *PAPER_ORDER, "All (micro)", "Acc (micro)", "MRA (micro)", "n"]
    entries = json.loads(paths["metrics"].read_text())["runs"]
    for cells, e in zip(body, entries):
        assert cells[0] == e["label"] and cells[1:-1] == [format_pct(e["aggregate"]["columns"][c])
                                                          for c in (*TABLE_COLUMNS, *MICRO_COLUMNS)]
    assert "Avg (official macro) = macro_official_all: Official VSI-Bench overall" in md
    assert "RelDir: Official RelDir: unweighted mean" in md
    # per dataset: ApprOrd is absent on ARKitScenes and shown as "-"
    per_dataset = _table_rows(md.split("## Per dataset")[1])
    ark = [r for r in per_dataset if r[1] == "arkitscenes"]
    assert ark and all(r[2 + TABLE_COLUMNS.index("ApprOrd")] == "-" for r in ark)
    tex = paths["latex"].read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    head = next(ln for ln in tex.splitlines() if ln.startswith("Run &"))
    assert [c.strip() for c in head.removesuffix(r"\\").split("&")] == [
        "Run", "Avg (official macro)", *PAPER_ORDER, "All (micro)", "Acc (micro)", "MRA (micro)"]
    assert "% Avg (official macro) = macro_official_all" in tex
    plain = latex_table(entries)
    assert "micro" not in next(ln for ln in plain.splitlines() if ln.startswith("Run &"))
    assert "All (micro)" not in markdown_table(entries).splitlines()[2]


def test_values_are_fractions_printed_x100_with_two_decimals():
    assert format_pct(0.123456) == "12.35" and format_pct(None) == "-" and format_pct(1.0) == "100.00"


def test_long_csv_has_a_definition_for_every_value(sweep, tmp_path):
    _, _, runs = sweep
    paths = write_report(runs, tmp_path, plot=False)
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    entries = json.loads(paths["metrics"].read_text())["runs"]
    assert rows and list(rows[0]) == ["run_id", "label", "model", "sampler", "num_frames", "mode", "partial",
                                      "dataset", "column", "value", "n", "definition"]
    defs = entries[0]["aggregate"]["definitions"]
    assert all(r["definition"] == defs[r["column"]] and r["definition"] for r in rows)
    by_key = {(r["run_id"], r["dataset"], r["column"]): r for r in rows}
    for e in entries:
        for column, value in e["aggregate"]["columns"].items():
            assert float(by_key[(e["run_id"], "all", column)]["value"]) == value  # exact fraction
        for dataset, agg in e["aggregate"]["per_dataset"].items():
            present = {c for c, v in agg["columns"].items() if v is not None}
            assert {k[2] for k in by_key if k[:2] == (e["run_id"], dataset)} == present
    assert int(by_key[(entries[0]["run_id"], "all", "micro_all")]["n"]) == entries[0]["aggregate"]["n"]
    assert int(by_key[(entries[0]["run_id"], "all", "RelDir")]["n"]) == 3 * 2 * 2


def test_plot_is_written(sweep, tmp_path):
    _, _, runs = sweep
    path = write_report(runs, tmp_path)["plot"]
    assert path.name == REPORT_FILES["plot"] and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000  # 9 panels with two lines each


def test_incomplete_run_is_refused_or_labelled_partial_everywhere(tmp_path):
    rows = vsi_rows(2)
    run = make_run(tmp_path / "run", rows, answers(rows), skip={r["id"] for r in rows[:5]})
    with pytest.raises(InputFileError, match=r"incomplete: 5 of 38 .*--allow-partial"):
        write_report([run], tmp_path / "out", plot=False)
    paths = write_report([run], tmp_path / "out", allow_partial=True)
    doc = json.loads(paths["metrics"].read_text())
    entry = doc["runs"][0]
    assert doc["partial"] is True and entry["partial"] is True
    assert (entry["n_done"], entry["n_expected"], entry["n_missing"]) == (33, 38, 5)
    assert entry["missing_ids"] == [r["id"] for r in rows[:5]] and entry["warnings"][0].startswith("PARTIAL")
    md = paths["markdown"].read_text()
    assert md.startswith("# VSI-Bench results (PARTIAL)") and "(PARTIAL 33/38)" in md
    assert "PARTIAL" in paths["latex"].read_text().splitlines()[0] and "(PARTIAL 33/38)" in paths["latex"].read_text()
    assert {r["partial"] for r in csv.DictReader(io.StringIO(paths["csv"].read_text()))} == {"True"}


def test_duplicate_labels_get_the_run_id_and_several_runs_need_out(sweep, tmp_path):
    root, rows, runs = sweep
    twin = make_run(root / "twin", rows, answers(rows, 0.9), config={**eval_config(), "seed": 1})
    with pytest.raises(ConfigError, match="explicit --out"):
        write_report([runs[1], twin])
    doc = json.loads(write_report([runs[1], twin], tmp_path, plot=False)["metrics"].read_text())
    labels = [e["label"] for e in doc["runs"]]
    assert labels[0].startswith("uniform 16f tiny-qwen [") and labels[0] != labels[1]


def test_unscored_mode_is_a_config_error(sweep, tmp_path):
    with pytest.raises(ConfigError, match="mode 'strict' was not scored"):
        write_report([sweep[2][0]], tmp_path, mode="strict")


def test_cli_report(sweep, tmp_path):
    from posevlm.cli.report import report

    app = typer.Typer()
    app.command()(report)
    app.command("noop")(lambda: None)
    _, _, runs = sweep
    result = CliRunner().invoke(app, ["report", *map(str, runs[:2]), "--out", str(tmp_path), "--micro", "--no-plot"])
    assert result.exit_code == 0, result.output
    assert "| Run | Avg (official macro) | ObjCnt |" in result.output and "wrote" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(REPORT_FILES.values()) - {REPORT_FILES["plot"]})
    assert report.__doc__.rstrip().splitlines()[-1].strip().startswith("posevlm report ")
    assert report.__doc__.count("        posevlm report ") == 2
    assert COLUMN_HEADERS["macro_official_all"] == "Avg (official macro)"


def test_run_facets_and_label():
    cfg = eval_config("pose_fps-start_medoid", 32, "Qwen2.5-VL-3B")
    assert run_facets(cfg) == {"model": "Qwen2.5-VL-3B", "sampler": "pose_fps-start_medoid__pool-linspace128"
                               "__pair-none__seed0", "num_frames": 32}
    assert run_label(cfg) == "pose_fps-start_medoid 32f Qwen2.5-VL-3B"
    assert run_label({"frames": {"strategy": "uniform", "num_frames": 8}, "model": {"path": "/ckpt/sft-135k/"}}) \
        == "uniform 8f sft-135k"
    assert run_label({"frames": {"source": "mp4_uniform", "rule": "round_full", "num_frames": 16},
                      "model": {"backend": "hf"}}) == "mp4_uniform-round_full 16f hf"
    assert run_label({}) == "run"


def test_plot_panels_are_the_present_tasks_and_a_paired_delta_panel(tmp_path):
    from posevlm.eval.report import plot_columns, score_vs_frames_figure

    rows = [r for r in vsi_rows(2) if r["question_type"] not in ("route_planning", "obj_appearance_order")]
    runs = [make_run(tmp_path / f"{s}{n}", rows, answers(rows, 0.4 + 0.1 * k, seed=k), config=eval_config(s, n))
            for k, (s, n) in enumerate([("uniform", 8), ("uniform", 16), ("pose_fps", 8), ("pose_fps", 16)])]
    paths = write_report(runs, tmp_path / "report")
    doc = json.loads(paths["metrics"].read_text())
    entries = doc["runs"]
    assert plot_columns(entries) == tuple(c for c in TABLE_COLUMNS if c not in ("RoutePl", "ApprOrd"))
    fig = score_vs_frames_figure(entries, deltas=doc["paired_deltas"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [COLUMN_HEADERS[c] for c in plot_columns(entries)] + [
        "Avg (official macro): paired delta vs uniform"]
    deltas = doc["paired_deltas"]
    assert [(d["sampler"].split("__")[0], d["num_frames"]) for d in deltas] == [("pose_fps", 8), ("pose_fps", 16)]
    assert "## Paired deltas vs uniform" in paths["markdown"].read_text()
    for e in entries:  # every present column has a band around its value; absent ones have none
        for c in TABLE_COLUMNS:
            band, value = e["bootstrap"]["columns"][c], e["aggregate"]["columns"][c]
            assert (band is None) == (value is None)
            if band is not None:
                assert band[0] - 1e-12 <= value <= band[1] + 1e-12


def test_paired_delta_band_is_compares_bootstrap_ci(tmp_path):
    from posevlm.eval.bands import paired_delta_band
    from posevlm.eval.compare import compare_records
    from posevlm.eval.run_store import load_run

    rows = vsi_rows(3)
    a = load_run(make_run(tmp_path / "a", rows, answers(rows, 0.5, seed=1)))
    b = load_run(make_run(tmp_path / "b", rows, answers(rows, 0.6, seed=2)))
    band = paired_delta_band(a.records, b.records, ["macro_official_all", "RelDir"], n_bootstrap=500, seed=4)
    ref = compare_records(a.records, b.records, n_bootstrap=500, seed=4)
    for c in ("macro_official_all", "RelDir"):
        assert band[c] == (ref.column(c).ci_low, ref.column(c).ci_high)
    other = load_run(make_run(tmp_path / "c", rows[:-1], answers(rows[:-1], 0.6, seed=2)))
    assert paired_delta_band(a.records, other.records, ["macro_official_all"]) is None  # not the same questions
