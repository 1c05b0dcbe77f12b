"""ChatML tokenisation: the assistant-only label rule pinned token by token on the tiny tokenizer, parity of the
input ids with the checkpoint's chat template + processor, the default system prompt, refusals."""

import pytest
import torch

from posevlm.errors import ConfigError
from posevlm.eval.errors import InvalidInputError
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
    with pytest.raises(ConfigError, match="Qwen3-VL is not supported yet"):
        ChatFormat.for_family("qwen3_vl")
    assert ChatFormat.for_family("qwen2_5_vl").layout == "qwen2_5"
