"""lmms-eval requests -> posevlm frames, prompts and generation settings (no lmms-eval import: testable alone).

lmms-eval hands a simple model ``generate_until`` requests whose ``args`` are
``(context, gen_kwargs, doc_to_visual, doc_id, task, split)``; the document is
``task_dict[task][split][doc_id]``. For each request:

* **frames**: with ``frames_root`` (a ``posevlm sample`` slug folder), the document's
  ``<dataset>/<scene>`` folder and its ``selected_frames.json`` (cameras for the pose-aware modes), taken
  from the document's ``dataset_key`` / ``scene_key`` fields (VSI-Bench: ``dataset``, ``scene_name``);
  without it, the task's own ``doc_to_visual`` video decoded uniformly (``num_frames``, ``frame_rule``;
  stock positions only, as videos carry no cameras).
* **prompt**: the task's ``context`` (its ``doc_to_text``), unchanged: the same text lmms-eval's own models get.
* **generation**: ``gen_kwargs`` -> ``GenerationSettings``: greedy unless ``do_sample`` or ``temperature > 0``
  (then temperature / top_p / top_k apply); ``max_new_tokens`` (default 16), ``num_beams``,
  ``repetition_penalty``; ``until`` strings cut the answer at their first occurrence (the harness's stop rule).
  Other keys are reported in ``ignored`` and change nothing.

Requests are answered grouped by frames (one decode per scene, ``FrameCache``) and generation settings, and
returned in request order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from posevlm.errors import ConfigError
from posevlm.eval.errors import InvalidInputError, SampleError
from posevlm.eval.frames import (
    COUNT_POLICIES, UNIFORM_RULES, FolderManifest, FrameCache, Mp4Uniform, check_record_names,
)  # fmt: skip
from posevlm.eval.prompts import GenerationSettings

__all__ = ["MODEL_ID", "LmmsModelConfig", "PlannedRequest", "generation_settings", "plan_request",
           "answer_requests", "cut_at_stops"]

MODEL_ID = "posevlm"
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_SLUG_N = re.compile(r"__n(\d+)(?=__|$)")
_GREEDY_IGNORED = ("temperature", "top_p", "top_k")
_GENERATION_KEYS = ("max_new_tokens", "do_sample", "num_beams", "repetition_penalty", "until", *_GREEDY_IGNORED)


def _hf_fields() -> tuple[str, ...]:
    from posevlm.eval.backends.hf import HFBackendConfig

    return tuple(f.name for f in fields(HFBackendConfig) if f.name not in ("model", "schema_version"))


@dataclass(frozen=True)
class LmmsModelConfig:
    """``--model_args`` of ``lmms-eval --model posevlm`` (``key=value`` pairs), validated.

    Attributes:
        pretrained: checkpoint directory or hub id (``HFBackendConfig.model``).
        frames_root: a ``posevlm sample`` slug folder (``<dataset>/<scene>/selected_frames.json``), or None to
            decode the task's videos.
        num_frames: frames per sample; default: the slug's ``__n<N>`` with ``frames_root``, else 16.
        frame_policy: a manifest with fewer frames: ``fail_sample`` | ``pad_repeat_last`` | ``allow_fewer``.
        frame_rule: uniform rule for videos: ``round_full`` | ``floor_full`` | ``floor_pool128``.
        dataset_key, scene_key: document fields naming the scene folder; ``dataset``: the folder when the
            documents have no dataset field.
        on_error: a sample whose frames or generation fail: ``raise`` (stop the run, naming it) or ``empty``
            (answer "" and warn).
        hf: every other ``HFBackendConfig`` option (positions, camera_attention, pose_bias, dtype, device,
            batch_size, min_pixels, ...); dict-valued options may be given as JSON.
    """

    pretrained: str
    frames_root: str | None = None
    num_frames: int | None = None
    frame_policy: str = "fail_sample"
    frame_rule: str = "round_full"
    dataset_key: str = "dataset"
    scene_key: str = "scene_name"
    dataset: str | None = None
    on_error: str = "raise"
    hf: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.pretrained, str) or not self.pretrained:
            problems.append(f"pretrained={self.pretrained!r} (a checkpoint directory or hub id)")
        n = self.num_frames
        if self.frames_root is not None and n is None:
            m = _SLUG_N.search(Path(self.frames_root).name)
            if m is None:
                problems.append(f"frames_root={self.frames_root!r} is not a `posevlm sample` slug folder (no __n<N> "
                                "in its name); pass num_frames=N")
            else:
                object.__setattr__(self, "num_frames", n := int(m.group(1)))
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            problems.append(f"num_frames={n!r} (an int >= 1)")
        choices = {"frame_policy": COUNT_POLICIES, "frame_rule": UNIFORM_RULES, "on_error": ("raise", "empty")}
        problems += [f"{k}={getattr(self, k)!r} (allowed: {', '.join(v)})" for k, v in choices.items()
                     if getattr(self, k) not in v]
        if problems:
            raise ConfigError("invalid --model_args for lmms-eval --model posevlm: " + "; ".join(problems),
                              field="model_args")

    @classmethod
    def from_model_args(cls, args: Mapping[str, Any]) -> "LmmsModelConfig":
        """From lmms-eval's parsed ``--model_args`` plus its ``batch_size`` / ``device`` / ``max_batch_size``
        (None values dropped). Unknown keys raise ``ConfigError`` listing the known ones."""
        own = {f.name for f in fields(cls)} - {"hf"}
        hf_keys = set(_hf_fields())
        args = {k: v for k, v in args.items() if v is not None and k != "max_batch_size"}
        unknown = sorted(set(args) - own - hf_keys)
        if unknown:
            import difflib

            known = sorted(own | hf_keys)
            hints = [f"{k!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, 1))
                                  else "") for k in unknown]
            raise ConfigError(f"unknown --model_args key(s) {', '.join(hints)} for lmms-eval --model posevlm; known: "
                              f"{', '.join(known)}", field="model_args", value=unknown)
        hf = {k: _json_value(k, v) for k, v in args.items() if k in hf_keys}
        if "batch_size" in hf:
            hf["batch_size"] = _int(hf["batch_size"], "batch_size")
        config = cls(**{k: v for k, v in args.items() if k in own}, hf=hf)
        config.backend_config()  # validate the backend options now, before any model loads
        return config

    def backend_config(self):
        """The ``HFBackendConfig`` of this model (raises ``ConfigError`` for invalid options, and when a pose mode
        has no cameras: pose positions and camera attention need ``frames_root``)."""
        from posevlm.eval.backends import backends
        from posevlm.eval.backends.hf import HFBackendConfig

        cfg = HFBackendConfig(model=self.pretrained, **dict(self.hf))
        model = {k: v for k, v in cfg.to_dict().items() if v is not None}
        problems = backends.get("hf").check(model, {"source": "folder_manifest" if self.frames_root else "mp4_uniform"})
        if problems:
            raise ConfigError(f"{'; '.join(problems)}. With lmms-eval: pass --model_args frames_root=<a posevlm sample "
                              "slug folder> (its manifests carry the cameras)", field="model_args")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "hf"}, "hf": dict(self.hf)}


def _json_value(key: str, value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        import json

        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--model_args {key}={value!r} is not valid JSON ({exc})", field=key) from exc
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ConfigError(f"{name}={value!r} must be an int >= 1 (posevlm has no automatic batch size)", field=name)


def generation_settings(gen_kwargs: Mapping[str, Any]) -> tuple[GenerationSettings, tuple[str, ...], tuple[str, ...]]:
    """``(settings, until, ignored keys)`` of an lmms-eval ``gen_kwargs`` dict (see the module docstring)."""
    kw = dict(gen_kwargs or {})
    temperature = kw.get("temperature")
    sample = bool(kw.get("do_sample")) or (isinstance(temperature, (int, float)) and temperature > 0)
    settings = GenerationSettings(
        max_new_tokens=int(kw.get("max_new_tokens") or 16), do_sample=sample,
        num_beams=int(kw.get("num_beams") or 1), repetition_penalty=kw.get("repetition_penalty"),
        **({k: kw.get(k) for k in _GREEDY_IGNORED} if sample else {}),
    )
    until = kw.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    if not all(isinstance(u, str) for u in until):
        raise ConfigError(f"gen_kwargs until={kw.get('until')!r} must be a string or a list of strings",
                          field="until", value=kw.get("until"))
    ignored = tuple(sorted(k for k in kw if k not in _GENERATION_KEYS))
    return settings, tuple(u for u in until if u), ignored


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string (the whole text when none occurs)."""
    cut = min((i for u in until if (i := text.find(u)) >= 0), default=len(text))
    return text[:cut]


