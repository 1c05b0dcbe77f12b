"""What a training run updates: parameter groups, the freeze-policy string, LoRA on the LLM, optimiser groups.

Parameter groups (every parameter of a model is in exactly one):

=================  =========================================================================================
group              parameters (Qwen2.5-VL / Qwen3-VL names; Spatial-MLLM: the same under ``qwen.``)
=================  =========================================================================================
``vision``         the vision tower ``model.visual.*`` except its mergers (patch embedding, blocks, Qwen3's
                   learned ``pos_embed``)
``merger``         ``model.visual.merger.*`` and Qwen3's DeepStack ``model.visual.deepstack_merger_list.*`` (the
                   projections of visual features into the LLM width)
``embed``          ``model.language_model.embed_tokens.*``
``llm``            the rest of ``model.language_model.*``: decoder layers (attention, MLP, their norms, Qwen3's
                   q/k norms) and the final norm
``lm_head``        ``lm_head.*`` (with ``tie_word_embeddings`` it is the embedding tensor: train or freeze
                   ``embed`` and ``lm_head`` together)
``pose_slopes``    learned pose-distance bias slopes ``*.self_attn.posevlm_pose_slopes`` (camera attention
                   with ``bias="learned"``; one (H,) vector per decoder layer), in every family
``lora``           LoRA adapters added by :func:`apply_lora` (``*.lora_A.*``, ``*.lora_B.*``), in every family
``spatial_encoder``Spatial-MLLM's VGGT ``spatial_encoder.*`` (aggregator and camera head)
``connector``      Spatial-MLLM's ``connector.*`` (the spatial-token projection fused into the video tokens)
``fusion``         fusion blocks: VLM²'s ``vlm2.injection.*``, ``vlm2.alignment.*``, ``vlm2.fusion.*`` (coordinate
                   injection, viewpoint alignment, cross-attention fusion); VLM-3R's ``fusion_block`` later
``memory``         memory modules: VLM²'s dual memory ``vlm2.memory.*``
``point_encoder``  a PointCloudLM's point encoder ``encoder.*`` (its projector ``projector.*`` is ``connector``,
                   its decoder the ``embed`` / ``llm`` / ``lm_head`` groups under ``decoder.``)
``rope3d``         a PointCloudLM's learned MixedRoPE3D frequencies and mixing weights
                   ``decoder.model.mixed_rope3d.*``
=================  =========================================================================================

The name -> group rules are a registry keyed by family (``group_rules``, entry-point group
``posevlm.train_groups``): a family registers a :class:`GroupRules` (ordered ``(group, regex)`` rules, the
module scope LoRA may wrap) and may introduce new group names; nothing here tests class names. The family of
a model is ``model.config.model_type`` (``qwen2_5_vl``, ``qwen3_vl``, ``spatial-mllm``, ``spatial-mllm-qwen3``,
``spatial-mllm-vlm2``).

Freeze-policy grammar (one string covers every family)::

    policy := ("train" | "freeze") "=" terms
    terms  := term ("," term)*  |  "all"  |  "none"
    term   := a group name above (or one a registered family adds)  |  an alias
    alias  := "projector" (= merger, connector, fusion)  |  "language" (= embed, llm, lm_head)

``train=...`` trains the listed groups and freezes every other one; ``freeze=...`` freezes the listed groups
and trains every other one (``train=all`` = ``freeze=none``; ``train=none`` freezes everything). Whitespace
is ignored. Examples: ``train=merger,connector,llm`` (the fork's Spatial-MLLM SFT: tune_mm_connector +
tune_mm_llm, lm_head and embeddings frozen), ``train=projector,language`` (the same with embeddings and head),
``freeze=vision,spatial_encoder``, ``train=lora,connector,pose_slopes``.
Applying a policy to a model (:func:`apply_freeze_policy`) refuses what would silently do nothing or
contradict itself: a ``train=`` term none of whose groups the model has, ``llm`` trained on a model with
LoRA adapters (LoRA trains low-rank updates of a frozen LLM), LoRA adapters left out of ``train=``, and a
tensor shared by two groups (tied embeddings) with different decisions.

Optimiser groups (:func:`optimizer_param_groups`): trainable parameters only, split by learning rate
(``projector``: merger, connector, fusion at ``projector_lr``; ``vision``: the vision tower at ``vision_lr``;
``base``: the rest at ``lr``) and by weight decay (``no_decay``: biases, every parameter of a normalisation
module, every parameter with at most one dimension -- pose slopes, layer-scale gammas; ``decay``: the rest).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from posevlm.errors import ConfigError
from posevlm.models.camera_attention import SLOPES_NAME
from posevlm.registry import Registry

__all__ = [
    "GROUPS", "ALIASES", "PROJECTOR_GROUPS", "VISION_GROUPS", "COMMON_RULES", "GroupRules", "group_rules",
    "qwen_vl_rules", "rules_for", "model_type_of", "known_groups", "canonical_name", "parameter_groups",
    "FreezePolicy", "FreezeReport", "apply_freeze_policy", "LoraSettings", "apply_lora", "merge_lora", "has_lora",
    "no_decay_names", "optimizer_param_groups", "describe_param_groups",
]

#: the built-in group vocabulary (families may add more through their GroupRules)
GROUPS = ("vision", "merger", "embed", "llm", "lm_head", "pose_slopes", "lora", "spatial_encoder", "connector",
          "fusion", "memory")
ALIASES = {"projector": ("merger", "connector", "fusion"), "language": ("embed", "llm", "lm_head")}
#: groups trained at ``projector_lr`` / ``vision_lr`` by :func:`optimizer_param_groups`
PROJECTOR_GROUPS = ("merger", "connector", "fusion")
VISION_GROUPS = ("vision",)

#: rules every family shares, tried before the family's own: adapters and learned slopes live inside the LLM
COMMON_RULES = (
    ("lora", r"(.*\.)?lora_(A|B|embedding_A|embedding_B|magnitude_vector)\..*"),
    ("pose_slopes", rf"(.*\.)?{SLOPES_NAME}"),
)
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class GroupRules:
    """How one family's parameter names map to groups.

    Attributes:
        model_types: ``config.model_type`` values this applies to.
        rules: ordered ``(group, regex)`` pairs; a parameter's canonical name (PEFT wrappers removed) goes to
            the group of the first regex that ``re.fullmatch``-es it (after :data:`COMMON_RULES`).
        lora_scope: regex prefix of the module names :func:`apply_lora` may wrap (the LLM decoder layers),
            relative to ``lora_root``, e.g. ``model\\.language_model\\.layers\\.\\d+\\.``.
        lora_root: attribute path of the submodule peft injects into ("" = the model; Spatial-MLLM: ``qwen``,
            the transformers model peft knows how to handle).
        description: one line for listings.
    """

    model_types: tuple[str, ...]
    rules: tuple[tuple[str, str], ...]
    lora_scope: str
    lora_root: str = ""
    description: str = ""
    _compiled: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        bad = [group for group, _ in self.rules if not re.fullmatch(r"[a-z][a-z0-9_]*", group)
               or group in ALIASES or group in ("all", "none")]
        if bad or not self.model_types:
            raise ConfigError(f"GroupRules: group names must be lower-case identifiers other than "
                              f"{sorted(ALIASES)}, all, none (got {bad}) and model_types non-empty "
                              f"(got {self.model_types})", field="rules", value=bad)
        compiled = tuple((g, re.compile(p)) for g, p in (*COMMON_RULES, *self.rules))
        object.__setattr__(self, "_compiled", compiled)

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups this family can have, in rule order."""
        return tuple(dict.fromkeys(g for g, _ in (*COMMON_RULES, *self.rules)))

    def group_of(self, canonical_name: str) -> str | None:
        """The group of one canonical parameter name, or None when no rule matches."""
        for group, pattern in self._compiled:
            if pattern.fullmatch(canonical_name):
                return group
        return None


