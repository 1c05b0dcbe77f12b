"""Reports of finished eval runs: ``metrics.json``, markdown and LaTeX tables, a long CSV, a plot.

Every number is a fraction in [0, 1] internally and in ``metrics.json`` / the CSV; tables print
×100 with 2 decimals; ``-`` = task absent (e.g. ApprOrd on ARKitScenes). The headline column is
``macro_official_all`` ("Avg (official macro)", the official VSI-Bench overall); its definition is
printed under every table, micro columns only on request and always named. Error records count as
0 (strict, as the official number over the full expected set would) and are listed per kind. A run
with missing samples is refused unless ``allow_partial``; then every artefact says PARTIAL.

Files written to the output directory (``REPORT_FILES``): ``metrics.json``, ``table.md``,
``table.tex`` (booktabs), ``results_long.csv`` (one value per row with its definition) and
``score_vs_frames.png`` (x = frames, one line per sampler with its 95% bootstrap band; panels: official
average and the tasks present in some run, absent tasks left out; with several samplers over the same
questions, a last panel of paired deltas of the average against a reference sampler, ``uniform`` when
present). Bands (:mod:`posevlm.eval.bands`, stratified by question type, seeded, paired across runs over
the same ids) are stored per run in ``metrics.json`` under ``bootstrap`` and the paired deltas under
``paired_deltas``; ``table.md`` lists the deltas under the per-dataset table.

The columns, headers, notes and aggregate come from the runs' task format (``task_format.py``): the above
is the ``vsibench`` format; SQA3D / ScanQA reports show EM@1, EM-R and their per-prefix or caption columns
(``open_qa.py``) and have no plot, bands or paired deltas. All runs of one report share a format.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError
from posevlm.eval.aggregate import TASKS
from posevlm.eval.metrics import MCA_QUESTION_TYPES, NA_QUESTION_TYPES
from posevlm.eval.run_store import RunData, load_run

__all__ = [
    "REPORT_FORMAT", "REPORT_SCHEMA_VERSION", "REPORT_FILES", "TABLE_COLUMNS", "MICRO_COLUMNS",
    "COLUMN_HEADERS", "CSV_FIELDS", "run_facets", "run_label", "column_question_types", "format_pct",
    "run_metrics", "markdown_table", "latex_table", "long_rows", "plot_columns", "plot_score_vs_frames",
    "score_vs_frames_figure",
    "paired_deltas", "deltas_markdown", "write_report",
]  # fmt: skip

REPORT_FORMAT = "posevlm.eval_report"
REPORT_SCHEMA_VERSION = 1
REPORT_FILES = {"metrics": "metrics.json", "markdown": "table.md", "latex": "table.tex",
                "csv": "results_long.csv", "plot": "score_vs_frames.png"}
#: The paper's column order: official average, then ObjCnt … ApprOrd.
TABLE_COLUMNS: tuple[str, ...] = ("macro_official_all", *TASKS)
MICRO_COLUMNS: tuple[str, ...] = ("micro_all", "micro_acc", "micro_mra")
COLUMN_HEADERS: dict[str, str] = {"macro_official_all": "Avg (official macro)", "micro_all": "All (micro)",
                                  "micro_acc": "Acc (micro)", "micro_mra": "MRA (micro)",
                                  **{task: task for task in TASKS}}
CSV_FIELDS = ("run_id", "label", "model", "sampler", "num_frames", "mode", "partial", "dataset", "column",
              "value", "n", "definition")


def run_facets(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{model, sampler, num_frames}`` read from an eval config (None when absent).

    sampler: ``frames.strategy`` or ``frames.sampler`` (a slug with its ``__n<N>`` part removed, or a
    sampling-config dict's ``strategy``), else ``<frames.source>-<frames.rule>``.
    model: ``model.name`` | ``model.model_id`` | last part of ``model.model`` or ``model.path`` |
    ``model.backend``.
    """
    frames = config.get("frames") or {}
    model = config.get("model") or {}
    sampler = frames.get("strategy") or frames.get("sampler")
    if not sampler and frames.get("source"):  # decoded frames: source and rule, e.g. mp4_uniform-round_full
        sampler = "-".join(str(p) for p in (frames["source"], frames.get("rule")) if p)
    if isinstance(sampler, Mapping):
        sampler = sampler.get("strategy") or sampler.get("name")
    if isinstance(sampler, str):
        sampler = re.sub(r"__n\d+(?=__|$)", "", sampler)
    name = model.get("name") or model.get("model_id")
    where = model.get("model") or model.get("path")
    if not name and isinstance(where, str):  # a hub id or a checkpoint directory: its last part
        name = Path(where.rstrip("/")).name
    n = frames.get("num_frames")
    return {"model": name or model.get("backend"), "sampler": sampler,
            "num_frames": int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None}


