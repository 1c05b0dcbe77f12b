"""The two memories of VLM² (Algorithm 1): a working memory (FIFO of the last L_w steps) and an episodic memory
(capacity L_e, similarity replacement), each read by multi-head attention with the current step as queries.

Notation: B streams (videos) batched together, L a memory's capacity, n tokens per step (mh * mw), D width,
h heads. One *step* is one tubelet of the Qwen video grid (two frames; the unit the VLM² paper calls a frame).

A :class:`MemoryBank` is a fixed-size buffer: ``entries`` (B, L, n, D), their projected ``keys`` and ``values``
(computed once, when an entry is stored) and ``count`` (B,) int64; rows ``0 .. count - 1`` of each stream hold its
entries oldest first, exactly the order of Algorithm 1's list. An update is one gather from ``cat([bank, new])``
whose source indices come from integer arithmetic on ``count`` (:func:`fifo_sources`,
:func:`replacement_sources`): the same cost at every fill level, no Python loop over entries, no host sync, and a
stream whose ``active`` flag is False keeps its bank bit for bit. Every stream has its own rows: streams never
read or write each other's entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError

__all__ = ["MemoryBank", "WorkingMemory", "EpisodicMemory", "fifo_sources", "replacement_sources",
           "most_similar", "gather_update"]


@dataclass(frozen=True)
class MemoryBank:
    """A batch of fixed-capacity memories (one row per stream).

    Fields:
        entries: (B, L, n, D) stored step representations (rows >= count are unused and hold zeros or stale data).
        keys, values: (B, L, n, D) their key / value projections (as the owning memory computed them on entry).
        count: (B,) int64 filled rows, 0 .. L.
    """

    entries: Tensor
    keys: Tensor
    values: Tensor
    count: Tensor

    @property
    def capacity(self) -> int:
        return int(self.entries.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.entries.shape[2])

    def select(self, rows: Tensor | slice) -> "MemoryBank":
        """The banks of the streams ``rows`` (an index tensor or slice)."""
        return MemoryBank(self.entries[rows], self.keys[rows], self.values[rows], self.count[rows])

    @staticmethod
    def cat(banks: "list[MemoryBank]") -> "MemoryBank":
        """One batch from several (same capacity, tokens and width)."""
        return MemoryBank(*(torch.cat([getattr(b, name) for b in banks]) for name in ("entries", "keys", "values",
                                                                                       "count")))

    def valid(self) -> Tensor:
        """(B, L) bool: the filled rows."""
        return torch.arange(self.capacity, device=self.count.device) < self.count[:, None]

    def as_list(self, stream: int = 0) -> list[Tensor]:
        """The entries of one stream oldest first, (n, D) each (a view for tests and inspection; syncs)."""
        return list(self.entries[stream, : int(self.count[stream])].unbind(0))


# ---- index arithmetic (pure) ----------------------------------------------------------------------------------
def _keep_or_append(count: Tensor, capacity: int) -> Tensor:
    """(B, L) sources of a bank that is not full: row j keeps j, row ``count`` takes the new entry (index L)."""
    j = torch.arange(capacity, device=count.device)
    return torch.where(j == count[:, None], capacity, j)


def fifo_sources(count: Tensor, capacity: int, active: Tensor) -> Tensor:
    """Working-memory update (Algorithm 1, lines 8-14) as gather sources into ``cat([bank, new], dim=1)``.

    Not full: append the new entry after the ``count`` stored ones. Full: drop the oldest (row 0), shift the
    rest up by one and append. Inactive streams: unchanged.

    Args:
        count: (B,) int64 filled rows. capacity: L. active: (B,) bool.
    Returns:
        (B, L) int64 in 0 .. L, where L means the new entry.
    """
    j = torch.arange(capacity, device=count.device)
    full = j[None, :] + 1  # drop the oldest; the last row takes index L (the new entry)
    src = torch.where((count >= capacity)[:, None], full, _keep_or_append(count, capacity))
    return torch.where(active[:, None], src, j[None, :])


def replacement_sources(count: Tensor, capacity: int, active: Tensor, victim: Tensor) -> Tensor:
    """Episodic-memory update (Algorithm 1, lines 15-24) as gather sources into ``cat([bank, new], dim=1)``.

    Not full: append. Full: delete entry ``victim`` (the most similar one), close the gap and append the new
    entry at the end. Inactive streams: unchanged.

    Args:
        count: (B,) int64. capacity: L. active: (B,) bool. victim: (B,) int64 row to delete (used when full).
    Returns:
        (B, L) int64 in 0 .. L, where L means the new entry.
    """
    j = torch.arange(capacity, device=count.device)
    full = j[None, :] + (j[None, :] >= victim[:, None]).long()  # rows after the victim move up; last row -> L
    src = torch.where((count >= capacity)[:, None], full, _keep_or_append(count, capacity))
    return torch.where(active[:, None], src, j[None, :])


def most_similar(entries: Tensor, count: Tensor, new: Tensor, similarity: str = "flatten") -> Tensor:
    """Row of the stored entry most cosine-similar to ``new`` (first on ties); unfilled rows never win.

    Args:
        entries: (B, L, n, D). count: (B,) int64. new: (B, n, D).
        similarity: ``flatten`` (each (n, D) entry as one vector) or ``mean_token`` (its mean token).
    Returns:
        (B,) int64 (0 for an empty bank).
    """
    if similarity == "flatten":
        a, b = new.flatten(1), entries.flatten(2)
    elif similarity == "mean_token":
        a, b = new.mean(1), entries.mean(2)
    else:
        raise ConfigError(f"similarity={similarity!r} (allowed: flatten, mean_token)", field="similarity",
                          value=similarity)
    a, b = a.float(), b.float()
    cos = torch.einsum("bd,bld->bl", F.normalize(a, dim=-1), F.normalize(b, dim=-1))
    valid = torch.arange(entries.shape[1], device=count.device) < count[:, None]
    return cos.masked_fill(~valid, float("-inf")).argmax(dim=1)


def gather_update(stored: Tensor, new: Tensor, src: Tensor) -> Tensor:
    """(B, L, ...) rows of ``cat([stored, new[:, None]], 1)`` picked by ``src`` (B, L)."""
    pool = torch.cat([stored, new[:, None].to(stored.dtype)], dim=1)
    index = src.view(*src.shape, *([1] * (stored.dim() - 2))).expand(-1, -1, *stored.shape[2:])
    return torch.take_along_dim(pool, index, dim=1)


# ---- memories -------------------------------------------------------------------------------------------------
class _Memory(nn.Module):
    """A memory of capacity L read by attention: ``Attn(Q = H_t, KV = bank)`` (h heads, queries and entries
    RMS-normalised, no output projection: the dual memory's output projection follows the gated mix).

    Keys: ``query_norm.weight``, ``entry_norm.weight``, ``{q,k,v}_proj.{weight,bias}``.
    """

    def __init__(self, dim: int, num_heads: int, capacity: int, *, detach: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"num_heads={num_heads} does not divide dim={dim}", field="num_heads", value=num_heads)
        self.dim, self.num_heads, self.capacity, self.detach = dim, num_heads, capacity, detach
        self.query_norm = nn.RMSNorm(dim, eps=1e-6)
        self.entry_norm = nn.RMSNorm(dim, eps=1e-6)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        for layer in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def empty(self, batch: int, tokens: int, *, device=None, dtype=None) -> MemoryBank:
        """B empty banks for steps of ``tokens`` tokens."""
        dtype = dtype or self.q_proj.weight.dtype
        device = device or self.q_proj.weight.device
        zeros = torch.zeros(batch, self.capacity, tokens, self.dim, device=device, dtype=dtype)
        return MemoryBank(zeros, zeros.clone(), zeros.clone(), torch.zeros(batch, dtype=torch.long, device=device))

    def check(self, bank: MemoryBank, step: Tensor, name: str = "memory state") -> None:
        """Raise ShapeError unless ``bank`` fits steps shaped like ``step`` (B, n, D)."""
        want = (step.shape[0], self.capacity, step.shape[1], self.dim)
        if tuple(bank.entries.shape) != want:
            raise ShapeError(f"{name} holds banks {tuple(bank.entries.shape)} (B, L, n, D) but this step needs {want}: "
                             "a memory belongs to one video (one token grid); pass None to start a new one",
                             name=name, shape=tuple(bank.entries.shape))

    def project(self, entry: Tensor) -> tuple[Tensor, Tensor]:
        """(keys, values) of (..., n, D) entries."""
        x = self.entry_norm(entry.to(self.k_proj.weight.dtype))
        return self.k_proj(x), self.v_proj(x)

    def retrieve(self, bank: MemoryBank, query: Tensor) -> Tensor:
        """``Attn(Q = query, KV = bank)`` per stream over its filled rows; a stream with an empty bank retrieves
        the query itself.

        Args:
            bank: B banks. query: (B, n, D) the current step.
        Returns:
            (B, n, D) in the query's dtype.
        """
        b, n, d = query.shape
        h = self.num_heads
        x = query.to(self.q_proj.weight.dtype)
        q = self.q_proj(self.query_norm(x)).view(b, n, h, d // h).transpose(1, 2)
        m = bank.capacity * bank.tokens
        k = bank.keys.reshape(b, m, h, d // h).transpose(1, 2)
        v = bank.values.reshape(b, m, h, d // h).transpose(1, 2)
        valid = bank.valid()
        empty = bank.count == 0
        # an empty bank attends to its (zero) row 0, so the softmax stays finite; the result is replaced below
        valid = valid | (empty[:, None] & (torch.arange(bank.capacity, device=valid.device) == 0))
        mask = valid[:, :, None].expand(-1, -1, bank.tokens).reshape(b, 1, 1, m)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, n, d)
        return torch.where(empty[:, None, None], x, out).to(query.dtype)

    def _store(self, bank: MemoryBank, entry: Tensor, src: Tensor, active: Tensor) -> MemoryBank:
        entry = entry.detach() if self.detach else entry
        keys, values = self.project(entry)
        count = torch.where(active, torch.clamp(bank.count + 1, max=self.capacity), bank.count)
        return MemoryBank(gather_update(bank.entries, entry, src), gather_update(bank.keys, keys, src),
                          gather_update(bank.values, values, src), count)


class WorkingMemory(_Memory):
    """Working memory: the last L_w step representations H_t, first in first out (Algorithm 1, lines 8-14)."""

    def update(self, bank: MemoryBank, entry: Tensor, active: Tensor) -> MemoryBank:
        """Append ``entry`` (B, n, D) to the streams with ``active`` (B,) True, dropping the oldest when full."""
        return self._store(bank, entry, fifo_sources(bank.count, self.capacity, active), active)


class EpisodicMemory(_Memory):
    """Episodic memory: up to L_e fused memories M_t; when full, the stored entry most cosine-similar to the new
    one is deleted and the new one appended (Algorithm 1, lines 15-24)."""

    def __init__(self, dim: int, num_heads: int, capacity: int, *, similarity: str = "flatten",
                 detach: bool = False):
        super().__init__(dim, num_heads, capacity, detach=detach)
        self.similarity = similarity

    def update(self, bank: MemoryBank, entry: Tensor, active: Tensor) -> MemoryBank:
        """Store ``entry`` (B, n, D) for the streams with ``active`` (B,) True (similarity replacement when full)."""
        victim = most_similar(bank.entries, bank.count, entry, self.similarity)
        return self._store(bank, entry, replacement_sources(bank.count, self.capacity, active, victim), active)
