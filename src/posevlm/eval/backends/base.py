"""The backend interface: what the eval runner calls, and what a registered backend provides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

__all__ = ["Backend", "BackendSpec"]


class Backend(Protocol):
    """What the eval runner calls. ``info``: JSON-serialisable description of what was loaded (written to
    ``RUN/backend/<shard>.json``). ``generate``: one output per ``(record, prompt, frames)`` item, either
    ``{"text": str, "video_grid_thw": ..., "n_visual_tokens": ...}`` or a ``posevlm.eval.errors.SampleError``
    for an item that failed on its own (the others still count)."""

    info: Mapping[str, Any]

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation: Any = None) -> list[Any]: ...


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend.

    Attributes:
        name: registry name (``--backend``, ``EvalConfig.model["backend"]``).
        factory: ``model config -> Backend`` (called once per run shard, after the CPU preflight).
        description: one line for ``posevlm list backends``.
        from_cli: ``(CLI values) -> model config`` from ``posevlm eval``'s flags: the flags the user gave that
            this backend declares in ``cli_options`` (flag ``--model-x`` is key ``model_x``), the always-present
            ``frames_root`` and ``batch_size``, and ``set`` (the ``--backend-set KEY=VALUE`` pairs). Raises
            ``ConfigError`` naming the flag for a missing one. Default: ``{"name": name, **set}``.
        check: ``(model config, frames config) -> [problems]``, run by ``EvalConfig`` before anything loads.
        cli_options: the backend-specific ``posevlm eval`` flags this backend reads; giving another backend's
            flag is an error naming it.
    """

    name: str
    factory: Callable[[Mapping[str, Any]], Backend]
    description: str = ""
    from_cli: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    check: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] | None = None
    cli_options: tuple[str, ...] = ()

    def model_config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The ``model`` section of an ``EvalConfig`` from CLI values (see ``from_cli``)."""
        out = self.from_cli(values) if self.from_cli else {"name": self.name, **dict(values.get("set") or {})}
        return {"backend": self.name, **out}
