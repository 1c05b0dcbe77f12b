"""MixedRoPE3D on a stock transformers 5.x Qwen2 / Qwen2.5 / Qwen3 text decoder (``Qwen2ForCausalLM``,
``Qwen3ForCausalLM``): point tokens rotate part of each head by their (x, y, z), text keeps 1D RoPE.

Notation: B batch, L tokens of this call, P tokens already in the KV cache, H query heads, Hk key/value heads,
D head dim, A coordinate axes, N point tokens of the batch.

One call, ``enable_mixed_rope3d(model, spec, point_token_id=...)``, patches the instance (no class is modified):

* ``model.model.mixed_rope3d``: a :class:`posevlm.positions.MixedRoPE3D` (its learned parameters are state-dict
  keys ``model.mixed_rope3d.*``, saved by ``save_pretrained``); the spec and the point token id go into
  ``model.config.posevlm_mixed_rope3d`` (``config.json``); :func:`load_mixed_rope3d_model` restores both.
* ``model.model.forward`` owns the attention mask and the positions (the design note's traps, each a test):
  - the mask is built by :func:`posevlm.attention.masks.causal_padding_mask` from the 2-D padding mask and the
    cache length, never by a parent-class helper (trap 5); a 2-D mask that does not cover cache + call raises
    ``ShapeError`` instead of silently mis-aligning (trap 1);
  - sequence positions = ``cumsum(mask) - 1`` over cache + call (left / right padding), unless given;
  - point coordinates apply **only at prefill** (empty cache): decode steps are text and get the plain 1D rotary
    even when ``generate`` passes the point inputs again (trap 2);
  - ``point_coords`` is one coordinate per point token (N, A), (B, N_max, A) padded at the end, or a list of
    (N_i, A); any other count raises naming the raw-cloud mistake (traps 4 and 6);
  - the per-head tables (query (B, H, L, D), key (B, Hk, L, D)) are built once per forward and travel to every
    layer as the keyword argument ``posevlm_rope3d`` (tables cached across layers).
* every decoder layer's ``self_attn.forward`` is the stock Qwen2 / Qwen3 attention (projections, Qwen3's q/k
  norms, RoPE, cache update, ``ALL_ATTENTION_FUNCTIONS`` dispatch, ``o_proj``) with the per-head tables applied
  when given (separate query and key tables: GQA-shaped, trap 3); text-only calls run the stock arithmetic.
* ``model.forward`` declares ``point_coords`` / ``point_mask`` (``generate`` validates its kwargs against it).

Supported: ``attn_implementation`` ``sdpa`` or ``eager``, full-attention layers only (no sliding window), static
rope types; a dynamic cache (``generate``'s default). Chunked prefill of point tokens raises ``ShapeError``.
"""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from posevlm.attention.masks import causal_padding_mask
from posevlm.errors import ConfigError, ShapeError
from posevlm.models.pose_positions import forward_declaring
from posevlm.positions.rope3d import MixedRoPE3D, MixedRoPE3DConfig, RotaryTables, rope3d_config
from posevlm.positions.rotary import apply_rotary

__all__ = ["CONFIG_KEY", "MODULE_NAME", "POINT_INPUTS", "DECODER_MODULES", "enable_mixed_rope3d",
           "mixed_rope3d_config", "load_mixed_rope3d_model", "load_mixed_rope3d_parameters", "point_positions",
           "point_attention_forward"]

CONFIG_KEY = "posevlm_mixed_rope3d"
MODULE_NAME = "mixed_rope3d"
POINT_INPUTS = ("point_coords", "point_mask")
#: supported ``config.model_type`` -> the transformers module of its attention (Qwen2.5 LLMs are model_type qwen2)
DECODER_MODULES = {"qwen2": "transformers.models.qwen2.modeling_qwen2",
                   "qwen3": "transformers.models.qwen3.modeling_qwen3"}