def qwen_vl_rules(prefix: str = "") -> tuple[tuple[str, str], ...]:
    """The Qwen2.5-VL / Qwen3-VL rules for a model found at ``prefix`` (a regex, e.g. ``qwen\\.``)."""
    return (
        ("merger", prefix + r"model\.visual\.(merger|deepstack_merger_list)\..*"),
        ("vision", prefix + r"model\.visual\..*"),
        ("embed", prefix + r"model\.language_model\.embed_tokens\..*"),
        ("llm", prefix + r"model\.language_model\..*"),
        ("lm_head", prefix + r"lm_head\..*"),
    )


#: family name -> GroupRules; plug-ins add families through the entry-point group ``posevlm.train_groups``
group_rules: Registry[GroupRules] = Registry("parameter-group rules", "train_groups")
_QWEN_DECODER = r"model\.language_model\.layers\.\d+\."
group_rules.register("qwen2_5_vl", GroupRules(("qwen2_5_vl",), qwen_vl_rules(), _QWEN_DECODER,
                                              description="stock Qwen2.5-VL (any position mode, camera attention)"))
group_rules.register("qwen3_vl", GroupRules(("qwen3_vl",), qwen_vl_rules(), _QWEN_DECODER,
                                            description="stock Qwen3-VL (any position mode, camera attention)"))
