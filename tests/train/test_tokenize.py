"""ChatML tokenisation: the assistant-only label rule pinned token by token on the tiny tokenizer, parity of the
input ids with the checkpoint's chat template + processor, the default system prompt per layout, the Qwen3-VL
layout (per-patch timestamps inside the template's markers, as transformers 5.23's processor writes them; its
timestamps equal the processor's), refusals."""

import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.eval.errors import InvalidInputError
from posevlm.qwen_vision import qwen3_timestamps
from posevlm.train import (
    IGNORE_INDEX, ChatFormat, NoAssistantTurnError, SampleTooLongError, Turn, tokenize_conversation,
)  # fmt: skip
from train_world import tiny_models


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_models.build_tokenizer(tiny_models.QWEN2_5_VL_CHAT_TEMPLATE)


S, U, A = "<|im_start|>", "<|im_end|>", "Ċ"  # Ċ: the byte-level symbol of "\n"
# (token, trained): trained tokens have label == input id, all others -100.
GOLDEN = [
    (S, 0), ("s", 0), ("y", 0), ("s", 0), ("t", 0), ("e", 0), ("m", 0), (A, 0),                 # system header
    ("B", 0), ("e", 0), ("Ġ", 0), ("b", 0), ("r", 0), ("i", 0), ("e", 0), ("f", 0), (".", 0), (U, 0), (A, 0),
    (S, 0), ("u", 0), ("s", 0), ("er", 0), (A, 0),                                               # user 1
    ("<|vision_start|>", 0), ("<|video_pad|>", 0), ("<|video_pad|>", 0), ("<|vision_end|>", 0),
    ("in", 0), ("?", 0), (U, 0), (A, 0),
    (S, 0), ("a", 0), ("s", 0), ("s", 0), ("i", 0), ("s", 0), ("t", 0), ("a", 0), ("n", 0), ("t", 0), (A, 0),
    ("t", 1), ("he", 1), (U, 1),                                                                 # answer 1 + im_end
    (A, 0),                                                                                      # "\n" after it
    (S, 0), ("u", 0), ("s", 0), ("er", 0), (A, 0), ("on", 0), ("?", 0), (U, 0), (A, 0),          # user 2
    (S, 0), ("a", 0), ("s", 0), ("s", 0), ("i", 0), ("s", 0), ("t", 0), ("a", 0), ("n", 0), ("t", 0), (A, 0),
    (A, 1), ("n", 1), ("o", 1), (U, 1),                                          # answer 2 starts with "\n"
    (A, 0),
]


def test_golden_labels_token_by_token(tokenizer):
    turns = [Turn("system", "Be brief."), Turn("user", "<video>in?"), Turn("assistant", "the"), Turn("user", "on?"),
             Turn("assistant", "\nno")]
    out = tokenize_conversation(turns, tokenizer, video_tokens=[2])
    tokens = tokenizer.convert_ids_to_tokens(out.input_ids.tolist())
    assert list(zip(tokens, (out.labels != IGNORE_INDEX).long().tolist())) == GOLDEN
    trained = out.labels != IGNORE_INDEX
    assert torch.equal(out.labels[trained], out.input_ids[trained])
    assert out.n_trained == 7
    # the assistant header is masked by its characters, not by a token count: here it is 11 tokens, not 3
    assert tokens[32:43] == [S, *"assistant", A]
    video = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert out.mm_token_type_ids.tolist() == [2 if i == video else 0 for i in out.input_ids.tolist()]


def test_default_system_prompt_and_ids_match_the_chat_template(tokenizer):
    turns = [Turn("user", "<video>How far?"), Turn("assistant", "1.5")]
    out = tokenize_conversation(turns, tokenizer, video_tokens=[3])
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How far?"}]},
                {"role": "assistant", "content": "1.5"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False).replace("<|video_pad|>", "<|video_pad|>" * 3)
    assert out.text == text and out.text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert out.input_ids.tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
    # the masked prefix is exactly the generation prompt the eval sends
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt.replace("<|video_pad|>", "<|video_pad|>" * 3), add_special_tokens=False).input_ids)
    first = int((out.labels != IGNORE_INDEX).nonzero()[0])
    assert first == n_prompt
    none = tokenize_conversation(turns, tokenizer, video_tokens=[3], chat=ChatFormat(system_prompt=None))
    assert none.text.startswith("<|im_start|>user\n")


def test_refusals(tokenizer):
    with pytest.raises(NoAssistantTurnError):
        tokenize_conversation([Turn("user", "hi")], tokenizer)
    with pytest.raises(SampleTooLongError, match="model_max_length 20"):
        tokenize_conversation([Turn("user", "<video>hi"), Turn("assistant", "ok")], tokenizer, video_tokens=[16],
                              max_length=20)
    with pytest.raises(InvalidInputError, match="literally"):
        tokenize_conversation([Turn("user", "<|video_pad|>hi"), Turn("assistant", "ok")], tokenizer)
    with pytest.raises(InvalidInputError, match="1 <video> tag"):
        tokenize_conversation([Turn("user", "<video>hi"), Turn("assistant", "ok")], tokenizer)
    with pytest.raises(ConfigError, match=r"layout must be one of \('qwen2_5', 'qwen3'\); got 'qwen4'"):
        ChatFormat("qwen4")
    assert ChatFormat.for_family("qwen2_5_vl").layout == "qwen2_5"


def test_default_system_turn_is_the_layouts_chat_template_default():
    """``auto`` resolves to what the family's template adds to a conversation without a system turn."""
    assert ChatFormat.for_family("qwen2_5_vl") == ChatFormat("qwen2_5", "You are a helpful assistant.")
    assert ChatFormat.for_family("qwen3_vl") == ChatFormat("qwen3", None)
    assert ChatFormat.for_family("qwen3_vl", system_prompt="Be brief.").system_prompt == "Be brief."
    assert ChatFormat("qwen2_5", system_prompt=None).system_prompt is None


