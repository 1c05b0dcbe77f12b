"""ChatML tokenisation of a training conversation with assistant-only labels (spec models.md §3.1).

Notation: L tokens.

Text (every token string and id comes from the tokenizer, never hard-coded)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n        (the layout's default system turn, below)
    <|im_start|>user\\n...<video placeholder>...<|im_end|>\\n
    <|im_start|>assistant\\n<answer><|im_end|>\\n

The text is what posevlm's evaluation feeds the same model (``posevlm.eval.backends.hf``: the checkpoint's chat
template on ``[{"type": "video"}, {"type": "text", ...}]``, then its processor with the video metadata), one
layout per model family (tested live against the processor of a tiny checkpoint of each):

* ``qwen2_5`` (Qwen2.5-VL and Spatial-MLLM): a ``<video>`` tag becomes ``<|vision_start|>`` + ``<|video_pad|>``
  x n + ``<|vision_end|>``, n = t*h*w / merge² of that video's grid (``<image>``: ``<|image_pad|>``); the default
  system turn is ``You are a helpful assistant.`` (the template adds it).
* ``qwen3`` (Qwen3-VL): the template writes ``<|vision_start|><|video_pad|><|vision_end|>`` and the installed
  processor (transformers 5.23 ``Qwen3VLProcessor.replace_video_token``) replaces the ``<|video_pad|>`` by, per
  temporal patch, ``<{t:.1f} seconds>`` + ``<|vision_start|>`` + ``<|video_pad|>`` x (h*w / merge²) +
  ``<|vision_end|>``: the per-patch blocks sit *inside* the template's own markers (the Qwen3-VL releases
  replaced the whole marker triple instead; the text here follows the installed processor, as the evaluation
  does). The timestamps ``t`` (:func:`posevlm.qwen_vision.qwen3_timestamps`) come from the video metadata the
  evaluation hands the processor (source frame ids / fps, or qwen-vl-utils' list form when the fps is unknown;
  :func:`posevlm.eval.backends._qwen_video.video_metadata`). Images as ``qwen2_5``. No default system turn (the
  Qwen3-VL template adds none).

``mm_token_type_ids`` is 2 on ``<|video_pad|>``, 1 on ``<|image_pad|>`` and 0 elsewhere (markers and timestamp
text included), as the processor's.

Extra video tokens (``ChatFormat.extra_video_tokens`` = e, a Spatial-MLLM connector that adds tokens:
``sequence_cat``, e = 1): each video gets e * n more ``<|video_pad|>`` right after its last pad (Qwen2.5-VL: at the
end of its block; Qwen3-VL: at the end of the last temporal patch's block), the text the hf eval backend feeds such
a model (``SpatialMLLM.expand_inputs`` / ``posevlm.models.spatial_mllm.processing.expand_video_pads``).

Labels (the rule, pinned by a golden test): ``labels[i] = input_ids[i]`` for the tokens of each assistant
turn's content and the ``<|im_end|>`` that closes it; -100 everywhere else: system and user turns, each
assistant header ``<|im_start|>assistant\\n``, and the ``\\n`` after the assistant's ``<|im_end|>``. The
research code masked "the first 3 tokens of each assistant turn" and trained the rest of
``<|im_start|>assistant\\n...<|im_end|>\\n``: 3 is the header's length in the real Qwen vocabulary only, and the
trailing ``\\n`` is never generated (decoding stops at ``<|im_end|>``), so here the header is masked by its
characters (any vocabulary) and the ``\\n`` is not trained. Labels are found from the tokenizer's character
offsets over the whole text (tokenised once, as the processor does); a token straddling the header/content
boundary would be masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from posevlm.errors import ConfigError
from posevlm.eval.errors import InvalidInputError
from posevlm.train.errors import NoAssistantTurnError, SampleTooLongError
from posevlm.train.records import IMAGE_TAG, VIDEO_TAG, Turn

__all__ = ["IGNORE_INDEX", "DEFAULT_SYSTEM_PROMPT", "TEMPLATE_SYSTEM_PROMPT", "LAYOUT_SYSTEM_PROMPTS", "MM_TOKEN_TYPES",
           "ChatFormat", "SpecialTokens", "Tokenized", "render_chatml", "tokenize_conversation", "video_placeholder"]

IGNORE_INDEX = -100
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
#: ``mm_token_type_ids`` values (transformers' processors): text 0, image 1, video 2.
MM_TOKEN_TYPES = {"text": 0, "image": 1, "video": 2}
_TAGS = re.compile(f"({re.escape(VIDEO_TAG)}|{re.escape(IMAGE_TAG)})")
#: ``system_prompt`` value meaning "the system turn the layout's chat template adds when a conversation has none".
TEMPLATE_SYSTEM_PROMPT = "auto"
#: That system turn per layout: Qwen2.5-VL's template adds one, Qwen3-VL's none.
LAYOUT_SYSTEM_PROMPTS: dict[str, str | None] = {"qwen2_5": DEFAULT_SYSTEM_PROMPT, "qwen3": None}


@dataclass(frozen=True)
class ChatFormat:
    """How a conversation becomes ChatML for a model family. ``layout``: the family's position layout
    (``qwen2_5``: Qwen2.5-VL and models built on it; ``qwen3``: Qwen3-VL, per-patch timestamps; module docstring).
    ``system_prompt``: added as a system turn when the conversation does not start with one (None: never;
    ``auto``, the default: the layout's chat-template default, :data:`LAYOUT_SYSTEM_PROMPTS`, resolved here).
    ``extra_video_tokens``: e extra pads per merged video token after each video (module docstring; 0: none)."""

    layout: str = "qwen2_5"
    system_prompt: str | None = TEMPLATE_SYSTEM_PROMPT
    extra_video_tokens: int = 0

    def __post_init__(self) -> None:
        if self.layout not in LAYOUT_SYSTEM_PROMPTS:
            raise ConfigError(f"layout must be one of {tuple(LAYOUT_SYSTEM_PROMPTS)}; got {self.layout!r}",
                              field="layout", value=self.layout)
        e = self.extra_video_tokens
        if isinstance(e, bool) or not isinstance(e, int) or e < 0:
            raise ConfigError(f"extra_video_tokens={e!r} (an int >= 0: extra pads per merged video token)",
                              field="extra_video_tokens", value=e)
        if self.system_prompt == TEMPLATE_SYSTEM_PROMPT:
            object.__setattr__(self, "system_prompt", LAYOUT_SYSTEM_PROMPTS[self.layout])

    @classmethod
    def for_family(cls, family: str, **overrides: Any) -> "ChatFormat":
        """The format of a ``posevlm.models.families`` family name (its ``layout``)."""
        from posevlm.models.families import model_families

        return cls(layout=model_families.get(family).layout, **overrides)


@dataclass(frozen=True)
class SpecialTokens:
    """The ChatML and vision token strings of a tokenizer and their ids."""

    im_start: str
    im_end: str
    vision_start: str
    vision_end: str
    video_pad: str
    image_pad: str
    ids: dict[str, int]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialTokens":
        """Qwen's token strings (the tokenizer's ``video_token`` / ``image_token`` when it names them), their ids
        looked up in the tokenizer. Raises ConfigError if one is not a single known token."""
        names = {"im_start": "<|im_start|>", "im_end": "<|im_end|>", "vision_start": "<|vision_start|>",
                 "vision_end": "<|vision_end|>", "video_pad": getattr(tokenizer, "video_token", None) or "<|video_pad|>",
                 "image_pad": getattr(tokenizer, "image_token", None) or "<|image_pad|>"}
        ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in names.items()}
        unk = getattr(tokenizer, "unk_token_id", None)
        missing = [names[k] for k, i in ids.items() if i is None or i == unk]
        if missing:
            raise ConfigError(f"the tokenizer has no token(s) {missing}; pass the tokenizer of a Qwen-VL checkpoint",
                              field="tokenizer")
        return cls(**names, ids=ids)


@dataclass(frozen=True)
class Tokenized:
    """One tokenised conversation. ``input_ids``, ``labels``, ``mm_token_type_ids``: (L,) int64; ``text``: the
    ChatML text with the vision placeholders expanded."""

    input_ids: Tensor
    labels: Tensor
    mm_token_type_ids: Tensor
    text: str

    @property
    def n_trained(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def video_placeholder(tokens: SpecialTokens, n_tokens: int, timestamps: Sequence[float] | None = None,
                      extra: int = 0) -> str:
    """The text one ``<video>`` tag becomes (module docstring): ``qwen2_5`` (``timestamps`` None): the markers
    around ``n_tokens`` pads; ``qwen3``: the template's markers around one ``<t seconds>`` + marked block of
    ``n_tokens / T`` pads per temporal patch (T = ``len(timestamps)``, which must divide ``n_tokens``). ``extra``:
    ``extra * n_tokens`` more pads after the last one."""
    more = tokens.video_pad * (extra * n_tokens)
    if timestamps is None:
        return tokens.vision_start + tokens.video_pad * n_tokens + more + tokens.vision_end
    if not timestamps or n_tokens % len(timestamps):
        raise InvalidInputError(f"{n_tokens} video tokens cannot split into {len(timestamps)} temporal patches; pass "
                                "one timestamp per temporal patch (grid t) of the video")
    pads = tokens.video_pad * (n_tokens // len(timestamps))
    blocks = [f"<{t:.1f} seconds>{tokens.vision_start}{pads}" for t in timestamps]
    return tokens.vision_start + tokens.vision_end.join(blocks) + more + tokens.vision_end + tokens.vision_end


def render_chatml(turns: Sequence[Turn], tokens: SpecialTokens, *, video_tokens: Sequence[int] = (),
                  image_tokens: Sequence[int] = (), video_timestamps: Sequence[Sequence[float]] = (),
                  chat: ChatFormat = ChatFormat()) -> tuple[str, list[tuple[int, int]]]:
    """(ChatML text, trained character spans ``[start, end)``: each assistant content + its ``<|im_end|>``).

    ``video_tokens[k]`` / ``image_tokens[k]``: placeholder count of the k-th ``<video>`` / ``<image>`` tag.
    ``video_timestamps[k]``: the seconds of each temporal patch of the k-th video (layout ``qwen3`` only, where
    it is required; :func:`posevlm.qwen_vision.qwen3_timestamps`).
    Raises InvalidInputError when the tags, the counts and the timestamps disagree.
    """
    turns = list(turns)
    if chat.system_prompt is not None and (not turns or turns[0].role != "system"):
        turns.insert(0, Turn("system", chat.system_prompt))
    counts = {VIDEO_TAG: list(video_tokens), IMAGE_TAG: list(image_tokens)}
    n_tags = {VIDEO_TAG: sum(t.text.count(VIDEO_TAG) for t in turns), IMAGE_TAG: sum(t.text.count(IMAGE_TAG)
                                                                                     for t in turns)}
    for tag, n in n_tags.items():
        if n != len(counts[tag]):
            raise InvalidInputError(f"{n} {tag} tag(s) but {len(counts[tag])} token count(s) given")
    qwen3 = chat.layout == "qwen3"
    if qwen3 and len(video_timestamps) != n_tags[VIDEO_TAG]:
        raise InvalidInputError(f"layout qwen3 writes per-patch timestamps: {n_tags[VIDEO_TAG]} {VIDEO_TAG} tag(s) "
                                f"but {len(video_timestamps)} timestamp list(s) given")
    if not qwen3 and len(video_timestamps):
        raise InvalidInputError(f"video_timestamps are for layout qwen3 (Qwen3-VL); layout {chat.layout} has none")
    videos = [video_placeholder(tokens, n, video_timestamps[k] if qwen3 else None, chat.extra_video_tokens)
              for k, n in enumerate(counts[VIDEO_TAG])]
    placeholders = {VIDEO_TAG: iter(videos),
                    IMAGE_TAG: iter(tokens.vision_start + tokens.image_pad * n + tokens.vision_end
                                    for n in counts[IMAGE_TAG])}
    text, spans = [], []
    length = 0
    for turn in turns:
        body = [next(placeholders[piece]) if piece in placeholders else piece for piece in _TAGS.split(turn.text)]
        header, content = f"{tokens.im_start}{turn.role}\n", "".join(body)
        if turn.role == "assistant":
            start = length + len(header)
            spans.append((start, start + len(content) + len(tokens.im_end)))
        chunk = f"{header}{content}{tokens.im_end}\n"
        text.append(chunk)
        length += len(chunk)
    return "".join(text), spans


def tokenize_conversation(turns: Sequence[Turn], tokenizer, *, video_tokens: Sequence[int] = (),
                          image_tokens: Sequence[int] = (), video_timestamps: Sequence[Sequence[float]] = (),
                          chat: ChatFormat = ChatFormat(), max_length: int | None = None,
                          tokens: SpecialTokens | None = None) -> Tokenized:
    """Tokenise a conversation with assistant-only labels (module docstring).

    Args:
        turns: the record's turns (tags ``<video>`` / ``<image>`` where the media go).
        tokenizer: a fast (offset-reporting) tokenizer of the checkpoint.
        video_tokens / image_tokens: placeholder count per video / image (``prod(grid_thw) // merge**2``).
        video_timestamps: layout ``qwen3``: seconds of each temporal patch per video (:func:`render_chatml`).
        max_length: ``model_max_length``; longer samples raise (never truncated).
    Raises:
        NoAssistantTurnError, SampleTooLongError, InvalidInputError (tags vs counts, or literal vision tokens in
        the text).
    """
    if not any(t.role == "assistant" for t in turns):
        raise NoAssistantTurnError("the conversation has no assistant turn, so nothing would be trained; fix or "
                                   "drop the record")
    tokens = tokens or SpecialTokens.from_tokenizer(tokenizer)
    text, spans = render_chatml(turns, tokens, video_tokens=video_tokens, image_tokens=image_tokens,
                                video_timestamps=video_timestamps, chat=chat)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise ConfigError(f"{type(tokenizer).__name__} reports no character offsets; load the fast tokenizer "
                          "(AutoTokenizer, use_fast=True)", field="tokenizer") from exc
    ids = torch.tensor(enc["input_ids"], dtype=torch.int64)
    if max_length is not None and ids.numel() > max_length:
        raise SampleTooLongError(f"{ids.numel()} tokens > model_max_length {max_length} ({sum(video_tokens)} video, "
                                 f"{sum(image_tokens)} image placeholders); use fewer frames / pixels or a larger "
                                 "model_max_length (samples are never truncated)")
    offsets = torch.tensor(enc["offset_mapping"], dtype=torch.int64).reshape(-1, 2)
    bounds = torch.tensor(spans, dtype=torch.int64).reshape(-1, 2)
    trained = ((offsets[:, :1] >= bounds[:, 0]) & (offsets[:, 1:] <= bounds[:, 1])).any(-1)
    labels = torch.where(trained, ids, torch.full_like(ids, IGNORE_INDEX))
    is_video, is_image = ids == tokens.ids["video_pad"], ids == tokens.ids["image_pad"]
    n_video = sum(video_tokens) * (1 + chat.extra_video_tokens)
    if int(is_video.sum()) != n_video or int(is_image.sum()) != sum(image_tokens):
        raise InvalidInputError(f"the text holds {int(is_video.sum())} {tokens.video_pad} / {int(is_image.sum())} "
                                f"{tokens.image_pad} tokens for {n_video} / {sum(image_tokens)} placeholders: "
                                "a turn contains vision token strings literally; remove them from the record")
    mm = is_video.long() * MM_TOKEN_TYPES["video"] + is_image.long() * MM_TOKEN_TYPES["image"]
    return Tokenized(ids, labels, mm, text)