_STATIC_ROPE_TYPES = ("default", "linear", "yarn", "llama3")


def mixed_rope3d_config(model) -> dict | None:
    """The stored ``{"rope3d": ..., "point_token_id": ...}`` of ``model.config``, or None (stock model)."""
    value = getattr(model.config, CONFIG_KEY, None)
    return dict(value) if value else None


def _check_decoder(model) -> None:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in DECODER_MODULES or not hasattr(getattr(model, "model", None), "layers"):
        raise ConfigError(f"MixedRoPE3D needs a Qwen2 / Qwen2.5 / Qwen3 text decoder (Qwen2ForCausalLM or "
                          f"Qwen3ForCausalLM; model_type {sorted(DECODER_MODULES)}); got {type(model).__name__} "
                          f"(model_type {model_type!r})", field="model_type", value=model_type)
    problems = []
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    if any(t != "full_attention" for t in layer_types):
        problems.append("sliding-window layers (use_sliding_window=True): only full attention is supported")
    if config._attn_implementation not in ("sdpa", "eager"):
        problems.append(f"attn_implementation={config._attn_implementation!r} (use 'sdpa' or 'eager'; the mask is "
                        "built by posevlm)")
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type not in _STATIC_ROPE_TYPES:
        problems.append(f"rope_type={rope_type!r} changes inv_freq at run time (supported: {_STATIC_ROPE_TYPES})")
    if problems:
        raise ConfigError("MixedRoPE3D cannot be installed: " + "; ".join(problems), field="model", value=problems)


def enable_mixed_rope3d(model, spec: "MixedRoPE3DConfig | dict | str | None" = None, *,
                        point_token_id: int | None = None):
    """Give a stock Qwen2 / Qwen2.5 / Qwen3 decoder MixedRoPE3D for point tokens (module docstring).

    Args:
        model: ``Qwen2ForCausalLM`` / ``Qwen3ForCausalLM`` (sdpa or eager attention).
        spec: a :class:`MixedRoPE3DConfig`, its dict, or a preset name of ``rope3d_presets`` (``mixed_rope3d``,
            ``rope3d``, ...). None: the one stored in ``model.config.posevlm_mixed_rope3d``; without one the model
            is returned untouched (stock).
        point_token_id: the ``<|point_pad|>`` id that marks point tokens in ``input_ids``; None: pass
            ``point_mask`` with every call that has point tokens (e.g. with ``inputs_embeds``).
    Returns:
        the same model. Extra forward / generate inputs: ``point_coords`` (one coordinate per point token: (N, A),
        (B, N_max, A) or a list of (N_i, A), in token order) and optionally ``point_mask`` (B, L) bool.
    Raises:
        ConfigError: another model type, sliding-window layers, another attention implementation, a dynamic rope
            type, a spec that does not fit the head size.
    """
    _check_decoder(model)
    if spec is None:
        stored = mixed_rope3d_config(model)
        if stored is None:
            return model
        spec = stored["rope3d"]
        point_token_id = stored.get("point_token_id") if point_token_id is None else point_token_id
    spec = rope3d_config(spec)
    config = model.config
    text_model = model.model
    base = text_model.rotary_emb
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = MixedRoPE3D(spec, head_dim=head_dim, num_heads=config.num_attention_heads,
                       num_kv_heads=config.num_key_value_heads, rope_theta=float(config.rope_parameters["rope_theta"]),
                       attention_scaling=float(base.attention_scaling),
                       text_inv_freq=base.inv_freq.detach().to("cpu", torch.float32))
    text_model.add_module(MODULE_NAME, rope.to(base.inv_freq.device))
    modeling = importlib.import_module(DECODER_MODULES[config.model_type])
    for layer in text_model.layers:
        attn = layer.self_attn
        # plain functions (not the module) so that copy.deepcopy(model) works
        object.__setattr__(attn, "_posevlm_rope", modeling.apply_rotary_pos_emb)
        object.__setattr__(attn, "_posevlm_eager", modeling.eager_attention_forward)
        attn.forward = types.MethodType(point_attention_forward, attn)
    object.__setattr__(text_model, "_posevlm_point_token_id", None if point_token_id is None else int(point_token_id))
    text_model.forward = types.MethodType(_decoder_forward, text_model)
    model.forward = types.MethodType(forward_declaring(type(model), POINT_INPUTS), model)
    setattr(config, CONFIG_KEY, {"rope3d": spec.to_dict(),
                                 "point_token_id": None if point_token_id is None else int(point_token_id)})
    return model


