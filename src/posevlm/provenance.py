"""Provenance block written into every artefact: versions, git hash, date."""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["provenance"]


@functools.lru_cache(maxsize=1)
def _git_hash() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def provenance(**extra: object) -> dict[str, object]:
    """Return ``{posevlm, git, torch, transformers, numpy, python, date, **extra}``."""
    from posevlm import __version__

    block: dict[str, object] = {
        "posevlm": __version__,
        "git": _git_hash(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    block.update(extra)
    return block
