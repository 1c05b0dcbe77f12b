"""The ``points`` backend: a :class:`~posevlm.models.point_lm.PointCloudLM` checkpoint answering from a scene's
point cloud (``posevlm eval --backend points --model <checkpoint> --frames point_cloud --frames-root <clouds>``).

Why a backend and not a model family of ``hf``: the ``hf`` backend is built around frames (the video processor,
its pixel budget, vision tokens, cameras per frame); a point-cloud LM has no processor and no frames, its input is
the :class:`~posevlm.eval.point_inputs.PointCloudSpec` the runner's ``point_cloud`` source loads once per scene.
So the backend is small: load the checkpoint (:meth:`PointCloudLM.from_pretrained`), build each prompt as training
does (:func:`~posevlm.models.point_lm.point_prompt` inside one user turn of the checkpoint's chat template,
:meth:`PointCloudLM.prepare`, left padding), ``generate`` greedily with the prompt preset's settings, decode the new
tokens without special tokens.

Model options (``--backend-set KEY=VALUE``): ``model`` (checkpoint directory; ``--model``), ``dtype`` (``float32``
default, ``bfloat16``, ``float16``; ``--dtype``), ``device`` (``auto``: CUDA when available, else CPU),
``max_new_tokens`` (caps the preset's, e.g. for smoke tests), ``batch_size``.

A layout record stores the origin of the cloud its target was written in (``meta.origin``); a cloud with another
origin (e.g. rebuilt from the scan with other frames) would score a correct layout as wrong, so that sample fails
with ``invalid_input`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from posevlm.errors import ConfigError
from posevlm.eval.backends.base import BackendSpec
from posevlm.eval.errors import InvalidInputError, ModelLoadError

__all__ = ["PointsBackendConfig", "PointsEvalBackend", "ORIGIN_TOLERANCE_M", "layout_origin_problem", "BACKEND"]

#: largest difference (metres) between a layout target's stored cloud origin and the cloud given to the model
ORIGIN_TOLERANCE_M = 1e-4
_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class PointsBackendConfig:
    """The ``points`` backend's options (module docstring); every problem reported at once."""

    model: str
    dtype: str = "float32"
    device: str = "auto"
    max_new_tokens: int | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.model, str) or not self.model:
            problems.append("model: a PointCloudLM checkpoint directory (--model)")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype={self.dtype!r} (allowed: {', '.join(_DTYPES)})")
        n = self.max_new_tokens
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            problems.append(f"max_new_tokens={n!r} (an int >= 1, or unset for the prompt preset's)")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size!r} (an int >= 1)")
        if problems:
            raise ConfigError("invalid points backend options: " + "; ".join(problems), field="model", value=problems)

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> "PointsBackendConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(model) - known - {"backend", "name"})
        if unknown:
            raise ConfigError(f"unknown points backend option(s) {unknown}; known: {sorted(known)}", field="model",
                              value=unknown)
        return cls(**{k: v for k, v in model.items() if k in known})


def layout_origin_problem(record: Mapping[str, Any], spec: Any) -> InvalidInputError | None:
    """None when ``record`` stores no cloud origin (``meta.origin``) or ``spec.cloud`` has that origin (within
    :data:`ORIGIN_TOLERANCE_M`); else the ``invalid_input`` error of that sample (module docstring)."""
    stored = (record.get("meta") or {}).get("origin")
    if stored is None:
        return None
    diff = float(np.abs(np.asarray(stored, dtype=np.float64) - np.asarray(spec.cloud.origin)).max())
    if diff > ORIGIN_TOLERANCE_M:
        return InvalidInputError(
            f"the layout target of record {record.get('id')} is in the frame of a cloud with origin {stored}, the "
            f"cloud given has origin {[float(v) for v in spec.cloud.origin]} ({diff:.3g} m apart); evaluate on "
            "the clouds the targets were written with (--frames-root <write_point_task_data folder>)",
            sample_id=record.get("id"), input=str(spec.provenance.get("path")))
    return None