@dataclass(frozen=True)
class PlannedRequest:
    """One request, resolved: its position, sample id (``task/split/doc_id``), frame request (the FrameCache key),
    prompt, generation settings and stop strings."""

    index: int
    sample_id: str
    frames: Any
    prompt: str
    generation: GenerationSettings
    until: tuple[str, ...]
    ignored: tuple[str, ...] = ()


def _doc_field(doc: Mapping[str, Any], key: str, sample_id: str) -> str:
    value = doc.get(key) if isinstance(doc, Mapping) else None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"document {sample_id} has no {key!r} string field naming its scene (fields: "
                                f"{', '.join(sorted(doc)) if isinstance(doc, Mapping) else type(doc).__name__}); set "
                                "--model_args dataset_key= / scene_key= (or dataset=) to the task's field names",
                                sample_id=sample_id)
    return value


def plan_request(index: int, args: Sequence[Any], task_dict: Mapping[str, Any],
                 config: LmmsModelConfig) -> PlannedRequest:
    """Resolve one ``generate_until`` request's ``args`` against ``task_dict`` (the documents lmms-eval loaded).

    Raises:
        SampleError: the document does not name a scene (``InvalidInputError``), or (no ``frames_root``) its
            visual is not one video file.
        ConfigError: malformed ``gen_kwargs``.
    """
    if len(args) != 6:
        raise ConfigError(f"request {index}: expected generate_until args (context, gen_kwargs, doc_to_visual, "
                          f"doc_id, task, split); got {len(args)} values. lmms-eval --model posevlm is a simple "
                          "(not chat) model", field="requests")
    context, gen_kwargs, doc_to_visual, doc_id, task, split = args
    sample_id = f"{task}/{split}/{doc_id}"
    doc = task_dict[task][split][doc_id]
    settings, until, ignored = generation_settings(gen_kwargs)
    if config.frames_root is not None:
        root = Path(config.frames_root)
        if config.dataset is not None and config.dataset_key not in doc:
            dataset = config.dataset
        else:
            dataset = _doc_field(doc, config.dataset_key, sample_id)
        scene = _doc_field(doc, config.scene_key, sample_id)
        check_record_names(dataset, scene, root, "frames_root")
        frames = FolderManifest(str(root / dataset / scene), config.num_frames, config.frame_policy)
    else:
        visuals = doc_to_visual(doc) if callable(doc_to_visual) else doc_to_visual
        videos = [v for v in (visuals or []) if isinstance(v, (str, Path)) and str(v).lower().endswith(_VIDEO_SUFFIXES)]
        if len(videos) != 1 or len(visuals) != 1:
            kinds = ", ".join(type(v).__name__ for v in visuals or [])
            raise InvalidInputError(f"document {sample_id}: without frames_root posevlm answers from one video file; "
                                    f"the task gave {len(visuals or [])} visual(s) ({kinds}). Pass --model_args "
                                    "frames_root=<sampled slug folder>", sample_id=sample_id)
        frames = Mp4Uniform(str(videos[0]), config.num_frames or 16, config.frame_rule)  # type: ignore[arg-type]
    return PlannedRequest(index, sample_id, frames, str(context), settings, until, ignored)


