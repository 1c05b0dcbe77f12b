"""NonFiniteGuard in real transformers Trainer runs of a tiny Qwen2.5-VL on CPU: a NaN injected at step k (a layer's
output, or a parameter's gradient) is reported by name with the right step and the batch's sample ids; "stop"
stops with the parameters untouched, "skip" leaves parameters and optimizer state as they were and trains on."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from spatial_mllm_tiny import tiny_models  # noqa: E402

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.train.guard import SAMPLE_IDS_KEY, NonFiniteGuard  # noqa: E402

POISONED = "model.language_model.layers.1.mlp"
PARAM = "model.language_model.layers.0.self_attn.v_proj.weight"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_models.save_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_guard") / "qwen2_5")


class Samples(torch.utils.data.Dataset):
    """16 text-only samples of 10 random tokens, each with an id."""

    def __init__(self, n=16, length=10):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(40, 200, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "sample_id": f"s{i:02d}"}


def collate(features):
    ids = torch.stack([f["input_ids"] for f in features])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone(),
            SAMPLE_IDS_KEY: [f["sample_id"] for f in features]}


class Snapshots(transformers.TrainerCallback):
    """Parameters after every optimizer step, and the sample ids each step's forward received."""

    def __init__(self, model):
        self.model = model
        self.params: dict[int, dict[str, torch.Tensor]] = {}
        self.ids: dict[int, list[str]] = {}
        self.state = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.state = state
        self.params[0] = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def on_step_end(self, args, state, control, **kwargs):
        self.params[state.global_step] = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def pre_hook(self, module, args, kwargs):  # registered before the guard's: sees the ids before they are popped
        self.ids.setdefault(self.state.global_step + 1, []).extend(kwargs.get(SAMPLE_IDS_KEY, []))


def run(tiny_path, tmp_path, policy, poison, *, callbacks=(), max_steps=5, accumulation=1, guard=True,
        watch="activations"):
    """Train the tiny model with ``poison(model, snaps)`` installed; returns (trainer, snapshots, guard)."""
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_path, dtype=torch.float32)
    snaps = Snapshots(model)
    model.register_forward_pre_hook(snaps.pre_hook, with_kwargs=True)
    poison(model, snaps)
    nf = NonFiniteGuard(policy=policy, watch=watch) if guard else None
    if nf is None:  # the model must not see the ids: drop them as the guard would
        model.register_forward_pre_hook(lambda m, a, kw: (a, {k: v for k, v in kw.items() if k != SAMPLE_IDS_KEY}),
                                        with_kwargs=True)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=max_steps, per_device_train_batch_size=2,
        gradient_accumulation_steps=accumulation, learning_rate=1e-2, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Samples(), data_collator=collate,
                                   callbacks=[snaps, *callbacks, *([nf] if nf else [])])
    trainer.train()
    return trainer, snaps, nf


def poison_output_at(step):
    """NaN in the output of POISONED during the forward of optimizer step ``step``."""
    def install(model, snaps):
        def hook(module, args, output):
            if snaps.state.global_step + 1 == step:
                return output * float("nan")
        model.get_submodule(POISONED).register_forward_hook(hook)
    return install


def poison_grad_at(step, micro_batch):
    """Inf in PARAM's gradient in one micro-batch of optimizer step ``step``."""
    def install(model, snaps):
        calls = {}

        def hook(g):
            k = snaps.state.global_step + 1
            calls[k] = calls.get(k, -1) + 1
            return g * float("inf") if (k, calls[k]) == (step, micro_batch) else g
        model.get_parameter(PARAM).register_hook(hook)
    return install


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def read_report(tmp_path, step):
    return json.loads((tmp_path / "run" / "nonfinite" / f"step-{step}.json").read_text())


def test_without_a_guard_the_poison_reaches_the_parameters(tiny_path, tmp_path):
    """The control: the injected NaN really corrupts the model when nothing guards the step."""
    trainer, snaps, _ = run(tiny_path, tmp_path, "stop", poison_output_at(3), max_steps=3, guard=False)
    assert trainer.state.global_step == 3
    assert all(torch.isfinite(p).all() for p in snaps.params[2].values())
    assert not all(torch.isfinite(p).all() for p in snaps.params[3].values())


def test_nan_output_at_step_k_is_named_and_stop_stops_without_the_update(tiny_path, tmp_path):
    trainer, snaps, guard = run(tiny_path, tmp_path, "stop", poison_output_at(3))
    assert trainer.state.global_step == 3  # stopped right after the poisoned step
    assert sorted(p.name for p in (tmp_path / "run" / "nonfinite").iterdir()) == ["step-3.json"]
    report = read_report(tmp_path, 3)
    assert report["first"]["name"] == POISONED and report["first"]["phase"] == "forward"
    assert report["first"]["kind"] == "activation" and report["first"]["micro_batch"] == 0
    assert report["global_step"] == 3 and report["action"] == "stop" and not report["update_applied"]
    assert report["sample_ids"] == snaps.ids[3] and len(report["sample_ids"]) == 2
    assert "model.language_model.layers.1" in {e["name"] for e in report["nonfinite"]}  # spread downstream
    assert guard.reports == [report]
    # steps 1-2 trained; the poisoned step 3 changed nothing
    assert not same(snaps.params[0], snaps.params[2]) and same(snaps.params[2], snaps.params[3])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class AdamState(transformers.TrainerCallback):
    """AdamW's step count and first moment of three LLM parameters after every optimizer step."""

    def __init__(self):
        self.states = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        inner = optimizer.optimizer
        params = [model.get_parameter(n) for n in (PARAM, "lm_head.weight", f"{POISONED}.down_proj.weight")]
        self.states[state.global_step] = [(int(inner.state[p]["step"]), inner.state[p]["exp_avg"].clone())
                                          for p in params]


