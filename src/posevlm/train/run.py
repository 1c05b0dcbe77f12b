"""The training recipe: one :class:`~posevlm.train.config.TrainConfig` -> a run directory, top to bottom.

``train(config)`` (``posevlm train CONFIG.yaml [KEY=VALUE ...]``) runs, on every process of a launch (one process,
``torchrun``, ``accelerate launch``; rank 0 writes the files):

1. the run directory and where to resume from (``run.resume``: the newest complete checkpoint, never, or a given
   one; a directory holding another configuration is refused, naming the keys that differ);
2. the run record: ``train_config.yaml`` (the full resolved config), ``run.json`` (provenance: git hash, library
   versions, world size, seed, device);
3. seeds (``run.seed``, ``run.deterministic``);
4. the data: the synthetic training set when the config has a ``synthetic`` section (built once, reused), then the
   dataset and the collator of the config's :class:`~posevlm.train.families.TrainFamily` (by default the dataset
   mix as :class:`~posevlm.train.data.SFTDataset`, bad samples to ``bad_samples.jsonl``, and the SFT collator);
5. the model (:func:`~posevlm.train.trainer.build_model`), the freeze policy and LoRA (:mod:`posevlm.train.policy`),
   recorded in ``run.json``;
6. ``TrainingArguments`` and :class:`~posevlm.train.trainer.PosevlmTrainer` with the loss log and the NaN guard;
   ``train(resume_from_checkpoint=...)``;
7. the final checkpoint ``final/`` and ``summary.json`` (steps, losses, bad samples, non-finite steps); with
   ``run.evaluate``, an evaluation of ``final/`` on the synthetic test split (``eval/``, a ``posevlm eval`` run
   directory). A run the NaN guard stopped (``run.nonfinite=stop``) writes no ``final/`` and raises
   :class:`NonFiniteStop` naming the tensor, the step and the batch's sample ids.

Checkpoints (``checkpoint-<step>/``) load into ``posevlm eval --backend hf`` as they are and resume exactly: the data
order (seeded sampler, skipped batches), the RNG states, optimiser and scheduler come back (tested by killing a run
with SIGKILL).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from posevlm.errors import ConfigError, PosevlmError
from posevlm.train.config import TrainConfig

__all__ = ["TrainResult", "NonFiniteStop", "PreparedRun", "train", "prepare_run", "finish_run", "resolve_resume",
           "training_arguments", "RUN_CONFIG_NAME", "RUN_RECORD_NAME", "SUMMARY_NAME"]

RUN_CONFIG_NAME = "train_config.yaml"
RUN_RECORD_NAME = "run.json"
SUMMARY_NAME = "summary.json"
#: keys that may change between a run and its resumption (they do not change what is computed)
_RESUMABLE_CHANGES = ("run.resume", "run.num_workers", "run.evaluate", "run.save_total_limit", "run.output_dir",
                      "model.local_files_only")


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: its directory, the final checkpoint, the optimiser steps done, the per-step losses,
    the checkpoint it resumed from, the bad-sample summary, the evaluation run directory (``run.evaluate``) and the
    guard's non-finite reports (steps skipped with ``run.nonfinite=skip``)."""

    output_dir: Path
    final: Path
    global_step: int
    losses: tuple[float, ...]
    resumed_from: Path | None
    bad_samples: dict[str, Any]
    eval_dir: Path | None = None
    nonfinite: tuple[dict[str, Any], ...] = ()