group_rules.register("spatial_mllm", GroupRules(
    ("spatial-mllm", "spatial-mllm-qwen3"),
    (*qwen_vl_rules(r"qwen\."), ("spatial_encoder", r"spatial_encoder\..*"), ("connector", r"connector\..*")),
    _QWEN_DECODER, lora_root="qwen", description="Spatial-MLLM: Qwen-VL + VGGT + connector"))
group_rules.register("point_lm", GroupRules(
    ("posevlm-point-lm",),
    (("point_encoder", r"encoder\..*"), ("connector", r"projector\..*"),
     ("rope3d", r"decoder\.model\.mixed_rope3d\..*"), ("embed", r"decoder\.model\.embed_tokens\..*"),
     ("llm", r"decoder\.model\..*"), ("lm_head", r"decoder\.lm_head\..*")),
    r"model\.layers\.\d+\.", lora_root="decoder",
    description="PointCloudLM: point encoder (point_encoder), projector (connector), a stock Qwen2 / Qwen3 decoder "
                "with MixedRoPE3D (its learned frequencies and mixing: rope3d); posevlm.models.point_lm"))
group_rules.register("vlm2", GroupRules(
    ("spatial-mllm-vlm2",),
    (*qwen_vl_rules(r"qwen\."), ("spatial_encoder", r"spatial_encoder\..*"), ("connector", r"connector\..*"),
     ("memory", r"vlm2\.memory\..*"), ("fusion", r"vlm2\.(injection|alignment|fusion)\..*")),
    _QWEN_DECODER, lora_root="qwen",
    description="VLM²: Spatial-MLLM + coordinate injection, viewpoint alignment, cross-attention fusion (fusion) and "
                "dual memory (memory); posevlm.models.vlm2"))


