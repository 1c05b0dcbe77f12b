"""One report per experiment: every variant against the stock THW baseline, paired by question and seed.

For each condition (sampler, frames) and variant, the runs of the variant and of the baseline with the same
seed are paired sample by sample (the same questions: one data set per condition). Per seed the comparison
is exactly ``posevlm compare`` (:func:`posevlm.eval.compare.compare_records` on the two runs' records); pooled
over seeds, the (seed, question) pairs form one paired sample set (ids renumbered per (seed, id)) and
``compare_records`` gives the means, the stratified paired bootstrap CI (resampling within question type) and
McNemar, so no statistic is reimplemented here. A CI that contains 0 is reported as "not significant".

Tasks (``TASKS``): each run's ``posevlm eval`` folders are analysed separately, never pooled across tasks: ``pose``
(``train/eval_pose``, benchmark ``synthetic_pose``: answers depend on the cameras of views shown shuffled, frame
index uninformative; headline ``analysis.pose_headline``) and ``vsi`` (``train/eval``, the synthetic VSI tasks: the
control; headline ``analysis.headline``). A task none of the finished runs has is left out.

Writes ``report.md`` (per task and condition: means per column and variant, deltas with CIs, verdicts),
``report.json`` (every number) and ``score_vs_frames[_<task>].png`` (headline score vs frames, one line per
variant, one panel per sampler; mean over seeds with the per-seed scores as dots).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from posevlm.experiment.spec import ExperimentSpec, RunPlan, expand_runs, variant_name

__all__ = ["Task", "TASKS", "PairedResult", "pooled_records", "compare_variant", "verdict", "experiment_report"]


@dataclass(frozen=True)
class Task:
    """One evaluated task of every run: its eval folder under the run's ``train/``, the task format its records are
    compared with, the ``spec.analysis`` key naming its headline column, and a title."""

    name: str
    folder: str
    task_format: str
    headline_key: str
    title: str


#: The tasks of a run, in report order (the pose questions are the experiment's point; VSI is the control).
TASKS = (Task("pose", "eval_pose", "pose_views", "pose_headline",
              "pose questions over views shown shuffled (frame index uninformative)"),
         Task("vsi", "eval", "vsibench", "headline", "synthetic VSI tasks (control)"))


@dataclass(frozen=True)
class PairedResult:
    """A variant against the baseline in one condition: pooled over the seeds both finished, and per seed."""

    condition: str
    variant: str
    seeds: tuple[int, ...]
    pooled: Any                      # posevlm.eval.compare.RunComparison
    per_seed: Mapping[int, Any]      # seed -> RunComparison (== posevlm compare of the two eval runs)


def _records(run: RunPlan, task: Task) -> list[dict]:
    from posevlm.eval.run_store import load_run

    return list(load_run(run.train_dir / task.folder, allow_partial=True).records)


def pooled_records(by_seed: Mapping[int, Sequence[Mapping[str, Any]]], keys: Sequence[tuple[int, int]]) -> list[dict]:
    """Records of several seeds as one set: the record of (seed, id) gets id ``keys.index((seed, id))``."""
    number = {k: i for i, k in enumerate(keys)}
    return [{**r, "id": number[(seed, r["id"])]} for seed, recs in by_seed.items() for r in recs
            if (seed, r["id"]) in number]


def compare_variant(base_runs: Mapping[int, RunPlan], var_runs: Mapping[int, RunPlan], *, mode: str = "official",
                    n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95,
                    task: Task = TASKS[1]) -> PairedResult | None:
    """Baseline (A) vs variant (B) on ``task`` over the seeds both have finished; None when there is none."""
    from posevlm.eval.compare import compare_records

    seeds = tuple(sorted(s for s in set(base_runs) & set(var_runs)
                         if (base_runs[s].train_dir / task.folder).is_dir()
                         and (var_runs[s].train_dir / task.folder).is_dir()))
    if not seeds:
        return None
    a = {s: _records(base_runs[s], task) for s in seeds}
    b = {s: _records(var_runs[s], task) for s in seeds}
    kw = dict(mode=mode, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, task_format=task.task_format)
    per_seed = {s: compare_records(a[s], b[s], **kw) for s in seeds}
    keys = sorted({(s, r["id"]) for s in seeds for r in a[s]} | {(s, r["id"]) for s in seeds for r in b[s]})
    pooled = compare_records(pooled_records(a, keys), pooled_records(b, keys), **kw)
    any_run = next(iter(var_runs.values()))
    return PairedResult(any_run.condition, any_run.variant_name, seeds, pooled, per_seed)


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def verdict(result: PairedResult, column: str) -> str:
    """One plain sentence: the delta of ``column`` with its CI, and whether the experiment can tell them apart."""
    c = next(c for c in result.pooled.columns if c.column == column)
    head = (f"{result.variant} vs thw on {result.condition} ({len(result.seeds)} seed(s), {c.n} paired "
            f"(seed, question) items), {column}: ")
    if c.delta is None or c.ci_low is None:
        return head + "no paired questions of this column."
    pct = f"{100 * result.pooled.confidence:g}%"
    text = head + (f"{100 * c.delta:+.1f} points ({_pts(c.mean_a)} -> {_pts(c.mean_b)}), {pct} CI "
                   f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]")
    if not c.ci_excludes_zero:
        return text + ": NOT significant - the CI contains 0, so this experiment cannot tell the variant from " \
                      "the baseline."
    better = c.delta > 0
    return text + f": significant - the variant is {'better' if better else 'worse'} than the stock THW baseline."


def _columns_present(results: Sequence[PairedResult], task: Task) -> list[str]:
    from posevlm.eval.task_format import task_formats

    present = {c.column for r in results for c in r.pooled.columns if c.n > 0 and c.mean_a is not None}
    return [c for c in task_formats.get(task.task_format).compare_columns if c in present]


def _row_means(result: PairedResult, columns: Sequence[str], side: str) -> list[str]:
    by = {c.column: c for c in result.pooled.columns}
    return [_pts(getattr(by[c], f"mean_{side}")) for c in columns]


def _row_deltas(result: PairedResult, columns: Sequence[str]) -> list[str]:
    by = {c.column: c for c in result.pooled.columns}
    cells = []
    for c in columns:
        d = by[c]
        if d.delta is None or d.ci_low is None:
            cells.append("-")
        else:
            cells.append(f"{100 * d.delta:+.1f} [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]"
                         + (" *" if d.ci_excludes_zero else ""))
    return cells


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _plot(spec: ExperimentSpec, points: Mapping[tuple[str, str], dict[int, list[float]]], column: str,
          path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    samplers = list(spec.grid["sampler"])
    fig = Figure(figsize=(5 * len(samplers), 4), layout="constrained")
    axes = fig.subplots(1, len(samplers), squeeze=False)[0]
    order = [variant_name(v) for v in spec.variants]  # one colour and marker per variant in every panel
    for ax, sampler in zip(axes, samplers):
        for variant in order:
            by_n = points.get((sampler, variant))
            if not by_n:
                continue
            k = order.index(variant)
            ns = sorted(by_n)
            means = [100 * sum(by_n[n]) / len(by_n[n]) for n in ns]
            ax.plot(ns, means, marker="osD^v<>"[k % 7], color=f"C{k % 10}", label=variant, alpha=0.8,
                    markersize=8 - k)
            for n in ns:
                ax.plot([n] * len(by_n[n]), [100 * v for v in by_n[n]], ".", color=f"C{k % 10}", alpha=0.4)
        ax.set_title(f"{sampler}")
        ax.set_xlabel("frames")
        ax.set_ylabel(f"{column} x100 (line: mean over seeds)")
        ax.set_xticks(sorted(spec.grid["num_frames"]))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"experiment {spec.name}: {title}, score vs frames per variant")
    fig.savefig(path, dpi=100, format="png")
    return path


def experiment_report(spec: ExperimentSpec, out_dir: str | Path | None = None, *, plot: bool = True,
                      runs: Sequence[RunPlan] | None = None) -> dict[str, Path]:
    """Write the experiment's report from its finished runs (unfinished ones are listed, not guessed)."""
    from posevlm.atomic import atomic_write_text
    from posevlm.experiment.runner import run_status

    a = spec.analysis
    runs = list(runs if runs is not None else expand_runs(spec, resolve=False))
    out = Path(out_dir) if out_dir is not None else spec.output_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    finished = [r for r in runs if run_status(r).state == "done"]
    missing = [r.name for r in runs if r not in finished]
    groups: dict[tuple[str, str], dict[int, RunPlan]] = {}
    for r in finished:
        groups.setdefault((r.condition, r.variant_name), {})[r.seed] = r
    conditions = list(dict.fromkeys(r.condition for r in runs))
    variants = list(dict.fromkeys(variant_name(v) for v in spec.variants))
    tasks = [t for t in TASKS if any((r.train_dir / t.folder).is_dir() for r in finished)]
    md = [f"# Experiment {spec.name}", "", f"Spec: `{spec.source}`. {len(finished)}/{len(runs)} runs finished."
          + (f" Not finished (left out): {', '.join(missing)}." if missing else ""), "",
          f"Every variant against the stock THW baseline (`thw`), paired by question and seed; {a['confidence']:.0%} "
          f"stratified paired bootstrap CIs ({a['bootstrap']} resamples, seed {a['seed']}, `posevlm compare`'s "
          f"functions), scores x100, parsing mode {a['mode']}. `*`: the CI excludes 0. Tasks: "
          + (", ".join(f"`{t.name}` ({t.title}, headline `{a[t.headline_key]}`)" for t in tasks) or "none yet")
          + ".", ""]
    data: dict[str, Any] = {"spec": str(spec.source), "finished": [r.name for r in finished], "missing": missing,
                            "analysis": dict(a), "tasks": [t.name for t in tasks], "comparisons": [],
                            "runs": {r.name: {"condition": r.condition, "variant": r.variant_name, "seed": r.seed,
                                              "num_frames": r.num_frames} for r in finished}}
    files = {"report.md": out / "report.md", "report.json": out / "report.json"}
    for task in tasks:
        head = a[task.headline_key]
        points = _headline_points(finished, task, head, a["mode"], data["runs"])
        md += [f"# Task `{task.name}`: {task.title}", ""]
        for cond in conditions:
            base = groups.get((cond, "thw"), {})
            cond_results = [res for v in variants if v != "thw" and (res := compare_variant(
                base, groups.get((cond, v), {}), mode=a["mode"], n_bootstrap=a["bootstrap"], seed=a["seed"],
                confidence=a["confidence"], task=task)) is not None]
            md += [f"## {task.name}: {cond}", ""]
            if not cond_results:
                md += ["No variant has a finished seed paired with a finished baseline seed yet.", ""]
                continue
            md += _condition_section(cond_results, _columns_present(cond_results, task), head)
            for r in cond_results:
                data["comparisons"].append({"task": task.name, "condition": r.condition, "variant": r.variant,
                                            "seeds": list(r.seeds), "verdict": verdict(r, head),
                                            "pooled": r.pooled.to_dict(),
                                            "per_seed": {str(s): c.to_dict() for s, c in r.per_seed.items()}})
        if plot and points:
            name = "score_vs_frames.png" if task.name == "vsi" else f"score_vs_frames_{task.name}.png"
            files[name] = _plot(spec, points, head, out / name, task.title)
            md += [f"![{task.name}: score vs frames]({name})", ""]
    atomic_write_text(files["report.md"], "\n".join(md))
    atomic_write_text(files["report.json"], json.dumps(data, indent=1, sort_keys=True, allow_nan=False,
                                                       default=str) + "\n")
    return files


