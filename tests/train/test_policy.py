"""Freeze policies, parameter groups, LoRA and optimiser groups on tiny random Qwen2.5-VL / Qwen3-VL, a pose-aware
Qwen with learned pose-bias slopes and a tiny Spatial-MLLM (CPU, float32): a backward pass leaves gradients on
exactly the trained groups; optimiser groups partition the trainable parameters; LoRA wraps only the LLM decoder's
linear layers and merges back to the same logits."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from models_tiny_batches import inputs as qwen_inputs  # noqa: E402
from spatial_mllm_tiny import SAMPLES_QWEN2_5, make_batch, tiny_models, tiny_vggt  # noqa: E402

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.models import enable_pose_positions  # noqa: E402
from posevlm.models.camera_attention import SLOPES_NAME, CameraAttentionSpec  # noqa: E402
from posevlm.models.spatial_mllm import SpatialMLLM  # noqa: E402
from posevlm.positions import position_spec  # noqa: E402
from posevlm.train.policy import (  # noqa: E402
    GROUPS,
    FreezePolicy,
    GroupRules,
    LoraSettings,
    apply_freeze_policy,
    apply_lora,
    group_rules,
    has_lora,
    merge_lora,
    no_decay_names,
    optimizer_param_groups,
    parameter_groups,
)

DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_policy")
    return {"qwen2_5": tiny_models.save_tiny_qwen2_5_vl(root / "qwen2_5"),
            "qwen3": tiny_models.save_tiny_qwen3_vl(root / "qwen3")}


def stock(paths, family):
    cls = {"qwen2_5": "Qwen2_5_VLForConditionalGeneration", "qwen3": "Qwen3VLForConditionalGeneration"}[family]
    return getattr(transformers, cls).from_pretrained(paths[family], dtype=torch.float32,
                                                      attn_implementation="sdpa").eval()


def pose_aware(paths, family="qwen2_5"):
    """THW pose positions + camera attention with learned slopes (Qwen2.5: GTA; Qwen3, whose tiny T axis owns
    3 rotary slots: the bias alone)."""
    mode = "gta" if family == "qwen2_5" else "none"
    return enable_pose_positions(stock(paths, family), position_spec("thw", family),
                                 camera_attention=CameraAttentionSpec(mode=mode, bias="learned"))


def spatial(paths, family="qwen2_5", **kw):
    return SpatialMLLM.compose(stock(paths, family), tiny_vggt(), seed=0, **kw)


def spatial_pose_aware(paths):
    """Spatial-MLLM with THW pose positions and GTA camera attention with learned slopes (VGGT cameras)."""
    return spatial(paths, positions="thw", camera_attention=CameraAttentionSpec(mode="gta", bias="learned"))


def with_labels(kwargs):
    labels = kwargs["input_ids"].masked_fill(kwargs["attention_mask"] == 0, -100)
    return {**kwargs, "labels": labels}


def forward_kwargs(model, family):
    """Training-step inputs (with labels) that reach every group of ``model``."""
    if isinstance(model, SpatialMLLM):
        kwargs, frames = make_batch(model.qwen.config, SAMPLES_QWEN2_5, family="qwen2_5", seed=0)
        return {**with_labels(kwargs), "video_tchw": frames}
    kwargs, cams = qwen_inputs(model, family)
    extra = {"w2c_opencv": cams} if any(SLOPES_NAME in n for n, _ in model.named_parameters()) else {}
    return {**with_labels(kwargs), **extra}


MODELS = {
    "qwen2_5": lambda p: stock(p, "qwen2_5"),
    "qwen3": lambda p: stock(p, "qwen3"),
    "qwen2_5_pose_slopes": lambda p: pose_aware(p, "qwen2_5"),
    "qwen3_pose_slopes": lambda p: pose_aware(p, "qwen3"),
    "spatial_mllm": spatial,
    "spatial_mllm_pose_slopes": spatial_pose_aware,
}
FAMILY = {"qwen2_5": "qwen2_5", "qwen3": "qwen3", "qwen2_5_pose_slopes": "qwen2_5", "qwen3_pose_slopes": "qwen3",
          "spatial_mllm": "qwen2_5", "spatial_mllm_pose_slopes": "qwen2_5"}


# ---- grammar ---------------------------------------------------------------------------------------------------
def test_parse_grammar_round_trips_and_normalises():
    p = FreezePolicy.parse(" train = connector, merger ,pose_slopes,merger")
    assert (p.mode, p.terms) == ("train", ("connector", "merger", "pose_slopes"))
    assert str(p) == "train=connector,merger,pose_slopes" and FreezePolicy.parse(str(p)) == p
    assert FreezePolicy.from_dict(p.to_dict()) == p
    assert p.trains("merger") and not p.trains("llm") and not p.trains("vision")
    f = FreezePolicy.parse("freeze=vision,spatial_encoder")
    assert not f.trains("vision") and f.trains("llm") and f.trains("connector")
    # all / none are the same policy however written
    assert FreezePolicy.parse("train=all") == FreezePolicy.parse("freeze=none")
    assert FreezePolicy.parse("train=none") == FreezePolicy.parse("freeze=all")
    assert all(FreezePolicy.parse("train=all").trains(g) for g in GROUPS)
    assert not any(FreezePolicy.parse("train=none").trains(g) for g in GROUPS)
    # aliases
    assert FreezePolicy.parse("train=projector,language").groups == ("merger", "connector", "fusion", "embed",
                                                                      "llm", "lm_head")


@pytest.mark.parametrize("text, match", [
    ("train=conector", r"unknown group 'conector' \(did you mean connector\?\).*groups: vision, merger"),
    ("train=merger,vison", r"'vison' \(did you mean vision\?\)"),
    ("tune=llm", r"must read 'train=<groups>' or 'freeze=<groups>'"),
    ("merger,llm", r"must read 'train=<groups>'"),
    ("train=merger,,llm", "empty group name"),
    ("train=all,llm", "stand alone"),
])
def test_parse_errors_name_the_input_and_the_valid_groups(text, match):
    with pytest.raises(ConfigError, match=match):
        FreezePolicy.parse(text)


# ---- groups ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", list(MODELS))
def test_every_parameter_is_in_exactly_one_group(paths, which):
    model = MODELS[which](paths)
    groups = parameter_groups(model)
    names = [n for ns in groups.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters()) and len(set(names)) == len(names)
    expected = {"vision", "merger", "embed", "llm", "lm_head"}
    expected |= {"pose_slopes"} if "slopes" in which else set()
    expected |= {"spatial_encoder", "connector"} if which.startswith("spatial_mllm") else set()
    assert set(groups) == expected
    prefix = "qwen." if which.startswith("spatial_mllm") else ""
    owner = {n: g for g, ns in groups.items() for n in ns}
    assert owner[f"{prefix}model.visual.merger.{'ln_q' if FAMILY[which] == 'qwen2_5' else 'norm'}.weight"] == "merger"
    assert owner[f"{prefix}model.visual.blocks.0.attn.qkv.weight"] == "vision"
    assert owner[f"{prefix}model.language_model.layers.1.input_layernorm.weight"] == "llm"
    assert owner[f"{prefix}model.language_model.norm.weight"] == "llm"
    assert owner[f"{prefix}model.language_model.embed_tokens.weight"] == "embed"
    if FAMILY[which] == "qwen3":
        assert owner["model.visual.deepstack_merger_list.0.linear_fc1.weight"] == "merger"
    if "slopes" in which:
        assert groups["pose_slopes"] == [f"{prefix}model.language_model.layers.{i}.self_attn.{SLOPES_NAME}"
                                         for i in (0, 1)]


def test_unassigned_parameter_is_an_error_naming_it(paths):
    model = stock(paths, "qwen2_5")
    model.extra_head = nn.Linear(4, 4)
    with pytest.raises(ConfigError, match=r"2 parameters .* belong to no group \(first: extra_head.weight, "
                                          r"extra_head.bias\)"):
        parameter_groups(model)


def test_unknown_family_lists_the_known_model_types():
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"model_type None .*known: .*qwen2_5_vl.*spatial-mllm"):
        parameter_groups(model)


# ---- a backward pass leaves gradients on exactly the trained groups ---------------------------------------------
POLICIES = {
    "qwen2_5": ["train=merger,llm", "freeze=vision,embed", "train=vision,lm_head"],
    "qwen3": ["train=merger,llm", "freeze=merger,lm_head"],
    "qwen2_5_pose_slopes": ["train=pose_slopes", "train=merger,pose_slopes", "freeze=pose_slopes,vision"],
    "qwen3_pose_slopes": ["train=pose_slopes,embed"],
    "spatial_mllm": ["train=connector,merger", "freeze=vision,spatial_encoder", "train=spatial_encoder,lm_head",
                     "train=projector,language"],
    "spatial_mllm_pose_slopes": ["train=connector,merger,pose_slopes", "freeze=spatial_encoder,pose_slopes"],
}


@pytest.mark.parametrize("which, policy", [(w, p) for w, ps in POLICIES.items() for p in ps])
def test_policy_leaves_exactly_the_named_groups_with_gradients(paths, which, policy):
    model = MODELS[which](paths)
    report = apply_freeze_policy(model, policy)
    parsed = FreezePolicy.parse(policy)
    groups = parameter_groups(model)
    assert set(report.trainable_groups()) == {g for g in groups if parsed.trains(g)}
    model(**forward_kwargs(model, FAMILY[which])).loss.backward()
    params = dict(model.named_parameters())
    for group, names in groups.items():
        grads = [params[n].grad for n in names]
        if parsed.trains(group):
            assert all(params[n].requires_grad for n in names), group
            assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), f"{group} trained but no gradient"
        else:
            assert all(g is None for g in grads), f"{group} frozen but has gradients"
            assert report.groups[group]["trainable"] == 0 and report.groups[group]["frozen"] > 0


def test_pose_slopes_policy_trains_only_the_slopes(paths):
    """train=pose_slopes: two slope vectors (2 layers x 4 heads) and nothing else; they move under SGD."""
    model = pose_aware(paths)
    report = apply_freeze_policy(model, "train=pose_slopes")
    assert report.trainable == 2 * 4 and report.to_dict()["groups"]["pose_slopes"]["trainable"] == 8
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(optimizer_param_groups(model, lr=0.1), lr=0.1)
    model(**forward_kwargs(model, "qwen2_5")).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {f"model.language_model.layers.{i}.self_attn.{SLOPES_NAME}" for i in (0, 1)}


def test_policy_refuses_what_would_do_nothing(paths):
    model = stock(paths, "qwen2_5")
    with pytest.raises(ConfigError, match=r"train= lists connector, pose_slopes but this qwen2_5_vl model has no "
                                          r"such parameters \(its groups: vision, merger, embed, llm, lm_head\)"):
        apply_freeze_policy(model, "train=merger,connector,pose_slopes")
    # an alias needs one of its groups only; freezing an absent group is harmless
    assert apply_freeze_policy(model, "train=projector").trainable_groups() == ("merger",)
    assert "vision" not in apply_freeze_policy(model, "freeze=vision,spatial_encoder").trainable_groups()


def test_tied_embeddings_must_be_trained_together(paths):
    config = transformers.AutoConfig.from_pretrained(paths["qwen2_5"])
    config.tie_word_embeddings = True
    model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    with pytest.raises(ConfigError, match=r"embed_tokens.weight and lm_head.weight are one tied tensor"):
        apply_freeze_policy(model, "train=lm_head,llm")
    with pytest.raises(ConfigError, match="one tied tensor"):
        apply_freeze_policy(model, "freeze=embed")
    report = apply_freeze_policy(model, "train=lm_head,embed")
    assert report.trainable == model.lm_head.weight.numel()


# ---- new families plug in by registration -----------------------------------------------------------------------
class _Cfg:
    model_type = "toy-vlm2"


class ToyVLM2(nn.Module):
    """A VLM^2-like layout: an LLM, a fusion block and a memory module."""

    def __init__(self):
        super().__init__()
        self.config = _Cfg()
        self.llm = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.fusion_block = nn.Linear(4, 4)
        self.memory = nn.GRUCell(4, 4)

    def forward(self, x):
        return self.llm(self.fusion_block(x) + self.memory(x))


if "toy_vlm2" not in group_rules:
    group_rules.register("toy_vlm2", GroupRules(("toy-vlm2",), (("llm", r"llm\..*"), ("fusion", r"fusion_block\..*"),
                                                                ("memory", r"memory\..*")), r"llm\."))


def test_a_registered_family_gets_policies_and_projector_lr():
    model = ToyVLM2()
    report = apply_freeze_policy(model, "train=fusion,memory")
    assert report.trainable_groups() == ("fusion", "memory")
    model(torch.randn(3, 4)).sum().backward()
    assert model.llm[0].weight.grad is None and model.fusion_block.weight.grad is not None
    assert all(p.grad is not None for p in model.memory.parameters())
    groups = {g["group_name"]: g for g in optimizer_param_groups(model, lr=1e-3, projector_lr=5e-3,
                                                                 weight_decay=0.1)}
    assert {id(p) for p in groups["projector/decay"]["params"]} == {id(model.fusion_block.weight)}
    assert groups["projector/decay"]["lr"] == 5e-3 and groups["base/decay"]["lr"] == 1e-3


# ---- optimiser groups -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["qwen3_pose_slopes", "spatial_mllm"])
def test_optimizer_groups_partition_the_trainable_parameters(paths, which):
    model = MODELS[which](paths)
    apply_freeze_policy(model, "freeze=embed" if which == "spatial_mllm" else "freeze=lm_head")
    groups = optimizer_param_groups(model, lr=7e-6, projector_lr=2e-5, vision_lr=1e-6, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == set(trainable)
    owner = {n: g for g, ns in parameter_groups(model).items() for n in ns}
    no_decay = no_decay_names(model)
    for group in groups:
        tier, decay = group["group_name"].split("/")
        for p in group["params"]:
            name = trainable[id(p)]
            expected_tier = {"merger": "projector", "connector": "projector", "vision": "vision"}.get(owner[name],
                                                                                                   "base")
            assert tier == expected_tier, name
            assert group["lr"] == {"base": 7e-6, "projector": 2e-5, "vision": 1e-6}[tier]
            exempt = p.ndim <= 1 or name.endswith(".bias") or "norm" in name
            assert (decay == "no_decay") == exempt == (name in no_decay), name
            assert group["weight_decay"] == (0.0 if exempt else 0.1)
    assert {g["group_name"] for g in groups} == {f"{t}/{d}" for t in ("base", "projector", "vision")
                                                 for d in ("decay", "no_decay")}


def test_weight_decay_reaches_the_optimizer_only_where_it_should(paths):
    """With zero gradients AdamW changes a parameter only through weight decay: decayed ones shrink, biases,
    norms and slopes stay put."""
    model = pose_aware(paths)
    apply_freeze_policy(model, "train=llm,pose_slopes,merger")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if SLOPES_NAME in n:
                p.fill_(0.5)
    groups = optimizer_param_groups(model, lr=0.1, projector_lr=0.2, weight_decay=0.5)
    opt = torch.optim.AdamW(groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()
    after = dict(model.named_parameters())
    name = "model.language_model.layers.0"
    assert torch.allclose(after[f"{name}.self_attn.q_proj.weight"], before[f"{name}.self_attn.q_proj.weight"] * 0.95)
    assert torch.allclose(after["model.visual.merger.mlp.0.weight"], before["model.visual.merger.mlp.0.weight"] * 0.9)
    for n in (f"{name}.self_attn.q_proj.bias", f"{name}.input_layernorm.weight", f"{name}.self_attn.{SLOPES_NAME}",
              "model.visual.merger.ln_q.weight"):
        assert torch.equal(after[n], before[n]), n
    assert torch.equal(after["model.visual.blocks.0.attn.qkv.weight"], before["model.visual.blocks.0.attn.qkv.weight"])


def test_optimizer_groups_errors(paths):
    model = stock(paths, "qwen2_5")
    with pytest.raises(ConfigError, match=r"lr=0 \(> 0\).*weight_decay=-1"):
        optimizer_param_groups(model, lr=0, weight_decay=-1)
    apply_freeze_policy(model, "train=none")
    with pytest.raises(ConfigError, match="no trainable parameter"):
        optimizer_param_groups(model, lr=1e-5)


# ---- LoRA ------------------------------------------------------------------------------------------------------
def lora_modules(model):
    from peft.tuners.lora import LoraLayer

    return {n for n, m in model.named_modules() if isinstance(m, LoraLayer)}


@pytest.mark.parametrize("which", ["qwen2_5", "qwen3", "spatial_mllm"])
def test_lora_wraps_only_the_llm_decoder_linears(paths, which):
    model = MODELS[which](paths)
    prefix = "qwen." if which == "spatial_mllm" else ""
    # the Qwen2.5 vision MLP also has gate_proj / up_proj / down_proj: those must stay plain
    expected = {f"{prefix}model.language_model.layers.{i}.{part}.{leaf}" for i in (0, 1)
                for part, leaves in (("self_attn", DECODER_LINEARS[:4]), ("mlp", DECODER_LINEARS[4:]))
                for leaf in leaves}
    apply_lora(model, LoraSettings(r=2, alpha=4, dropout=0.0))
    assert lora_modules(model) == expected
    groups = parameter_groups(model)
    assert len(groups["lora"]) == 2 * len(expected)
    assert all(".lora_" in n for n in groups["lora"])
    # the base weights keep their group under the wrapper
    assert f"{prefix}model.language_model.layers.0.self_attn.q_proj.base_layer.weight" in groups["llm"]


def test_lora_composes_with_the_freeze_policy(paths):
    """LoRA adapters + merger + slopes train; the base LLM, vision tower, embeddings and head stay frozen."""
    model = pose_aware(paths)
    apply_freeze_policy(model, "train=merger,pose_slopes")
    apply_lora(model, LoraSettings(r=2, alpha=4, dropout=0.0, target_modules=("q_proj", "v_proj")))
    # apply_lora keeps the policy of the rest and makes the adapters trainable
    assert {g for g, ns in parameter_groups(model).items()
            if any(p.requires_grad for n, p in model.named_parameters() if n in ns)} == {"merger", "pose_slopes",
                                                                                           "lora"}
    with pytest.raises(ConfigError, match="leave llm out of train="):
        apply_freeze_policy(model, "train=llm,lora")
    with pytest.raises(ConfigError, match="add lora to train="):
        apply_freeze_policy(model, "train=merger")
    report = apply_freeze_policy(model, "train=lora,merger,pose_slopes")
    assert set(report.trainable_groups()) == {"lora", "merger", "pose_slopes"}
    model(**forward_kwargs(model, "qwen2_5")).loss.backward()
    for name, p in model.named_parameters():
        has = p.grad is not None
        assert has == (".lora_" in name or ".merger." in name or SLOPES_NAME in name), name


@pytest.mark.parametrize("which", ["qwen2_5_pose_slopes", "spatial_mllm"])
def test_merged_lora_gives_the_adapter_logits_and_a_plain_checkpoint(paths, which):
    model = MODELS[which](paths)
    names_before = set(model.state_dict())
    base = copy.deepcopy(model)
    apply_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # adapters start as a no-op (B = 0): make them do something
        g = torch.Generator().manual_seed(0)
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    kwargs = forward_kwargs(model, FAMILY[which])
    kwargs.pop("labels")
    with torch.no_grad():
        base_logits = base(**kwargs).logits
        adapter_logits = model(**kwargs).logits
        merge_lora(model)
        merged_logits = model(**kwargs).logits
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)  # the adapters mattered
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-5, rtol=1e-5)
    assert not has_lora(model) and not hasattr(model, "peft_config")
    assert set(model.state_dict()) == names_before
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, base.state_dict()[n])}
    assert changed and all(re.search(r"language_model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$", n)
                           for n in changed)


def test_lora_settings_validation(paths):
    with pytest.raises(ConfigError, match=r"r=0 .*dropout=1.0 .*target_modules=\[\]"):
        LoraSettings(r=0, dropout=1.0, target_modules=())
    assert LoraSettings.from_dict(LoraSettings(r=8).to_dict()) == LoraSettings(r=8)
    model = stock(paths, "qwen2_5")
    with pytest.raises(ConfigError, match="match no module"):
        apply_lora(model, LoraSettings(target_modules=("qkv",)))  # the vision tower's fused qkv: out of scope
    apply_lora(model, LoraSettings(r=2, target_modules=("q_proj",)))
    with pytest.raises(ConfigError, match="already carries LoRA"):
        apply_lora(model, LoraSettings(r=2))
