"""Import-direction checks shared by the package tests: which modules a posevlm package names in its import
statements (statically: every file, lazy function-level imports included) and which it loads (at run time,
in a fresh interpreter)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path


def static_imports(package: str) -> dict[str, set[str]]:
    """{file relative to ``src/``: absolute module names its import statements name}, for every
    ``.py`` file of ``package``. ``from a.b import c`` names ``a.b`` and ``a.b.c`` (c may be a module)."""
    root = Path(importlib.import_module(package).__file__).parent
    src = root.parents[package.count(".")]
    found = {}
    for path in sorted(root.rglob("*.py")):
        here = list(path.relative_to(src).parts[:-1])  # the file's package, for relative imports
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against the file's package
                    parts = here[: len(here) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                names.add(base)
                names |= {f"{base}.{alias.name}" for alias in node.names}
        found[path.relative_to(src).as_posix()] = names
    return found


def matching(names, prefixes: tuple[str, ...]) -> list[str]:
    """The names equal to one of ``prefixes`` or inside it (``posevlm.eval`` matches ``posevlm.eval.frames``)."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def forbidden_static_imports(package: str, prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """{file: forbidden names} for the files of ``package`` that import one of ``prefixes``."""
    return {f: bad for f, names in static_imports(package).items() if (bad := matching(names, prefixes))}


def modules_loaded_by(code: str) -> set[str]:
    """``sys.modules`` after running ``code`` in a fresh interpreter (inherits PYTHONPATH)."""
    script = code + "\nimport json as _j, sys as _s\nprint(_j.dumps(sorted(_s.modules)))"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.strip().splitlines()[-1]))


IMPORT_ALL = """
import importlib, pkgutil
_pkg = importlib.import_module({package!r})
for _m in pkgutil.walk_packages(_pkg.__path__, _pkg.__name__ + "."):
    importlib.import_module(_m.name)
"""
