"""Named synthetic dataset settings: ``standard`` (the original generator) and ``hard``.

A preset fixes the layout and scan settings of :class:`SynthConfig`; seed, frame count, image size
and frame rate stay free (``synth_config(preset, seed=..., num_frames=...)``).

| preset | rooms | objects | scans |
|---|---|---|---|
| ``standard`` | one rectangular or L-shaped room | 5-25 of 14 categories | 300-3000 frames (random) |
| ``hard`` | 2-3 rooms joined by doorways | 0.45-0.75 per m² (typically 15-40) of 23 categories, small clutter included | 1800 frames (a 60 s walk at 30 fps) |

``hard`` makes a few frames know less: each frame sees one room, interior walls and dense clutter
occlude, more instances per category make counting strict, and longer walks spread the frames.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.scenes.synthetic.generate import SynthConfig

__all__ = ["SYNTH_PRESETS", "synth_config"]

#: preset name -> SynthConfig fields it sets (everything else keeps the SynthConfig default).
SYNTH_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "standard": MappingProxyType({}),
    "hard": MappingProxyType({"room_shape": "multi", "clutter": True, "num_frames": 1800}),
})


def synth_config(preset: str = "standard", **overrides: Any) -> SynthConfig:
    """The ``SynthConfig`` of ``preset`` with ``overrides`` (any SynthConfig field) applied on top.

    Raises:
        ConfigError: unknown preset (lists the known ones) or an invalid field value.
    """
    if preset not in SYNTH_PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; known: {', '.join(SYNTH_PRESETS)}.",
                          field="preset", value=preset)
    return replace(SynthConfig(), **{**SYNTH_PRESETS[preset], **overrides})
