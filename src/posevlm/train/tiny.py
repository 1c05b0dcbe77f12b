"""Tiny, randomly initialised Qwen2.5-VL / Qwen3-VL checkpoints built offline: the ``tiny`` model source of
``posevlm train`` (a laptop run on synthetic scans in minutes) and of the training tests.

:func:`save_tiny_checkpoint` writes a complete checkpoint directory (``config.json``, ``model.safetensors``,
``generation_config.json``, tokenizer files, image / video processor configs, ``chat_template.jinja``) that
``from_pretrained`` and ``posevlm eval --backend hf`` load like a real one. Nothing is downloaded.

* Tokenizer: transformers' ``Qwen2Tokenizer`` (byte-level BPE, Qwen's pre-tokenizer) over the 256 byte symbols, a
  few merges and the ChatML / vision special tokens; ids differ from the real 151k vocabulary and every config
  takes them from the tokenizer.
* Chat template: the vision part of the released templates (Qwen2.5-VL adds the default system prompt).
* Processor configs are written as JSON (the keys ``save_pretrained`` writes), because transformers' video
  processor classes need torchvision; :func:`posevlm.train.data.load_train_processor` reads them either way.

Sizes (models spec §6.2, :class:`TinyModelConfig` defaults): text 64 wide, 2 layers, 4 heads (2 KV), mRoPE
sections [2, 3, 3]; vision depth 2, width 32, patch 14 (Qwen3-VL: 16), merge 2, temporal patch 2.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from posevlm.errors import ConfigError

__all__ = ["TinyModelConfig", "TINY_FAMILIES", "save_tiny_checkpoint", "ensure_tiny_checkpoint"]

TINY_FAMILIES = ("qwen2_5_vl", "qwen3_vl")
_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
_MERGES = (("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġ", "a"), ("Ġt", "he"), ("e", "r"), ("o", "n"), ("Ġ", "s"))
_VISION_ITEMS = (
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
)
CHAT_TEMPLATES = {
    "qwen2_5_vl": (
        "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for content in message['content'] %}" + _VISION_ITEMS + "{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "qwen3_vl": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for content in message['content'] %}" + _VISION_ITEMS + "{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}


@dataclass(frozen=True)
class TinyModelConfig:
    """The sizes of a tiny checkpoint (``model.tiny`` of a training config). ``seed`` fixes the random weights."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_heads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{f.name}={getattr(self, f.name)!r} (an int >= 1)" for f in fields(self)
                    if f.name != "seed" and (not isinstance(getattr(self, f.name), int) or getattr(self, f.name) < 1)]
        if not problems and self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size={self.hidden_size} must be a multiple of num_attention_heads="
                            f"{self.num_attention_heads}")
        if not problems and self.hidden_size // self.num_attention_heads != 16:
            problems.append(f"hidden_size / num_attention_heads = {self.hidden_size // self.num_attention_heads}; the "
                            "tiny mRoPE sections [2, 3, 3] need a head dim of 16")
        if not problems and self.num_attention_heads % self.num_key_value_heads:
            problems.append(f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                            f"num_key_value_heads={self.num_key_value_heads}")
        if problems:
            raise ConfigError("invalid tiny model config: " + "; ".join(problems), field="model.tiny")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TinyModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model.tiny key(s) {unknown}; known: {sorted(known)}", field="model.tiny")
        return cls(**dict(data))


