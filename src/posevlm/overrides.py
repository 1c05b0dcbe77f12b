"""``KEY=VALUE`` overrides of a config dataclass from the command line, each value cast to its field's type."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from posevlm.errors import ConfigError

__all__ = ["parse_overrides", "parse_value", "parse_free_overrides"]

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_overrides(items: Sequence[str], defaults: Mapping[str, Any], *, what: str, field: str,
                    reserved: Sequence[str] = (), casts: Mapping[str, Callable[[str], Any]] | None = None
                    ) -> dict[str, Any]:
    """``["pose_reference=medoid", "pose_lam=0.5"]`` -> ``{"pose_reference": "medoid", "pose_lam": 0.5}``.

    Args:
        defaults: the dataclass's default field values; a value is cast to its default's type (bool accepts
            true/false/1/0/yes/no), unless ``casts`` names a parser for that key (it raises ValueError on bad text).
        what, field: how errors name the overrides (``"position"``, ``--position-set``'s field ``"set"``).
        reserved: keys that other flags set; refused here.
    Raises:
        ConfigError: not KEY=VALUE, an unknown or reserved key, or a value that does not parse.
    """
    casts = dict(casts or {})
    allowed = sorted(set(defaults) - set(reserved))
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            own = f" ({', '.join(reserved)} have their own flags)" if reserved else ""
            raise ConfigError(f"bad {what} override {item!r}; write KEY=VALUE with KEY one of {', '.join(allowed)}"
                              f"{own}", field=field, value=item)
        kind = type(defaults[key])
        try:
            if key in casts:
                out[key] = casts[key](raw)
            elif kind is bool:
                out[key] = _BOOLS[raw.lower()]
            elif kind in (int, float):
                out[key] = kind(raw)
            else:
                out[key] = raw
        except (ValueError, KeyError):
            expected = getattr(casts.get(key), "__doc__", None) or f"a {kind.__name__}" + \
                (" number" if kind in (int, float) else "")
            raise ConfigError(f"{what} override {item!r}: {raw!r} is not {expected}", field=key, value=raw) from None
    return out


def parse_value(text: str) -> Any:
    """A command-line value without a declared type: int, then float, then true/false, else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_free_overrides(items: Sequence[str], *, flag: str) -> dict[str, Any]:
    """``["answer=B", "min_pixels=3136"]`` -> ``{"answer": "B", "min_pixels": 3136}`` (values by
    :func:`parse_value`); the receiver validates the keys. Raises ConfigError naming ``flag`` for an item
    without ``=``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE; got {item!r}", field=flag, value=item)
        out[key.strip()] = parse_value(raw)
    return out
