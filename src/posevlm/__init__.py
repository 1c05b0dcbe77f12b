"""posevlm: spatial reasoning with video multimodal LLMs conditioned on camera pose.

Import is light: subpackages (``posevlm.geometry``, ``posevlm.scenes``, ...) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = ("geometry", "scenes", "sampling", "spatial", "eval", "viz", "cli")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"posevlm.{name}")
    raise AttributeError(f"module 'posevlm' has no attribute {name!r}")
