"""Run explorer: one static HTML page per eval run (or per pair of runs) to see *why* a sample scored what
it did, without a server.

Per question: the selected frames as thumbnails, a top-down SVG of the camera trajectory (the pool's
camera centres as a line, the selected cameras as numbered dots with their viewing direction), the
question, options and ground truth, and per run the raw output, the parsed answer, the parse status and
the score. Filters by task, dataset, scene and strategy; with two runs, an outcome filter (A wins, B wins,
tie) and the per-task win counts, so one sees where one run beats the other.

Inputs: only the runs given and what their records point at: ``run_config.json`` and ``records/`` of
each run, the benchmark file named by the run config (for the question text; when it cannot be read
the page says so), and the frame manifests named by the records (``frames.provenance.manifest_path``:
``selected_frames.json``, its frame images and ``pool_geometry.npz``). Outputs: ``OUT/index.html`` and
``OUT/thumbs/<hash>.jpg``, nothing outside ``OUT``. Camera centres are ``-R^T t`` of ``w2c_opencv``;
the top-down view looks down world z (synthetic scans: z up) with x to the right.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError

__all__ = ["EXPLORER_FILE", "THUMBS_DIR", "explorer_data", "trajectory_svg", "write_explorer"]

EXPLORER_FILE = "index.html"
THUMBS_DIR = "thumbs"
_THUMB_WIDTH = 112
_RUN_KEYS = "AB"


def _centres_xy(w2c_opencv: np.ndarray) -> np.ndarray:
    """(S, 4, 4) w2c -> (S, 2) camera centre x, y (``-R^T t``)."""
    w2c = np.asarray(w2c_opencv, dtype=np.float64).reshape(-1, 4, 4)
    return -np.einsum("sji,sj->si", w2c[:, :3, :3], w2c[:, :3, 3])[:, :2]


def _forward_xy(w2c_opencv: np.ndarray) -> np.ndarray:
    """(S, 4, 4) w2c -> (S, 2) unit viewing direction (camera +z, OpenCV forward) in the floor plane."""
    w2c = np.asarray(w2c_opencv, dtype=np.float64).reshape(-1, 4, 4)
    f = w2c[:, 2, :2]  # third row of R = camera z axis in world coordinates
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def trajectory_svg(pool_w2c: np.ndarray | None, selected_w2c: np.ndarray, size: int = 220) -> str:
    """A top-down SVG: pool camera centres as a grey line (when given), selected cameras as numbered dots
    (1 = first in time) with a short line along their viewing direction. Poses are (P, 4, 4) / (S, 4, 4)
    w2c_opencv; y is flipped so world +y points up on the page."""
    sel = _centres_xy(selected_w2c)
    pool = _centres_xy(pool_w2c) if pool_w2c is not None and len(pool_w2c) else np.zeros((0, 2))
    pts = np.concatenate([pool, sel]) if len(pool) else sel
    if len(pts) == 0:
        return f'<svg class="traj" width="{size}" height="{size}"></svg>'
    lo, hi = pts.min(0), pts.max(0)
    span = float(max((hi - lo).max(), 1e-6))
    pad, scale = 14.0, (size - 28.0) / span
    off = (np.array([size, size]) - (hi - lo) * scale) / 2 - lo * scale

    def xy(p: np.ndarray) -> tuple[float, float]:
        q = p * scale + off
        return round(float(q[0]), 1), round(float(size - q[1]), 1)

    parts = [f'<svg class="traj" width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
             'xmlns="http://www.w3.org/2000/svg"><rect width="100%" height="100%" fill="#fafafa"/>']
    if len(pool) > 1:
        line = " ".join(f"{x},{y}" for x, y in map(xy, pool))
        parts.append(f'<polyline points="{line}" fill="none" stroke="#bbb" stroke-width="1.2"/>')
    fwd = _forward_xy(selected_w2c)
    for k, (c, f) in enumerate(zip(sel, fwd), start=1):
        (x0, y0), (x1, y1) = xy(c), xy(c + f * (pad / scale))
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#d62728" stroke-width="1.5"/>')
        parts.append(f'<circle cx="{x0}" cy="{y0}" r="3.2" fill="#1f77b4"><title>selected {k}</title></circle>')
        parts.append(f'<text x="{x0 + 3}" y="{y0 - 3}" font-size="8" fill="#333">{k}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _task_of(question_type: str) -> str:
    from posevlm.eval.aggregate import TASKS

    return next((task for task, types in TASKS.items() if question_type in types), question_type)


def _questions(config: Mapping[str, Any]) -> tuple[dict[int, dict], str | None]:
    """id -> benchmark record of the run's benchmark (question text), or ({}, why not)."""
    from posevlm.eval.benchmarks import benchmarks

    bench = dict(config.get("benchmark") or {})
    try:
        records = benchmarks.get(bench.get("name", "")).load(bench)
    except Exception as exc:  # noqa: BLE001 - the page still shows everything the records hold
        return {}, f"question text unavailable ({type(exc).__name__}: {exc})"
    return {int(r["id"]): r for r in records}, None


