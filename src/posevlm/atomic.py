"""Atomic file writes: a private temporary file in the target's folder, fsynced, then renamed over the target.

Readers never see a half-written file, a killed writer leaves at most a ``.<name>.*.tmp`` file, and the
result gets the permissions any other output gets (``0o666`` minus the umask; ``tempfile.mkstemp`` alone
would leave it private, ``0o600``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["default_file_mode", "atomic_write_bytes", "atomic_write_text", "write_new_file"]


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_copy(path: Path, data: bytes) -> str:
    """``data`` in a private temporary file next to ``path`` (fsynced, normal mode). An OS error (disk full,
    read-only) names ``path``, the file the caller meant to write."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
    except BaseException as exc:
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (the folder must exist)."""
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically (the folder must exist)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_new_file(path: str | Path, text: str) -> bool:
    """Create ``path`` with ``text`` atomically unless it exists (a hard link never overwrites; file systems
    without hard links fall back to a rename after an existence check). True if this call created it."""
    path = Path(path)
    tmp = _temp_copy(path, text.encode("utf-8"))
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
