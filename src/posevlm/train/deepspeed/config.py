"""The shipped DeepSpeed configs (models spec §3.5) and :func:`deepspeed_config`.

=================  ===========================================================================================
name               what it is
=================  ===========================================================================================
``zero2``          ZeRO stage 2 (optimizer state and gradients sharded), no communication overlap, contiguous
                   gradients
``zero3``          ZeRO stage 3 (parameters sharded too), communication overlap, 16-bit weights gathered on
                   ``save_model`` (``stage3_gather_16bit_weights_on_model_save``, so checkpoints load without
                   DeepSpeed)
``zero3_offload``  ``zero3`` with the optimizer state and parameters offloaded to CPU (pinned memory) and
                   DeepSpeed's own AdamW and WarmupLR (the Trainer fills lr, betas, eps, weight decay, warm-up)
=================  ===========================================================================================

Every batch, accumulation, precision (``fp16`` / ``bf16``), ``gradient_clipping`` and bucket-size field is
``"auto"``: ``TrainingArguments(deepspeed=...)`` fills them from the run (``trainer_config_process``, then
``trainer_config_finalize`` with the model), so the DeepSpeed config never contradicts the Trainer's.
``gradient_clipping`` matters: with DeepSpeed the engine clips, not the Trainer (spec §3.3: max grad norm 1.0).
The bucket sizes derive from the model's hidden size, which the Trainer finds in ``model.config.hidden_size`` or
``model.config.text_config.hidden_size``; a Spatial-MLLM keeps it in ``model.qwen.config`` (its Trainer run with
these configs fails in ``trainer_config_finalize`` otherwise), so pass ``hidden_size=hidden_size_of(model)`` here,
or :func:`fill_hidden_size` on ``TrainingArguments.hf_deepspeed_config.config`` before ``trainer.train()``.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from posevlm.errors import ConfigError, InputFileError

__all__ = ["DEEPSPEED_CONFIGS", "deepspeed_config", "fill_hidden_size", "hidden_size_of"]

#: shipped config name -> file in this package
DEEPSPEED_CONFIGS = {"zero2": "zero2.json", "zero3": "zero3.json", "zero3_offload": "zero3_offload.json"}


def fill_hidden_size(config: dict[str, Any], hidden_size: int) -> dict[str, Any]:
    """Fill the hidden-size-derived ``"auto"`` bucket sizes of ``config`` in place (and return it) by the Trainer's
    rules (``HfTrainerDeepSpeedConfig.trainer_config_finalize``): ``reduce_bucket_size`` h², and for ZeRO-3
    ``stage3_prefetch_bucket_size`` 0.9 h², ``stage3_param_persistence_threshold`` 10 h. Use it on
    ``TrainingArguments.hf_deepspeed_config.config`` once the model is built when the arguments came first."""
    zero = config.get("zero_optimization", {})
    rules = {"reduce_bucket_size": hidden_size * hidden_size}
    if zero.get("stage") == 3:
        rules.update(stage3_prefetch_bucket_size=int(0.9 * hidden_size * hidden_size),
                     stage3_param_persistence_threshold=10 * hidden_size)
    for key, value in rules.items():
        if zero.get(key) == "auto":
            zero[key] = value
    return config


def deepspeed_config(name_or_path: str | Path, *, hidden_size: int | None = None) -> dict[str, Any]:
    """A DeepSpeed config as a dict (a fresh copy): a shipped name (``zero2``, ``zero3``, ``zero3_offload``) or
    the path of a JSON file. ``hidden_size`` fills the hidden-size-derived ``"auto"`` bucket sizes (needed for
    models whose config the Trainer cannot read it from, e.g. Spatial-MLLM; see :func:`hidden_size_of`).

    Raises:
        ConfigError: neither a shipped name nor an existing ``.json`` path (lists the names).
        InputFileError: the file is not valid JSON or not a JSON object.
    """
    text = str(name_or_path)
    if text in DEEPSPEED_CONFIGS:
        source = f"posevlm.train.deepspeed:{DEEPSPEED_CONFIGS[text]}"
        raw = resources.files(__package__).joinpath(DEEPSPEED_CONFIGS[text]).read_text(encoding="utf-8")
    else:
        path = Path(text).expanduser()
        if path.suffix != ".json" or not path.is_file():
            raise ConfigError(f"unknown DeepSpeed config {text!r}: use one of {', '.join(DEEPSPEED_CONFIGS)} or the "
                              "path of an existing .json file", field="deepspeed", value=text)
        source, raw = str(path), path.read_text(encoding="utf-8")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"DeepSpeed config {source} is not valid JSON ({exc})", path=source) from None
    if not isinstance(config, dict):
        raise InputFileError(f"DeepSpeed config {source} must hold a JSON object", path=source)
    config = copy.deepcopy(config)
    if hidden_size is not None:
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ConfigError(f"hidden_size={hidden_size!r} (a positive integer)", field="hidden_size",
                              value=hidden_size)
        fill_hidden_size(config, hidden_size)
    return config


def hidden_size_of(model: nn.Module) -> int:
    """The largest ``hidden_size`` in the config of ``model`` or of its direct children (their ``text_config``
    included): the LLM width for a Qwen-VL model and for a Spatial-MLLM (``model.qwen``).

    Raises:
        ConfigError: no config with a hidden size.
    """
    found = []
    for module in (model, *model.children()):
        config = getattr(module, "config", None)
        for c in (config, getattr(config, "text_config", None)):
            size = getattr(c, "hidden_size", None)
            if isinstance(size, int):
                found.append(size)
    if not found:
        raise ConfigError(f"no hidden_size in the config of this {type(model).__name__} or its children; pass "
                          "hidden_size= to deepspeed_config explicitly", field="hidden_size")
    return max(found)
