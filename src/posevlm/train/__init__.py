"""Training, data side: records, the dataset registry, frames, ChatML with assistant-only labels, the collator,
bad-sample rules and a synthetic training set. The Trainer recipe comes on top (see design.md)."""

from posevlm.train.bad_samples import BadSampleLog
from posevlm.train.collate import POSE_INPUT_MODES, SFTCollator
from posevlm.train.data import DataConfig, SFTDataset, build_sample, load_train_processor, sampled_fps
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
from posevlm.train.errors import (
    TRAIN_ERROR_KINDS,
    MissingCamerasError,
    NoAssistantTurnError,
    RecordError,
    SampleTooLongError,
)
from posevlm.train.media import FrameConfig, ImageFolderUniform, load_image, load_video, video_request
from posevlm.train.records import Record, Turn, parse_record, read_records
from posevlm.train.synthetic import (
    TRAIN_START_INDEX,
    SyntheticTrainConfig,
    SyntheticTrainSet,
    build_synthetic_training_set,
)
from posevlm.train.tokenize import (
    DEFAULT_SYSTEM_PROMPT,
    IGNORE_INDEX,
    ChatFormat,
    SpecialTokens,
    Tokenized,
    render_chatml,
    tokenize_conversation,
)

__all__ = [
    "BadSampleLog", "POSE_INPUT_MODES", "SFTCollator", "DataConfig", "SFTDataset", "build_sample",
    "load_train_processor", "sampled_fps", "DATASET_ROOT_ENV", "DataItem", "DatasetGroup", "DatasetSpec", "MixTerm",
    "dataset_root", "datasets", "expand_mix", "load_dataset", "load_mix", "parse_mix", "subsample_indices",
    "TRAIN_ERROR_KINDS", "MissingCamerasError", "NoAssistantTurnError", "RecordError", "SampleTooLongError",
    "FrameConfig", "ImageFolderUniform", "load_image", "load_video", "video_request", "Record", "Turn",
    "parse_record", "read_records", "TRAIN_START_INDEX", "SyntheticTrainConfig", "SyntheticTrainSet",
    "build_synthetic_training_set", "DEFAULT_SYSTEM_PROMPT", "IGNORE_INDEX", "ChatFormat", "SpecialTokens",
    "Tokenized", "render_chatml", "tokenize_conversation",
]  # fmt: skip
