"""PointCloudLM: a stock Qwen2 / Qwen2.5 / Qwen3 decoder composed with a point encoder and a projector, in the
SpatialLM input format, with MixedRoPE3D on the point tokens.

Notation: B batch, L tokens, T point tokens of the batch (T_b of row b), C the encoder width, D_model the LLM width.

Composition, not subclassing: ``model.decoder`` is an untouched transformers ``Qwen2ForCausalLM`` /
``Qwen3ForCausalLM`` made point-aware by :func:`posevlm.models.mixed_rope3d.enable_mixed_rope3d`;
``model.encoder`` a ``posevlm.spatial.points`` encoder (``point_encoders`` registry); ``model.projector`` a
linear map or a 2-layer MLP C -> D_model.

Token layout (SpatialLM): ``<|point_start|> <|point_pad|> x T_b <|point_end|>`` then the text. The tokenizer gets
the three tokens (:func:`add_point_tokens`); a prompt holds **one** ``<|point_pad|>`` (or none: the span is put in
front) and :meth:`PointCloudLM.prepare` expands it to T_b pads, one per voxel token of the row's cloud, before the
model sees it. So ``input_ids``, the attention mask, the KV cache and ``generate``'s growing mask always count the
same tokens (the design note's trap 1 cannot happen); rows with different T_b are padded (left by default, for
generation; right for training).

Forward: the embeddings of the pads are replaced (``masked_scatter``) by ``projector(encoder(points))``, the
decoder runs on ``inputs_embeds`` with ``point_coords`` = the voxel tokens' grid coordinates (one per token) and
``point_mask`` = the pads; labels at point tokens are ignored (-100). ``generate`` returns the prompt ids followed
by the new tokens, like transformers' ``generate``.

Checkpoints (:meth:`save_pretrained` / :meth:`from_pretrained`): the decoder's ``config.json`` (with
``posevlm_mixed_rope3d`` and ``posevlm_point_lm``) and safetensors (MixedRoPE3D parameters included),
``point_modules.safetensors`` (``encoder.*``, ``projector.*``) and the tokenizer files.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.models.mixed_rope3d import enable_mixed_rope3d, load_mixed_rope3d_model
from posevlm.positions.rope3d import MixedRoPE3DConfig, rope3d_config
from posevlm.spatial.points import PointBatch, PointEncoderConfig, build_point_encoder, voxelize_points

__all__ = ["PointCloudLM", "PointCloudLMConfig", "POINT_TOKENS", "CONFIG_KEY", "POINT_MODULES_FILE",
           "add_point_tokens", "build_projector", "point_prompt", "expand_point_pad", "MODEL_TYPE"]

CONFIG_KEY = "posevlm_point_lm"
#: ``model.config.model_type`` of a PointCloudLM (its key in ``posevlm.train.policy.group_rules``)
MODEL_TYPE = "posevlm-point-lm"
POINT_MODULES_FILE = "point_modules.safetensors"
#: (start, pad, end) of the point span
POINT_TOKENS = ("<|point_start|>", "<|point_pad|>", "<|point_end|>")
PROJECTORS = ("linear", "mlp2")


@dataclass(frozen=True)
class PointCloudLMConfig:
    """The point-side recipe of a PointCloudLM, stored in ``config.json`` under ``posevlm_point_lm``.

    Fields:
        encoder: the point encoder's :class:`PointEncoderConfig`.
        projector: ``linear`` or ``mlp2`` (Linear, GELU, Linear; SpatialLM's two choices).
        point_start_id / point_pad_id / point_end_id: the ids of :data:`POINT_TOKENS` in the tokenizer.
    The rotary spec lives beside it under ``posevlm_mixed_rope3d`` (it belongs to the decoder).
    """

    encoder: PointEncoderConfig
    projector: str
    point_start_id: int
    point_pad_id: int
    point_end_id: int
    schema_version: int = 1

    def __post_init__(self):
        problems = []
        if isinstance(self.encoder, Mapping):
            object.__setattr__(self, "encoder", PointEncoderConfig.from_dict(self.encoder))
        if self.projector not in PROJECTORS:
            problems.append(f"projector={self.projector!r} (allowed: {', '.join(PROJECTORS)})")
        ids = (self.point_start_id, self.point_pad_id, self.point_end_id)
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids) or len(set(ids)) != 3:
            problems.append(f"point token ids {ids} (three distinct ids >= 0)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid PointCloudLMConfig: " + "; ".join(problems), field="PointCloudLMConfig",
                              value=problems)

    @property
    def model_type(self) -> str:
        """:data:`MODEL_TYPE`: how parameter-group rules and other family lookups recognise the model."""
        return MODEL_TYPE

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["encoder"] = self.encoder.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PointCloudLMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown PointCloudLMConfig keys {unknown}; known: {sorted(known)}",
                              field="PointCloudLMConfig", value=unknown)
        return cls(**dict(data))


def point_prompt(text: str) -> str:
    """The user text of a point-cloud sample: the span ``<|point_start|><|point_pad|><|point_end|>`` then ``text``
    (SpatialLM's order). :meth:`PointCloudLM.prepare` expands its one pad; training (``posevlm.train.points``) and
    evaluation (the ``points`` eval backend) both build their prompts with it."""
    return "".join(POINT_TOKENS) + text


def expand_point_pad(ids: Sequence[int], count: int, point_ids: tuple[int, int, int]) -> list[int]:
    """``ids`` with its one ``<|point_pad|>`` repeated ``count`` times (one per voxel token of the row's cloud); ids
    without a point span get ``start, pad x count, end`` in front. ``point_ids``: (start, pad, end).

    Raises:
        ShapeError: ``ids`` hold more than one pad.
    """
    start, pad, end = point_ids
    ids = [int(i) for i in ids]
    n = ids.count(pad)
    if n == 0:
        ids = [start, pad, end, *ids]
    elif n != 1:
        raise ShapeError(f"a prompt holds {n} {POINT_TOKENS[1]} tokens; write one (it is expanded to the {count} "
                         "voxel tokens of its cloud)", name="prompts", shape=(n,))
    at = ids.index(pad)
    return ids[:at] + [pad] * int(count) + ids[at + 1:]


def add_point_tokens(tokenizer, decoder: nn.Module | None = None) -> tuple[int, int, int]:
    """Add :data:`POINT_TOKENS` to ``tokenizer`` as special tokens (kept if present) and grow ``decoder``'s
    embeddings when an id falls outside its vocabulary. Returns their ids (start, pad, end)."""
    tokenizer.add_tokens([t for t in POINT_TOKENS if t not in tokenizer.get_vocab()], special_tokens=True)
    ids = tuple(int(tokenizer.convert_tokens_to_ids(t)) for t in POINT_TOKENS)
    if decoder is not None and max(ids) >= decoder.get_input_embeddings().num_embeddings:
        decoder.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=16)
    return ids  # type: ignore[return-value]


def build_projector(kind: str, in_size: int, out_size: int) -> nn.Module:
    """``linear``: Linear(C, D_model); ``mlp2``: Linear(C, D_model), GELU, Linear(D_model, D_model)."""
    if kind == "linear":
        return nn.Linear(in_size, out_size)
    if kind == "mlp2":
        return nn.Sequential(nn.Linear(in_size, out_size), nn.GELU(), nn.Linear(out_size, out_size))
    raise ConfigError(f"projector={kind!r} (allowed: {', '.join(PROJECTORS)})", field="projector", value=kind)


def _cloud_tensor(cloud: Any) -> Tensor:
    """(N, 9) float32 from a ``posevlm.scenes.pointcloud.PointCloud`` (``to_array()``), an array or a tensor."""
    if hasattr(cloud, "to_array"):
        cloud = cloud.to_array()
    return torch.as_tensor(cloud, dtype=torch.float32)


class PointCloudLM(nn.Module):
    """Stock decoder + point encoder + projector (module docstring).

    Args:
        decoder: a ``Qwen2ForCausalLM`` / ``Qwen3ForCausalLM`` on which :func:`enable_mixed_rope3d` ran.
        encoder: a point encoder (``posevlm.spatial.points.PointEncoder``); projector: C -> D_model.
        config: the :class:`PointCloudLMConfig`; tokenizer: optional, for :meth:`prepare`.
    """

    def __init__(self, decoder: nn.Module, encoder: nn.Module, projector: nn.Module, config: PointCloudLMConfig,
                 tokenizer: Any = None):
        super().__init__()
        if getattr(decoder.config, "posevlm_mixed_rope3d", None) is None:
            raise ConfigError("the decoder has no MixedRoPE3D; build the model with PointCloudLM.compose or call "
                              "enable_mixed_rope3d(decoder, spec, point_token_id=...) first", field="decoder")
        self.decoder, self.encoder, self.projector = decoder, encoder, projector
        self.config = config
        self.tokenizer = tokenizer
        setattr(decoder.config, CONFIG_KEY, config.to_dict())

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def compose(cls, decoder: "nn.Module | str | Path", tokenizer: Any = None, *,
                rope3d: "MixedRoPE3DConfig | Mapping | str" = "mixed_rope3d",
                encoder: "PointEncoderConfig | Mapping | None" = None, projector: str = "mlp2",
                seed: int | None = 0, **from_pretrained_kwargs: Any) -> "PointCloudLM":
        """A new point-cloud LM around a stock decoder (a model, or a local directory / hub id loaded with
        ``AutoModelForCausalLM`` and ``AutoTokenizer``): adds the point tokens, installs MixedRoPE3D (a preset
        name, dict or config), builds the encoder and projector (initialised from ``seed`` when not None)."""
        if isinstance(decoder, (str, Path)):
            import transformers

            source = str(decoder)
            decoder = transformers.AutoModelForCausalLM.from_pretrained(source, **from_pretrained_kwargs)
            if tokenizer is None:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        if tokenizer is None:
            raise ConfigError("compose needs the decoder's tokenizer (to add the point tokens)", field="tokenizer")
        start, pad, end = add_point_tokens(tokenizer, decoder)
        enable_mixed_rope3d(decoder, rope3d_config(rope3d), point_token_id=pad)
        enc_config = (encoder if isinstance(encoder, PointEncoderConfig)
                      else PointEncoderConfig.from_dict(encoder or {}))
        if seed is not None:
            torch.manual_seed(seed)
        enc = build_point_encoder(enc_config)
        proj = build_projector(projector, enc_config.out_size, decoder.config.hidden_size)
        device = decoder.get_input_embeddings().weight.device
        return cls(decoder, enc.to(device), proj.to(device), PointCloudLMConfig(enc_config, projector, start, pad, end),
                   tokenizer)

    # -- inputs ---------------------------------------------------------------------------------------------
    def voxelize(self, clouds: Sequence[Any]) -> PointBatch:
        """:func:`voxelize_points` of the clouds (PointCloud objects, (N, 9) arrays or tensors) at the encoder's
        token stride, on the model's device."""
        device = self.decoder.get_input_embeddings().weight.device
        return voxelize_points([_cloud_tensor(c).to(device) for c in clouds], self.config.encoder.token_stride)

    def prepare(self, prompts: Sequence[str | Sequence[int]], clouds: Sequence[Any], *,
                padding_side: str = "left", chat_template: bool = False) -> dict[str, Any]:
        """Model inputs for ``forward`` / ``generate`` (the processor step).

        Args:
            prompts: one per row: text (tokenised here; ``chat_template=True`` wraps it as a user turn with the
                generation prompt) or token ids; each holds one ``<|point_pad|>`` (or no span: it is prepended).
            clouds: one per row.
            padding_side: ``left`` (generation) or ``right`` (training).
        Returns:
            ``{"input_ids": (B, L), "attention_mask": (B, L), "points": PointBatch}``; row b has exactly T_b pads.
        """
        if len(prompts) != len(clouds):
            raise ShapeError(f"{len(prompts)} prompts for {len(clouds)} clouds (one cloud per row)", name="clouds",
                             shape=(len(clouds),))
        if padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side={padding_side!r} (left or right)", field="padding_side",
                              value=padding_side)
        points = self.voxelize(clouds)
        start, pad, end = self.config.point_start_id, self.config.point_pad_id, self.config.point_end_id
        rows = [expand_point_pad(self._tokenize(prompt, chat_template), count, (start, pad, end))
                for prompt, count in zip(prompts, points.token_counts.tolist())]
        length = max(len(r) for r in rows)
        fill = self._pad_id()
        input_ids = torch.full((len(rows), length), fill, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for b, row in enumerate(rows):  # one slice per row (B rows), not per token
            cols = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
            input_ids[b, cols] = torch.tensor(row)
            mask[b, cols] = 1
        device = points.points.device
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "points": points}

    def _tokenize(self, prompt: str | Sequence[int], chat_template: bool) -> Sequence[int]:
        if not isinstance(prompt, str):
            return [int(i) for i in prompt]
        if self.tokenizer is None:
            raise ConfigError("text prompts need a tokenizer (PointCloudLM.compose / from_pretrained attach one); or "
                              "pass token ids", field="tokenizer")
        if chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                                      add_generation_prompt=True, return_dict=False)
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def _pad_id(self) -> int:
        tok = self.tokenizer
        for value in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None),
                      getattr(self.decoder.config, "pad_token_id", None)):
            if value is not None:
                return int(value)
        return 0

    # -- model ----------------------------------------------------------------------------------------------
    def encode_points(self, points: PointBatch) -> Tensor:
        """(T, D_model) token embeddings of the clouds: ``projector(encoder(points))``."""
        return self.projector(self.encoder(points))

    def _embed(self, input_ids: Tensor, points: PointBatch | None) -> dict[str, Any]:
        embeds = self.decoder.get_input_embeddings()(input_ids)
        point_mask = input_ids == self.config.point_pad_id
        counts = point_mask.sum(-1)
        if points is None:
            if bool(counts.any()):
                raise ShapeError("input_ids hold point tokens but no points were given; pass points= (from "
                                 "PointCloudLM.prepare)", name="points")
            return {"inputs_embeds": embeds}
        if points.num_clouds != input_ids.shape[0] or not torch.equal(counts.cpu(), points.token_counts.cpu()):
            raise ShapeError(f"rows have {counts.tolist()} {POINT_TOKENS[1]} tokens but the clouds give "
                             f"{points.token_counts.tolist()} voxel tokens; build the inputs with PointCloudLM.prepare "
                             "(it expands the single placeholder to one pad per voxel token)", name="input_ids",
                             shape=tuple(input_ids.shape))
        features = self.encode_points(points.to(input_ids.device)).to(embeds.dtype)
        embeds = embeds.masked_scatter(point_mask[..., None], features)
        return {"inputs_embeds": embeds, "point_coords": points.token_coords.to(input_ids.device),
                "point_mask": point_mask}

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, points: PointBatch | None = None,
                labels: Tensor | None = None, **kwargs: Any):
        """The decoder's output (``logits`` (B, L, V), ``loss`` with ``labels``, ``past_key_values``) for inputs
        from :meth:`prepare`. Labels at point tokens and padding are ignored."""
        inputs = self._embed(input_ids, points)
        if labels is not None:
            labels = labels.masked_fill(input_ids == self.config.point_pad_id, -100)
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, -100)
        return self.decoder(attention_mask=attention_mask, labels=labels, **inputs, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, points: PointBatch | None = None,
                 **generate_kwargs: Any) -> Tensor:
        """``decoder.generate`` on the point-filled prompt embeddings: (B, L + new) prompt ids then new tokens.
        The point inputs apply to the prefill only; every generated token is text (plain 1D RoPE)."""
        inputs = self._embed(input_ids, points)
        return self.decoder.generate(input_ids=input_ids, attention_mask=attention_mask, **inputs,
                                     **generate_kwargs)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, state_dict: Mapping[str, Tensor] | None = None,
                        **kwargs: Any) -> Path:
        """Decoder (config + weights, MixedRoPE3D included), point modules, tokenizer into ``directory``.

        ``state_dict``: this model's state (keys ``decoder.*``, ``encoder.*``, ``projector.*``, as ``state_dict()``
        gives them) to write instead of the live weights, e.g. a trainer's gathered or LoRA-merged state
        (``posevlm.train.checkpoint.export_model``); other ``kwargs`` go to the decoder's ``save_pretrained``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        setattr(self.decoder.config, CONFIG_KEY, self.config.to_dict())
        if state_dict is None:
            state_dict = self.state_dict()
        parts: dict[str, dict[str, Tensor]] = {"decoder.": {}, "encoder.": {}, "projector.": {}}
        for key, value in state_dict.items():
            prefix = next((p for p in parts if key.startswith(p)), None)
            if prefix is None:
                raise ShapeError(f"state_dict key {key!r} is not under decoder. / encoder. / projector. (a PointCloudLM "
                                 "state)", name="state_dict", shape=(len(state_dict),))
            parts[prefix][key[len(prefix):]] = value
        self.decoder.save_pretrained(directory, state_dict=parts["decoder."], **kwargs)
        state = {f"{prefix}{k}": v.detach().contiguous().cpu() for prefix in ("encoder.", "projector.")
                 for k, v in parts[prefix].items()}
        save_file(state, str(directory / POINT_MODULES_FILE), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, **from_pretrained_kwargs: Any) -> "PointCloudLM":
        """Read back a :meth:`save_pretrained` directory (decoder, MixedRoPE3D, point modules, tokenizer)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        decoder = load_mixed_rope3d_model(directory, **from_pretrained_kwargs)
        stored = getattr(decoder.config, CONFIG_KEY, None)
        if not stored or getattr(decoder.config, "posevlm_mixed_rope3d", None) is None:
            raise ConfigError(f"{directory}/config.json has no {CONFIG_KEY} / posevlm_mixed_rope3d entry: not a "
                              "PointCloudLM checkpoint (compose one from a stock decoder instead)", field=CONFIG_KEY)
        config = PointCloudLMConfig.from_dict(stored)
        encoder = build_point_encoder(config.encoder)
        projector = build_projector(config.projector, config.encoder.out_size, decoder.config.hidden_size)
        state = load_file(str(directory / POINT_MODULES_FILE))
        for prefix, module in (("encoder.", encoder), ("projector.", projector)):
            part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            missing, unexpected = module.load_state_dict(part, strict=False)
            if missing or unexpected:
                raise ConfigError(f"{directory / POINT_MODULES_FILE}: {prefix[:-1]} keys missing {missing[:4]}, "
                                  f"unexpected {unexpected[:4]}", field=prefix[:-1], value=missing or unexpected)
        tokenizer = None
        if (directory / "tokenizer_config.json").is_file():
            import transformers

            tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
        device = decoder.get_input_embeddings().weight.device
        return cls(decoder, encoder.to(device), projector.to(device), config, tokenizer)