def test_skip_keeps_parameters_and_optimizer_state_and_training_continues(tiny_path, tmp_path):
    adam = AdamState()
    trainer, snaps, guard = run(tiny_path, tmp_path, "skip", poison_output_at(3), callbacks=[adam])
    assert trainer.state.global_step == 5
    assert [r["global_step"] for r in guard.reports] == [3]
    report = read_report(tmp_path, 3)
    assert report["first"]["name"] == POISONED and report["action"] == "skip"
    assert report["sample_ids"] == snaps.ids[3]
    assert same(snaps.params[2], snaps.params[3])  # the skipped step applied nothing
    assert not same(snaps.params[3], snaps.params[4]) and not same(snaps.params[4], snaps.params[5])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    for (s2, m2), (s3, m3), (s4, m4) in zip(adam.states[2], adam.states[3], adam.states[4]):
        assert (s2, s3, s4) == (2, 2, 3) and torch.equal(m3, m2) and not torch.equal(m4, m3)


def test_inf_gradient_is_named_in_backward_with_gradient_accumulation(tiny_path, tmp_path):
    trainer, snaps, guard = run(tiny_path, tmp_path, "skip", poison_grad_at(2, micro_batch=1), max_steps=3,
                                accumulation=2)
    assert trainer.state.global_step == 3 and [r["global_step"] for r in guard.reports] == [2]
    report = read_report(tmp_path, 2)
    assert report["first"] == {"phase": "backward", "kind": "parameter_grad", "name": PARAM, "micro_batch": 1,
                               "description": f"backward: gradient of parameter {PARAM} (micro-batch 1)"}
    assert report["sample_ids"] == snaps.ids[2] and len(report["sample_ids"]) == 4
    assert report["sample_ids_by_micro_batch"] == [snaps.ids[2][:2], snaps.ids[2][2:]]
    assert same(snaps.params[1], snaps.params[2]) and not same(snaps.params[2], snaps.params[3])


def test_watch_gradients_names_the_loss(tiny_path, tmp_path):
    _, _, guard = run(tiny_path, tmp_path, "stop", poison_output_at(2), watch="gradients")
    first = guard.reports[0]["first"]
    assert (first["name"], first["kind"], first["phase"]) == ("<model>[loss]", "loss", "forward")
    assert guard.reports[0]["global_step"] == 2


def test_guard_settings_are_validated():
    with pytest.raises(ConfigError, match=r"policy='halt' \(allowed: stop, skip\); watch='all'"):
        NonFiniteGuard(policy="halt", watch="all")
    args = transformers.TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    args.deepspeed = {"zero_optimization": {"stage": 2}}
    with pytest.raises(ConfigError, match="use policy='stop' with DeepSpeed"):
        NonFiniteGuard(policy="skip").on_train_begin(args, None, None, model=torch.nn.Linear(2, 2))


DDP_WORKER = """
import json, os, sys, torch
from torch import nn
from posevlm.train.guard import NonFiniteGuard

torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
current = {"step": 0}
if rank == 1:  # only rank 1 sees a NaN, in step 2 (registered before the guard's hooks, so they see it)
    model[1].register_forward_hook(lambda m, a, out: out * float("nan") if current["step"] == 1 else out)
guard = NonFiniteGuard(sys.argv[1], policy="skip")
guard.attach(model)
guard.wrap_optimizer(opt)
changed = []
for step in range(3):
    current["step"] = step
    guard.begin_step(step)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(5, 4), sample_ids=[f"r{rank}-s{step}-{i}" for i in range(5)]).sum().backward()
    opt.step()
    opt.zero_grad()
    changed.append(any(not torch.equal(b, p) for b, p in zip(before, model.parameters())))
print("RESULT", json.dumps({"rank": rank, "changed": changed, "reports": guard.reports}), flush=True)
torch.distributed.barrier()
torch.distributed.destroy_process_group()  # a live gloo thread at interpreter shutdown can abort the process
"""


@pytest.mark.slow
def test_ddp_ranks_skip_together_when_one_rank_sees_a_nan(tmp_path):
    """Two gloo processes; only rank 1's step 2 has a NaN: both ranks hold back that update (the flag is
    all-reduced), rank 1 names the tensor and rank 0 notes that another rank saw it."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", DDP_WORKER, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**env, "RANK": str(r)}) for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:] + outs[1][1][-2000:]
    got = {r["rank"]: r for r in (json.loads(o.split("RESULT ", 1)[1]) for o, _ in outs)}
    for rank in (0, 1):
        assert got[rank]["changed"] == [True, False, True]
        [report] = got[rank]["reports"]
        assert report["global_step"] == 2 and report["world_size"] == 2
        assert report["sample_ids"] == [f"r{rank}-s1-{i}" for i in range(5)]
    assert got[1]["reports"][0]["first"]["name"] == "1" and got[0]["reports"][0]["first"] is None
    assert sorted(p.name for p in (tmp_path / "nonfinite").iterdir()) == ["step-2.json", "step-2.rank-1.json"]
