"""The shipped DeepSpeed configs (filled by TrainingArguments, parsed by DeepSpeed, spec §3.5 values) and ZeRO-3-safe
loading of VGGT weights into a Spatial-MLLM (plain path; branch selection; a real 2-process ZeRO-3 run on CPU)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from spatial_mllm_tiny import tiny_models, tiny_vggt  # noqa: E402

from posevlm.errors import ConfigError, InputFileError  # noqa: E402
from posevlm.models.spatial_mllm import SpatialMLLM  # noqa: E402
from posevlm.spatial import save_vggt  # noqa: E402
from posevlm.spatial.weights import CheckpointError  # noqa: E402
from posevlm.train.deepspeed import (  # noqa: E402
    DEEPSPEED_CONFIGS,
    deepspeed_config,
    hidden_size_of,
    load_spatial_encoder_weights,
    weights as ds_weights,
)

SRC = Path(__file__).parents[2] / "src"
AUTO_FIELDS = ("train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps", "gradient_clipping")


def run_python(code: str, *, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=timeout)


# ---- configs --------------------------------------------------------------------------------------------------
def test_configs_by_name_or_path_and_errors(tmp_path):
    assert set(DEEPSPEED_CONFIGS) == {"zero2", "zero3", "zero3_offload"}
    first = deepspeed_config("zero3")
    first["zero_optimization"]["stage"] = 1
    assert deepspeed_config("zero3")["zero_optimization"]["stage"] == 3  # a fresh copy every time
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    assert deepspeed_config(custom) == {"zero_optimization": {"stage": 2}}
    with pytest.raises(ConfigError, match=r"unknown DeepSpeed config 'zero4': use one of zero2, zero3, zero3_offload"):
        deepspeed_config("zero4")
    with pytest.raises(ConfigError, match="unknown DeepSpeed config"):
        deepspeed_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{stage: 3")
    with pytest.raises(InputFileError, match="bad.json is not valid JSON"):
        deepspeed_config(tmp_path / "bad.json")


def test_spec_values():
    """Spec §3.5: zero2 without comm overlap, contiguous gradients; zero3 with overlap and 16-bit weights gathered
    on save; zero3_offload with CPU optimizer + parameter offload, DeepSpeed AdamW and WarmupLR; batch / accum /
    precision / clipping all auto."""
    z2, z3, off = (deepspeed_config(n) for n in ("zero2", "zero3", "zero3_offload"))
    assert z2["zero_optimization"]["stage"] == 2
    assert z2["zero_optimization"]["overlap_comm"] is False and z2["zero_optimization"]["contiguous_gradients"] is True
    for cfg in (z3, off):
        zero = cfg["zero_optimization"]
        assert zero["stage"] == 3 and zero["overlap_comm"] is True
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "offload_optimizer" not in z3["zero_optimization"] and "optimizer" not in z3
    assert off["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert off["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert off["optimizer"]["type"] == "AdamW" and off["scheduler"]["type"] == "WarmupLR"
    assert set(off["optimizer"]["params"].values()) == {"auto"} and set(off["scheduler"]["params"].values()) == {"auto"}
    for cfg in (z2, z3, off):
        assert all(cfg[k] == "auto" for k in AUTO_FIELDS)
        assert cfg["bf16"]["enabled"] == "auto" and cfg["fp16"]["enabled"] == "auto"


def test_hidden_size_fill_and_lookup(tmp_path):
    z3 = deepspeed_config("zero3", hidden_size=64)["zero_optimization"]
    assert (z3["reduce_bucket_size"], z3["stage3_prefetch_bucket_size"], z3["stage3_param_persistence_threshold"]) \
        == (4096, 3686, 640)
    assert deepspeed_config("zero2", hidden_size=8)["zero_optimization"]["reduce_bucket_size"] == 64
    with pytest.raises(ConfigError, match="hidden_size=0"):
        deepspeed_config("zero2", hidden_size=0)
    qwen = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_models.save_tiny_qwen2_5_vl(tmp_path / "q"), dtype=torch.float32)
    assert hidden_size_of(qwen) == 64
    spatial = SpatialMLLM.compose(qwen, tiny_vggt(), seed=0)
    assert not hasattr(spatial.config, "hidden_size") and hidden_size_of(spatial) == 64
    with pytest.raises(ConfigError, match="no hidden_size"):
        hidden_size_of(torch.nn.Linear(2, 2))


FILL_AND_PARSE = """
import json, types
import transformers
from deepspeed.runtime.config import DeepSpeedConfig
from transformers.integrations import is_deepspeed_zero3_enabled
from posevlm.train.deepspeed import deepspeed_config, fill_hidden_size, zero3_enabled

