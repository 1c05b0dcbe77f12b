"""The causal + padding attention mask of a decoder call, owned here instead of borrowed from the model library.

Notation: B batch, Lq the tokens of this call, P the tokens already in the KV cache, Lk = P + Lq.

A research fork inherited this mask from its parent class through ``super()`` and broke silently when the library
changed it (design note mixed-rope3d.md, trap 5). posevlm builds it from first principles and a test compares it
with the installed transformers' ``create_causal_mask`` (tests/models/test_mixed_rope3d.py), so a change there is a
failing test, not a silent drift.
"""

from __future__ import annotations

import torch
from torch import Tensor

from posevlm.errors import ConfigError, ShapeError

__all__ = ["causal_padding_mask", "MASK_IMPLEMENTATIONS"]

MASK_IMPLEMENTATIONS = ("sdpa", "eager")


def causal_padding_mask(attention_mask: Tensor | None, *, batch_size: int, q_len: int, past_len: int, impl: str,
                        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor | None:
    """The 4-D mask for ``q_len`` new tokens after ``past_len`` cached ones.

    Query i (absolute index P + i) sees key j iff ``j <= P + i`` and key j is not padding.

    Args:
        attention_mask: (B, Lk) 1 / True = token, 0 / False = padding; or None (no padding).
        impl: ``sdpa``: bool (B, 1, Lq, Lk), True = attend, or None when SDPA's own causal path gives the same
            (no padding, and Lq == 1 or Lk == Lq: transformers' rule); ``eager``: float (B, 1, Lq, Lk) additive,
            0 or ``finfo(dtype).min``, always materialised.
    Raises:
        ShapeError: the 2-D mask does not cover the cache plus this call (Lk = P + Lq): e.g. a mask counted in
            text tokens after point tokens were inserted (trap 1); rebuild it from the cache length.
        ConfigError: another attention implementation.
    """
    if impl not in MASK_IMPLEMENTATIONS:
        raise ConfigError(f"attention implementation {impl!r} is not supported here (use one of "
                          f"{', '.join(MASK_IMPLEMENTATIONS)}: attn_implementation='sdpa' or 'eager')",
                          field="attn_implementation", value=impl)
    kv_len = past_len + q_len
    device = device if device is not None else (attention_mask.device if attention_mask is not None else "cpu")
    padding = None
    if attention_mask is not None:
        if attention_mask.ndim != 2 or attention_mask.shape != (batch_size, kv_len):
            raise ShapeError(f"attention_mask must be (B, cached + new tokens) = ({batch_size}, {past_len} + {q_len}) "
                             f"but is {tuple(attention_mask.shape)}: the mask must count every token in the KV cache, "
                             "inserted point tokens included; build it from the cache length (PointCloudLM does)",
                             name="attention_mask", shape=tuple(attention_mask.shape))
        padding = attention_mask.to(device=device, dtype=torch.bool)
    no_padding = padding is None or bool(padding.all())
    if impl == "sdpa" and no_padding and (q_len == 1 or kv_len == q_len):
        return None
    q_index = torch.arange(q_len, device=device)[:, None] + past_len
    k_index = torch.arange(kv_len, device=device)[None, :]
    mask = (k_index <= q_index)[None, None].expand(batch_size, 1, q_len, kv_len)
    if padding is not None:
        mask = mask & padding[:, None, None, :]
    if impl == "eager":
        return torch.where(mask, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)
    return mask