def run_label(config: Mapping[str, Any]) -> str:
    """``"<sampler> <N>f <model>"`` from ``run_facets``, the sampler slug cut at its first ``__``
    (strategy and parameters; pool/pairing/seed left out), missing parts left out."""
    f = run_facets(config)
    parts = [str(f["sampler"]).split("__")[0] if f["sampler"] else None,
             None if f["num_frames"] is None else f"{f['num_frames']}f", f["model"]]
    return " ".join(str(p) for p in parts if p) or "run"


def column_question_types(column: str) -> tuple[str, ...]:
    """The question types whose samples a column is computed from (``n`` of the column)."""
    if column in TASKS:
        return TASKS[column]
    if column == "RelDir_weighted":
        return TASKS["RelDir"]
    group = column.rsplit("_", 1)[-1]
    groups = {"acc": MCA_QUESTION_TYPES, "mra": NA_QUESTION_TYPES,
              "all": MCA_QUESTION_TYPES + NA_QUESTION_TYPES}
    return groups[group]


def format_pct(value: float | None) -> str:
    """A fraction printed ×100 with 2 decimals; None -> "-"."""
    return "-" if value is None else f"{100.0 * value:.2f}"


def run_metrics(run: RunData, *, mode: str = "official") -> dict[str, Any]:
    """The ``metrics.json`` entry of one run.

    Keys: run_id, run_dir, label, model, sampler, num_frames, mode, partial, n_expected, n_done,
    n_missing, missing_ids, n_unexpected, n_errors, errors_by_kind, parse_status (mode's status ->
    count), counts (dataset -> question_type -> {n, n_error, n_parse_fail}), aggregate
    (the task format's aggregate, e.g. ``aggregate_scored(...).to_dict()``: columns, per_question_type,
    per_dataset, definitions), task_format, warnings, scan, config, provenance.
    """
    from posevlm.eval.task_format import task_format_of

    fmt = task_format_of(run.config)
    agg = fmt.aggregate(run.records, mode)
    errors = [r for r in run.records if r.get("status") == "error"]
    statuses = Counter(r["scores"][mode]["status"] for r in run.records)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for r in run.records:
        c = counts.setdefault(r["dataset"], {}).setdefault(r["question_type"],
                                                           {"n": 0, "n_error": 0, "n_parse_fail": 0})
        c["n"] += 1
        c["n_error"] += r.get("status") == "error"
        c["n_parse_fail"] += r.get("status") != "error" and r["scores"][mode]["status"] != "ok"
    warnings = list(agg["warnings"])
    if run.partial:
        warnings.insert(0, f"PARTIAL: {run.n_done} of {run.n_expected} expected samples have a record")
    if run.unexpected_ids:
        warnings.append(f"{len(run.unexpected_ids)} records have ids outside expected_ids and were ignored")
    if run.stats.truncated:
        warnings.append(f"torn last line ignored in {', '.join(run.stats.truncated)} (a killed writer)")
    if len(run.stats.world_sizes) > 1:
        warnings.append(f"records come from several world sizes {list(run.stats.world_sizes)} "
                        "(a resumed run)")
    return {
        "run_id": run.run_id, "run_dir": str(run.run_dir), "label": run_label(run.config),
        **run_facets(run.config), "mode": mode, "partial": run.partial, "n_expected": run.n_expected,
        "n_done": run.n_done, "n_missing": len(run.missing_ids), "missing_ids": list(run.missing_ids),
        "n_unexpected": len(run.unexpected_ids), "n_errors": len(errors),
        "errors_by_kind": dict(Counter((r.get("error") or {}).get("kind", "unknown") for r in errors)),
        "parse_status": dict(statuses),
        "counts": {d: dict(sorted(q.items())) for d, q in sorted(counts.items())},
        "aggregate": agg, "task_format": fmt.name, "warnings": warnings, "scan": run.stats.to_dict(),
        "config": run.config,
        "provenance": run.provenance,
    }


