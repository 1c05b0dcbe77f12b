"""Tiny, randomly initialised Qwen2.5-VL and Qwen3-VL checkpoints built offline, for CPU tests.

``save_tiny_qwen2_5_vl(dir)`` / ``save_tiny_qwen3_vl(dir)`` write a complete checkpoint directory
(``config.json``, ``model.safetensors``, ``generation_config.json``, tokenizer files, image/video
processor configs, ``chat_template.jinja``) with ``save_pretrained``, so a test loads it with
``from_pretrained`` exactly as a user loads a real checkpoint. Nothing is downloaded.

* Tokenizer: the real ``Qwen2Tokenizer`` class (byte-level BPE, Qwen's pre-tokenizer regex) built from
  a vocabulary made here: the 256 byte-level symbols, a few merges, then the ChatML and vision special
  tokens. Token ids therefore differ from the real 151k vocabulary; the configs take them from the
  tokenizer (never hard-coded 151655/151656).
* Chat templates: the vision part of the released templates (Qwen2.5-VL adds the default system
  prompt; Qwen3-VL does not), one ``<|vision_start|><|video_pad|><|vision_end|>`` per video item.
* Video processor: without a usable torchvision the transformers ``Qwen2VLVideoProcessor`` module
  cannot even be imported, so its *config* is written as JSON by hand (same keys as
  ``save_pretrained`` writes); the backend then rebuilds the processor (see
  ``posevlm.eval.backends._qwen_video``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
MERGES = (("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġ", "a"), ("Ġt", "he"), ("e", "r"), ("o", "n"),
          ("Ġ", "s"))

QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(chat_template: str):
    """A real ``Qwen2Tokenizer`` over a 256-symbol byte-level vocabulary plus merges and special tokens."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {sym: i for i, sym in enumerate(sorted(ByteLevel.alphabet()))}
    for a, b in MERGES:
        vocab.setdefault(a + b, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[tuple(m) for m in MERGES], unk_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.chat_template = chat_template
    return tokenizer


def _ids(tokenizer) -> dict[str, int]:
    get = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": get("<|image_pad|>"), "video_token_id": get("<|video_pad|>"),
        "vision_start_token_id": get("<|vision_start|>"), "vision_end_token_id": get("<|vision_end|>"),
    }


def _vocab_size(tokenizer) -> int:
    return (len(tokenizer) + 15) // 16 * 16


def _text_config(tokenizer, **extra) -> dict:
    return {
        "vocab_size": _vocab_size(tokenizer), "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"), **extra,
    }


def _write_processor_files(out: Path, tokenizer, *, patch_size: int, mean, std, image_processor_type: str,
                           video_processor_type: str, processor_class: str) -> None:
    """Tokenizer via ``save_pretrained``; image/video processor configs and the processor config as JSON
    (the keys ``save_pretrained`` writes), because the video processor classes need torchvision."""
    tokenizer.save_pretrained(out)
    factor = patch_size * 2
    common = {
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(mean), "image_std": list(std), "do_convert_rgb": True, "resample": 3,
        "patch_size": patch_size, "temporal_patch_size": 2, "merge_size": 2,
    }
    image = {**common, "image_processor_type": image_processor_type, "processor_class": processor_class,
             "size": {"shortest_edge": 4 * factor * factor, "longest_edge": 1280 * factor * factor}}
    video = {**common, "video_processor_type": video_processor_type, "processor_class": processor_class,
             "size": {"shortest_edge": 4 * factor * factor, "longest_edge": 768 * factor * factor},
             "do_sample_frames": False, "min_frames": 4, "max_frames": 768}
    (out / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    (out / "processor_config.json").write_text(json.dumps({"processor_class": processor_class}, indent=2))
    (out / "chat_template.jinja").write_text(tokenizer.chat_template)


def _save(model, tokenizer, out: Path) -> Path:
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), do_sample=False,
    )
    model.save_pretrained(out)
    return out


def save_tiny_qwen2_5_vl(out: str | Path, *, seed: int = 0, **text_overrides) -> Path:
    """Tiny Qwen2.5-VL: text 64 wide, 2 layers, 4 heads (2 KV), mRoPE [2, 3, 3]; vision depth 2, width
    32, patch 14, merge 2, window 56, full-attention block [1], ``tokens_per_second`` 2. ``text_overrides``
    replace text-config fields (e.g. ``num_key_value_heads``)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out)
    tokenizer = build_tokenizer(QWEN2_5_VL_CHAT_TEMPLATE)
    text = _text_config(tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                    "mrope_section": [2, 3, 3]})
    text.update(text_overrides)
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
              "fullatt_block_indexes": [1], "out_hidden_size": 64, "tokens_per_second": 2}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_ids(tokenizer))
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    _save(model, tokenizer, out)
    _write_processor_files(out, tokenizer, patch_size=14, mean=(0.48145466, 0.4578275, 0.40821073),
                           std=(0.26862954, 0.26130258, 0.27577711),
                           image_processor_type="Qwen2VLImageProcessor",
                           video_processor_type="Qwen2VLVideoProcessor",
                           processor_class="Qwen2_5_VLProcessor")
    return out


def save_tiny_qwen3_vl(out: str | Path, *, seed: int = 0, **text_overrides) -> Path:
    """Tiny Qwen3-VL: text 64 wide, 2 layers, head_dim 16, interleaved mRoPE [2, 3, 3]; vision depth 2,
    width 32, patch 16, 64 learned positions (8x8), one DeepStack tap (layer 1)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out)
    tokenizer = build_tokenizer(QWEN3_VL_CHAT_TEMPLATE)
    text = _text_config(tokenizer, head_dim=16, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    text.update(text_overrides)
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64,
              "num_position_embeddings": 64, "deepstack_visual_indexes": [1]}
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **_ids(tokenizer))
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    _save(model, tokenizer, out)
    _write_processor_files(out, tokenizer, patch_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                           image_processor_type="Qwen2VLImageProcessor",
                           video_processor_type="Qwen3VLVideoProcessor", processor_class="Qwen3VLProcessor")
    return out
