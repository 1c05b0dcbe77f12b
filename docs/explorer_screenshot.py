"""Regenerate docs/explorer.png: the run explorer of the default demo's uniform vs voxel_coverage runs at 16
frames, filtered to object counting where voxel_coverage wins, in headless Chromium (Debian's ``chromium``).

    python -m posevlm demo --out runs/demo            # once
    python docs/explorer_screenshot.py runs/demo
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "viz"))

from headless_chromium import Browser, chromium_path  # noqa: E402

from posevlm.eval.demo import DemoConfig  # noqa: E402
from posevlm.viz.run_explorer import write_explorer  # noqa: E402


def main(demo_out: Path) -> None:
    runs = demo_out / "runs" / DemoConfig().tag
    a, b = (next(runs.glob(f"{strategy}*__n16__*")) for strategy in ("uniform", "voxel_coverage"))
    page = write_explorer([a, b], demo_out / "explore_uniform_vs_voxel_coverage_16")
    with Browser(chromium_path(), width=1280, height=860) as browser:
        browser.open(page.resolve().as_uri())
        for select, value in (("f-task", "ObjCnt"), ("f-outcome", "B wins")):
            browser.evaluate(f"(() => {{ const s = document.getElementById('{select}'); s.value = '{value}'; "
                             "s.dispatchEvent(new Event('change')); })()")
        browser.evaluate("Promise.all([...document.images].map(i => i.decode()))")
        print(browser.screenshot(ROOT / "docs" / "explorer.png"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