def _display(entry: Mapping[str, Any]) -> str:
    if entry["partial"]:
        return f"{entry['label']} (PARTIAL {entry['n_done']}/{entry['n_expected']})"
    return entry["label"]


def _format(entries: Sequence[Mapping[str, Any]]):
    """The task format of ``run_metrics`` entries (entries written before formats existed are VSI-Bench's)."""
    from posevlm.eval.task_format import task_formats

    names = sorted({e.get("task_format", "vsibench") for e in entries})
    if len(names) > 1:
        raise ConfigError(f"runs of different task formats ({', '.join(names)}) cannot share one table; report "
                          "each benchmark separately", field="run_dirs", value=names)
    return task_formats.get(names[0])


def _columns(fmt, micro: bool) -> tuple[str, ...]:
    return fmt.table_columns + (fmt.micro_columns if micro else ())


def _notes(entries: Sequence[Mapping[str, Any]], micro: bool) -> list[str]:
    fmt = _format(entries)
    defs = entries[0]["aggregate"]["definitions"]
    named = (*fmt.noted_columns, *(fmt.micro_columns if micro else ()))
    notes = [f"{fmt.column_headers[c]} = {c}: {defs[c]}." for c in named]
    notes += [f"{c}: {defs[c]}." for c in fmt.defined_columns]
    notes.append(f"Parsing mode '{entries[0]['mode']}'. Values x100, 2 decimals; '-' = task absent from the "
                 "run.")
    for e in entries:
        if e["n_errors"]:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(e["errors_by_kind"].items()))
            notes.append(f"{e['label']}: {e['n_errors']} sample(s) failed ({kinds}) and are scored 0.")
        if e["partial"]:
            notes.append(f"PARTIAL: {e['label']} has {e['n_done']} of {e['n_expected']} samples; its numbers "
                         "are over the finished samples only and not comparable with complete runs.")
    return notes


def markdown_table(entries: Sequence[Mapping[str, Any]], *, micro: bool = False) -> str:
    """One row per run in the paper's column order, definitions and errors under the table, then the
    same table per dataset. ``entries`` are ``run_metrics`` dicts of one parsing mode."""
    fmt = _format(entries)
    cols = _columns(fmt, micro)
    head = "| Run | " + " | ".join(fmt.column_headers[c] for c in cols) + " | n |"
    rule = "|---|" + "---:|" * (len(cols) + 1)
    partial = any(e["partial"] for e in entries)
    out = [f"# {fmt.title} results{' (PARTIAL)' if partial else ''}", "", head, rule]
    for e in entries:
        c = e["aggregate"]["columns"]
        out.append(f"| {_display(e)} | " + " | ".join(format_pct(c[k]) for k in cols)
                   + f" | {e['aggregate']['n']} |")
    out += [""] + [f"- {note}" for note in _notes(entries, micro)]
    out += ["", f"## Per dataset{' (PARTIAL)' if partial else ''}", "",
            head.replace("| Run |", "| Run | Dataset |"), rule.replace("|---|", "|---|---|", 1)]
    for e in entries:
        for dataset, agg in sorted(e["aggregate"]["per_dataset"].items()):
            out.append(f"| {_display(e)} | {dataset} | "
                       + " | ".join(format_pct(agg["columns"][k]) for k in cols) + f" | {agg['n']} |")
    return "\n".join(out) + "\n"


def _latex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(ch, ch) for ch in text)