# -- positions and point context -------------------------------------------------------------------------------
def point_positions(attention_mask: Tensor | None, *, batch_size: int, length: int, past_len: int,
                    device: torch.device) -> Tensor:
    """(B, L) sequence positions of this call: ``cumsum(mask) - 1`` over cache + call (padding: 0), or
    ``past_len + arange(L)`` without a mask (what ``generate`` passes, so cached decoding matches)."""
    if attention_mask is None:
        return (torch.arange(length, device=device) + past_len)[None].expand(batch_size, -1)
    mask = attention_mask.to(device)
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, -length:]


def _flat_coords(point_coords: Any, counts: Tensor, num_axes: int) -> Tensor:
    """(N, A) coordinates in token order from (N, A), (B, N_max, A) or a list of (N_i, A) (traps 4 and 6)."""
    total, b = int(counts.sum()), counts.shape[0]
    hint = ("give one coordinate per point token in token order (the encoder's voxel-token coordinates, not the "
            "raw cloud's points)")
    if isinstance(point_coords, (list, tuple)):
        if len(point_coords) != b:
            raise ShapeError(f"point_coords is a list of {len(point_coords)} but the batch has {b} rows",
                             name="point_coords", shape=(len(point_coords),))
        got = [int(torch.as_tensor(c).shape[0]) for c in point_coords]
        if got != counts.tolist():
            raise ShapeError(f"point_coords rows have {got} coordinates but the rows have {counts.tolist()} point "
                             f"tokens; {hint}", name="point_coords", shape=tuple(got))
        flat = torch.cat([torch.as_tensor(c).reshape(-1, num_axes) for c in point_coords], 0) if b else None
    else:
        coords = torch.as_tensor(point_coords)
        if coords.ndim == 3:
            if coords.shape[0] != b or coords.shape[1] < int(counts.max()):
                raise ShapeError(f"point_coords (B, N_max, A) = {tuple(coords.shape)} must have B = {b} rows and "
                                 f"N_max >= the most point tokens of a row ({int(counts.max())}); {hint}",
                                 name="point_coords", shape=tuple(coords.shape))
            keep = torch.arange(coords.shape[1], device=coords.device)[None] < counts.to(coords.device)[:, None]
            flat = coords[keep]
        elif coords.ndim == 2:
            flat = coords
        else:
            raise ShapeError(f"point_coords must be (N, A), (B, N_max, A) or a list of (N_i, A); got "
                             f"{tuple(coords.shape)}", name="point_coords", shape=tuple(coords.shape))
    if flat is None or flat.ndim != 2 or flat.shape[-1] != num_axes or flat.shape[0] != total:
        shape = None if flat is None else tuple(flat.shape)
        raise ShapeError(f"point_coords gives {shape} coordinates for {total} point tokens with {num_axes} axes; "
                         f"{hint}", name="point_coords", shape=shape)
    return flat