class _Frames:
    """Thumbnails and trajectories of the frame manifests the records name (each read once)."""

    def __init__(self, out: Path):
        self.out = out
        self.thumbs = out / THUMBS_DIR
        self.manifests: dict[str, dict | None] = {}
        self.svgs: dict[str, str] = {}
        self.notes: set[str] = set()

    def _manifest(self, path: str) -> dict | None:
        if path not in self.manifests:
            try:
                doc = json.loads(Path(path).read_text(encoding="utf-8"))
                pool = Path(path).with_name("pool_geometry.npz")
                if pool.is_file():
                    with np.load(pool) as z:
                        doc["_pool_w2c"] = np.asarray(z["w2c_opencv"])
                self.manifests[path] = doc
            except (OSError, ValueError) as exc:
                self.notes.add(f"frame manifest {path} unreadable ({exc})")
                self.manifests[path] = None
        return self.manifests[path]

    def _thumb(self, source: Path) -> str | None:
        name = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:20] + ".jpg"
        target = self.thumbs / name
        if not target.is_file():
            from PIL import Image

            try:
                with Image.open(source) as im:
                    im = im.convert("RGB")
                    h = max(1, round(im.height * _THUMB_WIDTH / im.width))
                    self.thumbs.mkdir(parents=True, exist_ok=True)
                    im.resize((_THUMB_WIDTH, h), Image.BILINEAR).save(target, quality=85)
            except OSError as exc:
                self.notes.add(f"frame image {source} unreadable ({exc})")
                return None
        return f"{THUMBS_DIR}/{name}"

    def for_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``{frame_ids, thumbs (relative paths or None), traj (svg key or None)}`` of one record."""
        frames = record.get("frames") or {}
        ids = [int(i) for i in frames.get("frame_ids") or []]
        path = (frames.get("provenance") or {}).get("manifest_path")
        doc = self._manifest(path) if path else None
        if doc is None:
            if ids and not path:
                self.notes.add("some records have frames without a manifest (decoded video): no thumbnails")
            return {"frame_ids": ids, "thumbs": [], "traj": None}
        by_id = {int(s["frame_id"]): s for s in doc.get("selected", [])}
        chosen = [by_id[i] for i in ids if i in by_id]
        thumbs = [self._thumb(Path(path).parent / s["file"]) if s.get("file") else None for s in chosen]
        key = hashlib.sha256(f"{path}|{ids}".encode()).hexdigest()[:16]
        if key not in self.svgs and chosen and all("w2c_opencv" in s for s in chosen):
            self.svgs[key] = trajectory_svg(doc.get("_pool_w2c"), np.array([s["w2c_opencv"] for s in chosen]))
        return {"frame_ids": ids, "thumbs": thumbs, "traj": key if key in self.svgs else None}


def explorer_data(run_dirs: Sequence[str | Path], out_dir: str | Path, *, mode: str = "official") -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data; writes the thumbnails under ``out_dir/thumbs``.

    Returns ``{runs: [{key, label, run_id, strategy, num_frames, model, notes}], questions: [{id, dataset,
    scene, question_type, task, question, options, ground_truth, outcome, runs: {key: {raw, parsed, status,
    score, frame_ids, thumbs, traj}}}], svgs: {key: svg}, notes: [...]}``; ``outcome`` (two runs) is
    ``A wins`` / ``B wins`` / ``tie`` / ``only A`` / ``only B``.
    Raises:
        ConfigError: no run or more than two runs.
        InputFileError: a directory that is not a complete eval run (``load_run``).
    """
    from posevlm.eval.report import run_facets, run_label
    from posevlm.eval.run_store import load_run

    if not 1 <= len(run_dirs) <= 2:
        raise ConfigError(f"explore takes one run or two runs to compare; got {len(run_dirs)}",
                          field="runs", value=[str(d) for d in run_dirs])
    out = Path(out_dir)
    frames = _Frames(out)
    runs, questions, texts = [], {}, {}
    for key, run_dir in zip(_RUN_KEYS, run_dirs):
        run = load_run(run_dir, allow_partial=True)
        facets = run_facets(run.config)
        texts_run, why = _questions(run.config)
        texts.update(texts_run)
        runs.append({"key": key, "label": run_label(run.config), "run_id": run.run_id, "dir": str(run.run_dir),
                     "strategy": str(facets["sampler"] or "-").split("__")[0], "num_frames": facets["num_frames"],
                     "model": facets["model"], "notes": [why] if why else [],
                     "partial": run.partial})
        for r in run.records:
            q = questions.setdefault(int(r["id"]), {
                "id": int(r["id"]), "dataset": r.get("dataset"), "scene": r.get("scene_name"),
                "question_type": r["question_type"], "task": _task_of(r["question_type"]),
                "options": r.get("options"), "ground_truth": r.get("ground_truth"), "runs": {}})
            scored = (r.get("scores") or {}).get(mode) or {}
            q["runs"][key] = {"raw": r.get("raw_output"), "parsed": scored.get("text"),
                              "status": "error" if r.get("status") == "error" else scored.get("status"),
                              "error": (r.get("error") or {}).get("kind"), "score": scored.get("score"),
                              **frames.for_record(r)}
    for q in questions.values():
        rec = texts.get(q["id"]) or {}
        q["question"] = rec.get("question")
        if len(runs) == 2:
            a, b = (q["runs"].get(k, {}).get("score") for k in _RUN_KEYS)
            q["outcome"] = ("only B" if a is None else "only A" if b is None
                            else "A wins" if a > b else "B wins" if b > a else "tie")
    ordered = sorted(questions.values(), key=lambda q: (str(q["dataset"]), str(q["scene"]), q["task"], q["id"]))
    return {"runs": runs, "questions": ordered, "svgs": frames.svgs, "mode": mode,
            "notes": sorted(frames.notes) + [n for r in runs for n in r["notes"]]}