def autos(node):
    if isinstance(node, dict):
        return [k for v in node.values() for k in autos(v)] + [k for k, v in node.items() if v == "auto"]
    return []

out = {}
for name in ("zero2", "zero3", "zero3_offload"):
    args = transformers.TrainingArguments(
        output_dir="unused", deepspeed=deepspeed_config(name), per_device_train_batch_size=2,
        gradient_accumulation_steps=4, learning_rate=7e-6, weight_decay=0.1, warmup_steps=0.03, max_grad_norm=1.0,
        use_cpu=True, report_to=[])
    hf = args.hf_deepspeed_config
    hf.trainer_config_finalize(args, types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=64)), 100)
    ds = DeepSpeedConfig(hf.config)
    out[name] = {"left_auto": autos(hf.config), "config": hf.config, "zero3_flag": is_deepspeed_zero3_enabled(),
                 "zero3_enabled": zero3_enabled(), "stage": int(ds.zero_optimization_stage),
                 "train_batch_size": ds.train_batch_size, "micro": ds.train_micro_batch_size_per_gpu,
                 "accumulation": ds.gradient_accumulation_steps, "clipping": ds.gradient_clipping,
                 "overlap_comm": ds.zero_config.overlap_comm,
                 "gather_on_save": ds.zero_config.gather_16bit_weights_on_model_save,
                 "offload_optimizer": str(ds.zero_config.offload_optimizer.device) if ds.zero_config.offload_optimizer
                 else None,
                 "optimizer": ds.optimizer_name, "scheduler": ds.scheduler_name}
    del args, hf
# a Spatial-MLLM-like config (no hidden_size): the Trainer cannot fill the bucket sizes unless we do
args = transformers.TrainingArguments(output_dir="unused", deepspeed=deepspeed_config("zero3"), use_cpu=True,
                                      report_to=[])
try:
    args.hf_deepspeed_config.trainer_config_finalize(args, types.SimpleNamespace(config=object()), 10)
    out["no_hidden_size"] = "filled"
except ValueError as exc:
    out["no_hidden_size"] = "ValueError"
args = transformers.TrainingArguments(output_dir="unused", deepspeed=deepspeed_config("zero3", hidden_size=64),
                                      use_cpu=True, report_to=[])
args.hf_deepspeed_config.trainer_config_finalize(args, types.SimpleNamespace(config=object()), 10)
out["with_hidden_size"] = autos(args.hf_deepspeed_config.config)
args = transformers.TrainingArguments(output_dir="unused", deepspeed=deepspeed_config("zero3"), use_cpu=True,
                                      report_to=[])