def _base_model(model: nn.Module) -> nn.Module:
    """The model under a PEFT wrapper (``PeftModel.get_base_model``), else the model itself."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def model_type_of(model: nn.Module) -> str | None:
    return getattr(getattr(_base_model(model), "config", None), "model_type", None)


def rules_for(model: nn.Module) -> GroupRules:
    """The registered :class:`GroupRules` of ``model`` (by ``config.model_type``).

    Raises:
        ConfigError: no family registers rules for it (lists the supported model types).
    """
    model_type = model_type_of(model)
    for name in group_rules.names():
        rules = group_rules.get(name)
        if model_type in rules.model_types:
            return rules
    known = sorted(t for n in group_rules.names() for t in group_rules.get(n).model_types)
    raise ConfigError(f"no parameter-group rules for model_type {model_type!r} (known: {', '.join(known)}); a "
                      "family registers a posevlm.train.policy.GroupRules in group_rules (or through the "
                      "entry-point group posevlm.train_groups)", field="model_type", value=model_type)


def known_groups() -> tuple[str, ...]:
    """Every group name a policy may use: the built-in ones plus those registered families add."""
    extra = [g for n in group_rules.names() for g in group_rules.get(n).groups]
    return tuple(dict.fromkeys([*GROUPS, *extra]))


def canonical_name(name: str) -> str:
    """A parameter name without PEFT wrappers: ``base_model.model.`` prefix and ``.base_layer`` removed."""
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX):]
    return name.replace(".base_layer.", ".")


def parameter_groups(model: nn.Module) -> dict[str, list[str]]:
    """{group: parameter names (as ``model.named_parameters()`` gives them)}, every parameter in exactly one.

    Groups without parameters are left out; a tensor shared under several names (tied embeddings) appears
    once, under its first name. Raises ConfigError naming the parameters no rule of the family assigns.
    """
    rules = rules_for(model)
    out: dict[str, list[str]] = {}
    unassigned = []
    for name, _ in model.named_parameters():
        group = rules.group_of(canonical_name(name))
        if group is None:
            unassigned.append(name)
        else:
            out.setdefault(group, []).append(name)
    if unassigned:
        raise ConfigError(f"{len(unassigned)} parameters of this {model_type_of(model)} model belong to no group "
                          f"(first: {', '.join(unassigned[:5])}); add a rule for them to its GroupRules in "
                          "posevlm.train.policy.group_rules", field="parameters", value=unassigned)
    return out


# ---- the freeze policy --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FreezePolicy:
    """A parsed freeze policy (grammar in the module docstring). Build it with :meth:`parse`.

    Fields:
        mode: ``train`` (train ``terms``, freeze the rest) or ``freeze`` (freeze ``terms``, train the rest).
        terms: the group names and aliases as written (validated, de-duplicated, in order); () for
            ``train=none`` / ``freeze=none``.
    """

    mode: str
    terms: tuple[str, ...] = ()
    schema_version: int = 1

    def __post_init__(self):
        problems = []
        if self.mode not in ("train", "freeze"):
            problems.append(f"mode={self.mode!r} (allowed: train, freeze)")
        object.__setattr__(self, "terms", tuple(dict.fromkeys(self.terms)))
        valid = known_groups()
        unknown = [t for t in self.terms if t not in valid and t not in ALIASES]
        if unknown:
            hints = {t: difflib.get_close_matches(t, [*valid, *ALIASES], n=1) for t in unknown}
            said = ", ".join(f"{t!r}" + (f" (did you mean {h[0]}?)" if h else "") for t, h in hints.items())
            problems.append(f"unknown group {said}; groups: {', '.join(valid)}; aliases: "
                            + ", ".join(f"{a} = {'+'.join(g)}" for a, g in ALIASES.items()) + "; or all / none")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid freeze policy: " + "; ".join(problems), field="freeze_policy",
                              value=problems)

    @classmethod
    def parse(cls, text: str) -> "FreezePolicy":
        """``"train=connector,merger,pose_slopes"`` / ``"freeze=vision,spatial_encoder"`` / ``"train=all"``.

        Raises:
            ConfigError: not ``train=...`` or ``freeze=...``, an empty term, or an unknown group (lists the
                valid ones).
        """
        if not isinstance(text, str):
            raise ConfigError(f"freeze policy must be a string like 'train=merger,connector,llm'; got {text!r}",
                              field="freeze_policy", value=text)
        key, sep, rest = "".join(text.split()).partition("=")
        if not sep or key not in ("train", "freeze"):
            raise ConfigError(f"freeze policy {text!r} must read 'train=<groups>' or 'freeze=<groups>' (one "
                              f"clause; groups: {', '.join(known_groups())}, all, none)", field="freeze_policy",
                              value=text)
        terms = rest.split(",")
        if any(not t for t in terms):
            raise ConfigError(f"freeze policy {text!r} has an empty group name (write e.g. 'train=merger,llm')",
                              field="freeze_policy", value=text)
        if terms in (["all"], ["none"]):
            everything = terms == ["all"]
            return cls("freeze" if everything == (key == "train") else "train", ())
        if "all" in terms or "none" in terms:
            raise ConfigError(f"freeze policy {text!r}: 'all' / 'none' stand alone", field="freeze_policy",
                              value=text)
        return cls(key, tuple(terms))

    @property
    def groups(self) -> tuple[str, ...]:
        """``terms`` with the aliases expanded."""
        return tuple(dict.fromkeys(g for t in self.terms for g in ALIASES.get(t, (t,))))

    def trains(self, group: str) -> bool:
        """Whether parameters of ``group`` get gradients under this policy."""
        return (group in self.groups) == (self.mode == "train")

    def __str__(self) -> str:
        if not self.terms:
            return "train=none" if self.mode == "train" else "train=all"
        return f"{self.mode}={','.join(self.terms)}"

    def to_dict(self) -> dict[str, Any]:
        return {"policy": str(self), **asdict(self), "terms": list(self.terms)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FreezePolicy":
        known = {f.name for f in fields(cls)} | {"policy"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown FreezePolicy keys {unknown}; known: {sorted(known)}", field="freeze_policy",
                              value=unknown)
        return cls(data["mode"], tuple(data.get("terms", ())), data.get("schema_version", 1))


@dataclass(frozen=True)
class FreezeReport:
    """What :func:`apply_freeze_policy` did. ``groups``: {group: {"trainable": numel, "frozen": numel,
    "tensors": count}} for the groups the model has; ``policy`` the canonical policy string."""

    policy: str
    model_type: str | None
    groups: dict[str, dict[str, int]]

    @property
    def trainable(self) -> int:
        return sum(g["trainable"] for g in self.groups.values())

    @property
    def frozen(self) -> int:
        return sum(g["frozen"] for g in self.groups.values())

    def trainable_groups(self) -> tuple[str, ...]:
        return tuple(g for g, c in self.groups.items() if c["trainable"])

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "model_type": self.model_type, "trainable": self.trainable,
                "frozen": self.frozen, "groups": {g: dict(c) for g, c in self.groups.items()}}

    def lines(self) -> list[str]:
        """One human-readable line per group (for the run log)."""
        return [f"{g:16s} {'train' if c['trainable'] else 'frozen':6s} {c['trainable'] + c['frozen']:>14,d} "
                f"params in {c['tensors']} tensors" for g, c in self.groups.items()]


def _tied_names(model: nn.Module) -> dict[int, list[str]]:
    """{id(parameter): every name it has} for the tensors registered under more than one name."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {k: v for k, v in names.items() if len(v) > 1}


