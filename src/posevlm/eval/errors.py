"""Typed per-sample errors: what goes wrong with one benchmark sample, named so a run records it and
carries on (eval.md §8.2).

Every ``SampleError`` has a ``kind`` (the ``error_type`` of the error record), the ``sample_id`` (set
by whoever knows it: frame sources serve a whole scene and leave it ``None``; ``for_sample`` fills it
in), the ``input`` it concerns (a path, a model id) and a message naming that input and the fix.
``ModelLoadError`` is not per sample: a model that cannot be loaded stops the run.
"""

from __future__ import annotations

from typing import Any, ClassVar

from posevlm.errors import PosevlmError

__all__ = [
    "SAMPLE_ERROR_KINDS",
    "SampleError",
    "MissingInputError",
    "InvalidInputError",
    "FrameCountMismatchError",
    "DecodeError",
    "ProcessorError",
    "OutOfMemoryError",
    "GenerationError",
    "ModelLoadError",
]

#: ``error_type`` values of error records, eval.md §8.2 (``timeout`` and ``unknown`` are the runner's).
SAMPLE_ERROR_KINDS = ("missing_input", "invalid_input", "frame_count_mismatch", "decode_error", "processor_error",
                      "oom", "generation_error", "timeout", "unknown")


class SampleError(PosevlmError):
    """One sample failed. ``kind`` classifies it; ``sample_id`` and ``input`` locate it.

    ``transient`` says whether a retry can help (decode and OOM: yes; a missing file: no).
    """

    kind: ClassVar[str] = "unknown"
    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, sample_id: Any = None, input: str | None = None):
        super().__init__(message)
        self.message = message
        self.sample_id = sample_id
        self.input = None if input is None else str(input)

    def __str__(self) -> str:
        return self.message if self.sample_id is None else f"sample {self.sample_id}: {self.message}"

    def for_sample(self, sample_id: Any) -> "SampleError":
        """Attach ``sample_id`` unless one is set; returns ``self`` for ``raise e.for_sample(i)``."""
        if self.sample_id is None:
            self.sample_id = sample_id
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields of an error record: ``error_type``, ``message``, ``sample_id``, ``input``."""
        return {"error_type": self.kind, "message": self.message, "sample_id": self.sample_id,
                "input": self.input}


class MissingInputError(SampleError):
    """A video, frame folder, manifest or frame file the sample needs does not exist."""

    kind = "missing_input"


class InvalidInputError(SampleError):
    """A benchmark field cannot name an input safely, e.g. a ``dataset`` / ``scene_name`` that would resolve
    outside the frames or scenes root (``..``, an absolute path, a path separator)."""

    kind = "invalid_input"


class FrameCountMismatchError(SampleError):
    """The frames available disagree with the frames expected. ``expected`` and ``found`` are counts."""

    kind = "frame_count_mismatch"

    def __init__(self, message: str, *, expected: int | None = None, found: int | None = None, **kw):
        super().__init__(message, **kw)
        self.expected = expected
        self.found = found

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "expected": self.expected, "found": self.found}


class DecodeError(SampleError):
    """An input exists but cannot be read: damaged video or image, manifest that is not JSON."""

    kind = "decode_error"
    transient = True


class ProcessorError(SampleError):
    """The model's processor (chat template, tokenizer, video processor) rejected the sample."""

    kind = "processor_error"


class OutOfMemoryError(SampleError):
    """The device ran out of memory even at batch size 1."""

    kind = "oom"
    transient = True


class GenerationError(SampleError):
    """``model.generate`` raised for a reason other than running out of memory."""

    kind = "generation_error"


class ModelLoadError(PosevlmError):
    """A model, its processor or its config cannot be loaded; stops the run. ``model`` names it."""

    def __init__(self, message: str, *, model: str | None = None):
        super().__init__(message)
        self.model = model