class NonFiniteStop(PosevlmError):
    """The NaN / Inf guard stopped the run (``run.nonfinite=stop``); the message names the tensor, the step, the
    batch's sample ids and the report."""


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def resolve_resume(config: TrainConfig, output_dir: Path) -> Path | None:
    """The checkpoint to resume from (module docstring, step 1), or None for a fresh start.

    Raises:
        ConfigError: ``run.resume=never`` on a directory with checkpoints; a directory holding another config
            (the differing keys named); a given checkpoint that does not exist or is incomplete.
    """
    import yaml

    from posevlm.train.checkpoint import complete_checkpoints

    stored = output_dir / RUN_CONFIG_NAME
    found = complete_checkpoints(output_dir)
    if config.run.resume == "never":
        if found or (output_dir / "final").exists():
            raise ConfigError(f"output dir {output_dir} holds checkpoints and run.resume=never; pass run.resume=auto "
                              "to continue it or choose another run.output_dir", field="run.resume", value="never")
        return None
    if stored.is_file():
        before = _flat(yaml.safe_load(stored.read_text()) or {})
        now = _flat(json.loads(json.dumps(config.to_dict())))
        differ = sorted(k for k in set(before) | set(now)
                        if before.get(k) != now.get(k) and not k.startswith(_RESUMABLE_CHANGES))
        if differ and (found or config.run.resume != "auto"):
            shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differ[:6])
            raise ConfigError(f"output dir {output_dir} holds a run of another configuration ({shown}); resume it with "
                              f"its own config ({stored}) or choose another run.output_dir", field=differ[0],
                              value=differ)
    if config.run.resume == "auto":
        return found[-1] if found else None
    checkpoint = Path(config.run.resume)
    if not (checkpoint / "trainer_state.json").is_file():
        raise ConfigError(f"run.resume={checkpoint}: not a complete checkpoint (no trainer_state.json); pass a "
                          "checkpoint-<step> folder, auto or never", field="run.resume", value=str(checkpoint))
    return checkpoint


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def training_arguments(config: TrainConfig, output_dir: Path):
    """transformers ``TrainingArguments`` of a config: losses logged every step as exact floats (no NaN filter, the
    guard sees them), columns kept for the collator, a seeded sampler; bf16 on GPU, fp32 on CPU (``precision``)."""
    from transformers import TrainingArguments

    r, o = config.run, config.optim
    bf16 = r.precision == "bf16" or (r.precision == "auto" and _cuda())
    save_steps = int(r.save_steps) if r.save_steps >= 1 else float(r.save_steps)
    deepspeed = None
    if r.deepspeed is not None:
        from posevlm.train.deepspeed import deepspeed_config

        deepspeed = deepspeed_config(r.deepspeed)  # bucket sizes: filled once the model is built (_fill_deepspeed)
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=r.batch_size, gradient_accumulation_steps=r.grad_accum,
        num_train_epochs=r.epochs, max_steps=r.max_steps, learning_rate=o.lr, weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_epsilon=o.adam_epsilon, lr_scheduler_type=o.scheduler,
        warmup_steps=o.warmup_ratio, max_grad_norm=o.max_grad_norm, logging_strategy="steps",
        logging_steps=r.logging_steps, logging_nan_inf_filter=False, save_strategy="steps", save_steps=save_steps,
        save_total_limit=r.save_total_limit, seed=r.seed, data_seed=r.data_seed, full_determinism=r.deterministic,
        bf16=bf16, use_cpu=not _cuda(), dataloader_num_workers=r.num_workers, dataloader_pin_memory=_cuda(),
        remove_unused_columns=False, report_to="none", disable_tqdm=True, deepspeed=deepspeed,
        ddp_find_unused_parameters=False, average_tokens_across_devices=True,
    )


def _prepare_synthetic(config: TrainConfig, log: Callable[[str], None]) -> None:
    from posevlm.train.datasets import dataset_root
    from posevlm.train.synthetic import TRAIN_DATASET, build_synthetic_training_set

    folder = TRAIN_DATASET + ("_posed" if config.synthetic.media == "manifest" else "")
    build_synthetic_training_set(dataset_root(config.data.dataset_root) / folder, config.synthetic, log=log)


def _write_record(config: TrainConfig, output_dir: Path, extra: dict[str, Any]) -> None:
    import yaml

    from posevlm.atomic import atomic_write_text
    from posevlm.train.determinism import run_provenance

    output_dir.mkdir(parents=True, exist_ok=True)
    data = json.loads(json.dumps(config.to_dict()))
    atomic_write_text(output_dir / RUN_CONFIG_NAME, yaml.safe_dump(data, sort_keys=False))
    record = {"config": data, "provenance": run_provenance(seed=config.run.seed), **extra}
    atomic_write_text(output_dir / RUN_RECORD_NAME, json.dumps(record, indent=2, default=str) + "\n")


def _fill_deepspeed(args, model) -> None:
    """The DeepSpeed bucket sizes derive from the LLM width, which the Trainer cannot read from a Spatial-MLLM."""
    ds = getattr(args, "hf_deepspeed_config", None)
    if ds is not None:
        from posevlm.train.deepspeed import fill_hidden_size, hidden_size_of

        fill_hidden_size(ds.config, hidden_size_of(model))


#: (benchmark, file of the synthetic set, output folder under the run) evaluated after training, when the file exists
EVAL_BENCHMARKS = (("synthetic_vsi", "test_benchmark.jsonl", "eval"),
                   ("synthetic_pose", "test_pose_benchmark.jsonl", "eval_pose"))


