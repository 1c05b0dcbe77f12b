"""What a training checkpoint holds, and how it loads back: into ``posevlm eval`` and into a resumed run.

A checkpoint directory (``<run>/checkpoint-<step>/``, and ``<run>/final/``) is an ordinary checkpoint of the model's
family, loadable without posevlm's trainer:

* Qwen2.5-VL / Qwen3-VL: transformers' ``save_pretrained`` (``config.json`` carries the posevlm position spec and
  camera attention; learned pose-bias slopes are saved with the weights), so ``posevlm eval --backend hf --model
  <dir>`` restores the pose-aware model;
* Spatial-MLLM: :func:`posevlm.models.spatial_mllm.save_pretrained` (released key layout; ``from_pretrained``);
* VLM²: :func:`posevlm.models.vlm2.save_pretrained` (the Spatial-MLLM layout + ``vlm2.*``, model type
  ``spatial-mllm-vlm2``; :func:`posevlm.models.vlm2.from_pretrained`);
* PointCloudLM: its ``save_pretrained`` (decoder + MixedRoPE3D, ``point_modules.safetensors``, the tokenizer with the
  point tokens; no processor files are copied over it), so ``posevlm eval --backend points --model <dir>`` loads it;
* LoRA: the weights are written **merged** (``W + B A * alpha / r`` at the state-dict level, so it also works on a
  DeepSpeed-gathered state), and the unmerged training state goes to ``posevlm_train_state.safetensors`` for
  resuming;
* the processor files of the model source (tokenizer, image / video processor configs, chat template) are copied
  in, so evaluation never needs the base repository (models spec §3.6);

plus what ``Trainer`` adds for resuming (``optimizer.pt``, ``scheduler.pt``, ``rng_state*.pth``,
``trainer_state.json``, ``training_args.bin``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

__all__ = ["TRAIN_STATE_NAME", "PROCESSOR_FILES", "lora_scales", "merge_lora_state_dict", "processor_dir",
           "copy_processor_files", "export_model", "load_training_state", "complete_checkpoints"]

TRAIN_STATE_NAME = "posevlm_train_state.safetensors"
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "preprocessor_config.json", "video_preprocessor_config.json",
                   "processor_config.json", "chat_template.jinja", "chat_template.json")


def lora_scales(model: nn.Module) -> dict[str, float]:
    """{module name: alpha / r} of every LoRA-wrapped linear layer of ``model`` (empty without LoRA)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return {}
    return {name: float(module.scaling["default"]) for name, module in model.named_modules()
            if isinstance(module, LoraLayer)}


def merge_lora_state_dict(state_dict: Mapping[str, Tensor], scales: Mapping[str, float]) -> dict[str, Tensor]:
    """A LoRA model's state dict with every adapter folded into its base layer, under the names the model had
    before the adapters: ``<m>.weight = <m>.base_layer.weight + (<m>.lora_B.default.weight @
    <m>.lora_A.default.weight) * scales[<m>]`` (in float32, cast back), ``<m>.base_layer.bias`` -> ``<m>.bias``,
    adapter tensors dropped. A pure function of tensors (works on a DeepSpeed-gathered state dict)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        module, sep, leaf = key.partition(".base_layer.")
        if ".lora_" in key:
            continue
        if sep and module in scales:
            if leaf == "weight":
                a = state_dict[f"{module}.lora_A.default.weight"].float()
                b = state_dict[f"{module}.lora_B.default.weight"].float()
                value = (value.float() + (b @ a) * scales[module]).to(value.dtype)
            out[f"{module}.{leaf}"] = value
        else:
            out[key] = value
    return out


def processor_dir(source: str, *, local_files_only: bool = False, revision: str | None = None) -> Path:
    """The local folder holding the processor files of a model ``source`` (a directory, or a hub id resolved in
    the Hugging Face cache: only the processor files are fetched)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, revision=revision, local_files_only=local_files_only,
                                  allow_patterns=list(PROCESSOR_FILES)))


