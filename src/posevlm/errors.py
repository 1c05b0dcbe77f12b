"""Typed errors. Every error names the offending input and, where one exists, the fix."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "PosevlmError",
    "ShapeError",
    "ConfigError",
    "ConventionError",
    "InputFileError",
    "SchemaVersionError",
    "OutputPathError",
    "ConventionWarning",
]


class PosevlmError(Exception):
    """Base class of every error raised on purpose by posevlm."""


class ShapeError(PosevlmError, ValueError):
    """A tensor argument has the wrong shape. ``name`` is the argument, ``shape`` what arrived."""

    def __init__(self, message: str, *, name: str | None = None, shape: tuple[int, ...] | None = None):
        super().__init__(message)
        self.name = name
        self.shape = shape


class ConfigError(PosevlmError, ValueError):
    """A configuration value is invalid. ``field`` and ``value`` name it."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None):
        super().__init__(message)
        self.field = field
        self.value = value


class ConventionError(PosevlmError, ValueError):
    """Camera data violates its declared convention (not rigid, NaN/inf, wrong direction)."""


class InputFileError(PosevlmError, ValueError):
    """An input file or folder is missing, unreadable or inconsistent. ``path`` names it."""

    def __init__(self, message: str, *, path: str | Path | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class SchemaVersionError(PosevlmError):
    """An on-disk artefact has a schema version this release cannot read."""


class OutputPathError(PosevlmError):
    """An output location cannot be written (an existing file, read-only, no permission, disk full)."""

    def __init__(self, message: str, *, path: str | Path | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class ConventionWarning(UserWarning):
    """Camera data is probably not what its convention says (intrinsics implausible for their image,
    poses that look inverted). A heuristic, so a warning; the message names the file and the fix."""
