"""Typed errors of the training data side.

Two families, told apart on purpose:

* :class:`RecordError` (an ``InputFileError``): an annotation file is malformed (not JSON, a turn without a
  role, a ``<video>`` tag without a video, ...). Raised while *reading* a dataset, naming the file, the line
  and the field; a dataset with such records does not load, because the fix is in the file.
* ``SampleError`` subclasses (:mod:`posevlm.eval.errors` plus the three below): one sample cannot become
  model inputs (missing media, a decode error, too long, no assistant turn). Raised while *building* a
  sample; :class:`posevlm.train.data.SFTDataset` logs, counts and skips them by rule (``on_error``).
"""

from __future__ import annotations

from pathlib import Path

from posevlm.errors import InputFileError
from posevlm.eval.errors import SampleError

__all__ = ["RecordError", "SampleTooLongError", "NoAssistantTurnError", "MissingCamerasError", "TRAIN_ERROR_KINDS"]

#: ``kind`` values a training sample can fail with: the eval's input kinds plus the three of this module.
TRAIN_ERROR_KINDS = ("missing_input", "invalid_input", "frame_count_mismatch", "decode_error", "processor_error",
                     "too_long", "no_assistant_turn", "missing_cameras")


class RecordError(InputFileError):
    """An annotation record is malformed. ``path``, ``line`` (1-based; the line where the record starts in a
    JSON array) and ``field`` (``conversations[2].from``, ``video``, ...) locate it."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        super().__init__(message, path=path)
        self.line = line
        self.field = field


class SampleTooLongError(SampleError):
    """The tokenised sample is longer than ``model_max_length``. Never truncated: cutting a video's
    placeholder run would leave the vision tokens and the pixel values out of step."""

    kind = "too_long"


class NoAssistantTurnError(SampleError):
    """The conversation has no assistant turn, so every label would be -100 (nothing to learn)."""

    kind = "no_assistant_turn"


class MissingCamerasError(SampleError):
    """The data asks for one camera per frame (``require_cameras``) but this sample's frames carry none
    (an mp4 or a plain frame folder instead of a sampling manifest folder)."""

    kind = "missing_cameras"
