"""Docs stay true: the code blocks of docs/conventions.md run, and CI runs the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_conventions_page_asserts_hold():
    text = (ROOT / "docs" / "conventions.md").read_text()
    blocks = [(m.start(1), m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]
    assert len(blocks) >= 5
    namespace: dict = {}
    for start, code in blocks:  # one shared namespace, tracebacks point at the page's own line numbers
        padded = "\n" * text.count("\n", 0, start) + code
        exec(compile(padded, "docs/conventions.md", "exec"), namespace)  # noqa: S102


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\w*\n(.*?)```", readme, flags=re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.split("#")[0].strip()]
    assert len(commands) == 2, "the README opens with exactly two commands: the demo and the tests"
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands[1] in ci
