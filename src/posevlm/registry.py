"""A small name -> object registry that dispatches: lazy targets, descriptions, third-party entry points.

Every extensible kind of thing in posevlm (samplers, backends, benchmarks, position presets, camera
attention modes, model families, ...) lives in one ``Registry``, and every caller (runners, CLI, config
validation, error suggestions) goes through it, so adding one means registering it, nothing else.

- ``register(name, description=...)`` decorates (or takes) the object; duplicate names fail.
- ``register_lazy(name, "module:attr", description=...)`` names an object without importing its module
  (``import posevlm`` stays light); the first ``get(name)`` imports it.
- Third-party packages add entries through the Python entry-point group ``posevlm.<group>`` (e.g.
  ``posevlm.samplers``): the entry point's name is the registry name, its value the object, e.g. in the
  plug-in's ``pyproject.toml``::

      [project.entry-points."posevlm.samplers"]
      my_sampler = "my_package.selection:MY_SAMPLER"

  Entry points are discovered on first use of the registry and load when their name is looked up; a
  built-in name cannot be taken over.
- Unknown names raise ``ConfigError`` suggesting the closest name and listing all.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from posevlm.errors import ConfigError

__all__ = ["Registry", "RegistryEntry", "ENTRY_POINT_PREFIX", "resolve_target", "describe"]

T = TypeVar("T")
ENTRY_POINT_PREFIX = "posevlm."


def resolve_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted) and return the attribute."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def describe(obj: Any) -> str:
    """One line about ``obj``: its ``description`` attribute, else the first line of its docstring."""
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text:
        doc = inspect.getdoc(obj) if callable(obj) or inspect.isclass(obj) else None
        text = doc or ""
    return text.strip().splitlines()[0] if text.strip() else ""


@dataclass
class RegistryEntry:
    """One registered name: the object (or its ``module:attr`` target until first use), a one-line
    description, where it came from (``builtin`` or ``entry point <dist>``) and free-form metadata."""

    name: str
    target: str | None
    obj: Any
    description: str
    origin: str
    meta: dict[str, Any]

    @property
    def loaded(self) -> bool:
        return self.target is None or self.obj is not None


class Registry(Generic[T]):
    """Named registry. Duplicate names fail; unknown names suggest the closest and list all.

    >>> loaders = Registry("scene loader")
    >>> @loaders.register("demo", description="a demo loader")
    ... def load_demo(path): ...
    >>> loaders.get("demo") is load_demo
    True
    """

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = None if entry_point_group is None else ENTRY_POINT_PREFIX + entry_point_group
        self._entries: dict[str, RegistryEntry] = {}
        self._discovered = entry_point_group is None

    # ---- registration --------------------------------------------------------------------------
    def _add(self, entry: RegistryEntry) -> None:
        if entry.name in self._entries:
            raise ConfigError(f"{self.kind} {entry.name!r} is already registered ({self._entries[entry.name].origin})",
                              field=self.kind, value=entry.name)
        self._entries[entry.name] = entry

    def register(self, name: str, obj: T | None = None, *, description: str | None = None,
                 **meta: Any) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name`` (or decorate: ``@registry.register(name)``)."""

        def decorator(item: T) -> T:
            self._add(RegistryEntry(name, None, item, description if description is not None else describe(item),
                                    "builtin", dict(meta)))
            return item

        return decorator if obj is None else decorator(obj)

    def register_lazy(self, name: str, target: str, *, description: str = "", **meta: Any) -> None:
        """Register the object at ``"module:attr"`` without importing it; ``get(name)`` imports it."""
        self._add(RegistryEntry(name, target, None, description, "builtin", dict(meta)))

    # ---- lookup ----------------------------------------------------------------------------------
    def _discover(self) -> None:
        """Add the entry points of ``posevlm.<group>`` once (names only; each loads on first use)."""
        if self._discovered:
            return
        self._discovered = True
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=self.entry_point_group), key=lambda e: e.name):
            if ep.name in self._entries:
                continue  # a built-in name cannot be replaced from outside
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            self._entries[ep.name] = RegistryEntry(ep.name, ep.value, None, "", f"entry point ({dist})", {})

    def entry(self, name: str) -> RegistryEntry:
        """The entry of ``name`` (loaded, so its description is known). Raises ConfigError if unknown."""
        self._discover()
        try:
            entry = self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=1) if isinstance(name, str) else []
            hint = f" Did you mean: {close[0]}?" if close else ""
            raise ConfigError(
                f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._entries))}",
                field=self.kind, value=name,
            ) from None
        if not entry.loaded:
            try:
                entry.obj = resolve_target(entry.target)  # type: ignore[arg-type]
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"{self.kind} {name!r} ({entry.origin}: {entry.target}) cannot be loaded: "
                                  f"{type(exc).__name__}: {exc}", field=self.kind, value=name) from exc
            entry.description = entry.description or describe(entry.obj)
        return entry

    def get(self, name: str) -> T:
        """The object registered as ``name`` (imported on first use)."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str, str]]:
        """``(name, one-line description, origin)`` of every entry, sorted by name. Lazy entries registered with
        a description are not imported; entry points are (their description is on the object)."""
        return [(n, (e.description if e.description else self.entry(n).description), e.origin)
                for n in self.names() for e in (self._entries[n],)]

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