def apply_freeze_policy(model: nn.Module, policy: FreezePolicy | str) -> FreezeReport:
    """Set ``requires_grad`` of every parameter of ``model`` by its group and ``policy``.

    Args:
        model: a model whose family registers :class:`GroupRules` (optionally with LoRA from :func:`apply_lora`).
        policy: a :class:`FreezePolicy` or its string.
    Returns:
        a :class:`FreezeReport` (per group: trainable / frozen element counts).
    Raises:
        ConfigError: a parameter in no group; a ``train=`` term none of whose groups the model has; ``llm``
            trained on a model with LoRA adapters, or the adapters frozen by a ``train=`` list; a tied tensor
            whose names fall in groups with different decisions (all problems at once).
    """
    policy = FreezePolicy.parse(policy) if isinstance(policy, str) else policy
    groups = parameter_groups(model)
    model_type = model_type_of(model)
    rules = rules_for(model)
    tied = _tied_names(model)
    present = set(groups) | {rules.group_of(canonical_name(n)) for names in tied.values() for n in names}
    problems = []
    if policy.mode == "train":
        absent = [t for t in policy.terms if not any(g in present for g in ALIASES.get(t, (t,)))]
        if absent:
            problems.append(f"train= lists {', '.join(absent)} but this {model_type} model has no such "
                            f"parameters (its groups: {', '.join(g for g in known_groups() if g in present)})")
    if "lora" in groups:
        if policy.trains("llm"):
            problems.append("the LLM carries LoRA adapters, so its base weights stay frozen: leave llm out of "
                            "train= (LoRA trains the low-rank updates) or drop LoRA to fine-tune the LLM fully")
        if not policy.trains("lora"):
            problems.append("the model has LoRA adapters but the policy freezes them; add lora to train=")
    for names in tied.values():
        owners = {rules.group_of(canonical_name(n)) for n in names}
        if len({policy.trains(g) for g in owners}) > 1:
            problems.append(f"{' and '.join(names)} are one tied tensor (groups {', '.join(sorted(owners))}): "
                            "train or freeze those groups together")
    if problems:
        raise ConfigError(f"freeze policy {str(policy)!r} on this {model_type} model: " + "; ".join(problems),
                          field="freeze_policy", value=problems)
    params = dict(model.named_parameters())
    counts: dict[str, dict[str, int]] = {}
    for group, names in groups.items():
        train = policy.trains(group)
        count = {"trainable": 0, "frozen": 0, "tensors": len(names)}
        for name in names:
            param = params[name]
            param.requires_grad_(train)
            count["trainable" if train else "frozen"] += param.numel()
        counts[group] = count
    return FreezeReport(str(policy), model_type, counts)