def _point_context(self, input_ids: Tensor | None, point_coords, point_mask: Tensor | None, b: int, length: int,
                   device: torch.device) -> tuple[Tensor, Tensor] | None:
    """(coords (B, L, A), point mask (B, L)) of a prefill, or None when it has no point tokens."""
    token_id = self._posevlm_point_token_id
    if point_mask is None:
        if input_ids is None or token_id is None:
            if point_coords is not None:
                raise ShapeError("point_coords given but the point tokens cannot be found: pass point_mask (B, L) "
                                 "(needed with inputs_embeds or without a point_token_id)", name="point_mask")
            return None
        point_mask = input_ids == token_id
    point_mask = point_mask.to(device=device, dtype=torch.bool)
    if point_mask.shape != (b, length):
        raise ShapeError(f"point_mask must be (B, L) = ({b}, {length}); got {tuple(point_mask.shape)}",
                         name="point_mask", shape=tuple(point_mask.shape))
    counts = point_mask.sum(-1)
    if not bool(counts.any()):
        return None
    num_axes = len(self.mixed_rope3d.config.axes)
    if point_coords is None:
        raise ShapeError(f"the prompt has {int(counts.sum())} point tokens but no point_coords; pass one coordinate "
                         "per point token", name="point_coords")
    flat = _flat_coords(point_coords, counts.cpu(), num_axes).to(device=device, dtype=torch.float32)
    coords = torch.zeros(b, length, num_axes, device=device, dtype=torch.float32)
    coords[point_mask] = flat  # row-major: row 0's point tokens first, in token order
    return coords, point_mask


def _decoder_forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                     position_ids: Tensor | None = None, past_key_values=None, inputs_embeds: Tensor | None = None,
                     use_cache: bool | None = None, point_coords=None, point_mask: Tensor | None = None, **kwargs):
    """``Qwen2Model`` / ``Qwen3Model.forward`` with posevlm's mask, positions and point tables."""
    ref = input_ids if input_ids is not None else inputs_embeds
    if ref is None or (input_ids is not None and inputs_embeds is not None):
        raise ShapeError("pass exactly one of input_ids and inputs_embeds", name="input_ids")
    b, length = ref.shape[0], ref.shape[1]
    device = ref.device
    past = past_key_values.get_seq_length() if past_key_values is not None else 0
    if attention_mask is not None and (isinstance(attention_mask, dict) or attention_mask.ndim != 2):
        raise ShapeError("with MixedRoPE3D the attention mask is built by posevlm: pass the 2-D padding mask "
                         "(B, cached + new tokens) and a dynamic cache, not a prepared 4-D mask", name="attention_mask")
    if position_ids is None:
        position_ids = point_positions(attention_mask, batch_size=b, length=length, past_len=past, device=device)
    context = None
    if past == 0:
        context = _point_context(self, input_ids, point_coords, point_mask, b, length, device)
    elif length > 1 and point_coords is not None and input_ids is not None \
            and self._posevlm_point_token_id is not None and bool((input_ids == self._posevlm_point_token_id).any()):
        raise ShapeError("point tokens after the prefill (chunked prefill) are not supported; pass the whole prompt "
                         "in one call", name="input_ids", shape=tuple(input_ids.shape))
    dtype = inputs_embeds.dtype if inputs_embeds is not None else self.embed_tokens.weight.dtype
    mask = causal_padding_mask(attention_mask, batch_size=b, q_len=length, past_len=past,
                               impl=self.config._attn_implementation, dtype=dtype, device=device)
    masks = {kind: mask for kind in set(self.config.layer_types)}
    if context is not None:
        coords, pmask = context
        kwargs["posevlm_rope3d"] = self.mixed_rope3d.tables(position_ids.expand(b, -1), coords, pmask, dtype=dtype)
    return type(self).forward(self, input_ids=input_ids, attention_mask=masks, position_ids=position_ids,
                              past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                              **kwargs)


