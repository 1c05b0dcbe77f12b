"""Prompt presets: named, versioned ways to turn a VSI-Bench record into the user text, each with its
default decoding settings (eval.md §4).

=====================  ==========================================================================
preset                 text (MCA / NA; ``\\n`` is a newline)
=====================  ==========================================================================
``official``           lmms-eval: ``pre\\nquestion\\nOptions:\\nA. x\\nB. y\\npost_mca`` /
                       ``pre\\nquestion\\npost_na`` with pre = "These are frames of a video."
``spatial_mllm_sft``   Spatial-MLLM fork/upstream: the same without the pre-prompt
``answer_tags``        Spatial-MLLM paper era: ``question`` + ``Options:\\n`` + each option and
                       ``\\n`` + " Please answer ... within the <answer> </answer> tags." (no
                       separator before ``Options``, as in that code)
``point_cloud``        ``official`` with pre = "This is a point cloud of a room." (questions over
                       a point cloud: ``synthetic_point_qa``; the ``points`` backend puts the
                       point span before the text)
=====================  ==========================================================================

Every preset decodes greedily by default (``do_sample=False``); the fork's near-greedy sampling is
``FORK_SAMPLING``, to be passed explicitly. The preset's ``to_dict()`` (name, version, strings,
decoding) belongs in the run fingerprint; bump ``version`` whenever the rendered text changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

from posevlm.errors import ConfigError
from posevlm.eval.metrics import question_kind
from posevlm.registry import Registry

__all__ = [
    "OFFICIAL_PRE_PROMPT",
    "POINT_CLOUD_PRE_PROMPT",
    "OFFICIAL_MCA_POST_PROMPT",
    "OFFICIAL_NA_POST_PROMPT",
    "ANSWER_TAGS_MCA_POST_PROMPT",
    "ANSWER_TAGS_NA_POST_PROMPT",
    "GenerationSettings",
    "FORK_SAMPLING",
    "PromptPreset",
    "prompts",
    "get_prompt",
]

OFFICIAL_PRE_PROMPT = "These are frames of a video."
POINT_CLOUD_PRE_PROMPT = "This is a point cloud of a room."
OFFICIAL_MCA_POST_PROMPT = "Answer with the option's letter from the given choices directly."
OFFICIAL_NA_POST_PROMPT = "Please answer the question using a single word or phrase."
ANSWER_TAGS_MCA_POST_PROMPT = (
    " Please answer with the option's letter from the given choices (e.g., A, B, etc.) within the "
    "<answer> </answer> tags."
)
ANSWER_TAGS_NA_POST_PROMPT = (
    " Please answer with the only numerical value (e.g., 42, 3.14, etc.) within the <answer> </answer> tags."
)


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings passed to ``model.generate`` (a serialisable subset of transformers'
    ``GenerationConfig``). Greedy by default: ``do_sample=False``, one beam, no temperature."""

    max_new_tokens: int = 16
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_beams: int = 1
    repetition_penalty: float | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        problems = []
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            problems.append(f"max_new_tokens must be an int >= 1; got {self.max_new_tokens!r}")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            problems.append(f"num_beams must be an int >= 1; got {self.num_beams!r}")
        if not self.do_sample and any(v is not None for v in (self.temperature, self.top_p, self.top_k)):
            problems.append("temperature/top_p/top_k only apply with do_sample=True; leave them None "
                            "for greedy")
        if self.temperature is not None and self.temperature <= 0:
            problems.append(f"temperature must be > 0; got {self.temperature} (greedy is do_sample=False)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1]; got {self.top_p}")
        if problems:
            raise ConfigError("invalid GenerationSettings: " + "; ".join(problems), field="generation")

    @property
    def greedy(self) -> bool:
        return not self.do_sample and self.num_beams == 1

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate``; unset optional values are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GenerationSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown GenerationSettings key(s) {unknown}; known: {sorted(known)}",
                              field="generation")
        return cls(**dict(data))


#: The Spatial-MLLM fork's decoding (``do_sample=True, temperature=0.1, top_p=0.001``, 1024 tokens):
#: near-greedy but sampled and unseeded there. Opt in explicitly; never a default.
FORK_SAMPLING = GenerationSettings(max_new_tokens=1024, do_sample=True, temperature=0.1, top_p=0.001)


