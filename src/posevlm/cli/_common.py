"""Small parsing helpers shared by CLI verbs."""

from __future__ import annotations

import re

import typer

__all__ = ["parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` (W x H, as users write it) -> (H, W)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 640x480; got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    return h, w