def _tokenizer(family: str):
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {sym: i for i, sym in enumerate(sorted(ByteLevel.alphabet()))}
    for a, b in _MERGES:
        vocab.setdefault(a + b, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[tuple(m) for m in _MERGES], unk_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(_SPECIAL_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATES[family]
    return tokenizer


def _configs(family: str, tokenizer, cfg: TinyModelConfig):
    import transformers

    tok = tokenizer.convert_tokens_to_ids
    text = {"vocab_size": (len(tokenizer) + 15) // 16 * 16, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
            "max_position_embeddings": 4096, "bos_token_id": tok("<|endoftext|>"), "eos_token_id": tok("<|im_end|>"),
            "pad_token_id": tok("<|endoftext|>")}
    vision = {"depth": cfg.vision_depth, "hidden_size": cfg.vision_hidden_size,
              "intermediate_size": 2 * cfg.vision_hidden_size, "num_heads": cfg.vision_heads,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": cfg.hidden_size}
    ids = {"image_token_id": tok("<|image_pad|>"), "video_token_id": tok("<|video_pad|>"),
           "vision_start_token_id": tok("<|vision_start|>"), "vision_end_token_id": tok("<|vision_end|>")}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    if family == "qwen2_5_vl":
        vision.update(patch_size=14, window_size=56, fullatt_block_indexes=[cfg.vision_depth - 1],
                      tokens_per_second=2)
        return transformers.Qwen2_5_VLConfig(text_config={**text, "rope_parameters": rope}, vision_config=vision,
                                             **ids), 14
    vision.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[cfg.vision_depth - 1])
    text.update(head_dim=cfg.hidden_size // cfg.num_attention_heads,
                rope_parameters={**rope, "mrope_interleaved": True})
    return transformers.Qwen3VLConfig(text_config=text, vision_config=vision, **ids), 16


def _processor_files(out: Path, family: str, tokenizer, patch_size: int) -> None:
    tokenizer.save_pretrained(out)
    qwen2_5 = family == "qwen2_5_vl"
    mean = (0.48145466, 0.4578275, 0.40821073) if qwen2_5 else (0.5, 0.5, 0.5)
    std = (0.26862954, 0.26130258, 0.27577711) if qwen2_5 else (0.5, 0.5, 0.5)
    processor_class = "Qwen2_5_VLProcessor" if qwen2_5 else "Qwen3VLProcessor"
    factor = patch_size * 2
    common = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
              "image_mean": list(mean), "image_std": list(std), "do_convert_rgb": True, "resample": 3,
              "patch_size": patch_size, "temporal_patch_size": 2, "merge_size": 2, "processor_class": processor_class}
    image = {**common, "image_processor_type": "Qwen2VLImageProcessor",
             "size": {"shortest_edge": 4 * factor * factor, "longest_edge": 1280 * factor * factor}}
    video = {**common, "video_processor_type": "Qwen2VLVideoProcessor" if qwen2_5 else "Qwen3VLVideoProcessor",
             "size": {"shortest_edge": 4 * factor * factor, "longest_edge": 768 * factor * factor},
             "do_sample_frames": False, "min_frames": 4, "max_frames": 768}
    for name, content in (("preprocessor_config.json", image), ("video_preprocessor_config.json", video),
                          ("processor_config.json", {"processor_class": processor_class})):
        (out / name).write_text(json.dumps(content, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(tokenizer.chat_template)


def ensure_tiny_checkpoint(out: str | Path, family: str = "qwen2_5_vl",
                           config: TinyModelConfig = TinyModelConfig()) -> Path:
    """``out`` holding the tiny checkpoint of ``(family, config)``: reused when it already does (``tiny.json``
    records what made it), else written to a private folder and renamed into place, so several processes of one
    launch can call this at once. Call it before DeepSpeed ZeRO-3 is configured (a model constructed under it would
    be saved empty)."""
    import os
    import shutil

    out = Path(out)
    made = {"family": family, "config": config.to_dict()}
    stamp = out / "tiny.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == made:
        return out
    if out.exists():
        raise ConfigError(f"{out} exists but does not hold the tiny checkpoint of this config ({made}); remove it or "
                          "choose another run.output_dir", field="model.tiny", value=made)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_tiny_checkpoint(tmp, family, config)
    (tmp / "tiny.json").write_text(json.dumps(made, indent=2) + "\n")
    try:
        tmp.rename(out)
    except OSError:  # another process renamed its identical copy first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (stamp.is_file() and json.loads(stamp.read_text()) == made):
            raise
    return out


def save_tiny_checkpoint(out: str | Path, family: str = "qwen2_5_vl",
                         config: TinyModelConfig = TinyModelConfig()) -> Path:
    """Write a tiny random checkpoint of ``family`` (``qwen2_5_vl`` or ``qwen3_vl``) to ``out`` (see the module
    docstring); the same ``(family, config)`` always gives the same weights. Returns ``out``."""
    import torch
    import transformers

    if family not in TINY_FAMILIES:
        raise ConfigError(f"no tiny preset for family {family!r}; choose one of {', '.join(TINY_FAMILIES)}",
                          field="model.family", value=family)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(family)
    hf_config, patch_size = _configs(family, tokenizer, config)
    model_cls = (transformers.Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl"
                 else transformers.Qwen3VLForConditionalGeneration)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = model_cls(hf_config).eval()
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), do_sample=False)
    model.save_pretrained(out)
    _processor_files(out, family, tokenizer, patch_size)
    return out
