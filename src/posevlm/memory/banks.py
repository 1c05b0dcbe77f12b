"""The two memories of VLM² (Algorithm 1): a working memory (FIFO of the last L_w steps) and an episodic memory
(capacity L_e, similarity replacement), each read by multi-head attention with the current step as queries.

Notation: B streams (videos) batched together, L a memory's capacity, n tokens per step (mh * mw), D width,
h heads. One *step* is one tubelet of the Qwen video grid (two frames; the unit the VLM² paper calls a frame).

A :class:`MemoryBank` is a fixed set of L slots per stream: ``entries`` (B, L, n, D), their projected ``keys``
and ``values`` (computed once, when an entry is stored), ``stamps`` (B, L) int64 (when each slot was written; -1:
never) and ``count`` (B,) int64 filled slots. Algorithm 1 describes lists (append, drop the oldest, delete the
most similar entry); here an update writes the new entry into **one slot** -- the next free one, else the oldest
(working) or the deleted one (episodic) -- and stamps it, so the list of Algorithm 1 is the filled slots sorted by
stamp (:meth:`MemoryBank.as_list`), and ties in similarity go to the entry earliest in that list, as in the list
version. Retrieval is attention over a set, so slot order never matters. Each update is one out-of-place write
per tensor (no gather of the bank, no Python loop over entries, no host sync): the same cost at every fill level.
A stream whose ``active`` flag is False keeps its bank bit for bit; streams never read or write each other's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError

__all__ = ["MemoryBank", "WorkingMemory", "EpisodicMemory", "fifo_slot", "replacement_slot", "most_similar",
           "write_slot"]

_FIELDS = ("entries", "keys", "values", "stamps", "count")


@dataclass(frozen=True)
class MemoryBank:
    """A batch of fixed-capacity memories (one row per stream).

    Fields:
        entries: (B, L, n, D) stored step representations (unfilled slots hold zeros).
        keys, values: (B, L, n, D) their key / value projections (as the owning memory computed them on entry).
        stamps: (B, L) int64 write order of each slot (larger = later; -1 = never written).
        count: (B,) int64 filled slots, 0 .. L (slots 0 .. count - 1 while the bank is not full).
    """

    entries: Tensor
    keys: Tensor
    values: Tensor
    stamps: Tensor
    count: Tensor

    @property
    def capacity(self) -> int:
        return int(self.entries.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.entries.shape[2])

    def select(self, rows: Tensor | slice) -> "MemoryBank":
        """The banks of the streams ``rows`` (an index tensor or slice)."""
        return MemoryBank(*(getattr(self, name)[rows] for name in _FIELDS))

    @staticmethod
    def cat(banks: "list[MemoryBank]") -> "MemoryBank":
        """One batch from several (same capacity, tokens and width)."""
        return MemoryBank(*(torch.cat([getattr(b, name) for b in banks]) for name in _FIELDS))

    def valid(self) -> Tensor:
        """(B, L) bool: the filled slots."""
        return torch.arange(self.capacity, device=self.count.device) < self.count[:, None]

    def order(self, stream: int = 0) -> list[int]:
        """Slots of one stream in Algorithm 1's list order (oldest first; syncs)."""
        filled = int(self.count[stream])
        return torch.argsort(self.stamps[stream, :filled], stable=True).tolist()

    def as_list(self, stream: int = 0) -> list[Tensor]:
        """The entries of one stream as Algorithm 1's list, oldest first, (n, D) each (for tests and inspection)."""
        return [self.entries[stream, slot] for slot in self.order(stream)]


# ---- slot arithmetic (pure) -----------------------------------------------------------------------------------
def fifo_slot(count: Tensor, stamps: Tensor, capacity: int) -> Tensor:
    """Working-memory update (Algorithm 1, lines 8-14): the slot the new entry goes to -- the next free one, else
    the oldest entry's (dropping the oldest and appending the new one).

    Args:
        count: (B,) int64 filled slots. stamps: (B, L) int64 write order. capacity: L.
    Returns:
        (B,) int64 slot.
    """
    return torch.where(count >= capacity, stamps.argmin(dim=1), count)