def _headline_points(finished: Sequence[RunPlan], task: Task, head: str, mode: str,
                     run_rows: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(sampler, variant) -> frames -> per-seed headline values of ``task``; fills ``run_rows[name][task.name]``."""
    from posevlm.eval.report import run_metrics
    from posevlm.eval.run_store import load_run

    points: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in finished:
        if not (r.train_dir / task.folder).is_dir():
            continue
        metrics = run_metrics(load_run(r.train_dir / task.folder, allow_partial=True), mode=mode)
        value = metrics["aggregate"]["columns"].get(head)
        run_rows[r.name][task.name] = {head: value}
        if value is not None:
            points.setdefault((r.sampler, r.variant_name), {}).setdefault(r.num_frames, []).append(value)
    return points


def _condition_section(cond_results: Sequence[PairedResult], cols: Sequence[str], head: str) -> list[str]:
    """The markdown of one condition: means, deltas with CIs, per-seed headline comparisons, verdicts."""
    return ["Means (pooled over the paired seeds):", "",
            _table(["variant", "seeds", *cols],
                   [["thw", ",".join(map(str, cond_results[0].seeds)), *_row_means(cond_results[0], cols, "a")]]
                   + [[r.variant, ",".join(map(str, r.seeds)), *_row_means(r, cols, "b")] for r in cond_results]),
            "", "Delta variant - thw [CI]:", "",
            _table(["variant", *cols], [[r.variant, *_row_deltas(r, cols)] for r in cond_results]), "",
            "Per seed (each equals `posevlm compare` of the two eval runs), " + head + ":", "",
            _table(["variant", "seed", "thw", "variant", "delta [CI]"],
                   [[r.variant, str(s), *_row_means_one(r.per_seed[s], head)] for r in cond_results
                    for s in r.seeds]), "", "Verdicts:", "", *[f"- {verdict(r, head)}" for r in cond_results], ""]


def _row_means_one(comparison: Any, column: str) -> list[str]:
    c = next(c for c in comparison.columns if c.column == column)
    ci = "-" if c.ci_low is None else f"{100 * c.delta:+.1f} [{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]" + (
        " *" if c.ci_excludes_zero else "")
    return [_pts(c.mean_a), _pts(c.mean_b), ci]