def _record_fields(record: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(question, kind, options) of a VSI-Bench record; ``ConfigError`` names a missing/bad field."""
    for key in ("question", "question_type"):
        if not isinstance(record.get(key), str):
            raise ConfigError(f"record {record.get('id')!r}: field {key!r} must be a string; got "
                              f"{record.get(key)!r}", field=key, value=record.get(key))
    kind = question_kind(record["question_type"])
    options = record.get("options")
    if kind == "MCA":
        if not options or not all(isinstance(o, str) for o in options):
            raise ConfigError(
                f"record {record.get('id')!r}: a multiple-choice question needs a non-empty list of option "
                f"strings in 'options' (pre-lettered, e.g. 'A. left'); got {options!r}", field="options",
                value=options)
        return record["question"], kind, list(options)
    return record["question"], kind, []


def _render_lmms(record: Mapping[str, Any], pre_prompt: str | None) -> str:
    question, kind, options = _record_fields(record)
    head = [] if pre_prompt is None else [pre_prompt]
    if kind == "MCA":
        return "\n".join([*head, question, "Options:\n" + "\n".join(options), OFFICIAL_MCA_POST_PROMPT])
    return "\n".join([*head, question, OFFICIAL_NA_POST_PROMPT])


def _render_official(record: Mapping[str, Any]) -> str:
    return _render_lmms(record, OFFICIAL_PRE_PROMPT)


def _render_point_cloud(record: Mapping[str, Any]) -> str:
    return _render_lmms(record, POINT_CLOUD_PRE_PROMPT)


def _render_spatial_mllm_sft(record: Mapping[str, Any]) -> str:
    return _render_lmms(record, None)


def _render_answer_tags(record: Mapping[str, Any]) -> str:
    question, kind, options = _record_fields(record)
    if kind == "MCA":
        return question + "Options:\n" + "".join(o + "\n" for o in options) + ANSWER_TAGS_MCA_POST_PROMPT
    return question + ANSWER_TAGS_NA_POST_PROMPT


@dataclass(frozen=True)
class PromptPreset:
    """A named, versioned prompt: ``render(record) -> str`` plus its default ``generation`` settings.

    ``render`` takes a VSI-Bench record (``question``, ``question_type``, ``options``) and returns the
    user text placed after the video in one user turn; the chat template is the backend's business.
    """

    name: str
    version: int
    description: str
    source: str
    strings: Mapping[str, str]
    generation: GenerationSettings
    _render: Callable[[Mapping[str, Any]], str] = field(repr=False, compare=False)

    def render(self, record: Mapping[str, Any]) -> str:
        """The user text for ``record``. Raises ``ConfigError`` naming a missing or malformed field."""
        return self._render(record)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "description": self.description,
                "source": self.source, "strings": dict(self.strings), "generation": self.generation.to_dict()}


#: Prompt presets by name: ``official``, ``spatial_mllm_sft``, ``answer_tags``, ``point_cloud``.
prompts: Registry[PromptPreset] = Registry("prompt preset")


def _register(preset: PromptPreset) -> PromptPreset:
    return prompts.register(preset.name)(preset)


_register(PromptPreset(
    name="official", version=1,
    description="lmms-eval VSI-Bench prompt (the headline setting); greedy, 16 new tokens as lmms-eval",
    source="vision-x-nyu/thinking-in-space: lmms_eval/tasks/vsibench/utils.py (vsibench_doc_to_text)",
    strings={"pre_prompt": OFFICIAL_PRE_PROMPT, "mca_post_prompt": OFFICIAL_MCA_POST_PROMPT,
             "na_post_prompt": OFFICIAL_NA_POST_PROMPT, "options_header": "Options:\n", "join": "\n"},
    generation=GenerationSettings(max_new_tokens=16), _render=_render_official,
))
_register(PromptPreset(
    name="spatial_mllm_sft", version=1,
    description="Spatial-MLLM fork/upstream SFT prompt (official post-prompts, no pre-prompt); greedy, "
                "1024 tokens",
    source="Spatial-MLLM fork: src/evaluation/vsibench/eval_vsibench.py (SFT_TYPE_TEMPLATE, "
           "build_user_message)",
    strings={"mca_post_prompt": OFFICIAL_MCA_POST_PROMPT, "na_post_prompt": OFFICIAL_NA_POST_PROMPT,
             "options_header": "Options:\n", "join": "\n"},
    generation=GenerationSettings(max_new_tokens=1024), _render=_render_spatial_mllm_sft,
))
_register(PromptPreset(
    name="answer_tags", version=1,
    description="Spatial-MLLM paper-era prompt asking for <answer></answer>; greedy, 1024 tokens",
    source="Spatial-MLLM previous_version/evaluate/eval_vsibench.py (SFT_TYPE_TEMPLATE)",
    strings={"mca_post_prompt": ANSWER_TAGS_MCA_POST_PROMPT, "na_post_prompt": ANSWER_TAGS_NA_POST_PROMPT,
             "options_header": "Options:\n", "join": ""},
    generation=GenerationSettings(max_new_tokens=1024), _render=_render_answer_tags,
))

_register(PromptPreset(
    name="point_cloud", version=1,
    description="the official wording over a point cloud (pre-prompt 'This is a point cloud of a room.'); greedy, "
                "16 new tokens",
    source="posevlm (lmms-eval VSI-Bench strings with the point-cloud pre-prompt)",
    strings={"pre_prompt": POINT_CLOUD_PRE_PROMPT, "mca_post_prompt": OFFICIAL_MCA_POST_PROMPT,
             "na_post_prompt": OFFICIAL_NA_POST_PROMPT, "options_header": "Options:\n", "join": "\n"},
    generation=GenerationSettings(max_new_tokens=16), _render=_render_point_cloud,
))


def get_prompt(name: str) -> PromptPreset:
    """The preset called ``name``; unknown names raise ``ConfigError`` with a suggestion."""
    return prompts.get(name)
