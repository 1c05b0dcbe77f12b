"""NaN / Inf guard for transformers ``Trainer`` runs: name the first non-finite tensor, save the batch ids, stop or
skip the update.

How it works (transformers 5.23, accelerate; one :class:`NonFiniteGuard` in ``Trainer(callbacks=[...])``):

* ``on_train_begin`` attaches module hooks to ``model`` and wraps the prepared optimizer's ``step``:

  - forward hooks on every module (``watch="activations"``) record, for each floating tensor the module returns
    (one level into tuples and ``ModelOutput`` dicts: the root's ``[loss]`` and ``[logits]``), an on-device flag
    "has a NaN / Inf"; the same tensors get gradient hooks (the backward flag of that module's output), and every
    trainable parameter a post-accumulate-grad hook (the flag of its gradient). ``watch="gradients"`` keeps the
    root output (loss) and the parameter gradients only. Flags are sums in float32 (NaN and Inf propagate), so
    recording costs one reduction per tensor and **no host sync**;
  - a forward pre-hook on the root model takes the batch's ids out of the keyword arguments
    (``sample_ids``, the key ``posevlm.train.collate.SFTCollator(with_sample_ids=True)`` writes; the model never
    sees it) and counts micro-batches;
  - the wrapped ``optimizer.step`` stacks the flags of the step (every micro-batch of gradient accumulation) and
    syncs once (``all_reduce`` MAX across ranks under DDP, so every rank decides the same). A finite step runs
    the real ``step``. A non-finite one writes ``<output_dir>/nonfinite/step-<k>.json`` (rank 0; other ranks
    ``step-<k>.rank-<r>.json``) naming the first non-finite tensor in execution order (module or parameter
    name, ``forward`` / ``backward``, micro-batch), the count and the batch's sample ids, zeroes the
    gradients and does **not** call the real ``step`` (parameters and optimizer state unchanged: no Adam moment
    or step-count update); with ``policy="stop"`` ``on_step_end`` then sets ``control.should_training_stop``.
* ``k`` is the number of the optimizer step being taken, ``state.global_step + 1``: the ``step`` of the trainer's
  log line and of ``checkpoint-<k>`` after it. The learning-rate scheduler still advances on a skipped step
  (it follows ``global_step``, which the trainer increments regardless).
* Under DeepSpeed the engine applies the update inside ``backward``: ``policy="skip"`` is refused there
  (ConfigError) and ``"stop"`` reports with ``"update_applied": true``.
* Recording is on only between ``on_step_begin`` and the optimizer step, so evaluation passes are not watched.
* Module forward hooks run in registration order: a hook that changes a module's output and was registered after
  the guard attached is seen one module later (the parent's output is then the first non-finite tensor).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from transformers import TrainerCallback

from posevlm.atomic import atomic_write_text
from posevlm.errors import ConfigError

__all__ = ["GUARD_POLICIES", "GUARD_WATCH", "SAMPLE_IDS_KEY", "REPORT_DIR", "NonFiniteEvent", "NonFiniteGuard"]

GUARD_POLICIES = ("stop", "skip")
GUARD_WATCH = ("activations", "gradients")
#: the collator's key for the batch's sample ids (a list of B str); the guard pops it before the model sees it
SAMPLE_IDS_KEY = "sample_ids"
REPORT_DIR = "nonfinite"
_LISTED = 20  # non-finite tensors listed per report after the first

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NonFiniteEvent:
    """One non-finite tensor: ``phase`` forward | backward; ``kind`` activation | activation_grad |
    parameter_grad | loss; ``name`` the module (``name[key]`` for an entry of its output) or parameter;
    ``micro_batch`` its index within the optimizer step."""

    phase: str
    kind: str
    name: str
    micro_batch: int

    def describe(self) -> str:
        what = {"activation": "output of", "activation_grad": "gradient of the output of",
                "parameter_grad": "gradient of parameter", "loss": "loss"}[self.kind]
        return f"{self.phase}: {what} {self.name} (micro-batch {self.micro_batch})"


def _float_tensors(output: Any) -> list[tuple[str, Tensor]]:
    """(key suffix, tensor) for the floating tensors of a module output, one level into tuples / dicts."""
    if isinstance(output, Tensor):
        return [("", output)] if output.is_floating_point() else []
    if isinstance(output, Mapping):
        items = output.items()
    elif isinstance(output, (tuple, list)):
        items = enumerate(output)
    else:
        return []
    return [(f"[{k}]", v) for k, v in items if isinstance(v, Tensor) and v.is_floating_point()]


def _nonfinite_flag(t: Tensor) -> Tensor:
    """0-d bool on ``t``'s device: whether ``t`` holds a NaN or Inf (NaN and Inf survive a float32 sum)."""
    return ~torch.isfinite(t.detach().sum(dtype=torch.float32))


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class NonFiniteGuard(TrainerCallback):
    """Catch the first NaN / Inf of a training step, report it and stop or skip the update (module docstring).

    Args:
        output_dir: where ``nonfinite/step-<k>.json`` goes; None: ``TrainingArguments.output_dir``.
        policy: ``stop`` (no update, then stop training) or ``skip`` (no update, continue).
        watch: ``activations`` (module outputs forward and backward, parameter gradients, loss) or
            ``gradients`` (parameter gradients and the model's outputs, i.e. loss and logits, only).
    Attributes:
        reports: the report dicts written so far (also on disk).

    Usable without a Trainer: :meth:`attach` a model, :meth:`wrap_optimizer`, call :meth:`begin_step` before
    each step's first forward; the wrapped ``step`` decides.
    """

    def __init__(self, output_dir: str | Path | None = None, policy: str = "stop", *, watch: str = "activations"):
        problems = []
        if policy not in GUARD_POLICIES:
            problems.append(f"policy={policy!r} (allowed: {', '.join(GUARD_POLICIES)})")
        if watch not in GUARD_WATCH:
            problems.append(f"watch={watch!r} (allowed: {', '.join(GUARD_WATCH)})")
        if problems:
            raise ConfigError("NonFiniteGuard: " + "; ".join(problems), field="nonfinite_guard", value=problems)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.policy = policy
        self.watch = watch
        self.reports: list[dict[str, Any]] = []
        self._handles: list[Any] = []
        self._events: list[tuple[str, str, str, int, Tensor]] = []
        self._sample_ids: list[list[Any]] = []
        self._micro = -1
        self._active = False
        self._global_step = 0
        self._stop_requested = False
        self._update_in_backward = False
        self._optimizer = None
        self._original_step = None

    # ---- recording ----------------------------------------------------------------------------------------
    def _record(self, phase: str, kind: str, name: str, tensor: Tensor | None) -> None:
        if self._active and tensor is not None:
            self._events.append((phase, kind, name, max(self._micro, 0), _nonfinite_flag(tensor)))

    def _output_hook(self, name: str, *, grads: bool):
        def hook(module, args, output):
            if not self._active:
                return
            for key, tensor in _float_tensors(output):
                label = f"{name}{key}"
                self._record("forward", "loss" if key == "[loss]" else "activation", label, tensor)
                if grads and tensor.requires_grad:
                    tensor.register_hook(lambda g, label=label: self._record("backward", "activation_grad", label, g))
        return hook

    def _param_hook(self, name: str):
        def hook(param):
            self._record("backward", "parameter_grad", name, param.grad)
        return hook

    def _root_pre_hook(self, module, args, kwargs):
        ids = kwargs.pop(SAMPLE_IDS_KEY, None)
        if self._active:
            self._micro += 1
            self._sample_ids.append(list(ids) if ids is not None else [])
        return args, kwargs

    def note_sample_ids(self, ids) -> None:
        """Record the current micro-batch's sample ids yourself (when they never reach the model's kwargs)."""
        if self._sample_ids:
            self._sample_ids[-1] = list(ids)

    def note_loss(self, loss: Tensor) -> None:
        """Record a loss computed outside the model (``compute_loss_func``)."""
        self._record("forward", "loss", "loss", loss)

    # ---- wiring ---------------------------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """Register the hooks on ``model`` (the unwrapped model; its parameter names are reported)."""
        self.detach()
        self._handles.append(model.register_forward_pre_hook(self._root_pre_hook, with_kwargs=True))
        if self.watch == "activations":
            for name, module in model.named_modules():
                self._handles.append(module.register_forward_hook(self._output_hook(name or "<model>", grads=True)))
        else:
            self._handles.append(model.register_forward_hook(self._output_hook("<model>", grads=False)))
        for name, param in model.named_parameters():
            if param.requires_grad:
                self._handles.append(param.register_post_accumulate_grad_hook(self._param_hook(name)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def wrap_optimizer(self, optimizer) -> None:
        """Replace ``optimizer.step`` (this instance only) by the guarded step."""
        self.unwrap_optimizer()
        self._optimizer, self._original_step = optimizer, optimizer.step

        @functools.wraps(self._original_step)  # keeps the LR scheduler's step-tracking marker
        def guarded_step(*args, **kwargs):
            if self._check_and_report():
                optimizer.zero_grad(set_to_none=True)
                return None
            return self._original_step(*args, **kwargs)

        optimizer.step = guarded_step

    def unwrap_optimizer(self) -> None:
        if self._optimizer is not None:
            self._optimizer.step = self._original_step
        self._optimizer = self._original_step = None

    def begin_step(self, global_step: int) -> None:
        """Start recording the optimizer step after ``global_step`` completed ones."""
        self._global_step = int(global_step)
        self._events, self._sample_ids, self._micro = [], [], -1
        self._active = True

    # ---- the decision ---------------------------------------------------------------------------------------
    def _check_and_report(self) -> bool:
        """True when this step saw a non-finite tensor on any rank (report written); one host sync."""
        events, self._active = self._events, False
        rank, world = _distributed()
        flags = torch.stack([e[4] for e in events]) if events else torch.zeros(1, dtype=torch.bool)
        bad = flags.any().to(torch.int32)
        if world > 1:
            if torch.distributed.get_backend() == "nccl":
                bad = bad.to(torch.device("cuda", torch.cuda.current_device()))
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if not bool(bad.item()):
            return False
        hits = flags.nonzero().flatten().tolist() if events else []
        found = [NonFiniteEvent(*events[i][:4]) for i in hits]
        step = self._global_step + 1
        report = {
            "schema_version": 1, "global_step": step, "rank": rank, "world_size": world, "policy": self.policy,
            "action": "stop" if self.policy == "stop" else "skip", "update_applied": self._update_in_backward,
            "first": asdict(found[0]) | {"description": found[0].describe()} if found else None,
            "nonfinite_count": len(found), "nonfinite": [asdict(e) for e in found[1:1 + _LISTED]],
            "watched_tensors": len(events),
            "sample_ids": [i for ids in self._sample_ids for i in ids],
            "sample_ids_by_micro_batch": self._sample_ids,
        }
        if not found:
            report["note"] = "finite on this rank; another rank saw a non-finite tensor"
        self._write(report, step, rank)
        self.reports.append(report)
        if self.policy == "stop":
            self._stop_requested = True
        log.error("non-finite %s at step %d: %s; sample ids %s; %s", "tensor" if found else "value (other rank)", step,
                  found[0].describe() if found else "-", report["sample_ids"],
                  "stopping" if self.policy == "stop" else "update skipped")
        return True

    def _write(self, report: dict[str, Any], step: int, rank: int) -> None:
        if self.output_dir is None:
            return
        name = f"step-{step}.json" if rank == 0 else f"step-{step}.rank-{rank}.json"
        path = self.output_dir / REPORT_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")

    # ---- TrainerCallback ------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._update_in_backward = bool(getattr(args, "deepspeed", None))
        if self._update_in_backward and self.policy == "skip":
            raise ConfigError("NonFiniteGuard(policy='skip') cannot hold back a DeepSpeed update (the engine steps "
                              "inside backward); use policy='stop' with DeepSpeed", field="nonfinite_guard",
                              value="skip")
        if self.output_dir is None:
            self.output_dir = Path(args.output_dir)
        self._stop_requested = False
        self.attach(model)
        self.wrap_optimizer(optimizer)

    def on_step_begin(self, args, state, control, **kwargs):
        self.begin_step(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._stop_requested:
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._active = False
        self.detach()
        self.unwrap_optimizer()
