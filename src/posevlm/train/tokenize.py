"""ChatML tokenisation of a training conversation with assistant-only labels (spec models.md §3.1).

Notation: L tokens.

Text (Qwen2.5-VL conventions; every token string and id comes from the tokenizer, never hard-coded)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n        (unless the record has a system turn)
    <|im_start|>user\\n...<|vision_start|><|video_pad|> x n<|vision_end|>...<|im_end|>\\n
    <|im_start|>assistant\\n<answer><|im_end|>\\n

Each ``<video>`` tag becomes ``<|vision_start|>`` + ``<|video_pad|>`` x n + ``<|vision_end|>`` with
n = t*h*w / merge² of that video's grid (``<image>``: ``<|image_pad|>``), exactly what the checkpoint's
chat template plus processor produce for ``[{"type": "video"}, {"type": "text", ...}]`` (tested live).

Labels (the rule, pinned by a golden test): ``labels[i] = input_ids[i]`` for the tokens of each assistant
turn's content and the ``<|im_end|>`` that closes it; -100 everywhere else: system and user turns, each
assistant header ``<|im_start|>assistant\\n``, and the ``\\n`` after the assistant's ``<|im_end|>``. The
research code masked "the first 3 tokens of each assistant turn" and trained the rest of
``<|im_start|>assistant\\n...<|im_end|>\\n``: 3 is the header's length in the real Qwen vocabulary only, and the
trailing ``\\n`` is never generated (decoding stops at ``<|im_end|>``), so here the header is masked by its
characters (any vocabulary) and the ``\\n`` is not trained. Labels are found from the tokenizer's character
offsets over the whole text (tokenised once, as the processor does); a token straddling the header/content
boundary would be masked.

Qwen3-VL is refused for now (``ConfigError``): its processor writes a ``<t seconds>`` timestamp before every
temporal patch pair, and transformers 5.23 nests those blocks inside the template's own
``<|vision_start|>`` / ``<|vision_end|>`` while the Qwen3-VL releases do not; training data should follow
whichever the evaluation uses, which is not settled yet.
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

__all__ = ["IGNORE_INDEX", "DEFAULT_SYSTEM_PROMPT", "MM_TOKEN_TYPES", "ChatFormat", "SpecialTokens", "Tokenized",
           "render_chatml", "tokenize_conversation"]

IGNORE_INDEX = -100
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
#: ``mm_token_type_ids`` values (transformers' processors): text 0, image 1, video 2.
MM_TOKEN_TYPES = {"text": 0, "image": 1, "video": 2}
_TAGS = re.compile(f"({re.escape(VIDEO_TAG)}|{re.escape(IMAGE_TAG)})")
_SUPPORTED_LAYOUTS = ("qwen2_5",)


@dataclass(frozen=True)
class ChatFormat:
    """How a conversation becomes ChatML for a model family. ``layout``: the family's position layout
    (``qwen2_5``: Qwen2.5-VL and models built on it; ``qwen3`` is refused, see the module docstring).
    ``system_prompt``: added as a system turn when the conversation does not start with one (None: never)."""

    layout: str = "qwen2_5"
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT

    def __post_init__(self) -> None:
        if self.layout == "qwen3":
            raise ConfigError("training data for Qwen3-VL is not supported yet: its processor writes '<t seconds>' "
                              "timestamps per temporal patch pair and transformers 5.23 nests them inside the "
                              "template's vision markers (the releases do not); train a Qwen2.5-VL-based model",
                              field="layout", value=self.layout)
        if self.layout not in _SUPPORTED_LAYOUTS:
            raise ConfigError(f"layout must be one of {_SUPPORTED_LAYOUTS}; got {self.layout!r}", field="layout",
                              value=self.layout)

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


def render_chatml(turns: Sequence[Turn], tokens: SpecialTokens, *, video_tokens: Sequence[int] = (),
                  image_tokens: Sequence[int] = (), chat: ChatFormat = ChatFormat()
                  ) -> tuple[str, list[tuple[int, int]]]:
    """(ChatML text, trained character spans ``[start, end)``: each assistant content + its ``<|im_end|>``).

    ``video_tokens[k]`` / ``image_tokens[k]``: placeholder count of the k-th ``<video>`` / ``<image>`` tag.
    Raises InvalidInputError when the tags and the counts disagree.
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
    pad = {VIDEO_TAG: tokens.video_pad, IMAGE_TAG: tokens.image_pad}
    used = {VIDEO_TAG: 0, IMAGE_TAG: 0}
    text, spans = [], []
    length = 0
    for turn in turns:
        body = []
        for piece in _TAGS.split(turn.text):
            if piece in pad:
                n = counts[piece][used[piece]]
                used[piece] += 1
                body.append(tokens.vision_start + pad[piece] * n + tokens.vision_end)
            else:
                body.append(piece)
        header, content = f"{tokens.im_start}{turn.role}\n", "".join(body)
        if turn.role == "assistant":
            start = length + len(header)
            spans.append((start, start + len(content) + len(tokens.im_end)))
        chunk = f"{header}{content}{tokens.im_end}\n"
        text.append(chunk)
        length += len(chunk)
    return "".join(text), spans


def tokenize_conversation(turns: Sequence[Turn], tokenizer, *, video_tokens: Sequence[int] = (),
                          image_tokens: Sequence[int] = (), chat: ChatFormat = ChatFormat(),
                          max_length: int | None = None, tokens: SpecialTokens | None = None) -> Tokenized:
    """Tokenise a conversation with assistant-only labels (module docstring).

    Args:
        turns: the record's turns (tags ``<video>`` / ``<image>`` where the media go).
        tokenizer: a fast (offset-reporting) tokenizer of the checkpoint.
        video_tokens / image_tokens: placeholder count per video / image (``prod(grid_thw) // merge**2``).
        max_length: ``model_max_length``; longer samples raise (never truncated).
    Raises:
        NoAssistantTurnError, SampleTooLongError, InvalidInputError (tags vs counts, or literal vision tokens in
        the text).
    """
    if not any(t.role == "assistant" for t in turns):
        raise NoAssistantTurnError("the conversation has no assistant turn, so nothing would be trained; fix or "
                                   "drop the record")
    tokens = tokens or SpecialTokens.from_tokenizer(tokenizer)
    text, spans = render_chatml(turns, tokens, video_tokens=video_tokens, image_tokens=image_tokens, chat=chat)
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
    if int(is_video.sum()) != sum(video_tokens) or int(is_image.sum()) != sum(image_tokens):
        raise InvalidInputError(f"the text holds {int(is_video.sum())} {tokens.video_pad} / {int(is_image.sum())} "
                                f"{tokens.image_pad} tokens for {sum(video_tokens)} / {sum(image_tokens)} placeholders: "
                                "a turn contains vision token strings literally; remove them from the record")
    mm = is_video.long() * MM_TOKEN_TYPES["video"] + is_image.long() * MM_TOKEN_TYPES["image"]
    return Tokenized(ids, labels, mm, text)
