"""The run explorer: what the page holds (every record, outcomes, thumbnails, trajectories), that it writes only
inside --out and reads only the runs, and, in a real headless Chromium, that its filters work."""

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
sys.path.insert(0, str(Path(__file__).parent))

from eval_world import N, build_world, config  # noqa: E402
from headless_chromium import Browser, chromium_path  # noqa: E402

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.eval.run_store import load_run  # noqa: E402
from posevlm.eval.runner import run_eval  # noqa: E402
from posevlm.viz.run_explorer import explorer_data, trajectory_svg, write_explorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An oracle run and a constant-answer run over the same questions and frames."""
    root = tmp_path_factory.mktemp("explore")
    world = build_world(root / "world")
    a, b = root / "dummy", root / "oracle"
    assert run_eval(config(world, backend="dummy", answer="A"), a).ok
    assert run_eval(config(world), b).ok
    return a, b


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_page_data_holds_every_record_and_the_outcomes(runs, tmp_path):
    a, b = runs
    before = {str(r): _tree(r.parent) for r in runs}
    out = tmp_path / "page"
    path = write_explorer([a, b], out)
    assert path == out / "index.html"
    assert {str(r): _tree(r.parent) for r in runs} == before  # the runs, manifests and scans are only read
    written = [p for p in out.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in written)
    data = explorer_data([a, b], tmp_path / "again")
    ra, rb = load_run(a), load_run(b)
    assert [q["id"] for q in sorted(data["questions"], key=lambda q: q["id"])] == [r["id"] for r in ra.records]
    by_id = {r["id"]: r for r in rb.records}
    for q in data["questions"]:
        sa, sb = q["runs"]["A"]["score"], q["runs"]["B"]["score"]
        assert q["outcome"] == ("A wins" if sa > sb else "B wins" if sb > sa else "tie")
        assert q["runs"]["B"]["raw"] == by_id[q["id"]]["raw_output"] and q["question"]  # text from the benchmark
        assert len(q["runs"]["B"]["thumbs"]) == N and all((out / t).is_file() for t in q["runs"]["B"]["thumbs"])
        assert q["runs"]["B"]["traj"] in data["svgs"]
    outcomes = {q["outcome"] for q in data["questions"]}
    assert "B wins" in outcomes and len(outcomes) >= 2  # the oracle beats a constant answer, ties elsewhere
    assert [r["strategy"] for r in data["runs"]] == ["uniform", "uniform"]
    page = path.read_text()
    raw = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert "</" not in raw  # the embedded SVGs cannot close the script element early
    assert json.loads(raw)["svgs"] == data["svgs"] and len(json.loads(raw)["questions"]) == len(data["questions"])


def test_trajectory_svg_marks_every_selected_camera_and_its_direction():
    rng = np.random.default_rng(0)
    w2c = np.tile(np.eye(4), (5, 1, 1))
    w2c[:, :3, 3] = rng.normal(size=(5, 3))  # identity rotation: camera z = world z (straight down the page)
    svg = trajectory_svg(np.tile(np.eye(4), (20, 1, 1)), w2c)
    assert svg.count("<circle") == 5 and svg.count("<line") == 5 and "<polyline" in svg
    assert [int(t) for t in re.findall(r">(\d+)</text>", svg)] == [1, 2, 3, 4, 5]


def test_more_than_two_runs_are_refused(runs, tmp_path):
    with pytest.raises(ConfigError, match="one run or two"):
        write_explorer([runs[0]] * 3, tmp_path / "x")


@pytest.mark.slow
def test_filters_in_headless_chromium(runs, tmp_path):
    """Debian's chromium (apt-get install chromium) over the DevTools pipe: open, filter, screenshot, DOM."""
    exe = chromium_path()
    assert exe, "headless Chromium is needed: apt-get install chromium (scripts/setup.sh does it when it can)"
    path = write_explorer(list(runs), tmp_path / "page")
    data = explorer_data(list(runs), tmp_path / "page2")
    with Browser(exe) as browser:
        browser.open(path.as_uri())
        total = len(data["questions"])
        assert browser.evaluate("document.getElementById('count').textContent") == str(total)

        def choose(select: str, value: str) -> None:
            browser.evaluate(f"(() => {{ const s = document.getElementById('{select}'); s.value = {json.dumps(value)};"
                             " s.dispatchEvent(new Event('change')); })()")

        task = "RelDir"
        choose("f-task", task)
        want = [q for q in data["questions"] if q["task"] == task]
        assert browser.evaluate("document.getElementById('count').textContent") == str(len(want))
        shown = browser.evaluate("[...document.querySelectorAll('.q')].map(q => q.dataset.task)")
        assert shown and set(shown) == {task} and len(shown) == min(len(want), 40)
        choose("f-outcome", "B wins")
        want = [q for q in want if q["outcome"] == "B wins"]
        cards = browser.evaluate("[...document.querySelectorAll('.q')].map(q => [q.dataset.outcome, "
                                 "q.querySelectorAll('.run.win').length, q.querySelectorAll('img').length])")
        assert cards == [["B wins", 1, 2 * N]] * len(want)
        loaded = browser.evaluate("Promise.all([...document.images].map(i => i.decode().then(() => i.naturalWidth)))")
        assert loaded and min(loaded) > 0  # the thumbnails resolve inside --out
        assert browser.evaluate("document.querySelectorAll('.q svg.traj circle').length") == N * 2 * len(want)
        shot = browser.screenshot(tmp_path / "explorer.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
