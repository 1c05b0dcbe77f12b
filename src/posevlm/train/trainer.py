"""The pieces of a training run on transformers' ``Trainer``: the model of a config, the ``Trainer`` subclass, the
callbacks. The recipe that puts them together is :mod:`posevlm.train.run`.

* :func:`build_model` -> :class:`BuiltModel`: the model of the config's ``model.family``, built by its
  :class:`~posevlm.train.families.TrainFamily` (:mod:`posevlm.train.builders`: stock Qwen2.5-VL / Qwen3-VL made
  pose-aware, Spatial-MLLM composed or loaded); fp32 on CPU, bf16 on GPU unless the config says otherwise;
  activation checkpointing (``model.gradient_checkpointing``) on the Qwen model's layers, non-reentrant: gradients
  reach trained parameters inside checkpointed layers even when nothing before them is trained (frozen embeddings:
  LoRA-only, ``train=llm``); transformers also hooks the input embeddings to require grad
  (``enable_input_require_grads``), which reentrant checkpointing would need (tested: equal gradients with and
  without checkpointing).
* :class:`PosevlmTrainer`: ``Trainer`` with posevlm's optimiser groups (lr / projector lr / vision lr, no decay on
  norms and biases), the loss normalised by the label tokens of the whole optimiser step across micro-batches and
  ranks (so gradient accumulation and DDP equal one large batch), batches whose ``sample_ids`` reach the NaN guard
  (:class:`posevlm.train.guard.NonFiniteGuard` takes them out of the model's keyword arguments; without a guard the
  trainer drops them), and
  checkpoints written by :func:`posevlm.train.checkpoint.export_model` (evaluable: family format, LoRA merged,
  processor files) that resume exactly.
* :class:`LossLog`: every logged step appended to ``<run>/train_log.jsonl`` (exact float losses; a resumed run
  first drops the lines after its checkpoint, so the file always holds one line per step).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from posevlm.errors import ConfigError
from posevlm.train.checkpoint import export_model, load_training_state
from posevlm.train.config import ModelSection, OptimSection
from posevlm.train.families import BuiltModel, train_families
from posevlm.train.tiny import TinyModelConfig, ensure_tiny_checkpoint

__all__ = ["BuiltModel", "build_model", "prepare_source", "PosevlmTrainer", "LossLog", "NoSaveOnGuardStop",
           "TRAIN_LOG_NAME", "resolve_dtype", "pose_request"]

TRAIN_LOG_NAME = "train_log.jsonl"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_dtype(config: ModelSection, *, cuda: bool | None = None) -> torch.dtype:
    """``auto``: bf16 on GPU, fp32 on CPU."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if config.dtype == "auto":
        return torch.bfloat16 if cuda else torch.float32
    return _DTYPES[config.dtype]


def pose_request(config: ModelSection):
    """(positions request or None, CameraAttentionSpec or None): the mode and its overrides as
    :func:`posevlm.positions.resolve_position_spec` reads them (``thw`` when only camera attention is asked)."""
    from posevlm.models.camera_attention import CameraAttentionSpec

    camera = None
    if config.camera_attention is not None or config.pose_bias != "none":
        camera = CameraAttentionSpec.from_dict({"mode": config.camera_attention or "none", "bias": config.pose_bias,
                                                **dict(config.camera_set)})
    if config.positions is None and camera is None:
        return None, None
    return {"mode": config.positions or "thw", **dict(config.position_set)}, camera


def prepare_source(config: ModelSection, work_dir: str | Path) -> str:
    """The checkpoint ``config.source`` names: the tiny preset is written to ``<work_dir>/base_model`` (once; before
    ``TrainingArguments`` configures DeepSpeed ZeRO-3, under which a constructed model would be saved empty)."""
    if config.source != "tiny":
        return config.source
    family = train_families.get(config.family).base_family
    return str(ensure_tiny_checkpoint(Path(work_dir) / "base_model", family, TinyModelConfig.from_dict(config.tiny)))


def build_model(config: ModelSection, *, work_dir: str | Path, seed: int = 0) -> BuiltModel:
    """The model of ``config`` through its :class:`~posevlm.train.families.TrainFamily`'s ``build``, on CPU in its
    training dtype; the ``tiny`` preset is written to ``<work_dir>/base_model`` first. ``seed`` initialises freshly
    composed modules (a connector, a VLM² stage).

    Raises:
        ConfigError: an unknown family, a position mode the family does not have, a bad camera spec.
        ModelLoadError / CheckpointError: the checkpoint cannot be read.
    """
    family = train_families.get(config.family)
    hub = {"local_files_only": config.local_files_only, "revision": config.revision}
    return family.build(config, Path(work_dir), resolve_dtype(config), hub, seed)