def answer_requests(plans: Sequence[PlannedRequest], generate_each: Callable[..., list], cache: FrameCache, *,
                    on_error: str = "raise", warn: Callable[[str], None] | None = None) -> list[str]:
    """Answer planned requests, grouped by (frames, settings) so frames decode once per scene; returns the texts
    in ``plans`` order, each cut at its stop strings.

    ``generate_each(items, generation=..., sample_ids=...)`` is ``HFBackend.generate_each`` (``(prompt, FrameSpec)``
    items -> results with ``.text`` or ``SampleError``). A failed sample raises (``on_error="raise"``) or answers ""
    with a warning (``"empty"``).
    """
    out: list[str | None] = [None] * len(plans)
    groups: dict[tuple[Any, GenerationSettings], list[PlannedRequest]] = {}
    for p in plans:
        groups.setdefault((p.frames, p.generation), []).append(p)

    def failed(p: PlannedRequest, exc: BaseException) -> None:
        if on_error == "raise":
            raise exc
        message = f"posevlm: {p.sample_id} answered '' after an error: {exc}"
        if warn is None:
            import warnings

            warnings.warn(message, stacklevel=3)
        else:
            warn(message)
        out[p.index] = ""

    for (request, settings), members in groups.items():
        try:
            spec = cache.get(request)
        except SampleError as exc:
            for p in members:
                failed(p, exc.for_sample(p.sample_id))
            continue
        results = generate_each([(p.prompt, spec) for p in members], generation=settings,
                                sample_ids=[p.sample_id for p in members])
        for p, r in zip(members, results):
            if isinstance(r, SampleError):
                failed(p, r)
            else:
                out[p.index] = cut_at_stops(r.text, p.until)
    return [str(t) for t in out]