def point_attention_forward(self, hidden_states: Tensor, position_embeddings: tuple[Tensor, Tensor] | None = None,
                            attention_mask: Tensor | None = None, past_key_values=None,
                            posevlm_rope3d: RotaryTables | None = None, **kwargs):
    """Stock Qwen2 / Qwen3 attention; with ``posevlm_rope3d`` the per-head query and key tables replace the
    shared 1D ones (text-only calls: the stock ``apply_rotary_pos_emb``)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    q = self.q_proj(hidden_states).view(hidden_shape)
    k = self.k_proj(hidden_states).view(hidden_shape)
    if hasattr(self, "q_norm"):
        q, k = self.q_norm(q), self.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    v = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    if posevlm_rope3d is None:
        cos, sin = position_embeddings
        q, k = self._posevlm_rope(q, k, cos, sin)
    else:
        t = posevlm_rope3d
        q, k = apply_rotary(q, t.cos_q, t.sin_q), apply_rotary(k, t.cos_k, t.sin_k)
    if past_key_values is not None:
        k, v = past_key_values.update(k, v, self.layer_idx)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, self._posevlm_eager)
    out, weights = attention(self, q, k, v, attention_mask, dropout=0.0 if not self.training else
                             self.attention_dropout, scaling=self.scaling, sliding_window=self.sliding_window,
                             **kwargs)
    out = out.reshape(*input_shape, -1).contiguous()
    return self.o_proj(out), weights


# -- checkpoints -----------------------------------------------------------------------------------------------
def load_mixed_rope3d_parameters(model, path, *, revision: str | None = None, local_files_only: bool = False) -> int:
    """Read the learned MixedRoPE3D parameters back from a checkpoint (local directory or hub id) into ``model``.

    The stock class does not know them, so ``from_pretrained`` drops them as unexpected keys. Returns the number
    of tensors loaded (0 when the spec learns nothing). Raises ConfigError when the checkpoint lacks some."""
    rope = getattr(model.model, MODULE_NAME, None)
    wanted = {name: p for name, p in rope.named_parameters()} if rope is not None else {}
    if not wanted:
        return 0
    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(path), allow_patterns=["*.safetensors"], revision=revision,
                                        local_files_only=local_files_only))
    from safetensors import safe_open

    pattern = re.compile(rf"(?:^|\.){MODULE_NAME}\.(\w+)$")
    found = set()
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if (m := pattern.search(key)) and m.group(1) in wanted:
                    target = wanted[m.group(1)]
                    value = f.get_tensor(key)
                    if value.shape != target.shape:
                        raise ConfigError(f"checkpoint {path}: {key} has shape {tuple(value.shape)} but the spec in "
                                          f"config.json gives {tuple(target.shape)}", field=key, value=value.shape)
                    with torch.no_grad():
                        target.copy_(value)
                    found.add(m.group(1))
    missing = sorted(set(wanted) - found)
    if missing:
        raise ConfigError(f"checkpoint {path} has no MixedRoPE3D parameters {missing} although its config.json "
                          "learns them; it is incomplete (save it with save_pretrained after enable_mixed_rope3d)",
                          field=CONFIG_KEY, value=missing)
    return len(found)


def load_mixed_rope3d_model(path, model_class=None, **from_pretrained_kwargs):
    """``from_pretrained`` + :func:`enable_mixed_rope3d` with the spec in ``config.json`` + its learned
    parameters. model_class: a transformers class; default: ``config.architectures[0]``. A checkpoint without a
    stored spec loads stock."""
    import transformers

    if model_class is None:
        config = transformers.AutoConfig.from_pretrained(path, **{k: v for k, v in from_pretrained_kwargs.items()
                                                                   if k in ("revision", "local_files_only")})
        names = getattr(config, "architectures", None) or []
        if not names or not hasattr(transformers, names[0]):
            raise ConfigError(f"cannot tell the model class of {path}; pass model_class", field="model_class",
                              value=names)
        model_class = getattr(transformers, names[0])
    model = model_class.from_pretrained(path, **from_pretrained_kwargs)
    if mixed_rope3d_config(model) is None:
        return model
    enable_mixed_rope3d(model)
    load_mixed_rope3d_parameters(model, path, revision=from_pretrained_kwargs.get("revision"),
                                 local_files_only=bool(from_pretrained_kwargs.get("local_files_only")))
    return model