class LossLog(TrainerCallback):
    """Append every log entry of the main process to ``<output_dir>/train_log.jsonl`` (``{"step", "loss",
    "grad_norm", "learning_rate", ...}``, floats as Python floats); on a resumed start, lines after the resumed
    step are dropped first (they belong to the interrupted run past its last checkpoint). ``log`` gets one progress
    line every ``every`` steps (and at the last one)."""

    def __init__(self, output_dir: str | Path, *, log: Callable[[str], None] | None = None, every: int = 10):
        self.path = Path(output_dir) / TRAIN_LOG_NAME
        self.log = log
        self.every = max(1, int(every))

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= state.global_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        if self.log is not None and "loss" in logs and (state.global_step % self.every == 0
                                                         or state.global_step == state.max_steps):
            nan = float("nan")
            self.log(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                     f"lr {logs.get('learning_rate', nan):.3g}  grad norm {logs.get('grad_norm', nan):.3g}")

    @staticmethod
    def read(output_dir: str | Path) -> list[dict[str, Any]]:
        """The training-step entries (those with a ``loss``) of a run, in step order."""
        path = Path(output_dir) / TRAIN_LOG_NAME
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
        return [r for r in rows if "loss" in r]


class NoSaveOnGuardStop(TrainerCallback):
    """A step the NaN guard stopped at (no update applied) gets no ``checkpoint-<k>``: the newest checkpoint stays the
    last finite step. Put it after the guard in the callback list."""

    def __init__(self, guard):
        self.guard = guard

    def on_step_end(self, args, state, control, **kwargs):
        last = self.guard.reports[-1] if self.guard.reports else None
        if last is not None and last["action"] == "stop" and last["global_step"] == state.global_step:
            control.should_save = False
        return control


class _UseCacheShim:
    """Reads go to a composed model's frozen recipe config; ``Trainer``'s write of ``use_cache`` goes to its inner
    transformers model's config (where transformers reads it)."""

    def __init__(self, config, qwen_config):
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_qwen_config", qwen_config)

    def __getattr__(self, name):
        return getattr(self._config, name)

    def __setattr__(self, name, value):
        if name != "use_cache":
            raise AttributeError(f"{type(self._config).__name__} is a frozen recipe; cannot set {name}")
        self._qwen_config.use_cache = value


@contextlib.contextmanager
def _writable_config(model):
    """``Trainer.__init__`` sets ``model.config.use_cache``; a composed model's config is a frozen dataclass (a
    Spatial-MLLM's recipe, its LM ``model.qwen``; a PointCloudLM's, its LM ``model.decoder``)."""
    from posevlm.models.point_lm import PointCloudLM
    from posevlm.models.spatial_mllm import SpatialMLLM

    inner = model.qwen if isinstance(model, SpatialMLLM) else model.decoder if isinstance(model, PointCloudLM) else None
    if inner is None:
        yield
        return
    config = model.config
    model.config = _UseCacheShim(config, inner.config)
    try:
        yield
    finally:
        model.config = config


class PosevlmTrainer(Trainer):
    """``Trainer`` with posevlm's optimiser groups, sample-id handling and checkpoint format (module docstring).

    Extra arguments: ``optim`` (the :class:`~posevlm.train.config.OptimSection`), ``processor_source`` (the folder
    whose processor files each checkpoint gets)."""

    def __init__(self, *args, optim: OptimSection, processor_source: Path | None = None, **kwargs):
        with _writable_config(kwargs.get("model")):
            super().__init__(*args, **kwargs)
        # Qwen2.5-VL / Qwen3-VL (and Spatial-MLLM through them) hand **kwargs to their loss_function, which sums and
        # divides by num_items_in_batch, yet declare accepts_loss_kwargs = False: the loss would then be a
        # per-micro-batch (per-rank) mean, so gradient accumulation and DDP would not equal one large batch.
        self.model_accepts_loss_kwargs = True
        self.optim = optim
        self.processor_source = processor_source
        self.current_sample_ids: list[str] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from posevlm.train.guard import SAMPLE_IDS_KEY, NonFiniteGuard

        self.current_sample_ids = list(inputs.get(SAMPLE_IDS_KEY, []))
        if not any(isinstance(cb, NonFiniteGuard) for cb in self.callback_handler.callbacks):
            inputs.pop(SAMPLE_IDS_KEY, None)  # a guard takes them out of the model's kwargs itself
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            from posevlm.train.policy import optimizer_param_groups

            o = self.optim
            groups = optimizer_param_groups(self.model, lr=o.lr, projector_lr=o.projector_lr, vision_lr=o.vision_lr,
                                            weight_decay=o.weight_decay)
            self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_epsilon)
        return self.optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        export_model(model, output_dir, state_dict=state_dict, processor_source=self.processor_source)
        torch.save(self.args, str(Path(output_dir) / "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        target = model if model is not None else self.model
        if not load_training_state(self.accelerator.unwrap_model(target), resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
