"""DualMemory: Algorithm 1 of VLM² (working + episodic memory, gated retrieval), one step per tubelet.

Per step t of a stream, with H_t the step's (n, D) 3D-aware tokens (notation of :mod:`posevlm.memory.banks`)::

    1   M_w = WorkingAttention(Q = H_t, KV = W_t)            # an empty memory retrieves H_t itself
    2   M_e = EpisodicAttention(Q = H_t, KV = E_t)
    5   gamma = sigmoid(MLP([M_w; M_e]))                       # (n, D), one gate per channel
    6-7 M_t = gamma * M_w + (1 - gamma) * M_e
    8-14  W_{t+1} = W_t + [H_t], dropping the oldest beyond L_w
    15-24 E_{t+1} = E_t + [M_t]; beyond L_e the entry most cosine-similar to M_t is deleted first
    out_t = H_t + out_proj(M_t)                                # how M_t enters the LLM: our reading (design.md)

With one memory switched off its retrieval is M_t (no gate). ``out_proj`` starts at zero (``zero_init``), so a
fresh memory returns H_t exactly. Cost per step: two (n, D) x (D, D) projections per memory for the new entry's keys
and values, one for the queries, attention of n queries over L_w * n and L_e * n keys (masked full capacity, also
while filling), one similarity pass over the episodic entries and one out-of-place slot write per bank tensor --
fixed, whatever the number of steps seen. The loop over steps is the only Python loop; it runs all B streams of a
batch together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from posevlm.errors import ConfigError, ShapeError
from posevlm.memory.banks import EpisodicMemory, MemoryBank, WorkingMemory

__all__ = ["DualMemory", "DualMemoryState"]

_BANKS = ("working", "episodic")
_FIELDS = ("entries", "keys", "values", "stamps", "count")


@dataclass(frozen=True)
class DualMemoryState:
    """The memories of B streams between steps (None for a memory that is switched off)."""

    working: MemoryBank | None
    episodic: MemoryBank | None

    @property
    def batch(self) -> int:
        bank = self.working if self.working is not None else self.episodic
        return int(bank.count.shape[0])

    def select(self, rows: Tensor | slice) -> "DualMemoryState":
        return DualMemoryState(*(None if b is None else b.select(rows) for b in (self.working, self.episodic)))

    @staticmethod
    def cat(states: "list[DualMemoryState]") -> "DualMemoryState":
        banks = []
        for name in _BANKS:
            parts = [getattr(s, name) for s in states]
            banks.append(None if parts[0] is None else MemoryBank.cat(parts))
        return DualMemoryState(*banks)

    def state_dict(self) -> dict[str, Tensor]:
        """Flat ``{"working.entries": ..., "episodic.count": ...}`` (tensors as stored, gradients kept)."""
        return {f"{name}.{f}": getattr(bank, f) for name in _BANKS
                if (bank := getattr(self, name)) is not None for f in _FIELDS}

    @classmethod
    def from_state_dict(cls, data: dict[str, Tensor]) -> "DualMemoryState":
        banks = []
        for name in _BANKS:
            present = [f"{name}.{f}" in data for f in _FIELDS]
            if any(present) and not all(present):
                raise ShapeError(f"memory state dict has some but not all of {name}.{{{', '.join(_FIELDS)}}}",
                                 name="state_dict")
            banks.append(MemoryBank(*(data[f"{name}.{f}"] for f in _FIELDS)) if all(present) else None)
        if banks == [None, None]:
            raise ShapeError("memory state dict holds neither working.* nor episodic.* tensors", name="state_dict")
        return cls(*banks)


class DualMemory(nn.Module):
    """Working memory (FIFO, L_w), episodic memory (L_e, similarity replacement), gated fusion (Algorithm 1).

    Keys: ``working.*`` / ``episodic.*`` (:class:`~posevlm.memory.banks.WorkingMemory` /
    :class:`~posevlm.memory.banks.EpisodicMemory`), ``gate.{0,2}.{weight,bias}`` (Linear 2D -> D, GELU,
    Linear D -> D; only with both memories), ``out_proj.{weight,bias}``.
    """

    def __init__(self, dim: int, num_heads: int, *, working_size: int = 8, episodic_size: int = 32,
                 working: bool = True, episodic: bool = True, similarity: str = "flatten", detach: bool = False,
                 zero_init: bool = True):
        super().__init__()
        if not (working or episodic):
            raise ConfigError("DualMemory needs the working or the episodic memory (or both)", field="memory")
        self.dim = dim
        self.working = WorkingMemory(dim, num_heads, working_size, detach=detach) if working else None
        self.episodic = EpisodicMemory(dim, num_heads, episodic_size, similarity=similarity,
                                       detach=detach) if episodic else None
        self.gate = None
        if working and episodic:
            self.gate = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
            for layer in (self.gate[0], self.gate[2]):
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)  # gamma = 0.5 at init: an even mix
        self.out_proj = nn.Linear(dim, dim)
        if zero_init:
            nn.init.zeros_(self.out_proj.weight)
        else:
            nn.init.normal_(self.out_proj.weight, std=0.02)
        nn.init.zeros_(self.out_proj.bias)

    def init_state(self, batch: int, tokens: int, *, device=None, dtype=None) -> DualMemoryState:
        """Empty memories for ``batch`` streams of ``tokens`` tokens per step."""
        return DualMemoryState(*(None if m is None else m.empty(batch, tokens, device=device, dtype=dtype)
                                 for m in (self.working, self.episodic)))

    def check_state(self, state: DualMemoryState, step: Tensor) -> None:
        for name, memory in (("working", self.working), ("episodic", self.episodic)):
            bank = getattr(state, name)
            if (bank is None) != (memory is None):
                raise ShapeError(f"memory state {'lacks' if bank is None else 'has'} a {name} memory but this "
                                 f"DualMemory {'has' if memory is not None else 'has none'}; states do not carry "
                                 "over between configurations", name="memory state")
            if memory is not None:
                memory.check(bank, step, f"memory state ({name})")

    def gamma(self, m_w: Tensor, m_e: Tensor) -> Tensor:
        """(B, n, D) gate in [0, 1]: the weight of the working-memory retrieval (Algorithm 1, line 5)."""
        return torch.sigmoid(self.gate(torch.cat([m_w, m_e], dim=-1)))

    def step(self, state: DualMemoryState, h: Tensor, active: Tensor | None = None
             ) -> tuple[Tensor, Tensor, DualMemoryState]:
        """One step of Algorithm 1 for B streams.

        Args:
            state: the memories after the previous step. h: (B, n, D) H_t.
            active: (B,) bool, streams that have a step t (False: output h, memories unchanged); default all.
        Returns:
            (out (B, n, D) = H_t + out_proj(M_t), M_t (B, n, D), the memories after the step).
        """
        if active is None:
            active = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
        x = h.to(self.out_proj.weight.dtype)
        m_w = self.working.retrieve(state.working, x) if self.working is not None else None
        m_e = self.episodic.retrieve(state.episodic, x) if self.episodic is not None else None
        if m_w is not None and m_e is not None:
            gamma = self.gamma(m_w, m_e)
            m = gamma * m_w + (1 - gamma) * m_e
        else:
            m = m_w if m_w is not None else m_e
        working = self.working.update(state.working, x, active) if self.working is not None else None
        episodic = self.episodic.update(state.episodic, m, active) if self.episodic is not None else None
        out = torch.where(active[:, None, None], x + self.out_proj(m), x).to(h.dtype)
        return out, m, DualMemoryState(working, episodic)

    def forward(self, h: Tensor, state: DualMemoryState | None = None, active: Tensor | None = None
                ) -> tuple[Tensor, DualMemoryState]:
        """Steps 0 .. T-1 of B streams in order.

        Args:
            h: (B, T, n, D) the streams' step tokens. state: memories to continue from (None: empty).
            active: (B, T) bool, which steps exist (shorter streams padded at the end); default all.
        Returns:
            ((B, T, n, D) outputs, the memories after the last step).
        """
        if h.dim() != 4 or h.shape[-1] != self.dim:
            raise ShapeError(f"memory input must be (B, T, n, D={self.dim}); got {tuple(h.shape)}", name="h",
                             shape=tuple(h.shape))
        b, t, n, _ = h.shape
        if state is None:
            state = self.init_state(b, n, device=h.device, dtype=self.out_proj.weight.dtype)
        elif t:
            self.check_state(state, h[:, 0])
        if active is None:
            active = torch.ones(b, t, dtype=torch.bool, device=h.device)
        outs = []
        for i in range(t):  # the recurrence: step t reads the memories step t-1 wrote
            out, _, state = self.step(state, h[:, i], active[:, i])
            outs.append(out)
        return torch.stack(outs, dim=1), state