class PointsEvalBackend:
    """The eval runner's ``points`` backend (module docstring)."""

    def __init__(self, model: Mapping[str, Any]):
        import torch

        from posevlm.models.point_lm import PointCloudLM

        self.config = PointsBackendConfig.from_model(model)
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            lm = PointCloudLM.from_pretrained(self.config.model, dtype=getattr(torch, self.config.dtype))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the PointCloudLM checkpoint {self.config.model}: {exc}",
                                 model=self.config.model) from exc
        if lm.tokenizer is None:
            raise ModelLoadError(f"{self.config.model} has no tokenizer files; save the PointCloudLM with its "
                                 "tokenizer", model=self.config.model)
        self.model = lm.to(device).eval()
        self.tokenizer = lm.tokenizer
        self.info = {"backend": "points", "config": dict(model), "device": str(device),
                     "point_lm": lm.config.to_dict(),
                     "mixed_rope3d": getattr(lm.decoder.config, "posevlm_mixed_rope3d", None),
                     "chat_template": getattr(self.tokenizer, "chat_template", None) is not None}

    def generate(self, batch: Sequence[tuple[dict, str, Any]], generation=None) -> list[Any]:
        """One ``{"text", "video_grid_thw": None, "n_visual_tokens": T_b}`` (or a ``SampleError``) per item; items
        of one runner batch share the scene's cloud."""
        import torch

        from posevlm.eval.prompts import GenerationSettings
        from posevlm.models.point_lm import point_prompt

        settings = generation or GenerationSettings()
        kwargs = settings.generate_kwargs()
        if self.config.max_new_tokens is not None:
            kwargs["max_new_tokens"] = min(int(kwargs["max_new_tokens"]), self.config.max_new_tokens)
        out: list[Any] = [None] * len(batch)
        todo = []
        for k, (record, prompt, spec) in enumerate(batch):
            if not hasattr(spec, "cloud"):
                raise ConfigError("the points backend reads point clouds: run posevlm eval with --frames point_cloud",
                                  field="frames.source", value=getattr(spec, "source", None))
            problem = layout_origin_problem(record, spec)
            if problem is None:
                todo.append(k)
            else:
                out[k] = problem
        tok = self.tokenizer
        use_template = getattr(tok, "chat_template", None) is not None
        for start in range(0, len(todo), self.config.batch_size):
            rows = todo[start:start + self.config.batch_size]
            inputs = self.model.prepare([point_prompt(batch[k][1]) for k in rows], [batch[k][2].cloud for k in rows],
                                        padding_side="left", chat_template=use_template)
            eos = tok.eos_token_id
            pad = tok.pad_token_id if tok.pad_token_id is not None else eos
            with torch.inference_mode():
                ids = self.model.generate(**inputs, **kwargs, pad_token_id=pad, eos_token_id=eos)
            new = ids[:, inputs["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True)
            counts = inputs["points"].token_counts.tolist()
            for k, text, count in zip(rows, texts, counts):
                out[k] = {"text": text, "video_grid_thw": None, "n_visual_tokens": int(count)}
        return out


def _from_cli(values: Mapping[str, Any]) -> dict[str, Any]:
    model = values.get("model")
    if not model:
        raise ConfigError("--backend points needs --model (a PointCloudLM checkpoint directory)", field="model")
    out = {"name": str(model).rstrip("/").rsplit("/", 1)[-1], "model": str(model),
           "dtype": values.get("dtype") if values.get("dtype") not in (None, "auto") else "float32",
           "batch_size": int(values.get("batch_size") or 1)}
    return {**out, **dict(values.get("set") or {})}


def _check(model: Mapping[str, Any], frames: Mapping[str, Any]) -> list[str]:
    problems = []
    if frames.get("source") != "point_cloud":
        problems.append(f"the points backend reads point clouds: frames.source must be point_cloud (posevlm eval "
                        f"--frames point_cloud), not {frames.get('source')!r}")
    try:
        PointsBackendConfig.from_model(model)
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


BACKEND = BackendSpec("points", PointsEvalBackend, "a PointCloudLM checkpoint (stock Qwen2 / Qwen3 decoder + point "
                      "encoder + MixedRoPE3D) answering from each scene's point cloud (--frames point_cloud)",
                      from_cli=_from_cli, check=_check, cli_options=("model", "dtype"))

