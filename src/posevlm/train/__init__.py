"""Training: supervised fine-tuning of pose-aware Qwen2.5-VL / Qwen3-VL and Spatial-MLLM models on transformers'
``Trainer`` (see design.md).

Data side: records, the dataset registry, frames, ChatML with assistant-only labels, the collator, bad-sample rules
and a synthetic training set. Run side: the config (YAML + overrides), the recipe (``train``), freeze policies,
LoRA and optimiser groups, checkpoints, the tiny preset, seeds and provenance, DeepSpeed configs; the ``Trainer``
subclass and the NaN guard (which import transformers' ``Trainer``) load on first use.
"""

from typing import Any

from posevlm.train.bad_samples import BadSampleLog
from posevlm.train.checkpoint import export_model, load_training_state, merge_lora_state_dict
from posevlm.train.config import (
    ModelSection,
    OptimSection,
    RunSection,
    TrainConfig,
    TuneSection,
    apply_overrides,
    load_train_config,
)
from posevlm.train.collate import POSE_INPUT_MODES, SFTCollator
from posevlm.train.data import DataConfig, SFTDataset, build_sample, load_train_processor, sampled_fps
from posevlm.train.deepspeed import DEEPSPEED_CONFIGS, deepspeed_config, load_spatial_encoder_weights
from posevlm.train.determinism import run_provenance, seed_everything
from posevlm.train.datasets import (
    DATASET_ROOT_ENV,
    DataItem,
    DatasetGroup,
    DatasetSpec,
    MixTerm,
    dataset_root,
    datasets,
    expand_mix,
    load_dataset,
    load_mix,
    parse_mix,
    subsample_indices,
)
from posevlm.train.families import BuiltModel, TrainFamily, train_families
from posevlm.train.errors import (
    TRAIN_ERROR_KINDS,
    MissingCamerasError,
    NoAssistantTurnError,
    RecordError,
    SampleTooLongError,
)
from posevlm.train.media import FrameConfig, ImageFolderUniform, load_image, load_video, video_request
from posevlm.train.policy import (
    FreezePolicy,
    FreezeReport,
    LoraSettings,
    apply_freeze_policy,
    apply_lora,
    merge_lora,
    optimizer_param_groups,
    parameter_groups,
)
from posevlm.train.records import Record, Turn, parse_record, read_records
from posevlm.train.run import NonFiniteStop, TrainResult, finish_run, prepare_run, train
from posevlm.train.synthetic import (
    TRAIN_START_INDEX,
    SyntheticTrainConfig,
    SyntheticTrainSet,
    build_synthetic_training_set,
)
from posevlm.train.tiny import TinyModelConfig, save_tiny_checkpoint
from posevlm.train.tokenize import (
    DEFAULT_SYSTEM_PROMPT,
    IGNORE_INDEX,
    ChatFormat,
    SpecialTokens,
    Tokenized,
    render_chatml,
    tokenize_conversation,
)

#: names whose modules import transformers' Trainer: loaded on first use (``import posevlm.train`` stays light)
_LAZY = {"PosevlmTrainer": "posevlm.train.trainer", "LossLog": "posevlm.train.trainer",
         "build_model": "posevlm.train.trainer", "NonFiniteGuard": "posevlm.train.guard"}

__all__ = [
    "BadSampleLog", "POSE_INPUT_MODES", "SFTCollator", "DataConfig", "SFTDataset", "build_sample",
    "load_train_processor", "sampled_fps", "DATASET_ROOT_ENV", "DataItem", "DatasetGroup", "DatasetSpec", "MixTerm",
    "dataset_root", "datasets", "expand_mix", "load_dataset", "load_mix", "parse_mix", "subsample_indices",
    "TRAIN_ERROR_KINDS", "MissingCamerasError", "NoAssistantTurnError", "RecordError", "SampleTooLongError",
    "FrameConfig", "ImageFolderUniform", "load_image", "load_video", "video_request", "Record", "Turn",
    "parse_record", "read_records", "TRAIN_START_INDEX", "SyntheticTrainConfig", "SyntheticTrainSet",
    "build_synthetic_training_set", "DEFAULT_SYSTEM_PROMPT", "IGNORE_INDEX", "ChatFormat", "SpecialTokens",
    "Tokenized", "render_chatml", "tokenize_conversation",
    "TrainFamily", "train_families", "BuiltModel",
    "TrainConfig", "ModelSection", "TuneSection", "OptimSection", "RunSection", "load_train_config",
    "apply_overrides", "train", "prepare_run", "finish_run", "TrainResult", "NonFiniteStop",
    "FreezePolicy", "FreezeReport", "apply_freeze_policy", "parameter_groups", "LoraSettings", "apply_lora",
    "merge_lora", "optimizer_param_groups", "export_model", "load_training_state", "merge_lora_state_dict",
    "TinyModelConfig", "save_tiny_checkpoint", "seed_everything", "run_provenance", "DEEPSPEED_CONFIGS",
    "deepspeed_config", "load_spatial_encoder_weights", *_LAZY,
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