def replacement_slot(count: Tensor, victim: Tensor, capacity: int) -> Tensor:
    """Episodic-memory update (Algorithm 1, lines 15-24): the next free slot, else the slot of ``victim`` (B,),
    the entry most similar to the new one (deleting it and appending the new one)."""
    return torch.where(count >= capacity, victim, count)


def most_similar(entries: Tensor, count: Tensor, new: Tensor, similarity: str = "flatten",
                 stamps: Tensor | None = None) -> Tensor:
    """Slot of the stored entry most cosine-similar to ``new``; unfilled slots never win; ties go to the entry
    earliest in list order (smallest stamp; without ``stamps``, the lowest slot).

    Args:
        entries: (B, L, n, D). count: (B,) int64. new: (B, n, D). stamps: (B, L) int64 or None.
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
    dot = torch.einsum("bd,bld->bl", a, b)
    cos = dot / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1)).clamp(min=1e-12)
    valid = torch.arange(entries.shape[1], device=count.device) < count[:, None]
    cos = cos.masked_fill(~valid, float("-inf"))
    if stamps is None:
        return cos.argmax(dim=1)
    best = cos == cos.max(dim=1, keepdim=True).values
    big = torch.iinfo(stamps.dtype).max
    return torch.where(best & valid, stamps, torch.full_like(stamps, big)).argmin(dim=1)


def write_slot(stored: Tensor, new: Tensor, slot: Tensor, active: Tensor) -> Tensor:
    """``stored`` (B, L, ...) with row ``slot[b]`` of each active stream replaced by ``new[b]`` (out of place)."""
    rows = torch.arange(stored.shape[0], device=stored.device)
    value = torch.where(active.view(-1, *([1] * (new.dim() - 1))), new.to(stored.dtype), stored[rows, slot])
    return stored.index_put((rows, slot), value)


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
        stamps = torch.full((batch, self.capacity), -1, dtype=torch.long, device=device)
        return MemoryBank(zeros, zeros.clone(), zeros.clone(), stamps, torch.zeros(batch, dtype=torch.long,
                                                                                     device=device))

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

    def _store(self, bank: MemoryBank, entry: Tensor, slot: Tensor, active: Tensor) -> MemoryBank:
        entry = entry.detach() if self.detach else entry
        keys, values = self.project(entry)
        stamp = bank.stamps.max(dim=1).values + 1  # after every stored entry
        count = torch.where(active, torch.clamp(bank.count + 1, max=self.capacity), bank.count)
        return MemoryBank(write_slot(bank.entries, entry, slot, active), write_slot(bank.keys, keys, slot, active),
                          write_slot(bank.values, values, slot, active), write_slot(bank.stamps, stamp, slot, active),
                          count)


class WorkingMemory(_Memory):
    """Working memory: the last L_w step representations H_t, first in first out (Algorithm 1, lines 8-14)."""

    def update(self, bank: MemoryBank, entry: Tensor, active: Tensor) -> MemoryBank:
        """Append ``entry`` (B, n, D) to the streams with ``active`` (B,) True, dropping the oldest when full."""
        return self._store(bank, entry, fifo_slot(bank.count, bank.stamps, self.capacity), active)


class EpisodicMemory(_Memory):
    """Episodic memory: up to L_e fused memories M_t; when full, the stored entry most cosine-similar to the new
    one is deleted and the new one appended (Algorithm 1, lines 15-24)."""

    def __init__(self, dim: int, num_heads: int, capacity: int, *, similarity: str = "flatten",
                 detach: bool = False):
        super().__init__(dim, num_heads, capacity, detach=detach)
        self.similarity = similarity

    def update(self, bank: MemoryBank, entry: Tensor, active: Tensor) -> MemoryBank:
        """Store ``entry`` (B, n, D) for the streams with ``active`` (B,) True (similarity replacement when full)."""
        victim = most_similar(bank.entries, bank.count, entry, self.similarity, bank.stamps)
        return self._store(bank, entry, replacement_slot(bank.count, victim, self.capacity), active)