def _page(data: Mapping[str, Any]) -> str:
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
    title = " vs ".join(r["label"] for r in data["runs"])
    return _TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def write_explorer(run_dirs: Sequence[str | Path], out_dir: str | Path, *, mode: str = "official") -> Path:
    """Write the explorer page of one run or a pair of runs into ``out_dir``; returns ``out_dir/index.html``.

    Raises:
        ConfigError: no run or more than two runs.
        InputFileError: a directory that is not an eval run.
    """
    from posevlm.atomic import atomic_write_text
    from posevlm.paths import writable_dir

    out = writable_dir(out_dir, "--out")
    data = explorer_data(run_dirs, out, mode=mode)
    path = out / EXPLORER_FILE
    atomic_write_text(path, _page(data))
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>posevlm explore: __TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 6px}
#runs{font-size:13px;margin-bottom:8px}
#filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin:8px 0;padding:8px;background:#f3f3f3}
#filters label{font-size:12px;display:flex;flex-direction:column}
#summary{font-size:13px;margin:6px 0}
table.wins{border-collapse:collapse;font-size:12px;margin:6px 0}
table.wins td,table.wins th{border:1px solid #ccc;padding:2px 6px;text-align:right}
.q{border:1px solid #ccc;border-radius:6px;margin:10px 0;padding:8px}
.q .head{font-size:12px;color:#555}
.q .text{margin:4px 0;font-size:14px}
.q ol{margin:2px 0 4px 18px;padding:0;font-size:13px}
.q .gt{font-size:13px}
.cols{display:flex;gap:12px;flex-wrap:wrap}
.run{flex:1;min-width:420px;border-top:3px solid #999;padding-top:4px}
.run.win{border-top-color:#2ca02c}.run.lose{border-top-color:#d62728}
.run .meta{font-size:12px}
.run .ans{font-size:13px;margin:2px 0}
.thumbs{display:flex;flex-wrap:wrap;gap:2px;margin:4px 0}
svg.traj{flex:none}
.thumbs img{width:72px;height:auto;border:1px solid #ddd}
.fid{font-size:10px;color:#666}
.ok{color:#2ca02c}.bad{color:#d62728}
#more{margin:10px 0}
.notes{font-size:12px;color:#a60}
</style></head>
<body>
<h1>posevlm explore</h1>
<div id="runs"></div>
<div class="notes" id="notes"></div>
<div id="filters">
 <label>task<select id="f-task"></select></label>
 <label>dataset<select id="f-dataset"></select></label>
 <label>scene<select id="f-scene"></select></label>
 <label>strategy<select id="f-strategy"></select></label>
 <label id="l-outcome">outcome<select id="f-outcome"></select></label>
</div>
<div id="summary"></div>
<div id="wins"></div>
<div id="list"></div>
<button id="more">show more</button>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 40;
let shown = PAGE;
const two = D.runs.length === 2;
const esc = s => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\"": "&quot;", "'": "&#39;"})[c]);
function fill(id, values) {
  const sel = document.getElementById(id);
  sel.innerHTML = '<option value="">all</option>' +
    values.map(v => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
  sel.addEventListener("change", () => { shown = PAGE; render(); });
}
const uniq = key => [...new Set(D.questions.map(q => q[key]))].filter(v => v !== null).sort();
fill("f-task", uniq("task"));
fill("f-dataset", uniq("dataset"));
fill("f-scene", uniq("scene"));
fill("f-strategy", [...new Set(D.runs.map(r => r.strategy))].sort());
if (two) fill("f-outcome", ["A wins", "B wins", "tie", "only A", "only B"]);
else document.getElementById("l-outcome").style.display = "none";
document.getElementById("runs").innerHTML = D.runs.map(r =>
  `<div><b>${r.key}</b>: ${esc(r.label)} <span class="fid">(run ${esc(r.run_id)}${r.partial ? ", PARTIAL" : ""}; ${esc(r.dir)})</span></div>`
).join("") + `<div class="fid">parsing mode ${esc(D.mode)}</div>`;
document.getElementById("notes").innerHTML = D.notes.map(n => `<div>${esc(n)}</div>`).join("");
document.getElementById("more").addEventListener("click", () => { shown += PAGE; render(); });
function value(id) { return document.getElementById(id).value; }
function runBlock(q, r) {
  const x = q.runs[r.key];
  if (!x) return `<div class="run"><div class="meta"><b>${r.key}</b> ${esc(r.label)}: no record</div></div>`;
  let cls = "run";
  if (two && q.outcome === r.key + " wins") cls += " win";
  if (two && (q.outcome === "A wins" || q.outcome === "B wins") && q.outcome !== r.key + " wins") cls += " lose";
  const score = x.score === null || x.score === undefined ? "-" : Number(x.score).toFixed(2);
  const good = x.score >= 1 ? "ok" : (x.score > 0 ? "" : "bad");
  const thumbs = x.thumbs.map((t, k) => t ? `<figure style="margin:0"><img src="${esc(t)}" alt="frame ${x.frame_ids[k]}"><div class="fid">#${k + 1} f${x.frame_ids[k]}</div></figure>` : "").join("");
  const traj = x.traj ? D.svgs[x.traj] : "";
  return `<div class="${cls}" data-run="${r.key}">
    <div class="meta"><b>${r.key}</b> ${esc(r.label)}</div>
    <div class="ans">raw: <code>${esc(x.raw)}</code></div>
    <div class="ans">parsed: <code>${esc(x.parsed)}</code> &middot; status <span class="status">${esc(x.status)}</span>${x.error ? " (" + esc(x.error) + ")" : ""} &middot; score <b class="score ${good}">${score}</b></div>
    <div style="display:flex;gap:8px;align-items:flex-start">${traj}<div class="thumbs">${thumbs || '<span class="fid">frames ' + esc(x.frame_ids.join(", ")) + "</span>"}</div></div>
  </div>`;
}
function render() {
  const f = {task: value("f-task"), dataset: value("f-dataset"), scene: value("f-scene"),
             strategy: value("f-strategy"), outcome: two ? value("f-outcome") : ""};
  const runs = D.runs.filter(r => !f.strategy || r.strategy === f.strategy);
  const match = D.questions.filter(q => (!f.task || q.task === f.task) && (!f.dataset || q.dataset === f.dataset)
    && (!f.scene || q.scene === f.scene) && (!f.outcome || q.outcome === f.outcome)
    && runs.some(r => q.runs[r.key]));
  const mean = r => { const s = match.map(q => q.runs[r.key]).filter(x => x && x.score !== null && x.score !== undefined);
    return s.length ? (100 * s.reduce((a, x) => a + x.score, 0) / s.length).toFixed(1) : "-"; };
  document.getElementById("summary").innerHTML = `<span id="count">${match.length}</span> of ${D.questions.length} questions; mean score x100: ` +
    runs.map(r => `${r.key} ${mean(r)}`).join(", ");
  if (two) {
    const tasks = [...new Set(match.map(q => q.task))].sort();
    const n = (t, o) => match.filter(q => q.task === t && q.outcome === o).length;
    document.getElementById("wins").innerHTML = '<table class="wins"><tr><th>task</th><th>A wins</th><th>B wins</th><th>tie</th></tr>' +
      tasks.map(t => `<tr><td style="text-align:left">${esc(t)}</td><td>${n(t, "A wins")}</td><td>${n(t, "B wins")}</td><td>${n(t, "tie")}</td></tr>`).join("") + "</table>";
  }
  document.getElementById("list").innerHTML = match.slice(0, shown).map(q => `
    <div class="q" data-id="${q.id}" data-task="${esc(q.task)}" data-dataset="${esc(q.dataset)}" data-scene="${esc(q.scene)}" data-outcome="${esc(q.outcome || "")}">
      <div class="head">${esc(q.dataset)} / ${esc(q.scene)} &middot; ${esc(q.task)} (${esc(q.question_type)}) &middot; id ${q.id}${two ? " &middot; <b>" + esc(q.outcome) + "</b>" : ""}</div>
      <div class="text">${q.question ? esc(q.question) : '<span class="fid">(question text unavailable)</span>'}</div>
      ${q.options ? "<ol type=A>" + q.options.map(o => `<li>${esc(o.replace(/^[A-D]\\. /, ""))}</li>`).join("") + "</ol>" : ""}
      <div class="gt">ground truth: <b>${esc(q.ground_truth)}</b></div>
      <div class="cols">${runs.map(r => runBlock(q, r)).join("")}</div>
    </div>`).join("");
  document.getElementById("more").style.display = match.length > shown ? "" : "none";
}
render();
</script>
</body></html>
"""