fill_hidden_size(args.hf_deepspeed_config.config, 64)  # arguments first, model later
args.hf_deepspeed_config.trainer_config_finalize(args, types.SimpleNamespace(config=object()), 10)
out["filled_later"] = autos(args.hf_deepspeed_config.config)
print("RESULT", json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def filled():
    """Each shipped config through TrainingArguments (trainer_config_process + trainer_config_finalize) and
    DeepSpeed's own parser, in a fresh interpreter (TrainingArguments(deepspeed=...) sets process-global state)."""
    pytest.importorskip("deepspeed")
    run = run_python(FILL_AND_PARSE)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT ", 1)[1])


@pytest.mark.parametrize("name", list(DEEPSPEED_CONFIGS))
def test_trainer_fills_every_auto_and_deepspeed_accepts_it(filled, name):
    got = filled[name]
    assert got["left_auto"] == []
    assert (got["micro"], got["accumulation"], got["train_batch_size"], got["clipping"]) == (2, 4, 8, 1.0)
    assert got["config"]["bf16"]["enabled"] is False and got["config"]["fp16"]["enabled"] is False  # fp32 on CPU
    assert got["stage"] == (2 if name == "zero2" else 3)
    assert got["zero3_flag"] is got["zero3_enabled"] is (name != "zero2")
    zero = got["config"]["zero_optimization"]
    assert zero["reduce_bucket_size"] == 64 * 64
    if name == "zero2":
        assert got["overlap_comm"] is False
    else:
        assert got["overlap_comm"] is True and got["gather_on_save"] is True
        assert (zero["stage3_prefetch_bucket_size"], zero["stage3_param_persistence_threshold"]) == (3686, 640)
    if name == "zero3_offload":
        assert got["offload_optimizer"] == "cpu" and got["optimizer"] == "adamw" and got["scheduler"] == "WarmupLR"
        params = got["config"]["optimizer"]["params"]
        assert (params["lr"], params["weight_decay"], params["betas"]) == (7e-6, 0.1, [0.9, 0.999])
        assert got["config"]["scheduler"]["params"]["warmup_max_lr"] == 7e-6
        assert got["config"]["scheduler"]["params"]["warmup_num_steps"] == 3  # 0.03 x 100 steps
    else:
        assert got["offload_optimizer"] is None and got["optimizer"] is None


def test_models_without_hidden_size_need_it_passed(filled):
    assert filled["no_hidden_size"] == "ValueError"
    assert filled["with_hidden_size"] == [] and filled["filled_later"] == []


SPATIAL_RECIPE = """
import json
from posevlm.train.config import load_train_config
from posevlm.train.run import finish_run, prepare_run

config = load_train_config(None, {overrides!r})
run = prepare_run(config, log=lambda _m: None)
trainer = run.trainer
plugin = trainer.accelerator.state.deepspeed_plugin.hf_ds_config  # what deepspeed_init finalizes
zero = dict(plugin.config["zero_optimization"])
plugin.trainer_config_finalize(trainer.args, trainer.model, 10)
trainer.train()
result = finish_run(run, log=lambda _m: None)
print("RESULT", json.dumps({{"zero": zero, "has_hidden_size": hasattr(trainer.model.config, "hidden_size"),
                            "losses": list(result.losses), "final": (result.final / "model.safetensors").is_file()}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_spatial_mllm_recipe_under_deepspeed(train_world, tmp_path, name):
    """``posevlm train`` of a Spatial-MLLM (its config has no hidden_size) with a shipped DeepSpeed preset: the
    recipe fills the hidden-size bucket sizes from the built model into the config the Trainer's DeepSpeed plugin
    finalizes (which would raise otherwise), and a step trains and saves (ZeRO-3 included: VGGT's aggregator output
    must be readable by ZeRO-3's post-forward hook). One process, gloo."""
    pytest.importorskip("deepspeed")
    sys.path.insert(0, str(Path(__file__).parent))
    from train_world import PIXELS

    pixels = [f"data.{k}={v}" for k, v in PIXELS.items()]
    overrides = ["name=t", f"run.output_dir={tmp_path / 'run'}", f"data.dataset_root={train_world['root']}",
                 "data.datasets=synthetic_train_posed", "data.num_frames=4", *pixels, "model.family=spatial_mllm",
                 "model.vggt=tiny", "data.with_video_tchw=true", "tune.policy=train=connector", "run.batch_size=2",
                 "run.max_steps=1", "run.num_workers=0", f"run.deepspeed={name}"]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    run = run_python(textwrap.dedent(SPATIAL_RECIPE.format(overrides=overrides)), env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert got["has_hidden_size"] is False  # the Trainer alone could not fill the bucket sizes
    zero = got["zero"]
    assert zero["reduce_bucket_size"] == 64 * 64  # the tiny LLM's width, from hidden_size_of(model)
    if name == "zero3":
        assert (zero["stage3_prefetch_bucket_size"], zero["stage3_param_persistence_threshold"]) == (3686, 640)
    assert len(got["losses"]) == 1 and got["losses"][0] == got["losses"][0] and got["final"]


# ---- ZeRO-3-safe VGGT loading ---------------------------------------------------------------------------------
class Holder(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.spatial_encoder = encoder


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture()
def saved_vggt(tmp_path):
    return save_vggt(tiny_vggt(seed=1), tmp_path / "vggt")


def test_plain_load_into_a_spatial_mllm(tmp_path, saved_vggt):
    qwen = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_models.save_tiny_qwen2_5_vl(tmp_path / "q"), dtype=torch.float32)
    model = SpatialMLLM.compose(qwen, tiny_vggt(seed=0), seed=0)
    others = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("spatial_encoder.")}
    target = state(tiny_vggt(seed=1))
    assert not all(torch.equal(v, target[k]) for k, v in state(model.spatial_encoder).items())
    report = load_spatial_encoder_weights(model, saved_vggt)
    assert report.ok and len(report.loaded) == len(target)
    assert all(torch.equal(v, target[k]) for k, v in state(model.spatial_encoder).items())
    assert all(torch.equal(v, others[k]) for k, v in model.state_dict().items() if k in others)
    wrong = save_vggt(tiny_vggt(seed=1, depth=4), tmp_path / "deeper")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_spatial_encoder_weights(model, wrong)
    with pytest.raises(ConfigError, match="has no spatial_encoder"):
        load_spatial_encoder_weights(torch.nn.Linear(2, 2), saved_vggt)


class FakeGather:
    """Stands in for deepspeed.zero.GatheredParameters: records its arguments and what the parameters held on
    entry and exit."""

    calls: list = []

    def __init__(self, params, modifier_rank=None):
        self.params, self.modifier_rank = list(params), modifier_rank

    def __enter__(self):
        FakeGather.calls.append({"params": {id(p) for p in self.params}, "rank": self.modifier_rank,
                                 "on_enter": self.params[0].detach().clone()})

    def __exit__(self, *exc):
        FakeGather.calls[-1]["on_exit"] = self.params[0].detach().clone()


@pytest.mark.parametrize("rank", [0, 1])
def test_zero3_branch_gathers_and_loads_on_rank_0_only(monkeypatch, saved_vggt, rank):
    deepspeed = pytest.importorskip("deepspeed")
    encoder = tiny_vggt(seed=0)
    for i, p in enumerate(encoder.parameters()):
        p.ds_id = i  # what deepspeed.zero.Init leaves on a ZeRO-3 shard
    monkeypatch.setattr(ds_weights, "zero3_enabled", lambda: True)
    monkeypatch.setattr(ds_weights, "_rank", lambda: rank)
    monkeypatch.setattr(deepspeed.zero, "GatheredParameters", FakeGather)
    FakeGather.calls = []
    before, target = state(encoder), state(tiny_vggt(seed=1))
    report = load_spatial_encoder_weights(Holder(encoder), saved_vggt)
    [call] = FakeGather.calls
    assert call["params"] == {id(p) for p in encoder.parameters()} and call["rank"] == 0
    first = next(iter(target))
    assert torch.equal(call["on_enter"], before[first])
    if rank == 0:  # loaded inside the gathered context
        assert torch.equal(call["on_exit"], target[first]) and report.ok
        assert all(torch.equal(v, target[k]) for k, v in state(encoder).items())
    else:  # other ranks wait for rank 0's broadcast
        assert torch.equal(call["on_exit"], before[first]) and report.ok
        assert all(torch.equal(v, before[k]) for k, v in state(encoder).items())


def test_without_zero3_or_without_shards_every_rank_loads(monkeypatch, saved_vggt):
    deepspeed = pytest.importorskip("deepspeed")
    monkeypatch.setattr(deepspeed.zero, "GatheredParameters", FakeGather)
    monkeypatch.setattr(ds_weights, "_rank", lambda: 1)
    target = state(tiny_vggt(seed=1))
    for flag, shard in ((False, True), (True, False)):
        FakeGather.calls = []
        encoder = tiny_vggt(seed=0)
        if shard:
            for i, p in enumerate(encoder.parameters()):
                p.ds_id = i
        monkeypatch.setattr(ds_weights, "zero3_enabled", lambda flag=flag: flag)
        load_spatial_encoder_weights(Holder(encoder), saved_vggt)
        assert FakeGather.calls == [] and all(torch.equal(v, target[k]) for k, v in state(encoder).items())
    encoder = tiny_vggt(seed=0)
    next(encoder.parameters()).ds_id = 0
    monkeypatch.setattr(ds_weights, "zero3_enabled", lambda: True)
    with pytest.raises(ConfigError, match=r"1 of the spatial encoder's \d+ parameters are ZeRO-3 shards"):
        load_spatial_encoder_weights(Holder(encoder), saved_vggt)


ZERO3_WORKER = """
import json, os, sys, torch
import deepspeed, deepspeed.comm.torch
# the CPU shared-memory all-reduce kernel is JIT-compiled on first use (~80 s); gloo needs none of it
deepspeed.comm.torch.build_shm_op = lambda: None
from transformers.integrations import HfDeepSpeedConfig
sys.path.insert(0, {tests!r})
from spatial_mllm_tiny import tiny_vggt
from posevlm.train.deepspeed import deepspeed_config, load_spatial_encoder_weights, zero3_enabled

world = int(os.environ["WORLD_SIZE"])
config = deepspeed_config("zero3", hidden_size=64)
config.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, train_batch_size=world,
              gradient_clipping=1.0, bf16={{"enabled": False}}, fp16={{"enabled": False}})
keep_alive = HfDeepSpeedConfig(config)  # what TrainingArguments(deepspeed=...) holds: the ZeRO-3 flag
deepspeed.init_distributed(dist_backend="gloo")
holder = torch.nn.Module()
holder.spatial_encoder = tiny_vggt(seed=0)
# shard an existing module (VGGT's reset_parameters cannot run inside a zero.Init context: it writes into
# its children's parameters after they were sharded)
deepspeed.zero.Init(module=holder, config_dict_or_path=config)
shard_shapes = sorted({{tuple(p.shape) for p in holder.spatial_encoder.parameters()}})
report = load_spatial_encoder_weights(holder, {weights!r})
reference = tiny_vggt(seed=1).state_dict()
params = list(holder.spatial_encoder.parameters())
with deepspeed.zero.GatheredParameters(params):
    equal = all(torch.equal(v, reference[k]) for k, v in holder.spatial_encoder.state_dict().items())
print("RESULT", json.dumps({{"zero3": zero3_enabled(), "sharded": all(hasattr(p, "ds_id") for p in params),
                           "shard_shapes": shard_shapes, "equal": equal, "ok": report.ok}}), flush=True)
# tear the gloo group down before exit: a live gloo thread at interpreter shutdown can abort the process
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_zero3_shards_receive_rank_0_weights_on_cpu(saved_vggt):
    """Two gloo processes shard a tiny VGGT with deepspeed.zero.Init (each rank holds empty parameters and its
    own flat shard); after loading on rank 0 inside GatheredParameters, both ranks' gathered weights equal the
    checkpoint."""
    pytest.importorskip("deepspeed")
    code = textwrap.dedent(ZERO3_WORKER.format(tests=str(Path(__file__).parents[1] / "models"),
                                               weights=str(saved_vggt)))
    port = str(_free_port())
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), **env}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**full, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in (0, 1)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.split("RESULT ", 1)[1]) for out, _ in outs]
    for got in results:
        assert got["zero3"] and got["sharded"] and got["equal"] and got["ok"]
        assert got["shard_shapes"] != [] and all(len(s) == 1 for s in got["shard_shapes"])  # flat shards
