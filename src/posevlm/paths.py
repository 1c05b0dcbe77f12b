"""Names that become path components, and paths that must stay inside a root the user gave.

Scene ids, dataset names and benchmark ``scene_name`` values end up in output and input paths
(``OUT/<slug>/<dataset>/<scene>/``, ``--frames-root/<dataset>/<scene>``). A name is a safe component
when it is one non-empty path segment: no separator, not ``.`` or ``..``, no NUL or control character.
Two names that differ only by case or Unicode normalisation would land in the same folder on macOS /
Windows file systems, so :func:`name_key` folds them for collision checks.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

__all__ = ["name_problem", "name_key", "inside_root"]

_SEPARATORS = tuple({"/", "\\", os.sep, *(os.altsep or "")})


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component, or ``None`` if it can."""
    if not isinstance(name, str) or not name:
        return f"{name!r} is empty or not a string"
    if name in (".", ".."):
        return f"{name!r} is a relative path reference"
    if any(sep in name for sep in _SEPARATORS):
        return f"{name!r} contains a path separator"
    if any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        return f"{name!r} contains a control character"
    return None


def name_key(name: str) -> str:
    """Collision key: NFC-normalised and case-folded (``Room`` and ``room`` share a folder on macOS)."""
    return unicodedata.normalize("NFC", name).casefold()


def inside_root(root: str | Path, *parts: str) -> Path | None:
    """``root / part / ...`` if every part is one safe component (so the path is lexically inside ``root``),
    else ``None``. Symlinks the user placed inside ``root`` are followed as usual: the check is about names
    coming from data files (benchmark records, folder listings), not about the user's own links."""
    if any(name_problem(p) for p in parts):
        return None
    return Path(root).joinpath(*parts)


def writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create ``path`` (and parents) if needed and check a file can be written in it; returns it.

    Raises:
        OutputPathError: ``path`` is an existing file, cannot be created, or is not writable (read-only
            location, permissions); the message names the path, the flag and the fix.
    """
    import tempfile

    from posevlm.errors import OutputPathError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path} is an existing file, not a folder; choose a folder path", path=path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".posevlm-write-check-"):
            pass
    except OSError as exc:
        raise OutputPathError(f"{flag} {path} is not writable ({exc.strerror or exc}); choose a writable folder or "
                              "fix its permissions (completed outputs there are kept and resumed)", path=path) from None
    return path