@pytest.fixture(scope="module")
def tokenizer3():
    return tiny_models.build_tokenizer(tiny_models.QWEN3_VL_CHAT_TEMPLATE)


def test_qwen3_golden_text_labels_and_token_types(tokenizer3):
    """Per temporal patch ``<t seconds>`` + a marked block of pads, all inside the template's own markers; the
    timestamps print with Python's ``.1f`` (0.25 -> "0.2": round half to even on an exact binary value)."""
    chat = ChatFormat.for_family("qwen3_vl")
    turns = [Turn("user", "<video>in?"), Turn("assistant", "the")]
    out = tokenize_conversation(turns, tokenizer3, video_tokens=[4], video_timestamps=[[0.25, 1.35]], chat=chat)
    block = "<|vision_start|><|video_pad|><|video_pad|><|vision_end|>"
    assert out.text == (f"<|im_start|>user\n<|vision_start|><0.2 seconds>{block}<1.4 seconds>{block}<|vision_end|>"
                        "in?<|im_end|>\n<|im_start|>assistant\nthe<|im_end|>\n")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "in?"}]},
                {"role": "assistant", "content": "the"}]
    template = tokenizer3.apply_chat_template(messages, tokenize=False)  # what the processor expands
    expanded = f"<0.2 seconds>{block}<1.4 seconds>{block}"
    assert out.text == template.replace("<|video_pad|>", expanded, 1)
    assert out.input_ids.tolist() == tokenizer3(out.text, add_special_tokens=False)["input_ids"]
    trained = out.labels != IGNORE_INDEX
    assert tokenizer3.decode(out.input_ids[trained]) == "the<|im_end|>"
    assert torch.equal(out.labels[trained], out.input_ids[trained])
    video = tokenizer3.convert_tokens_to_ids("<|video_pad|>")
    assert out.mm_token_type_ids.tolist() == [2 if i == video else 0 for i in out.input_ids.tolist()]
    assert int((out.mm_token_type_ids == 2).sum()) == 4


def test_qwen3_timestamp_refusals(tokenizer3):
    chat, turns = ChatFormat("qwen3"), [Turn("user", "<video>in?"), Turn("assistant", "the")]
    with pytest.raises(InvalidInputError, match="1 <video> tag\\(s\\) but 0 timestamp list"):
        tokenize_conversation(turns, tokenizer3, video_tokens=[4], chat=chat)
    with pytest.raises(InvalidInputError, match="4 video tokens cannot split into 3 temporal patches"):
        tokenize_conversation(turns, tokenizer3, video_tokens=[4], video_timestamps=[[0.0, 1.0, 2.0]], chat=chat)
    with pytest.raises(InvalidInputError, match="layout qwen2_5 has none"):
        tokenize_conversation(turns, tokenizer3, video_tokens=[4], video_timestamps=[[0.0]])


@pytest.mark.parametrize("ids,fps", [([0, 7, 14, 21, 28], 30.0), (list(range(8)), 2.0), ([3, 250, 251], 29.97),
                                     ([5], 24.0), ([0, 10, 19, 29], 5.0)])
def test_qwen3_timestamps_equal_the_processors(ids, fps):
    """Bit-equal to transformers' ``Qwen3VLProcessor._calculate_timestamps`` (odd counts repeat the last frame)."""
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    expected = Qwen3VLProcessor._calculate_timestamps(None, list(ids), fps, 2)
    got = qwen3_timestamps(ids, fps, 2)
    assert got == expected and len(got) == (len(ids) + 1) // 2
    assert [f"{t:.1f}" for t in got] == [f"{t:.1f}" for t in expected]


@pytest.mark.parametrize("layout", ["qwen2_5", "qwen3"])
def test_extra_video_tokens_follow_each_videos_last_pad(tokenizer, tokenizer3, layout):
    """A connector that adds e tokens per merged token (Spatial-MLLM ``sequence_cat``: e = 1) gets e * n more pads
    right after each video's last pad: the end of its block (Qwen2.5-VL) or of its last temporal patch (Qwen3-VL)."""
    tok = tokenizer if layout == "qwen2_5" else tokenizer3
    chat = ChatFormat(layout, None, extra_video_tokens=1)
    turns = [Turn("user", "<video>a<video>b"), Turn("assistant", "c")]
    stamps = {"video_timestamps": [[0.0, 1.0], [2.0]]} if layout == "qwen3" else {}
    out = tokenize_conversation(turns, tok, video_tokens=[4, 2], chat=chat, **stamps)
    p, vs, ve = "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"
    if layout == "qwen2_5":
        videos = [f"{vs}{p * 8}{ve}", f"{vs}{p * 4}{ve}"]
    else:
        videos = [f"{vs}<0.0 seconds>{vs}{p * 2}{ve}<1.0 seconds>{vs}{p * 2 + p * 4}{ve}{ve}",
                  f"{vs}<2.0 seconds>{vs}{p * 2 + p * 2}{ve}{ve}"]
    assert out.text == f"<|im_start|>user\n{videos[0]}a{videos[1]}b<|im_end|>\n<|im_start|>assistant\nc<|im_end|>\n"
    assert int((out.mm_token_type_ids == 2).sum()) == 12 and tok.decode(out.input_ids[out.labels != IGNORE_INDEX]) \
        == "c<|im_end|>"
    with pytest.raises(ConfigError, match="extra_video_tokens=-1"):
        ChatFormat(layout, extra_video_tokens=-1)
