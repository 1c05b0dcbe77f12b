"""The ``dummy`` backend: answers every question with one constant. It drives the whole eval pipeline
without a model (smoke tests, CI) and measures the runner's own overhead."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from posevlm.eval.backends.base import BackendSpec

__all__ = ["DummyBackend", "BACKEND"]


class DummyBackend:
    """Answers ``model["answer"]`` (default "A") to everything."""

    def __init__(self, model: Mapping[str, Any]):
        self.answer = str(model.get("answer", "A"))
        self.info = {"backend": "dummy", "config": dict(model)}

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation=None) -> list[dict[str, Any]]:
        return [{"text": self.answer, "video_grid_thw": None, "n_visual_tokens": None} for _ in batch]


def _from_cli(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": "dummy", "answer": values.get("answer") or "A", **dict(values.get("set") or {})}


BACKEND = BackendSpec("dummy", DummyBackend, "a constant answer (--answer) for every question: smoke tests, overhead",
                      from_cli=_from_cli, cli_options=("answer",))