def latex_table(entries: Sequence[Mapping[str, Any]], *, micro: bool = False) -> str:
    """A booktabs ``tabular`` (paper column order), definitions and PARTIAL notes as ``%`` comments."""
    fmt = _format(entries)
    cols = _columns(fmt, micro)
    out = [f"% posevlm report: {fmt.title}{' PARTIAL' if any(e['partial'] for e in entries) else ''}; needs "
           r"\usepackage{booktabs}"]
    out += [f"% {note}" for note in _notes(entries, micro)]
    out += [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule",
            "Run & " + " & ".join(_latex_escape(fmt.column_headers[c]) for c in cols) + r" \\", r"\midrule"]
    for e in entries:
        c = e["aggregate"]["columns"]
        out.append(_latex_escape(_display(e)) + " & " + " & ".join(format_pct(c[k]) for k in cols) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def _n(per_question_type: Mapping[str, Mapping[str, Any]], column: str, fmt) -> int:
    return sum(per_question_type[q]["count"] for q in fmt.column_types(column) if q in per_question_type)


def long_rows(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long format: one row per (run, dataset, column) with a value (fraction), its n and definition.

    ``dataset`` is ``"all"`` for the whole run; absent columns (None) have no row.
    """
    rows = []
    fmt = _format(entries) if entries else None
    for e in entries:
        agg = e["aggregate"]
        for dataset, block in [("all", agg), *sorted(agg["per_dataset"].items())]:
            for column, value in block["columns"].items():
                if value is None:
                    continue
                rows.append({"run_id": e["run_id"], "label": e["label"], "model": e["model"],
                             "sampler": e["sampler"], "num_frames": e["num_frames"], "mode": e["mode"],
                             "partial": e["partial"], "dataset": dataset, "column": column, "value": value,
                             "n": _n(block["per_question_type"], column, fmt),
                             "definition": agg["definitions"][column]})
    return rows


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _line_key(entry: Mapping[str, Any], models: set) -> str:
    return str(entry["sampler"]) + (f" / {entry['model']}" if len(models) > 1 else "")


def plot_columns(entries: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The table columns with a value in at least one run (the plot's panels; absent tasks are left out)."""
    return tuple(c for c in TABLE_COLUMNS if any(e["aggregate"]["columns"][c] is not None for e in entries))


def plot_score_vs_frames(entries: Sequence[Mapping[str, Any]], path: str | Path | BinaryIO, *,
                         deltas: Sequence[Mapping[str, Any]] = ()) -> str | Path | BinaryIO:
    """Score (×100) vs frame count as a PNG written to ``path`` (a file path or a binary file object); the
    figure of :func:`score_vs_frames_figure`."""
    score_vs_frames_figure(entries, deltas=deltas).savefig(path, dpi=110, format="png")
    return path


def score_vs_frames_figure(entries: Sequence[Mapping[str, Any]], *, deltas: Sequence[Mapping[str, Any]] = ()):
    """A matplotlib ``Figure``: panel 1 the official average, then one panel per task present in some run
    (absent tasks get no panel); one line per sampler (per sampler and model when several models are present),
    shaded by the entry's ``bootstrap`` band when it has one. With ``deltas`` (``paired_deltas`` of
    :func:`write_report`) a last panel shows each sampler's paired delta of the average against the reference,
    with its band. Runs without a frame count are left out and named in the figure's footer."""
    from matplotlib.figure import Figure

    models = {e["model"] for e in entries}
    lines: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    skipped = [e["label"] for e in entries if e["num_frames"] is None]
    for e in entries:
        if e["num_frames"] is not None:
            lines.setdefault(_line_key(e, models), []).append((e["num_frames"], e))
    columns = plot_columns(entries) or TABLE_COLUMNS[:1]
    n_panels = len(columns) + bool(deltas)
    ncols = min(3, n_panels)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.4 * nrows + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    colors = {key: f"C{k}" for k, key in enumerate(sorted(lines))}
    ticks = sorted({n for points in lines.values() for n, _ in points})

    def frame_axis(ax) -> None:
        ax.set_xlabel("frames")
        ax.grid(alpha=0.3)
        if ticks:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()

    for ax, column in zip(axes, columns):
        for key, points in sorted(lines.items()):
            pts = [(n, 100.0 * e["aggregate"]["columns"][column], e["partial"], (e.get("bootstrap") or {}).get(
                    "columns", {}).get(column)) for n, e in sorted(points, key=lambda p: p[0])
                   if e["aggregate"]["columns"][column] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key, color=colors[key])
                band = [p for p in pts if p[3] is not None]
                if band:
                    ax.fill_between([p[0] for p in band], [100.0 * p[3][0] for p in band],
                                    [100.0 * p[3][1] for p in band], color=colors[key], alpha=0.15, lw=0)
                part = [p for p in pts if p[2]]  # PARTIAL runs: hollow markers
                ax.plot([p[0] for p in part], [p[1] for p in part], "o", color="white", markersize=4)
        ax.set_title(COLUMN_HEADERS[column])
        ax.set_ylabel("score x100")
        frame_axis(ax)
    if deltas:
        ax = axes[len(columns)]
        reference = deltas[0]["reference_sampler"]
        by_key: dict[str, list[Mapping[str, Any]]] = {}
        for d in deltas:
            by_key.setdefault(d["line"], []).append(d)
        for key, ds in sorted(by_key.items()):
            ds = sorted(ds, key=lambda d: d["num_frames"])
            x = [d["num_frames"] for d in ds]
            ax.plot(x, [100.0 * d["delta"] for d in ds], marker="o", color=colors.get(key), label=key)
            ax.fill_between(x, [100.0 * d["ci"][0] for d in ds], [100.0 * d["ci"][1] for d in ds],
                            color=colors.get(key), alpha=0.15, lw=0)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_title(f"{COLUMN_HEADERS[deltas[0]['column']]}: paired delta vs {reference}")
        ax.set_ylabel("delta x100")
        frame_axis(ax)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # one legend below all panels: long sampler names must not squeeze the grid
        short = [lab if len(lab) <= 90 else lab[:87] + "..." for lab in labels]
        fig.legend(handles, short, loc="outside lower center", ncol=1 if max(map(len, short)) > 45 else 3,
                   fontsize=8)
    partial = any(e["partial"] for e in entries)
    banded = any(e.get("bootstrap") for e in entries)
    fig.suptitle(f"VSI-Bench score vs frames (mode {entries[0]['mode']})"
                 + (f"; bands: {100 * _confidence(entries):.0f}% stratified bootstrap, paired across runs"
                    if banded else "")
                 + (" - PARTIAL (hollow markers: runs with missing samples)" if partial else ""))
    if skipped:
        fig.supxlabel(f"no frame count, not plotted: {', '.join(skipped)}", fontsize=8)
    return fig


def _confidence(entries: Sequence[Mapping[str, Any]]) -> float:
    return next(e["bootstrap"]["confidence"] for e in entries if e.get("bootstrap"))


def paired_deltas(runs: Sequence[RunData], entries: Sequence[Mapping[str, Any]], *, mode: str,
                  column: str = "macro_official_all", confidence: float = 0.95) -> list[dict[str, Any]]:
    """Paired deltas of ``column`` of every run against the reference sampler's run with the same frame count
    and model (reference: ``uniform`` when some run uses it, else the first sampler by name), over the same
    question ids only (samplers compared by their strategy, the slug up to its first ``__``). One dict per
    run: line, sampler, num_frames, model, run_id, reference_sampler,
    reference_run_id, column, delta (fraction), ci [low, high]."""
    from posevlm.eval.bands import paired_delta_band

    def strategy(e: Mapping[str, Any]) -> str:
        return str(e["sampler"]).split("__")[0]  # the sampler slug's strategy part, as in run_label

    samplers = sorted({strategy(e) for e in entries if e["num_frames"] is not None})
    if len(samplers) < 2:
        return []
    reference = "uniform" if "uniform" in samplers else samplers[0]
    models = {e["model"] for e in entries}
    refs: dict[tuple, tuple[RunData, Mapping[str, Any]]] = {}
    for run, e in zip(runs, entries):
        if strategy(e) == reference and e["num_frames"] is not None:
            refs.setdefault((e["num_frames"], e["model"]), (run, e))
    out = []
    for run, e in zip(runs, entries):
        ref = refs.get((e["num_frames"], e["model"]))
        if ref is None or strategy(e) == reference:
            continue
        band = paired_delta_band(ref[0].records, run.records, [column], mode=mode, confidence=confidence)
        a, b = ref[1]["aggregate"]["columns"][column], e["aggregate"]["columns"][column]
        if band is None or band[column] is None or a is None or b is None:
            continue
        out.append({"line": _line_key(e, models), "sampler": e["sampler"], "num_frames": e["num_frames"],
                    "model": e["model"], "run_id": e["run_id"], "reference_sampler": reference,
                    "reference_run_id": ref[1]["run_id"], "column": column, "delta": b - a,
                    "ci": list(band[column])})
    return out


def deltas_markdown(deltas: Sequence[Mapping[str, Any]]) -> str:
    """The paired deltas as a markdown section (empty string without deltas)."""
    if not deltas:
        return ""
    d0 = deltas[0]
    out = ["", f"## Paired deltas vs {d0['reference_sampler']} ({COLUMN_HEADERS[d0['column']]}, x100, "
           "95% stratified bootstrap CI over the same questions)", "",
           "| Sampler | Frames | Model | Delta | CI | CI excludes 0 |", "|---|---:|---|---:|---|---|"]
    for d in sorted(deltas, key=lambda d: (d["line"], d["num_frames"])):
        lo, hi = d["ci"]
        out.append(f"| {d['sampler']} | {d['num_frames']} | {d['model']} | {100 * d['delta']:+.2f} | "
                   f"[{100 * lo:+.2f}, {100 * hi:+.2f}] | {'yes' if not lo <= 0.0 <= hi else 'no'} |")
    return "\n".join(out) + "\n"


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, *, mode: str = "official",
                 allow_partial: bool = False, micro: bool = False, plot: bool = True) -> dict[str, Path]:
    """Load runs, write every report file (``REPORT_FILES``) into ``out_dir``; returns name -> path.

    Args:
        run_dirs: run directories (``posevlm eval --out``), one table row each, in this order.
        out_dir: output directory; default ``RUN/report`` for a single run (required for several).
        mode: parsing mode of every number (``official`` for headline numbers).
        allow_partial: report runs with missing samples, labelled PARTIAL everywhere.
        micro: add the micro columns (All/Acc/MRA) to the tables.
        plot: write ``score_vs_frames.png`` (formats with score-vs-frames panels only: VSI-Bench).
    Raises:
        InputFileError: not a run directory, damaged records, or incomplete without ``allow_partial``.
        ConfigError: no runs, several runs without ``out_dir``, or ``mode`` not scored.
    """
    if not run_dirs:
        raise ConfigError("no run directories given; pass one or more posevlm eval --out directories",
                          field="run_dirs", value=[])
    if out_dir is None:
        if len(run_dirs) > 1:
            raise ConfigError("several runs need an explicit --out directory for the combined report",
                              field="out", value=None)
        out_dir = Path(run_dirs[0]) / "report"
    runs = [load_run(d, allow_partial=allow_partial) for d in run_dirs]
    entries = [run_metrics(run, mode=mode) for run in runs]
    fmt = _format(entries)
    deltas: list[dict[str, Any]] = []
    if fmt.plot:  # the VSI-style formats: bootstrap bands per run and paired deltas on the score-vs-frames plot
        from posevlm.eval.bands import BAND_BOOTSTRAP, score_band

        for run, e in zip(runs, entries):  # same seed and id order: runs over the same questions share draws
            band = score_band(run.records, TABLE_COLUMNS, mode=mode)
            e["bootstrap"] = {"n_bootstrap": BAND_BOOTSTRAP, "seed": 0, "confidence": 0.95,
                              "stratified_by": "question_type",
                              "columns": {c: None if v is None else list(v) for c, v in band.items()}}
        deltas = paired_deltas(runs, entries, mode=mode)
    labels = Counter(e["label"] for e in entries)
    for e in entries:
        if labels[e["label"]] > 1:  # same sampler/N/model: tell rows apart by run id
            e["label"] = f"{e['label']} [{e['run_id'][:8]}]"
    from posevlm.provenance import provenance

    from posevlm.atomic import atomic_write_bytes, atomic_write_text
    from posevlm.paths import writable_dir

    out = writable_dir(out_dir, "--out")
    partial = any(e["partial"] for e in entries)
    doc = {"format": REPORT_FORMAT, "schema_version": REPORT_SCHEMA_VERSION, "mode": mode, "partial": partial,
           "column_order": list(_columns(fmt, micro)), "task_format": fmt.name, "runs": entries,
           "paired_deltas": deltas,
           "provenance": provenance()}
    paths = {name: out / file for name, file in REPORT_FILES.items()}
    # every file is written to a temporary name and renamed: a killed report leaves the previous files whole
    atomic_write_text(paths["metrics"], json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown_table(entries, micro=micro) + deltas_markdown(deltas))
    atomic_write_text(paths["latex"], latex_table(entries, micro=micro))
    atomic_write_text(paths["csv"], _csv_text(long_rows(entries)))
    if plot and fmt.plot:
        buffer = io.BytesIO()
        plot_score_vs_frames(entries, buffer, deltas=deltas)
        atomic_write_bytes(paths["plot"], buffer.getvalue())
    else:
        del paths["plot"]
    return paths