# ---- LoRA -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the LLM decoder's linear layers (through peft).

    Fields:
        r: rank (> 0). alpha: scale numerator (updates are scaled by alpha / r). dropout: on the adapter input,
        in [0, 1). target_modules: leaf module names inside the decoder layers (Qwen: ``q_proj k_proj v_proj
        o_proj`` in attention, ``gate_proj up_proj down_proj`` in the MLP); modules of the same name elsewhere
        (the vision tower's MLP, VGGT, the connector) are never wrapped.
    """

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    schema_version: int = 1

    def __post_init__(self):
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        problems = []
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            problems.append(f"r={self.r!r} (a positive integer)")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            problems.append(f"alpha={self.alpha!r} (a positive number)")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout!r} (in [0, 1))")
        bad = [t for t in self.target_modules if not isinstance(t, str) or not t.isidentifier()]
        if not self.target_modules or bad:
            problems.append(f"target_modules={list(self.target_modules)!r} (module names such as q_proj, v_proj)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid LoraSettings: " + "; ".join(problems), field="lora", value=problems)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LoraSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown LoraSettings keys {unknown}; known: {sorted(known)}", field="lora",
                              value=unknown)
        return cls(**data)


def _lora_layer_type():
    from peft.tuners.lora import LoraLayer

    return LoraLayer


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` carries LoRA adapters."""
    layer = _lora_layer_type()
    return any(isinstance(m, layer) for m in model.modules())


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap the LLM decoder's linear layers ``settings.target_modules`` with LoRA adapters, in place.

    The model keeps its class (peft's ``inject_adapter_in_model``, no ``PeftModel`` wrapper), so pose
    positions, camera attention and Spatial-MLLM's hooks keep working. The adapters are trainable; every
    other parameter keeps the ``requires_grad`` it had (so this composes with :func:`apply_freeze_policy`
    before or after it; the policy must freeze ``llm`` and train ``lora``). Adapters start as a no-op (B = 0).

    Returns:
        the same model. Raises ConfigError: the model already has LoRA, or no / non-linear target modules.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if has_lora(model):
        raise ConfigError("the model already carries LoRA adapters; merge_lora() it first", field="lora")
    rules = rules_for(model)
    root = model.get_submodule(rules.lora_root) if rules.lora_root else model
    scope = rules.lora_scope
    pattern = rf"{scope}(.*\.)?({'|'.join(map(re.escape, settings.target_modules))})"
    targets = {n: m for n, m in root.named_modules() if re.fullmatch(pattern, n)}
    not_linear = sorted(n for n, m in targets.items() if type(m) is not nn.Linear)
    if not targets or not_linear:
        raise ConfigError(f"LoRA target_modules={list(settings.target_modules)} match "
                          + (f"non-linear modules {not_linear[:4]}" if not_linear else "no module")
                          + f" in the LLM decoder layers (scope {scope!r}); name linear layers such as q_proj, v_proj",
                          field="target_modules", value=list(settings.target_modules))
    before = {canonical_name(n): p.requires_grad for n, p in model.named_parameters()}
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=pattern, bias="none")
    inject_adapter_in_model(config, root, adapter_name="default")
    for name, param in model.named_parameters():
        key = canonical_name(name)
        param.requires_grad_(before[key] if key in before else True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base linear layer and remove the adapters, in place.

    The result is a plain model of the same class (same parameter names as before :func:`apply_lora`) that
    ``save_pretrained`` writes as an ordinary checkpoint; its outputs equal the adapter model's to rounding.
    """
    layer_type = _lora_layer_type()
    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, layer_type)]
    for name, module in wrapped:
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    for module in model.modules():
        if "peft_config" in vars(module):
            del module.peft_config
    return model


# ---- optimiser groups -----------------------------------------------------------------------------------------
def _is_norm(module: nn.Module) -> bool:
    norms = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)
    return isinstance(module, norms) or type(module).__name__.lower().endswith("norm")


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameter names exempt from weight decay: biases, parameters of normalisation modules, and every
    parameter with at most one dimension (pose slopes, layer-scale gammas)."""
    out = set()
    for module_name, module in model.named_modules():
        norm = _is_norm(module)
        for pname, param in module.named_parameters(recurse=False):
            if norm or pname == "bias" or param.ndim <= 1:
                out.add(f"{module_name}.{pname}" if module_name else pname)
    return out


def optimizer_param_groups(model: nn.Module, *, lr: float, projector_lr: float | None = None,
                           vision_lr: float | None = None, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Torch-optimiser parameter groups for the trainable parameters of ``model``.

    Each trainable parameter is in exactly one group: ``projector`` (merger, connector, fusion; at
    ``projector_lr``) when ``projector_lr`` is given, ``vision`` (the vision tower; at ``vision_lr``) when
    ``vision_lr`` is given, ``base`` (everything else; at ``lr``), each split into ``decay`` (``weight_decay``)
    and ``no_decay`` (0.0; see :func:`no_decay_names`). Empty groups are left out. Every dict carries
    ``params``, ``lr``, ``weight_decay`` and ``group_name`` (e.g. ``projector/no_decay``; torch keeps extra keys).
    Spec §3.3: ``lr=7e-6, projector_lr=2e-5, weight_decay=0.1``.

    Raises:
        ConfigError: a non-positive learning rate, negative weight decay, or no trainable parameter.
    """
    problems = [f"{k}={v!r} (> 0)" for k, v in (("lr", lr), ("projector_lr", projector_lr), ("vision_lr", vision_lr))
                if v is not None and not (isinstance(v, (int, float)) and v > 0)]
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        problems.append(f"weight_decay={weight_decay!r} (>= 0)")
    if problems:
        raise ConfigError("optimizer_param_groups: " + "; ".join(problems), field="optimizer", value=problems)
    tier_of = {g: "projector" for g in PROJECTOR_GROUPS if projector_lr is not None}
    tier_of.update({g: "vision" for g in VISION_GROUPS if vision_lr is not None})
    tier_lr = {"base": lr, "projector": projector_lr, "vision": vision_lr}
    skip_decay = no_decay_names(model)
    params = dict(model.named_parameters())
    buckets: dict[tuple[str, str], list[torch.Tensor]] = {}
    for group, names in parameter_groups(model).items():
        for name in names:
            param = params[name]
            if param.requires_grad:
                key = (tier_of.get(group, "base"), "no_decay" if name in skip_decay else "decay")
                buckets.setdefault(key, []).append(param)
    if not buckets:
        raise ConfigError("the model has no trainable parameter; check the freeze policy (e.g. "
                          "train=merger,connector,llm)", field="freeze_policy")
    order = [(t, d) for t in ("base", "projector", "vision") for d in ("decay", "no_decay")]
    return [{"params": buckets[key], "lr": float(tier_lr[key[0]]),
             "weight_decay": float(weight_decay) if key[1] == "decay" else 0.0, "group_name": "/".join(key)}
            for key in order if key in buckets]


def describe_param_groups(groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """JSON-ready summary of :func:`optimizer_param_groups` output (names, lr, wd, tensor and element counts)."""
    return [{"group_name": g.get("group_name"), "lr": g["lr"], "weight_decay": g["weight_decay"],
             "tensors": len(g["params"]), "numel": int(sum(p.numel() for p in g["params"]))} for g in groups]