def copy_processor_files(source: Path, target: Path) -> list[str]:
    """Copy the processor files ``source`` has into ``target``; returns their names."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in PROCESSOR_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
            copied.append(name)
    return copied


def export_model(model: nn.Module, output_dir: str | Path, *, state_dict: Mapping[str, Tensor] | None = None,
                 processor_source: Path | None = None) -> Path:
    """Write the evaluable checkpoint of ``model`` into ``output_dir`` (module docstring): family format, LoRA
    merged (+ the unmerged training state), processor files copied from ``processor_source``."""
    from safetensors.torch import save_file

    from posevlm.models.spatial_mllm import SpatialMLLM, save_pretrained
    from posevlm.models.vlm2 import VLM2
    from posevlm.models.vlm2 import save_pretrained as save_vlm2

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict() if state_dict is None else state_dict)
    scales = lora_scales(model)
    if scales:
        save_file({k: v.detach().contiguous() for k, v in _untied(model, state).items()},
                  str(output_dir / TRAIN_STATE_NAME), metadata={"format": "pt"})
        state = merge_lora_state_dict(state, scales)
    if isinstance(model, VLM2):  # a Spatial-MLLM checkpoint + the stage (model_type spatial-mllm-vlm2)
        save_vlm2(model, output_dir, state_dict=state, processor=False)
    elif isinstance(model, SpatialMLLM):
        save_pretrained(model, output_dir, state_dict=state, processor=False)
    else:
        model.save_pretrained(str(output_dir), state_dict=state)
    if processor_source is not None:
        copy_processor_files(processor_source, output_dir)
    return output_dir


def _untied(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with tensors that share storage with an earlier key dropped (safetensors refuses shared storage);
    :func:`load_training_state` ties them back through the model."""
    seen: set[int] = set()
    out = {}
    params = dict(model.named_parameters(remove_duplicate=False))
    shared = {id(p) for p in params.values() if sum(q is p for q in params.values()) > 1}
    for key, value in state.items():
        param = params.get(key)
        if param is not None and id(param) in shared:
            if id(param) in seen:
                continue
            seen.add(id(param))
        out[key] = value
    return out


def load_training_state(model: nn.Module, checkpoint: str | Path) -> bool:
    """Load the weights of a checkpoint written by :func:`export_model` back into the live ``model`` for resuming,
    every tensor checked: the unmerged LoRA state when present; a Spatial-MLLM's released layout; a PointCloudLM
    through its ``from_pretrained`` (decoder with MixedRoPE3D, point modules); a transformers
    model through its own ``from_pretrained`` (which renames the saved layout, e.g. Qwen2.5-VL's ``model.layers.*``
    back to ``model.language_model.*``) plus the learned pose-bias slopes. Returns False for any other module (the
    caller falls back to transformers' loading).

    transformers 5.23's ``Trainer`` resumes with ``load_state_dict(strict=False)`` on the saved names, which for
    Qwen2.5-VL match none of the in-memory ones: it would silently restart from the initial weights.

    Raises:
        CheckpointError: missing or unexpected keys (resume with the configuration that wrote the checkpoint).
    """
    from safetensors.torch import load_file
    from transformers import PreTrainedModel

    from posevlm.models.point_lm import PointCloudLM
    from posevlm.models.spatial_mllm import SpatialMLLM
    from posevlm.models.spatial_mllm.loading import checkpoint_key_to_module
    from posevlm.spatial import resolve_checkpoint

    checkpoint = Path(checkpoint)
    loaded_slopes: set[str] = set()
    if (checkpoint / TRAIN_STATE_NAME).is_file():
        state = load_file(str(checkpoint / TRAIN_STATE_NAME))
    elif isinstance(model, SpatialMLLM):
        state = {}
        for path in resolve_checkpoint(checkpoint):
            for key, value in load_file(str(path)).items():
                module_key, _ = checkpoint_key_to_module(key)
                state[module_key or key] = value
    elif isinstance(model, PreTrainedModel) and (checkpoint / "config.json").is_file():
        from posevlm.models import load_learned_slopes
        from posevlm.models.camera_attention import SLOPES_NAME

        dtype = next(model.parameters()).dtype
        state = type(model).from_pretrained(str(checkpoint), dtype=dtype, device_map="cpu").state_dict()
        if load_learned_slopes(model, checkpoint):
            loaded_slopes = {k for k in model.state_dict() if k.endswith(SLOPES_NAME)}
    elif isinstance(model, PointCloudLM):  # decoder (+ MixedRoPE3D) and point modules, as save_pretrained wrote them
        dtype = next(model.decoder.parameters()).dtype
        state = PointCloudLM.from_pretrained(checkpoint, dtype=dtype, device_map="cpu").state_dict()
    else:
        return False
    _load_checked(model, state, checkpoint, skip=loaded_slopes)
    return True


def _load_checked(model: nn.Module, state: Mapping[str, Tensor], checkpoint: Path, *, skip: set[str]) -> None:
    from posevlm.spatial import CheckpointError

    params = dict(model.named_parameters(remove_duplicate=False))
    expected = set(model.state_dict()) - skip
    tied = {k for k in expected - set(state) if k in params and any(params[k] is params[j] for j in state
                                                                        if j in params)}
    missing, unexpected = sorted(expected - set(state) - tied), sorted(set(state) - expected - skip)
    if missing or unexpected:
        raise CheckpointError(f"{checkpoint}: {len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} "
                              f"unexpected {unexpected[:3]}; resume with the configuration that wrote this checkpoint",
                              path=checkpoint)
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state.items() if k not in skip}, strict=False)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a run that finished writing (``trainer_state.json``, written last, reads as
    JSON), oldest first. A folder a kill interrupted is skipped, never deleted."""
    import json

    def complete(folder: Path) -> bool:
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            return False
        return True

    folders = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted((p for p in folders if complete(p)), key=lambda p: int(p.name.split("-")[-1]))