def _evaluate(config: TrainConfig, final: Path, output_dir: Path, log: Callable[[str], None]) -> Path:
    """``posevlm eval`` of ``final`` on the synthetic test split (the frames of the training selection): the VSI
    questions into ``eval/``, the pose questions (when the set has them) into ``eval_pose/``. Returns ``eval/``."""
    from posevlm.eval.backends import backends
    from posevlm.eval.report import write_report
    from posevlm.eval.runner import EvalConfig, run_eval
    from posevlm.train.datasets import dataset_root
    from posevlm.train.synthetic import TRAIN_DATASET

    built = dataset_root(config.data.dataset_root) / f"{TRAIN_DATASET}_posed"
    meta = json.loads((built / "synthetic_train.json").read_text())
    frames_root = built / "sampled" / meta["sampling"]["slug"]
    pixels = {k: getattr(config.data, k) for k in ("min_pixels", "max_pixels", "total_pixels")
              if getattr(config.data, k) is not None}
    model = backends.get("hf").model_config({"model": str(final), "frames_root": frames_root, "batch_size": 1,
                                              "set": pixels})
    for name, source, folder in EVAL_BENCHMARKS:
        if not (built / source).is_file():
            continue
        eval_config = EvalConfig(benchmark={"name": name, "source": str(built / source)},
                                 model=model, prompt=config.synthetic.prompt,
                                 frames={"source": "folder_manifest", "root": str(frames_root),
                                         "num_frames": config.data.num_frames, "strategy": meta["sampling"]["strategy"]})
        out = output_dir / folder
        summary = run_eval(eval_config, out, shard="0/1")
        log(f"eval {name}: {summary.n_ok} answered, {summary.n_errors} errors -> {out}")
        write_report([out], out / "report", plot=False, allow_partial=not summary.ok)
    return output_dir / "eval"


@dataclass
class PreparedRun:
    """Steps 1-6 done: the ``Trainer`` ready to ``train(resume_from_checkpoint=checkpoint)``, its NaN guard, where the
    bad samples go. :func:`train` finishes it; benchmarks and tests drive it directly."""

    config: TrainConfig
    trainer: Any
    guard: Any
    checkpoint: Path | None
    bad_samples_path: Path


def _tuned_model(config: TrainConfig, args, log: Callable[[str], None]):
    """Step 5: the model of the config with LoRA and the freeze policy applied; (built, freeze report, groups)."""
    from posevlm.train.policy import (
        FreezePolicy, LoraSettings, apply_freeze_policy, apply_lora, describe_param_groups, optimizer_param_groups,
    )  # fmt: skip
    from posevlm.train.trainer import build_model

    with args.main_process_first(desc="model"):
        built = build_model(config.model, work_dir=config.output_dir, seed=config.run.seed)
    _fill_deepspeed(args, built.model)
    if config.tune.lora is not None:
        apply_lora(built.model, LoraSettings.from_dict(config.tune.lora))
    freeze = apply_freeze_policy(built.model, FreezePolicy.parse(config.tune.policy))
    for line in freeze.lines():
        log(f"  {line}")
    o = config.optim
    groups = describe_param_groups(optimizer_param_groups(built.model, lr=o.lr, projector_lr=o.projector_lr,
                                                          vision_lr=o.vision_lr, weight_decay=o.weight_decay))
    return built, freeze, groups


