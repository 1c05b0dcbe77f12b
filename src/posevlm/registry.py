"""A small name -> object registry with suggestions for unknown names."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from posevlm.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named registry. Duplicate names fail; unknown names suggest the closest and list all.

    >>> loaders = Registry("scene loader")
    >>> @loaders.register("demo")
    ... def load_demo(path): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ConfigError(f"{self.kind} {name!r} is already registered", field=self.kind, value=name)
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean: {close[0]}?" if close else ""
            raise ConfigError(
                f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._items))}",
                field=self.kind,
                value=name,
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
