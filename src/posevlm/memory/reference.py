"""Slow, obviously-correct Algorithm 1: Python lists, one entry at a time (the test oracle of
:class:`~posevlm.memory.dual.DualMemory`, which runs the same algorithm as fixed-size banks and gathers).

Everything here follows the algorithm's text literally: lists that ``append`` / ``pop(0)`` / ``del``, keys and
values recomputed from the stored entries at every step, cosine similarities entry by entry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from posevlm.memory.banks import _Memory
from posevlm.memory.dual import DualMemory

__all__ = ["working_update_reference", "episodic_update_reference", "retrieve_reference", "dual_memory_reference"]


def working_update_reference(memory: list, entry, capacity: int) -> list:
    """Algorithm 1, lines 8-14: append; when full, remove the oldest first."""
    out = list(memory)
    if len(out) >= capacity:
        out.pop(0)
    out.append(entry)
    return out


def _cosine(a: Tensor, b: Tensor, similarity: str) -> float:
    if similarity == "mean_token":
        a, b = a.mean(0), b.mean(0)
    return float(F.cosine_similarity(a.detach().flatten().float(), b.detach().flatten().float(), dim=0))


def episodic_update_reference(memory: list, entry: Tensor, capacity: int, similarity: str = "flatten") -> list:
    """Algorithm 1, lines 15-24: append; when full, delete the entry most cosine-similar to ``entry`` (the first
    of equals), then append."""
    out = list(memory)
    if len(out) >= capacity:
        scores = [_cosine(entry, e, similarity) for e in out]
        del out[scores.index(max(scores))]
    out.append(entry)
    return out


def retrieve_reference(memory: _Memory, entries: list[Tensor], query: Tensor) -> Tensor:
    """``Attn(Q = query, KV = entries)`` for one stream: (n, D) query, entries (n, D) each; explicit softmax."""
    if not entries:
        return query
    n, d = query.shape
    h = memory.num_heads
    q = memory.q_proj(memory.query_norm(query)).view(n, h, d // h).transpose(0, 1)  # (h, n, d/h)
    kv = torch.cat(entries)  # (len * n, D), oldest first
    k, v = memory.project(kv)
    k = k.view(-1, h, d // h).transpose(0, 1)
    v = v.view(-1, h, d // h).transpose(0, 1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
    return (weights @ v).transpose(0, 1).reshape(n, d)


def dual_memory_reference(module: DualMemory, steps: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Algorithm 1 over one stream's (T, n, D) steps with ``module``'s parameters.

    Returns:
        ((T, n, D) outputs H_t + out_proj(M_t), working memory list, episodic memory list) after the last step.
    """
    working: list[Tensor] = []
    episodic: list[Tensor] = []
    outs = []
    for h in steps:
        m_w = retrieve_reference(module.working, working, h) if module.working is not None else None
        m_e = retrieve_reference(module.episodic, episodic, h) if module.episodic is not None else None
        if m_w is not None and m_e is not None:
            gamma = torch.sigmoid(module.gate(torch.cat([m_w, m_e], dim=-1)))
            m = gamma * m_w + (1 - gamma) * m_e
        else:
            m = m_w if m_w is not None else m_e
        if module.working is not None:
            working = working_update_reference(working, h, module.working.capacity)
        if module.episodic is not None:
            episodic = episodic_update_reference(episodic, m, module.episodic.capacity, module.episodic.similarity)
        outs.append(h + module.out_proj(m))
    return torch.stack(outs), working, episodic