def prepare_run(config: TrainConfig, *, log: Callable[[str], None] = print, trainer_cls=None) -> PreparedRun:
    """Steps 1-6 of the module docstring: resume point, arguments, seeds, data, model, run record, ``Trainer``
    (``trainer_cls``: a :class:`~posevlm.train.trainer.PosevlmTrainer` subclass, e.g. an instrumented one)."""
    from transformers import PrinterCallback

    from posevlm.train.bad_samples import BadSampleLog
    from posevlm.train.determinism import seed_everything
    from posevlm.train.guard import NonFiniteGuard
    from posevlm.train.trainer import LossLog, NoSaveOnGuardStop, PosevlmTrainer, prepare_source

    output_dir = config.output_dir
    checkpoint = resolve_resume(config, output_dir)
    prepare_source(config.model, output_dir)  # the tiny preset, before DeepSpeed is configured
    args = training_arguments(config, output_dir)  # sets up the process group under torchrun / accelerate
    log(f"run {output_dir}: " + (f"resuming from {checkpoint.name}" if checkpoint else "fresh start") +
        f", world size {args.world_size}")
    seeds = seed_everything(config.run.seed, config.run.deterministic)
    if config.synthetic is not None:
        with args.main_process_first(desc="synthetic training set"):
            _prepare_synthetic(config, log)
    built, freeze, groups = _tuned_model(config, args, log)
    bad_path = output_dir / "bad_samples.jsonl"
    family = config.model.train_family
    dataset = family.make_dataset(config, built, BadSampleLog(bad_path))
    collator = family.make_collator(config, built, built.processor.tokenizer.pad_token_id)
    if _is_main():
        _write_record(config, output_dir, {
            "model": built.info, "freeze": freeze.to_dict(), "optimizer_groups": groups, "samples": len(dataset),
            "collator": {k: getattr(collator, k) for k in ("pose_inputs", "with_video_tchw") if hasattr(collator, k)},
            "world_size": args.world_size, "device": str(args.device), "precision": "bf16" if args.bf16 else "fp32",
            "seeds": seeds, "deepspeed": getattr(getattr(args, "hf_deepspeed_config", None), "config", None),
            "resumed_from": None if checkpoint is None else str(checkpoint)})
    every = max(1, (config.run.max_steps if config.run.max_steps > 0 else 200) // 20)
    guard = NonFiniteGuard(output_dir, policy=config.run.nonfinite)
    trainer = (trainer_cls or PosevlmTrainer)(
        model=built.model, args=args, train_dataset=dataset, data_collator=collator, optim=config.optim,
        callbacks=[LossLog(output_dir, log=log if _is_main() else None, every=every), guard, NoSaveOnGuardStop(guard)],
        processor_source=built.processor_source)
    trainer.remove_callback(PrinterCallback)  # progress goes through LossLog's lines
    return PreparedRun(config, trainer, guard, checkpoint, bad_path)


def train(config: TrainConfig, *, log: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume) the training of ``config`` (module docstring). Returns the :class:`TrainResult`."""
    run = prepare_run(config, log=log)
    run.trainer.train(resume_from_checkpoint=None if run.checkpoint is None else str(run.checkpoint))
    return finish_run(run, log=log)


def finish_run(run: PreparedRun, *, log: Callable[[str], None] = print) -> TrainResult:
    """Step 7: the final checkpoint, ``summary.json``, the optional evaluation (a run the guard stopped keeps its
    checkpoints, gets no ``final/`` and raises :class:`NonFiniteStop`)."""
    import torch

    from posevlm.train.bad_samples import BadSampleLog
    from posevlm.train.trainer import LossLog

    config, trainer, guard, output_dir = run.config, run.trainer, run.guard, run.config.output_dir
    stopped = [r for r in guard.reports if r["action"] == "stop"]
    final = output_dir / "final"
    if not stopped:
        trainer.save_model(str(final))
    losses = tuple(float(e["loss"]) for e in LossLog.read(output_dir))
    bad = BadSampleLog.read(run.bad_samples_path).summary()
    eval_dir = None
    if _is_main():
        from posevlm.atomic import atomic_write_text

        atomic_write_text(output_dir / SUMMARY_NAME, json.dumps({
            "global_step": trainer.state.global_step, "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "bad_samples": bad,
            "final": None if stopped else str(final), "nonfinite": guard.reports,
            "resumed_from": None if run.checkpoint is None else str(run.checkpoint)}, indent=2) + "\n")
        log(f"{'stopped' if stopped else 'done'}: {trainer.state.global_step} steps, loss "
            f"{losses[0] if losses else float('nan'):.4f} -> {losses[-1] if losses else float('nan'):.4f}, "
            f"{bad['n_bad']} bad sample(s), {len(guard.reports)} non-finite step(s)"
            + ("" if stopped else f"; final checkpoint {final}"))
        if config.run.evaluate and not stopped:
            eval_dir = _evaluate(config, final, output_dir, log)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    if stopped:
        first = stopped[0]
        raise NonFiniteStop(f"training stopped at step {first['global_step']}: non-finite "
                            f"{(first['first'] or {}).get('description', 'value on another rank')}; batch "
                            f"{first['sample_ids']}; report {output_dir / 'nonfinite'}; checkpoints up to the last "
                            "finite step are kept (run.nonfinite=skip skips such steps instead)")
    return TrainResult(output_dir, final, trainer.state.global_step, losses, run.checkpoint, bad, eval_dir,
                       tuple(guard.reports))
