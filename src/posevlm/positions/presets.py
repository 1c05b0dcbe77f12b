"""Named position modes: the variants of positions spec section 2 as ready-made PositionSpecs.

mode             layouts            rows      what changes (against stock mRoPE)
---------------  -----------------  --------  ----------------------------------------------------------
``thw``          qwen2_5, qwen3     T,H,W     nothing: transformers 5.23 ``get_rope_index`` (stock)
``thw_index``    qwen2_5            T,H,W     T = one step per tubelet (Qwen2-VL ``get_rope_index_2``)
``thw_without_t``qwen2_5            T,H,W     T = segment start for every tubelet (fork ``mRoPE_woT``)
``thw_readapt_t``qwen2_5            T,H,W     T from the real source frame ids (fork ``mRoPE_readaptT``)
``pthw``         qwen2_5            P,T,H,W   extra pose row P; P takes the high half of T's slots
``phw``          qwen2_5, qwen3     P,H,W     P replaces T (Qwen3: P on T's interleaved slots)

``legacy=True`` switches the next-segment rule to the fork's ``max_plus_one`` (transformers 4.x), the
only convention in which the fork's runs differ from these modes once the fork's constructor defaults
(mean merges, dynamic ranges, hard reset, anchored P, reference ``first``, lambda 1) are spelled out, as
they are here. Any field can be overridden by keyword (``pose_reference="medoid"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.overrides import parse_overrides
from posevlm.positions.spec import PositionSpec
from posevlm.registry import Registry

__all__ = ["POSITION_MODES", "PositionPreset", "position_presets", "position_spec", "parse_spec_overrides",
           "resolve_position_spec", "spec_needs"]


@dataclass(frozen=True)
class PositionPreset:
    """A named position mode: the PositionSpec fields it sets, and the layouts it is defined for."""

    name: str
    layouts: tuple[str, ...]
    fields: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


#: Named position modes (``PositionPreset``); plug-ins add more through the entry-point group ``posevlm.positions``.
position_presets: Registry[PositionPreset] = Registry("position mode", "positions")
_BUILTIN = (
    PositionPreset("thw", ("qwen2_5", "qwen3"), {}, "stock mRoPE (T, H, W): transformers' get_rope_index exactly"),
    PositionPreset("thw_index", ("qwen2_5",), {"temporal": "index"}, "T = one step per tubelet (Qwen2-VL style)"),
    PositionPreset("thw_without_t", ("qwen2_5",), {"temporal": "zero"},
                   "T = the segment start for every tubelet (the fork's mRoPE_woT)"),
    PositionPreset("thw_readapt_t", ("qwen2_5",), {"temporal": "frame_ids"},
                   "T from the real source frame ids (the fork's mRoPE_readaptT)"),
    PositionPreset("pthw", ("qwen2_5",), {"pose": "scalar", "pose_axis": "extra"},
                   "extra pose row P (distance from the reference view) on the high half of T's slots"),
    PositionPreset("phw", ("qwen2_5", "qwen3"), {"pose": "scalar", "pose_axis": "replace_t"},
                   "P replaces T (Qwen3: on T's interleaved slots)"),
)
for _preset in _BUILTIN:
    position_presets.register(_preset.name, _preset)
_ALIASES = {"stock": "thw", "mrope": "thw", "without_t": "thw_without_t", "readapt_t": "thw_readapt_t"}
#: the built-in mode names (``position_presets.names()`` also lists plug-ins)
POSITION_MODES: tuple[str, ...] = tuple(p.name for p in _BUILTIN)


def _layout_for(family_or_layout: str) -> str:
    value = family_or_layout.replace("_vl", "").replace(".", "_")
    if value in ("qwen2_5", "qwen3"):
        return value
    raise ConfigError(f"unknown model family / layout {family_or_layout!r}; use qwen2_5 (Qwen2.5-VL) or "
                      "qwen3 (Qwen3-VL)", field="layout", value=family_or_layout)


def position_spec(mode: str, layout: str = "qwen2_5", *, legacy: bool = False, **overrides: Any) -> PositionSpec:
    """The PositionSpec of a named mode for a layout (``qwen2_5``/``qwen2_5_vl`` or ``qwen3``/``qwen3_vl``).

    Raises ConfigError for an unknown mode (with the list), a mode the layout does not have (e.g. ``pthw``
    on Qwen3, which keeps three rows: use ``phw``) or a bad override."""
    name = _ALIASES.get(mode, mode)
    if name not in position_presets:
        import difflib

        close = difflib.get_close_matches(str(mode), [*position_presets.names(), *_ALIASES], n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise ConfigError(f"unknown position mode {mode!r}.{hint} Available: {', '.join(position_presets.names())} "
                          f"(aliases: {', '.join(sorted(_ALIASES))})", field="positions", value=mode)
    preset = position_presets.get(name)
    layout = _layout_for(layout)
    if layout not in preset.layouts:
        others = [n for n in position_presets.names() if layout in position_presets.get(n).layouts]
        raise ConfigError(f"position mode {name!r} is not defined for layout {layout!r} (it has: "
                          f"{', '.join(preset.layouts)}); for {layout} use one of {', '.join(others)}",
                          field="positions", value=name)
    values: dict[str, Any] = {"layout": layout, **preset.fields}
    if legacy:
        values["next_segment"] = "max_plus_one"
    values.update(overrides)
    return PositionSpec.from_dict(values)


def parse_spec_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["pose_reference=medoid", "pose_lam=0.5"]`` -> typed dict, each value cast to the field's type."""
    return parse_overrides(items, PositionSpec().to_dict(), what="position", field="set")


def spec_needs(spec: PositionSpec | Mapping[str, Any]) -> dict[str, bool]:
    """Which per-video inputs a spec requires: ``{"w2c_opencv": ..., "frame_ids": ...}``."""
    if isinstance(spec, Mapping):
        spec = PositionSpec.from_dict(dict(spec))
    return {"w2c_opencv": spec.pose == "scalar", "frame_ids": spec.temporal == "frame_ids"}


def resolve_position_spec(value: str | PositionSpec | Mapping[str, Any] | None, layout: str,
                          **defaults: Any) -> PositionSpec | None:
    """A PositionSpec from what a config file or CLI holds, for a model family / layout.

    ``None`` -> None (stock model, untouched); a mode name -> :func:`position_spec`; a dict with ``mode``
    (and optional ``legacy`` and field overrides) -> :func:`position_spec`; a dict without ``mode`` -> a full
    PositionSpec dict (``layout`` defaults to the family's). ``defaults`` (e.g. the checkpoint's
    ``tokens_per_second``) fill fields a named mode leaves at their library default; explicit overrides win,
    and a full spec dict is taken as written."""
    if value is None or isinstance(value, PositionSpec):
        return value
    if isinstance(value, str):
        return position_spec(value, layout, **defaults)
    if not isinstance(value, Mapping):
        raise ConfigError(f"positions must be a mode name or a dict; got {type(value).__name__}",
                          field="positions", value=value)
    data = dict(value)
    if "mode" in data:
        return position_spec(data.pop("mode"), layout, legacy=bool(data.pop("legacy", False)),
                             **{**defaults, **data})
    data.setdefault("layout", _layout_for(layout))
    return PositionSpec.from_dict(data)
